-- Orders and their event log, on PostgreSQL.
--
-- The same tables, columns, view and event rules as sql/001_schema.sql (the
-- SQLite schema): every change to `orders`, from the service or from anyone
-- with psql, is recorded in `events` by the triggers below, inside the
-- writer's own transaction. The service never inserts events itself.
--
-- The migration runner applies this file in one PQexec inside its own
-- transaction, under its version table and advisory lock: hence no BEGIN or
-- COMMIT here, and every function body is one dollar-quoted string.

-- The timestamp text of the API, 'YYYY-MM-DDTHH:MM:SS.mmmZ' in UTC, like
-- SQLite's strftime('%Y-%m-%dT%H:%M:%fZ', 'now'). statement_timestamp() is
-- fixed for the whole statement, triggers included, and both helpers
-- truncate it the same way, so an order's updatedAt and its event's ts
-- agree to the millisecond (as 'now' does on SQLite).
CREATE FUNCTION orders_now_text() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(date_trunc('milliseconds', statement_timestamp()) AT TIME ZONE 'UTC',
                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The same instant in Unix milliseconds: the events' ts.
CREATE FUNCTION orders_now_ms() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM date_trunc('milliseconds', statement_timestamp())) * 1000)::bigint
$$;

CREATE TABLE orders (
    -- never reused: ids stay unique after deletes (a sequence never goes back)
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text UNIQUE,                        -- 'ord_' || zero-padded seq, set by orders_before_insert
    customer    text NOT NULL,
    -- json, not jsonb: json keeps the text exactly as written, and the API
    -- sends back byte for byte what it stored. Compare it as ::text (json
    -- has no equality operator).
    items       json NOT NULL CHECK (json_typeof(items) = 'array'),
    total_cents bigint NOT NULL DEFAULT 0,
    -- a regular expression, not [A-Z] in a collation: PostgreSQL's ranges are
    -- by code point, so this is SQLite's GLOB '[A-Z][A-Z][A-Z]'
    currency    text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    note        text NOT NULL DEFAULT '',
    created_at  text NOT NULL DEFAULT orders_now_text(),
    updated_at  text NOT NULL DEFAULT orders_now_text(),
    version     bigint NOT NULL DEFAULT 1
);

CREATE INDEX orders_by_status ON orders (status, seq);

-- Event ids are not a sequence (BIGSERIAL): a transaction that took id 10
-- can commit after one that took 11, and a reader that has seen 11 would
-- move past 10 forever. Ids come from the counter in event_log_state
-- instead (orders_append_event), so that they become visible in commit order.
CREATE TABLE events (
    id       bigint PRIMARY KEY,
    type     text NOT NULL,
    order_id text NOT NULL,
    patch    json NOT NULL,
    ts       bigint NOT NULL    -- Unix milliseconds
);

-- head: the newest event id ever written (SQLite keeps it in
-- sqlite_sequence), so that ids are not reused after the newest events are
-- pruned. pruned_through: how far the service has pruned the log; a stream
-- whose position is below it may have missed events, and is told to
-- refetch (a reset event). Exactly one row: the unique index on a constant
-- refuses a second.
CREATE TABLE event_log_state (
    head           bigint NOT NULL,
    pruned_through bigint NOT NULL
);
CREATE UNIQUE INDEX event_log_state_one_row ON event_log_state ((true));
INSERT INTO event_log_state (head, pruned_through) VALUES (0, 0);

-- Appends one event and returns its id. The UPDATE locks the one counter
-- row until the writer's transaction ends: a second writer waits there
-- (under READ COMMITTED it then reads the committed head), so ids are
-- handed out, and become visible, in commit order, and a rolled-back write
-- gives its id back. Writers serialise only from their first event to
-- their commit. The NOTIFY is delivered at commit, never for a rollback.
CREATE FUNCTION orders_append_event(event_type text, event_order_id text, event_patch text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    UPDATE event_log_state SET head = head + 1 RETURNING head INTO new_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event_log_state has no row: the event log cannot number events';
    END IF;
    INSERT INTO events (id, type, order_id, patch, ts)
    VALUES (new_id, event_type, event_order_id, event_patch::json, orders_now_ms());
    PERFORM pg_notify('orders_events', new_id::text);
    RETURN new_id;
END
$$;

-- sum(qty * unitPriceCents) over the items, 0 for none, as SQLite's
-- json_extract sum does. Non-numbers count as missing rather than failing
-- the cast, and a value that is not an array gives 0, so that the CHECK on
-- items (not a cast error) is what refuses it.
-- In PL/pgSQL, not SQL: a SQL function with a subquery is not inlined, and
-- is parsed and planned again at every call from a trigger, where PL/pgSQL
-- keeps its plan for the session.
CREATE FUNCTION orders_items_total(items json) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF json_typeof(items) IS DISTINCT FROM 'array' THEN
        RETURN 0;
    END IF;
    RETURN (SELECT coalesce(sum(CASE WHEN json_typeof(e -> 'qty') = 'number'
                                      AND json_typeof(e -> 'unitPriceCents') = 'number'
                                 THEN (e ->> 'qty')::numeric * (e ->> 'unitPriceCents')::numeric
                                 END), 0)::bigint
              FROM json_array_elements(items) AS e);
END
$$;

-- The API's JSON form of an order, shared by the REST responses (through
-- the view below) and the order.created event so that the two can never
-- disagree. Compact, keys in SQLite's json_object order, items as stored.
CREATE FUNCTION orders_document(o orders) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT '{"id":' || coalesce(to_json(o.id)::text, 'null')   -- NULL only if set so by hand
        || ',"customer":' || to_json(o.customer)::text
        || ',"items":' || o.items::text
        || ',"totalCents":' || o.total_cents::text
        || ',"currency":' || to_json(o.currency)::text
        || ',"status":' || to_json(o.status)::text
        || ',"note":' || to_json(o.note)::text
        || ',"createdAt":' || to_json(o.created_at)::text
        || ',"updatedAt":' || to_json(o.updated_at)::text
        || ',"version":' || o.version::text
        || '}'
