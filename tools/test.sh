#!/usr/bin/env bash
# Set-up command 2: install what is missing, build, and run every test: the
# default build, the same suite under ASan+UBSan, the cross-thread tests under
# ThreadSanitizer, and the fuzz targets briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
# shellcheck disable=SC2086
xfed_install $XFED_BUILD_PKGS $XFED_TEST_PKGS

build_dir() { [ "$1" = default ] && echo build || echo "build-$1"; }

status=0
run() { # run PRESET [ctest args...]
    local preset=$1
    shift
    echo "=== build $preset"
    xfed_build "$preset"
    echo "=== test $preset"
    (cd "$(build_dir "$preset")" && ctest --output-on-failure --timeout 900 "$@") || status=1
}
run default
run asan -LE fuzz
run tsan -L tsan
run fuzz -L fuzz
exit $status
