#!/usr/bin/python3
"""Draw xfed-bench results as one PNG (~1200x500 px).

usage: chart.py RESULTS.json OUT.png

Left: routed stanzas/s per target (log scale). Right: latency at 50 % load,
p50 / p99 / p99.9 in microseconds per target (log scale). Targets appear in the
order of the file; a missing or null figure leaves its bar out.
"""
import json
import math
import sys

import matplotlib
matplotlib.use("Agg")  # no display: render straight to a file
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

LATENCY = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]


def number(v):
    """v as a positive finite float, else None (a log axis cannot show 0)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and v > 0 else None


def short(v):
    """1234567 -> '1.23M', 5400 -> '5.4k', 12.5 -> '12.5'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def label_bars(ax, bars, values):
    for bar, v in zip(bars, values):
        ax.annotate(short(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)


def log_axis(ax, values):
    """Log y with some head room above the tallest bar for its label."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: short(y)))
    ax.grid(axis="y", which="major", alpha=0.3)
    if values:
        lo, hi = min(values), max(values)
        ax.set_ylim(lo / 3, hi * 4)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst = argv
    with open(src) as f:
        res = json.load(f)
    targets = [t for t in (res.get("targets") or []) if isinstance(t, dict)]
    names = [str(t.get("label") or t.get("name") or "?") for t in targets]
    x = list(range(len(targets)))

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    host = res.get("host")
    fig.suptitle("xfed-bench: " + host if isinstance(host, str) and host else "xfed-bench")

    # Left: throughput, one bar per target that has a figure.
    rate = [(i, number(t.get("stanzas_per_s"))) for i, t in enumerate(targets)]
    rate = [(i, v) for i, v in rate if v is not None]
    bars = left.bar([i for i, _ in rate], [v for _, v in rate], color="tab:blue", width=0.6)
    label_bars(left, bars, [v for _, v in rate])
    have = {i for i, _ in rate}
    for i in x:
        if i not in have:  # say so rather than leave an unexplained gap
            left.text(i, 0.02, "n/a", transform=left.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize=8, color="gray")
    log_axis(left, [v for _, v in rate])
    left.set_title("routed stanzas/s (max throughput)")
    left.set_ylabel("stanzas/s")

    # Right: latency at 50 % load, three bars per target.
    width = 0.8 / len(LATENCY)
    shown = []
    for k, (key, name) in enumerate(LATENCY):
        pts = []
        for i, t in enumerate(targets):
            lat = t.get("latency")
            at50 = lat.get("50") if isinstance(lat, dict) else None
            v = number(at50.get(key)) if isinstance(at50, dict) else None
            if v is not None:
                pts.append((i + (k - (len(LATENCY) - 1) / 2) * width, v))
        if pts:
            bars = right.bar([p for p, _ in pts], [v for _, v in pts], width=width, label=name)
            label_bars(right, bars, [v for _, v in pts])
            shown += [v for _, v in pts]
    log_axis(right, shown)
    right.set_title("latency at 50 % load")
    right.set_ylabel("µs")
    if shown:
        right.legend(fontsize=8, loc="upper left")

    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.set_xlim(-0.6, max(len(targets) - 0.4, 0.6))
        if not targets:
            ax.text(0.5, 0.5, "no targets", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(dst)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
