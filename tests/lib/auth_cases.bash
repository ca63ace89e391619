# shellcheck shell=bash
# Tokens and CORS (SPEC.md section 5) as functions, run behind lighttpd
# (tests/auth.bats) and Apache httpd + mod_fcgid (tests/auth-apache.bats).
#
# Two instances (own temp dir, database and server each):
#   "writes": ORDERS_TOKENS_FILE, ORDERS_CORS_ORIGINS=https://app.example,http://localhost:3000
#   "reads":  ORDERS_TOKENS_FILE, ORDERS_READ_TOKENS=1, ORDERS_CORS_ORIGINS=*

TOKEN_RAW=s3cret-token-1
TOKEN_HASHED=hashed-token-2
ALLOWED_ORIGIN=https://app.example
ALLOWED_ORIGIN2=http://localhost:3000

auth_tokens_file_text() {
	printf '%s\n' \
		'# tokens for the integration tests' \
		'' \
		"$TOKEN_RAW" \
		'' \
		"# the next line is the hash of $TOKEN_HASHED" \
		"sha256:$(printf '%s' "$TOKEN_HASHED" | sha256sum | cut -d' ' -f1)" \
		''
}

auth_suite_setup() {
	instance_new
	AUTH_WRITES_DIR=$ORDERS_TMP
	export AUTH_WRITES_DIR
	auth_tokens_file_text >"$ORDERS_TMP/tokens"
	migrate_db
	server_start "ORDERS_TOKENS_FILE=$ORDERS_TMP/tokens" "ORDERS_CORS_ORIGINS=$ALLOWED_ORIGIN,$ALLOWED_ORIGIN2"

	instance_new
	AUTH_READS_DIR=$ORDERS_TMP
	export AUTH_READS_DIR
	auth_tokens_file_text >"$ORDERS_TMP/tokens"
	migrate_db
	server_start "ORDERS_TOKENS_FILE=$ORDERS_TMP/tokens" ORDERS_READ_TOKENS=1 'ORDERS_CORS_ORIGINS=*'
	instance_use "$AUTH_WRITES_DIR"
}

auth_suite_teardown() {
	local d rc=0
	for d in "${AUTH_READS_DIR:-}" "${AUTH_WRITES_DIR:-}"; do
		[[ -n $d && -d $d ]] || continue
		instance_use "$d"
		orders_suite_teardown || rc=1
	done
	return "$rc"
}

use_writes() { instance_use "$AUTH_WRITES_DIR"; }
use_reads() { instance_use "$AUTH_READS_DIR"; }

bearer() { printf 'Authorization: Bearer %s' "${1:-$TOKEN_RAW}"; }

# assert_401: 401 unauthorized with WWW-Authenticate: Bearer…
assert_401() {
	assert_error 401 unauthorized
	local w
	w=$(hdr WWW-Authenticate) || fail "401 without WWW-Authenticate; $(_resp)"
	[[ ${w,,} == bearer* ]] || fail "WWW-Authenticate must name Bearer, got [$w]"
}

# refused_401 METHOD PATH [curl args...]: 401, nothing changed.
refused_401() {
	snap
	api "$@"
	assert_401
	assert_unchanged
}

# ---------------------------------------------------------------- tokens (writes)

case_auth_post_without_token() {
	use_writes
	refused_401 POST /api/v1/orders -H 'Content-Type: application/json' --data-binary "$(order_json 'No token')"
}

case_auth_post_with_bad_tokens() {
	use_writes
	local hex
	hex=$(printf '%s' "$TOKEN_HASHED" | sha256sum | cut -d' ' -f1)
	local -a bad=(
		"Authorization: Bearer wrong-token"
		"Authorization: Bearer ${TOKEN_RAW}x"
		"Authorization: Bearer ${TOKEN_RAW%?}"
		"Authorization: Bearer"
		"Authorization: Bearer "
		"Authorization: $TOKEN_RAW"
		"Authorization: Basic $(printf 'user:%s' "$TOKEN_RAW" | base64)"
		"Authorization: Token $TOKEN_RAW"
		"Authorization: Bearer sha256:$hex"
		"Authorization: Bearer $hex"
		"Authorization: Bearer # tokens for the integration tests"
		"Authorization: Bearer #"
		"X-Token: $TOKEN_RAW"
	)
	local h
	for h in "${bad[@]}"; do
		soft refused_401 POST /api/v1/orders -H 'Content-Type: application/json' -H "$h" \
			--data-binary "$(order_json 'Bad token')"
	done
	# the token in the query string is for the stream only
	soft refused_401 POST "/api/v1/orders?access_token=$TOKEN_RAW" -H 'Content-Type: application/json' \
		--data-binary "$(order_json 'Query token')"
	soft_done
}

