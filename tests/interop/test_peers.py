#!/usr/bin/python3
"""Self-test of tests/lib/peers.py: real Prosody and ejabberd peers federating
over loopback with our own DNS, PKI and clients, and nothing left running.

  TLS pair:   fabrikam.example (Prosody, s2s_secure_auth, no dialback)
          <-> wingtip.example  (ejabberd, s2s_use_starttls required, no dialback)
              both directions: STARTTLS, certificates verified against the
              private CA, SASL EXTERNAL; pings to the server JIDs and messages.
  Plain pair: tailspin.example (Prosody, tls=False, dialback)
          <-> northwind.example (ejabberd, s2s_use_starttls false, dialback)
              both directions over plaintext dialback.
  Direct TLS: adatum.example (Prosody with an s2s_direct_tls port, published as
              _xmpps-server) is reached by wingtip over direct TLS (XEP-0368),
              and reaches wingtip (no _xmpps-server record) over STARTTLS.
  PKI:        leaves verify against the CA, XmppAddr lands in the SAN, the
              self-signed certificate does not verify.
  Negative:   tailspin (plaintext) -> wingtip (TLS required) and
              fabrikam (encryption required) -> northwind (no TLS) fail with an
              XMPP error, not a hang.

Run: /usr/bin/python3 tests/interop/test_peers.py  (as root)
Exit: 0 pass, 1 fail (work dir and log tails kept/printed), 77 prerequisite missing.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
from selftest import T0, check, need, need_peers, note  # noqa: E402,F401
import peers  # noqa: E402
from peers import (Client, Dnsmasq, Ejabberd, PeerError, Pki, Prosody,  # noqa: E402
                   parallel, stop_all, tmpdir)


def ping_ok(client, jid):
    ok, err = client.ping(jid, timeout=15)
    check(ok, f"{client.jid.split('/')[0]} pings {jid}: result" + ("" if ok else f" (got {err})"))


def exchange(a, b):
    """a -> b and b -> a chat messages, each received."""
    a_bare, b_bare = a.jid.split("/")[0], b.jid.split("/")[0]
    for src, dst, src_bare, dst_bare in ((a, b, a_bare, b_bare), (b, a, b_bare, a_bare)):
        body = f"hello {dst_bare} from {src_bare} {time.monotonic()}"
        src.send_message(dst_bare, body)
        got = dst.wait_message(body=body, sender=src_bare, timeout=15)
        check(got is not None, f"message {src_bare} -> {dst_bare} delivered")


def check_pki(pki):
    crt, _ = pki.leaf("check.example", dns=["check.example", "*.check.example"],
                      xmpp=["check.example"], eku="serverAuth")
    r = subprocess.run(["openssl", "verify", "-CAfile", pki.ca_crt, crt],
                       capture_output=True, text=True)
    check(r.returncode == 0, "Pki.leaf verifies against Pki.ca_crt")
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", crt],
                          capture_output=True, text=True).stdout
    check("DNS:*.check.example" in text and "othername" in text.lower()
          and "check.example" in text.split("othername", 1)[-1].lower()
          and "TLS Web Server Authentication" in text
          and "TLS Web Client Authentication" not in text,
          "leaf SAN has DNS names + XmppAddr otherName, EKU serverAuth only")
    key = subprocess.run(["openssl", "pkey", "-noout", "-text", "-in", pki.ca_key],
                         capture_output=True, text=True).stdout
    check("P-256" in key or "prime256v1" in key, "CA key is EC P-256")
    ss, _ = pki.self_signed("rogue.example")
    r = subprocess.run(["openssl", "verify", "-CAfile", pki.ca_crt, ss],
                       capture_output=True, text=True)
    check(r.returncode != 0, "Pki.self_signed does not verify against the CA")


def direct_tls_sessions(prosody_log):
    """Prosody s2sin sessions that were encrypted without STARTTLS."""
    enc = set(re.findall(r"(s2sin[0-9a-f]+)\s+info\s+Stream encrypted", prosody_log))
    starttls = set(re.findall(r"(s2sin[0-9a-f]+)\s+debug\s+TLS negotiation started",
                              prosody_log))
    return enc - starttls


def main():
    need_peers(("prosody", "prosodyctl", "ejabberdctl", "dnsmasq", "openssl", "setpriv",
                 "unshare"))

    d = tmpdir()
    note(f"work dir {d}")
    servers, clients, dns = [], [], None
    failed = True
    try:
        pki = Pki(d / "pki")
        check_pki(pki)
        fab = Prosody(d / "fab", "fabrikam.example",
                      pki.leaf("fabrikam.example", dns=["fabrikam.example"]), None,
                      pki.ca_crt, options={"dialback": False, "s2s_secure_auth": True,
                                           "s2s_require_encryption": True})
        win = Ejabberd(d / "win", "wingtip.example",
                       pki.leaf("wingtip.example", dns=["wingtip.example"]), None,
                       pki.ca_crt, options={"s2s_use_starttls": "required",
                                            "dialback": False})
        tail = Prosody(d / "tail", "tailspin.example", None, None, None,
                       options={"tls": False, "dialback": True})
        north = Ejabberd(d / "north", "northwind.example", None, None, None,
                         options={"tls": False, "s2s_use_starttls": "false",
                                  "dialback": True})
        adatum = Prosody(d / "adatum", "adatum.example", pki, None, pki.ca_crt,
                         options={"dialback": False, "s2s_direct_tls": True})
        servers = [fab, win, tail, north, adatum]
        srv, hosts = [], {}
        for s in servers:
            srv += s.srv_records()
            hosts.update(s.hosts_entry())
        dns = Dnsmasq(d / "dns", srv=srv, hosts=hosts)
        note(f"pki + dnsmasq on {dns.server}; " + ", ".join(
            f"{s.domain} {s.host} s2s {s.s2s_port} c2s {s.c2s_port} uid {s.uid}"
            for s in servers))

        parallel(*[lambda s=s: s.start(dns) for s in servers])
        note(f"{len(servers)} servers started")
        parallel(lambda: fab.add_user("alice", "pw-a"), lambda: win.add_user("carol", "pw-c"),
                 lambda: tail.add_user("dave", "pw-d"), lambda: north.add_user("erin", "pw-e"),
                 lambda: adatum.add_user("frank", "pw-f"))
        note("users registered")

        alice, carol, dave, erin, frank = clients = parallel(
            lambda: Client("alice@fabrikam.example", "pw-a", fab.host, fab.c2s_port).connect(),
            lambda: Client("carol@wingtip.example", "pw-c", win.host, win.c2s_port).connect(),
            lambda: Client("dave@tailspin.example", "pw-d", tail.host, tail.c2s_port).connect(),
            lambda: Client("erin@northwind.example", "pw-e", north.host,
                           north.c2s_port).connect(),
            lambda: Client("frank@adatum.example", "pw-f", adatum.host,
                           adatum.c2s_port).connect())
        note(f"{len(clients)} clients have sessions")

        # -- TLS pair, both directions
        ping_ok(alice, "wingtip.example")
        ping_ok(carol, "fabrikam.example")
        exchange(alice, carol)
        win.wait_log(r"Accepted inbound s2s EXTERNAL authentication fabrikam\.example -> "
                     r"wingtip\.example", 5)
        win.wait_log(r"\(tls\|[^)]*\) Accepted outbound s2s EXTERNAL authentication "
                     r"wingtip\.example -> fabrikam\.example", 5)
        fab.wait_log(r"SASL EXTERNAL with wingtip\.example succeeded", 5)
        fab.wait_log(r"Accepting SASL EXTERNAL identity from wingtip\.example", 5)
        check("certificate chain validation result: invalid" not in fab.log()
              and "certificate chain validation result: valid" in fab.log(),
              "prosody validated ejabberd's certificate chain (private CA)")
        check("dialback" not in win.log().lower(),
              "fabrikam <-> wingtip: STARTTLS + SASL EXTERNAL both ways, no dialback")

        # -- plaintext dialback pair, both directions
        ping_ok(dave, "northwind.example")
        ping_ok(erin, "tailspin.example")
        exchange(dave, erin)
        north.wait_log(r"\(tcp\|[^)]*\) Accepted inbound s2s dialback authentication "
                       r"tailspin\.example -> northwind\.example", 5)
        north.wait_log(r"\(tcp\|[^)]*\) Accepted outbound s2s dialback authentication "
                       r"northwind\.example -> tailspin\.example", 5)
        check("TLS handshake" not in tail.log(),
              "tailspin <-> northwind: plaintext dialback both ways, no TLS")

        # -- direct TLS (_xmpps-server) towards adatum, STARTTLS back
        ping_ok(carol, "adatum.example")
        ping_ok(frank, "wingtip.example")
        exchange(frank, carol)
        check(re.search(r"query\[SRV\] _xmpps-server\._tcp\.adatum\.example", dns.log()),
              "dnsmasq answered _xmpps-server._tcp.adatum.example")
        check(direct_tls_sessions(adatum.log()),
              "wingtip -> adatum over direct TLS (no STARTTLS on the s2sin stream)")
        adatum.wait_log(r"Accepting SASL EXTERNAL identity from wingtip\.example", 5)
        adatum.wait_log(r"SASL EXTERNAL with wingtip\.example succeeded", 5)
        check(not direct_tls_sessions(fab.log()), "wingtip -> fabrikam used STARTTLS")

        # -- mismatched policies fail with an error
        (ok1, err1), (ok2, err2) = parallel(lambda: dave.ping("wingtip.example", timeout=20),
                                            lambda: alice.ping("northwind.example", timeout=20))
        check(not ok1 and err1 not in (None, "timeout"),
              f"plaintext tailspin -> wingtip (TLS required) refused: {err1}")
        check(not ok2 and err2 not in (None, "timeout"),
              f"fabrikam (encryption required) -> plaintext northwind refused: {err2}")
        failed = False
    finally:
        for c in clients:
            c.disconnect()
        t = time.monotonic()
        stop_all(*servers, dns)
        note(f"stopped everything in {time.monotonic() - t:.2f} s")
        if failed:
            for s in servers:
                print(f"--- {s.kind} {s.domain} log tail ---", file=sys.stderr)
                print("\n".join(s.log().splitlines()[-30:]), file=sys.stderr)

    # -- nothing may be left running
    left = subprocess.run(["pgrep", "-af", str(d)], capture_output=True, text=True).stdout
    for s in servers:
        left += "".join(f"uid {s.uid}: pid {p}\n" for p in peers.pids_of_uid(s.uid))
    check(not left.strip(), "no process left (pgrep -f workdir, uid sweep: prosody, beam, "
          "epmd, dnsmasq)" + ("" if not left.strip() else ":\n" + left))
    shutil.rmtree(d, ignore_errors=True)
    note("PASS")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, PeerError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
