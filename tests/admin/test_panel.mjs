// The Control Panel in a real headless Chromium (issue 8), driven by
// playwright-core against a real `xfed --config` on loopback.
//
//   node test_panel.mjs --xfed PATH --xfedctl PATH --modules NODE_MODULES --out DIR [--docs DIR]
//
// The Lync flow: sign in, New (keyboard only) -> Commit, Edit with the matrix
// row's warning and info shown as the drop-downs change -> Commit, a refused
// row (SASL required, TLS not-supported) whose message appears on Commit while
// the stored partner stays the same (checked with xfedctl), the status view,
// the gateway settings, Remove through the confirmation dialog (keyboard),
// a wrong token, and a 360 px wide window. Every request must stay on the
// panel's origin and the console must stay free of errors (CSP violations
// included). Screenshots go to --out; --docs also gets control-panel.png.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DEADLINE_MS = 300000;

function parseArgs(argv) {
  const a = {};
  for (let i = 2; i < argv.length; i += 2) a[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['xfed', 'xfedctl', 'modules', 'out']) {
    if (!a[k]) {
      console.error('usage: test_panel.mjs --xfed P --xfedctl P --modules DIR --out DIR [--docs DIR]');
      process.exit(2);
    }
  }
  return a;
}

const args = parseArgs(process.argv);
const require = createRequire(path.join(args.modules, 'x.js'));
const { chromium } = require('playwright-core');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xfed-panel-'));
const config = path.join(tmp, 'xfed.conf');
const store = path.join(tmp, 'xfed.db');
const tokenFile = path.join(tmp, 'admin.token');
let daemon = null;
let context = null;

function cleanup() {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
}

// Every run stops by itself.
const watchdog = setTimeout(() => {
  console.error('test_panel: FAILED: no result within ' + DEADLINE_MS / 1000 + ' s');
  if (daemon) daemon.kill('SIGKILL');
  process.exit(1);
}, DEADLINE_MS);

