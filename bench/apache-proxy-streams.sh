#!/usr/bin/env bash
# How many event streams Apache httpd holds in front of the orders responder:
# mod_proxy_fcgi (conf/apache-proxy-orders.conf.in, one responder started by
# spawn-fcgi, as systemd would) against mod_fcgid (conf/apache-orders.conf.in,
# one responder process per stream). See bench/README.md, "Many streams
# through Apache".
#
# For each setup and each N of COUNTS, a fresh Apache (event MPM) on a free
# port of 127.0.0.1 and bench/sse-load opening N streams (it stops opening
# when none got ready for 10 s); while they are held idle, the proportional
# set size (Pss, /proc/PID/smaps_rollup) of Apache's processes and of the
# responder(s) is summed; then 20 changes are published and their delivery
# counted. One line per run on stdout.
#
# Environment (all optional):
#   SETUPS   which, in order (default "proxy-debian proxy-big fcgid-debian"):
#            proxy-debian  mod_proxy_fcgi, Debian's mpm_event.conf (150 workers)
#            proxy-big     mod_proxy_fcgi, the sizing in the conf's comment (2560)
#            fcgid-debian  mod_fcgid as shipped (FcgidMaxProcessesPerClass 100),
#                          Debian's mpm_event.conf
#   COUNTS   streams to open (default "500 2000")
#   ORDERS_FCGI, APACHE (default apache2 on PATH), APACHE_MODULES
#   SSE_LOAD the load generator (default bench/sse-load, built if missing or stale)
#   KEEP_TMP=1 keep the temporary directory
set -euo pipefail
BENCH_NAME=apache-proxy-streams
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SETUPS=${SETUPS:-proxy-debian proxy-big fcgid-debian}
COUNTS=${COUNTS:-500 2000}
APACHE=${APACHE:-$(command -v apache2 || echo /usr/sbin/apache2)}
APACHE_MODULES=${APACHE_MODULES:-/usr/lib/apache2/modules}
SSE_LOAD=$(abspath "${SSE_LOAD:-bench/sse-load}")
bench_init spawn-fcgi "$APACHE"
if [ ! -x "$SSE_LOAD" ] || [ "$here/sse-load.c" -nt "$SSE_LOAD" ]; then
  log "building $SSE_LOAD"
  ${CC:-cc} -O2 -Wall -Wextra -std=c11 -o "$SSE_LOAD" "$here/sse-load.c" || die "cannot build sse-load"
fi
# the generator holds every stream, the responder one descriptor per stream
ulimit -n "$(ulimit -Hn)"

# Debian 12's /etc/apache2/mods-available/mpm_event.conf, and the sizing that
# conf/apache-proxy-orders.conf.in suggests for 2,000 streams.
mpm_debian='StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0'
mpm_big='StartServers 2
MinSpareThreads 25
MaxSpareThreads 2560
ThreadLimit 128
ThreadsPerChild 128
ServerLimit 20
MaxRequestWorkers 2560
MaxConnectionsPerChild 0'

pss_kb() { # PID...: summed Pss in kB
  local p s=0 v
  for p in "$@"; do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
descendants() { local c; for c in $(children_of "$1"); do echo "$c"; descendants "$c"; done; }
by_comm() { # NAME PID...: those PIDs whose comm is NAME
  local n=$1 p; shift
  for p in "$@"; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$n" ] && echo "$p"; done; return 0
}

run() { # SETUP N
  local setup=$1 n=$2 d=$T/$1-$2 port mods conf apid rpid="" kids web app ready result
  mkdir -p "$d/run/orders" "$d/lib/orders" "$d/share/orders/www" "$d/fcgid" "$d/apache-run" "$d/libexec/orders"
  bench_db "$d/lib/orders/orders.db" 50
  port=$(free_port)
  case $setup in
    proxy-*)
      mods="LoadModule proxy_module $APACHE_MODULES/mod_proxy.so
LoadModule proxy_fcgi_module $APACHE_MODULES/mod_proxy_fcgi.so"
      sed -e "s|@runstatedir@|$d/run|g" -e "s|@datadir@|$d/share|g" \
        "$root/conf/apache-proxy-orders.conf.in" >"$d/orders.conf"
      ;;
    fcgid-*)
      mods="LoadModule fcgid_module $APACHE_MODULES/mod_fcgid.so
