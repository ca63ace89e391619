#!/bin/sh
# Builds the service, creates a database with demo orders and serves it with
# lighttpd on 127.0.0.1:8080 (PORT=… to change). `tools/demo.sh stop` stops it.
# Everything it makes lives in demo/ beside the sources.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
state="$top/demo"
port="${PORT:-8080}"
pidfile="$state/lighttpd.pid"

stop() {
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
        echo "demo: stopped lighttpd"
    fi
    rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

tools/install-deps.sh
if [ ! -x src/orders.fcgi ]; then
    [ -f Makefile ] || { autoreconf -fi && ./configure; }
    make -j"$(nproc)"
fi

mkdir -p "$state"
if [ ! -f "$state/orders.db" ]; then
    ORDERS_DB="$state/orders.db" src/orders.fcgi --migrate
    sqlite3 "$state/orders.db" < sql/demo.sql
    echo "demo: created $state/orders.db with $(sqlite3 "$state/orders.db" 'SELECT count(*) FROM orders') orders"
fi

cat > "$state/lighttpd.conf" <<CONF
var.orders_fcgi = "$top/src/orders.fcgi"
var.orders_db   = "$state/orders.db"
var.orders_run  = "$state"
server.port          = $port
server.bind          = "127.0.0.1"
server.document-root = "$top/www"
server.errorlog      = "$state/lighttpd-error.log"
server.pid-file      = "$pidfile"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html; charset=utf-8",
                         ".js" => "text/javascript; charset=utf-8",
                         ".css" => "text/css; charset=utf-8",
                         ".svg" => "image/svg+xml" )
include "$top/conf/lighttpd-orders.conf"
CONF

stop
lighttpd -f "$state/lighttpd.conf"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null && break
    sleep 0.3
done
curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null \
    || { echo "demo: lighttpd did not come up; see $state/lighttpd-error.log" >&2; exit 1; }
echo "demo: the orders service is up at http://127.0.0.1:$port/"
echo "demo: API at http://127.0.0.1:$port/api/v1/orders  (stop with: tools/demo.sh stop)"
