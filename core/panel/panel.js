// xfed Control Panel: the Lync "XMPP Federated Partners" flow over xfed's admin
// API. No framework, no external code; text goes in with textContent only.
'use strict';

(() => {
  const TOKEN_KEY = 'xfed-admin-token';
  const $ = (id) => document.getElementById(id);
  const VIEWS = ['signin', 'partners', 'edit', 'gateway', 'status'];
  const METHOD_SHORT = { sasl_tls: 'SASL/TLS', dialback_tls: 'DB/TLS', dialback_tcp: 'DB/TCP' };
  const METHOD_LONG = {
    sasl_tls: 'SASL EXTERNAL after STARTTLS',
    dialback_tls: 'Dialback inside TLS',
    dialback_tcp: 'Dialback on plaintext TCP',
  };
  const TYPE_NAMES = {
    federated: 'Federated',
    'public-verified': 'Public verified',
    'public-unverified': 'Public unverified',
  };
  const GATEWAY_NUMBERS = [
    'connection_limit',
    'partner_connection_limit',
    'keepalive_interval',
    'stream_establishment_timeout',
    'stream_inactivity_timeout',
  ];

  let matrix = null; // the 18 rows of /api/matrix
  let partners = [];
  let selected = null; // the domain chosen in the list
  let editing = null; // the domain being edited; null for New
  let pendingNotice = null; // shown by the next view

  // ---- API --------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class SignedOut extends Error {}

  // Calls the API; 401/403 sign out with the server's message.
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token(), Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    if (r.status === 401 || r.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      const why = r.status === 401 ? 'The admin token was not accepted.' : (data && data.message) || 'The admin API is disabled.';
      showSignin(why);
      throw new SignedOut(why);
    }
    return { status: r.status, data };
  }

  const messageOf = (data, fallback) => (data && data.message) || fallback;

  // ---- messages -----------------------------------------------------------

  function setLines(el, lines, kindClass) {
    el.replaceChildren();
    for (const line of lines) {
      const p = document.createElement('p');
      p.textContent = line;
      el.appendChild(p);
    }
    el.className = el.className.replace(/\bmsg-(ok|warning|error)\b/g, '').trim() + ' ' + kindClass;
    el.hidden = lines.length === 0;
  }

  function clearMessages() {
    for (const id of ['error', 'notice', 'form-error', 'gateway-error']) {
      $(id).hidden = true;
      $(id).replaceChildren();
    }
  }

  const showError = (el, lines) => setLines(el, lines, 'msg-error');

  // A commit's outcome: the headline plus the matrix row's warning or info.
  function commitLines(headline, data) {
    const lines = [headline];
    for (const w of (data && data.warnings) || []) lines.push('Warning: ' + w);
    for (const i of (data && data.info) || []) lines.push('Note: ' + i);
    return lines;
  }

  // ---- views --------------------------------------------------------------

  function show(view, focusId) {
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    const nav = { partners: 'partners', edit: 'partners', gateway: 'gateway', status: 'status' }[view];
    for (const n of ['partners', 'gateway', 'status']) {
      const a = $('nav-' + n);
      if (n === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    $('signout').hidden = view === 'signin';
    clearMessages();
    if (pendingNotice) {
      setLines($('notice'), pendingNotice.lines, pendingNotice.kind);
      pendingNotice = null;
    }
    const target = focusId ? $(focusId) : null;
    if (target) target.focus();
  }

  function showSignin(why) {
    show('signin');
    if (why) showError($('error'), [why]);
    $('token').value = '';
    $('token').focus();
  }

  async function route() {
    if (!token()) return showSignin(null);
    const h = location.hash || '#partners';
    try {
      if (!matrix) await loadMatrix();
      if (h === '#new') await openEditor(null);
      else if (h.startsWith('#edit/')) await openEditor(decodeURIComponent(h.slice(6)));
      else if (h === '#gateway') await openGateway();
      else if (h === '#status') await openStatus();
      else await openPartners();
    } catch (e) {
      if (!(e instanceof SignedOut)) showError($('error'), ['Cannot reach xfed: ' + e.message]);
    }
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  async function loadMatrix() {
    const r = await api('GET', '/api/matrix');
    if (r.status !== 200) throw new Error(messageOf(r.data, 'HTTP ' + r.status));
    matrix = r.data;
  }

  const matrixRow = (tls, sasl, dialback) =>
    matrix.find((m) => m.tls === tls && m.sasl === sasl && m.dialback === dialback);

  // ---- partner list -----------------------------------------------------------

  function cell(tr, label, text) {
    const td = document.createElement('td');
    td.dataset.label = label;
    if (text instanceof Node) td.appendChild(text);
    else td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function rowBadge(p) {
    const span = document.createElement('span');
    span.textContent = String(p.matrix_row);
    const row = matrix[p.matrix_row - 1];
    if (row && row.commit !== 'ok') {
      const b = document.createElement('span');
      b.className = 'badge ' + row.commit;
      b.textContent = row.commit === 'refused' ? 'refused: skipped' : row.commit;
      span.append(' ', b);
    }
    return span;
  }

  function renderPartners() {
    const body = $('partner-rows');
    body.replaceChildren();
    partners.forEach((p, i) => {
      const tr = document.createElement('tr');
      tr.dataset.domain = p.domain;
      const sel = document.createElement('td');
      sel.className = 'sel';
      const radio = document.createElement('input');
      radio.type = 'radio';
      radio.name = 'partner';
      radio.id = 'sel-' + i;
      radio.value = p.domain;
      radio.checked = p.domain === selected;
      sel.appendChild(radio);
      tr.appendChild(sel);
      const name = document.createElement('label');
      name.htmlFor = radio.id;
      name.textContent = p.domain;
      cell(tr, 'Primary domain', name);
      cell(tr, 'Partner type', TYPE_NAMES[p.partner_type] || p.partner_type);
      cell(tr, 'TLS', p.tls);
      cell(tr, 'SASL', p.sasl);
      cell(tr, 'Dialback', p.dialback ? 'true' : 'false');
      cell(tr, 'Matrix row', rowBadge(p));
      cell(tr, 'Additional domains', p.additional_domains.join(', '));
      if (p.domain === selected) tr.classList.add('selected');
      body.appendChild(tr);
    });
    $('partner-table').hidden = partners.length === 0;
    $('partners-empty').hidden = partners.length !== 0;
    $('edit').disabled = $('remove').disabled = selected === null;
  }

  async function openPartners(focusId = 'h-partners') {
    const r = await api('GET', '/api/partners');
    show('partners', focusId);
    if (r.status !== 200) {
      showError($('error'), [messageOf(r.data, 'Cannot list the partners (HTTP ' + r.status + ').')]);
      partners = [];
    } else {
      partners = r.data;
    }
    if (!partners.some((p) => p.domain === selected)) selected = null;
    renderPartners();
  }

  function select(domain) {
    selected = domain;
    for (const tr of $('partner-rows').children)
      tr.classList.toggle('selected', tr.dataset.domain === domain);
    $('edit').disabled = $('remove').disabled = selected === null;
  }

  $('partner-rows').addEventListener('change', (ev) => {
    if (ev.target.name === 'partner') select(ev.target.value);
  });
  $('partner-rows').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && ev.target.name === 'partner') {
      select(ev.target.value);
      go('#edit/' + encodeURIComponent(ev.target.value));
    }
  });
  $('partner-rows').addEventListener('dblclick', (ev) => {
    const tr = ev.target.closest('tr');
    if (tr) go('#edit/' + encodeURIComponent(tr.dataset.domain));
  });
  $('new').addEventListener('click', () => go('#new'));
  $('edit').addEventListener('click', () => {
    if (selected) go('#edit/' + encodeURIComponent(selected));
  });
  $('refresh').addEventListener('click', () => route());
  $('remove').addEventListener('click', () => {
    if (!selected) return;
    $('confirm-text').textContent =
      'Remove the XMPP federated partner ' + selected + ' and its additional domains? ' +
      'Its streams close within 2 seconds.';
    $('confirm').returnValue = '';
    $('confirm').showModal();
    $('confirm-cancel').focus();
  });
  $('confirm').addEventListener('close', async () => {
    if ($('confirm').returnValue !== 'remove' || !selected) return;
    const domain = selected;
    try {
      const r = await api('DELETE', '/api/partners/' + encodeURIComponent(domain));
      if (r.status === 200) {
        selected = null;
        pendingNotice = { lines: ['Partner ' + domain + ' removed.'], kind: 'msg-ok' };
        await openPartners('new');
      } else {
        showError($('error'), [messageOf(r.data, 'Remove failed (HTTP ' + r.status + ').')]);
      }
    } catch (e) {
      if (!(e instanceof SignedOut)) showError($('error'), ['Remove failed: ' + e.message]);
    }
  });

  // ---- New / Edit -------------------------------------------------------------

  const DEFAULTS = {
    domain: '',
    description: '',
    additional_domains: [],
    partner_type: 'public-unverified',
    tls: 'required',
    sasl: 'optional',
    dialback: true,
    connection_limit: 0,
    keepalive: true,
    proxy_fqdn: '',
  };

  function fillForm(p) {
    $('f-domain').value = p.domain;
    $('f-description').value = p.description;
    $('f-domains').value = p.additional_domains.join('\n');
    $('f-type').value = p.partner_type;
    $('f-tls').value = p.tls;
    $('f-sasl').value = p.sasl;
    $('f-dialback').value = p.dialback ? 'true' : 'false';
    $('f-limit').value = String(p.connection_limit);
    $('f-keepalive').checked = p.keepalive;
    $('f-proxy').value = p.proxy_fqdn;
    updateMatrixNote();
  }

  // The matrix row of the current selection, as the user changes it.
  function updateMatrixNote() {
    const note = $('matrix-note');
    const row = matrixRow($('f-tls').value, $('f-sasl').value, $('f-dialback').value === 'true');
    if (!row) {
      note.textContent = '';
      return;
    }
    const methods = row.methods.map((m) => METHOD_SHORT[m]).join(', ') || 'none';
    const head = 'Matrix row ' + row.row + '. Methods: ' + methods + '.';
    const tail = {
      ok: '',
      info: 'Note: ',
      warning: 'Warning: ',
      refused: 'Commit will be refused: ',
    }[row.commit];
    const lines = [head];
    if (row.message) lines.push(tail + row.message);
    note.replaceChildren();
    for (const l of lines) {
      const p = document.createElement('p');
      p.textContent = l;
      note.appendChild(p);
    }
    note.className = 'note ' + row.commit;
    note.dataset.row = String(row.row);
  }

  for (const id of ['f-tls', 'f-sasl', 'f-dialback'])
    $(id).addEventListener('change', updateMatrixNote);

  async function openEditor(domain) {
    editing = domain;
    $('h-edit').textContent = domain ? 'Edit XMPP Federated Partner' : 'New XMPP Federated Partner';
    $('f-domain').readOnly = domain !== null;
    if (domain === null) {
      show('edit', null);
      fillForm(DEFAULTS);
      $('f-domain').focus();
      return;
    }
    const r = await api('GET', '/api/partners/' + encodeURIComponent(domain));
    if (r.status !== 200) {
      pendingNotice = { lines: [messageOf(r.data, 'No partner ' + domain + '.')], kind: 'msg-error' };
      await openPartners();
      return;
    }
    show('edit', null);
    fillForm(r.data);
    $('f-description').focus();
  }

  function formBody() {
    const limit = $('f-limit').value.trim();
    if (!/^\d+$/.test(limit)) return { error: 'Connection limit: enter a whole number from 0 to 65535.' };
    const body = {
      description: $('f-description').value,
      additional_domains: $('f-domains').value.split(/[\s,]+/).filter((d) => d !== ''),
      partner_type: $('f-type').value,
      tls: $('f-tls').value,
      sasl: $('f-sasl').value,
      dialback: $('f-dialback').value === 'true',
      connection_limit: Number(limit),
      keepalive: $('f-keepalive').checked,
      proxy_fqdn: $('f-proxy').value.trim(),
    };
    if (editing === null) body.domain = $('f-domain').value.trim();
    return { body };
  }

  $('partner-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('form-error');
    err.hidden = true;
    const { body, error } = formBody();
    if (error) {
      showError(err, [error]);
      return;
    }
    if (editing === null && body.domain === '') {
      showError(err, ['Enter the partner\'s primary domain.']);
      $('f-domain').focus();
      return;
    }
    $('commit').disabled = true;
    try {
      const r = editing === null
        ? await api('POST', '/api/partners', body)
        : await api('PUT', '/api/partners/' + encodeURIComponent(editing), body);
      if (r.status === 200 || r.status === 201) {
        const d = r.data.partner.domain;
        selected = d;
        pendingNotice = {
          lines: commitLines('Partner ' + d + ' committed (matrix row ' + r.data.matrix_row + ').', r.data),
          kind: r.data.warnings.length ? 'msg-warning' : 'msg-ok',
        };
        go('#partners');
      } else if (r.status === 422) {
        showError(err, ['Refused; nothing was saved.'].concat((r.data && r.data.messages) || []));
      } else {
        showError(err, [messageOf(r.data, 'Commit failed (HTTP ' + r.status + ').')]);
      }
    } catch (e) {
      if (!(e instanceof SignedOut)) showError(err, ['Commit failed: ' + e.message]);
    } finally {
      $('commit').disabled = false;
    }
  });
  $('cancel').addEventListener('click', () => go('#partners'));

  // ---- gateway ------------------------------------------------------------

  function fillGateway(g) {
    for (const k of GATEWAY_NUMBERS) $('g-' + k).value = String(g[k]);
    $('g-log_message_bodies').checked = g.log_message_bodies;
    $('g-passphrase').value = '';
    $('g-clear').checked = false;
    $('g-passphrase-state').textContent = g.dialback_passphrase_set
      ? 'A passphrase is set (it is never shown)'
      : 'No passphrase is set: a random secret is used per start';
  }

  async function openGateway() {
    const r = await api('GET', '/api/gateway');
    show('gateway', null);
    if (r.status !== 200) {
      showError($('error'), [messageOf(r.data, 'Cannot read the gateway settings.')]);
      return;
    }
    fillGateway(r.data);
    $('h-gateway').focus();
  }

  $('gateway-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('gateway-error');
    err.hidden = true;
    const body = {};
    for (const k of GATEWAY_NUMBERS) {
      const v = $('g-' + k).value.trim();
      if (!/^\d+$/.test(v)) {
        showError(err, [$('g-' + k).labels[0].textContent + ': enter a whole number.']);
        return;
      }
      body[k] = Number(v);
    }
    body.log_message_bodies = $('g-log_message_bodies').checked;
    if ($('g-clear').checked) body.dialback_passphrase = '';
    else if ($('g-passphrase').value !== '') body.dialback_passphrase = $('g-passphrase').value;
    $('gateway-commit').disabled = true;
    try {
      const r = await api('PUT', '/api/gateway', body);
      if (r.status === 200) {
        fillGateway(r.data.gateway);
        setLines($('notice'), commitLines('Gateway settings committed.', r.data), 'msg-ok');
      } else if (r.status === 422) {
        showError(err, ['Refused; nothing was saved.'].concat(r.data.messages || []));
      } else {
        showError(err, [messageOf(r.data, 'Commit failed (HTTP ' + r.status + ').')]);
      }
    } catch (e) {
      if (!(e instanceof SignedOut)) showError(err, ['Commit failed: ' + e.message]);
    } finally {
      $('gateway-commit').disabled = false;
    }
  });
  $('gateway-reset').addEventListener('click', () => route());

  // ---- status -------------------------------------------------------------

  const when = (iso) => (iso ? new Date(iso).toLocaleString() : 'never');

  async function openStatus() {
    const r = await api('GET', '/api/status');
    show('status', null);
    if (r.status !== 200) {
      showError($('error'), [messageOf(r.data, 'Cannot read the status.')]);
      return;
    }
    const s = r.data;
    $('status-summary').textContent =
      'Partner table version ' + s.snapshot_version + ': ' + s.partners_active + ' active, ' +
      s.partners_skipped + ' skipped (refused by validation).';
    const body = $('status-rows');
    body.replaceChildren();
    for (const p of s.partners) {
      const tr = document.createElement('tr');
      cell(tr, 'Partner', p.domain);
      cell(tr, 'Streams in', String(p.streams_in));
      cell(tr, 'Streams out', String(p.streams_out));
      cell(tr, 'Method in use', p.method ? METHOD_LONG[p.method] : 'none yet');
      cell(tr, 'Last success', when(p.last_success));
      cell(tr, 'Last failure', p.last_failure ? when(p.last_failure.time) + ': ' + p.last_failure.reason : 'never');
      body.appendChild(tr);
    }
    $('status-table').hidden = s.partners.length === 0;
    $('status-empty').hidden = s.partners.length !== 0;
    $('h-status').focus();
  }
  $('status-refresh').addEventListener('click', () => route());

  // ---- sign in / out ----------------------------------------------------------

  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t === '') {
      showError($('error'), ['Enter the admin token.']);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    matrix = null;
    await route();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    matrix = null;
    partners = [];
    selected = null;
    showSignin(null);
  });

  for (const id of ['h-partners', 'h-edit', 'h-gateway', 'h-status']) $(id).tabIndex = -1;
  window.addEventListener('hashchange', route);
  route();
})();
