# shellcheck shell=bash
# Cases for FastCGI connection reuse behind nginx (tests/stream-nginx.bats)
# and Apache + mod_proxy_fcgi (tests/stream-apache-proxy.bats, at the end).
# nginx:
# fastcgi_keep_conn on with an upstream keepalive makes nginx set
# FCGI_KEEP_CONN, and libfcgi's FCGX_Finish_r then leaves the connection
# open; the worker thread's next FCGX_Accept_r reads the next request from
# it, blocking while it is idle. What the responder holds is seen from its
# side of the unix socket with ss: each accepted connection is one
# established socket whose local address is the listening socket's path,
# with an inode of its own.
#
#   load 'lib/common'
#   load 'lib/stream'
#   load 'lib/keepconn'

# fcgi_conns: the inodes of the responder's connections on the current
# instance's socket, sorted, one a line.
fcgi_conns() {
	ss -xHn 2>/dev/null |
		awk -v s="$ORDERS_TMP/orders.sock" '$1 == "u_str" && $2 == "ESTAB" && $5 == s {print $6}' | sort -n
}

# fcgi_conn_fds: the responder's descriptors of those connections, one a line.
fcgi_conn_fds() {
	ss -xHnp 2>/dev/null |
		awk -v s="$ORDERS_TMP/orders.sock" '$1 == "u_str" && $2 == "ESTAB" && $5 == s {
			if (match($0, /fd=[0-9]+/)) print substr($0, RSTART + 3, RLENGTH - 3) }'
}

