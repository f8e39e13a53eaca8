"""The router spoken byte by byte (spec §6, §7): xfed between a fake internal server
(XEP-0114 links) and fake partner servers (s2s with dialback, XEP-0198), where every
byte can be checked and failures provoked on demand: verbatim forwarding, default-deny,
every bounce condition, partner-type policy with invites persisted in the store,
<status/> stripping, link reconnects, live partner removal, log-message-bodies.

Usage: test_route_bytes.py BUILD_DIR"""
import os
from pathlib import Path
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "s2s"))
sys.path.insert(0, HERE)
from fakes import FakeInternal, FakePartner  # noqa: E402
from peers import Dnsmasq, Pki, free_port  # noqa: E402
from test_s2s_streams import Wire  # noqa: E402
from xfedsetup import Xfed  # noqa: E402

BUILD = None
LOCAL = "contoso.example"
KEY = "good-key-0123456789"
SECRET = "c0mp0nent-s3cret"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"


class RouteBytes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xfed-route-")
        pki = cls.pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.internal = FakeInternal(SECRET)
        cls.fab = FakePartner("fabrikam.example", KEY, sm=True)
        cls.lit = FakePartner("litware.example", KEY)
        cls.tempo = FakePartner("tempo.example", KEY)
        cls.silent = FakePartner("silent.example", KEY, sm=True, ack=False)
        # A server that accepts TCP and never speaks: the stream opens, then times out.
        cls.mute = socket.socket()
        cls.mute.bind(("127.0.0.1", 0))
        cls.mute.listen(16)
        srv = []
        for p in (cls.fab, cls.lit, cls.tempo, cls.silent):
            srv.append((f"_xmpp-server._tcp.{p.domain}", f"xmpp.{p.domain}", p.port, 0, 5))
        srv.append(("_xmpp-server._tcp.chat.fabrikam.example", "xmpp.fabrikam.example",
                    cls.fab.port, 0, 5))
        # gone.example (added and removed by a test) answers through tempo's fake server
        srv.append(("_xmpp-server._tcp.gone.example", "xmpp.tempo.example", cls.tempo.port, 0, 5))
        cls.dns = Dnsmasq(os.path.join(cls.tmp, "dns"), srv=srv,
                          hosts={f"xmpp.{p.domain}": "127.0.0.1"
                                 for p in (cls.fab, cls.lit, cls.tempo, cls.silent)})
        x = cls.x = Xfed(BUILD, os.path.join(cls.tmp, "xfed"), {LOCAL: pki.leaf(LOCAL)},
                         cls.dns.server, pki.ca_crt)
        x.rest += ["[internal fake]", "host = 127.0.0.1", f"port = {cls.internal.port}",
                   f"secret = {SECRET}"]
        row17 = ("not-supported", "not-supported", True)
        x.partner("fabrikam.example", *row17, "--additional-domains", "chat.fabrikam.example",
                  "--partner-type", "federated")
        x.partner("litware.example", *row17, "--partner-type", "public-unverified")
        x.partner("tempo.example", *row17, "--partner-type", "federated")
        x.partner("silent.example", *row17, "--partner-type", "federated")
        x.partner("nowhere.example", *row17, "--proxy-fqdn", f"127.0.0.1:{free_port('tcp')}")
        x.partner("stalled.example", *row17, "--proxy-fqdn",
                  f"127.0.0.1:{cls.mute.getsockname()[1]}")
        x.ctl("gateway", "set", "--stream-establishment-timeout", "5",
              "--dialback-passphrase", "route-test-passphrase")
        x.start()
        for d in ("fabrikam.example", "chat.fabrikam.example", "litware.example",
                  "tempo.example", "silent.example", "nowhere.example", "stalled.example"):
            cls.internal.wait_link(d, 10)

    @classmethod
    def tearDownClass(cls):
        proc = cls.x.proc
        rc = cls.x.stop()
        for f in (cls.internal, cls.fab, cls.lit, cls.tempo, cls.silent):
            f.stop()
        cls.mute.close()
        cls.dns.stop()
        if os.environ.get("XFED_TEST_LOG"):  # a file for the whole log
            Path(os.environ["XFED_TEST_LOG"]).write_text(proc.log())
        if rc != 0:
            print(proc.log()[-20000:])
        assert rc == 0, f"xfed exited with {rc} (sanitizer report or crash?)"
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers --------------------------------------------------------------------

    def partner_stream(self, frm):
        """An inbound stream from partner `frm`, authenticated by dialback."""
        w = Wire(self.x.port)
        self.addCleanup(w.close)
        w.header(frm)
        w.expect("</stream:features>")
        w.send(f"<db:result from='{frm}' to='{LOCAL}'>{KEY}</db:result>")
        w.expect(rf"to='{frm}' type='valid'/>")
        return w

    def assertLogged(self, text, timeout=5):
        self.assertIsNotNone(self.x.proc.wait_for(text, timeout),
                             f"no log line with {text!r}:\n{self.x.proc.log()[-3000:]}")

    # ---- links ----------------------------------------------------------------------

    def test_links_one_per_partner_domain_with_handshake(self):
        with self.internal.cond:
            hs = dict(self.internal.handshakes)
            headers = list(self.internal.headers)
        for d in ("fabrikam.example", "chat.fabrikam.example", "litware.example"):
            self.assertTrue(hs.get(d), f"no good handshake for {d}: {hs}")
        h = [h for h in headers if "to='chat.fabrikam.example'" in h][0]
        self.assertIn("xmlns='jabber:component:accept'", h)
        self.assertGreaterEqual(self.x.metric("xfed_internal_links_up"), 7)

    # ---- partner -> internal ----------------------------------------------------------

    def test_partner_to_internal_verbatim(self):
        w = self.partner_stream("fabrikam.example")
        st = ("<message from=\"bob@fabrikam.example/r\" to='alice@contoso.example/w' id='v1' "
              "type='chat'><body>hi &amp; bye</body><x xmlns='urn:example'/></message>")
        w.send(st)
        got = self.internal.wait_stanza(r"id='v1'")
        self.assertEqual(got, st, "the stanza was not forwarded byte for byte")
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_routed_total",
                                              partner="fabrikam.example", direction="in"), 1)

    def test_additional_domain_uses_its_own_link(self):
        w = self.partner_stream("chat.fabrikam.example")
        w.send("<message from='room@chat.fabrikam.example' to='alice@contoso.example' "
               "id='ad1'><body>x</body></message>")
        self.internal.wait_stanza(r"id='ad1'")
        with self.internal.cond:
            doms = [d for d, s in self.internal.received if "id='ad1'" in s]
        self.assertEqual(doms, ["chat.fabrikam.example"])

    # ---- internal -> partner ----------------------------------------------------------

    def test_internal_to_partner_with_stream_management(self):
        self.internal.send("fabrikam.example",
                           "<message from='alice@contoso.example/w' to='bob@fabrikam.example' "
                           "id='o1' xmlns='jabber:component:accept'><body>out</body></message>")
        got = self.fab.wait_stanza(r"id=.o1.")
        self.assertNotIn("jabber:component:accept", got,
                         "the stanza kept the component namespace on an s2s stream")
        self.assertIn("<body>out</body>", got)
        self.assertLogged("stream management on")
        deadline = time.monotonic() + 5
        while self.x.metric("xfed_sm_unacked_stanzas") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.x.metric("xfed_sm_unacked_stanzas"), 0)
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_routed_total",
                                              partner="fabrikam.example", direction="out"), 1)

    def test_unlisted_domain_not_allowed(self):
        self.internal.send("fabrikam.example",
                           "<message from='alice@contoso.example/w' to='eve@unlisted.example' "
                           "id='u1'><body>leak?</body></message>")
        err = self.internal.wait_stanza(r"id='u1'")
        self.assertIn("type='error'", err)
        self.assertIn(f"<not-allowed xmlns='{ERR}'/>", err)
        self.assertIn("unlisted.example", err)  # the text names the domain
        self.assertIn("from='eve@unlisted.example' to='alice@contoso.example/w'", err)
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_refused_total",
                                              reason="not-a-partner"), 1)

    def test_not_from_a_local_domain(self):
        self.internal.send("fabrikam.example",
                           "<message from='mallory@elsewhere.example' to='bob@fabrikam.example' "
                           "id='nl1'/>")
        err = self.internal.wait_stanza(r"id='nl1'")
        self.assertIn(f"<not-allowed xmlns='{ERR}'/>", err)

    def test_remote_server_not_found(self):
        self.internal.send("nowhere.example",
                           "<iq type='get' from='alice@contoso.example/w' to='nowhere.example' "
                           "id='rsnf1'><ping xmlns='urn:xmpp:ping'/></iq>")
        err = self.internal.wait_stanza(r"id='rsnf1'")
        self.assertIn(f"<remote-server-not-found xmlns='{ERR}'/>", err)
        self.assertIn("<error type='cancel'>", err)
        self.assertGreaterEqual(self.x.metric("xfed_bounces_total",
                                              condition="remote-server-not-found"), 1)

    def test_remote_server_timeout(self):
        self.internal.send("stalled.example",
                           "<message from='alice@contoso.example/w' to='x@stalled.example' "
                           "id='rst1'><body>b</body></message>")
        err = self.internal.wait_stanza(r"id='rst1'", timeout=15)
        self.assertIn(f"<remote-server-timeout xmlns='{ERR}'/>", err)
        self.assertIn("<error type='wait'>", err)

    def test_errors_are_never_bounced(self):
        before = self.x.metric("xfed_bounces_total", condition="dropped")
        self.internal.send("nowhere.example",
                           "<message type='error' from='alice@contoso.example/w' "
                           "to='x@nowhere.example' id='eb1'/>")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and \
                self.x.metric("xfed_bounces_total", condition="dropped") <= before:
            time.sleep(0.1)
        self.assertGreater(self.x.metric("xfed_bounces_total", condition="dropped"), before)
        with self.internal.cond:
            self.assertFalse([s for d, s in self.internal.received if "id='eb1'" in s])

    def test_unacknowledged_stanzas_bounced_when_stream_fails(self):
        for i in range(3):
            self.internal.send("silent.example",
                               f"<message from='alice@contoso.example/w' to='s@silent.example' "
                               f"id='sm{i}'><body>{i}</body></message>")
        self.silent.wait(lambda: len(self.silent.received) >= 3, 10, "3 stanzas at silent")
        self.silent.stop()  # the partner crashes without acknowledging
        for i in range(3):
            err = self.internal.wait_stanza(rf"id='sm{i}'[^>]*>.*remote-server-timeout")
            self.assertIn("type='error'", err)

    # ---- partner types --------------------------------------------------------------

    def test_status_removed_for_public_partners_only(self):
        pres = ("<presence from='alice@contoso.example/w' to='{to}' id='{id}'><show>away</show>"
                "<status>in a meeting</status></presence>")
        self.internal.send("litware.example", pres.format(to="carol@litware.example", id="st1"))
        self.internal.send("fabrikam.example", pres.format(to="bob@fabrikam.example", id="st2"))
        pub = self.lit.wait_stanza(r"id=.st1.")
        fed = self.fab.wait_stanza(r"id=.st2.")
        self.assertNotIn("status", pub)
        self.assertIn("<show>away</show>", pub)
        self.assertIn("<status>in a meeting</status>", fed)

    def test_public_unverified_needs_an_invite(self):
        db = self.x.store
        w = self.partner_stream("litware.example")
        w.send("<message from='dave@litware.example/r' to='alice@contoso.example' id='pu1'>"
               "<body>spam</body></message>")
        err = self.lit.wait_stanza(r"id=.pu1.")
        self.assertIn(f"<service-unavailable xmlns='{ERR}'/>", err)
        w.send("<presence type='subscribe' from='dave@litware.example' "
               "to='alice@contoso.example' id='pu2'/>")
        unsub = self.lit.wait_stanza(r"type=.unsubscribed.[^>]*to=.dave@litware.example")
        self.assertIn("from='alice@contoso.example'", unsub)
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_refused_total",
                                              partner="litware.example", reason="no-invite"), 2)
        with self.internal.cond:
            self.assertFalse([s for d, s in self.internal.received if "pu1" in s or "pu2" in s])
        # alice invites dave: now dave's stanzas pass, and the invite is in the store.
        self.internal.send("litware.example", "<presence type='subscribe' "
                           "from='alice@contoso.example' to='dave@litware.example' id='pu3'/>")
        self.lit.wait_stanza(r"id=.pu3.")
        self.assertLogged("invite alice@contoso.example -> dave@litware.example recorded")
        w.send("<message from='dave@litware.example/r' to='alice@contoso.example/w' id='pu4'>"
               "<body>hello</body></message>")
        self.internal.wait_stanza(r"id='pu4'")

        def stored():
            with sqlite3.connect(db) as c:
                return c.execute("SELECT local_jid, remote_jid FROM invites").fetchall()
        deadline = time.monotonic() + 3
        while ("alice@contoso.example", "dave@litware.example") not in stored() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn(("alice@contoso.example", "dave@litware.example"), stored())
        self.assertGreaterEqual(self.x.metric("xfed_invites_stored"), 1)
        # unsubscribed deletes it: dave is refused again.
        self.internal.send("litware.example", "<presence type='unsubscribed' "
                           "from='alice@contoso.example' to='dave@litware.example' id='pu5'/>")
        self.lit.wait_stanza(r"id=.pu5.")
        self.assertLogged("invite alice@contoso.example -> dave@litware.example deleted")
        w.send("<message from='dave@litware.example/r' to='alice@contoso.example' id='pu6'/>")
        self.lit.wait_stanza(r"id=.pu6.")  # the service-unavailable error
        deadline = time.monotonic() + 3
        while stored() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertNotIn(("alice@contoso.example", "dave@litware.example"), stored())

    # ---- failures and changes -------------------------------------------------------

    def test_internal_server_down_then_back(self):
        w = self.partner_stream("tempo.example")
        self.internal.stop()
        self.internal.wait(lambda: "tempo.example" not in self.internal.links, 5, "link down")
        deadline = time.monotonic() + 5
        while self.x.metric("xfed_internal_links_up") and time.monotonic() < deadline:
            time.sleep(0.05)
        w.send("<message from='t@tempo.example/r' to='alice@contoso.example' id='down1'>"
               "<body>anyone?</body></message>")
        err = self.tempo.wait_stanza(r"id=.down1.")
        self.assertIn(f"<service-unavailable xmlns='{ERR}'/>", err)
        self.internal.listen()
        self.internal.wait_link("tempo.example", 15)
        w.send("<message from='t@tempo.example/r' to='alice@contoso.example' id='down2'/>")
        self.internal.wait_stanza(r"id='down2'")
        self.assertLogged("link fake tempo.example: up")

    def test_log_message_bodies(self):
        w = self.partner_stream("fabrikam.example")
        w.send("<message from='bob@fabrikam.example/r' to='alice@contoso.example' id='lb1'>"
               "<body>hidden-body-4711</body></message>")
        self.internal.wait_stanza(r"id='lb1'")
        self.assertLogged("lb1")  # the debug line is there, without the body
        self.assertNotIn("hidden-body-4711", self.x.proc.log())
        self.x.ctl("gateway", "set", "--log-message-bodies", "true")
        try:
            time.sleep(1.6)  # the store is polled every second
            w.send("<message from='bob@fabrikam.example/r' to='alice@contoso.example' "
                   "id='lb2'><body>shown-body-4712</body></message>")
            self.internal.wait_stanza(r"id='lb2'")
            self.assertLogged("shown-body-4712")
        finally:
            self.x.ctl("gateway", "set", "--log-message-bodies", "false")

    def test_partner_removed_live(self):
        self.x.partner("gone.example", "not-supported", "not-supported", True)
        self.internal.wait_link("gone.example", 5)
        w = self.partner_stream("gone.example")
        t0 = time.monotonic()
        self.x.ctl("partner", "remove", "gone.example")
        w.expect(r"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                 timeout=3)
        self.internal.wait(lambda: "gone.example" not in self.internal.links, 3, "link closed")
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertIn("no longer a federated partner", w.buf)

    def test_metrics_pass_promtool(self):
        self.x.check_metrics(self, ("xfed_stanzas_routed_total", "xfed_bounces_total",
                                    "xfed_internal_links_up", "xfed_invites_stored"))


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
