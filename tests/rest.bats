#!/usr/bin/env bats
# REST API suite (SPEC.md sections 1, 2, 3), behind lighttpd, or behind Apache
# httpd + mod_fcgid when this file is run by the name rest-apache.bats (a
# symbolic link to it) or with ORDERS_TEST_SERVER=apache, or behind nginx by
# the name rest-nginx.bats or with ORDERS_TEST_SERVER=nginx, or behind Apache
# httpd + mod_proxy_fcgi by the name rest-apache-proxy.bats or with
# ORDERS_TEST_SERVER=apache-proxy; behind lighttpd on PostgreSQL (a
# throwaway cluster, tests/lib/pg.bash) by the name rest-pg.bats or with
# ORDERS_TEST_BACKEND=postgresql (orders_suite_from_name).
# The cases live in lib/rest_cases.bash; each @test below is a one-line wrapper.
# Run from the repository root: bats --tap tests/rest.bats

load 'lib/common'
load 'lib/rest_cases'

setup_file() {
	orders_suite_from_name
	orders_suite_setup
}

teardown_file() {
	orders_suite_teardown
}

setup() {
	orders_test_setup
}

teardown() {
	orders_test_teardown
}

@test "GET /health: 200 {status,lastEventId,streams,backend,database}" { case_health; }
@test "no CORS headers when ORDERS_CORS_ORIGINS is unset" { case_no_cors_headers_by_default; }
@test "unknown routes: 404 not_found" { case_unknown_routes; }
@test "POST /orders: 201, Location, ETag, row and order.created event" { case_create_minimal; }
@test "POST /orders: all fields, customer trimmed, totalCents computed" { case_create_full; }
@test "POST /orders: any valid status on create" { case_create_any_status; }
@test "POST /orders: Content-Type parameters accepted" { case_create_content_type_parameters; }
@test "POST /orders: boundary values accepted (200 code points, 100 items, max qty and price)" { case_create_boundaries; }
@test "POST /orders: ids increase and are not reused after DELETE" { case_create_ids_increase; }
@test "POST /orders: a body of exactly 64 KiB is accepted" { case_body_at_limit_accepted; }
@test "POST /orders: chunked request body" { case_create_chunked_body; }
@test "Idempotency-Key: same key and body replays the first response" { case_idempotency_replay; }
@test "Idempotency-Key: same key, other body: 409 idempotency_key_reused" { case_idempotency_key_reused; }
@test "Idempotency-Key: different keys create different orders" { case_idempotency_distinct_keys; }
@test "Idempotency-Key: replay is the first response even after a change" { case_idempotency_replay_after_change; }
@test "Idempotency-Key: a refused request does not store the key" { case_idempotency_refused_first_request; }
@test "GET /orders/{id}: 200 with ETag" { case_get_order_etag; }
@test "GET /orders/{id}: If-None-Match gives 304" { case_get_if_none_match; }
@test "GET /orders/{id}: If-None-Match weak tag, list and *" { case_get_if_none_match_weak; }
@test "GET /orders/{id}: unknown id 404" { case_get_unknown_id; }
@test "GET /orders/{id}: malformed ids, SQL, .. and %2F give 404" { case_get_malformed_ids; }
@test "GET /orders/{id}: CR/LF and NUL in the id" { case_get_control_chars_in_id; }
@test "GET /orders/{id}: over-long id" { case_get_long_id; }
@test "405 method_not_allowed with Allow" { case_method_not_allowed; }
@test "OPTIONS without CORS: Allow of the route" { case_options_allow; }
@test "TRACE reaching the responder: 405" { case_trace_method; }
@test "PATCH: status change, ETag, order.updated patch" { case_patch_status; }
@test "PATCH: application/merge-patch+json accepted" { case_patch_merge_patch_content_type; }
@test "PATCH: several fields, patch holds only the changes" { case_patch_fields_and_event_patch; }
@test "PATCH: items, totalCents in the patch only when it changes" { case_patch_items_total; }
@test "PATCH: no change, no event, same version" { case_patch_noop; }
@test "PATCH: every status transition (409 invalid_transition)" { case_patch_transitions; }
@test "PATCH: pending -> paid -> shipped -> delivered" { case_patch_transition_chain; }
@test "PATCH: a refused patch applies nothing" { case_patch_refusal_is_atomic; }
@test "PATCH: If-Match (412 precondition_failed, *)" { case_patch_if_match; }
@test "PATCH/DELETE: a weak If-Match never matches (412)" { case_patch_if_match_weak; }
@test "PATCH: unknown or malformed id 404" { case_patch_unknown_and_malformed_id; }
@test "PATCH: 422 validation_failed" { case_patch_validation; }
@test "PATCH: 400, 413, 415" { case_patch_bad_bodies; }
@test "DELETE: 204, row gone, order.deleted event" { case_delete; }
@test "DELETE: If-Match" { case_delete_if_match; }
@test "DELETE: unknown or malformed id 404" { case_delete_unknown_and_malformed_id; }
@test "GET /orders: default page of 50, newest first" { case_list_default_page; }
@test "GET /orders: cursor walk lists every order exactly once" { case_list_pagination_complete; }
@test "GET /orders: nextCursor null on the last page" { case_list_last_page_null; }
@test "GET /orders: status filter" { case_list_status_filter; }
@test "GET /orders: cursor stable when orders are added" { case_list_cursor_stable_under_inserts; }
@test "GET /orders: bad status, limit, cursor: 400 invalid_parameter" { case_list_bad_parameters; }
@test "GET /events: shape, oldest first, default limit" { case_events_shape; }
@test "GET /events: after and limit" { case_events_after_and_limit; }
@test "GET /events: matches the events table" { case_events_match_db; }
@test "GET /events: bad after, limit: 400 invalid_parameter" { case_events_bad_parameters; }
@test "sqlite3 UPDATE: order.updated event, version and updated_at bumped" { case_sql_update_appends_event; }
@test "sqlite3 UPDATE of several fields: one event with those fields" { case_sql_update_several_fields; }
@test "sqlite3 UPDATE of several rows: one event per row" { case_sql_update_many_rows; }
@test "sqlite3 INSERT: id assigned, order.created event" { case_sql_insert_appends_event; }
@test "sqlite3 INSERT: totalCents computed from items" { case_sql_insert_computes_total; }
@test "sqlite3 DELETE: order.deleted event" { case_sql_delete_appends_event; }
@test "concurrent writers: no lost update, one event per change" { case_concurrent_writes; }
@test "schema: events.id AUTOINCREMENT, documented columns" { case_events_id_autoincrement; }
@test "battery: snapshot" { case_battery_begin; }
@test "battery: malformed JSON: 400 invalid_json" { case_bad_json; }
@test "battery: array, string, number at top level: 400 invalid_json" { case_bad_json_top_level; }
@test "battery: empty body: 400 invalid_json" { case_empty_body; }
@test "battery: invalid UTF-8: 400 invalid_json" { case_invalid_utf8; }
@test "battery: deeply nested JSON" { case_deep_nesting; }
@test "battery: wrong Content-Type: 415" { case_wrong_content_type; }
@test "battery: missing customer, items: 422" { case_missing_required_fields; }
@test "battery: customer rules: 422" { case_customer_rules; }
@test "battery: items rules: 422" { case_items_rules; }
@test "battery: sku, name, unknown item field: 422" { case_item_field_rules; }
@test "battery: qty negative, fractional, huge: 422" { case_qty_rules; }
@test "battery: unitPriceCents negative, fractional, huge: 422" { case_price_rules; }
@test "battery: currency rules: 422" { case_currency_rules; }
@test "battery: status rules: 422" { case_status_rules; }
@test "battery: note rules: 422" { case_note_rules; }
@test "battery: unknown and read-only fields: 422" { case_unknown_and_read_only_fields; }
@test "battery: 64 KiB + 1 and 10 MB bodies: 413" { case_body_too_large; }
@test "battery: Content-Length shorter or longer than the body" { case_content_length_lies; }
@test "battery: refused writes on an existing order" { case_refused_writes_on_existing_order; }
@test "battery: SQL metacharacters in parameters and fields" { case_sql_metacharacters_everywhere; }
@test "battery: PUT/PATCH/DELETE on /orders, PUT/POST on /orders/{id}: 405" { case_battery_methods; }
@test "battery: health 200 and database unchanged" { case_battery_end; }
@test "health after the suite, ids well formed" { case_final_health; }
@test "no crashed responder or sanitizer report in the server log" { case_no_crash_in_server_log; }
@test "every case in lib/rest_cases.bash has an @test here" { case_all_cases_wrapped; }