// Starts xfed and resolves with the admin port from its log line.
function startDaemon() {
  fs.writeFileSync(config, `[xfed]\nthreads = 1\nstore = ${store}\n` +
    `[admin]\nlisten = 127.0.0.1:0\ntoken_file = ${tokenFile}\n`);
  daemon = spawn(args.xfed, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  daemon.log = lines;
  return new Promise((resolve, reject) => {
    let port = null;
    const rl = readline.createInterface({ input: daemon.stderr });
    rl.on('line', (line) => {
      lines.push(line);
      const m = line.match(/admin listener: http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) port = Number(m[1]);
      if (line.includes('xfed started') && port) resolve(port);
    });
    daemon.on('exit', (code) => reject(new Error('xfed exited with ' + code + ':\n' + lines.join('\n'))));
    setTimeout(() => reject(new Error('xfed did not start:\n' + lines.join('\n'))), 15000);
  });
}

// xfedctl on the daemon's store: the independent view of what was saved.
function ctl(...argv) {
  const r = spawnSync(args.xfedctl, ['--config', config, ...argv], { encoding: 'utf8', timeout: 60000 });
  return { rc: r.status, out: r.stdout, err: r.stderr };
}

function ctlJson(...argv) {
  const r = ctl(...argv, '--json');
  assert.equal(r.rc, 0, r.err);
  return JSON.parse(r.out);
}

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

async function activeId(page) {
  return page.evaluate(() => (document.activeElement ? document.activeElement.id : ''));
}

// Tab to the next element and check it is the expected one: the keyboard order.
async function tabTo(page, id, key = 'Tab') {
  await page.keyboard.press(key);
  assert.equal(await activeId(page), id, `keyboard focus after ${key}`);
}

async function noHorizontalScroll(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  assert.ok(scroll <= inner, `${what}: the page is ${scroll} px wide in a ${inner} px window`);
}

async function within(page, selector, width) {
  const box = await page.locator(selector).boundingBox();
  assert.ok(box, selector + ' is not visible');
  assert.ok(box.x >= 0 && box.x + box.width <= width, `${selector} sticks out: ${JSON.stringify(box)}`);
}

async function main() {
  const port = await startDaemon();
  const base = `http://127.0.0.1:${port}`;
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  assert.match(token, /^[0-9a-f]{64}$/);
  console.log('xfed at ' + base);

  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10000);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('request', (r) => {
    if (!r.url().startsWith(base + '/')) problems.push('request off the origin: ' + r.url());
  });
  const shot = async (name) => {
    const file = path.join(args.out, name);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  };
  const notice = page.locator('#notice');
  const note = page.locator('#matrix-note');

  await step('sign in with the keyboard', async () => {
    await page.goto(base + '/');
    await page.locator('#view-signin').waitFor();
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'token');
    await page.keyboard.type(token);
    await page.keyboard.press('Enter');
    await page.locator('#view-partners').waitFor();
    await page.locator('#partners-empty').waitFor();
    assert.equal(await page.getAttribute('#nav-partners', 'aria-current'), 'page');
    assert.ok(await page.isDisabled('#edit'), 'Edit needs a selected partner');
    assert.ok(await page.isDisabled('#remove'), 'Remove needs a selected partner');
  });

  await step('New -> Commit, keyboard only', async () => {
    assert.equal(await activeId(page), 'h-partners');
    await tabTo(page, 'new');
    await page.keyboard.press('Enter');
    await page.locator('#view-edit').waitFor();
    assert.equal(await activeId(page), 'f-domain');
    assert.equal(await page.textContent('#h-edit'), 'New XMPP Federated Partner');
    // The defaults of spec §3, and matrix row 7's note.
    assert.equal(await page.inputValue('#f-type'), 'public-unverified');
    assert.equal(await page.inputValue('#f-tls'), 'required');
    assert.equal(await page.inputValue('#f-sasl'), 'optional');
    assert.equal(await page.inputValue('#f-dialback'), 'true');
    assert.equal(await page.inputValue('#f-limit'), '0');
    assert.ok(await page.isChecked('#f-keepalive'));
    assert.match(await note.textContent(), /Matrix row 7\. Methods: SASL\/TLS, DB\/TLS\./);
    await page.keyboard.type('fabrikam.example');
    await tabTo(page, 'f-description');
    await page.keyboard.type('Fabrikam, Inc.');
    await tabTo(page, 'f-domains');
    await page.keyboard.type('fabrikam.net');
    await tabTo(page, 'f-type');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowUp');
    assert.equal(await page.inputValue('#f-type'), 'federated');
    for (const id of ['f-tls', 'f-sasl', 'f-dialback', 'f-limit', 'f-keepalive', 'f-proxy', 'commit'])
      await tabTo(page, id);
    await page.keyboard.press('Enter');
    await page.locator('#view-partners').waitFor();
    await notice.waitFor();
    assert.match(await notice.textContent(), /Partner fabrikam\.example committed \(matrix row 7\)\./);
    const p = ctlJson('partner', 'get', 'fabrikam.example');
    assert.equal(p.description, 'Fabrikam, Inc.');
    assert.deepEqual(p.additional_domains, ['fabrikam.net']);
    assert.equal(p.partner_type, 'federated');
    assert.equal(p.matrix_row, 7);
    assert.match(await page.textContent('#partner-rows'), /fabrikam\.example.*Federated.*fabrikam\.net/);
    await shot('panel-partners.png');
  });

  await step('Edit: the row\'s warning and info follow the drop-downs', async () => {
    // The partner just committed is the selected one.
    assert.ok(await page.getByLabel('fabrikam.example', { exact: true }).isChecked());
    await page.getByLabel('fabrikam.example', { exact: true }).check();
    assert.ok(await page.isEnabled('#edit'));
    await page.click('#edit');
    await page.locator('#view-edit').waitFor();
    assert.equal(await page.textContent('#h-edit'), 'Edit XMPP Federated Partner');
    assert.equal(await page.inputValue('#f-domain'), 'fabrikam.example');
    assert.ok(await page.locator('#f-domain').evaluate((e) => e.readOnly));
    assert.equal(await page.inputValue('#f-type'), 'federated');
    await page.selectOption('#f-tls', 'optional');
    assert.match(await note.textContent(), /Matrix row 9\..*Warning: SASL requires TLS\. Allowing TLS to be optional may result in failed session negotiations\./);
    assert.equal(await note.getAttribute('class'), 'note warning');
    await shot('panel-edit-warning.png');
    await page.selectOption('#f-sasl', 'not-supported');
    assert.match(await note.textContent(), /Matrix row 15\. Methods: DB\/TLS, DB\/TCP\..*Note: TCP or TLS Dialback will be accepted/);
    assert.equal(await note.getAttribute('class'), 'note info');
    await page.click('#commit');
    await page.locator('#view-partners').waitFor();
    await notice.waitFor();
    assert.match(await notice.textContent(), /committed \(matrix row 15\)\..*Note: TCP or TLS Dialback will be accepted/);
    const p = ctlJson('partner', 'get', 'fabrikam.example');
    assert.deepEqual([p.tls, p.sasl, p.dialback, p.matrix_row], ['optional', 'not-supported', true, 15]);
    assert.equal(p.description, 'Fabrikam, Inc.');
  });

  await step('Commit of SASL required with TLS not-supported is refused; nothing saved', async () => {
    const before = ctlJson('partner', 'get');
    await page.getByLabel('fabrikam.example', { exact: true }).check();
    await page.click('#edit');
    await page.locator('#view-edit').waitFor();
    await page.fill('#f-description', 'this must not be saved');
    await page.selectOption('#f-sasl', 'required');
    await page.selectOption('#f-tls', 'not-supported');
    assert.match(await note.textContent(), /Matrix row 5\. Methods: none\..*Commit will be refused: SASL requires TLS/);
    assert.equal(await note.getAttribute('class'), 'note refused');
    await page.click('#commit');
    const alert = page.locator('#form-error');
    await alert.waitFor();
    assert.equal(await alert.getAttribute('role'), 'alert');
    const text = await alert.textContent();
    assert.match(text, /Refused; nothing was saved\./);
    assert.match(text, /SASL requires TLS: SASL negotiation is required or optional but TLS is not-supported\. Set TLS to required or optional, or SASL to not-supported\./);
    assert.ok(await page.locator('#view-edit').isVisible(), 'the form stays open');
    assert.deepEqual(ctlJson('partner', 'get'), before, 'the stored partners changed');
    await page.setViewportSize({ width: 1280, height: 1100 });
    const file = await shot('panel-refused.png');
    await page.setViewportSize({ width: 1280, height: 900 });
    if (args.docs) {
      fs.mkdirSync(args.docs, { recursive: true });
      fs.copyFileSync(file, path.join(args.docs, 'control-panel.png'));
    }
    await page.click('#cancel');
    await page.locator('#view-partners').waitFor();
    assert.match(await page.textContent('#partner-rows'), /optional.*not-supported/);
  });

  await step('status view lists the live partner', async () => {
    await page.click('#nav-status');
    await page.locator('#view-status').waitFor();
    // The daemon republishes within 2 s of a commit; Refresh until it did.
    const t0 = Date.now();
    while (!(await page.textContent('#status-rows')).includes('fabrikam.example')) {
      assert.ok(Date.now() - t0 < 5000, 'the partner never reached /api/status');
      await page.waitForTimeout(200);
      await page.click('#status-refresh');
      await page.locator('#view-status').waitFor();
    }
    const row = await page.textContent('#status-rows');
    assert.match(row, /fabrikam\.example\s*00none yet\s*never\s*never/);
    assert.match(await page.textContent('#status-summary'), /1 active, 0 skipped/);
  });

  await step('gateway settings: commit, refusal, passphrase never shown', async () => {
    await page.click('#nav-gateway');
    await page.locator('#view-gateway').waitFor();
    assert.equal(await page.inputValue('#g-keepalive_interval'), '300');
    assert.match(await page.textContent('#g-passphrase-state'), /No passphrase is set/);
    await page.fill('#g-keepalive_interval', '120');
    await page.fill('#g-passphrase', 'shared by the pool');
    await page.click('#gateway-commit');
    await notice.waitFor();
    assert.match(await notice.textContent(), /Gateway settings committed\./);
    assert.equal(await page.inputValue('#g-passphrase'), '');
    assert.match(await page.textContent('#g-passphrase-state'), /A passphrase is set/);
    const g = ctlJson('gateway', 'get');
    assert.equal(g.keepalive_interval, 120);
    assert.equal(g.dialback_passphrase_set, true);
    assert.ok(!(await page.content()).includes('shared by the pool'));
    await page.fill('#g-keepalive_interval', '5');
    await page.click('#gateway-commit');
    const err = page.locator('#gateway-error');
    await err.waitFor();
    assert.match(await err.textContent(), /Refused; nothing was saved\..*keepalive/i);
    assert.deepEqual(ctlJson('gateway', 'get'), g);
  });

  await step('Remove through the confirmation dialog, keyboard only', async () => {
    await page.click('#nav-partners');
    await page.locator('#view-partners').waitFor();
    await page.getByLabel('fabrikam.example', { exact: true }).focus();
    await page.keyboard.press('Space'); // selects the focused radio
    assert.ok(await page.isEnabled('#remove'));
    await tabTo(page, 'refresh', 'Shift+Tab');
    await tabTo(page, 'remove', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.locator('#confirm').waitFor();
    assert.match(await page.textContent('#confirm-text'), /Remove the XMPP federated partner fabrikam\.example/);
    assert.equal(await activeId(page), 'confirm-cancel');
    await tabTo(page, 'confirm-remove', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.locator('#partners-empty').waitFor();
    assert.match(await notice.textContent(), /Partner fabrikam\.example removed\./);
    assert.equal(ctl('partner', 'get', 'fabrikam.example').rc, 1);
  });

  await step('a 360 px wide window', async () => {
    for (const d of ['wingtip.example', 'litware.example']) {
      const r = await fetch(base + '/api/partners', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ domain: d, additional_domains: ['chat.' + d, 'muc.' + d] }),
      });
      assert.equal(r.status, 201);
    }
    await page.setViewportSize({ width: 360, height: 740 });
    await page.click('#refresh');
    await page.locator('#partner-rows tr').nth(1).waitFor();
    await noHorizontalScroll(page, 'partner list');
    for (const sel of ['#new', '#edit', '#remove', '#nav-status', '#partner-rows tr:first-child'])
      await within(page, sel, 360);
    await shot('panel-narrow.png');
    await page.getByLabel('litware.example', { exact: true }).check();
    await page.click('#edit');
    await page.locator('#view-edit').waitFor();
    await noHorizontalScroll(page, 'edit form');
    for (const sel of ['#f-domains', '#f-tls', '#commit', '#cancel']) await within(page, sel, 360);
    await page.click('#nav-gateway');
    await page.locator('#view-gateway').waitFor();
    await noHorizontalScroll(page, 'gateway form');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('a wrong token is refused', async () => {
    await page.click('#signout');
    await page.locator('#view-signin').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.fill('#token', '0'.repeat(64));
    await page.press('#token', 'Enter');
    const err = page.locator('#error');
    await err.waitFor();
    assert.equal(await err.getAttribute('role'), 'alert');
    assert.match(await err.textContent(), /The admin token was not accepted\./);
    assert.ok(await page.locator('#view-signin').isVisible());
  });

  // Chromium logs every 4xx answer: the two refused commits (422) and the
  // refused sign-in (401) are expected, and nothing else.
  const status = (code) => problems.filter((p) => p.includes(`status of ${code} `)).length;
  assert.equal(status(422), 2, problems.join('\n'));
  assert.equal(status(401), 1, problems.join('\n'));
  const unexpected = problems.filter((p) => !/status of (401|422) /.test(p));
  assert.deepEqual(unexpected, [], 'console errors or off-origin requests');
  assert.ok(!daemon.log.join('\n').includes(token), 'the token was logged');
  assert.ok(!daemon.log.join('\n').includes('shared by the pool'), 'the passphrase was logged');
}

let failed = false;
try {
  await main();
  console.log('test_panel: passed; screenshots in ' + args.out);
} catch (e) {
  failed = true;
  console.error('test_panel: FAILED: ' + (e && e.stack ? e.stack : e));
  if (daemon) console.error('xfed log:\n' + daemon.log.join('\n'));
} finally {
  if (context) await context.close().catch(() => {});
  cleanup();
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
