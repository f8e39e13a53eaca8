#!/usr/bin/python3
"""Self-test of the XEP-0114 side of tests/lib: stock Prosody and ejabberd as
INTERNAL servers (s2s=False, no DNS) that accept external components
(jabber:component:accept) on loopback, driven by tests/lib/component.py.

  Prosody contoso.example, options component_snippet (an admin tool's text:
  component_ports / component_interface + Component "fabrikam.example"):
    - the snippet is split: global lines before the VirtualHost, the
      Component block after it; the harness's `component_ports = { }` is gone;
      no s2s listener, "s2s" disabled (a remote ping bounces not-allowed)
    - start() returned with the component port listening
    - wrong secret: not-authorized; unknown domain: host-unknown; right
      secret: <handshake/>; a second connection: conflict
    - alice@contoso -> bob@fabrikam reaches the component (raw stanza
      printed), bob@fabrikam -> alice reaches alice; an iq ping from alice is
      answered by the component
    - observed namespace rules: explicit xmlns='jabber:client' is bounced
      (service-unavailable), 'jabber:server' kills the stream
      (unsupported-stanza-type), a 'from' outside the component's domain
      kills it (invalid-from)
    - set_components(snippet, port=) + restart: the new port (option
      component_port, on .host) listens, the old one does not
  ejabberd contoso.example, option listen_extra: one ejabberd_service with
  hosts fabrikam.example and tailspin.example:
    - ejabberd.yml parses (PyYAML), no s2s listener
    - wrong secret: not-authorized; right secret: handshake
    - alice -> bob@fabrikam reaches the component, bob -> alice reaches alice
    - global_routes (default true): the connection authenticated as
      fabrikam.example also gets tailspin.example's traffic
    - a second connection for fabrikam.example is accepted (no conflict)
    - a listen_extra that breaks the YAML fails in start() with PeerError

Run: /usr/bin/python3 tests/lib/test_components.py  (as root)
Exit: 0 pass, 1 fail (log tails printed), 77 prerequisite missing.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selftest import T0, check, need, need_peers, note  # noqa: E402,F401
import peers  # noqa: E402
from component import Component, ComponentError  # noqa: E402
from peers import (Client, Ejabberd, PeerError, Prosody, free_port,  # noqa: E402
                   listening_on, parallel, split_prosody_snippet, stop_all, tmpdir)

SECRET = "s3cret-\u00e9\"'<&"     # the handshake hashes UTF-8; quoting in Lua/YAML
NS_COMPONENT = "jabber:component:accept"


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def yaml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def refused(host, port, domain, secret, condition):
    try:
        Component(host, port, domain, secret).connect(timeout=5)
    except ComponentError as e:
        check(e.condition == condition,
              f"component {domain} with {'the wrong' if secret != SECRET else 'the right'} "
              f"secret refused: {e.condition}" + ("" if e.condition == condition
                                                    else f" (wanted {condition})"))
        return e
    raise AssertionError(f"component {domain} connected; wanted {condition}")


def component_roundtrip(kind, server, comp, alice):
    """alice -> bob@fabrikam.example reaches comp; bob -> alice reaches alice.
    Returns the stanza as the server sent it to the component."""
    body = f"to bob via {kind} {time.monotonic()}"
    alice.send_message("bob@fabrikam.example", body)
    st = comp.recv_until(re.escape(f"<body>{body}</body>"), 10)
    check(st is not None, f"{kind}: alice@contoso.example -> bob@fabrikam.example reached "
          "the component")
    note(f"{kind} sent the component: {st.raw}")
    check(st.name == "message" and st.ns == NS_COMPONENT and " xmlns=" not in
          st.raw.split(">", 1)[0],
          f"{kind}: the stanza carries no xmlns (in the stream's default "
          f"namespace, {NS_COMPONENT})")
    check(st.attrs.get("to") == "bob@fabrikam.example"
          and st.attrs.get("from", "").startswith("alice@contoso.example/"),
          f"{kind}: to= as addressed (bare), from= alice's full JID "
          f"({st.attrs.get('from')})")
    body2 = f"to alice via {kind} {time.monotonic()}"
    comp.send(f"<message from='bob@fabrikam.example/comp' to='alice@contoso.example' "
              f"type='chat'><body>{body2}</body></message>")
    got = alice.wait_message(body=body2, sender="bob@fabrikam.example", timeout=10)
    check(got is not None, f"{kind}: bob@fabrikam.example (component) -> "
          "alice@contoso.example delivered")
    return st


def prosody_part(d):
    port = free_port("tcp", "127.0.0.1")
    snippet = (f"-- printed by the admin tool\n"
               f"component_ports = {{ {port} }}\n"
               f'component_interface = "127.0.0.1"\n\n'
               f'Component "fabrikam.example"\n'
               f"    component_secret = {lua_str(SECRET)}\n")
    g, sec = split_prosody_snippet(snippet)
    check(len(g) == 4 and sec[0].startswith("Component") and len(sec) == 2,
          "split_prosody_snippet: 4 global lines, the Component block")
    pro = Prosody(d / "contoso-p", "contoso.example", None, None, None,
                  options={"tls": False, "s2s": False, "component_snippet": snippet})
    return pro, port


def prosody_checks(pro, port):
    cfg = pro.config.read_text()
    vh = cfg.index('VirtualHost "contoso.example"')
    check(cfg.count("component_ports") == 1 and cfg.index(f"component_ports = {{ {port} }}")
          < vh and cfg.index('component_interface = "127.0.0.1"') < vh
          and cfg.index('Component "fabrikam.example"') > vh,
          "prosody config: snippet's globals before the VirtualHost (no harness "
          "component_ports), Component after it")
    check(re.search(r'modules_disabled = \{[^}]*"s2s"', cfg) and "s2s_ports = {  }" in cfg
          and "unbound" not in cfg and not listening_on(pro.host, pro.s2s_port),
          "prosody s2s=False: mod_s2s disabled, no s2s port, no DNS")
    check(pro.component_ports == [port] and pro.component_interfaces == ["127.0.0.1"]
          and listening_on("127.0.0.1", port),
          f"prosody component port 127.0.0.1:{port} listening when start() returned")

    refused("127.0.0.1", port, "fabrikam.example", "wrong", "not-authorized")
    refused("127.0.0.1", port, "nope.example", SECRET, "host-unknown")
    comp = Component("127.0.0.1", port, "fabrikam.example", SECRET).connect()
    check(comp.stream_attrs.get("from") == "fabrikam.example" and comp.stream_id,
          f"prosody: handshake accepted; header {comp.stream_header}")
    refused("127.0.0.1", port, "fabrikam.example", SECRET, "conflict")

    pro.add_user("alice", "pw-a")
    alice = Client("alice@contoso.example", "pw-a", pro.host, pro.c2s_port).connect()
    try:
        raw = component_roundtrip("prosody", pro, comp, alice)
        ok, err = alice.ping("elsewhere.example", timeout=10)
        check(not ok and err == "not-allowed", f"prosody s2s=False: remote ping bounced ({err})")

        # iq from alice to the component, answered by it
        import threading

        def answer():
            st = comp.recv_until(r"urn:xmpp:ping", 10)
            if st is not None:
                comp.send(f"<iq type='result' id='{st.attrs['id']}' "
                          f"from='{st.attrs['to']}' to='{st.attrs['from']}'/>")
        t = threading.Thread(target=answer)
        t.start()
        ok, err = alice.ping("bob@fabrikam.example", timeout=10)
        t.join()
        check(ok, f"prosody: alice's iq ping answered by the component ({err})")

        # namespace rules for what a component sends
        comp.send("<message xmlns='jabber:client' from='bob@fabrikam.example' "
                  "to='alice@contoso.example' type='chat'><body>ns-client</body></message>")
        st = comp.recv_until(r"service-unavailable", 5)
        check(st is not None and st.attrs.get("type") == "error"
              and alice.wait_message(body="ns-client", timeout=1) is None,
              "prosody: a component stanza with explicit xmlns='jabber:client' is not "
              "routed (bounced service-unavailable)")
        comp.send("<message xmlns='jabber:server' from='bob@fabrikam.example' "
                  "to='alice@contoso.example' type='chat'><body>ns-server</body></message>")
        comp.closed.wait(5)
        check(comp.error is not None and comp.error.condition == "unsupported-stanza-type",
              f"prosody: xmlns='jabber:server' ends the stream ({comp.error})")
        comp.close()
        comp = Component("127.0.0.1", port, "fabrikam.example", SECRET).connect()
        comp.send("<message from='mallory@contoso.example' to='alice@contoso.example' "
                  "type='chat'><body>spoof</body></message>")
        comp.closed.wait(5)
        check(comp.error is not None and comp.error.condition == "invalid-from",
              f"prosody: a 'from' outside fabrikam.example ends the stream ({comp.error})")
        comp.close()
    finally:
        alice.disconnect()
        comp.close()
    return raw


def prosody_restart(pro, old_port):
    new_port = free_port("tcp", pro.host)
    pro.stop()
    pro.set_components(f'Component "fabrikam.example"\n  component_secret = '
                       f'{lua_str(SECRET)}\n', port=new_port)
    pro.start()
    cfg = pro.config.read_text()
    check(f"component_ports = {{ {new_port} }}" in cfg and cfg.count("component_ports") == 1
          and listening_on(pro.host, new_port) and not listening_on("127.0.0.1", old_port),
          f"prosody restart after set_components(port=): {pro.host}:{new_port} listens, "
          f"127.0.0.1:{old_port} not")
    comp = Component(pro.host, new_port, "fabrikam.example", SECRET).connect()
    comp.close()
    check(True, "prosody: component connects on the new port")


def ejabberd_part(d):
    port = free_port("tcp", "127.0.0.1")
    extra = (f"- port: {port}\n"
             f'  ip: "127.0.0.1"\n'
             f"  module: ejabberd_service\n"
             f'  hosts: {{"fabrikam.example": {{password: {yaml_str(SECRET)}}},\n'
             f'          "tailspin.example": {{password: "other"}}}}\n')
    ej = Ejabberd(d / "contoso-e", "contoso.example", None, None, None,
                  options={"tls": False, "s2s": False, "listen_extra": extra})
    return ej, port


def ejabberd_checks(ej, port):
    text = (ej.conf_dir / "ejabberd.yml").read_text()
    try:
        import yaml
        listen = yaml.safe_load(text)["listen"]
        svc = [i for i in listen if i.get("module") == "ejabberd_service"]
        check(len(listen) == 2 and len(svc) == 1
              and svc[0]["hosts"]["fabrikam.example"]["password"] == SECRET
              and svc[0]["port"] == port,
              "ejabberd.yml parses: c2s + the ejabberd_service listener, password intact")
    except ImportError:
        note("no PyYAML: ejabberd.yml not parsed here (ejabberd started with it)")
    check("ejabberd_s2s_in" not in text and "s2s_access: none" in text
          and not listening_on(ej.host, ej.s2s_port), "ejabberd s2s=False: no s2s listener")
    check(listening_on("127.0.0.1", port), f"ejabberd service port 127.0.0.1:{port} listening")

    refused("127.0.0.1", port, "fabrikam.example", "wrong", "not-authorized")
    comp = Component("127.0.0.1", port, "fabrikam.example", SECRET).connect()
    check(comp.stream_attrs.get("from") == "fabrikam.example",
          f"ejabberd: handshake accepted; header {comp.stream_header}")
    ej.add_user("alice", "pw-a")
    alice = Client("alice@contoso.example", "pw-a", ej.host, ej.c2s_port).connect()
    try:
        raw = component_roundtrip("ejabberd", ej, comp, alice)
        body = f"to carol {time.monotonic()}"
        alice.send_message("carol@tailspin.example", body)
        st = comp.recv_until(re.escape(body), 10)
        check(st is not None and st.attrs.get("to") == "carol@tailspin.example",
              "ejabberd global_routes: the fabrikam.example connection also gets "
              "tailspin.example's stanzas")
        second = Component("127.0.0.1", port, "fabrikam.example", SECRET).connect()
        check(second.stream_id is not None,
              "ejabberd: a second connection for fabrikam.example is accepted (no conflict)")
        second.close()
    finally:
        alice.disconnect()
        comp.close()
    return raw


def ejabberd_bad_yaml(d):
    try:
        import yaml  # noqa: F401
    except ImportError:
        return
    bad = Ejabberd(d / "bad-e", "contoso.example", None, None, None,
                   options={"tls": False, "s2s": False,
                            "listen_extra": "- port: 1\n  hosts: {unclosed: [\n"})
    try:
        bad.start(timeout=5)
    except PeerError as e:
        check("does not parse" in str(e) and bad.proc is None,
              "ejabberd: a listen_extra that breaks the YAML fails before starting")
        return
    finally:
        bad.stop(graceful=False)
    raise AssertionError("ejabberd started with a broken listen_extra")


def main():
    need_peers(("prosody", "prosodyctl", "ejabberdctl", "setpriv", "unshare"))

    d = tmpdir()
    note(f"work dir {d}")
    servers = []
    failed = True
    try:
        pro, pport = prosody_part(d)
        ej, eport = ejabberd_part(d)
        servers = [pro, ej]
        parallel(pro.start, ej.start)
        note(f"prosody {pro.host} c2s {pro.c2s_port} component 127.0.0.1:{pport}; "
             f"ejabberd {ej.host} c2s {ej.c2s_port} service 127.0.0.1:{eport}")
        raw_p, raw_e = parallel(lambda: prosody_checks(pro, pport),
                                lambda: ejabberd_checks(ej, eport))
        prosody_restart(pro, pport)
        ejabberd_bad_yaml(d)
        note("prosody -> component: " + raw_p.raw)
        note("ejabberd -> component: " + raw_e.raw)
        failed = False
    finally:
        stop_all(*servers)
        if failed:
            for s in servers:
                print(f"--- {s.kind} {s.domain} log tail ---", file=sys.stderr)
                print("\n".join(s.log().splitlines()[-30:]), file=sys.stderr)

    left = subprocess.run(["pgrep", "-af", str(d)], capture_output=True, text=True).stdout
    for s in servers:
        left += "".join(f"uid {s.uid}: pid {p}\n" for p in peers.pids_of_uid(s.uid))
    check(not left.strip(), "no process left" + ("" if not left.strip() else ":\n" + left))
    shutil.rmtree(d, ignore_errors=True)
    note("PASS")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, PeerError, ComponentError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
