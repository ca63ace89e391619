#!/bin/sh
# Runs the page's test files and prints TAP (for automake's TAP driver):
#   tests/browser/run.sh [FILE.test.mjs...]     (default: both suites)
# modules.test.mjs needs only node; dashboard.test.mjs also needs Debian's
# chromium (/usr/bin/chromium, or CHROMIUM_BIN), lighttpd, sqlite3, curl and
# playwright-core, which this installs from package-lock.json when missing.
# Without chromium the browser suite reports itself skipped, unless
# ORDERS_BROWSER_REQUIRED=1 (set that in CI).
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
needs_browser=0
[ $# -gt 0 ] || set -- "$dir/modules.test.mjs" "$dir/dashboard.test.mjs"
n=$#
for f in "$@"; do
    # absolute: automake names it relative to where make runs
    set -- "$@" "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
    case $f in *dashboard*) needs_browser=1 ;; esac
done
shift "$n"
if ! command -v node >/dev/null 2>&1; then
    missing=node
elif [ "$needs_browser" = 1 ] && [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
    missing=${CHROMIUM_BIN:-/usr/bin/chromium}
else
    missing=
fi
if [ -n "$missing" ]; then
    if [ "${ORDERS_BROWSER_REQUIRED:-0}" = 1 ]; then
        echo "Bail out! $missing not found (apt-get install chromium nodejs npm)"
        exit 1
    fi
    echo "1..0 # SKIP $missing not found (apt-get install chromium nodejs npm)"
    exit 0
fi
cd "$dir"
if [ "$needs_browser" = 1 ] && [ ! -f node_modules/playwright-core/package.json ]; then
    npm ci --silent --no-audit --no-fund >&2
fi
exec node --test --test-reporter=tap "$@"
