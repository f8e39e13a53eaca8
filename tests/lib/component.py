"""A tiny XEP-0114 (jabber:component:accept) component client, stdlib only.

    c = Component("127.0.0.1", 5347, "fabrikam.example", "s3cret").connect()
    c.send("<message from='bob@fabrikam.example' to='alice@contoso.example' "
           "type='chat'><body>hi</body></message>")
    st = c.recv_until(r"<body>hello</body>", timeout=10)
    print(st.raw, st.attrs["from"], st.ns)
    c.close()

connect() opens the stream (to=<domain>), reads the server's stream header
and its id, sends <handshake>hex(SHA-1(id + secret))</handshake> and returns
once <handshake/> comes back; a <stream:error> (not-authorized, conflict,
host-unknown, ...) or the stream ending first raises ComponentError with the
condition. A reader thread parses the stream with expat and keeps every
top-level element the server sends as a Stanza: the exact text as it came
over the wire (.raw), plus the parsed form (.element, an ElementTree element
with {namespace}names; .ns is the namespace the element is in, inherited
from the stream's default namespace when the stanza carries no xmlns).
"""
import hashlib
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

NS_COMPONENT = "jabber:component:accept"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


class ComponentError(Exception):
    """The stream failed: .condition is the <stream:error> condition (e.g.
    'not-authorized'), or 'closed' / 'timeout' / 'not-well-formed' (ours)."""

    def __init__(self, condition, text=None, raw=None):
        self.condition, self.text, self.raw = condition, text, raw
        super().__init__(condition + (f" ({text})" if text else ""))


class Stanza:
    """One top-level element received: raw (str, exactly as received), element
    (ElementTree), ns and name (its namespace URI and local name), attrs
    (unqualified attributes: from, to, type, id, ...); match: the re.Match when
    it came from recv_until()."""

    def __init__(self, raw, element):
        self.raw = raw
        self.element = element
        tag = element.tag
        self.ns, self.name = (tag[1:].split("}", 1) if tag.startswith("{") else ("", tag))
        self.attrs = {k: v for k, v in element.attrib.items() if not k.startswith("{")}
        self.match = None

    def __repr__(self):
        return f"Stanza({self.raw!r})"


def _tag(name):
    """expat 'uri local' (namespace_separator ' ') -> ElementTree '{uri}local'."""
    if " " in name:
        uri, local = name.split(" ", 1)
        return "{" + uri + "}" + local
    return name


def _tag_end(buf, i):
    """Index just past the '>' that ends the tag starting at buf[i] ('<'),
    skipping '>' inside quoted attribute values."""
    quote = None
    n = len(buf)
    while i < n:
        c = buf[i]
        if quote:
            if c == quote:
                quote = None
        elif c in (0x22, 0x27):      # " '
            quote = c
        elif c == 0x3E:              # >
            return i + 1
        i += 1
    return n


