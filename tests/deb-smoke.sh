#!/usr/bin/env bash
# The Debian package, built, checked, installed and run (issue 10, part 1).
# Prints TAP:
#
#   tests/deb-smoke.sh [WORKDIR]
#
# 1. builds the package with `dpkg-buildpackage -us -uc -b` in a copy of this
#    tree under WORKDIR (default: a new temporary directory), so that nothing
#    the build makes lands in the source tree (dpkg writes the .deb next to
#    the copy, in WORKDIR); DEB_BUILD_OPTIONS defaults to nocheck here;
# 2. runs lintian on it: an error fails (warnings and infos are printed as
#    comments);
# 3. installs it with `apt-get install ./orders_*.deb`, and checks what went
#    where: the responder, the units and the paths in them, the snippets, the
#    user "orders" and its /var/lib/orders;
# 4. starts the installed responder the way orders.socket and orders.service
#    do, read from the installed units: systemd-socket-activate (as root)
#    listens on ListenStream= (owner SocketUser:SocketGroup, SocketMode) and
#    starts ExecStart= as User:Group with the units' Environment= on the first
#    connection, handing it the socket (LISTEN_FDS). systemd's sandboxing
#    (ProtectSystem= etc.) is not reproduced; no systemd needs to run;
# 5. puts lighttpd, as www-data, in front of it on a free port of 127.0.0.1,
#    with Debian's 10-fastcgi.conf and the package's 50-orders.conf (what
#    `lighty-enable-mod orders` enables), and smoke-tests REST and the stream
#    with curl: health, POST, GET, PATCH with If-Match, the stream's replay and
#    a live event, the page at /orders/; then the same responder behind
#    nginx and Apache httpd (mod_proxy_fcgi) with the package's snippets:
#    health and a live event through each; then SIGTERM stops the responder.
#
# Needs root (apt-get install, the user switch) and the packages of
# tools/install-deps.sh. It leaves the package installed. .ci/run runs it.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done; }
check() { # check DESCRIPTION CMD...: ok when CMD succeeds
    local d=$1; shift
    if "$@"; then ok "$d"; else not_ok "$d"; fi
}
bail() { echo "Bail out! $*"; exit 1; }

echo "1..17"
[[ $(id -u) == 0 ]] || bail "needs root (apt-get install, running the responder as orders)"
for c in dpkg-buildpackage lintian apt-get systemd-socket-activate setpriv lighttpd nginx apache2 curl python3; do
    command -v "$c" >/dev/null || bail "$c not found: run tools/install-deps.sh"
done

work=${1:-}
if [[ -z $work ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/orders-deb.XXXXXX") || bail "no temporary directory"
else
    rm -rf "$work" && mkdir -p "$work" || bail "cannot make an empty $work"
fi
work=$(cd "$work" && pwd)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

# 1. Build in a copy: the files git knows, plus new ones not ignored.
copy=$work/orders
mkdir -p "$copy"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -cf -) | tar -xf - -C "$copy" || bail "cannot copy the tree"
else
    tar -C "$src" --exclude=./_build --exclude=./.git -cf - . | tar -xf - -C "$copy" ||
        bail "cannot copy the tree"
fi
# The build's own make check (the C unit tests) is skipped with nocheck
# unless DEB_BUILD_OPTIONS says otherwise: .ci/run has run make check twice
# before this. DEB_BUILD_OPTIONS= (empty) runs it.
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck}
if (cd "$copy" && dpkg-buildpackage -us -uc -b -j2) >"$work/build.log" 2>&1; then
    ok "dpkg-buildpackage -us -uc -b"
else
    not_ok "dpkg-buildpackage -us -uc -b" "$(tail -n 30 "$work/build.log")"
    bail "no package to test"
fi
debs=("$work"/orders_*.deb)
deb=${debs[0]}
[[ -f $deb ]] || bail "no orders_*.deb in $work"
if grep -E ':[0-9]+:([0-9]+:)? warning:' "$work/build.log" >"$work/warnings"; then
    not_ok "the build prints no compiler warning" "$(head -n 20 "$work/warnings")"
else
    ok "the build prints no compiler warning"
fi

# 2. lintian: errors fail.
lintian --fail-on error -I "$deb" >"$work/lintian.log" 2>&1
lrc=$?
sed 's/^/# lintian: /' "$work/lintian.log"
if [[ $lrc == 0 ]]; then ok "lintian: no error"; else not_ok "lintian: no error (exit $lrc)"; fi

# 3. Install, and what went where.
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall --no-install-recommends "$deb" \
    >"$work/install.log" 2>&1; then
    ok "apt-get install ./$(basename "$deb")"
else
    not_ok "apt-get install ./$(basename "$deb")" "$(tail -n 20 "$work/install.log")"
    bail "the package did not install"