# threads_reading PID FD...: how many threads of PID are blocked in read()
# on one of the FDs (/proc/PID/task/*/syscall: "0 0x<fd> ..." on x86_64).
threads_reading() {
	local pid=$1 t line n=0 fd
	shift
	for t in /proc/"$pid"/task/*; do
		line=$(cat "$t/syscall" 2>/dev/null) || continue
		for fd in "$@"; do
			[[ $line == "0 $(printf '0x%x' "$fd") "* ]] && n=$((n + 1))
		done
	done
	echo "$n"
}

# expect_conns WANT WHAT: the responder's connections are exactly WANT
# (inodes, one a line).
expect_conns() {
	local now
	now=$(fcgi_conns)
	[[ $now == "$1" ]] || fail "$2: the responder's FastCGI connections are [$(echo $now)], expected [$(echo $1)]"
}

# wait_conns_without INODE SECONDS: until the responder no longer holds INODE.
wait_conns_without() {
	local deadline=$(($(now_ms) + ${2:-5} * 1000))
	while grep -qx "$1" <<<"$(fcgi_conns)"; do
		(($(now_ms) < deadline)) || fail "the responder still holds connection $1 after ${2:-5} s: [$(fcgi_conns | tr '\n' ' ')]"
		sleep 0.05
	done
}

# rest_round I: a create, a read, a change, a list and the health, each
# answered within 5 s (a request that needed a connection no thread serves
# would wait for nginx's fastcgi_read_timeout, 60 s).
rest_round() {
	local oid
	API_TIMEOUT=5 create_order "$(order_json "Kept $1")"
	oid=$OID
	API_TIMEOUT=5 api GET "/api/v1/orders/$oid"
	assert_status 200
	API_TIMEOUT=5 api_json PATCH "/api/v1/orders/$oid" "{\"note\":\"kept $1\"}"
	assert_status 200
	API_TIMEOUT=5 api GET '/api/v1/orders?limit=5'
	assert_status 200
	API_TIMEOUT=5 api GET /api/v1/health
	assert_status 200
}

kept_instance() { # kept_instance VAR=VALUE...: one thread, one kept connection
	NGINX_KEEPALIVE=1 stream_aux_start ORDERS_THREADS=1 "$@"
}

# Many requests in a row reuse one connection: with ORDERS_THREADS=1 and
# keepalive 1 the responder's only thread waits on the kept connection
# between requests, so a request on any other connection would not be
# served at all; all 60 are, within 5 s each, and the responder holds the
# same single connection (same inode) after every one of them.
kcase_reuse() {
	kept_instance
	local c0 i pid fd n
	API_TIMEOUT=5 api GET /api/v1/health
	assert_status 200
	c0=$(fcgi_conns)
	[[ $c0 =~ ^[0-9]+$ ]] || fail "expected one kept FastCGI connection after a request, found [$(echo $c0)]"
	for i in $(seq 1 12); do
		rest_round "$i"
		expect_conns "$c0" "after round $i (5 requests each)"
	done
	# the idle connection holds the thread: it waits in read() on it
	if [[ $(uname -m) == x86_64 ]]; then
		pid=$(responder_pid) || fail "no responder under nginx-run.sh"
		fd=$(fcgi_conn_fds)
		n=$(threads_reading "$pid" "$fd")
		[[ $n == 1 ]] || fail "expected the responder's one worker thread blocked reading kept connection fd $fd, found $n"
	fi
	echo "# 61 requests over 1 FastCGI connection (inode $c0), 1 responder thread" >&3
}

# A stream request that arrives over a kept connection (nginx takes an idle
# one from its cache, here without FCGI_KEEP_CONN, as conf/nginx-orders.conf
# asks for the stream) is handed to the hub with that connection; the one
# worker thread is free again, serves the REST API on a new connection, and
# when the client leaves the hub closes the stream's connection.
kcase_stream_over_kept() {
	kept_instance
	local c0 c1 a
	create_order "$(order_json 'Before the stream')"
	a=$OID
	c0=$(fcgi_conns)
	[[ $c0 =~ ^[0-9]+$ ]] || fail "expected one kept FastCGI connection, found [$(echo $c0)]"
	sse_open ks /api/v1/stream/events
	sse_wait_connected ks
	# the stream went over the kept connection: the responder holds it still
	expect_conns "$c0" "with the stream open"
	rest_round 1
	c1=$(fcgi_conns | grep -vx "$c0")
	[[ $c1 =~ ^[0-9]+$ ]] || fail "expected one new connection for the REST API besides the stream's $c0: [$(fcgi_conns | tr '\n' ' ')]"
	note_change "$a" 'during the stream'
	sse_wait_id ks "$EVENT_ID" 3
	rest_round 2
	expect_conns "$(printf '%s\n' "$c0" "$c1" | sort -n)" "stream and REST"
	sse_close ks
	# nginx closes its side when the client leaves; the hub sees it at the next ping
	wait_health_streams 0 8
	wait_conns_without "$c0" 5
	rest_round 3
	expect_conns "$c1" "after the stream"
}

# A stream asked for with FCGI_KEEP_CONN (location /kept/... of the test
# config has fastcgi_keep_conn on): the responder cannot give the connection
# back to libfcgi, so the hub closes it after the stream's last record.
# ORDERS_STREAM_MAX_S ends the stream: it ends cleanly (curl exits 0, after
# a complete event), the responder no longer holds its connection, and the
# REST API, writes included, goes on without an error from nginx.
kcase_stream_keep_conn_flag() {
	kept_instance ORDERS_STREAM_MAX_S=2
	local c0 a pid rc d errs
	create_order "$(order_json 'Kept stream')"
	a=$OID
	c0=$(fcgi_conns)
	[[ $c0 =~ ^[0-9]+$ ]] || fail "expected one kept FastCGI connection, found [$(echo $c0)]"
	d=$(stream_dir)
	sse_open kk /kept/api/v1/stream/events
	sse_wait_connected kk
	expect_conns "$c0" "with the stream open"
	note_change "$a" 'during the kept stream'
	sse_wait_id kk "$EVENT_ID" 3
	pid=$(sse_pid kk)
	wait_child_gone "$pid" 5 || fail "the stream did not end by itself (ORDERS_STREAM_MAX_S=2)"
	rc=0
	wait "$pid" || rc=$?
	((rc == 0)) || fail "the stream over a kept connection did not end cleanly: curl exit $rc ($(cat "$d/kk.err"))"
	[[ $(tail -c 2 "$(sse_body kk)" | od -An -c | tr -d ' ') == '\n\n' ]] ||
		fail "the stream does not end after a complete event: $(tail -c 200 "$(sse_body kk)" | sed -n l)"
	wait_conns_without "$c0" 2
	local i
	for i in 1 2 3 4; do rest_round "$i"; done
	[[ $(fcgi_conns | wc -l) == 1 ]] || fail "expected one kept connection after the stream, found [$(fcgi_conns | tr '\n' ' ')]"
	errs=$(grep -E '\[(error|crit|alert|emerg)\]' "$(server_log)" || true)
	[[ -z $errs ]] || fail "nginx logged errors: $errs"
}

# SIGTERM while worker threads wait in read() on idle kept connections:
# they are cancelled like threads waiting in accept(), and the responder
# exits within its stop deadline (4.5 s); nginx-run.sh starts another and
# nginx gets on with it (its kept connections to the old one are closed).
kcase_sigterm_idle() {
	NGINX_KEEPALIVE=4 stream_aux_start
	local pid t0 dt n fds c i urls=()
	for i in $(seq 1 32); do urls+=(-o /dev/null "$API_BASE/api/v1/orders?limit=100"); done
	# parallel requests open several connections, which nginx then keeps
	curl -s --parallel --parallel-immediate --parallel-max 8 "${urls[@]}" ||
		fail "parallel requests failed"
	c=$(fcgi_conns | wc -l)
	((c >= 1)) || fail "no kept FastCGI connection after 32 requests"
	pid=$(responder_pid) || fail "no responder under nginx-run.sh"
	if [[ $(uname -m) == x86_64 ]]; then
		mapfile -t fds < <(fcgi_conn_fds)
		n=$(threads_reading "$pid" "${fds[@]}")
		[[ $n == "$c" ]] || fail "expected $c threads blocked reading the $c kept connections (fds ${fds[*]}), found $n"
	fi
	t0=$(now_ms)
	kill -TERM "$pid"
	wait_gone "$pid" 10 || fail "the responder did not exit within 10 s of SIGTERM"
	dt=$(($(now_ms) - t0))
	echo "# SIGTERM with $c idle kept connections (of 8 threads): the responder exited after $dt ms" >&3
	((dt < 4500)) || fail "the responder took $dt ms to stop: not within its 4.5 s stop deadline"
	grep -q "responder $pid exited with status 0;" "$ORDERS_TMP/responder.log" ||
		fail "the responder did not exit with status 0: $(grep "responder $pid" "$ORDERS_TMP/responder.log")"
	# another one serves
	local deadline=$(($(now_ms) + 10000))
	until API_TIMEOUT=5 api GET /api/v1/health && [[ $STATUS == 200 ]]; do
		(($(now_ms) < deadline)) || fail "no responder answers 10 s after the SIGTERM: $STATUS $BODY"
		sleep 0.1
	done
	rest_round 1
}

# Apache + mod_proxy_fcgi (tests/stream-apache-proxy.bats): the REST worker
# of tests/lib/apache-proxy.conf.in has enablereuse=on max=2 (mod_proxy_fcgi
# then sets FCGI_KEEP_CONN) under ServerLimit 2, the stream's worker no
# reuse. After 40 requests in a row the responder holds between 1 and 2 x 2
# kept connections (none without reuse: each would be closed); a stream
# takes a connection of its own, the REST API goes on beside it, and when
# the client leaves the responder closes the stream's connection.
kcase_proxy_reuse() {
	local c0 n a s i
	for i in $(seq 1 8); do rest_round "$i"; done
	c0=$(fcgi_conns)
	n=$(grep -c . <<<"$c0" || true)
	((n >= 1 && n <= 4)) || fail "expected 1 to 4 kept FastCGI connections after 40 requests, found $n: [$(echo $c0)]"
	create_order "$(order_json 'Beside the stream')"
	a=$OID
	c0=$(fcgi_conns)
	sse_open ps /api/v1/stream/events
	sse_wait_connected ps
	s=$(comm -13 <(printf '%s\n' "$c0") <(fcgi_conns))
	[[ $s =~ ^[0-9]+$ ]] || fail "expected one new connection for the stream, found [$(echo $s)]"
	rest_round 9
	note_change "$a" 'beside the stream'
	sse_wait_id ps "$EVENT_ID" 3
	sse_close ps
	wait_health_streams 0 8
	wait_conns_without "$s" 5
	rest_round 10
	n=$(fcgi_conns | grep -c . || true)
	((n <= 4)) || fail "more than 2 x 2 kept connections after the stream: $n"
	echo "# $n kept FastCGI connection(s) for 50 REST requests; the stream's own connection closed" >&3
}
