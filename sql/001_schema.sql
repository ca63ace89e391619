-- Orders and their event log.
--
-- Every change to `orders`, from the service or from anyone with the sqlite3
-- command, is recorded in `events` by the triggers below, inside the writer's
-- own transaction. The service therefore never inserts events itself: the
-- triggers are the one place that knows how a change becomes an event.

CREATE TABLE orders (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids stay unique after deletes
    id          TEXT UNIQUE,                        -- 'ord_' || zero-padded seq, set by orders_created
    customer    TEXT NOT NULL,
    items       TEXT NOT NULL CHECK (json_valid(items) AND json_type(items) = 'array'),
    total_cents INTEGER NOT NULL DEFAULT 0,
    currency    TEXT NOT NULL DEFAULT 'EUR' CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    note        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    version     INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX orders_by_status ON orders (status, seq);

-- AUTOINCREMENT: ids are assigned under the single writer lock, so commit
-- order is id order and a reader that asks for `id > last` misses nothing.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    type     TEXT NOT NULL,
    order_id TEXT NOT NULL,
    patch    TEXT NOT NULL,
    ts       INTEGER NOT NULL   -- Unix milliseconds
);

-- How far the service has pruned the log. A stream whose position is below
-- it may have missed events, and is told to refetch (a reset event).
CREATE TABLE event_log_state (pruned_through INTEGER NOT NULL);
INSERT INTO event_log_state (pruned_through) VALUES (0);

-- The API's JSON form of an order, shared by the REST responses and the
-- order.created event so that the two can never disagree.
CREATE VIEW order_documents AS
SELECT seq, id, status, version,
       json_object('id', id, 'customer', customer, 'items', json(items),
                   'totalCents', total_cents, 'currency', currency,
                   'status', status, 'note', note, 'createdAt', created_at,
                   'updatedAt', updated_at, 'version', version) AS doc
  FROM orders;

-- The first response to a POST with an Idempotency-Key, replayed for 24 h.
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);

-- 'now' is fixed for the whole statement, triggers included, so the
-- timestamp string and the event's ts below agree to the millisecond.
CREATE TRIGGER orders_created AFTER INSERT ON orders
BEGIN
    UPDATE orders
       SET id = coalesce(NEW.id, printf('ord_%05d', NEW.seq)),
           total_cents = (SELECT coalesce(sum(json_extract(value, '$.qty')
                                              * json_extract(value, '$.unitPriceCents')), 0)
                            FROM json_each(NEW.items)),
           updated_at = NEW.created_at,
           version = 1
     WHERE seq = NEW.seq;
    INSERT INTO events (type, order_id, patch, ts)
    SELECT 'order.created', id, doc,
           CAST(strftime('%s', 'now') AS INTEGER) * 1000
           + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)
      FROM order_documents WHERE seq = NEW.seq;
END;

-- Fires only when a field a client may change did change, so the UPDATE it
-- makes itself (version, updated_at, total_cents) does not fire it again.
-- The service's own UPDATE moves version, updated_at and total_cents in the
-- same statement; a writer that did not (sqlite3 by hand) has them moved here.
CREATE TRIGGER orders_updated AFTER UPDATE OF customer, items, currency, status, note ON orders
WHEN OLD.customer IS NOT NEW.customer
  OR OLD.items IS NOT NEW.items
  OR OLD.currency IS NOT NEW.currency
  OR OLD.status IS NOT NEW.status
  OR OLD.note IS NOT NEW.note
BEGIN
    UPDATE orders
       SET version = OLD.version + 1,
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           total_cents = (SELECT coalesce(sum(json_extract(value, '$.qty')
                                              * json_extract(value, '$.unitPriceCents')), 0)
                            FROM json_each(NEW.items))
     WHERE seq = NEW.seq AND NEW.version = OLD.version;
    -- The patch holds the changed fields, then updatedAt and version. It is
    -- put together from quoted pieces rather than JSON functions, which
    -- would parse the whole order again on every change.
    INSERT INTO events (type, order_id, patch, ts)
    SELECT 'order.updated', o.id,
           '{'
           || CASE WHEN OLD.customer IS NOT o.customer
                   THEN '"customer":' || json_quote(o.customer) || ',' ELSE '' END
           || CASE WHEN OLD.items IS NOT o.items
                   THEN '"items":' || json(o.items) || ',' ELSE '' END
           || CASE WHEN OLD.total_cents IS NOT o.total_cents
                   THEN '"totalCents":' || o.total_cents || ',' ELSE '' END
           || CASE WHEN OLD.currency IS NOT o.currency
                   THEN '"currency":' || json_quote(o.currency) || ',' ELSE '' END
           || CASE WHEN OLD.status IS NOT o.status
                   THEN '"status":' || json_quote(o.status) || ',' ELSE '' END
           || CASE WHEN OLD.note IS NOT o.note
                   THEN '"note":' || json_quote(o.note) || ',' ELSE '' END
           || '"updatedAt":' || json_quote(o.updated_at) || ',"version":' || o.version || '}',
           CAST(strftime('%s', 'now') AS INTEGER) * 1000
           + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)
      FROM orders o WHERE o.seq = NEW.seq;
END;

CREATE TRIGGER orders_deleted AFTER DELETE ON orders
BEGIN
    INSERT INTO events (type, order_id, patch, ts)
    VALUES ('order.deleted', OLD.id, '{}',
            CAST(strftime('%s', 'now') AS INTEGER) * 1000
            + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER));
END;
