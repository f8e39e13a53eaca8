"""Real XMPP peers for the interop tests, on 127.0.0.0/8 only.

Stdlib only; run it with Debian's /usr/bin/python3 (Client needs python3-slixmpp).
Packages: dnsmasq-base, openssl, prosody, lua-unbound, ejabberd, python3-slixmpp
(tools/deps.sh XFED_TEST_PKGS). The tests run as root; the servers do not:

- Prosody refuses to run as root, so it runs through `setpriv` as a uid of its own
  (picked at random, unused by any process, no passwd entry needed).
- ejabberd runs from a copy of ejabberdctl with INSTALLUSER="" (the stock script
  insists on root or the `ejabberd` user), as a uid of its own too, with a fixed
  Erlang distribution port on 127.0.0.1 so that no epmd is started. It runs inside
  a private mount namespace whose /etc/hosts lists the names the test gave the DNS
  server: ejabberd finds SRV records through its inetrc (our dnsmasq) but resolves
  the SRV *target* with glibc getaddrinfo, which knows only /etc/hosts.
- Prosody resolves through lua-unbound, forwarded to our dnsmasq (`unbound =
  { forward = "127.0.0.1@PORT" }`).

Each server owns a uid, so stop() can end everything it started (beam,
erl_child_setup, inet_gethost, ...) by sweeping that uid's processes.

Typical use:

    pki = Pki(d / "pki")
    fab = Prosody(d / "fab", "fabrikam.example", pki, None, pki.ca_crt)
    win = Ejabberd(d / "win", "wingtip.example", pki, None, pki.ca_crt)
    dns = Dnsmasq(d / "dns", srv=fab.srv_records() + win.srv_records(),
                  hosts={**fab.hosts_entry(), **win.hosts_entry()})
    fab.start(dns); win.start(dns)
    fab.add_user("alice", "pw")
    c = Client("alice@fabrikam.example", "pw", fab.host, fab.c2s_port).connect()
    assert c.ping("wingtip.example") == (True, None)

Ports are picked in the constructors, so SRV records can point at a server
before it starts; the DNS port is given to start() (or to the constructor).
"""
import asyncio
import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
PROSODY = "/usr/bin/prosody"
PROSODYCTL = "/usr/bin/prosodyctl"
EJABBERDCTL = "/usr/sbin/ejabberdctl"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}


class PeerError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# ports, addresses, uids, processes

