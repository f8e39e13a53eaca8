# Sourced by demo.sh and test.sh: installs the Debian 12 packages that are
# missing, and only those, so a second run costs nothing.
set -euo pipefail

XFED_BUILD_PKGS="build-essential cmake pkg-config git ca-certificates openssl sqlite3
  liburing-dev libwolfssl-dev libmimalloc-dev libc-ares-dev libsqlite3-dev libinih-dev
  libjansson-dev libmicrohttpd-dev libexpat1-dev libxml2-dev"
XFED_TEST_PKGS="dnsmasq-base clang libclang-rt-14-dev python3 prometheus chromium nodejs npm
  prosody lua-unbound ejabberd python3-slixmpp python3-matplotlib"
# What bench/xfed-bench needs besides the build: the peers it compares with, and the chart.
XFED_BENCH_PKGS="python3 openssl dnsmasq-base prosody lua-unbound ejabberd python3-matplotlib"

xfed_install() {
    local missing=()
    for p in "$@"; do
        # A Node.js from elsewhere (NodeSource's nodejs bundles npm and conflicts
        # with Debian's npm) serves the browser tests as well: the commands count.
        case $p in
        nodejs) command -v node >/dev/null && continue ;;
        npm) command -v npm >/dev/null && continue ;;
        esac
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
}

xfed_build() { # xfed_build PRESET
    cmake --preset "$1" >/dev/null
    cmake --build --preset "$1" -j "$(nproc)"
}
