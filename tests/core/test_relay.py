"""`xfed --relay` as a process, on loopback: 5000 concurrent connections
byte-exact, ENOBUFS recovery with a 4-buffer ring, slow-reader backpressure
(bounded queue and RSS), drain of in-flight data on SIGTERM, and promtool on
/metrics of the relay and of a `xfed --config` daemon.

promtool comes from the Debian package `prometheus` (tools/deps.sh installs it
with the test packages). Without it the promtool test FAILS: it never skips."""
import argparse
import http.client
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from xfedproc import XfedProcess  # noqa: E402

ARGS = None
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
OUT_LIMIT = 4 << 20  # the runtime's per-connection output bound
PERIOD = 65521  # pattern period (prime): offsets never line up with chunk sizes
PATTERN = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(PERIOD)) * 40


def pattern(offset, n):
    """n bytes of the stream pattern starting at offset (n <= 39 periods)."""
    assert n <= 39 * PERIOD
    o = offset % PERIOD
    return PATTERN[o:o + n]


def matches(data, offset=0):
    """Whether data is the stream pattern from offset on (any length)."""
    step = 32 * PERIOD
    return all(data[i:i + step] == pattern(offset + i, len(data[i:i + step]))
               for i in range(0, len(data), step))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener(rcvbuf=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by accepted
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


class Proc(XfedProcess):
    """An xfed process; its log lines are collected by a reader thread."""

    def __init__(self, argv):
        super().__init__(argv)
        self.admin = None

    def wait_for(self, text, timeout):
        return self.wait_line(text, timeout)

    def started(self, ready_text):
        line = self.wait_for("admin listener: http://", 10)
        if not line or not self.wait_for(ready_text, 10):
            raise RuntimeError("xfed did not start:\n" + self.log())
        self.admin = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))

    def metrics_text(self):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError("/metrics: %d" % r.status)
        return body

    def metrics(self):
        """name -> value, summed over label sets."""
        out = {}
        for line in self.metrics_text().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            out[name] = out.get(name, 0) + float(value)
        return out

    def rss(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0



def start_relay(target_port, *extra):
    port = free_port()
    p = Proc([ARGS.xfed, "--relay", "127.0.0.1:%d=127.0.0.1:%d" % (port, target_port),
              "--threads", "2", "--admin", "127.0.0.1:0", *extra])
    try:
        p.started("relay started")
    except BaseException:
        p.stop()  # never leave a relay running behind a failed start
        raise
    p.port = port
    return p


class EchoServer(threading.Thread):
    """Echoes every connection with one selector loop (no thread per connection)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = listener()
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.stop_flag = False
        self.accepted = 0

    def run(self):
        pending = {}
        while not self.stop_flag:
            for key, ev in self.sel.select(0.1):
                s = key.fileobj
                if s is self.lsock:
                    for _ in range(256):
                        try:
                            c, _ = self.lsock.accept()
                        except BlockingIOError:
                            break
                        c.setblocking(False)
                        self.accepted += 1
                        pending[c] = b""
                        self.sel.register(c, selectors.EVENT_READ, None)
                    continue
                if ev & selectors.EVENT_READ and not pending[s]:
                    try:
                        data = s.recv(262144)
                    except (BlockingIOError, ConnectionError):
                        data = None
                    if data is None:
                        continue
                    if not data:
                        self.sel.unregister(s)
                        del pending[s]
                        s.close()
                        continue
                    pending[s] = data
                if pending[s]:
                    try:
                        n = s.send(pending[s])
                    except BlockingIOError:
                        n = 0
                    except ConnectionError:
                        self.sel.unregister(s)
                        del pending[s]
                        s.close()
                        continue
                    pending[s] = pending[s][n:]
                    # Hold reading while output is pending: bounded memory.
                    self.sel.modify(s, selectors.EVENT_WRITE if pending[s] else selectors.EVENT_READ)
        for s in list(pending):
            s.close()
        self.lsock.close()

    def close(self):
        self.stop_flag = True
        self.join(10)


def echo_clients(port, count, size, timeout):
    """count clients each send `size` pattern bytes (offset by their index) and
    read them back; all stay open until every one is done. Returns
    (verified, failures, open_at_peak)."""
    sel = selectors.DefaultSelector()
    state = {}
    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        state[s] = {"i": i, "sent": 0, "got": bytearray(), "ok": False}
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, None)
    failures, verified = [], 0
    deadline = time.monotonic() + timeout
    while verified + len(failures) < count and time.monotonic() < deadline:
        for key, ev in sel.select(0.2):
            s, st = key.fileobj, state[key.fileobj]
            if ev & selectors.EVENT_WRITE and st["sent"] < size:
                try:
                    n = s.send(pattern(st["i"] * 97 + st["sent"], min(size - st["sent"], 65536)))
                    st["sent"] += n
                except BlockingIOError:
                    pass
                except OSError as e:
                    failures.append((st["i"], "send: %s" % e))
                    sel.unregister(s)
                    continue
                if st["sent"] == size:
                    sel.modify(s, selectors.EVENT_READ)
            if ev & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, err = None, e
                if not data:
                    failures.append((st["i"], "EOF or error after %d of %d bytes"
                                     % (len(st["got"]), size)))
                    sel.unregister(s)
                    continue
                st["got"] += data
                if len(st["got"]) >= size:
                    sel.unregister(s)
                    if bytes(st["got"]) == pattern(st["i"] * 97, size) and len(st["got"]) == size:
                        verified += 1
                    else:
                        failures.append((st["i"], "bytes differ"))
    sel.close()
    return verified, failures, state


def close_all(state):
    for s in state:
        s.close()


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def setUp(self):
        self.procs = []
        self.servers = []

    def tearDown(self):
        for p in self.procs:
            p.stop()
        for s in self.servers:
            s.close()

    def relay(self, target_port, *extra):
        p = start_relay(target_port, *extra)
        self.procs.append(p)
        return p

    def echo(self):
        e = EchoServer()
        e.start()
        self.servers.append(e)
        return e

    def test_5000_concurrent_connections(self):
        n = 5000
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertGreaterEqual(soft, 2 * n + 100, "RLIMIT_NOFILE too low for the test")
        echo = self.echo()
        relay = self.relay(echo.port)
        t0 = time.monotonic()
        verified, failures, state = echo_clients(relay.port, n, 2000, 120)
        m = relay.metrics()  # every client is still connected here
        close_all(state)
        print("5000 connections: %d verified in %.1f s; relay: %d accepted, %d open, RSS %.1f MiB"
              % (verified, time.monotonic() - t0, m["xfed_connections_accepted_total"],
                 m["xfed_connections_open"], relay.rss() / 2**20), file=sys.stderr)
        self.assertEqual(failures, [])
        self.assertEqual(verified, n)
        self.assertEqual(m["xfed_connections_accepted_total"], n)
        self.assertEqual(m["xfed_connections_open"], 2 * n)  # concurrent: both sides of each
        self.assertEqual(echo.accepted, n)
        self.assertEqual(relay.stop(), 0)

    def test_enobufs_recovery(self):
        echo = self.echo()
        relay = self.relay(echo.port, "--recv-buffers", "4")
        verified, failures, state = echo_clients(relay.port, 64, 256 * 1024, 120)
        close_all(state)
        m = relay.metrics()
        print("ENOBUFS: %d verified, enobufs %d, closed %d" % (
            verified, m["xfed_recv_enobufs_total"], m["xfed_connections_closed_total"]),
            file=sys.stderr)
        self.assertEqual(failures, [])
        self.assertEqual(verified, 64)
        self.assertGreater(m["xfed_recv_enobufs_total"], 0)
        self.assertEqual(relay.stop(), 0)

    def test_slow_reader_backpressure(self):
        total = 200 << 20
        lsock = listener()
        relay = self.relay(lsock.getsockname()[1])
        rss0 = relay.rss()
        client = socket.create_connection(("127.0.0.1", relay.port), timeout=60)
        lsock.settimeout(10)
        target, _ = lsock.accept()
        lsock.close()
        sent = [0]

        def push():
            try:
                while sent[0] < total:
                    n = min(1 << 20, total - sent[0])
                    client.sendall(pattern(sent[0], n))
                    sent[0] += n
                client.shutdown(socket.SHUT_WR)
            except OSError as e:
                sent.append(e)

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        max_q, max_rss = 0, 0
        end = time.monotonic() + 3  # the target does not read for 3 s
        while time.monotonic() < end:
            m = relay.metrics()
            max_q = max(max_q, m["xfed_output_queued_bytes"])
            max_rss = max(max_rss, relay.rss())
            time.sleep(0.05)
        m = relay.metrics()
        stalled_at = sent[0]
        # Now read everything and compare.
        target.settimeout(30)
        got, bad = 0, False
        while True:
            data = target.recv(1 << 20)
            if not data:
                break
            if data != pattern(got, len(data)):
                bad = True
            got += len(data)
            if got % (8 << 20) < len(data):
                max_q = max(max_q, relay.metrics()["xfed_output_queued_bytes"])
        pusher.join(30)
        print("slow reader: %d MiB sent before the reader started, queue max %d B, RSS %.1f -> "
              "max %.1f MiB, pauses %d; then %d bytes read" % (
                  stalled_at >> 20, max_q, rss0 / 2**20, max_rss / 2**20,
                  m["xfed_backpressure_pauses_total"], got), file=sys.stderr)
        target.close()
        client.close()
        self.assertEqual(len(sent), 1, "sender failed: %r" % sent[1:])
        self.assertLess(stalled_at, total, "the relay took everything: no backpressure")
        self.assertGreater(max_q, 0)
        self.assertLessEqual(max_q, OUT_LIMIT)
        self.assertGreater(m["xfed_backpressure_pauses_total"], 0)
        # Bounded: far below what was pushed (the receive buffer ring, 64 MiB
        # mapped lazily, plus one connection's output bound).
        self.assertLess(max_rss - rss0, 72 << 20)
        self.assertEqual(got, total)
        self.assertFalse(bad, "bytes differ")
        self.assertEqual(relay.stop(), 0)

    def test_shutdown_drains_in_flight_data(self):
        # The target does not read and has a tiny receive buffer, so the relay
        # fills its output queue up to the pause mark; what it has read at
        # SIGTERM must all reach the target before the relay exits.
        size = 16 << 20
        lsock = listener(rcvbuf=4096)
        relay = self.relay(lsock.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
        lsock.settimeout(10)
        target, _ = lsock.accept()
        lsock.close()

        def push():
            try:
                for off in range(0, size, 1 << 20):
                    client.sendall(pattern(off, 1 << 20))
            except OSError:
                pass  # the relay closes this side at shutdown

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        deadline, last, stable_since = time.monotonic() + 15, -1, time.monotonic()
        while time.monotonic() < deadline:  # until the relay stops reading (paused)
            m = relay.metrics()
            if m["xfed_received_bytes_total"] != last:
                last, stable_since = m["xfed_received_bytes_total"], time.monotonic()
            elif time.monotonic() - stable_since > 0.5:
                break
            time.sleep(0.05)
        read_by_relay = int(m["xfed_received_bytes_total"])
        queued = m["xfed_output_queued_bytes"]
        self.assertGreater(m["xfed_backpressure_pauses_total"], 0)
        self.assertGreater(queued, 0, "nothing in flight in the relay:\n" + relay.log())
        t0 = time.monotonic()
        relay.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        target.settimeout(15)
        got = bytearray()
        while True:
            data = target.recv(1 << 16)
            if not data:
                break
            got += data
        rc = relay.proc.wait(10)
        elapsed = time.monotonic() - t0
        print("shutdown: relay had read %d bytes, %d queued at SIGTERM; target got %d; exit %d "
              "after %.2f s" % (read_by_relay, queued, len(got), rc, elapsed), file=sys.stderr)
        client.close()
        pusher.join(10)
        target.close()
        self.assertEqual(len(got), read_by_relay)
        self.assertTrue(matches(got), "bytes differ")
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 6.5)  # the 5 s drain deadline, and some
        self.assertIsNotNone(relay.wait_for("relay stopped", 2), relay.log())

    def promtool(self, body):
        self.assertTrue(os.access(PROMTOOL, os.X_OK),
                        "promtool is missing: install the Debian package 'prometheus' "
                        "(apt-get install -y --no-install-recommends prometheus, or tools/test.sh)")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=body,
                               capture_output=True, timeout=60)
        out = (check.stdout + check.stderr).decode()
        self.assertEqual(check.returncode, 0, out)
        self.assertEqual(out.strip(), "", "promtool reported lint problems")

    def test_promtool_relay_metrics(self):
        echo = self.echo()
        relay = self.relay(echo.port)
        verified, failures, state = echo_clients(relay.port, 10, 10000, 30)
        close_all(state)
        self.assertEqual(verified, 10)
        body = relay.metrics_text()
        self.assertIn(b"xfed_io_uring_enter_total ", body)
        self.assertIn(b"xfed_recv_enobufs_total ", body)
        self.promtool(body)
        self.assertEqual(relay.stop(), 0)

    def test_promtool_config_daemon_metrics(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "xfed.conf")
            with open(conf, "w") as f:
                f.write("[xfed]\nstore = %s\n[admin]\nlisten = 127.0.0.1:0\n"
                        % os.path.join(d, "xfed.db"))
            p = Proc([ARGS.xfed, "--config", conf])
            self.procs.append(p)
            p.started("xfed started")
            body = p.metrics_text()
            self.assertIn(b"xfed_partner_snapshot_version ", body)
            self.promtool(body)
            self.assertEqual(p.stop(), 0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--xfed", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
