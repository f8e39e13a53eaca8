"""xfed federating with real servers, both directions, per matrix row.

  contoso.example   xfed (the local domain), SRV via dnsmasq
  fabrikam.example  stock Prosody (lua-unbound forwarding to dnsmasq)
  wingtip.example   stock ejabberd (inetrc nameserver, DNS-only certificate)

For each case a client on the partner server pings contoso.example: the
partner opens a stream to xfed (inbound: xfed authenticates it per the row)
and xfed answers over its own stream to the partner (outbound: xfed
authenticates per the row). The test asserts the pong and the method xfed
logged and counted for each direction. Mismatches must be refused with the
right error. All on 127.0.0.0/8, everything started and stopped here.

Usage: test_federation.py BUILD_DIR   (root; exit 77 when a peer is missing)"""
import os
import shutil
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
import peers  # noqa: E402
from peers import Client, Dnsmasq, Ejabberd, Pki, Prosody, free_port, tmpdir  # noqa: E402
from xfedsetup import Xfed  # noqa: E402

BUILD = None
LOCAL = "contoso.example"
ROWS = {  # row: (tls, sasl, dialback)
    2: ("required", "required", False),
    7: ("required", "optional", True),
    8: ("required", "optional", False),
    9: ("optional", "optional", True),
    13: ("required", "not-supported", True),
    15: ("optional", "not-supported", True),
    17: ("not-supported", "not-supported", True),
}


