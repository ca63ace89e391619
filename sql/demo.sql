-- Demo data: a few hundred orders in every status, with their events.
-- Run on a migrated database: sqlite3 "$ORDERS_DB" < sql/demo.sql
-- The triggers write the events, exactly as for changes made through the API.
BEGIN IMMEDIATE;

CREATE TEMP TABLE first_names (n INTEGER PRIMARY KEY, name TEXT);
INSERT INTO first_names (name) VALUES
  ('Ada'), ('Grace'), ('Linus'), ('Margaret'), ('Ken'), ('Barbara'), ('Dennis'),
  ('Frances'), ('Edsger'), ('Radia'), ('Sophie'), ('Alan'), ('Katherine'), ('Tim'),
  ('Hedy'), ('Donald'), ('Annie'), ('John'), ('Mary'), ('Niklaus');
CREATE TEMP TABLE last_names (n INTEGER PRIMARY KEY, name TEXT);
INSERT INTO last_names (name) VALUES
  ('Lovelace'), ('Hopper'), ('Torvalds'), ('Hamilton'), ('Thompson'), ('Liskov'),
  ('Ritchie'), ('Allen'), ('Dijkstra'), ('Perlman'), ('Wilson'), ('Turing'),
  ('Johnson'), ('Berners-Lee'), ('Lamarr'), ('Knuth'), ('Easley'), ('McCarthy'),
  ('Keller'), ('Wirth'), ('Müller'), ('Søndergaard');
CREATE TEMP TABLE products (n INTEGER PRIMARY KEY, sku TEXT, name TEXT, price INTEGER);
INSERT INTO products (sku, name, price) VALUES
  ('BK-001', 'Notebook', 1299), ('BK-002', 'Hardcover journal', 2450),
  ('PN-010', 'Fountain pen', 4900), ('PN-011', 'Gel pen, 3-pack', 599),
  ('DK-100', 'Desk lamp', 3999), ('DK-101', 'Monitor stand', 5490),
  ('CB-200', 'USB-C cable 2 m', 1199), ('KB-300', 'Mechanical keyboard', 11900),
  ('MS-310', 'Wireless mouse', 2999), ('MG-400', 'Coffee mug', 1450),
  ('ST-500', 'Sticker set', 350), ('BG-600', 'Laptop sleeve', 3290);
CREATE TEMP TABLE notes (n INTEGER PRIMARY KEY, note TEXT);
INSERT INTO notes (note) VALUES
  (''), (''), (''), ('Leave at the front desk'), ('Gift wrap, please'),
  ('Call before delivery'), (''), ('Deliver after 5 pm');


WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 320)
-- Spread over the last days, oldest first, so that ids follow time.
INSERT INTO orders (customer, items, currency, note, created_at)
SELECT (SELECT name FROM first_names WHERE n = 1 + (i * 7) % 20) || ' ' ||
       (SELECT name FROM last_names WHERE n = 1 + (i * 13) % 22),
       (SELECT json_group_array(json_object('sku', p.sku, 'name', p.name,
                                            'qty', 1 + (i + p.n) % 4,
                                            'unitPriceCents', p.price))
          FROM products p
         WHERE p.n BETWEEN 1 + (i * 5) % 12 AND 1 + (i * 5) % 12 + (i % 3)),
       CASE WHEN i % 11 = 0 THEN 'USD' WHEN i % 17 = 0 THEN 'GBP' ELSE 'EUR' END,
       (SELECT note FROM notes WHERE n = 1 + i % 8),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', (321 - i) * 23 + (i * 7) % 19))
  FROM seq;

-- Move orders along, one step per statement, as a shop would: each step is
-- one order.updated event.
UPDATE orders SET status = 'paid'      WHERE seq % 10 NOT IN (0, 1);
UPDATE orders SET status = 'shipped'   WHERE seq % 10 IN (3, 4, 5, 6, 7);
UPDATE orders SET status = 'delivered' WHERE seq % 10 IN (5, 6, 7);
UPDATE orders SET status = 'cancelled' WHERE seq % 10 IN (0, 2) AND seq % 20 < 10;
UPDATE orders SET note = 'Customer asked for express shipping' WHERE seq % 23 = 0;

COMMIT;