FcgidIPCDir $d/fcgid
FcgidProcessTableFile $d/fcgid/shm
FcgidMaxProcesses 1000"
      cp "$BIN" "$d/libexec/orders/orders.fcgi"
      sed -e "s|@fcgidir@|$d/libexec/orders|g" -e "s|@datadir@|$d/share|g" \
        -e "s|@localstatedir@/lib|$d/lib|g" -e "s|@sysconfdir@|$d|g" \
        "$root/conf/apache-orders.conf.in" >"$d/orders.conf"
      ;;
  esac
  local mpm=$mpm_debian
  [ "$setup" = proxy-big ] && mpm=$mpm_big
  conf=$d/apache.conf
  cat >"$conf" <<EOF
ServerRoot "$d"
DefaultRuntimeDir "$d/apache-run"
PidFile "$d/apache-run/httpd.pid"
Mutex file:$d/apache-run default
LoadModule mpm_event_module $APACHE_MODULES/mod_mpm_event.so
LoadModule authz_core_module $APACHE_MODULES/mod_authz_core.so
LoadModule alias_module $APACHE_MODULES/mod_alias.so
LoadModule dir_module $APACHE_MODULES/mod_dir.so
LoadModule env_module $APACHE_MODULES/mod_env.so
$mods
${RUN_USER:+User $RUN_USER
Group $RUN_GROUP}
ServerName 127.0.0.1
Listen 127.0.0.1:$port
ErrorLog "$d/apache-error.log"
LogLevel warn
Timeout 300
# sse-load's publishers wait on kept connections while the streams open
KeepAliveTimeout 60
$mpm
DocumentRoot "$d/share/orders/www"
Include "$d/orders.conf"
EOF
  give
  if [ "${setup%%-*}" = proxy ]; then
    spawn_responder "$d/run/orders/orders.sock" "$d/responder.log" "ORDERS_DB=$d/lib/orders/orders.db"
    rpid=$SPAWN_PID
  fi
  "$APACHE" -t -f "$conf" >"$d/check.out" 2>&1 || die "apache config: $(cat "$d/check.out")"
  "$APACHE" -f "$conf" -DFOREGROUND </dev/null >>"$d/apache.out" 2>&1 &
  apid=$!
  BENCH_PIDS+=("$apid")
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/api/v1/health")" = 200 ] && break
    sleep 0.1
  done
  sleep 2
  "$SSE_LOAD" -p "$port" -n "$n" -m 20 -r 10 -t 10 -c 2 --idle-seconds 8 --connect-stall 10 \
    --connect-timeout 60 -P orders -L "$setup" --orders 50 -q >"$d/load.out" 2>"$d/load.err" &
  local gen=$!
  while our_job "$gen" && ! grep -q '^READY' "$d/load.err" 2>/dev/null; do sleep 0.2; done
  sleep 2
  local -a kids webp appp
  mapfile -t kids < <(descendants "$apid")
  mapfile -t webp < <(by_comm apache2 "$apid" "${kids[@]}")
  if [ -n "$rpid" ]; then appp=("$rpid"); else mapfile -t appp < <(by_comm orders.fcgi "${kids[@]}"); fi
  web=$(pss_kb "${webp[@]}")
  app=$(pss_kb "${appp[@]}")
  wait "$gen" || true
  ready=$(sed -n 's/^READY streams=//p' "$d/load.err" | tail -n 1)
  result=$(grep '^RESULT ' "$d/load.out" | tail -n 1 | cut -d' ' -f2- || true)
  printf '%s N=%s held=%s apache_pss_kb=%s apache_procs=%s responder_pss_kb=%s responders=%s | %s\n' \
    "$setup" "$n" "${ready:-?}" "$web" "${#webp[@]}" "$app" "${#appp[@]}" "${result:-no result}"
  stop_tree "$apid" || true
  [ -z "$rpid" ] || stop_tree "$rpid" || true
}

log "$(machine)"
for s in $SETUPS; do
  case $s in proxy-debian|proxy-big|fcgid-debian) ;; *) die "SETUPS: unknown '$s'" ;; esac
  for n in $COUNTS; do run "$s" "$n"; done
done