case_auth_post_with_raw_token() {
	use_writes
	create_order "$(order_json 'Raw token')" -H "$(bearer "$TOKEN_RAW")"
}

case_auth_post_with_hashed_token() {
	use_writes
	create_order "$(order_json 'Hashed token')" -H "$(bearer "$TOKEN_HASHED")"
}

case_auth_scheme_case_insensitive() {
	# RFC 9110 11.1: the auth scheme is case-insensitive
	use_writes
	create_order "$(order_json 'bearer lower')" -H "Authorization: bearer $TOKEN_RAW"
	create_order "$(order_json 'BEARER upper')" -H "Authorization: BEARER $TOKEN_RAW"
}

case_auth_patch_delete_need_token() {
	use_writes
	create_order "$(order_json 'Patch token')" -H "$(bearer)"
	refused_401 PATCH "/api/v1/orders/$OID" -H 'Content-Type: application/json' --data-binary '{"status":"paid"}'
	refused_401 PATCH "/api/v1/orders/$OID" -H 'Content-Type: application/json' --data-binary '{"status":"paid"}' \
		-H 'Authorization: Bearer nope'
	refused_401 DELETE "/api/v1/orders/$OID"
	refused_401 DELETE "/api/v1/orders/$OID" -H 'Authorization: Bearer nope'
	api_json PATCH "/api/v1/orders/$OID" '{"status":"paid"}' -H "$(bearer "$TOKEN_HASHED")"
	assert_status 200
	assert_jq .status '"paid"'
	api DELETE "/api/v1/orders/$OID" -H "$(bearer)"
	assert_status 204
}

case_auth_checked_before_body() {
	use_writes
	# an unauthenticated client learns nothing about its body or the order
	refused_401 POST /api/v1/orders -H 'Content-Type: application/json' --data-binary '{"customer":'
	refused_401 POST /api/v1/orders -H 'Content-Type: text/plain' --data-binary 'x'
	refused_401 POST /api/v1/orders -H 'Content-Type: application/json' --data-binary '{"customer":""}'
	refused_401 PATCH /api/v1/orders/ord_99999999 -H 'Content-Type: application/json' --data-binary '{"note":"x"}'
}

case_auth_reads_open_by_default() {
	use_writes
	create_order "$(order_json 'Readable')" -H "$(bearer)"
	local p
	for p in /api/v1/orders "/api/v1/orders/$OID" /api/v1/events /api/v1/health; do
		api GET "$p"
		assert_status 200
	done
}

# ---------------------------------------------------------------- tokens file reload

# set_tokens TEXT: rewrite the tokens file of the current instance (same inode and
# owner) and move its mtime forward, as an editor would.
TOKENS_MTIME_STEP=0
set_tokens() {
	local f=$ORDERS_TMP/tokens
	printf '%s\n' "$1" >"$f"
	TOKENS_MTIME_STEP=$((TOKENS_MTIME_STEP + 2))
	touch -d "@$(($(date +%s) + TOKENS_MTIME_STEP))" "$f"
}

# post_status_within SECONDS WANT TOKEN: retry POST /orders until it answers WANT.
post_status_within() {
	local deadline=$((SECONDS + $1)) want=$2 token=$3
	while :; do
		api_json POST /api/v1/orders "$(order_json 'Reload')" -H "$(bearer "$token")"
		[[ $STATUS == "$want" ]] && return 0
		((SECONDS < deadline)) || fail "token '$token' still gives $STATUS, not $want, $1 s after the tokens file changed; $(_resp)"
		sleep 0.2
	done
}

case_auth_tokens_file_reloaded() {
	use_writes
	local orig
	orig=$(cat "$ORDERS_TMP/tokens")
	api_json POST /api/v1/orders "$(order_json 'Before reload')" -H "$(bearer fresh-token-3)"
	assert_401
	# add a token
	set_tokens "$orig"$'\n'"fresh-token-3"
	post_status_within 5 201 fresh-token-3
	# remove the raw token
	set_tokens "fresh-token-3"
	post_status_within 5 401 "$TOKEN_RAW"
	assert_401
	post_status_within 5 201 fresh-token-3
	# back as it was
	set_tokens "$orig"
	post_status_within 5 201 "$TOKEN_RAW"
	post_status_within 5 401 fresh-token-3
}

# ---------------------------------------------------------------- CORS (list of origins)

