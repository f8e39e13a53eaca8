#!/usr/bin/python3
"""Benchmark targets for xfed-bench: start one router, print ONE JSON line on
stdout when it is ready, keep it running until stdin closes (or SIGTERM), then
stop it and everything it started. Diagnostics go to stderr; on failure the
one stdout line is {"error": "..."} and the exit status 1. 127.0.0.1 only.

usage:
  targets.py pki --dir DIR --lanes N
  targets.py start relay|xfed|prosody|ejabberd --build BUILD --dir DIR --pki PKIDIR
             --lanes N --bench-s2s PORT --bench-internal PORT --secret S [--threads T]

Lane I: partner domains pI.bench (plaintext, dialback) and tI.bench (TLS, SASL
EXTERNAL; xfed only), local/component domain cI.bench. The load generator is
the authoritative server of pI.bench/tI.bench on 127.0.0.1:BENCH_S2S and, for
xfed and the relay, the internal server on 127.0.0.1:BENCH_INTERNAL.

Prosody and ejabberd run through tests/lib/peers.py (non-root uids, a private
dnsmasq for the SRV records), exactly as the interop tests run them.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "lib"))
import peers  # noqa: E402
from peers import Dnsmasq, Ejabberd, Pki, Prosody, free_port, is_listening  # noqa: E402

# The SRV target name of every pI.bench / tI.bench: the load generator.
GEN_HOST = "gen.bench"

# The JSON line is the only thing on our stdout: keep a private copy of fd 1 and
# point fd 1 at stderr, so that nothing else (ours or a child's) can write there.
_OUT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def emit(obj):
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def log(msg):
    print(f"targets.py: {msg}", file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM / SIGINT: stop the target and exit."""


def _on_signal(sig, frame):
    raise Stop()


def wait_until(pred, timeout, what, proc=None, logfile=None):
    """peers._wait (the harness's readiness loop) with a log file instead of a reader."""
    def log():
        try:
            return Path(logfile).read_text(errors="replace")
        except OSError:
            return ""

    log = log if logfile else None
    try:
        peers._wait(pred, timeout, what, proc, log)
    except peers.PeerError as e:
        raise RuntimeError(str(e)) from None


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            r.read()
            return r.status == 200
    except OSError:
        return False


def lua_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def yaml_str(s):
    return json.dumps(str(s))  # a JSON string is a valid YAML double-quoted scalar


# ---------------------------------------------------------------------------
# pki

def make_pki(a):
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    # Pki.leaf() picks another file name when one exists: start from a clean slate.
    for stem in ("bench", "local"):
        for ext in (".crt", ".key", ".csr", ".ext"):
            (d / (stem + ext)).unlink(missing_ok=True)
    pki = Pki(d, name="xfed-bench CA")
    n = range(a.lanes)
    # DNS names only: ejabberd 23.01 fails on a peer certificate with XmppAddr.
    bench = pki.leaf("bench", dns=[f"p{i}.bench" for i in n] + [f"t{i}.bench" for i in n])
    local = pki.leaf("local", dns=[f"c{i}.bench" for i in n])
    return {"ca": str(Path(pki.ca_crt).resolve()),
            "bench_cert": str(Path(bench[0]).resolve()),
            "bench_key": str(Path(bench[1]).resolve()),
            "local_cert": str(Path(local[0]).resolve()),
            "local_key": str(Path(local[1]).resolve())}


# ---------------------------------------------------------------------------
# targets: start() returns the JSON object; stop() is safe to call at any point

class Process:
    """A child process of ours with its stdout+stderr in a log file."""

    def __init__(self, argv, logfile):
        self.logfile = logfile
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=open(logfile, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)  # no terminal signals

    def log(self):
        try:
            return Path(self.logfile).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {self.proc.pid} ignored SIGTERM for {timeout} s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode not in (0, -signal.SIGTERM):
            log(f"pid {self.proc.pid} exited with {self.proc.returncode}; log tail:\n"
                + "\n".join(self.log().splitlines()[-20:]))


