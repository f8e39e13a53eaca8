"""Byte-level stand-ins for the two sides of xfed's router, for tests that must see
exact bytes or provoke what real servers will not do on demand:

  FakeInternal   an internal server accepting xfed's XEP-0114 component links
                 (checks the handshake = hex SHA-1(stream id + secret))
  FakePartner    a partner's server: answers xfed's outbound s2s stream (dialback,
                 optionally XEP-0198), answers db:verify for xfed's inbound checks,
                 and records every stanza it receives
"""
import hashlib
import re
import socket
import threading
import time

from peers import free_port

STANZA = re.compile(r"<(message|presence|iq)\b[^>]*?(?:/>|>.*?</\1>)", re.S)


def _recv_until(c, buf, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, buf, re.S)
        if m:
            return buf, m
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(pattern)
        c.settimeout(left)
        d = c.recv(65536)
        if not d:
            raise ConnectionError("closed")
        buf += d.decode("utf-8", "replace")


class _Listener:
    def __init__(self, port=None):
        self.port = port or free_port("tcp")
        self.cond = threading.Condition()
        self.conns = []
        self.ls = None
        self.listen()

    def listen(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(64)
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        ls = self.ls
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            with self.cond:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.serve(c)
        except (OSError, TimeoutError, ConnectionError, AttributeError):
            pass
        finally:
            with self.cond:
                if c in self.conns:
                    self.conns.remove(c)
                self.cond.notify_all()
            try:
                c.close()
            except OSError:
                pass

    def wait(self, pred, timeout=10, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self.cond.wait(left)

    def stop(self):
        """Stops listening and drops every connection (a crash, as seen from xfed)."""
        try:
            self.ls.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self.ls.close()
        except OSError:
            pass
        with self.cond:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass


class FakeInternal(_Listener):
    def __init__(self, secret, port=None):
        self.secret = secret
        self.links = {}       # domain -> socket of the live link
        self.received = []    # (domain, stanza text)
        self.handshakes = []  # (domain, ok)
        self.headers = []
        super().__init__(port)

    def serve(self, c):
        buf, m = _recv_until(c, "", r"<stream:stream[^>]*>")
        hdr = m.group(0)
        with self.cond:
            self.headers.append(hdr)
        domain = re.search(r"to='([^']*)'", hdr).group(1)
        sid = f"id{int(time.monotonic() * 1e6)}"
        c.sendall((f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                   f"xmlns:stream='http://etherx.jabber.org/streams' id='{sid}' "
                   f"from='{domain}'>").encode())
        buf = buf[m.end():]
        buf, m = _recv_until(c, buf, r"<handshake>([0-9a-f]*)</handshake>")
        ok = m.group(1) == hashlib.sha1((sid + self.secret).encode()).hexdigest()
        with self.cond:
            self.handshakes.append((domain, ok))
            self.cond.notify_all()
        if not ok:
            c.sendall(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:"
                      b"xmpp-streams'/></stream:error></stream:stream>")
            return
        c.sendall(b"<handshake/>")
        with self.cond:
            self.links[domain] = c
            self.cond.notify_all()
        buf = buf[m.end():]
        try:
            while True:
                for s in list(STANZA.finditer(buf)):
                    with self.cond:
                        self.received.append((domain, s.group(0)))
                        self.cond.notify_all()
                last = None
                for last in STANZA.finditer(buf):
                    pass
                if last:
                    buf = buf[last.end():]
                if "</stream:stream>" in buf:
                    return
                c.settimeout(None)
                d = c.recv(65536)
                if not d:
                    return
                buf += d.decode("utf-8", "replace")
        finally:
            with self.cond:
                if self.links.get(domain) is c:
                    del self.links[domain]
                self.cond.notify_all()

    def wait_link(self, domain, timeout=10):
        self.wait(lambda: domain in self.links, timeout, f"a link for {domain}")

    def send(self, domain, xml):
        self.wait_link(domain, 15)  # a link may be reconnecting after an earlier test
        with self.cond:
            c = self.links[domain]
        c.sendall(xml.encode())

    def wait_stanza(self, pattern, timeout=10):
        found = []

        def pred():
            found[:] = [s for d, s in self.received if re.search(pattern, s, re.S)]
            return bool(found)
        self.wait(pred, timeout, f"a stanza matching {pattern!r}")
        return found[0]


class FakePartner(_Listener):
    """xfed's outbound streams to a partner land here; db:verify is answered `valid` for
    good_key. sm: offer XEP-0198 and acknowledge (ack=False: never acknowledge)."""

    def __init__(self, domain, good_key, sm=False, ack=True, port=None):
        self.domain = domain
        self.good_key = good_key
        self.sm, self.ack = sm, ack
        self.received = []
        self.streams = 0
        super().__init__(port)

    def serve(self, c):
        buf, m = _recv_until(c, "", r"<stream:stream[^>]*>")
        hdr = m.group(0)
        frm = re.search(r"from='([^']*)'", hdr).group(1)
        sm = "<sm xmlns='urn:xmpp:sm:3'/>" if self.sm else ""
        c.sendall((f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                   f"xmlns:stream='http://etherx.jabber.org/streams' "
                   f"xmlns:db='jabber:server:dialback' id='p1' from='{self.domain}' "
                   f"to='{frm}' version='1.0'><stream:features>{sm}</stream:features>").encode())
        buf = buf[m.end():]
        buf, m = _recv_until(c, buf, r"<db:(verify|result)([^>]*)>([^<]*)</db:\1>")
        kind, attrs, key = m.group(1), m.group(2), m.group(3)
        buf = buf[m.end():]
        if kind == "verify":
            vid = re.search(r"id='([^']*)'", attrs).group(1)
            t = "valid" if key == self.good_key else "invalid"
            c.sendall((f"<db:verify xmlns:db='jabber:server:dialback' from='{self.domain}' "
                       f"to='{frm}' id='{vid}' type='{t}'/>").encode())
            _recv_until(c, buf, "</stream:stream>", 5)
            return
        c.sendall((f"<db:result xmlns:db='jabber:server:dialback' from='{self.domain}' "
                   f"to='{frm}' type='valid'/>").encode())
        with self.cond:
            self.streams += 1
            self.cond.notify_all()
        h = 0
        pat = re.compile(r"<(message|presence|iq)\b[^>]*?(?:/>|>.*?</\1>)|"
                         r"<(enable|r) xmlns='urn:xmpp:sm:3'/>|</stream:stream>", re.S)
        while True:
            pos = 0
            for mm in pat.finditer(buf):
                pos = mm.end()
                tok = mm.group(0)
                if tok.startswith("</stream:stream"):
                    return
                if mm.group(2) == "enable":
                    c.sendall(b"<enabled xmlns='urn:xmpp:sm:3'/>")
                elif mm.group(2) == "r":
                    if self.ack:
                        c.sendall(f"<a xmlns='urn:xmpp:sm:3' h='{h}'/>".encode())
                else:
                    h += 1
                    with self.cond:
                        self.received.append(tok)
                        self.cond.notify_all()
            buf = buf[pos:]
            c.settimeout(None)
            d = c.recv(65536)
            if not d:
                return
            buf += d.decode("utf-8", "replace")

    def wait_stanza(self, pattern, timeout=10):
        found = []

        def pred():
            found[:] = [s for s in self.received if re.search(pattern, s, re.S)]
            return bool(found)
        self.wait(pred, timeout, f"a stanza matching {pattern!r}")
        return found[0]
