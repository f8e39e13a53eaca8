#!/bin/bash
# Figures of the raw relay on loopback, side by side in one run:
#   (A) client -> sink directly, (B) client -> `xfed --relay --threads 2` -> sink,
# for 256-byte messages (pipelined: 64 per 16 KiB write) and 64 KiB writes, each
# over 64 connections; then RSS per idle connection with 10 000 idle connections
# through a fresh relay. Every configuration runs ROUNDS times (interleaved);
# prints median, min and max, and a final `relaybench ...` line.
#
# usage: bench/relay-figures.sh [BUILD_DIR] [ROUNDS] [SECONDS]
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-5}
SECS=${3:-3}
XFED=$BUILD/core/xfed
BENCH=$BUILD/bench/xfed-relaybench
PY=/usr/bin/python3
for f in "$XFED" "$BENCH"; do
    [ -x "$f" ] || { echo "missing $f: build first" >&2; exit 1; }
done
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_relay LISTEN_PORT TARGET_PORT LOG: sets RELAY_PID and ADMIN (URL)
start_relay() {
    "$XFED" --relay "127.0.0.1:$1=127.0.0.1:$2" --threads 2 --admin 127.0.0.1:0 2>"$3" &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    for _ in $(seq 100); do
        grep -q "relay started" "$3" && break
        sleep 0.1
    done
    grep -q "relay started" "$3" || { cat "$3" >&2; exit 1; }
    ADMIN=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$3" | head -1)
}

# metric NAME...: each metric's value (summed over labels), one per line
metric() {
    $PY - "$ADMIN/metrics" "$@" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
sums = {}
for line in text.splitlines():
    if line and not line.startswith("#"):
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0]
        sums[name] = sums.get(name, 0.0) + float(value)
for n in sys.argv[2:]:
    print("%.0f" % sums.get(n, 0.0))
EOF
}

cpu_ticks() { # utime + stime of a process (fields 14 and 15; the name has no spaces)
    awk '{print $14 + $15}' "/proc/$1/stat"
}
rss_bytes() {
    awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"
}
field() { # field NAME LINE
    sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"
}

SINK=$(free_port)
RPORT=$(free_port)
start_relay "$RPORT" "$SINK" "$TMP/relay.log"
HZ=$(getconf CLK_TCK)
RES=$TMP/results
: >"$RES"
echo "relay pid $RELAY_PID, admin $ADMIN; $ROUNDS rounds x ${SECS}s; 64 connections" >&2
for r in $(seq "$ROUNDS"); do
    for mode in 256 64k; do
        if [ $mode = 256 ]; then args=(-s 256 -w 16384 -n 64); else args=(-s 65536 -w 65536 -n 64); fi
        msg=${args[1]}
        out=$("$BENCH" -l "$SINK" -c "$SINK" "${args[@]}" -d "$SECS")
        echo "A$mode bps $(field bytes_per_s "$out") mps $(field msgs_per_s "$out")" >>"$RES"
        read -r e0 s0 < <(metric xfed_io_uring_enter_total xfed_sent_bytes_total | paste -sd' ')
        c0=$(cpu_ticks "$RELAY_PID")
        out=$("$BENCH" -l "$SINK" -c "$RPORT" "${args[@]}" -d "$SECS")
        c1=$(cpu_ticks "$RELAY_PID")
        read -r e1 s1 < <(metric xfed_io_uring_enter_total xfed_sent_bytes_total | paste -sd' ')
        msgs=$(((s1 - s0) / msg))
        echo "B$mode bps $(field bytes_per_s "$out") mps $(field msgs_per_s "$out")" \
            "enter_per_msg $($PY -c "print(($e1 - $e0) / max($msgs, 1))")" \
            "cpu_us_per_msg $($PY -c "print(($c1 - $c0) * 1e6 / $HZ / max($msgs, 1))")" >>"$RES"
        echo "round $r $mode: $(tail -2 "$RES" | paste -sd' ')" >&2
    done
done
kill "$RELAY_PID"
wait "$RELAY_PID" || true

# RSS per idle connection: a fresh relay, 10 000 client connections held
# through it (20 000 relay sockets); the sink holds the other end in its own
# process (RLIMIT_NOFILE is per process).
for r in $(seq "$ROUNDS"); do
    S2=$(free_port)
    R2=$(free_port)
    start_relay "$R2" "$S2" "$TMP/relay-idle.log"
    "$BENCH" -l "$S2" -S -H 120 >"$TMP/sink.out" &
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 100); do grep -q ready "$TMP/sink.out" && break; sleep 0.1; done
    sleep 0.5
    rss0=$(rss_bytes "$RELAY_PID")
    "$BENCH" -c "$R2" -I 10000 -H 120 >"$TMP/idle.out" &
    CPID=$!
    PIDS+=("$CPID")
    open=0
    for _ in $(seq 600); do
        open=$(metric xfed_connections_open)
        [ "$open" -ge 20000 ] && break
        sleep 0.1
    done
    [ "$open" -ge 20000 ] || { echo "only $open relay connections open" >&2; exit 1; }
    sleep 1
    rss1=$(rss_bytes "$RELAY_PID")
    echo "RSS per_conn $(((rss1 - rss0) / 10000)) total_per_conn $((rss1 / 10000))" \
        "rss0 $rss0 rss1 $rss1" >>"$RES"
    echo "rss round $r: $(tail -1 "$RES")" >&2
    kill "$CPID" "$SPID" "$RELAY_PID"
    wait "$CPID" "$SPID" "$RELAY_PID" 2>/dev/null || true
done

$PY - "$RES" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    d = rows.setdefault(f[0], {})
    for k, v in zip(f[1::2], f[2::2]):
        d.setdefault(k, []).append(float(v))
def med(tag, key):
    return statistics.median(rows[tag][key])
def show(tag, key, unit, scale=1.0):
    v = rows[tag][key]
    print("%-4s %-15s median %12.3f  min %12.3f  max %12.3f  %s (n=%d)" % (
        tag, key, statistics.median(v) / scale, min(v) / scale, max(v) / scale, unit, len(v)))
for tag in ("A256", "B256", "A64k", "B64k"):
    show(tag, "bps", "MB/s", 1e6)
    show(tag, "mps", "M msg/s" if "256" in tag else "k writes/s", 1e6 if "256" in tag else 1e3)
    if tag.startswith("B"):
        show(tag, "enter_per_msg", "io_uring_enter per message")
        show(tag, "cpu_us_per_msg", "relay CPU us per message")
show("RSS", "per_conn", "bytes per idle client connection (2 relay sockets), RSS delta")
show("RSS", "total_per_conn", "bytes: the relay's whole RSS / 10 000")
show("RSS", "rss0", "MiB: relay RSS before", 2**20)
r256 = [b / a for a, b in zip(rows["A256"]["bps"], rows["B256"]["bps"])]
r64 = [b / a for a, b in zip(rows["A64k"]["bps"], rows["B64k"]["bps"])]
print("ratio B/A 256 B: median %.3f min %.3f max %.3f; 64 KiB: median %.3f min %.3f max %.3f" % (
    statistics.median(r256), min(r256), max(r256), statistics.median(r64), min(r64), max(r64)))
print("relaybench msgs256_per_s=%.0f bytes64k_per_s=%.0f ratio256=%.3f ratio64k=%.3f "
      "enter_per_msg=%.4f rss_per_idle_conn_b=%.0f" % (
          med("B256", "mps"), med("B64k", "bps"), statistics.median(r256), statistics.median(r64),
          med("B256", "enter_per_msg"), med("RSS", "per_conn")))
EOF