class Relay:
    """`xfed --relay`: the raw byte relay, baseline without XML."""

    def __init__(self, a):
        self.a = a
        self.p = None

    def start(self):
        a = self.a
        port = free_port()
        logfile = Path(a.dir) / "relay.log"
        self.p = Process([str(Path(a.build) / "core" / "xfed"), "--relay",
                          f"127.0.0.1:{port}=127.0.0.1:{a.bench_internal}",
                          "--threads", str(a.threads), "--admin", "127.0.0.1:0"], logfile)
        # Same readiness as bench/relay-figures.sh: the "relay started" line.
        wait_until(lambda: "relay started" in self.p.log() and is_listening("127.0.0.1", port),
                   15, "xfed --relay", self.p.proc, logfile)
        m = re.search(r"http://127\.0\.0\.1:\d+", self.p.log())
        out = {"pids": [self.p.proc.pid], "s2s_port": port}
        if m:
            out["admin"] = m.group(0)
        return out

    def stop(self):
        if self.p:
            self.p.stop()


class Xfed:
    """The full router: one [local cI.bench] per lane, partners pI.bench
    (dialback, plaintext) and tI.bench (TLS + SASL EXTERNAL), both reached at
    BENCH_S2S through proxy-fqdn, one internal server on BENCH_INTERNAL."""

    def __init__(self, a):
        self.a = a
        self.p = None

    def start(self):
        a = self.a
        d = fresh_dir(a, "xfed")  # a fresh store: exactly the partners below
        store, conf, logfile = d / "xfed.db", d / "xfed.conf", d / "xfed.log"
        pki = Path(a.pki).resolve()
        s2s_port, admin_port = free_port(), free_port()
        while admin_port == s2s_port:
            admin_port = free_port()
        # No --debug: xfed then logs per stream (info), never per stanza; it has no
        # quieter level.
        lines = ["[xfed]", f"threads = {a.threads}", f"store = {store}",
                 "[admin]", f"listen = 127.0.0.1:{admin_port}",
                 "[s2s]", f"listen = 127.0.0.1:{s2s_port}", f"ca_file = {pki / 'ca.crt'}"]
        for i in range(a.lanes):
            lines += [f"[local c{i}.bench]", f"cert = {pki / 'local.crt'}",
                      f"key = {pki / 'local.key'}"]
        lines += ["[internal bench]", "host = 127.0.0.1", f"port = {a.bench_internal}",
                  f"secret = {a.secret}"]
        conf.write_text("\n".join(lines) + "\n")

        # Partners go into the store before xfed starts (one xfedctl call each,
        # ~3 ms per call).
        t0 = time.monotonic()
        proxy = f"127.0.0.1:{a.bench_s2s}"
        for i in range(a.lanes):
            self.ctl(store, f"p{i}.bench", "--tls", "not-supported", "--sasl", "not-supported",
                     "--dialback", "true", "--proxy-fqdn", proxy)
            self.ctl(store, f"t{i}.bench", "--tls", "required", "--sasl", "required",
                     "--dialback", "false", "--proxy-fqdn", proxy)
        # The idle-stream phase opens up to tens of thousands of streams from a few
        # partner domains: lift the per-partner and gateway stream limits.
        self.run_ctl(store, "gateway", "set", "--connection-limit", "1000000",
                     "--partner-connection-limit", "65535")
        log(f"xfed: {2 * a.lanes} partners added in {time.monotonic() - t0:.2f} s")

        debug = ["--debug"] if os.environ.get("XFED_BENCH_PEER_LOG") == "debug" else []
        self.p = Process([str(Path(a.build) / "core" / "xfed"), "--config", str(conf), *debug],
                         logfile)
        admin = f"http://127.0.0.1:{admin_port}"
        wait_until(lambda: "xfed started" in self.p.log()
                   and is_listening("127.0.0.1", s2s_port) and http_ok(admin + "/metrics"),
                   20, "xfed", self.p.proc, logfile)
        return {"pids": [self.p.proc.pid], "s2s_port": s2s_port, "admin": admin}

    def ctl(self, store, domain, *opts):
        self.run_ctl(store, "partner", "new", domain, "--partner-type", "federated", *opts)

    def run_ctl(self, store, *args):
        argv = [str(Path(self.a.build) / "tools" / "xfedctl"), "--store", str(store), *args]
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"xfedctl {' '.join(args)}: {r.stdout}{r.stderr}")

    def stop(self):
        if self.p:
            self.p.stop()