class Federation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tmpdir("xfed-interop-")
        cls.pki = Pki(cls.d / "pki")
        cls.runs = 0
        # Fixed addresses for the whole run, so DNS never changes under a cache.
        cls.fab_host, cls.win_host = peers.loopback_host(), peers.loopback_host()
        while cls.win_host == cls.fab_host:
            cls.win_host = peers.loopback_host()
        cls.fab_ports = (free_port("tcp", cls.fab_host), free_port("tcp", cls.fab_host))
        cls.win_ports = (free_port("tcp", cls.win_host), free_port("tcp", cls.win_host))
        cls.unl_host = peers.loopback_host()
        cls.unl_ports = (free_port("tcp", cls.unl_host), free_port("tcp", cls.unl_host))
        cls.x = Xfed(BUILD, cls.d / "xfed", {LOCAL: cls.pki.leaf(LOCAL, dns=[LOCAL])}, None,
                     cls.pki.ca_crt)
        srv = [("_xmpp-server._tcp.contoso.example", "xfed.contoso.example", cls.x.port, 0, 5),
               ("_xmpp-server._tcp.fabrikam.example", "xmpp.fabrikam.example",
                cls.fab_ports[0], 0, 5),
               ("_xmpp-server._tcp.wingtip.example", "xmpp.wingtip.example",
                cls.win_ports[0], 0, 5),
               ("_xmpp-server._tcp.unlisted.example", "xmpp.unlisted.example",
                cls.unl_ports[0], 0, 5)]
        # adatum.example: Prosody with a direct-TLS port (_xmpps-server, XEP-0368).
        cls.adatum = Prosody(cls.d / "adatum", "adatum.example",
                             cls.pki.leaf("adatum.example", dns=["adatum.example"]), None,
                             cls.pki.ca_crt, options={"s2s_direct_tls": True, "dialback": False},
                             host=peers.loopback_host())
        srv += cls.adatum.srv_records()
        hosts = {**cls.adatum.hosts_entry(), "xfed.contoso.example": "127.0.0.1", "xmpp.fabrikam.example": cls.fab_host,
                 "xmpp.wingtip.example": cls.win_host, "xmpp.unlisted.example": cls.unl_host}
        cls.dns = Dnsmasq(cls.d / "dns", srv=srv, hosts=hosts)
        cls.x.dns_server = cls.dns.server
        cls.x.partner("fabrikam.example", *ROWS[7])
        cls.x.partner("wingtip.example", *ROWS[7])
        cls.x.ctl("gateway", "set", "--stream-establishment-timeout", "15")

    @classmethod
    def tearDownClass(cls):
        cls.x.stop()
        cls.dns.stop()
        if os.environ.get("KEEP_TMP") is None:
            shutil.rmtree(cls.d, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------

    def peer(self, kind, opts, cert="valid"):
        """A fresh partner server (new data, same addresses) with a user."""
        Federation.runs += 1
        n = Federation.runs
        if kind == "prosody":
            domain, host, ports, cls_ = ("fabrikam.example", self.fab_host, self.fab_ports,
                                         Prosody)
        elif kind == "ejabberd":
            domain, host, ports, cls_ = ("wingtip.example", self.win_host, self.win_ports,
                                         Ejabberd)
        else:
            domain, host, ports, cls_ = ("unlisted.example", self.unl_host, self.unl_ports,
                                         Prosody)
        if not opts.get("tls", True):
            pair = None
        elif cert == "valid":
            pair = self.pki.leaf(domain, dns=[domain])
        else:
            pair = self.pki.self_signed(domain)
        s = cls_(self.d / f"{kind}{n}", domain, pair, None, self.pki.ca_crt, s2s_port=ports[0],
                 c2s_port=ports[1], options=dict(opts), host=host)
        s.start(self.dns)
        self.addCleanup(s.stop)
        s.add_user("user", "pw")
        c = Client(f"user@{domain}", "pw", host, ports[1]).connect()
        self.addCleanup(c.disconnect)
        return s, c

    def stop_xfed(self):
        proc = self.x.proc
        rc = self.x.stop()
        if rc not in (0, None):  # a crash or a sanitizer report
            raise AssertionError(f"xfed exited with {rc}:\n{proc.log()[-6000:]}")

    def xfed(self, domain, row, *extra):
        self.stop_xfed()
        self.x.partner(domain, *ROWS[row], *extra)
        self.x.start()

    def assert_method(self, domain, direction, method, timeout=10):
        arrow = "<-" if direction == "in" else "->"
        line = self.x.proc.wait_line(f"{LOCAL}{arrow}{domain}: authenticated", timeout)
        self.assertIsNotNone(line, f"no {direction} authentication with {domain}:\n" +
                             self.x.proc.log()[-4000:])
        self.assertIn(f"method={method}", line)

    def federate(self, kind, row, opts, method_in, method_out):
        domain = "fabrikam.example" if kind == "prosody" else "wingtip.example"
        self.xfed(domain, row)
        before = self.x.metric("xfed_authentications_total", partner=domain, method=method_in,
                               result="success")
        _, client = self.peer(kind, opts)
        ok, err = client.ping(LOCAL, timeout=20)
        self.assertTrue(ok, f"ping {domain} -> {LOCAL} failed ({err}):\n" +
                        self.x.proc.log()[-4000:])
        self.assert_method(domain, "in", method_in)
        self.assert_method(domain, "out", method_out)
        self.assertGreater(self.x.metric("xfed_authentications_total", partner=domain,
                                         method=method_in, result="success"), before)

    def refused(self, kind, row, opts, cert, text, extra=()):
        domain = {"prosody": "fabrikam.example", "ejabberd": "wingtip.example",
                  "unlisted": "unlisted.example"}[kind]
        if kind != "unlisted":
            self.xfed(domain, row, *extra)
        else:
            self.stop_xfed()
            self.x.start()
        _, client = self.peer(kind, opts, cert=cert)
        ok, err = client.ping(LOCAL, timeout=20)
        self.assertFalse(ok, "the mismatched peer got through")
        self.assertIsNotNone(self.x.proc.wait_for(text, 10),
                             f"no {text!r} in xfed's log:\n" + self.x.proc.log()[-4000:])
        self.assertIsNone(self.x.proc.wait_for(f"{LOCAL}<-{domain}: authenticated", 0.1))

    # ---- Prosody as fabrikam.example ---------------------------------------------------

    P_TLS_SASL = {"s2s_secure_auth": True, "s2s_require_encryption": True, "dialback": False}
    P_TLS_DB = {"s2s_secure_auth": False, "s2s_require_encryption": True, "dialback": True}
    P_TCP_DB = {"tls": False, "dialback": True}

    def test_prosody_row02_sasl(self):
        self.federate("prosody", 2, self.P_TLS_SASL, "sasl_tls", "sasl_tls")

    def test_prosody_row07_sasl_preferred(self):
        self.federate("prosody", 7, self.P_TLS_DB, "sasl_tls", "sasl_tls")

    def test_prosody_row09(self):
        self.federate("prosody", 9, self.P_TLS_DB, "sasl_tls", "sasl_tls")

    def test_prosody_row13_dialback_tls(self):
        self.federate("prosody", 13, self.P_TLS_DB, "dialback_tls", "dialback_tls")

    def test_prosody_row15_dialback_tls(self):
        self.federate("prosody", 15, self.P_TLS_DB, "dialback_tls", "dialback_tls")

    def test_prosody_row17_dialback_tcp(self):
        self.federate("prosody", 17, self.P_TCP_DB, "dialback_tcp", "dialback_tcp")

    # ---- ejabberd as wingtip.example -------------------------------------------------

    E_REQ_SASL = {"s2s_use_starttls": "required", "dialback": False}
    E_REQ_DB = {"s2s_use_starttls": "required", "dialback": True}
    E_OPT_DB = {"s2s_use_starttls": "optional", "dialback": True}
    E_TCP_DB = {"tls": False, "s2s_use_starttls": "false", "dialback": True}

    def test_ejabberd_row02_sasl(self):
        self.federate("ejabberd", 2, self.E_REQ_SASL, "sasl_tls", "sasl_tls")

    def test_ejabberd_row07(self):
        self.federate("ejabberd", 7, self.E_REQ_DB, "sasl_tls", "sasl_tls")

    def test_ejabberd_row09(self):
        self.federate("ejabberd", 9, self.E_OPT_DB, "sasl_tls", "sasl_tls")

    def test_ejabberd_row13_dialback_tls(self):
        self.federate("ejabberd", 13, self.E_REQ_DB, "dialback_tls", "dialback_tls")

    def test_ejabberd_row15_dialback_tls(self):
        self.federate("ejabberd", 15, self.E_OPT_DB, "dialback_tls", "dialback_tls")

    def test_ejabberd_row17_dialback_tcp(self):
        self.federate("ejabberd", 17, self.E_TCP_DB, "dialback_tcp", "dialback_tcp")

    # ---- direct TLS (XEP-0368) outbound ----------------------------------------------

    def test_prosody_direct_tls(self):
        self.xfed("adatum.example", 7)
        self.adatum.start(self.dns)
        self.addCleanup(self.adatum.stop)
        self.adatum.add_user("user", "pw")
        c = Client("user@adatum.example", "pw", self.adatum.host, self.adatum.c2s_port).connect()
        self.addCleanup(c.disconnect)
        ok, err = c.ping(LOCAL, timeout=20)
        self.assertTrue(ok, f"ping failed ({err}):\n" + self.x.proc.log()[-4000:])
        self.assertIsNotNone(self.x.proc.wait_for("contoso.example->adatum.example: connected "
                                                  "(direct TLS)", 5), self.x.proc.log()[-3000:])
        self.assert_method("adatum.example", "out", "sasl_tls")
        self.assert_method("adatum.example", "in", "sasl_tls")

    # ---- mismatches -------------------------------------------------------------------

    def test_sasl_only_row_without_valid_certificate(self):
        self.refused("prosody", 2, self.P_TLS_DB, "untrusted",
                     "certificate does not prove the sending domain")

    def test_plaintext_peer_on_tls_required_row(self):
        self.refused("prosody", 7, self.P_TCP_DB, None,
                     "policy-violation: dialback is not allowed by this partner's settings on "
                     "this plaintext stream")

    def test_dialback_peer_on_row_8(self):
        self.refused("ejabberd", 8, self.E_REQ_DB, "untrusted",
                     "policy-violation: the certificate does not prove the sending domain (chain "
                     "or name), and dialback is not allowed for this partner")

    def test_unlisted_domain(self):
        self.refused("unlisted", 7, self.P_TLS_DB, "valid",
                     "'unlisted.example' is not a federated partner domain")


def main():
    global BUILD
    BUILD = sys.argv.pop(1)
    if os.geteuid() != 0:
        print("SKIP: must run as root", file=sys.stderr)
        sys.exit(77)
    for tool in ("prosody", "ejabberdctl", "dnsmasq"):
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            print(f"SKIP: {tool} is not installed (tools/deps.sh)", file=sys.stderr)
            sys.exit(77)
    peers.quiet_slixmpp()
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