fi

svc=/lib/systemd/system/orders.service sock_unit=/lib/systemd/system/orders.socket
layout() {
    local f bad=0
    [[ -x /usr/libexec/orders/orders.fcgi ]] || { echo "# missing /usr/libexec/orders/orders.fcgi"; bad=1; }
    for f in /usr/share/orders/sql/001_schema.sql /usr/share/orders/sql/demo.sql \
        /usr/share/orders/www/index.html /etc/lighttpd/conf-available/50-orders.conf \
        /etc/apache2/conf-available/orders.conf /etc/nginx/sites-available/orders \
        /usr/share/man/man8/orders.fcgi.8.gz "$svc" "$sock_unit"; do
        [[ -f $f ]] || { echo "# missing $f"; bad=1; }
    done
    grep -qx 'ExecStart=/usr/libexec/orders/orders.fcgi' "$svc" || { echo "# ExecStart in $svc"; bad=1; }
    grep -qx 'Environment=ORDERS_DB=/var/lib/orders/orders.db' "$svc" || { echo "# ORDERS_DB in $svc"; bad=1; }
    grep -qx 'ReadWritePaths=/var/lib/orders' "$svc" || { echo "# ReadWritePaths in $svc"; bad=1; }
    grep -qx 'ListenStream=/run/orders/orders.sock' "$sock_unit" || { echo "# ListenStream in $sock_unit"; bad=1; }
    grep -q '/run/orders/orders.sock' /etc/nginx/sites-available/orders || { echo "# socket in the nginx snippet"; bad=1; }
    [[ $(grep -c . <(grep -rh '@[a-z]*dir@' /etc/lighttpd/conf-available/50-orders.conf \
        /etc/apache2/conf-available/orders.conf /etc/nginx/sites-available/orders "$svc" "$sock_unit")) == 0 ]] ||
        { echo "# an unfilled @dir@"; bad=1; }
    id orders >/dev/null 2>&1 || { echo "# no user orders"; bad=1; }
    [[ $(stat -c %U:%G /var/lib/orders 2>/dev/null) == orders:orders ]] ||
        { echo "# /var/lib/orders: $(stat -c %U:%G /var/lib/orders 2>&1)"; bad=1; }
    return "$bad"
}
check "installed: the responder, SQL, page, snippets, man page, units with the Debian paths; user orders owns /var/lib/orders" layout

# 4. Start the responder as the units would.
unit_value() { sed -n "s/^$1=//p" "$2" | tail -n 1; }
exec_start=$(unit_value ExecStart "$svc")
user=$(unit_value User "$svc") group=$(unit_value Group "$svc")
listen=$(unit_value ListenStream "$sock_unit")
s_user=$(unit_value SocketUser "$sock_unit") s_group=$(unit_value SocketGroup "$sock_unit")
s_mode=$(unit_value SocketMode "$sock_unit") d_mode=$(unit_value DirectoryMode "$sock_unit")
env_args=()
while IFS= read -r e; do env_args+=(-E "$e"); done < <(sed -n 's/^Environment=//p' "$svc")
# Where systemd runs, the install started the real units on the same path:
# stop them for the duration (systemctl start orders.socket brings them back).
if [[ -d /run/systemd/system ]]; then
    systemctl stop orders.socket orders.service 2>/dev/null
fi
install -d -m "${d_mode:-0755}" "$(dirname "$listen")"
rm -f "$listen"
# ExecStart= is split into words, as systemd splits it (no quoting in it).
# shellcheck disable=SC2086
systemd-socket-activate -l "$listen" "${env_args[@]}" \
    setpriv --reuid="$user" --regid="$group" --init-groups -- $exec_start \
    </dev/null >"$work/responder.log" 2>&1 &
act=$!
pids+=("$act")
for _ in $(seq 100); do [[ -S $listen ]] && break; sleep 0.05; done
if [[ -S $listen ]]; then
    chown "$s_user:$s_group" "$listen" && chmod "$s_mode" "$listen"
    ok "systemd-socket-activate listens on $listen ($s_user:$s_group $s_mode) for $exec_start as $user"
else
    not_ok "systemd-socket-activate listens on $listen" "$(cat "$work/responder.log")"
fi

