#!/bin/bash
# front-run.sh NAME TMP RESPONDER [SPAWN-FCGI OWNER ARGS...] -- SERVER [ARGS...]
#
# The "web server" of the suites whose web server does not start FastCGI
# programs (nginx, Apache + mod_proxy_fcgi; tests/lib/common.bash,
# server_start): this script starts the responder RESPONDER with spawn-fcgi
# on the unix socket TMP/orders.sock, with the VAR=VALUE lines of
# TMP/responder.env as its whole environment and its stderr appended to
# TMP/responder.log, and starts it again whenever it exits (what systemd's
# Restart= does for conf/orders.service); then SERVER ARGS... in the
# foreground. The responders and the server are its descendants, so
# common.bash stops and finds them as it does lighttpd's. NAME prefixes its
# notes in responder.log.
#
# SIGTERM or SIGINT: TERM to the responder (which ends its streams and
# finishes its requests, the server still relaying), wait for it, then TERM
# to the server, wait for it, exit.
set -u
name=$1 tmp=$2 bin=$3
shift 3
own=()
while (($#)) && [[ $1 != -- ]]; do
	own+=("$1")
	shift
done
shift # --
server=("$@")
sock=$tmp/orders.sock
rlog=$tmp/responder.log
mapfile -t env_lines <"$tmp/responder.env"

stopping=0
rpid=
spid=

note() { printf '%s: %s\n' "$name" "$*" >>"$rlog"; }

start_responder() {
	env -i PATH=/usr/bin:/bin "${env_lines[@]}" \
		spawn-fcgi -n -s "$sock" -M 0660 "${own[@]}" -- "$bin" </dev/null >>"$rlog" 2>&1 &
	rpid=$!
}

trap 'stopping=1' TERM INT

start_responder
# the server's first request must find the socket
for _ in $(seq 1 100); do
	[[ -S $sock ]] && break
	sleep 0.05
done
"${server[@]}" </dev/null &
spid=$!

while ((!stopping)); do
	done_pid=
	wait -n -p done_pid
	rc=$?
	((stopping)) && break
	[[ -n $done_pid ]] || continue
	if [[ $done_pid == "$spid" ]]; then
		note "${server[0]##*/} $spid exited with status $rc; stopping"
		spid=
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
if [[ -n $spid ]]; then
	kill -TERM "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
fi
exit 0