def fresh_dir(a, name):
    """DIR/name, emptied: ejabberd's Mnesia spool is tied to the node name of the
    run that made it, and no run should see another one's leftovers."""
    d = Path(a.dir) / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def bench_dns(a):
    """dnsmasq answering SRV _xmpp-server._tcp.{p,t}I.bench -> gen.bench:BENCH_S2S,
    gen.bench -> 127.0.0.1 (the load generator)."""
    srv = []
    for i in range(a.lanes):
        for dom in (f"p{i}.bench", f"t{i}.bench"):
            srv.append((f"_xmpp-server._tcp.{dom}", GEN_HOST, a.bench_s2s, 0, 5))
    return Dnsmasq(fresh_dir(a, "dns"), srv=srv, hosts={GEN_HOST: "127.0.0.1"})


def pid_of(uid, comm):
    """The process of `uid` whose /proc/PID/comm is `comm` (the one doing the work)."""
    for pid in sorted(peers.pids_of_uid(uid)):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return pid
        except OSError:
            pass
    raise RuntimeError(f"no {comm} process of uid {uid}: {peers.pids_of_uid(uid)}")


class PeerTarget:
    """A stock server with its own dnsmasq (SRV records for the partner domains)."""

    def __init__(self, a):
        self.a = a
        self.dns = self.srv = None

    def stop(self):
        peers.stop_all(self.srv)
        peers.stop_all(self.dns)


class ProsodyTarget(PeerTarget):
    """Stock Debian Prosody 0.12 as a router: s2s in plaintext with dialback,
    one XEP-0114 component cI.bench per lane on one component port."""

    def start(self):
        a = self.a
        self.dns = bench_dns(a)
        q = free_port()
        comps = []
        for i in range(a.lanes):
            comps += [f'Component "c{i}.bench"', f"    component_secret = {lua_str(a.secret)}"]
        self.srv = Prosody(
            fresh_dir(a, "prosody"), "prosody.bench", None, self.dns, None, host="127.0.0.1",
            options={
                # no certificate, no mod_tls: s2s_require_encryption and
                # s2s_secure_auth are then false (peers.py); dialback on
                "tls": False, "dialback": True,
                "log_level": os.environ.get("XFED_BENCH_PEER_LOG", "warn"),
                "component_port": q,
                "component_snippet": "\n".join(comps),
                # Prosody leaves Nagle on by default; xfed and ejabberd set
                # TCP_NODELAY. Off here, or Prosody's latency would be Nagle's.
                # No mod_limits (not loaded): nothing rate-limits s2s.
                "extra": ["network_settings = { nagle = false }"],
            })
        self.srv.start()
        # setpriv and env exec: the process we started is the Lua interpreter
        # running Prosody (prosody -F does not fork).
        pid = self.srv.proc.pid
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if not any(c.endswith(b"prosody") for c in cmd):
            raise RuntimeError(f"pid {pid} is not prosody: {cmd}")
        return {"pids": [pid], "s2s_port": self.srv.s2s_port, "component_port": q}



class BenchEjabberd(Ejabberd):
    """peers.Ejabberd with the BEAM's schedulers limited to --threads (as many
    cores as xfed gets)."""
    schedulers = None

    def _env(self):
        env = super()._env()
        if self.schedulers:
            env["ERL_FLAGS"] = f"+S {self.schedulers}:{self.schedulers}"
        return env