# 5. lighttpd in front, as www-data, with the package's snippet.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# lighttpd opens its error log as www-data: its files go to a directory of
# their own under TMPDIR, which www-data can reach (WORKDIR may not be).
lt=$(mktemp -d "${TMPDIR:-/tmp}/orders-deb-lighttpd.XXXXXX") || bail "no temporary directory"
mkdir -p "$lt/htdocs" "$lt/uploads" && chown -R www-data:www-data "$lt" && chmod 755 "$lt"
cat >"$lt/lighttpd.conf" <<EOF
server.modules        = ( "mod_indexfile", "mod_access", "mod_alias" )
server.document-root  = "$lt/htdocs"
server.upload-dirs    = ( "$lt/uploads" )
server.errorlog       = "$lt/error.log"
server.bind           = "127.0.0.1"
server.port          = $port
server.username       = "www-data"
server.groupname      = "www-data"
index-file.names      = ( "index.html" )
mimetype.assign       = ( ".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8", ".css" => "text/css; charset=utf-8" )
include "/etc/lighttpd/conf-available/10-fastcgi.conf"
include "/etc/lighttpd/conf-available/50-orders.conf"
server.modules       += ( "mod_staticfile" )
EOF
lighttpd -D -f "$lt/lighttpd.conf" >"$lt/stdout.log" 2>&1 &
lpid=$!
pids+=("$lpid")
base=http://127.0.0.1:$port
api=$base/api/v1
code=
for _ in $(seq 100); do
    code=$(curl -s -o "$work/health" -w '%{http_code}' --max-time 2 "$api/health") && [[ $code == 200 ]] && break
    sleep 0.1
done
if [[ $code == 200 ]]; then
    ok "lighttpd with 50-orders.conf: GET /api/v1/health is 200"
else
    not_ok "lighttpd with 50-orders.conf: GET /api/v1/health is 200 (got ${code:-none})" \
        "$(cat "$work/health" "$lt/error.log" "$work/responder.log" 2>/dev/null | tail -n 20)"
fi

hdr=$work/hdr body=$work/body
req() { # req METHOD URL [curl args...]: status code on stdout, headers and body in files
    local m=$1 u=$2; shift 2
    curl -s -X "$m" -D "$hdr" -o "$body" -w '%{http_code}' --max-time 5 "$@" "$u"
}
header() { sed -n "s/^$1: *//Ip" "$hdr" | tr -d '\r' | tail -n 1; }

code=$(req POST "$api/orders" -H 'Content-Type: application/json' \
    -d '{"customer":"Deb Smoke","items":[{"sku":"BK-001","name":"Notebook","qty":2,"unitPriceCents":1299}]}')
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$body" 2>/dev/null)
etag=$(header ETag)
if [[ $code == 201 && $id == ord_* && -n $etag ]]; then
    ok "POST /api/v1/orders is 201 with an id ($id) and an ETag ($etag)"
else
    not_ok "POST /api/v1/orders is 201 with an id and an ETag (got $code)" "$(cat "$body")"
fi

code=$(req GET "$api/orders/$id")
if [[ $code == 200 ]] && grep -q '"customer":"Deb Smoke"' "$body"; then
    ok "GET /api/v1/orders/$id is 200 with the order"
else
    not_ok "GET /api/v1/orders/$id is 200 with the order (got $code)" "$(cat "$body")"
fi

code=$(req PATCH "$api/orders/$id" -H 'Content-Type: application/json' -H "If-Match: $etag" \
    -d '{"status":"paid"}')
if [[ $code == 200 ]] && grep -q '"status":"paid"' "$body"; then
    ok "PATCH /api/v1/orders/$id with If-Match is 200, status paid"
else
    not_ok "PATCH /api/v1/orders/$id with If-Match is 200 (got $code)" "$(cat "$body")"
fi

# The stream: replay from the start, then a live event.
curl -sN --max-time 3 "$api/stream/events?lastEventId=0" >"$work/replay" 2>/dev/null
if grep -q '^event: order.created' "$work/replay" && grep -q '^event: order.updated' "$work/replay" &&
    grep -q "\"id\":\"$id\"" "$work/replay"; then
    ok "the stream replays order.created and order.updated of $id"
else
    not_ok "the stream replays order.created and order.updated of $id" "$(head -c 2000 "$work/replay")"
fi

curl -sN --max-time 10 "$api/stream/events" >"$work/live" 2>/dev/null &
cpid=$!
pids+=("$cpid")
for _ in $(seq 50); do grep -q '^event: connected' "$work/live" && break; sleep 0.1; done
code=$(req PATCH "$api/orders/$id" -H 'Content-Type: application/json' -d '{"status":"shipped"}')
for _ in $(seq 50); do grep -q '"status":"shipped"' "$work/live" && break; sleep 0.1; done
kill "$cpid" 2>/dev/null
if [[ $code == 200 ]] && grep -q '^event: order.updated' "$work/live" && grep -q '"status":"shipped"' "$work/live"; then
    ok "an open stream gets the live order.updated of a PATCH"
else
    not_ok "an open stream gets the live order.updated of a PATCH (PATCH $code)" "$(head -c 2000 "$work/live")"
fi