case_cors_allowed_origin() {
	use_writes
	local o
	for o in "$ALLOWED_ORIGIN" "$ALLOWED_ORIGIN2"; do
		api GET /api/v1/health -H "Origin: $o"
		assert_status 200
		assert_hdr Access-Control-Allow-Origin "$o"
		[[ $(hdr Vary) == *Origin* ]] || fail "Vary must name Origin; $(_resp)"
		api GET /api/v1/orders -H "Origin: $o"
		assert_hdr Access-Control-Allow-Origin "$o"
	done
}

case_cors_disallowed_origin() {
	use_writes
	local o
	for o in https://evil.example http://app.example https://app.example:8443 https://app.example.evil.example \
		null "https://app.example, https://evil.example"; do
		api GET /api/v1/health -H "Origin: $o"
		assert_status 200
		assert_no_hdr Access-Control-Allow-Origin
	done
	api GET /api/v1/health
	assert_no_hdr Access-Control-Allow-Origin
}

case_cors_headers_on_writes_and_errors() {
	use_writes
	api_json POST /api/v1/orders "$(order_json 'CORS write')" -H "Origin: $ALLOWED_ORIGIN" -H "$(bearer)"
	assert_status 201
	assert_hdr Access-Control-Allow-Origin "$ALLOWED_ORIGIN"
	# a browser must be able to read error bodies too
	api_json POST /api/v1/orders "$(order_json 'CORS 401')" -H "Origin: $ALLOWED_ORIGIN"
	assert_401
	assert_hdr Access-Control-Allow-Origin "$ALLOWED_ORIGIN"
	api GET /api/v1/orders/ord_99999999 -H "Origin: $ALLOWED_ORIGIN"
	assert_error 404 not_found
	assert_hdr Access-Control-Allow-Origin "$ALLOWED_ORIGIN"
}

# assert_preflight PATH METHOD: OPTIONS preflight from the allowed origin.
assert_preflight() {
	local path=$1 method=$2 v h
	snap
	api OPTIONS "$path" -H "Origin: $ALLOWED_ORIGIN" -H "Access-Control-Request-Method: $method" \
		-H 'Access-Control-Request-Headers: authorization, content-type, if-match, idempotency-key'
	assert_status 204
	[[ -z $BODY ]] || fail "204 preflight with a body; $(_resp)"
	assert_hdr Access-Control-Allow-Origin "$ALLOWED_ORIGIN"
	v=$(hdr Access-Control-Allow-Methods) || fail "no Access-Control-Allow-Methods; $(_resp)"
	[[ ", ${v^^}," == *", $method,"* || ",${v^^}," == *",$method,"* ]] ||
		fail "Access-Control-Allow-Methods [$v] lacks $method"
	v=$(hdr Access-Control-Allow-Headers) || fail "no Access-Control-Allow-Headers; $(_resp)"
	for h in authorization content-type if-match idempotency-key; do
		[[ ${v,,} == *"$h"* ]] || fail "Access-Control-Allow-Headers [$v] lacks $h"
	done
	assert_unchanged
}

case_cors_preflight() {
	use_writes
	# no token needed for a preflight, even though writes need one
	assert_preflight /api/v1/orders POST
	create_order "$(order_json 'Preflight')" -H "$(bearer)"
	assert_preflight "/api/v1/orders/$OID" PATCH
	assert_preflight "/api/v1/orders/$OID" DELETE
	assert_preflight /api/v1/events GET
}

case_cors_preflight_disallowed_origin() {
	use_writes
	snap
	api OPTIONS /api/v1/orders -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST'
	assert_no_hdr Access-Control-Allow-Origin
	[[ $STATUS != 5* ]] || fail "preflight from another origin: $(_resp)"
	assert_unchanged
}

# ---------------------------------------------------------------- ORDERS_READ_TOKENS=1, CORS *

case_read_tokens_required() {
	use_reads
	create_order "$(order_json 'Read tokens')" -H "$(bearer)"
	local p
	for p in /api/v1/orders "/api/v1/orders/$OID" /api/v1/events '/api/v1/events?after=0'; do
		soft refused_401 GET "$p"
		soft refused_401 GET "$p" -H 'Authorization: Bearer wrong'
	done
	soft_done
	for p in /api/v1/orders "/api/v1/orders/$OID" /api/v1/events; do
		api GET "$p" -H "$(bearer)"
		assert_status 200
		api GET "$p" -H "$(bearer "$TOKEN_HASHED")"
		assert_status 200
	done
}

case_read_tokens_writes_still_need_token() {
	use_reads
	refused_401 POST /api/v1/orders -H 'Content-Type: application/json' --data-binary "$(order_json 'No token')"
	create_order "$(order_json 'With token')" -H "$(bearer)"
}

