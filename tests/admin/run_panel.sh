#!/usr/bin/env bash
# Runs test_panel.mjs, installing what is missing first: Debian's chromium (and
# Node.js with npm), then playwright-core from npm into the build folder (once;
# later runs are offline). playwright-core drives /usr/bin/chromium and never
# downloads a browser.
#   run_panel.sh XFED XFEDCTL BUILD_DIR
# XFED_PANEL_DOCS=DIR also copies the README screenshot there (docs/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
xfed=$1 xfedctl=$2 out=$3
playwright_version=1.65.1

if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    # shellcheck source=../../tools/deps.sh
    . "$here/../../tools/deps.sh"
    xfed_install chromium nodejs npm
fi

mods="$out/node"
have=$(node -e "try { console.log(require('$mods/node_modules/playwright-core/package.json').version) } catch (e) {}")
if [ "$have" != "$playwright_version" ]; then
    mkdir -p "$mods"
    npm install --prefix "$mods" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "playwright-core@$playwright_version"
fi

exec timeout 600 node "$here/test_panel.mjs" --xfed "$xfed" --xfedctl "$xfedctl" \
    --modules "$mods/node_modules" --out "$out" ${XFED_PANEL_DOCS:+--docs "$XFED_PANEL_DOCS"}
