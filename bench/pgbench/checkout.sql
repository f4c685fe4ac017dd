-- The ceiling of a checkout: one shopper iteration of `cargo xtask bench`
-- (PUT /v1/cart/items/{id} with quantity 1, then POST /v1/checkout) as the
-- SQL the host sends PostgreSQL for it, with no HTTP, no tokens, no JSON and
-- no Rust in between. `cargo xtask bench` runs it against the host's own
-- database, in the same run, after the HTTP scenarios (services stopped):
--
--   pgbench -n -M prepared --max-tries 20 -D catalog=1000 -c 32 -j 2 -T 20 \
--           -f bench/pgbench/checkout.sql <host database URL>
--
-- It needs `bench_catalog (n, id)`, the catalog's product ids numbered from
-- 0 (the load generator picks a product the same way, from its own list).
-- Each pgbench client is one shopper (a user id derived from client_id).
-- It is the naive form: one SERIALIZABLE transaction per order, statement
-- for statement what the host sent before group commit (issue 12: the put,
-- the priced view, the precheck, session advisory locks, the transaction),
-- kept as the ceiling that group commit is measured against; pgbench retries a serialization failure
-- like the host's retry loop (the host tries 20 times too). Not in it: the
-- account service's token checks, the outbox relay (the services are
-- stopped while it runs, so their pools leave PostgreSQL's connections to
-- pgbench) and plugins.

\set n random(0, :catalog - 1)
SELECT id AS pid, ('00000000-0000-4000-8000-' || lpad(:client_id::text, 12, '0'))::uuid AS uid,
       (random() * 9e18)::bigint::text AS k
  FROM bench_catalog WHERE n = :n \gset

-- PUT /v1/cart/items/{id}: the product, the cart, the line, the priced cart.
SELECT p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at
  FROM products p WHERE p.id = :pid AND p.deleted_at IS NULL;
SELECT p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at, c.quantity
  FROM cart_items c CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
 WHERE c.user_id = :uid ORDER BY p.id;
SELECT code FROM cart_codes WHERE user_id = :uid ORDER BY added_at, code;
INSERT INTO cart_items (user_id, product_id, quantity, added_at) VALUES (:uid, :pid, 1, now())
  ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity;
SELECT p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at, c.quantity
  FROM cart_items c CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
 WHERE c.user_id = :uid ORDER BY p.id;
SELECT code FROM cart_codes WHERE user_id = :uid ORDER BY added_at, code;
SELECT placed FROM customer_order_counts WHERE user_id = :uid;

-- POST /v1/checkout: the cart, the key, the order count, read before any lock.
SELECT p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at, c.quantity
  FROM cart_items c CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
 WHERE c.user_id = :uid ORDER BY p.id;
SELECT code FROM cart_codes WHERE user_id = :uid ORDER BY added_at, code;
SELECT body_hash, cart_hash, order_id, status, response FROM idempotency WHERE user_id = :uid AND key = :k;
SELECT placed FROM customer_order_counts WHERE user_id = :uid;

-- The product's session advisory lock, then the transaction.
SELECT pg_advisory_lock(hashtextextended(:pid, 0));
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL enable_seqscan = off;
SELECT p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at, c.quantity
  FROM cart_items c CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
 WHERE c.user_id = :uid ORDER BY p.id;
SELECT code FROM cart_codes WHERE user_id = :uid ORDER BY added_at, code;
UPDATE products SET stock = stock - 1 WHERE id = :pid AND stock >= 1 AND deleted_at IS NULL;
-- Time-ordered ids, as the host's UUIDv7.
INSERT INTO orders (id, user_id, status, subtotal, discount_total, total, currency, adjustments, plugins, created_at, updated_at)
  VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || substr(md5(random()::text), 1, 20))::uuid,
          :uid, 'placed', 1000, 0, 1000, 'USD', '[]', '[]', now(), now())
  RETURNING id AS oid \gset
INSERT INTO order_items (order_id, line_no, product_id, sku, name, seller_id, quantity, unit_price, line_total, adjustments)
  VALUES (:oid, 0, :pid, 'SKU-1', 'Product 1', :uid, 1, 1000, 1000, '[]');
INSERT INTO customer_order_counts (user_id, placed) VALUES (:uid, 1)
  ON CONFLICT (user_id) DO UPDATE SET placed = customer_order_counts.placed + 1;
INSERT INTO idempotency (user_id, key, body_hash, cart_hash, order_id, status, response, created_at)
  VALUES (:uid, :k, '4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945',
          'b5d4045c3f466fa91fe2cc6abe79232a1a57cdf104f7a26e716e0a1e2789df78', :oid, 201,
          '{"id":"019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7a","user_id":"00000000-0000-4000-8000-000000000001","status":"placed","items":[{"product_id":"019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7b","sku":"SKU-1","name":"Product 1","seller_id":"00000000-0000-4000-8000-000000000001","quantity":1,"unit_price":1000,"line_total":1000,"adjustments":[]}],"adjustments":[],"subtotal":1000,"discount_total":0,"total":1000,"currency":"USD","plugins":[],"created_at":"2026-11-24T07:30:00.000000Z","updated_at":"2026-11-24T07:30:00.000000Z"}',
          now());
INSERT INTO outbox (id, routing_key, event_type, subject, payload, created_at)
  VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || substr(md5(random()::text), 1, 20))::uuid,
          'order.placed', 'shopeezy.order.placed', 'orders/' || :oid,
          '{"specversion":"1.0","id":"019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7c","source":"/shopeezy/host","type":"shopeezy.order.placed","subject":"orders/019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7a","time":"2026-11-24T07:30:00.000000Z","datacontenttype":"application/json","data":{"id":"019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7a","user_id":"00000000-0000-4000-8000-000000000001","status":"placed","items":[{"product_id":"019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7b","sku":"SKU-1","name":"Product 1","seller_id":"00000000-0000-4000-8000-000000000001","quantity":1,"unit_price":1000,"line_total":1000,"adjustments":[]}],"adjustments":[],"subtotal":1000,"discount_total":0,"total":1000,"currency":"USD","plugins":[],"created_at":"2026-11-24T07:30:00.000000Z","updated_at":"2026-11-24T07:30:00.000000Z"}}',
          now());
DELETE FROM cart_items WHERE user_id = :uid;
DELETE FROM cart_codes WHERE user_id = :uid;
COMMIT;
SELECT pg_advisory_unlock_all();