code=$(req GET "$base/orders/")
if [[ $code == 200 ]] && grep -qi '<html' "$body"; then
    ok "the live orders page is served at /orders/"
else
    not_ok "the live orders page is served at /orders/ (got $code)"
fi

# The nginx and Apache snippets, in front of the same responder: health,
# and a PATCH seen live on a stream through each.
front_check() { # front_check NAME BASE [curl args...]
    local name=$1 b=$2 out=$work/live-$1 c h p
    shift 2
    h=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$b/api/v1/health")
    curl -sN --max-time 10 "$@" "$b/api/v1/stream/events" >"$out" 2>/dev/null &
    c=$!
    pids+=("$c")
    for _ in $(seq 50); do grep -q '^event: connected' "$out" && break; sleep 0.1; done
    p=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PATCH "$@" \
        -H 'Content-Type: application/json' -d "{\"note\":\"via $name\"}" "$b/api/v1/orders/$id")
    for _ in $(seq 50); do grep -q "\"note\":\"via $name\"" "$out" && break; sleep 0.1; done
    kill "$c" 2>/dev/null
    if [[ $h == 200 && $p == 200 ]] && grep -q "\"note\":\"via $name\"" "$out"; then
        ok "$name with the package's snippet: health 200, a PATCH through it seen live on its stream"
    else
        not_ok "$name with the package's snippet: health $h, PATCH $p, live event" "$(head -c 1000 "$out")" \
            "$(tail -n 5 "$lt"/*error.log 2>/dev/null)"
    fi
}

nport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/^\( *\)listen 80;/\1listen 127.0.0.1:$nport;/" /etc/nginx/sites-available/orders >"$lt/nginx-orders.conf"
ln -s /etc/nginx/fastcgi_params "$lt/fastcgi_params"
cat >"$lt/nginx.conf" <<EOF
user www-data;
pid $lt/nginx.pid;
error_log $lt/nginx-error.log;
events {}
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $lt/nginx-body;
    fastcgi_temp_path $lt/nginx-fastcgi;
    proxy_temp_path $lt/nginx-proxy;
    uwsgi_temp_path $lt/nginx-uwsgi;
    scgi_temp_path $lt/nginx-scgi;
    include $lt/nginx-orders.conf;
}
EOF
if nginx -c "$lt/nginx.conf" -p "$lt" >"$lt/nginx-start.log" 2>&1; then
    front_check nginx "http://127.0.0.1:$nport" -H 'Host: orders.example'
    kill "$(cat "$lt/nginx.pid")" 2>/dev/null
else
    not_ok "nginx starts with the package's sites-available/orders" "$(cat "$lt/nginx-start.log")"
fi

aport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
amod=/usr/lib/apache2/modules
{
    printf 'ServerRoot %s\nPidFile %s/apache.pid\nErrorLog %s/apache-error.log\n' "$lt" "$lt" "$lt"
    printf 'Listen 127.0.0.1:%s\nServerName localhost\nUser www-data\nGroup www-data\n' "$aport"
    for m in mpm_event authz_core alias dir mime env proxy proxy_fcgi; do
        printf 'LoadModule %s_module %s/mod_%s.so\n' "$m" "$amod" "$m"
    done
    printf 'TypesConfig /etc/mime.types\nInclude /etc/apache2/conf-available/orders.conf\n'
} >"$lt/apache.conf"
if apache2 -f "$lt/apache.conf" -k start >"$lt/apache-start.log" 2>&1; then
    front_check apache "http://127.0.0.1:$aport"
    apache2 -f "$lt/apache.conf" -k stop >/dev/null 2>&1
else
    not_ok "Apache httpd starts with the package's conf-available/orders.conf" "$(cat "$lt/apache-start.log")"
fi

# The database is the unit's, owned by the unit's user.
if [[ $(stat -c %U /var/lib/orders/orders.db 2>/dev/null) == "$user" ]]; then
    ok "/var/lib/orders/orders.db was created by $user"
else
    not_ok "/var/lib/orders/orders.db was created by $user" "$(ls -l /var/lib/orders 2>&1)"
fi

# SIGTERM, as KillSignal= of the unit: the responder (the activator's PID,
# after its exec) stops within 5 s.
kill -TERM "$act" 2>/dev/null
stopped=no
for _ in $(seq 50); do kill -0 "$act" 2>/dev/null || { stopped=yes; break; }; sleep 0.1; done
if [[ $stopped == yes ]]; then
    ok "SIGTERM stops the responder within 5 s"
else
    not_ok "SIGTERM stops the responder within 5 s" "$(tail -n 20 "$work/responder.log")"
fi

kill "$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null
rm -rf "$lt"
echo "# build, lintian and install logs in $work"
[[ $failed == 0 ]]
