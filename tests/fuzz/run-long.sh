#!/bin/sh
# Runs every xml fuzz target concurrently for DURATION seconds (default 2100 = 35 min) under
# nice, each on a copy of its seed corpus plus what earlier long runs found.
#   tests/fuzz/run-long.sh BUILD_DIR [DURATION] [LOG_DIR]
# BUILD_DIR is a build configured with -DXFED_FUZZ=ON (e.g. the fuzz preset).
set -eu
build=${1:?usage: run-long.sh BUILD_DIR [DURATION] [LOG_DIR]}
duration=${2:-2100}
logs=${3:-/tmp/xfed-fuzz}
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$logs"
pids=
for target in fuzz_xml_tok fuzz_xml_expat; do
    corpus="$logs/corpus-$target"
    mkdir -p "$corpus" "$logs/artifacts-$target"
    cp -n "$src/corpus/$target"/* "$corpus"/ 2>/dev/null || true
    nice -n 19 "$build/tests/fuzz/$target" -max_total_time="$duration" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$logs/artifacts-$target/" "$corpus" >"$logs/$target.log" 2>&1 &
    pids="$pids $!"
done
status=0
for pid in $pids; do
    wait "$pid" || status=1
done
for target in fuzz_xml_tok fuzz_xml_expat; do
    echo "== $target"
    grep -E '^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::new_units_added' \
        "$logs/$target.log" | tail -3
    ls "$logs/artifacts-$target"
done
exit $status