def free_port(kind="tcp", host="127.0.0.1"):
    """A port the kernel reports free on `host`: for TCP, UDP, or ('both') the same
    number for both. Another process may still take it before it is bound again."""
    if kind not in ("tcp", "udp", "both"):
        raise ValueError("kind must be tcp, udp or both")
    for _ in range(200):
        first = socket.socket(socket.AF_INET,
                              socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        try:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if kind != "both":
                return port
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                other.bind((host, port))
                return port
            except OSError:
                continue
            finally:
                other.close()
        finally:
            first.close()
    raise PeerError(f"no free {kind} port on {host}")


_alloc_lock = threading.Lock()
# Started and not yet stopped: stopped at interpreter exit, so a test that
# dies half-way leaves no server behind.
_live = set()


@atexit.register
def _stop_live():
    stop_all(*list(_live))

_used_hosts = set()
_used_uids = set()


def loopback_host():
    """An unused-by-this-process address 127.0.0.2 .. 127.0.0.254."""
    with _alloc_lock:
        for _ in range(1000):
            h = f"127.0.0.{random.randint(2, 254)}"
            if h not in _used_hosts:
                _used_hosts.add(h)
                return h
    raise PeerError("out of loopback addresses")


def _proc_uids():
    uids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uids[int(p)] = int(line.split()[1])
                        break
        except OSError:
            pass
    return uids


def pids_of_uid(uid):
    """PIDs whose real uid is `uid`."""
    return [p for p, u in _proc_uids().items() if u == uid]


def alloc_uid():
    """A uid in 20000..59999 with no passwd entry and no process."""
    import pwd
    running = set(_proc_uids().values())
    with _alloc_lock:
        for _ in range(1000):
            uid = random.randint(20000, 59999)
            if uid in _used_uids or uid in running:
                continue
            try:
                pwd.getpwuid(uid)
                continue
            except KeyError:
                pass
            _used_uids.add(uid)
            return uid
    raise PeerError("no free uid")


def kill_uid(uid, grace=3.0):
    """SIGTERM every process of `uid`, SIGKILL what is left after `grace` s.
    Only for uids this module allocated."""
    pids = pids_of_uid(uid)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = pids_of_uid(uid)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while pids_of_uid(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pids_of_uid(uid)


def _hexaddr(host):
    """/proc/net/{tcp,udp} form of an IPv4 address."""
    return "%08X" % int.from_bytes(socket.inet_aton(host), "little")


def is_listening(host, port, proto="tcp"):
    """True if a socket is bound to host:port (TCP: in LISTEN state), read from
    /proc/net, without connecting (a connection would show in the peer's log)."""
    want = f"{_hexaddr(host)}:{port:04X}"
    anyaddr = f"00000000:{port:04X}"
    try:
        with open(f"/proc/net/{proto}") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] in (want, anyaddr) and (proto != "tcp" or parts[3] == "0A"):
                    return True
    except OSError:
        pass
    return False


def listening_on(interface, port):
    """is_listening() for a server's interface setting: an IPv4 address; "*" or
    "0.0.0.0" (a wildcard IPv4 socket); anything else (an IPv6 address, "::")
    is looked up in /proc/net/tcp6, any address."""
    if interface in ("*", "0.0.0.0"):
        return is_listening("0.0.0.0", port)
    try:
        socket.inet_pton(socket.AF_INET, interface)
        return is_listening(interface, port)
    except OSError:
        pass
    try:
        with open("/proc/net/tcp6") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def _wait(pred, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    if pred():
        return
    msg = f"{what}: not ready after {timeout} s"
    if proc is not None and proc.poll() is not None:
        msg = f"{what}: exited with status {proc.returncode}"
    if log:
        msg += "\n--- log tail ---\n" + "\n".join(log().splitlines()[-40:])
    raise PeerError(msg)


def _traversable(path):
    """Let other uids walk down to `path`: add o+x to ancestors that we own and
    that lack it (mkdtemp makes 0700 directories). Never adds read permission."""
    p = Path(path).resolve()
    for d in [p] + list(p.parents):
        try:
            st = d.stat()
        except OSError:
            continue
        if not st.st_mode & 0o001:
            if st.st_uid == os.geteuid():
                os.chmod(d, st.st_mode | 0o001)
            else:
                raise PeerError(f"{d} is not searchable by other users; the servers "
                                f"run as non-root uids and must reach {path}")


def _chown_tree(path, uid):
    os.chown(path, uid, uid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, uid)


def _run(argv, what, timeout=60, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise PeerError(f"{what} failed ({r.returncode}): {' '.join(map(str, argv))}\n"
                        f"{r.stdout}{r.stderr}")
    return r


def tmpdir(prefix="xfed-peers-"):
    """A fresh temporary directory that the servers' uids can reach."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    _traversable(d)
    return Path(d)


# ---------------------------------------------------------------------------
# PKI

class Pki:
    """A private EC P-256 CA (openssl CLI). All files are PEM under `dir`."""

    def __init__(self, dir, name="xfed test CA", days=3650):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_crt = str(self.dir / "ca.crt")
        self.ca_key = str(self.dir / "ca.key")
        self._serial = 0
        cfg = self.dir / "ca.ext"
        cfg.write_text("[req]\ndistinguished_name=dn\n[dn]\n"
                       "[v3_ca]\nbasicConstraints=critical,CA:TRUE\n"
                       "keyUsage=critical,keyCertSign,cRLSign\n"
                       "subjectKeyIdentifier=hash\n")
        _run([OPENSSL, "req", "-x509", "-new", "-newkey", "ec",
              "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.ca_key,
              "-out", self.ca_crt, "-days", str(days), "-subj", "/CN=" + name,
              "-config", str(cfg), "-extensions", "v3_ca"],
             "openssl CA")

    def _file(self, name, ext):
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("*", "wild"))
        return str(self.dir / f"{safe}{ext}")

    def leaf(self, name, dns=None, xmpp=(), eku="serverAuth,clientAuth", ca=None,
             days=825, srv=()):
        """A leaf for `name`, signed by this CA (or `ca`: another Pki or a
        (crt, key) pair). dns: dNSName list (default [name]); xmpp: XmppAddr
        otherNames (id-on-xmppAddr, UTF8String); srv: SRVName otherNames
        (e.g. "_xmpp-server.example.org", IA5String). Returns (crt, key)."""
        dns = [name] if dns is None else list(dns)
        if isinstance(ca, Pki):
            ca_crt, ca_key = ca.ca_crt, ca.ca_key
        elif ca:
            ca_crt, ca_key = ca
        else:
            ca_crt, ca_key = self.ca_crt, self.ca_key
        self._serial += 1
        tag = f"{name}.{self._serial}" if os.path.exists(self._file(name, ".crt")) else name
        crt, key, csr, ext = (self._file(tag, e) for e in (".crt", ".key", ".csr", ".ext"))
        _run([OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name,
              "-config", "/dev/null"], "openssl leaf key")
        san = [f"DNS.{i}={d}" for i, d in enumerate(dns, 1)]
        san += [f"otherName.{i}=1.3.6.1.5.5.7.8.5;UTF8:{x}" for i, x in enumerate(xmpp, 1)]
        san += [f"otherName.{i}=1.3.6.1.5.5.7.8.7;IA5:{s}"
                for i, s in enumerate(srv, len(xmpp) + 1)]
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment"]
        if eku:
            lines.append("extendedKeyUsage=" + eku)
        if san:
            lines += ["subjectAltName=@san", "[san]"] + san
        Path(ext).write_text("\n".join(lines) + "\n")
        _run([OPENSSL, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
              "-set_serial", str(random.getrandbits(63)), "-days", str(days),
              "-extfile", ext, "-out", crt], "openssl sign")
        return crt, key

    def self_signed(self, name, dns=None, days=825):
        """A self-signed (untrusted) certificate. Returns (crt, key)."""
        dns = [name] if dns is None else list(dns)
        crt, key = self._file(name + ".self", ".crt"), self._file(name + ".self", ".key")
        args = [OPENSSL, "req", "-x509", "-new", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                "-days", str(days), "-subj", "/CN=" + name, "-config", "/dev/null"]
        if dns:
            args += ["-addext", "subjectAltName=" + ",".join("DNS:" + d for d in dns)]
        _run(args, "openssl self-signed")
        return crt, key


# ---------------------------------------------------------------------------
# DNS

class Dnsmasq:
    """dnsmasq on 127.0.0.1:<free port> (UDP and TCP) answering only the given
    records; every other name is NXDOMAIN (`local=/#/`), nothing is forwarded.

    srv: [(service_name, target, port, prio, weight)]; target None or "." makes a
         "no service here" record. hosts: {name: ip or [ips]} (A/AAAA).
    extra: raw dnsmasq config lines. Queries are logged (.log())."""

    def __init__(self, dir, srv=(), hosts=None, extra=(), port=None, start=True):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.srv = list(srv)
        self.hosts = dict(hosts or {})
        self.extra = list(extra)
        self.port = port
        self.proc = None
        if start:
            self.start()

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def _conf(self):
        c = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
             "no-resolv", "no-hosts", "no-poll", "local=/#/", "local-ttl=1",
             "log-queries", f"log-facility={self.dir / 'dnsmasq.log'}"]
        for name, ips in self.hosts.items():
            ips = [ips] if isinstance(ips, str) else list(ips)
            c.append(f"host-record={name}," + ",".join(ips))
        for name, target, port, prio, weight in self.srv:
            if target in (None, "", "."):
                c.append(f"srv-host={name}")
            else:
                c.append(f"srv-host={name},{target},{port},{prio},{weight}")
        return "\n".join(c + self.extra) + "\n"

    def start(self, tries=10):
        fixed = self.port is not None
        last = ""
        for _ in range(1 if fixed else tries):
            if not fixed:
                self.port = free_port("both")
            (self.dir / "dnsmasq.conf").write_text(self._conf())
            self.proc = subprocess.Popen(
                [DNSMASQ, "-k", f"--conf-file={self.dir / 'dnsmasq.conf'}",
                 f"--pid-file={self.dir / 'dnsmasq.pid'}", "--user=root", "--group=root"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=BASE_ENV)
            _live.add(self)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                if (is_listening("127.0.0.1", self.port, "udp")
                        and is_listening("127.0.0.1", self.port, "tcp")):
                    return self
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            last = self.proc.stderr.read()
            self.proc.stderr.close()
            self.proc = None
        raise PeerError(f"dnsmasq would not start: {last}")

    def update(self, srv=None, hosts=None, extra=None):
        """New records: restart on the same port."""
        if srv is not None:
            self.srv = list(srv)
        if hosts is not None:
            self.hosts = dict(hosts)
        if extra is not None:
            self.extra = list(extra)
        self.stop()
        self.start()

    def log(self):
        try:
            return (self.dir / "dnsmasq.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        _live.discard(self)
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------
# servers

def _cert_pair(domain, pki_or_cert):
    """(crt, key) from a (crt, key) tuple or a Pki (leaf for domain and *.domain,
    DNS names only: ejabberd 23.01 crashes on a peer certificate with XmppAddr)."""
    if pki_or_cert is None:
        return None
    if isinstance(pki_or_cert, Pki):
        return pki_or_cert.leaf(domain, dns=[domain, "*." + domain])
    crt, key = pki_or_cert
    return str(crt), str(key)


class _Server:
    """Common part of Prosody and Ejabberd."""
    kind = "server"
    default_options = {}

    def __init__(self, dir, domain, pki_or_cert_tuple, dns_port, ca_file,
                 s2s_port=None, c2s_port=None, options=None, host=None):
        self.dir = Path(dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        _traversable(self.dir)
        self.domain = domain
        self.opts = dict(self.default_options)
        self.opts.update(options or {})
        if not self.opts.get("tls", True):
            pki_or_cert_tuple = None
        self.cert = _cert_pair(domain, pki_or_cert_tuple)
        if ca_file is None and isinstance(pki_or_cert_tuple, Pki):
            ca_file = pki_or_cert_tuple.ca_crt
        self.ca_src = str(ca_file) if ca_file else None
        self.host = host or loopback_host()
        self.s2s_port = s2s_port or free_port("tcp", self.host)
        self.c2s_port = c2s_port or free_port("tcp", self.host)
        while self.c2s_port == self.s2s_port:
            self.c2s_port = free_port("tcp", self.host)
        self.s2s_tls_port = None
        if self.opts.get("s2s_direct_tls"):
            self.s2s_tls_port = free_port("tcp", self.host)
        self.dns = dns_port
        self.uid = alloc_uid()
        self.proc = None
        self.started_at = None

    # DNS helpers ----------------------------------------------------------
    @property
    def target(self):
        """The SRV target name used by srv_records() and hosts_entry()."""
        return self.opts.get("target") or f"xmpp.{self.domain}"

    def hosts_entry(self):
        """{target: host} for Dnsmasq(hosts=); {} when the target is an IP
        literal (options target=<ip>: both Prosody and ejabberd connect to an
        SRV target that is an address without looking it up)."""
        try:
            socket.inet_aton(self.target)
            return {}
        except OSError:
            return {self.target: self.host}

    def srv_records(self, prio=0, weight=5, domain=None, prefer_direct_tls=True):
        """SRV records for this server: _xmpp-server (and _xmpps-server when it
        has a direct-TLS s2s port) for `domain` (default: its own domain).
        With both, prefer_direct_tls gives _xmpp-server priority prio+1: peers
        that mix both lists by priority (ejabberd) then pick direct TLS every
        time instead of at random."""
        d = domain or self.domain
        r = []
        if self.s2s_tls_port:
            r.append((f"_xmpps-server._tcp.{d}", self.target, self.s2s_tls_port, prio, weight))
        plain_prio = prio + 1 if self.s2s_tls_port and prefer_direct_tls else prio
        r.append((f"_xmpp-server._tcp.{d}", self.target, self.s2s_port, plain_prio, weight))
        return r

    @property
    def dns_port(self):
        return self.dns.port if isinstance(self.dns, Dnsmasq) else self.dns

    def _hosts(self):
        h = dict(self.opts.get("hosts") or {})
        if isinstance(self.dns, Dnsmasq):
            h = {**self.dns.hosts, **h}
        return h

    # process helpers ------------------------------------------------------
    def _setpriv(self):
        return [SETPRIV, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]

    def _env(self):
        return dict(BASE_ENV, HOME=str(self.dir), USER=f"u{self.uid}")

    def _install(self, name, src, mode=0o600):
        dst = self.dir / "certs" / name
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)
        return dst

    def log(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, regex, timeout=10, start=0):
        """The first match of `regex` in the log at or after character `start`,
        waiting up to `timeout` s. Raises PeerError with the log tail if none."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(), start)
            if m:
                return m
            if time.monotonic() >= deadline:
                tail = "\n".join(self.log().splitlines()[-40:])
                raise PeerError(f"{self.kind} {self.domain}: no /{regex}/ in the log "
                                f"after {timeout} s\n--- log tail ---\n{tail}")
            time.sleep(0.05)

    def log_mark(self):
        """Current log length, to pass as wait_log(start=)."""
        return len(self.log())

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# A Lua config line that opens a section (Prosody's configmanager: VirtualHost,
# Host, host, Component, component followed by the name).
_LUA_SECTION = re.compile(r"""^\s*(?:VirtualHost|Host|host|Component|component)\b\s*[("'\[]""")
# `Component "name"` alone (or with the module "component"): an external,
# XEP-0114 component; `Component "name" "muc"` and the like are internal.
_LUA_EXTERNAL_COMPONENT = re.compile(
    r"""^\s*[Cc]omponent\s*\(?\s*(["'])(?P<name>[^"']+)\1\s*\)?\s*"""
    r"""(?:\(?\s*(["'])component\3\s*\)?)?\s*(?:--.*)?$""")


def split_prosody_snippet(snippet):
    """Split a Prosody config snippet into (global_lines, section_lines): the
    lines before its first VirtualHost/Host/Component line (global options,
    e.g. component_ports / component_interface, and comments) and that line
    with everything after it. Nothing is moved out of a section: an option
    written after a Component line belongs to that component, as in Prosody."""
    if snippet is None:
        return [], []
    text = snippet if isinstance(snippet, str) else "\n".join(snippet)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _LUA_SECTION.match(line):
            return lines[:i], lines[i:]
    return lines, []


def _lua_global(lines, name):
    """The last `name = value` among Lua global lines (comments stripped), as
    the raw value text; None when not set. Handles `{ ... }` over several lines."""
    text = "\n".join(re.sub(r"--.*", "", l) for l in lines)
    found = re.findall(r"(?m)^\s*" + re.escape(name) +
                       r"""\s*=\s*(\{[^}]*\}|"[^"]*"|'[^']*'|[^\s;]+)""", text)
    return found[-1] if found else None


def _lua_ports(value):
    return [int(x) for x in re.findall(r"\d+", value or "")]


def _lua_strings(value):
    return [a or b for a, b in re.findall(r""""([^"]*)"|'([^']*)'""", value or "")]


class Prosody(_Server):
    """Stock Debian Prosody 0.12 with one VirtualHost, as a non-root uid.

    options (defaults in brackets):
      tls [True]: False = no certificate, mod_tls off: a plaintext-only peer
          (also forces s2s_require_encryption/s2s_secure_auth to false)
      s2s_require_encryption [True]  -> s2s_require_encryption
      s2s_secure_auth [True]         -> s2s_secure_auth (valid cert required:
                                        SASL EXTERNAL, no dialback fallback)
      dialback [True]                -> "dialback" in modules_enabled / _disabled
      s2s_direct_tls [False]         -> s2s_direct_tls_ports = { .s2s_tls_port }
      modules [()]                   -> more modules_enabled
      extra [()]                     -> raw Lua lines, global section
      host_extra [()]                -> raw Lua lines in the VirtualHost section
      log_level ["debug"]; target: SRV target name [xmpp.<domain>]
      s2s [True]: False = an internal server that does no s2s at all: "s2s",
          "s2s_auth_certs" and "dialback" in modules_disabled, s2s_ports and
          s2s_direct_tls_ports empty (nothing listens on .s2s_port), no DNS
          needed (start() without one writes no unbound line). A stanza to a
          remote domain then bounces with <not-allowed/> ("Communication with
          remote domains is not enabled").
      component_port [None]: int -> global `component_ports = { N }` (XEP-0114,
          jabber:component:accept), bound on local_interfaces (= .host)
          unless the snippet sets component_interface(s). Without it and
          without a snippet that sets component_ports: `component_ports = { }`.
      component_snippet [None]: raw Lua text as an admin tool prints it, e.g.
              component_ports = { 5347 }
              component_interface = "127.0.0.1"
              Component "fabrikam.example"
                  component_secret = "s3cret"
          Split by split_prosody_snippet(): its lines before the first
          VirtualHost/Component line go to the global section (after `extra`;
          the harness's own component_ports line is left out when they set
          component_ports, so theirs wins over component_port), the rest
          after the VirtualHost section (after host_extra). Set it for the
          next start() with set_components().

    After start() (config written): .component_ports (ints) and
    .component_interfaces (strings) are what Prosody was told to listen on
    for components; start() waits for every such port when the config has at
    least one external Component (Prosody opens the port only then: the
    listener belongs to mod_component, loaded for the first Component host).
    """
    kind = "prosody"
    default_options = {"tls": True, "s2s_require_encryption": True,
                       "s2s_secure_auth": True, "dialback": True, "log_level": "debug"}

    def __init__(self, dir, domain, pki_or_cert_tuple, dns_port, ca_file,
                 s2s_port=None, c2s_port=None, options=None, host=None):
        super().__init__(dir, domain, pki_or_cert_tuple, dns_port, ca_file,
                         s2s_port, c2s_port, options, host)
        self.config = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.log"
        self.component_ports = []
        self.component_interfaces = []
        self._wait_components = False

    def set_components(self, snippet, port=None):
        """Use `snippet` (Lua text, see component_snippet; None: no components)
        from the next start() on, and component_port `port` when given: the
        config is rewritten at every start, so stop(); set_components(...);
        start() reconfigures a server. Returns self."""
        self.opts["component_snippet"] = snippet
        if port is not None:
            self.opts["component_port"] = port
        return self

    def _write_config(self):
        o = self.opts
        tls = o.get("tls", True)
        d = self.dir
        (d / "data").mkdir(exist_ok=True)
        (d / "certs").mkdir(exist_ok=True)
        if tls and self.cert:
            self._install(f"{self.domain}.crt", self.cert[0], 0o644)
            self._install(f"{self.domain}.key", self.cert[1])
        ca = self._install("ca.crt", self.ca_src, 0o644) if self.ca_src else None
        q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
        b = lambda v: "true" if v else "false"
        s2s = o.get("s2s", True)
        enabled = ["roster", "saslauth", "disco", "ping"]
        # offline storage only when asked for (modules=("offline",)): then messages to an
        # offline user are stored instead of bounced
        disabled = ["c2s_direct_tls"] + ([] if "offline" in o.get("modules", ()) else ["offline"])
        enabled.append("tls") if tls else disabled.append("tls")
        if s2s and o.get("dialback", True):
            enabled.append("dialback")
        else:
            disabled.append("dialback")
        if not s2s:
            disabled += ["s2s", "s2s_auth_certs"]
        enabled += list(o.get("modules", ()))
        snip_global, snip_sections = split_prosody_snippet(o.get("component_snippet"))
        snip_ports = _lua_global(snip_global, "component_ports")
        if snip_ports is not None:
            self.component_ports = _lua_ports(snip_ports)
            ports_line = []
        elif o.get("component_port"):
            self.component_ports = [int(o["component_port"])]
            ports_line = [f"component_ports = {{ {self.component_ports[0]} }}"]
        else:
            self.component_ports = []
            ports_line = ["component_ports = { }"]
        ifaces = (_lua_global(snip_global, "component_interfaces")
                  or _lua_global(snip_global, "component_interface"))
        self.component_interfaces = _lua_strings(ifaces) if ifaces else [self.host]
        self._wait_components = bool(self.component_ports) and any(
            _LUA_EXTERNAL_COMPONENT.match(l) for l in snip_sections)
        req = bool(o.get("s2s_require_encryption", True)) and tls
        secure = bool(o.get("s2s_secure_auth", True)) and tls
        dns_port = self.dns_port
        lines = [
            f"pidfile = {q(d / 'prosody.pid')}",
            f"data_path = {q(d / 'data')}",
            f"log = {{ {{ levels = {{ min = {q(o.get('log_level', 'debug'))} }}, "
            f"to = \"file\", filename = {q(self.log_path)} }} }}",
            f"interfaces = {{ {q(self.host)} }}",
            f"local_interfaces = {{ {q(self.host)} }}",
            "use_ipv6 = false",
            f"c2s_ports = {{ {self.c2s_port} }}",
            f"s2s_ports = {{ {self.s2s_port if s2s else ''} }}",
            "c2s_direct_tls_ports = { }",
            f"s2s_direct_tls_ports = {{ {(self.s2s_tls_port if s2s else None) or ''} }}",
            *ports_line, "http_ports = { }", "https_ports = { }",
            f"admin_socket = {q(d / 'admin.sock')}",
            "modules_enabled = { " + "; ".join(map(q, enabled)) + " }",
            "modules_disabled = { " + "; ".join(map(q, disabled)) + " }",
            'authentication = "internal_hashed"', 'storage = "internal"',
            "c2s_require_encryption = false", "allow_unencrypted_plain_auth = true",
            f"s2s_require_encryption = {b(req)}",
            f"s2s_secure_auth = {b(secure)}",
            "s2s_timeout = 10",
            f"certificates = {q(d / 'certs')}",
        ]
        if ca:
            lines.append(f"ssl = {{ cafile = {q(ca)} }}")
        if dns_port:
            lines.append(f"unbound = {{ forward = {q(f'127.0.0.1@{dns_port}')}; "
                         "resolvconf = false; hoststxt = false }")
        lines += list(o.get("extra", ()))
        lines += snip_global
        lines.append(f"VirtualHost {q(self.domain)}")
        lines += ["  " + l for l in o.get("host_extra", ())]
        lines += snip_sections
        self.config.write_text("\n".join(lines) + "\n")
        _chown_tree(d, self.uid)

    def start(self, dns=None, timeout=15):
        """Write the config and start prosody -F; returns once the c2s and s2s
        ports (s2s=False: c2s only) and the component ports (when there is an
        external Component) listen. dns: a Dnsmasq or a port (else the
        constructor's; none needed with s2s=False)."""
        if dns is not None:
            self.dns = dns
        if not self.dns_port and self.opts.get("s2s", True):
            raise PeerError(f"prosody {self.domain}: no DNS port")
        self._write_config()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self._setpriv() + [PROSODY, "-F", "--config", str(self.config)],
            cwd=self.dir, env=self._env(), stdin=subprocess.DEVNULL,
            stdout=open(self.dir / "stdout.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        _live.add(self)
        ports = [self.c2s_port]
        if self.opts.get("s2s", True):
            ports += [self.s2s_port] + ([self.s2s_tls_port] if self.s2s_tls_port else [])
        comp = ([(i, p) for i in self.component_interfaces for p in self.component_ports]
                if self._wait_components else [])

        def ready():
            if "Failed to open server port" in self.log():
                # Prosody goes on without the port; the SRV records point at it.
                raise PeerError(f"prosody {self.domain}: a port was taken\n"
                                + "\n".join(l for l in self.log().splitlines()
                                             if "Failed to open" in l))
            return (all(is_listening(self.host, p) for p in ports)
                    and all(listening_on(i, p) for i, p in comp))
        try:
            _wait(ready, timeout, f"prosody {self.domain}", self.proc, self._log_and_stdout)
        except BaseException:
            self.stop()
            raise
        return self

    def _log_and_stdout(self):
        try:
            out = (self.dir / "stdout.log").read_text(errors="replace")
        except OSError:
            out = ""
        return self.log() + "\n" + out

    def prosodyctl(self, *args, timeout=30):
        if not self.config.exists():
            self._write_config()
        return _run(self._setpriv() + [PROSODYCTL, "--config", str(self.config)] + list(args),
                    f"prosodyctl {args[0] if args else ''}", timeout=timeout,
                    env=self._env(), cwd=self.dir)

    def add_user(self, local, password):
        self.prosodyctl("register", local, self.domain, password)

    def stop(self, timeout=5):
        _live.discard(self)
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        kill_uid(self.uid)


class Ejabberd(_Server):
    """Stock Debian ejabberd 23.01 (OTP 25) with one host, as a non-root uid.

    options (defaults in brackets):
      tls [True]: False = no certfiles, s2s_use_starttls false, no c2s STARTTLS
      s2s_use_starttls ['required' with tls, else 'false'] -> s2s_use_starttls
          ('false' | 'optional' | 'required')
      dialback [True]          -> mod_s2s_dialback in modules (or not)
      (ca_file                 -> ca_file and s2s_cafile: peer certificates are
                                  verified against it; a valid one = SASL EXTERNAL)
      s2s_direct_tls [False]   -> a second ejabberd_s2s_in listener with tls: true
                                  on .s2s_tls_port (_xmpps-server)
      hosts [{}]               -> more /etc/hosts lines in ejabberd's mount
                                  namespace (the Dnsmasq's hosts are added)
      loglevel ['info']; modules [{}] (more modules: {name: yaml-inline-opts});
      extra [()] raw YAML lines (top level); target: SRV target name
      listen_extra [None]: raw YAML list items added under `listen:` after the
          c2s/s2s listeners: a str (one or more items) or a list of str (one
          item each), block or flow style; each item is dedented and
          re-indented to the harness's 2 spaces, and must start with "- ".
          E.g. an XEP-0114 listener (ejabberd 23.01 syntax):
              - port: 5275
                ip: "127.0.0.1"
                module: ejabberd_service
                hosts: {"fabrikam.example": {password: "s3cret"}}
          start() waits for each item's `port:` (on its `ip:`, else any).
      s2s [True]: False = no ejabberd_s2s_in listener, `s2s_access: none`
          (ejabberd's built-in deny-all rule: no outgoing s2s either), no
          DNS needed. An internal server for components.

    The generated ejabberd.yml is parsed back with PyYAML when it is
    importable (Debian's python3-yaml), so a listen_extra that breaks the
    YAML fails in start() with the text instead of an ejabberd crash log.

    Certificates presented TO ejabberd must carry no XmppAddr otherName:
    p1_xmpp 1.6.1 xmpp_stream_pkix:get_cert_domains/1 exits with badarg on it
    and the inbound s2s stream dies (the peer sees remote-server-timeout). Its
    own certificate may have one. Certificates made from a Pki here are DNS-only.
    Startup ~1 s, ejabberdctl register ~0.8 s, graceful stop ~2 s.
    """
    kind = "ejabberd"
    default_options = {"tls": True, "dialback": True, "loglevel": "info"}

    def __init__(self, dir, domain, cert_tuple, dns_port, ca_file,
                 s2s_port=None, c2s_port=None, options=None, host=None):
        super().__init__(dir, domain, cert_tuple, dns_port, ca_file,
                         s2s_port, c2s_port, options, host)
        self.dist_port = free_port("tcp", "127.0.0.1")
        self.node = f"xfed{self.uid}_{random.getrandbits(32):08x}@localhost"
        self.conf_dir = self.dir / "conf"
        self.log_path = self.dir / "logs" / "ejabberd.log"
        self.ctl = self.dir / "ejabberdctl"

    def _listen_extra(self):
        """listen_extra as a list of items, each a list of lines indented by 2."""
        import textwrap
        extra = self.opts.get("listen_extra")
        if not extra:
            return []
        chunks = [extra] if isinstance(extra, str) else list(extra)
        items = []
        for chunk in chunks:
            text = textwrap.dedent(chunk.strip("\n"))
            cur = None
            for line in text.splitlines():
                if not line.strip():
                    continue
                if line.startswith("- ") or line == "-":
                    cur = []
                    items.append(cur)
                elif cur is None or not line.startswith(" "):
                    raise ValueError(f"listen_extra: not a YAML list item: {line!r}")
                cur.append("  " + line)
        return items

    @staticmethod
    def _item_addr(item):
        """(ip or None, port) of a listen item (YAML text), from its first
        `port:` and `ip:`; (None, None) when it has no port."""
        text = "\n".join(item)
        port = re.search(r"""\bport\s*:\s*["']?(\d+)""", text)
        ip = re.search(r"""\bip\s*:\s*["']?([0-9A-Fa-f.:]+)""", text)
        return (ip.group(1) if ip else None), (int(port.group(1)) if port else None)

    def _write_config(self):
        o = self.opts
        d = self.dir
        tls = o.get("tls", True)
        s2s = o.get("s2s", True)
        extra_items = self._listen_extra()
        for sub in ("conf", "logs", "spool", "certs"):
            (d / sub).mkdir(exist_ok=True)
        starttls = str(o.get("s2s_use_starttls", "required" if tls else "false")).lower()
        if starttls not in ("false", "optional", "required"):
            raise ValueError("s2s_use_starttls: false, optional or required")
        pem = None
        if tls and self.cert:
            pem = d / "certs" / f"{self.domain}.pem"
            pem.write_text(Path(self.cert[0]).read_text() + Path(self.cert[1]).read_text())
            os.chmod(pem, 0o600)
        ca = self._install("ca.crt", self.ca_src, 0o644) if self.ca_src else None
        q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
        y = [f"hosts: [{q(self.domain)}]",
             f"loglevel: {o.get('loglevel', 'info')}",
             "hide_sensitive_log_data: false",
             f"s2s_use_starttls: {starttls}",
             "s2s_dns_timeout: 2", "s2s_dns_retries: 1",
             "s2s_max_retry_delay: 2", "outgoing_s2s_timeout: 10",
             f"s2s_access: {'all' if s2s else 'none'}", "auth_method: internal",
             "listen:",
             f"  - {{port: {self.c2s_port}, ip: {q(self.host)}, module: ejabberd_c2s, "
             f"starttls: {'true' if pem else 'false'}, starttls_required: false, "
             f"access: c2s}}"]
        if s2s:
            y.append(f"  - {{port: {self.s2s_port}, ip: {q(self.host)}, "
                     f"module: ejabberd_s2s_in}}")
        if s2s and self.s2s_tls_port:
            y.append(f"  - {{port: {self.s2s_tls_port}, ip: {q(self.host)}, "
                     f"module: ejabberd_s2s_in, tls: true}}")
        for item in extra_items:
            y += item
        if pem:
            y.append(f"certfiles: [{q(pem)}]")
        if ca:
            y += [f"ca_file: {q(ca)}", f"s2s_cafile: {q(ca)}"]
        y += ["acl: {local: {user_regexp: \"\"}}",
              "access_rules: {local: {allow: local}, c2s: {allow: all}, "
              "s2s: {allow: all}}",
              "modules:", "  mod_roster: {}", "  mod_disco: {}", "  mod_ping: {}"]
        if o.get("dialback", True):
            y.append("  mod_s2s_dialback: {}")
        for m, v in (o.get("modules") or {}).items():
            y.append(f"  {m}: {v or '{}'}")
        y += list(o.get("extra", ()))
        text = "\n".join(y) + "\n"
        self._check_yaml(text, 1 + (s2s and 1 + bool(self.s2s_tls_port)) + len(extra_items))
        (d / "conf" / "ejabberd.yml").write_text(text)
        (d / "conf" / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE={self.node}\n"
            f"ERL_DIST_PORT={self.dist_port}\n"
            "ERL_EPMD_ADDRESS=127.0.0.1\n"
            "ERL_OPTIONS=\"-kernel inet_dist_use_interface {127,0,0,1}\"\n"
            f"EJABBERD_PID_PATH={d / 'ejabberd.pid'}\n"
            "EJABBERD_BYPASS_WARNINGS=true\n")
        # resolv_conf must come first: reading it resets the name servers.
        inetrc = ['{resolv_conf, ""}.', '{hosts_file, ""}.', "{lookup, [file, dns]}.",
                  "{host, {127,0,0,1}, [\"localhost\"]}."]
        if self.dns_port:
            inetrc.append(f"{{nameserver, {{127,0,0,1}}, {self.dns_port}}}.")
        (d / "conf" / "inetrc").write_text("\n".join(inetrc) + "\n")
        self.write_hosts()
        (d / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        script = Path(EJABBERDCTL).read_text()
        script, n = re.subn(r"(?m)^INSTALLUSER=ejabberd$", 'INSTALLUSER=""', script)
        if n != 1:
            raise PeerError("ejabberdctl: no INSTALLUSER=ejabberd line to replace")
        self.ctl.write_text(script)
        os.chmod(self.ctl, 0o755)
        _chown_tree(d, self.uid)

    def _check_yaml(self, text, n_listen):
        try:
            import yaml
        except ImportError:
            return
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PeerError(f"ejabberd {self.domain}: generated ejabberd.yml does not "
                            f"parse: {e}\n--- ejabberd.yml ---\n{text}") from None
        listen = doc.get("listen") if isinstance(doc, dict) else None
        if not isinstance(listen, list) or len(listen) != n_listen or not all(
                isinstance(i, dict) and "module" in i for i in listen):
            raise PeerError(f"ejabberd {self.domain}: ejabberd.yml `listen:` is not the "
                            f"{n_listen} listeners expected (listen_extra indentation?): "
                            f"{listen!r}\n--- ejabberd.yml ---\n{text}")

    def write_hosts(self, hosts=None):
        """(Re)write the /etc/hosts that ejabberd sees (same inode, so a running
        ejabberd sees the change)."""
        if hosts is not None:
            self.opts["hosts"] = dict(hosts)
        lines = ["127.0.0.1 localhost"]
        for name, ips in self._hosts().items():
            for ip in ([ips] if isinstance(ips, str) else ips):
                lines.append(f"{ip} {name}")
        p = self.dir / "hosts"
        with open(p, "w") as f:   # truncate in place: keeps the bind-mounted inode
            f.write("\n".join(lines) + "\n")
        os.chmod(p, 0o644)

    def _ctl_argv(self, *args):
        return [str(self.ctl), "--config-dir", str(self.conf_dir), "--spool",
                str(self.dir / "spool"), "--logs", str(self.dir / "logs")] + list(args)

    def start(self, dns=None, timeout=30):
        """Write the config and start `ejabberdctl foreground` in a private mount
        namespace; returns once the c2s and s2s ports (s2s=False: c2s only) and
        the listen_extra ports listen."""
        if dns is not None:
            self.dns = dns
        if not self.dns_port and self.opts.get("s2s", True):
            raise PeerError(f"ejabberd {self.domain}: no DNS port")
        self._write_config()
        inner = (f'mount --bind {self.dir / "hosts"} /etc/hosts && '
                 f'mount --bind {self.dir / "resolv.conf"} /etc/resolv.conf && exec "$@"')
        argv = (["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh"]
                + self._setpriv() + self._ctl_argv("foreground"))
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=self.dir, env=self._env(),
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "logs" / "stdout.log", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _live.add(self)
        addrs = [(self.host, self.c2s_port)]
        if self.opts.get("s2s", True):
            addrs += [(self.host, p) for p in [self.s2s_port, self.s2s_tls_port] if p]
        for item in self._listen_extra():
            ip, port = self._item_addr(item)
            if port:
                addrs.append((ip, port))

        def up(ip, port):
            if ip is None:   # ejabberd's default ip: any (v4 or v6)
                return listening_on("0.0.0.0", port) or listening_on("::", port)
            return listening_on(ip, port)
        try:
            _wait(lambda: all(up(ip, p) for ip, p in addrs)
                  and " is started in the node " in self.log(), timeout,
                  f"ejabberd {self.domain}", self.proc, self._log_and_stdout)
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def _log_and_stdout(self):
        try:
            out = (self.dir / "logs" / "stdout.log").read_text(errors="replace")
        except OSError:
            out = ""
        return self.log() + "\n" + out

    def ejabberdctl(self, *args, timeout=60):
        return _run(self._setpriv() + self._ctl_argv(*args), f"ejabberdctl {args[0]}",
                    timeout=timeout, env=self._env(), cwd=self.dir)

    def add_user(self, local, password):
        self.ejabberdctl("register", local, self.domain, password)

    def stop(self, timeout=10, graceful=True):
        """SIGTERM to the whole process group (beam shuts down cleanly on it and
        closes its streams, ~2 s; graceful=False: SIGKILL at once), then a sweep
        of the uid: no beam, erl_child_setup, epmd or inet_gethost of this
        instance survives."""
        _live.discard(self)
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.proc.wait()
            self.proc = None
        kill_uid(self.uid, grace=3.0 if graceful else 0.0)


def stop_all(*things):
    """stop() each (ignoring errors), in parallel, for teardown."""
    ts = [threading.Thread(target=_quiet_stop, args=(t,)) for t in things if t is not None]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _quiet_stop(t):
    try:
        t.stop()
    except Exception:
        pass


def parallel(*calls):
    """Run callables in threads; re-raise the first exception; return results."""
    results = [None] * len(calls)
    errors = []

    def run(i, f):
        try:
            results[i] = f()
        except BaseException as e:  # noqa: B902
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(calls)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------------------
# client

def quiet_slixmpp():
    """slixmpp logs warnings through the root 'last resort' handler (e.g. "Using
    slower stringprep" at import); keep them out of test output unless the
    caller configured the 'slixmpp' logger itself."""
    import logging
    lg = logging.getLogger("slixmpp")
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.ERROR)


class Client:
    """A slixmpp c2s client run on an asyncio loop in a background thread, for
    synchronous tests. Plain TCP by default (tls=False: no STARTTLS; SCRAM or
    PLAIN in the clear, fine on loopback)."""

    def __init__(self, jid, password, host, port, tls=False, ca_file=None,
                 resource=None):
        self.jid = jid if "/" in jid or resource is None else f"{jid}/{resource}"
        self.password = password
        self.host, self.port = host, port
        self.tls, self.ca_file = tls, ca_file
        self.messages = []          # (from bare-or-full JID str, body)
        self.errors = []            # (from, id, condition) of message errors
        self.presences = []         # (from, type, status)
        self._msg_cond = threading.Condition()
        self.loop = None
        self.thread = None
        self.xmpp = None

    def _call(self, coro, timeout):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def connect(self, timeout=10):
        quiet_slixmpp()
        import slixmpp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"slixmpp {self.jid}")
        self.thread.start()

        async def setup():
            x = slixmpp.ClientXMPP(self.jid, self.password)
            x.loop = self.loop
            x.register_plugin("xep_0030")
            x.register_plugin("xep_0199")
            x["feature_mechanisms"].unencrypted_plain = True
            if self.ca_file:
                x.ca_certs = self.ca_file
            started = self.loop.create_future()

            def ok(_):
                x.send_presence()
                if not started.done():
                    started.set_result(True)

            def fail(why):
                if not started.done():
                    started.set_exception(PeerError(f"{self.jid}: {why}"))

            x.add_event_handler("session_start", ok)
            x.add_event_handler("failed_all_auth", lambda e: fail("authentication failed"))
            x.add_event_handler("connection_failed", lambda e: fail(f"connection failed: {e}"))
            x.add_event_handler("message", self._on_message)
            x.add_event_handler("message_error", self._on_error)
            x.add_event_handler("presence", self._on_presence)
            x.connect((self.host, self.port), force_starttls=self.tls,
                      disable_starttls=not self.tls)
            self.xmpp = x
            await asyncio.wait_for(started, timeout)

        try:
            self._call(setup(), timeout + 2)
        except BaseException as e:
            self.disconnect()
            if isinstance(e, PeerError):
                raise
            raise PeerError(f"{self.jid}: no session on {self.host}:{self.port}: "
                            f"{type(e).__name__} {e}") from None
        return self

    def _on_error(self, msg):
        with self._msg_cond:
            self.errors.append((str(msg["from"]), msg["id"], msg["error"]["condition"]))
            self._msg_cond.notify_all()

    def _on_presence(self, p):
        with self._msg_cond:
            self.presences.append((str(p["from"]), p["type"], p["status"]))
            self._msg_cond.notify_all()

    def wait_for(self, pred, timeout=10):
        """Waits until pred(self) is true (under the lock); returns its last value."""
        deadline = time.monotonic() + timeout
        with self._msg_cond:
            while True:
                v = pred(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    return v
                self._msg_cond.wait(left)

    def send_presence(self, to=None, ptype=None, status=None):
        async def go():
            kw = {}
            if to:
                kw["pto"] = to
            if ptype:
                kw["ptype"] = ptype
            if status:
                kw["pstatus"] = status
            self.xmpp.send_presence(**kw)
        self._call(go(), 5)

    def send_messages(self, to, bodies, ids=None, mtype="chat"):
        """Many messages in one call (ids: their stanza ids)."""
        async def go():
            for i, b in enumerate(bodies):
                m = self.xmpp.make_message(mto=to, mbody=b, mtype=mtype)
                if ids:
                    m["id"] = ids[i]
                m.send()
        self._call(go(), 30)

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal", "headline", "groupchat") and msg["body"]:
            with self._msg_cond:
                self.messages.append((str(msg["from"]), msg["body"]))
                self._msg_cond.notify_all()

    def ping(self, jid, timeout=10):
        """XEP-0199 ping: (True, None) on a result, (False, condition) on an
        error (e.g. 'remote-server-not-found'), (False, 'timeout') without answer."""
        from slixmpp.exceptions import IqError, IqTimeout

        async def go():
            try:
                await self.xmpp.plugin["xep_0199"].send_ping(jid, timeout=timeout)
                return True, None
            except IqError as e:
                return False, e.iq["error"]["condition"] or "error"
            except IqTimeout:
                return False, "timeout"

        return self._call(go(), timeout + 5)

    def send_message(self, to, body, mtype="chat"):
        async def go():
            self.xmpp.send_message(mto=to, mbody=body, mtype=mtype)
        self._call(go(), 5)

    def wait_message(self, body=None, sender=None, timeout=10):
        """The first received (from, body) matching body/sender (sender matches
        the bare JID), waiting up to `timeout` s; None if none came."""
        def match(m):
            return ((body is None or m[1] == body)
                    and (sender is None or m[0].split("/")[0] == sender))
        deadline = time.monotonic() + timeout
        with self._msg_cond:
            while True:
                for m in self.messages:
                    if match(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._msg_cond.wait(left)

    def disconnect(self, timeout=5):
        if self.loop is None:
            return
        if self.xmpp is not None:
            async def go():
                self.xmpp.disconnect(wait=0.5)
                try:
                    await asyncio.wait_for(self.xmpp.disconnected, timeout)
                except (asyncio.TimeoutError, Exception):
                    pass
            try:
                self._call(go(), timeout + 2)
            except Exception:
                pass
        loop = self.loop

        async def cancel_rest():
            for t in asyncio.all_tasks(loop):
                if t is not asyncio.current_task():
                    t.cancel()
        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(2)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(5)
        if not loop.is_running():
            loop.close()
        self.loop = None
        self.xmpp = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.disconnect()