class EjabberdTarget(PeerTarget):
    """Stock Debian ejabberd 23.01 as a router: ejabberd_s2s_in (no STARTTLS,
    dialback) and one ejabberd_service listener serving every cI.bench."""

    def start(self):
        a = self.a
        self.dns = bench_dns(a)
        q = free_port()
        hosts = ", ".join(f"c{i}.bench: {{password: {yaml_str(a.secret)}}}"
                          for i in range(a.lanes))
        # shaper: none is 23.01's default for ejabberd_s2s_in and ejabberd_service
        # listeners (listen_options/0), said here anyway for the service; the
        # s2s_in listener comes from peers.py without a shaper, i.e. none.
        # Outgoing s2s is never shaped. max_fsm_queue stays at its default.
        service = (f"- port: {q}\n"
                   f"  ip: \"127.0.0.1\"\n"
                   f"  module: ejabberd_service\n"
                   f"  shaper: none\n"
                   f"  hosts: {{{hosts}}}\n")
        srv = BenchEjabberd(
            fresh_dir(a, "ejabberd"), "ejabberd.bench", None, self.dns, None,
            host="127.0.0.1",
            # peers.Ejabberd waits for the info line "is started in the node":
            # start at info, then drop to warning below.
            options={"tls": False, "dialback": True, "loglevel": "info",
                     "listen_extra": service})
        srv.schedulers = a.threads
        self.srv = srv
        srv.start()
        srv.ejabberdctl("set_loglevel", "warning")
        pid = pid_of(srv.uid, "beam.smp")
        return {"pids": [pid], "s2s_port": srv.s2s_port, "component_port": q}



TARGETS = {"relay": Relay, "xfed": Xfed, "prosody": ProsodyTarget, "ejabberd": EjabberdTarget}


# ---------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description="xfed-bench targets")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pki", help="make the CA and the two leaf certificates")
    p.add_argument("--dir", required=True)
    p.add_argument("--lanes", type=int, required=True)
    s = sub.add_parser("start", help="start a target until stdin closes")
    s.add_argument("target", choices=sorted(TARGETS))
    for opt in ("--build", "--dir", "--pki", "--secret"):
        s.add_argument(opt, required=True)
    for opt in ("--lanes", "--bench-s2s", "--bench-internal"):
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.lanes < 1:
        ap.error("--lanes must be at least 1")
    # The secret goes into an INI file (where " ;" starts a comment), Lua and
    # YAML: keep it to characters that need no quoting anywhere.
    if a.cmd == "start" and not re.fullmatch(r"[A-Za-z0-9._~+=@%-]{1,255}", a.secret):
        ap.error("--secret: 1..255 characters of A-Z a-z 0-9 . _ ~ + = @ % -")
    return a


def short(e):
    """An exception as one line: its first line and the last lines of the log
    tail it may carry (where the cause usually is)."""
    lines = [l for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
    return " | ".join(lines[:1] + lines[1:][-3:])[:1000]


def main(argv):
    try:
        a = parse_args(argv)
    except SystemExit as e:
        if e.code:
            emit({"error": "bad arguments (see usage on stderr)"})
            return 1
        return 0
    if a.cmd == "pki":
        try:
            emit(make_pki(a))
            return 0
        except Exception as e:
            log(f"pki: {e}")
            emit({"error": f"pki: {short(e)}"})
            return 1

    Path(a.dir).mkdir(parents=True, exist_ok=True)
    a.dir = str(Path(a.dir).resolve())
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    target = TARGETS[a.target](a)
    rc = 0
    try:
        t0 = time.monotonic()
        try:
            out = target.start()
        except Stop:
            raise
        except Exception as e:
            log(f"{a.target}: {e}")
            emit({"error": f"{a.target}: {short(e)}"})
            rc = 1
        else:
            log(f"{a.target}: ready in {time.monotonic() - t0:.2f} s: {json.dumps(out)}")
            emit(out)
            # Run until the load generator closes our stdin.
            while sys.stdin.buffer.read(65536):
                pass
            log(f"{a.target}: stdin closed, stopping")
    except Stop:
        log(f"{a.target}: signal, stopping")
    finally:
        # No second signal may interrupt the cleanup.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        t0 = time.monotonic()
        try:
            target.stop()
        except Exception as e:
            log(f"{a.target}: stop: {e}")
        log(f"{a.target}: stopped in {time.monotonic() - t0:.2f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