class Component:
    def __init__(self, host, port, domain, secret, stream_to=None):
        self.host, self.port = host, port
        self.domain, self.secret = domain, secret
        self.stream_to = stream_to or domain
        self.sock = None
        self.stream_attrs = None      # the server's stream header attributes
        self.stream_header = None     # ... and the header as received (str)
        self.stream_id = None
        self.error = None             # ComponentError once the stream failed
        self.received = []            # every Stanza, in order (handshake included)
        self.closed = threading.Event()   # the server ended the stream / TCP
        self._pending = []            # Stanzas not yet taken by recv_until()
        self._cond = threading.Condition()
        self._thread = None
        self._raw = bytearray()
        self._depth = 0
        self._start = None
        self._builder = None
        self._authed = False

    # -- parsing (reader thread) -------------------------------------------
    def _new_parser(self):
        p = expat.ParserCreate(namespace_separator=" ")
        p.buffer_text = True
        p.StartElementHandler = self._on_start
        p.EndElementHandler = self._on_end
        p.CharacterDataHandler = self._on_text
        self._parser = p

    def _on_start(self, name, attrs):
        self._depth += 1
        if self._depth == 1:
            i = self._parser.CurrentByteIndex
            with self._cond:
                self.stream_header = bytes(self._raw[i:_tag_end(self._raw, i)]).decode(
                    "utf-8", "replace")
                self.stream_attrs = {_tag(k): v for k, v in attrs.items()}
                self.stream_id = self.stream_attrs.get("id")
                self._cond.notify_all()
            return
        if self._depth == 2:
            self._start = self._parser.CurrentByteIndex
            self._builder = ET.TreeBuilder()
        self._builder.start(_tag(name), {_tag(k): v for k, v in attrs.items()})

    def _on_text(self, data):
        if self._depth >= 2 and self._builder is not None:
            self._builder.data(data)

    def _on_end(self, name):
        self._depth -= 1
        if self._depth == 0:          # </stream:stream>
            self._set_closed()
            return
        self._builder.end(_tag(name))
        if self._depth != 1:
            return
        elem = self._builder.close()
        self._builder = None
        # expat's index at an end event: for <x/>, just past it; for </x>, at it
        end = _tag_end(self._raw, self._start)
        if self._raw[end - 2:end] != b"/>":
            end = _tag_end(self._raw, self._parser.CurrentByteIndex)
        st = Stanza(bytes(self._raw[self._start:end]).decode("utf-8", "replace"), elem)
        with self._cond:
            self.received.append(st)
            if st.ns == NS_STREAMS and st.name == "error":
                cond = next((c.tag.split("}", 1)[-1] for c in elem
                             if c.tag.startswith("{" + NS_STREAM_ERRORS + "}")
                             and not c.tag.endswith("}text")), "undefined-condition")
                text = elem.findtext(f"{{{NS_STREAM_ERRORS}}}text")
                self.error = ComponentError(cond, text, st.raw)
            elif not self._authed and st.name == "handshake":
                self._authed = True
            else:
                self._pending.append(st)
            self._cond.notify_all()

    def _set_closed(self):
        with self._cond:
            self.closed.set()
            self._cond.notify_all()

    def _reader(self):
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                self._raw += data
                try:
                    self._parser.Parse(data, False)
                except expat.ExpatError as e:
                    with self._cond:
                        if self.error is None:
                            self.error = ComponentError("not-well-formed", str(e))
                    break
                if self.closed.is_set():
                    break
        finally:
            self._set_closed()

    # -- API ----------------------------------------------------------------
    def _wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def connect(self, timeout=10):
        """Open the stream and authenticate; returns self. Raises ComponentError
        (.condition: the stream error, 'closed' or 'timeout')."""
        self.sock = socket.create_connection((self.host, self.port), timeout)
        self.sock.settimeout(None)
        self._new_parser()
        self._thread = threading.Thread(target=self._reader, daemon=True,
                                        name=f"component {self.domain}")
        self._thread.start()
        try:
            self.send("<?xml version='1.0'?>"
                      f"<stream:stream xmlns='{NS_COMPONENT}' "
                      f"xmlns:stream='{NS_STREAMS}' to={quoteattr(self.stream_to)}>")
            self._wait(lambda: self.stream_id is not None or self.error
                       or self.closed.is_set(), timeout)
            if self.error or self.stream_id is None:
                # the server may send its header, then the error (host-unknown)
                self._wait(lambda: self.error or self.closed.is_set(), 2)
                self._fail("no stream id in the server's stream header", timeout)
            digest = hashlib.sha1((self.stream_id + self.secret).encode()).hexdigest()
            self.send(f"<handshake>{digest}</handshake>")
            self._wait(lambda: self._authed or self.error or self.closed.is_set(), timeout)
            if not self._authed:
                self._wait(lambda: self.error or self.closed.is_set(), 2)
                self._fail("no <handshake/> back", timeout)
        except BaseException:
            self.close(timeout=1)
            raise
        return self

    def _fail(self, what, timeout):
        if self.error:
            raise self.error
        if self.closed.is_set():
            raise ComponentError("closed", f"{what}: stream ended")
        raise ComponentError("timeout", f"{what} after {timeout} s")

    def send(self, xml):
        """Send raw XML text as is."""
        self.sock.sendall(xml.encode("utf-8") if isinstance(xml, str) else xml)

    def recv_until(self, regex, timeout=10):
        """The first not-yet-taken stanza whose raw text matches `regex`
        (re.search), waiting up to `timeout` s; it is taken (a later call does
        not return it again; others stay). Returns the Stanza (.match set), or
        None on timeout or when the stream ended without one."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        found = []

        def pred():
            for st in self._pending:
                m = rx.search(st.raw)
                if m:
                    self._pending.remove(st)
                    st.match = m
                    found.append(st)
                    return True
            return self.closed.is_set()
        self._wait(pred, timeout)
        return found[0] if found else None

    def pending(self):
        """Stanzas received and not taken by recv_until() (a copy)."""
        with self._cond:
            return list(self._pending)

    def close(self, timeout=2):
        """Send </stream:stream>, wait up to `timeout` s for the server's end of
        the stream, close the socket."""
        if self.sock is None:
            return
        if not self.closed.is_set():
            try:
                self.sock.sendall(b"</stream:stream>")
            except OSError:
                pass
            self.closed.wait(timeout)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()
