"""xfed routing between a real internal server and real partners (issue: routing).

  contoso.example   internal stock Prosody (no s2s of its own), configured with the
                    snippet `xfedctl internal-config --prosody` prints; alice
  xfed              the edge: XEP-0114 links to the internal Prosody, s2s to partners
  fabrikam.example  partner stock Prosody (federated, XEP-0198, offline storage); bob
  wingtip.example   partner stock ejabberd (public-unverified); carol

Messages both ways with each partner, presence subscription per partner type with
invites that survive an xfed restart, the status note seen by the federated partner
only, default-deny, a partner removed live, the internal server restarted, and a
partner server restarted in the middle of N messages (each delivered or bounced).
All on 127.0.0.0/8, everything started and stopped here.

Usage: test_routing.py BUILD_DIR   (exit 77 when a peer is missing)"""
import os
import shutil
import sqlite3
import subprocess
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
FAB, WIN = "fabrikam.example", "wingtip.example"
SECRET = "internal-link-s3cret"
N = int(os.environ.get("XFED_ROUTING_N", "1000"))


class Routing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for prog in ("prosody", "ejabberdctl", "dnsmasq"):
            if not shutil.which(prog) and not os.path.exists(f"/usr/sbin/{prog}"):
                raise unittest.SkipTest(f"{prog} missing")
        d = cls.d = tmpdir("xfed-routing-")
        pki = cls.pki = Pki(d / "pki")
        cls.int_host = peers.loopback_host()
        cls.fab_host = peers.loopback_host()
        cls.win_host = peers.loopback_host()
        cls.int_ports = (free_port("tcp", cls.int_host), free_port("tcp", cls.int_host))
        cls.fab_ports = (free_port("tcp", cls.fab_host), free_port("tcp", cls.fab_host))
        cls.win_ports = (free_port("tcp", cls.win_host), free_port("tcp", cls.win_host))
        x = cls.x = Xfed(BUILD, d / "xfed", {LOCAL: pki.leaf(LOCAL, dns=[LOCAL])}, None,
                         pki.ca_crt)
        x.rest += ["[internal prosody1]", f"host = {cls.int_host}",
                   f"port = {cls.int_ports[1]}", f"secret = {SECRET}"]
        x.write_conf()
        srv = [("_xmpp-server._tcp.contoso.example", "xfed.contoso.example", x.port, 0, 5),
               ("_xmpp-server._tcp.fabrikam.example", "xmpp.fabrikam.example",
                cls.fab_ports[0], 0, 5),
               ("_xmpp-server._tcp.wingtip.example", "xmpp.wingtip.example",
                cls.win_ports[0], 0, 5)]
        hosts = {"xfed.contoso.example": "127.0.0.1", "xmpp.fabrikam.example": cls.fab_host,
                 "xmpp.wingtip.example": cls.win_host}
        cls.dns = Dnsmasq(d / "dns", srv=srv, hosts=hosts)
        x.dns_server = cls.dns.server
        x.partner(FAB, "required", "optional", True, "--partner-type", "federated")
        x.partner(WIN, "required", "optional", True, "--partner-type", "public-unverified")
        x.ctl("gateway", "set", "--stream-establishment-timeout", "15")
        # The internal server, configured with what xfedctl prints.
        snippet = subprocess.run([str(Path(BUILD) / "tools" / "xfedctl"), "--config", x.conf,
                                  "internal-config", "--prosody"], capture_output=True,
                                 text=True, check=True).stdout
        cls.snippet = snippet
        cls.internal = Prosody(d / "internal", LOCAL, None, None, None,
                               s2s_port=cls.int_ports[0], c2s_port=free_port("tcp", cls.int_host),
                               options={"tls": False, "s2s": False,
                                        "component_snippet": snippet},
                               host=cls.int_host)
        cls.fab = Prosody(d / "fabrikam", FAB, pki.leaf(FAB, dns=[FAB]), None, pki.ca_crt,
                          s2s_port=cls.fab_ports[0], c2s_port=cls.fab_ports[1],
                          options={"modules": ("smacks", "offline")}, host=cls.fab_host)
        cls.win = Ejabberd(d / "wingtip", WIN, pki.leaf(WIN, dns=[WIN]), None, pki.ca_crt,
                           s2s_port=cls.win_ports[0], c2s_port=cls.win_ports[1],
                           host=cls.win_host)
        peers.parallel(lambda: cls.internal.start(cls.dns), lambda: cls.fab.start(cls.dns),
                       lambda: cls.win.start(cls.dns))
        cls.internal.add_user("alice", "pw")
        cls.fab.add_user("bob", "pw")
        cls.win.add_user("carol", "pw")
        x.start()
        deadline = time.monotonic() + 15
        while x.metric("xfed_internal_links_up") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        cls.alice = cls.client("alice", LOCAL, cls.internal)
        cls.bob = cls.client("bob", FAB, cls.fab)
        cls.carol = cls.client("carol", WIN, cls.win)

    @classmethod
    def client(cls, user, domain, server):
        return Client(f"{user}@{domain}", "pw", server.host, server.c2s_port).connect()

    @classmethod
    def tearDownClass(cls):
        for c in ("alice", "bob", "carol"):
            if getattr(cls, c, None):
                getattr(cls, c).disconnect()
        proc = cls.x.proc
        rc = cls.x.stop()
        peers.stop_all(cls.internal, cls.fab, cls.win)
        cls.dns.stop()
        if os.environ.get("XFED_TEST_LOG"):  # a file for the whole log
            Path(os.environ["XFED_TEST_LOG"]).write_text(proc.log())
        if rc not in (0, None):
            print(proc.log()[-20000:])
        if os.environ.get("KEEP_TMP") is None:
            shutil.rmtree(cls.d, ignore_errors=True)
        assert rc in (0, None), f"xfed exited with {rc}"

    # ---- helpers ------------------------------------------------------------------

    def log(self):
        return self.x.proc.log()[-5000:]

    def got(self, client, body, sender, timeout=15):
        m = client.wait_message(body=body, sender=sender, timeout=timeout)
        self.assertIsNotNone(m, f"{client.jid} did not get {body!r} from {sender}:\n"
                             + self.log())

    def links_up(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while self.x.metric("xfed_internal_links_up") < n and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertGreaterEqual(self.x.metric("xfed_internal_links_up"), n, self.log())

    def restart_xfed(self):
        proc = self.x.proc
        rc = self.x.stop()
        self.assertEqual(rc, 0, proc.log()[-4000:])
        self.x.start()
        self.links_up(2)

    # ---- cases (run in name order) ----------------------------------------------------

    def test_1_snippet_configures_the_internal_server(self):
        self.assertIn('Component "fabrikam.example"', self.snippet)
        self.assertIn('Component "wingtip.example"', self.snippet)
        self.assertIn(SECRET, self.snippet)
        self.assertGreaterEqual(self.x.metric("xfed_internal_links_up"), 2, self.log())

    def test_2_messages_both_ways_with_the_federated_partner(self):
        self.alice.send_message(f"bob@{FAB}", "hello bob from alice")
        self.got(self.bob, "hello bob from alice", f"alice@{LOCAL}")
        self.bob.send_message(f"alice@{LOCAL}", "hello alice from bob")
        self.got(self.alice, "hello alice from bob", f"bob@{FAB}")
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_routed_total", partner=FAB,
                                              direction="in"), 1)
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_routed_total", partner=FAB,
                                              direction="out"), 1)

    def test_3_public_unverified_subscription_needs_an_invite(self):
        # carol (public-unverified) asks first: refused, answered 'unsubscribed' from alice.
        self.carol.send_presence(f"alice@{LOCAL}", "subscribe")
        v = self.carol.wait_for(lambda c: [p for p in c.presences
                                           if p[0].startswith(f"alice@{LOCAL}")
                                           and p[1] == "unsubscribed"], 15)
        self.assertTrue(v, f"carol got no 'unsubscribed':\n{self.log()}")
        self.carol.send_message(f"alice@{LOCAL}", "uninvited hello")
        e = self.carol.wait_for(lambda c: [x for x in c.errors if x[2] == "service-unavailable"],
                                15)
        self.assertTrue(e, f"carol's message was not refused:\n{self.log()}")
        self.assertIsNone(self.alice.wait_message(body="uninvited hello", timeout=1))
        # alice invites carol (subscribe): now carol's stanzas pass.
        self.alice.send_presence(f"carol@{WIN}", "subscribe")
        self.assertIsNotNone(self.x.proc.wait_for(
            f"invite alice@{LOCAL} -> carol@{WIN} recorded", 15), self.log())
        self.carol.send_message(f"alice@{LOCAL}", "invited hello")
        self.got(self.alice, "invited hello", f"carol@{WIN}")
        self.alice.send_message(f"carol@{WIN}", "hello carol")
        self.got(self.carol, "hello carol", f"alice@{LOCAL}")
        # The invite is in the store and survives an xfed restart.
        with sqlite3.connect(self.x.store) as c:
            rows = c.execute("SELECT local_jid, remote_jid FROM invites").fetchall()
        self.assertIn((f"alice@{LOCAL}", f"carol@{WIN}"), rows)
        self.restart_xfed()
        self.carol.send_message(f"alice@{LOCAL}", "after restart")
        self.got(self.alice, "after restart", f"carol@{WIN}", timeout=25)

    def test_4_federated_and_public_verified_subscriptions_pass(self):
        self.bob.send_presence(f"alice@{LOCAL}", "subscribe")  # federated: passes
        v = self.alice.wait_for(lambda c: [p for p in c.presences if p[0].startswith(
            f"bob@{FAB}") and p[1] in ("subscribe", "subscribed", "available", "")], 15)
        self.assertTrue(v, self.log())
        self.x.ctl("partner", "set", FAB, "--partner-type", "public-verified")
        time.sleep(2)
        self.bob.send_message(f"alice@{LOCAL}", "public-verified hello")  # no invite needed
        self.got(self.alice, "public-verified hello", f"bob@{FAB}")
        self.x.ctl("partner", "set", FAB, "--partner-type", "federated")
        time.sleep(2)

    def test_5_status_note_reaches_the_federated_partner_only(self):
        self.alice.send_presence(f"bob@{FAB}", status="note for bob")
        self.alice.send_presence(f"carol@{WIN}", status="note for carol")
        v = self.bob.wait_for(lambda c: [p for p in c.presences
                                         if p[0].startswith(f"alice@{LOCAL}")
                                         and p[2] == "note for bob"], 15)
        self.assertTrue(v, f"bob did not see alice's status note:\n{self.log()}")
        w = self.carol.wait_for(lambda c: [p for p in c.presences
                                           if p[0].startswith(f"alice@{LOCAL}")
                                           and p[1] in ("", "available")], 15)
        self.assertTrue(w, f"carol got no presence from alice:\n{self.log()}")
        self.assertFalse([p for p in self.carol.presences if "note for carol" in (p[2] or "")],
                         "the public partner saw the status note")

    def test_6_unlisted_domain_gets_nothing(self):
        self.alice.send_message("eve@unlisted.example", "leak?")
        e = self.alice.wait_for(lambda c: [x for x in c.errors
                                           if x[0].endswith("unlisted.example")], 10)
        self.assertTrue(e, "no error for a message to an unlisted domain")

    def test_7_internal_server_restarted(self):
        self.internal.stop()
        deadline = time.monotonic() + 10
        while self.x.metric("xfed_internal_links_up") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.bob.send_message(f"alice@{LOCAL}", "while the internal server is down")
        e = self.bob.wait_for(lambda c: [x for x in c.errors
                                         if x[2] == "service-unavailable"], 15)
        self.assertTrue(e, f"bob's message was not bounced service-unavailable:\n{self.log()}")
        self.internal.start(self.dns)
        self.links_up(2, timeout=20)  # the links come back by themselves
        self.alice.disconnect()
        Routing.alice = self.client("alice", LOCAL, self.internal)
        self.bob.send_message(f"alice@{LOCAL}", "internal server back")
        self.got(self.alice, "internal server back", f"bob@{FAB}")

    def test_8_partner_restarted_mid_stream(self):
        """N messages alice -> bob (offline: stored by fabrikam's mod_offline); fabrikam
        restarts in the middle. Each message is delivered (bob gets it) or bounced
        (alice gets an error with its id); both are counted."""
        self.bob.disconnect()
        Routing.bob = None
        ids = [f"n{i}" for i in range(N)]
        sent = 0
        restarted = False
        routed0 = self.x.metric("xfed_stanzas_routed_total", partner=FAB, direction="out")
        while sent < N:
            k = min(50, N - sent)
            self.alice.send_messages(f"bob@{FAB}", [f"msg {i}" for i in range(sent, sent + k)],
                                     ids[sent:sent + k])
            sent += k
            time.sleep(0.02)
            if not restarted and sent >= N // 3:
                routed = self.x.metric("xfed_stanzas_routed_total", partner=FAB,
                                       direction="out") - routed0
                self.assertGreater(routed, 0, self.log())
                self.fab.stop()
                self.fab.start(self.dns)
                restarted = True
        bob = Routing.bob = self.client("bob", FAB, self.fab)

        def settled(_):
            got = {b for _, b in bob.messages}
            bounced = {x[1] for x in self.alice.errors if x[1] in set(ids)}
            return len({f"n{b.split()[1]}" for b in got if b.startswith("msg ")} | bounced) >= N
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not settled(None):
            time.sleep(0.5)
        delivered = {f"n{b.split()[1]}" for _, b in bob.messages if b.startswith("msg ")}
        bounced = {x[1] for x in self.alice.errors if x[1] in set(ids)}
        missing = set(ids) - delivered - bounced
        print(f"partner restart: N={N} delivered={len(delivered)} bounced={len(bounced)} "
              f"both={len(delivered & bounced)} missing={len(missing)}", flush=True)
        self.assertFalse(missing, f"{len(missing)} message(s) neither delivered nor bounced "
                         f"(e.g. {sorted(missing)[:5]}):\n{self.log()}")
        self.assertGreater(len(delivered), 0)
        self.assertGreaterEqual(self.x.metric("xfed_stanzas_routed_total", partner=FAB,
                                              direction="out") - routed0, len(delivered))

    def test_9_partner_removed_live(self):
        if Routing.bob is None:
            Routing.bob = self.client("bob", FAB, self.fab)
        self.bob.send_message(f"alice@{LOCAL}", "before removal")
        self.got(self.alice, "before removal", f"bob@{FAB}")
        t0 = time.monotonic()
        self.x.ctl("partner", "remove", FAB)
        line = self.x.proc.wait_for("is no longer a federated partner", 5)
        self.assertIsNotNone(line, self.log())
        self.assertLess(time.monotonic() - t0, 2.5, "streams outlived the partner by > 2 s")
        self.bob.send_message(f"alice@{LOCAL}", "after removal")
        self.assertIsNone(self.alice.wait_message(body="after removal", timeout=4),
                          "a stanza passed after the partner was removed")
        self.alice.send_message(f"bob@{FAB}", "to a removed partner")
        self.assertIsNone(self.bob.wait_message(body="to a removed partner", timeout=3))


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
