#!/usr/bin/env bash
# A build without PostgreSQL (configure --without-postgresql), which .ci/run
# makes beside the others: it builds without libpq, its unit tests pass, and
# the responder refuses a PostgreSQL URI at start with one line on stderr
# and exit status 1. Prints TAP.
# Usage: tests/without-postgresql.sh BUILD_DIR   (made empty first)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: tests/without-postgresql.sh BUILD_DIR}

echo "1..4"
rm -rf "$dir" && mkdir -p "$dir" || { echo "Bail out! cannot make an empty $dir"; exit 1; }
cd "$dir" || exit 1
if "$top/configure" -q --without-postgresql --disable-server-tests >configure.log 2>&1 \
    && make -j2 >make.log 2>&1; then
    echo "ok 1 - configure --without-postgresql && make"
else
    echo "not ok 1 - configure --without-postgresql && make"
    tail -n 20 configure.log make.log | sed 's/^/# /'
    echo "Bail out! no build to check"
    exit 1
fi
if make check >check.log 2>&1; then
    echo "ok 2 - make check (the C unit tests, SQLite only)"
else
    echo "not ok 2 - make check (the C unit tests, SQLite only)"
    grep -E '^(FAIL|ERROR)' check.log | sed 's/^/# /'
fi
if ldd src/orders.fcgi | grep -q 'libpq\.'; then
    echo "not ok 3 - the responder does not link libpq"
else
    echo "ok 3 - the responder does not link libpq"
fi
out=$(ORDERS_DB=postgresql://orders@127.0.0.1:1/orders src/orders.fcgi --migrate </dev/null 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] \
    && printf '%s' "$out" | grep -q 'built without PostgreSQL'; then
    echo "ok 4 - a PostgreSQL URI is refused at start with one line: $out"
else
    echo "not ok 4 - a PostgreSQL URI is refused at start with one line (exit $rc)"
    printf '%s\n' "$out" | sed 's/^/# /'
fi
