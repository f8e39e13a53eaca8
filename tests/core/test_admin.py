"""The admin listener over HTTP: /metrics (checked by promtool), /healthz
readiness, 404, 405, oversized and idle requests, bind failures and port 0.
Runs tests/core/admin_server.c (xf_test_admin_server), which fills metrics with
sample values including label values that need escaping.

promtool comes from the Debian package `prometheus` (tools/deps.sh installs it
with the test packages). Without it this test FAILS: it never skips."""
import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

ARGS = None
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class Server:
    """One xf_test_admin_server process; `port` is the port it bound."""

    def __init__(self, *extra):
        self.proc = subprocess.Popen([ARGS.server, *extra], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.wait(timeout=10)
            err = self.proc.stderr.read()
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()
            raise RuntimeError("server did not start: " + err)
        self.port = int(line.split()[1])

    def command(self, word):
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n"

    def stop(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=20)
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


def request(port, method, path, host="127.0.0.1", headers=None):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


class AdminTest(unittest.TestCase):
    def setUp(self):
        self.server = Server()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0)
        self.assertIn("admin listener: http://127.0.0.1:%d/ (metrics at /metrics)"
                      % self.server.port, self.server.stderr)

    def test_metrics_pass_promtool(self):
        self.assertTrue(os.access(PROMTOOL, os.X_OK),
                        "promtool is missing: install the Debian package 'prometheus' "
                        "(apt-get install -y --no-install-recommends prometheus, or tools/test.sh)")
        status, headers, body = request(self.server.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode("utf-8")
        self.assertIn('xfed_core_loop_iterations_total{core="1"} 11\n', text)
        self.assertIn('xfed_core_cpu_seconds_total{core="0"} 2.500000000\n', text)
        self.assertIn('xfed_build_info{version="', text)
        self.assertIn('xfed_authentications_total{partner="quote\\"back\\\\slash\\nnewline",'
                      'method="sasl_tls",result="ok"} 2\n', text)
        self.assertEqual(text.count("# TYPE xfed_stanzas_routed_total counter\n"), 1)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=body,
                               capture_output=True, timeout=60)
        out = (check.stdout + check.stderr).decode()
        print("promtool check metrics: rc=%d output=%r" % (check.returncode, out),
              file=sys.stderr)
        self.assertEqual(check.returncode, 0, out)
        self.assertEqual(out.strip(), "", "promtool reported lint problems")

    def test_head(self):
        status, headers, body = request(self.server.port, "HEAD", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")

    def test_healthz_follows_readiness(self):
        self.assertEqual(request(self.server.port, "GET", "/healthz")[::2], (503, b"starting\n"))
        self.server.command("ready")
        self.assertEqual(request(self.server.port, "GET", "/healthz")[::2], (200, b"ok\n"))
        self.server.command("stopping")
        self.assertEqual(request(self.server.port, "GET", "/healthz")[::2], (503, b"stopping\n"))

    def test_unknown_path_and_method(self):
        self.assertEqual(request(self.server.port, "GET", "/nope")[0], 404)
        self.assertEqual(request(self.server.port, "GET", "/metrics/")[0], 404)
        status, headers, _ = request(self.server.port, "POST", "/metrics")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, HEAD")
        self.assertEqual(request(self.server.port, "DELETE", "/healthz")[0], 405)

    def test_oversized_request_is_refused(self):
        # 64 KiB of headers cannot fit the 16 KiB connection memory limit.
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        reply = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        print("oversized request answered: %r" % reply[:60], file=sys.stderr)
        if reply:
            status = int(reply.split(b" ", 2)[1])
            self.assertTrue(400 <= status < 500, reply[:200])
        # Still serving.
        self.assertEqual(request(self.server.port, "GET", "/metrics")[0], 200)

    def test_many_idle_connections(self):
        # More idle connections than the limit (64): the listener stays usable
        # once they go.
        idle = [socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
                for _ in range(80)]
        for s in idle:
            s.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.assertEqual(request(self.server.port, "GET", "/healthz")[0], 503)
                break
            except (ConnectionError, socket.timeout):
                if time.monotonic() > deadline:
                    raise


class StartTest(unittest.TestCase):
    def test_port_in_use(self):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([ARGS.server, "--port", str(port)], capture_output=True, text=True,
                           timeout=20)
        taken.close()
        self.assertEqual(r.returncode, 1)
        self.assertIn("127.0.0.1:%d" % port, r.stderr)
        self.assertIn("Address already in use", r.stderr)

    def test_bad_address(self):
        r = subprocess.run([ARGS.server, "--host", "localhost"], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a numeric IPv4 or IPv6 address", r.stderr)

    def test_port_is_released_on_stop(self):
        first = Server()
        port = first.port
        self.assertEqual(first.stop(), 0)
        second = Server("--port", str(port))
        self.assertEqual(second.port, port)
        self.assertEqual(second.stop(), 0)

    def test_ipv6_loopback(self):
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError as e:
            print("note: no IPv6 loopback here (%s); IPv6 case not run" % e, file=sys.stderr)
            return
        for host in ("::1", "[::1]"):
            server = Server("--host", host)
            self.assertEqual(request(server.port, "GET", "/metrics", host="::1")[0], 200)
            self.assertEqual(server.stop(), 0)
            self.assertIn("http://[::1]:%d/" % server.port, server.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
