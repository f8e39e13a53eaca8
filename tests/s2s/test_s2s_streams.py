"""Inbound s2s streams against a running xfed, spoken byte by byte: the
negotiation matrix on the receiving side, and the bypass and bad-input cases
of spec §10 (each must get the right error, a log line and a metric, and
leave xfed serving). A small authoritative server in this file answers
xfed's db:verify round trips (found through a real dnsmasq SRV record).

Usage: test_s2s_streams.py BUILD_DIR"""
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peers import Dnsmasq, Pki, free_port  # noqa: E402
from xfedsetup import Xfed  # noqa: E402

BUILD = None
HDR = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
       "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
       "to='{to}' from='{frm}' version='1.0'>")
LOCAL = "contoso.example"


class Wire:
    """One TCP connection to xfed, upgraded to TLS on demand."""

    def __init__(self, port, direct_ctx=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if direct_ctx:
            self.s = direct_ctx.wrap_socket(self.s, server_hostname=LOCAL)
        self.buf = ""

    def send(self, data):
        self.s.sendall(data.encode() if isinstance(data, str) else data)

    def expect(self, pattern, timeout=5):
        """Reads until `pattern` (regex) matches the text received so far."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf, re.S)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.buf!r}")
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except (socket.timeout, ssl.SSLError, ConnectionError):
                d = b""
            if not d:
                m = re.search(pattern, self.buf, re.S)
                if m:
                    return m
                raise AssertionError(f"closed without {pattern!r}; got {self.buf!r}")
            self.buf += d.decode("utf-8", "replace")

    def closed(self, timeout=5):
        """True when the peer closes within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, ConnectionError):
                return True
            if not d:
                return True
            self.buf += d.decode("utf-8", "replace")
        return False

    def header(self, frm, to=LOCAL):
        self.buf = ""
        self.send(HDR.format(frm=frm, to=to))
        return self.expect(r"<stream:stream[^>]*>").group(0)

    def starttls(self, frm, cert=None, ca=None):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.expect(r"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        ctx = ssl.create_default_context(cafile=ca)
        if cert:
            ctx.load_cert_chain(*cert)
        self.s = ctx.wrap_socket(self.s, server_hostname=LOCAL)
        self.buf = ""
        return self.header(frm)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Authoritative(threading.Thread):
    """The authoritative server of a partner domain for db:verify: answers
    valid for `good_key`, invalid otherwise; counts the questions."""

    def __init__(self, good_key):
        super().__init__(daemon=True)
        self.port = free_port("tcp")
        self.good_key = good_key
        self.asked = []
        self.stalled = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(8)
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = ""
        c.settimeout(10)
        try:
            while "<stream:stream" not in buf or not re.search(r"<stream:stream[^>]*>", buf):
                buf += c.recv(4096).decode()
            h = re.search(r"<stream:stream[^>]*>", buf).group(0)
            frm = re.search(r"from='([^']*)'", h).group(1)
            to = re.search(r"to='([^']*)'", h).group(1)
            c.sendall((f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                       f"xmlns:stream='http://etherx.jabber.org/streams' "
                       f"xmlns:db='jabber:server:dialback' id='auth1' from='{to}' "
                       f"to='{frm}' version='1.0'><stream:features/>").encode())
            while not re.search(r"<db:(verify|result)[^>]*>([^<]*)</db:\1>", buf):
                d = c.recv(4096)
                if not d:
                    return
                buf += d.decode()
            if re.search(r"<db:result[^>]*>[^<]*</db:result>", buf):
                # xfed's outbound stream to this partner: accept its key, then
                # stop reading (the peer that stops reading).
                c.sendall((f"<db:result xmlns:db='jabber:server:dialback' from='{to}' "
                           f"to='{frm}' type='valid'/>").encode())
                self.stalled.append(c)
                time.sleep(60)
                return
            m = re.search(r"<db:verify([^>]*)>([^<]*)</db:verify>", buf)
            attrs, key = m.group(1), m.group(2)
            vid = re.search(r"id='([^']*)'", attrs).group(1)
            self.asked.append(key)
            t = "valid" if key == self.good_key else "invalid"
            c.sendall((f"<db:verify xmlns:db='jabber:server:dialback' from='{to}' to='{frm}' "
                       f"id='{vid}' type='{t}'/></stream:stream>").encode())
            c.recv(4096)
        except (OSError, AttributeError):
            pass
        finally:
            c.close()

    def stop(self):
        self.ls.close()


class S2SStreams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="xfed-s2s-")
        pki = cls.pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.contoso = pki.leaf(LOCAL)
        cls.wingtip = pki.leaf("wingtip.example")
        # XmppAddr (raw SAN walk) and a serverAuth-only EKU used as a client certificate.
        cls.wingtip_xmpp = pki.leaf("wingtip.example", dns=[], xmpp=["wingtip.example"],
                                    eku="serverAuth")
        cls.northwind = pki.leaf("northwind.example")
        cls.adatum_rogue = pki.self_signed("adatum.example")
        cls.wingtip_rogue = pki.self_signed("wingtip.example")
        cls.auth = Authoritative("good-key-0123456789")
        cls.dns = Dnsmasq(os.path.join(cls.tmp, "dns"),
                          srv=[("_xmpp-server._tcp.fabrikam.example", "auth.fabrikam.example",
                                cls.auth.port, 0, 5),
                               ("_xmpp-server._tcp.chat.fabrikam.example",
                                "auth.fabrikam.example", cls.auth.port, 0, 5)],
                          hosts={"auth.fabrikam.example": "127.0.0.1"})
        x = cls.x = Xfed(BUILD, os.path.join(cls.tmp, "xfed"), {LOCAL: cls.contoso},
                         cls.dns.server, pki.ca_crt)
        x.partner("fabrikam.example", "not-supported", "not-supported", True,  # row 17
                  "--additional-domains", "chat.fabrikam.example")
        # No SRV record: the operator's proxy FQDN says where its server is.
        x.partner("proxied.example", "not-supported", "not-supported", True,
                  "--proxy-fqdn", f"127.0.0.1:{cls.auth.port}")
        x.partner("wingtip.example", "required", "optional", True)  # row 7
        x.partner("northwind.example", "required", "optional", False)  # row 8
        x.partner("litware.example", "optional", "optional", True)  # row 9
        x.partner("adatum.example", "required", "required", False)  # row 2
        x.partner("tailspin.example", "not-supported", "not-supported", True,
                  "--connection-limit", "1")
        x.ctl("gateway", "set", "--stream-establishment-timeout", "5",
              "--keepalive-interval", "10",
              "--dialback-passphrase", "s3cr3tf0rd14lb4ck")
        x.start()

    @classmethod
    def tearDownClass(cls):
        proc = cls.x.proc
        rc = cls.x.stop()
        cls.dns.stop()
        cls.auth.stop()
        if os.environ.get("KEEP_TMP") is None:
            shutil.rmtree(cls.tmp, ignore_errors=True)
        if rc not in (0, None):
            raise AssertionError(f"xfed exited with {rc}:\n{proc.log()[-6000:]}")

    def wire(self):
        w = Wire(self.x.port)
        self.addCleanup(w.close)
        return w

    def at_features(self, frm):
        """A stream from `frm` whose first features have arrived."""
        w = self.wire()
        w.header(frm)
        w.expect("</stream:features>")
        return w

    def dialback_ok(self, frm="fabrikam.example"):
        """A stream from `frm` authenticated by dialback (the authoritative server's key)."""
        w = self.at_features(frm)
        w.send(f"<db:result from='{frm}' to='contoso.example'>good-key-0123456789</db:result>")
        w.expect(rf"to='{frm}' type='valid'/>")
        return w

    def tls_wire(self, frm, cert):
        """A stream from `frm` after STARTTLS with `cert`, at its new features."""
        w = self.at_features(frm)
        w.starttls(frm, cert=cert, ca=self.pki.ca_crt)
        return w

    def assertLogged(self, text, timeout=5):
        self.assertIsNotNone(self.x.proc.wait_for(text, timeout),
                             f"no log line with {text!r}:\n{self.x.proc.log()[-3000:]}")

    def stream_error(self, w, cond):
        w.expect(rf"<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
        self.assertTrue(w.closed(), "xfed did not close after the stream error")

    # ---- addressing -------------------------------------------------------------

    def test_unlisted_domain_refused(self):
        w = self.wire()
        w.header("evil.example")
        self.stream_error(w, "policy-violation")
        self.assertIn("evil.example", w.buf)
        self.assertLogged("'evil.example' is not a federated partner domain")
        self.assertGreaterEqual(self.x.metric("xfed_stream_refusals_total", direction="in",
                                              reason="policy-violation"), 1)

    def test_unknown_to(self):
        w = self.wire()
        w.header("fabrikam.example", to="elsewhere.example")
        self.stream_error(w, "host-unknown")

    def test_missing_to(self):
        w = self.wire()
        w.send(HDR.replace("to='{to}' ", "").format(frm="fabrikam.example"))
        self.stream_error(w, "host-unknown")

    # ---- bypass attempts (spec §10) ---------------------------------------------

    def test_stanza_before_authentication(self):
        w = self.wire()
        w.header("fabrikam.example")
        w.send("<message from='a@fabrikam.example' to='b@contoso.example'><body>x</body>"
               "</message>")
        self.stream_error(w, "not-authorized")

    def test_stanza_before_tls_on_tls_required_row(self):
        w = self.wire()
        h = w.header("wingtip.example")
        self.assertNotIn("xmlns:db", h)  # dialback not advertised before TLS (row 7)
        w.expect(r"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                 r"</stream:features>")
        w.send("<message from='a@wingtip.example' to='b@contoso.example'/>")
        self.stream_error(w, "policy-violation")

    def test_db_result_before_tls_on_tls_required_row(self):
        w = self.at_features("wingtip.example")
        w.send("<db:result from='wingtip.example' to='contoso.example'>k</db:result>")
        self.stream_error(w, "policy-violation")

    def test_external_on_plaintext(self):
        w = self.wire()
        w.header("litware.example")  # row 9: TLS optional
        w.expect("</stream:features>")
        self.assertNotIn("EXTERNAL", w.buf)
        w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        w.expect(r"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/>")
        self.stream_error(w, "policy-violation")

    def test_dialback_on_row_8(self):
        w = self.tls_wire("northwind.example", self.northwind)
        w.expect("</stream:features>")
        self.assertNotIn("urn:xmpp:features:dialback", w.buf)  # row 8: no dialback
        self.assertIn("<mechanism>EXTERNAL</mechanism>", w.buf)
        w.send("<db:result from='northwind.example' to='contoso.example'>k</db:result>")
        w.expect(r"<db:result[^>]*type='error'><error type='cancel'><policy-violation")
        self.assertLogged("northwind.example")

    def test_sasl_only_row_without_valid_certificate(self):
        w = self.tls_wire("adatum.example", self.adatum_rogue)  # row 2: TLS + SASL required
        self.stream_error(w, "policy-violation")
        self.assertIn("certificate does not prove", w.buf)

    def test_untrusted_certificate_gets_no_external(self):
        w = self.tls_wire("wingtip.example", self.wingtip_rogue)
        w.expect("</stream:features>")
        self.assertNotIn("EXTERNAL", w.buf)  # SASL only after chain AND name validation
        w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        w.expect(r"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>")

    def test_sasl_external_then_spoofed_from(self):
        before = self.x.metric("xfed_authentications_total", partner="wingtip.example",
                               method="sasl_tls", result="success")
        w = self.tls_wire("wingtip.example", self.wingtip)
        w.expect("<mechanism>EXTERNAL</mechanism>.*</stream:features>")
        w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
               "d2luZ3RpcC5leGFtcGxl</auth>")  # authzid = base64("wingtip.example")
        w.expect("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        w.buf = ""
        w.send(HDR.format(frm="wingtip.example", to=LOCAL))
        w.expect(r"<stream:features/>")
        self.assertLogged("authenticated, method=sasl_tls")
        self.assertEqual(self.x.metric("xfed_authentications_total", partner="wingtip.example",
                                       method="sasl_tls", result="success"), before + 1)
        # A stanza from an authenticated domain passes; a spoofed 'from' ends the stream.
        w.send("<presence from='a@wingtip.example' to='b@contoso.example'/>")
        w.send("<message from='x@fabrikam.example' to='b@contoso.example'/>")
        self.stream_error(w, "invalid-from")

    def test_sasl_wrong_authzid(self):
        w = self.tls_wire("wingtip.example", self.wingtip)
        w.expect("</stream:features>")
        w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
               "ZmFicmlrYW0uZXhhbXBsZQ==</auth>")  # fabrikam.example
        w.expect(r"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-authzid/>")

    def test_direct_tls_listener(self):
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.load_cert_chain(*self.wingtip)
        ctx.set_alpn_protocols(["xmpp-server"])
        w = Wire(self.x.tls_port, direct_ctx=ctx)
        self.addCleanup(w.close)
        self.assertIn(w.s.version(), ("TLSv1.3", "TLSv1.2"))
        self.assertIn("CHACHA20", w.s.cipher()[0])  # ChaCha20 first
        w.header("wingtip.example")
        w.expect("<mechanism>EXTERNAL</mechanism>")
        self.assertNotIn("starttls", w.buf)

    # ---- dialback -----------------------------------------------------------------

    def test_dialback_verified_by_authoritative_server(self):
        w = self.wire()
        h = w.header("fabrikam.example")  # row 17: dialback over TCP
        self.assertIn("xmlns:db='jabber:server:dialback'", h)
        w.expect("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>")
        w.send("<db:result from='fabrikam.example' to='contoso.example'>"
               "good-key-0123456789</db:result>")
        w.expect(r"<db:result[^>]*from='contoso.example' to='fabrikam.example' type='valid'/>")
        self.assertIn("good-key-0123456789", self.auth.asked)
        self.assertLogged("contoso.example<-fabrikam.example: authenticated, method=dialback_tcp")
        # A second domain pair on the same stream: a wrong key is refused.
        w.send("<db:result from='fabrikam.example' to='contoso.example'>"
               "good-key-0123456789</db:result>")
        w.expect(r"type='valid'/>.*type='valid'/>")
        w.send("<iq type='get' id='p1' from='fabrikam.example' to='contoso.example'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
        # The answer travels on an outbound stream, which xfed now opens.
        self.assertLogged("contoso.example->fabrikam.example: opening")

    def test_dialback_invalid_key(self):
        w = self.at_features("fabrikam.example")
        w.send("<db:result from='fabrikam.example' to='contoso.example'>forged</db:result>")
        w.expect(r"<db:result[^>]*type='invalid'/>")
        w.send("<message from='a@fabrikam.example' to='b@contoso.example'/>")
        self.stream_error(w, "not-authorized")
        self.assertGreaterEqual(self.x.metric("xfed_authentications_total",
                                              partner="fabrikam.example",
                                              method="dialback_tcp", result="failure"), 1)

    def test_db_verify_for_our_keys(self):
        # The spec's test vector: xfed answers for keys made with its passphrase.
        w = self.at_features("fabrikam.example")
        import hashlib
        import hmac
        secret = hashlib.sha256(b"s3cr3tf0rd14lb4ck").hexdigest().encode()
        key = hmac.new(secret, b"fabrikam.example contoso.example D60000229F",
                       hashlib.sha256).hexdigest()
        w.send(f"<db:verify from='fabrikam.example' to='contoso.example' id='D60000229F'>"
               f"{key}</db:verify>")
        w.expect(r"<db:verify[^>]*id='D60000229F' type='valid'/>")
        w.send("<db:verify from='fabrikam.example' to='contoso.example' id='D60000229F'>"
               "00ff</db:verify>")
        w.expect(r"type='valid'/>.*<db:verify[^>]*type='invalid'/>")

    def test_pre_1_0_peer(self):
        w = self.wire()
        w.send(HDR.replace("' version='1.0'>", "'>").format(frm="fabrikam.example", to=LOCAL))
        h = w.expect(r"<stream:stream[^>]*>").group(0)
        self.assertNotIn("version=", h)  # answered as pre-1.0: no version, no features
        self.assertIn("xmlns:db='jabber:server:dialback'", h)
        w.send("<db:result from='fabrikam.example' to='contoso.example'>"
               "good-key-0123456789</db:result>")
        w.expect(r"type='valid'/>")
        self.assertNotIn("stream:features", w.buf)

    def test_multiplexed_domains_each_verified(self):
        w = self.at_features("fabrikam.example")
        n = len(self.auth.asked)
        for d in ("fabrikam.example", "chat.fabrikam.example"):
            w.send(f"<db:result from='{d}' to='contoso.example'>good-key-0123456789</db:result>")
            w.expect(rf"from='contoso.example' to='{d}' type='valid'/>")
        self.assertEqual(len(self.auth.asked), n + 2)  # one db:verify per domain pair
        w.send("<presence from='a@chat.fabrikam.example' to='b@contoso.example'/>")
        w.send("<presence from='a@wingtip.example' to='b@contoso.example'/>")
        self.stream_error(w, "invalid-from")

    def test_proxy_fqdn_overrides_srv(self):
        w = self.at_features("proxied.example")
        w.send("<db:result from='proxied.example' to='contoso.example'>"
               "good-key-0123456789</db:result>")
        w.expect(r"to='proxied.example' type='valid'/>")

    def test_xep0344_certificate_proves_domain(self):
        w = self.tls_wire("wingtip.example", self.wingtip)
        w.expect("</stream:features>")
        n = len(self.auth.asked)
        w.send("<db:result from='wingtip.example' to='contoso.example'>any</db:result>")
        w.expect(r"to='wingtip.example' type='valid'/>")
        self.assertEqual(len(self.auth.asked), n)  # no db:verify round trip
        self.assertLogged("contoso.example<-wingtip.example: authenticated, method=dialback_tls")

    def test_xmppaddr_certificate_tls12(self):
        w = self.at_features("wingtip.example")
        w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        w.expect("<proceed")
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(*self.wingtip_xmpp)
        w.s = ctx.wrap_socket(w.s, server_hostname=LOCAL)
        self.assertEqual(w.s.version(), "TLSv1.2")
        self.assertIn("CHACHA20", w.s.cipher()[0])
        w.header("wingtip.example")
        w.expect("<mechanism>EXTERNAL</mechanism>")  # the XmppAddr names the domain
        w.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        w.expect("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertGreaterEqual(self.x.metric("xfed_tls_handshakes_total", direction="in",
                                              version="TLSv1.2", result="success"), 1)

    def test_whitespace_keepalive(self):
        w = self.dialback_ok()
        w.buf = ""
        w.expect(r"^ +$", timeout=8)  # keepalive interval 10 s: a space after 5 s of silence

    # ---- limits and timeouts -------------------------------------------------------

    def test_connection_limit_per_partner(self):
        a = self.at_features("tailspin.example")
        b = self.wire()
        b.header("tailspin.example")
        self.stream_error(b, "resource-constraint")
        a.close()
        time.sleep(0.3)
        c = self.wire()  # the place is free again
        c.header("tailspin.example")
        c.expect("</stream:features>")

    def open_streams(self):
        return int(self.x.metric("xfed_s2s_inbound_streams_open") +
                   self.x.metric("xfed_s2s_outbound_streams_open"))

    def test_global_connection_limit_applies_live(self):
        # Streams of earlier tests count too: wait until their number is steady.
        n, since = self.open_streams(), time.monotonic()
        while time.monotonic() - since < 1.0:
            time.sleep(0.1)
            if self.open_streams() != n:
                n, since = self.open_streams(), time.monotonic()
        limit = n + 2
        self.x.ctl("gateway", "set", "--connection-limit", str(limit))
        self.addCleanup(self.x.ctl, "gateway", "set", "--connection-limit", "1000")
        mark = self.x.proc.count()
        self.assertIsNotNone(self.x.proc.wait_for("partners:", 5, mark), "no reload")
        time.sleep(0.2)  # the cores pick the snapshot up on their next loop
        a, b = self.at_features("fabrikam.example"), self.at_features("fabrikam.example")
        c = self.wire()
        c.header("litware.example")
        self.stream_error(c, "resource-constraint")
        self.assertIn(f"connection limit ({limit} streams)", c.buf)
        a.close()
        b.close()
        self.x.ctl("gateway", "set", "--connection-limit", "1000")
        self.assertIsNotNone(self.x.proc.wait_for("partners:", 5, self.x.proc.count()))

    def test_establishment_timeout_and_silent_peer(self):
        w = self.at_features("fabrikam.example")
        t0 = time.monotonic()
        # The peer says nothing more and reads nothing more.
        w.expect(r"<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                 timeout=10)
        self.assertGreater(time.monotonic() - t0, 3.5)
        self.assertLogged("not authenticated within 5 s")

    def test_partner_that_stops_reading(self):
        w = self.dialback_ok()
        mark = self.x.proc.count()
        # Every ping is answered over xfed's outbound stream to fabrikam, whose
        # server accepted it and then stopped reading: xfed's output for it
        # must stop at its bound, end that stream, and keep serving.
        ping = ("<iq type='get' id='p{}' from='u@fabrikam.example' to='contoso.example'>"
                "<ping xmlns='urn:xmpp:ping'/></iq>")
        batch = "".join(ping.format(i) for i in range(2000)).encode()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            w.send(batch)
            if self.x.proc.wait_for("output bound exceeded", 0.01, mark) is not None:
                break
        self.assertIsNotNone(self.x.proc.wait_for("output bound exceeded", 5, mark),
                             self.x.proc.log()[-3000:])
        self.assertTrue(self.auth.stalled, "the outbound stream never reached the partner")
        self.assertGreaterEqual(self.x.metric("xfed_stream_refusals_total", direction="out",
                                              reason="output-bound"), 1)
        self.assert_still_serving()

    # ---- bad input --------------------------------------------------------------------

    def test_garbage_handshake(self):
        w = self.wire()
        w.send(b"\x16\x03\x01\x00\xa5garbage<<<>>>\x00\xff")
        self.stream_error(w, "not-well-formed")

    def test_truncated_handshake(self):
        w = self.wire()
        w.send(HDR.format(frm="fabrikam.example", to=LOCAL)[:60])
        w.close()
        w = self.wire()
        w.send(HDR.format(frm="fabrikam.example", to=LOCAL) + "<db:result from='fab")
        w.close()
        self.assert_still_serving()

    def test_garbage_tls_records(self):
        w = self.at_features("wingtip.example")
        w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        w.expect("<proceed")
        w.send(b"\x17\x03\x03\x00\x20" + os.urandom(32) + os.urandom(200))
        self.assertTrue(w.closed())
        self.assertLogged("TLS failed")
        self.assert_still_serving()

    def test_restricted_xml_and_oversized_stanza(self):
        w = self.at_features("fabrikam.example")
        w.send("<!-- comment -->")
        self.stream_error(w, "restricted-xml")
        w = self.at_features("fabrikam.example")
        w.send("<message from='a@fabrikam.example' to='b@contoso.example'><body>" +
               "x" * 9000 + "</body></message>")
        self.stream_error(w, "policy-violation")
        self.assertIn("<stanza-too-big xmlns='urn:xmpp:errors'/>", w.buf)

    def assert_still_serving(self):
        w = self.at_features("fabrikam.example")

    def test_metrics_pass_promtool(self):
        self.x.check_metrics(self, ("xfed_s2s_inbound_streams_open", "xfed_streams_opened_total",
                                    "xfed_tls_handshakes_total", "xfed_stream_refusals_total",
                                    "xfed_dns_queries_total"))


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
