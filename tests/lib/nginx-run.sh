#!/bin/bash
# nginx-run.sh TMP NGINX_BIN RESPONDER [SPAWN-FCGI OWNER ARGS...]
#
# The "web server" of the nginx suites (tests/lib/common.bash, server_start):
# nginx does not start FastCGI programs, so this script starts the responder
# RESPONDER with spawn-fcgi on the unix socket TMP/orders.sock, with the
# VAR=VALUE lines of TMP/responder.env as its whole environment and its
# stderr appended to TMP/responder.log, and starts it again whenever it
# exits (what systemd's Restart= does for conf/orders.service); then nginx in
# the foreground with TMP/nginx.conf. The responders and nginx are its
# descendants, so common.bash stops and finds them as it does lighttpd's.
#
# SIGTERM or SIGINT: TERM to the responder (which ends its streams and
# finishes its requests, nginx still relaying), wait for it, then TERM to
# nginx (its fast shutdown), wait for it, exit.
set -u
tmp=$1 nginx=$2 bin=$3
shift 3
own=("$@")
sock=$tmp/orders.sock
rlog=$tmp/responder.log
mapfile -t env_lines <"$tmp/responder.env"

stopping=0
rpid=
npid=

note() { printf 'nginx-run: %s\n' "$*" >>"$rlog"; }

start_responder() {
	env -i PATH=/usr/bin:/bin "${env_lines[@]}" \
		spawn-fcgi -n -s "$sock" -M 0660 "${own[@]}" -- "$bin" </dev/null >>"$rlog" 2>&1 &
	rpid=$!
}

trap 'stopping=1' TERM INT

start_responder
# nginx's first request must find the socket
for _ in $(seq 1 100); do
	[[ -S $sock ]] && break
	sleep 0.05
done
"$nginx" -p "$tmp/nginx/" -c "$tmp/nginx.conf" -e "$tmp/nginx-error.log" </dev/null &
npid=$!

while ((!stopping)); do
	done_pid=
	wait -n -p done_pid
	rc=$?
	((stopping)) && break
	[[ -n $done_pid ]] || continue
	if [[ $done_pid == "$npid" ]]; then
		note "nginx $npid exited with status $rc; stopping"
		npid=
		stopping=1
		break
	fi
	if [[ $done_pid == "$rpid" ]]; then
		note "responder $rpid exited with status $rc; starting another"
		sleep 0.1
		start_responder
	fi
done

if [[ -n $rpid ]]; then
	kill -TERM "$rpid" 2>/dev/null
	wait "$rpid" 2>/dev/null
fi
if [[ -n $npid ]]; then
	kill -TERM "$npid" 2>/dev/null
	wait "$npid" 2>/dev/null
fi
exit 0
