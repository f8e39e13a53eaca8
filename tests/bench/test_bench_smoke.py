"""xfed-bench in miniature (2 lanes, 0.3 s windows): the harness itself must work
against every target — relay, xfed (plaintext and TLS), stock Prosody and stock
ejabberd — and report what the README promises: a JSON file with every figure, a
PNG chart and the summary line. Figures are not judged here (bench/ does that);
that each target routed stanzas both ways, that idle and TLS streams came up and
that nothing was lost in the closed loop is."""
import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BUILD = Path(sys.argv[1] if len(sys.argv) > 1 else "build").resolve()
SUMMARY = re.compile(
    r"^bench stanzas_per_s=(\d+) ratio_relay=([\d.]+) ratio_prosody=([\d.]+) "
    r"ratio_ejabberd=([\d.]+) p99_us=([\d.]+) tls_stanzas_per_s=(\d+) "
    r"mem_per_stream_kib=(-?[\d.]+)$")


class BenchSmoke(unittest.TestCase):
    def test_all_targets(self):
        with tempfile.TemporaryDirectory(prefix="xfed-bench-test-") as out:
            r = subprocess.run(
                [str(BUILD / "bench" / "xfed-bench"), "--quick", "--lanes", "2",
                 "--seconds", "0.3", "--runs", "1", "--idle", "100", "--tls-streams", "40",
                 "--out", out],
                capture_output=True, text=True, timeout=280)
            sys.stderr.write(r.stderr[-4000:])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr[-2000:])
            last = r.stdout.strip().splitlines()[-1]
            m = SUMMARY.match(last)
            self.assertIsNotNone(m, last)
            res = json.loads((Path(out) / "bench-results.json").read_text())
            png = (Path(out) / "bench-chart.png").read_bytes()
            self.assertTrue(png.startswith(b"\x89PNG"), "the chart is not a PNG")
            names = [t["name"] for t in res["targets"]]
            self.assertEqual(names, ["relay", "xfed", "prosody", "ejabberd"])
            for t in res["targets"]:
                with self.subTest(target=t["name"]):
                    self.assertTrue(t["ok"], t.get("error"))
                    self.assertGreater(t["stanzas_per_s"], 0)
                    self.assertGreater(t["bytes_per_s"], 0)
                    self.assertGreater(t["cpu_us_per_stanza"], 0)
                    self.assertGreater(t["idle_streams_up"], 0)
                    for level in ("25", "50", "75"):
                        self.assertGreater(t["latency"][level]["p50_us"], 0)
                        self.assertLessEqual(t["latency"][level]["p50_us"],
                                             t["latency"][level]["p999_us"])
                    self.assertEqual(t["closed_loop_bounced"], 0)
            x = res["targets"][1]
            self.assertGreater(x["tls_stanzas_per_s"], 0)
            self.assertEqual(x["tls_streams_up"], 40)
            self.assertGreater(x["tls_handshakes_per_s"], 0)
            # the summary line is the JSON's, and its ratios are computed from the targets
            self.assertEqual(res["summary"], last)
            t = {t["name"]: t for t in res["targets"]}
            self.assertAlmostEqual(float(m.group(2)),
                                   t["xfed"]["stanzas_per_s"] / t["relay"]["stanzas_per_s"],
                                   places=1)
            self.assertEqual(int(m.group(1)), round(t["xfed"]["stanzas_per_s"]))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