$$;

CREATE VIEW order_documents AS
SELECT o.seq, o.id, o.status, o.version, orders_document(o) AS doc
  FROM orders o;

-- The first response to a POST with an Idempotency-Key, replayed for 24 h.
CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY,
    body_sha256 text NOT NULL,
    order_id    text NOT NULL,
    response    text NOT NULL,
    created_ms  bigint NOT NULL
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);

-- A new order: its id (printf('ord_%05d', seq): at least five digits, more
-- past 99999), total, and updatedAt = createdAt, version 1, whatever the
-- writer sent for those. The identity has given NEW.seq its value already.
CREATE FUNCTION orders_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := coalesce(NEW.id, 'ord_' || CASE WHEN NEW.seq BETWEEN 0 AND 99999
                                              THEN lpad(NEW.seq::text, 5, '0')
                                              ELSE NEW.seq::text END);
    NEW.total_cents := orders_items_total(NEW.items);
    NEW.updated_at := NEW.created_at;
    NEW.version := 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER orders_before_insert BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_before_insert();

CREATE FUNCTION orders_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM orders_append_event('order.created', NEW.id, orders_document(NEW));
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_created AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_created();

-- A change to a field a client may change. The service's own UPDATE moves
-- version and updated_at in the same statement; a writer that did not
-- (psql by hand) has them moved here. total_cents always follows items: it
-- is computed again when either changes (a hand-set total is put back).
-- An UPDATE that changes none of the five fields moves nothing.
CREATE FUNCTION orders_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.customer IS DISTINCT FROM NEW.customer
        OR OLD.items::text IS DISTINCT FROM NEW.items::text
        OR OLD.currency IS DISTINCT FROM NEW.currency
        OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.note IS DISTINCT FROM NEW.note)
       AND NEW.version = OLD.version THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := orders_now_text();
    END IF;
    IF OLD.items::text IS DISTINCT FROM NEW.items::text
       OR OLD.total_cents IS DISTINCT FROM NEW.total_cents THEN
        NEW.total_cents := orders_items_total(NEW.items);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER orders_before_update BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_before_update();

-- The patch holds the changed fields, then updatedAt and version, in
-- SQLite's order and form. It is put together from quoted pieces rather
-- than JSON functions, which would parse the whole order again.
CREATE FUNCTION orders_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM orders_append_event('order.updated', NEW.id,
        '{'
        || CASE WHEN OLD.customer IS DISTINCT FROM NEW.customer
                THEN '"customer":' || to_json(NEW.customer)::text || ',' ELSE '' END
        || CASE WHEN OLD.items::text IS DISTINCT FROM NEW.items::text
                THEN '"items":' || NEW.items::text || ',' ELSE '' END
        || CASE WHEN OLD.total_cents IS DISTINCT FROM NEW.total_cents
                THEN '"totalCents":' || NEW.total_cents::text || ',' ELSE '' END
        || CASE WHEN OLD.currency IS DISTINCT FROM NEW.currency
                THEN '"currency":' || to_json(NEW.currency)::text || ',' ELSE '' END
        || CASE WHEN OLD.status IS DISTINCT FROM NEW.status
                THEN '"status":' || to_json(NEW.status)::text || ',' ELSE '' END
        || CASE WHEN OLD.note IS DISTINCT FROM NEW.note
                THEN '"note":' || to_json(NEW.note)::text || ',' ELSE '' END
        || '"updatedAt":' || to_json(NEW.updated_at)::text
        || ',"version":' || NEW.version::text || '}');
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_updated AFTER UPDATE ON orders
    FOR EACH ROW
    WHEN (OLD.customer IS DISTINCT FROM NEW.customer
          OR OLD.items::text IS DISTINCT FROM NEW.items::text
          OR OLD.currency IS DISTINCT FROM NEW.currency
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.note IS DISTINCT FROM NEW.note)
    EXECUTE FUNCTION orders_updated();

CREATE FUNCTION orders_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM orders_append_event('order.deleted', OLD.id, '{}');
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_deleted AFTER DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_deleted();
