"""An xfed instance for the s2s tests: a config with local domains, s2s and
direct-TLS listeners on free loopback ports, a DNS server (dnsmasq), a CA
file, partners committed with xfedctl, and the running process."""
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from peers import free_port
from xfedproc import XfedProcess


class Xfed:
    def __init__(self, build, dir, locals, dns_server, ca_file, threads=2, host="127.0.0.1"):
        """locals: {domain: (crt, key)}; dns_server: "HOST:PORT" or None."""
        self.build = Path(build)
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port("tcp", host)
        self.tls_port = free_port("tcp", host)
        self.admin_port = free_port("tcp", "127.0.0.1")
        self.store = str(self.dir / "xfed.db")
        self.conf = str(self.dir / "xfed.conf")
        self.threads = threads
        self.dns_server = dns_server  # may be set until start()
        lines = ["[admin]", f"listen = 127.0.0.1:{self.admin_port}",
                  "[s2s]", f"listen = {host}:{self.port}",
                  f"direct_tls_listen = {host}:{self.tls_port}", f"ca_file = {ca_file}"]
        for d, (crt, key) in locals.items():
            lines += [f"[local {d}]", f"cert = {crt}", f"key = {key}"]
        self.rest = lines
        self.proc = None

    def write_conf(self):
        lines = ["[xfed]", f"threads = {self.threads}", f"store = {self.store}"]
        if self.dns_server:
            lines.append(f"dns = {self.dns_server}")
        Path(self.conf).write_text("\n".join(lines + self.rest) + "\n")

    def ctl(self, *args, check=True):
        r = subprocess.run([str(self.build / "tools" / "xfedctl"), "--store", self.store,
                            *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"xfedctl {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def partner(self, domain, tls, sasl, dialback, *extra):
        verb = "new"
        if self.ctl("partner", "get", domain, check=False).returncode == 0:
            verb = "set"
        return self.ctl("partner", verb, domain, "--tls", tls, "--sasl", sasl,
                        "--dialback", "true" if dialback else "false", *extra)

    def start(self, debug=True):
        self.write_conf()
        argv = [str(self.build / "core" / "xfed"), "--config", self.conf]
        if debug:
            argv.append("--debug")
        self.proc = XfedProcess(argv)
        if self.proc.wait_for("xfed started", 15) is None:
            raise RuntimeError("xfed did not start:\n" + self.proc.log())
        return self

    def stop(self):
        if self.proc:
            rc = self.proc.stop()
            self.proc = None
            return rc
        return None

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """The value of one sample (labels must match exactly those given), or 0."""
        text = self.metrics()
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            m = re.match(r"^([a-z0-9_]+)(\{(.*)\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(m.group(4))
        return 0.0

    def check_metrics(self, testcase, names):
        """/metrics holds each of `names` and passes `promtool check metrics`."""
        import shutil
        promtool = shutil.which("promtool")
        if not promtool:
            testcase.fail("promtool is not installed (tools/deps.sh installs it)")
        text = self.metrics()
        for name in names:
            testcase.assertIn(name, text)
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        testcase.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def wait_metric(self, name, at_least, timeout=10, **labels):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.metric(name, **labels)
            if v >= at_least:
                return v
            time.sleep(0.1)
        return self.metric(name, **labels)
