#!/bin/bash
# nginx-run.sh TMP NGINX_BIN RESPONDER [SPAWN-FCGI OWNER ARGS...]
#
# The "web server" of the nginx suites (tests/lib/common.bash, server_start):
# tests/lib/front-run.sh with nginx in the foreground on TMP/nginx.conf. It
# starts the responder with spawn-fcgi on TMP/orders.sock (again whenever it
# exits), stderr to TMP/responder.log; on SIGTERM it stops the responder,
# then nginx (its fast shutdown).
tmp=$1 nginx=$2 bin=$3
shift 3
exec "$(dirname "${BASH_SOURCE[0]}")/front-run.sh" nginx-run "$tmp" "$bin" "$@" -- \
	"$nginx" -p "$tmp/nginx/" -c "$tmp/nginx.conf" -e "$tmp/nginx-error.log"
