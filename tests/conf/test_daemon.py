"""xfed as a process: start-up validation, live pick-up of committed store
changes (spec §2: within 2 s), refused rows skipped with a log line, SIGHUP
reload and SIGTERM shutdown."""
import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from xfedproc import XfedProcess  # noqa: E402

ARGS = None


def make_cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:" + name, "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


class Daemon(XfedProcess):
    """xfed --config FILE; its log lines are collected as it runs."""

    def __init__(self, config):
        super().__init__([ARGS.xfed, "--config", config])


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        crt, key = make_cert(d, "contoso.example")
        self.store = os.path.join(d, "xfed.db")
        self.config = os.path.join(d, "xfed.conf")
        with open(self.config, "w") as f:
            f.write(f"[xfed]\nthreads = 1\nstore = {self.store}\n[admin]\nlisten = 127.0.0.1:0\n"
                    f"[local contoso.example]\ncert = {crt}\nkey = {key}\n")
        self.daemons = []

    def tearDown(self):
        for dmn in self.daemons:
            dmn.stop()
        self.tmp.cleanup()

    def ctl(self, *args):
        return subprocess.run([ARGS.xfedctl, "--config", self.config, *args],
                              capture_output=True, text=True)

    def start(self):
        dmn = Daemon(self.config)
        self.daemons.append(dmn)
        self.assertIsNotNone(dmn.wait_for("xfed started", 10), dmn.log())
        return dmn

    def test_store_changes_apply_within_2s(self):
        self.assertEqual(self.ctl("partner", "new", "fabrikam.example").returncode, 0)
        dmn = self.start()
        self.assertIn("1 partners (0 skipped)", dmn.log())
        for n, domain in enumerate(["wingtip.example", "litware.example"], start=2):
            mark = dmn.count()
            t0 = time.monotonic()
            self.assertEqual(self.ctl("partner", "new", domain).returncode, 0)
            i = dmn.wait_for(f"partners: {n} active, 0 skipped", 2.0, mark)
            self.assertIsNotNone(i, dmn.log())
            self.assertLess(time.monotonic() - t0, 2.0)
        mark = dmn.count()
        self.assertEqual(self.ctl("partner", "remove", "wingtip.example").returncode, 0)
        self.assertIsNotNone(dmn.wait_for("partners: 2 active, 0 skipped", 2.0, mark), dmn.log())

    def test_refused_row_written_by_hand_is_skipped(self):
        self.assertEqual(self.ctl("partner", "new", "fabrikam.example").returncode, 0)
        self.assertEqual(self.ctl("partner", "new", "wingtip.example").returncode, 0)
        dmn = self.start()
        mark = dmn.count()
        db = sqlite3.connect(self.store)
        db.execute("UPDATE partners SET tls='not-supported', sasl='required' "
                   "WHERE domain='wingtip.example'")
        db.commit()
        db.close()
        i = dmn.wait_for("partner wingtip.example skipped (matrix row 5)", 2.0, mark)
        self.assertIsNotNone(i, dmn.log())
        self.assertIn("error", dmn.lines[i])
        self.assertIsNotNone(dmn.wait_for("partners: 1 active, 1 skipped", 2.0, mark))
        # --check fails on the same store while the daemon keeps running.
        chk = subprocess.run([ARGS.xfed, "--config", self.config, "--check"],
                             capture_output=True, text=True)
        self.assertEqual(chk.returncode, 1, chk.stdout + chk.stderr)
        self.assertIn("wingtip.example", chk.stderr)
        self.assertIsNone(dmn.proc.poll())

    def test_sighup_reload_and_bad_config_kept(self):
        dmn = self.start()
        mark = dmn.count()
        dmn.proc.send_signal(signal.SIGHUP)
        self.assertIsNotNone(dmn.wait_for("SIGHUP: reloading", 2.0, mark), dmn.log())
        self.assertIsNotNone(dmn.wait_for("partners: 0 active", 2.0, mark), dmn.log())
        # A broken config on reload is reported and the daemon keeps running.
        with open(self.config, "a") as f:
            f.write("[xfed]\nbogus = 1\n")
        mark = dmn.count()
        dmn.proc.send_signal(signal.SIGHUP)
        self.assertIsNotNone(dmn.wait_for("unknown key", 2.0, mark), dmn.log())
        self.assertIsNotNone(dmn.wait_for("keeping the previous valid settings", 2.0, mark))
        self.assertIsNone(dmn.proc.poll())

    def test_sigterm_exits_cleanly(self):
        dmn = self.start()
        t0 = time.monotonic()
        self.assertEqual(dmn.stop(), 0)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertIn("shutting down", dmn.log())

    def test_bad_config_refuses_to_start(self):
        with open(self.config, "a") as f:
            f.write("[s2s]\nlisten = nowhere:99999\n")
        r = subprocess.run([ARGS.xfed, "--config", self.config], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("[s2s] listen", r.stderr)
        self.assertIn("not starting", r.stderr)

    def test_mismatched_key_refuses_to_start(self):
        other_crt, _ = make_cert(self.tmp.name, "other.example")
        with open(self.config) as f:
            text = f.read()
        text = text.replace(os.path.join(self.tmp.name, "contoso.example.crt"), other_crt)
        with open(self.config, "w") as f:
            f.write(text)
        r = subprocess.run([ARGS.xfed, "--config", self.config, "--check"], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not match", r.stderr)

    def test_usage(self):
        r = subprocess.run([ARGS.xfed], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage", r.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--xfed", required=True)
    p.add_argument("--xfedctl", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