case_read_tokens_stream() {
	use_reads
	# the stream takes the token as access_token (EventSource cannot set headers)
	stream_probe /api/v1/stream/events
	assert_401
	stream_probe '/api/v1/stream/events?access_token=wrong'
	assert_401
	stream_probe /api/v1/stream/events -H 'Authorization: Bearer wrong'
	assert_401
	# the file's hashed form is not a token
	stream_probe "/api/v1/stream/events?access_token=sha256:$(printf '%s' "$TOKEN_HASHED" | sha256sum | cut -d' ' -f1)"
	assert_401
	stream_probe "/api/v1/stream/events?access_token=$TOKEN_RAW"
	assert_status 200
	[[ $(hdr Content-Type) == text/event-stream* ]] || fail "stream Content-Type; $(_resp)"
	[[ $BODY == retry:* ]] || fail "stream must start with retry:; $(_resp)"
	stream_probe /api/v1/stream/events -H "$(bearer "$TOKEN_HASHED")"
	assert_status 200
	[[ $(hdr Content-Type) == text/event-stream* ]] || fail "stream Content-Type; $(_resp)"
	# and with a token it is the whole stream: connected, then the replay
	# from the position (lastEventId or Last-Event-ID)
	local h ev
	create_order "$(order_json 'Stream with token')" -H "$(bearer)"
	h=$(db_head)
	ev=$'\nid: '"$h"$'\nevent: order.created\ndata: {"type":"order.created","id":"'"$OID"'",'
	stream_until "$ev" "/api/v1/stream/events?access_token=$TOKEN_HASHED&lastEventId=$((h - 1))"
	assert_status 200
	[[ $BODY == *$'\n\nevent: connected\ndata: {"message":"Connected to event stream","lastEventId":'"$h}"$'\n'* && $BODY == *"$ev"* ]] ||
		fail "stream with access_token from $((h - 1)): no connected event or no event $h; $(_resp)"
	stream_until "$ev" /api/v1/stream/events -H "$(bearer)" -H "Last-Event-ID: $((h - 1))"
	assert_status 200
	[[ $BODY == *"$ev"* ]] || fail "stream with Authorization from $((h - 1)): no event $h; $(_resp)"
}

# /health is a read like the others (SPEC section 5: with ORDERS_READ_TOKENS=1
# "reads and the stream need a token too"; section 2 gives /metrics the same
# rule): 401 with WWW-Authenticate without a valid bearer token, 200 with its
# body with one. A token in the query is the stream's alone, for EventSource:
# not for /health, nor for /events.
case_read_tokens_health() {
	use_reads
	local h t
	soft refused_401 GET /api/v1/health
	soft refused_401 GET /api/v1/health -H 'Authorization: Bearer wrong'
	soft refused_401 GET /api/v1/health -H "Authorization: Basic $(printf 'user:%s' "$TOKEN_RAW" | base64)"
	soft refused_401 GET "/api/v1/health?access_token=$TOKEN_RAW"
	soft refused_401 GET "/api/v1/events?access_token=$TOKEN_RAW"
	soft_done
	h=$(db_head)
	for t in "$TOKEN_RAW" "$TOKEN_HASHED"; do
		api GET /api/v1/health -H "$(bearer "$t")"
		assert_status 200
		assert_json_ct
		assert_jq '[.status, .lastEventId, (.streams | type)]' "[\"ok\",$h,\"number\"]"
	done
}

case_cors_star() {
	use_reads
	api GET /api/v1/orders -H 'Origin: https://anything.example' -H "$(bearer)"
	assert_status 200
	assert_hdr Access-Control-Allow-Origin '*'
	api GET /api/v1/orders -H 'Origin: https://anything.example'
	assert_401
	assert_hdr Access-Control-Allow-Origin '*'
	api OPTIONS /api/v1/orders -H 'Origin: https://other.example' -H 'Access-Control-Request-Method: GET' \
		-H 'Access-Control-Request-Headers: authorization'
	assert_status 204
	assert_hdr Access-Control-Allow-Origin '*'
	[[ $(hdr Access-Control-Allow-Headers) == *[Aa]uthorization* ]] || fail "preflight must allow Authorization; $(_resp)"
}

case_auth_no_crash_in_server_log() {
	use_writes
	assert_no_crash_in_log
	use_reads
	assert_no_crash_in_log
}

case_auth_all_cases_wrapped() {
	local f missing=""
	for f in $(declare -F | awk '$3 ~ /^case_/ {print $3}'); do
		grep -qE "(^|[^a-z_])$f([^a-z_]|$)" "$BATS_TEST_FILENAME" || missing+=" $f"
	done
	[[ -z $missing ]] || fail "cases without an @test in $(basename "$BATS_TEST_FILENAME"):$missing"
}
