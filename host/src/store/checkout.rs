//! The checkout's statements: the reads and writes of one group-commit
//! batch (many checkouts in one transaction), on either backend, and the
//! idempotency records. What to run, in which order, and what an outcome
//! means is the use case's (`checkout/`); this module only says how to read
//! and write it.
//!
//! On PostgreSQL every read and write takes all the batch's checkouts at
//! once (`= ANY($1)`, `UNNEST` of arrays, data-modifying CTEs): a batch is
//! seven round trips whatever its size — `BEGIN`, the carts' lines, their
//! codes, the keys used before, the stock rows locked, one statement that
//! writes everything, `COMMIT` (two more when a discount has a usage
//! limit). On SQLite, where a statement is a function call and not a round
//! trip, each is one prepared statement per row in the same transaction.
//! On MySQL a batch is about fifteen round trips whatever its size: rows go
//! in multi-row `INSERT`s, stock in one `UPDATE` joined to the quantities
//! (see the MySQL implementation for its isolation and locks).
//! No state outlives a transaction (no session advisory lock, no `SET`
//! outside it), so the host works behind PgBouncer in transaction pooling.

use std::collections::HashMap;
use std::future::Future;

use shopeezy_common::db::{Db, Pool};
use shopeezy_common::outbox::Event;
use shopeezy_common::sql;
use sqlx::types::Json;
use sqlx::{Connection, MySqlConnection, PgConnection, SqliteConnection};
use uuid::Uuid;

use super::carts;
use crate::domain::{Cart, Order};
use crate::error::{Error, Result};

/// A stored idempotency record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    /// The hash of the request body that used the key.
    pub body_hash: String,
    /// The fingerprint of the cart it checked out.
    pub cart_hash: String,
    /// The order it placed.
    pub order_id: Uuid,
    /// The status it was answered with.
    pub status: i32,
    /// The order's JSON as first answered.
    pub response: Json<serde_json::Value>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    user_id: Uuid,
    key: String,
    #[sqlx(flatten)]
    stored: StoredKey,
}

/// `key` is a reserved word in MySQL: quoted (ANSI quotes, as every backend
/// takes them).
macro_rules! key_columns {
    () => {
        r#"user_id, "key", body_hash, cart_hash, order_id, status, response"#
    };
}
const KEY_COLUMNS: &str = key_columns!();

/// The stored record of `key` for this user, if the key was used before.
pub async fn stored_key(db: &Db, user_id: Uuid, key: &str) -> Result<Option<StoredKey>> {
    const SQL: &str = concat!(
        "SELECT ",
        key_columns!(),
        r#" FROM idempotency WHERE user_id = $1 AND "key" = $2"#
    );
    let row: Option<KeyRow> = shopeezy_common::with_db!(db, pool =>
        sqlx::query_as(sql!(pool, SQL)).bind(user_id).bind(key).fetch_optional(pool).await?);
    Ok(row.map(|r| r.stored))
}

/// A usage counter of a limited discount: (plugin, limit key, customer key
/// — [`super::usage::TOTAL`] for the total).
pub type Counter = (Uuid, String, String);

/// A checkout's idempotency record, to be written with its order.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Whose key.
    pub user_id: Uuid,
    /// The key.
    pub key: String,
    /// What was stored about the request and the answer.
    pub stored: StoredKey,
}

/// Everything a batch writes, for the orders it places.
#[derive(Debug, Default)]
pub struct Writes {
    /// Stock to take, per product (each product once).
    pub stock: Vec<(Uuid, i64)>,
    /// Counters not stored yet, with their first uses (each at most its cap).
    pub new_uses: Vec<(Counter, i64)>,
    /// Stored counters: uses to add, and the cap the sum may not pass.
    pub more_uses: Vec<(Counter, i64, i64)>,
    /// The orders, with their lines; each empties its user's cart and
    /// counts for them.
    pub orders: Vec<Order>,
    /// The uses each order took, given back when it is cancelled.
    pub order_uses: Vec<(Uuid, Counter)>,
    /// The orders' idempotency records.
    pub keys: Vec<NewKey>,
    /// The orders' `order.placed` events.
    pub events: Vec<Event>,
}

impl Writes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

/// The work of one batch, run inside its transaction.
pub trait Batch: Send {
    /// What a committed batch answers.
    type Output: Send;

    /// Runs the batch's reads and writes on `tx`; an error rolls all of them
    /// back.
    fn run<C: CheckoutTx>(self, tx: &mut C) -> impl Future<Output = Result<Self::Output>> + Send;
}

/// Runs `batch` in one transaction (SERIALIZABLE on PostgreSQL, `BEGIN
/// IMMEDIATE` on SQLite) and commits it: one commit, one WAL flush, for
/// every order in it.
pub async fn transaction<B: Batch>(db: &Db, batch: B) -> Result<B::Output> {
    match db.pool() {
        Pool::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            in_transaction(&mut *conn, batch).await
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            in_transaction(&mut *conn, batch).await
        }
        Pool::MySql(pool) => {
            let mut conn = pool.acquire().await?;
            in_transaction(&mut *conn, batch).await
        }
    }
}

/// Begins the transaction on `conn`, runs `batch` and commits. Any error
/// drops the transaction, which rolls it back.
async fn in_transaction<DB, C, B>(conn: &mut C, batch: B) -> Result<B::Output>
where
    DB: sqlx::Database<Connection = C>,
    C: Connection<Database = DB> + CheckoutTx,
    B: Batch,
{
    let mut tx = conn.begin_with(C::BEGIN).await?;
    let output = batch.run(&mut *tx).await?;
    tx.commit().await?;
    Ok(output)
}

/// The statements of a batch, on either backend's connection.
pub trait CheckoutTx: Send {
    /// The statement that begins the batch's transaction.
    const BEGIN: &'static str;

    /// The carts of these users (an absent user has an empty cart), each
    /// with its lines in product-id order.
    fn carts(&mut self, users: &[Uuid])
    -> impl Future<Output = Result<HashMap<Uuid, Cart>>> + Send;
    /// The stored records of these (user, key) pairs, where used before.
    fn stored_keys(
        &mut self,
        keys: &[(Uuid, String)],
    ) -> impl Future<Output = Result<HashMap<(Uuid, String), StoredKey>>> + Send;
    /// The stock of these products (sorted by id), locked until the
    /// transaction ends; a product deleted or missing is absent.
    fn lock_stock(
        &mut self,
        products: &[Uuid],
    ) -> impl Future<Output = Result<HashMap<Uuid, i64>>> + Send;
    /// The stored values of these counters, locked until the transaction
    /// ends; a counter never used is absent.
    fn uses(
        &mut self,
        counters: &[Counter],
    ) -> impl Future<Output = Result<HashMap<Counter, i64>>> + Send;
    /// Writes everything. Stock is taken only where enough is left and uses
    /// only up to their caps: if any row would go past its limit, nothing is
    /// written and the answer is [`Error::Contention`].
    fn write(&mut self, writes: &Writes) -> impl Future<Output = Result<()>> + Send;
}

const NEW_USE_SQL: &str = "INSERT INTO promotion_usage (plugin_id, limit_key, customer_key, uses) VALUES ($1, $2, $3, $4)";
const MORE_USES_SQL: &str = "UPDATE promotion_usage SET uses = uses + $1 WHERE plugin_id = $2 AND limit_key = $3 AND customer_key = $4 AND uses + $1 <= $5";
const ORDER_USE_SQL: &str = "INSERT INTO order_promotion_usage (order_id, plugin_id, limit_key, customer_key) VALUES ($1, $2, $3, $4)";
const USES_SQL: &str = "SELECT uses FROM promotion_usage WHERE plugin_id = $1 AND limit_key = $2 AND customer_key = $3";

/// A usage counter's columns as arrays, for `UNNEST`.
fn counter_arrays<'a>(
    counters: impl Iterator<Item = &'a Counter>,
) -> (Vec<Uuid>, Vec<String>, Vec<String>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (plugin, key, who) in counters {
        out.0.push(*plugin);
        out.1.push(key.clone());
        out.2.push(who.clone());
    }
    out
}

/// The carts of a batch's users from their lines and codes (each in the
/// order read).
fn assemble_carts(
    rows: Vec<carts::UserLineRow>,
    codes: Vec<(Uuid, String)>,
) -> HashMap<Uuid, Cart> {
    let mut out: HashMap<Uuid, Cart> = HashMap::new();
    for row in rows {
        let (user, line) = row.into_parts();
        out.entry(user).or_default().lines.push(line);
    }
    for (user, code) in codes {
        out.entry(user).or_default().codes.push(code);
    }
    out
}

fn json_of<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal(e.into()))
}

// Under SERIALIZABLE a sequential scan would take a predicate lock on the
// whole table and make unrelated batches conflict: index scans only. The
// statements are planned once per connection (generic plans): a custom plan
// per execution would plan the writing statement's ten CTEs for every
// batch, for plans that never differ (index scans throughout).
impl CheckoutTx for PgConnection {
    const BEGIN: &'static str = "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan";

    async fn carts(&mut self, users: &[Uuid]) -> Result<HashMap<Uuid, Cart>> {
        let rows: Vec<carts::UserLineRow> = sqlx::query_as(&carts::users_lines_sql())
            .bind(users)
            .fetch_all(&mut *self)
            .await?;
        let codes: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT user_id, code FROM cart_codes WHERE user_id = ANY($1) ORDER BY user_id, added_at, code",
        )
        .bind(users)
        .fetch_all(&mut *self)
        .await?;
        Ok(assemble_carts(rows, codes))
    }

    async fn stored_keys(
        &mut self,
        keys: &[(Uuid, String)],
    ) -> Result<HashMap<(Uuid, String), StoredKey>> {
        let users: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM idempotency
             WHERE (user_id, \"key\") IN (SELECT * FROM UNNEST($1::uuid[], $2::text[]))"
        ))
        .bind(&users)
        .bind(&names)
        .fetch_all(&mut *self)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.user_id, r.key), r.stored))
            .collect())
    }

    async fn lock_stock(&mut self, products: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT id, stock FROM products WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR UPDATE",
        )
        .bind(products)
        .fetch_all(&mut *self)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn uses(&mut self, counters: &[Counter]) -> Result<HashMap<Counter, i64>> {
        let (plugins, keys, whos) = counter_arrays(counters.iter());
        let rows: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
            "SELECT plugin_id, limit_key, customer_key, uses FROM promotion_usage
             WHERE (plugin_id, limit_key, customer_key) IN (SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[]))
             ORDER BY plugin_id, limit_key, customer_key FOR UPDATE",
        )
        .bind(&plugins)
        .bind(&keys)
        .bind(&whos)
        .fetch_all(&mut *self)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(p, k, w, n)| ((p, k, w), n))
            .collect())
    }

    async fn write(&mut self, w: &Writes) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        if !w.more_uses.is_empty() {
            let (plugins, keys, whos) = counter_arrays(w.more_uses.iter().map(|u| &u.0));
            let adds: Vec<i64> = w.more_uses.iter().map(|u| u.1).collect();
            let caps: Vec<i64> = w.more_uses.iter().map(|u| u.2).collect();
            let done = sqlx::query(
                "UPDATE promotion_usage u SET uses = u.uses + d.n
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::int8[]) AS d(plugin_id, limit_key, customer_key, n, cap)
                 WHERE (u.plugin_id, u.limit_key, u.customer_key) = (d.plugin_id, d.limit_key, d.customer_key)
                   AND u.uses + d.n <= d.cap",
            )
            .bind(&plugins)
            .bind(&keys)
            .bind(&whos)
            .bind(&adds)
            .bind(&caps)
            .execute(&mut *self)
            .await?
            .rows_affected();
            if done != w.more_uses.len() as u64 {
                return Err(Error::Contention);
            }
        }
        if !w.new_uses.is_empty() {
            let (plugins, keys, whos) = counter_arrays(w.new_uses.iter().map(|u| &u.0));
            let uses: Vec<i64> = w.new_uses.iter().map(|u| u.1).collect();
            sqlx::query(
                "INSERT INTO promotion_usage (plugin_id, limit_key, customer_key, uses)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[])",
            )
            .bind(&plugins)
            .bind(&keys)
            .bind(&whos)
            .bind(&uses)
            .execute(&mut *self)
            .await?;
        }

        // Orders (and the arrays the other rows share with them).
        let n = w.orders.len();
        let mut o_id = Vec::with_capacity(n);
        let mut o_user = Vec::with_capacity(n);
        let mut o_status = Vec::with_capacity(n);
        let mut o_subtotal = Vec::with_capacity(n);
        let mut o_discount = Vec::with_capacity(n);
        let mut o_total = Vec::with_capacity(n);
        let mut o_currency = Vec::with_capacity(n);
        let mut o_adjustments = Vec::with_capacity(n);
        let mut o_plugins = Vec::with_capacity(n);
        let mut o_created = Vec::with_capacity(n);
        let mut o_updated = Vec::with_capacity(n);
        // Lines.
        let mut i_order = Vec::new();
        let mut i_line = Vec::new();
        let mut i_product = Vec::new();
        let mut i_sku = Vec::new();
        let mut i_name = Vec::new();
        let mut i_seller = Vec::new();
        let mut i_quantity = Vec::new();
        let mut i_unit = Vec::new();
        let mut i_total = Vec::new();
        let mut i_adjustments = Vec::new();
        for o in &w.orders {
            o_id.push(o.id);
            o_user.push(o.user_id);
            o_status.push(o.status.as_str());
            o_subtotal.push(o.subtotal);
            o_discount.push(o.discount_total);
            o_total.push(o.total);
            o_currency.push(o.currency.as_str());
            o_adjustments.push(json_of(&o.adjustments)?);
            o_plugins.push(json_of(&o.plugins)?);
            o_created.push(o.created_at);
            o_updated.push(o.updated_at);
            for (line_no, item) in o.items.iter().enumerate() {
                i_order.push(o.id);
                i_line.push(line_no as i32);
                i_product.push(item.product_id);
                i_sku.push(item.sku.as_str());
                i_name.push(item.name.as_str());
                i_seller.push(item.seller_id);
                i_quantity.push(item.quantity);
                i_unit.push(item.unit_price);
                i_total.push(item.line_total);
                i_adjustments.push(json_of(&item.adjustments)?);
            }
        }
        // Idempotency records.
        let k_user: Vec<Uuid> = w.keys.iter().map(|k| k.user_id).collect();
        let k_key: Vec<&str> = w.keys.iter().map(|k| k.key.as_str()).collect();
        let k_body: Vec<&str> = w.keys.iter().map(|k| k.stored.body_hash.as_str()).collect();
        let k_cart: Vec<&str> = w.keys.iter().map(|k| k.stored.cart_hash.as_str()).collect();
        let k_order: Vec<Uuid> = w.keys.iter().map(|k| k.stored.order_id).collect();
        let k_status: Vec<i32> = w.keys.iter().map(|k| k.stored.status).collect();
        let k_response: Vec<&serde_json::Value> =
            w.keys.iter().map(|k| &k.stored.response.0).collect();
        let k_created = shopeezy_common::db::now();
        // Events.
        let e_id: Vec<Uuid> = w.events.iter().map(|e| e.id).collect();
        let e_routing: Vec<&str> = w.events.iter().map(|e| e.routing_key.as_str()).collect();
        let e_type: Vec<&str> = w.events.iter().map(|e| e.event_type.as_str()).collect();
        let e_subject: Vec<&str> = w.events.iter().map(|e| e.subject.as_str()).collect();
        let e_document: Vec<&serde_json::Value> = w.events.iter().map(|e| &e.document).collect();
        let e_time: Vec<_> = w.events.iter().map(|e| e.time).collect();
        // Uses taken by orders.
        let u_order: Vec<Uuid> = w.order_uses.iter().map(|u| u.0).collect();
        let (u_plugin, u_key, u_who) = counter_arrays(w.order_uses.iter().map(|u| &u.1));
        // Stock.
        let s_product: Vec<Uuid> = w.stock.iter().map(|s| s.0).collect();
        let s_quantity: Vec<i64> = w.stock.iter().map(|s| s.1).collect();

        // One statement: every CTE runs, whether the final SELECT reads it
        // or not; it answers how many stock rows had enough left. Foreign
        // keys (lines and uses to their order) are checked at the
        // statement's end, when every row is in.
        let taken: i64 = sqlx::query_scalar(
            "WITH o AS (
                INSERT INTO orders (id, user_id, status, subtotal, discount_total, total, currency, adjustments, plugins, created_at, updated_at)
                SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[], $11::timestamptz[])
             ), i AS (
                INSERT INTO order_items (order_id, line_no, product_id, sku, name, seller_id, quantity, unit_price, line_total, adjustments)
                SELECT * FROM UNNEST($12::uuid[], $13::int4[], $14::uuid[], $15::text[], $16::text[], $17::uuid[], $18::int8[], $19::int8[], $20::int8[], $21::jsonb[])
             ), n AS (
                INSERT INTO customer_order_counts (user_id, placed)
                SELECT u, COUNT(*) FROM UNNEST($2::uuid[]) AS x(u) GROUP BY u
                ON CONFLICT (user_id) DO UPDATE SET placed = customer_order_counts.placed + excluded.placed
             ), k AS (
                INSERT INTO idempotency (user_id, \"key\", body_hash, cart_hash, order_id, status, response, created_at)
                SELECT u, k, b, c, o, s, r, $29 FROM UNNEST($22::uuid[], $23::text[], $24::text[], $25::text[], $26::uuid[], $27::int4[], $28::jsonb[]) AS x(u, k, b, c, o, s, r)
             ), e AS (
                INSERT INTO outbox (id, routing_key, event_type, subject, payload, created_at)
                SELECT * FROM UNNEST($30::uuid[], $31::text[], $32::text[], $33::text[], $34::jsonb[], $35::timestamptz[])
             ), ou AS (
                INSERT INTO order_promotion_usage (order_id, plugin_id, limit_key, customer_key)
                SELECT * FROM UNNEST($36::uuid[], $37::uuid[], $38::text[], $39::text[])
             ), ci AS (
                DELETE FROM cart_items WHERE user_id = ANY($2)
             ), cc AS (
                DELETE FROM cart_codes WHERE user_id = ANY($2)
             ), s AS (
                UPDATE products p SET stock = p.stock - d.q
                FROM UNNEST($40::uuid[], $41::int8[]) AS d(id, q)
                WHERE p.id = d.id AND p.stock >= d.q AND p.deleted_at IS NULL
                RETURNING 1
             )
             SELECT COUNT(*) FROM s",
        )
        .bind(&o_id)
        .bind(&o_user)
        .bind(&o_status)
        .bind(&o_subtotal)
        .bind(&o_discount)
        .bind(&o_total)
        .bind(&o_currency)
        .bind(&o_adjustments)
        .bind(&o_plugins)
        .bind(&o_created)
        .bind(&o_updated)
        .bind(&i_order)
        .bind(&i_line)
        .bind(&i_product)
        .bind(&i_sku)
        .bind(&i_name)
        .bind(&i_seller)
        .bind(&i_quantity)
        .bind(&i_unit)
        .bind(&i_total)
        .bind(&i_adjustments)
        .bind(&k_user)
        .bind(&k_key)
        .bind(&k_body)
        .bind(&k_cart)
        .bind(&k_order)
        .bind(&k_status)
        .bind(&k_response)
        .bind(k_created)
        .bind(&e_id)
        .bind(&e_routing)
        .bind(&e_type)
        .bind(&e_subject)
        .bind(&e_document)
        .bind(&e_time)
        .bind(&u_order)
        .bind(&u_plugin)
        .bind(&u_key)
        .bind(&u_who)
        .bind(&s_product)
        .bind(&s_quantity)
        .fetch_one(&mut *self)
        .await?;
        if taken != w.stock.len() as i64 {
            // The statement's effects stay in the transaction, which the
            // caller now rolls back.
            return Err(Error::Contention);
        }
        Ok(())
    }
}

/// SQLite's statements take a batch's rows as one JSON parameter, read with
/// `json_each`: ids as hex (`unhex` gives the 16-byte blob sqlx stores),
/// times as the RFC 3339 text sqlx writes.
fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

fn sqlite_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

const IDS_SQL: &str = "SELECT unhex(value) FROM json_each($1)";

impl CheckoutTx for SqliteConnection {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    async fn carts(&mut self, users: &[Uuid]) -> Result<HashMap<Uuid, Cart>> {
        let ids =
            serde_json::Value::from(users.iter().map(|u| hex(*u)).collect::<Vec<_>>()).to_string();
        let rows: Vec<carts::UserLineRow> = sqlx::query_as(&carts::users_lines_sqlite(IDS_SQL))
            .bind(&ids)
            .fetch_all(&mut *self)
            .await?;
        let codes: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT user_id, code FROM cart_codes WHERE user_id IN ({IDS_SQL}) ORDER BY user_id, added_at, code"
        ))
        .bind(&ids)
        .fetch_all(&mut *self)
        .await?;
        Ok(assemble_carts(rows, codes))
    }

    async fn stored_keys(
        &mut self,
        keys: &[(Uuid, String)],
    ) -> Result<HashMap<(Uuid, String), StoredKey>> {
        let pairs: Vec<serde_json::Value> = keys
            .iter()
            .map(|(user, key)| serde_json::json!([hex(*user), key]))
            .collect();
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM idempotency
             WHERE (user_id, \"key\") IN (SELECT unhex(value ->> 0), value ->> 1 FROM json_each($1))"
        ))
        .bind(serde_json::Value::from(pairs).to_string())
        .fetch_all(&mut *self)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.user_id, r.key), r.stored))
            .collect())
    }

    async fn lock_stock(&mut self, products: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        // `BEGIN IMMEDIATE` holds the database's one write lock already.
        let ids = serde_json::Value::from(products.iter().map(|p| hex(*p)).collect::<Vec<_>>());
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
            "SELECT id, stock FROM products WHERE id IN ({IDS_SQL}) AND deleted_at IS NULL"
        ))
        .bind(ids.to_string())
        .fetch_all(&mut *self)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn uses(&mut self, counters: &[Counter]) -> Result<HashMap<Counter, i64>> {
        let mut out = HashMap::new();
        for counter in counters {
            let (plugin, key, who) = counter;
            let uses: Option<i64> = sqlx::query_scalar(USES_SQL)
                .bind(plugin)
                .bind(key)
                .bind(who)
                .fetch_optional(&mut *self)
                .await?;
            if let Some(uses) = uses {
                out.insert(counter.clone(), uses);
            }
        }
        Ok(out)
    }

    async fn write(&mut self, w: &Writes) -> Result<()> {
        use serde_json::json;
        if w.is_empty() {
            return Ok(());
        }
        let stock: Vec<_> = w.stock.iter().map(|(p, q)| json!([hex(*p), q])).collect();
        let done = sqlx::query(
            "UPDATE products SET stock = stock - d.q
             FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS q FROM json_each($1)) AS d
             WHERE products.id = d.id AND products.stock >= d.q AND products.deleted_at IS NULL",
        )
        .bind(serde_json::Value::from(stock).to_string())
        .execute(&mut *self)
        .await?
        .rows_affected();
        if done != w.stock.len() as u64 {
            return Err(Error::Contention);
        }
        for ((plugin, key, who), uses) in &w.new_uses {
            sqlx::query(NEW_USE_SQL)
                .bind(plugin)
                .bind(key)
                .bind(who)
                .bind(uses)
                .execute(&mut *self)
                .await?;
        }
        for ((plugin, key, who), add, cap) in &w.more_uses {
            let done = sqlx::query(MORE_USES_SQL)
                .bind(add)
                .bind(plugin)
                .bind(key)
                .bind(who)
                .bind(cap)
                .execute(&mut *self)
                .await?
                .rows_affected();
            if done != 1 {
                return Err(Error::Contention);
            }
        }
        let mut orders = Vec::with_capacity(w.orders.len());
        let mut items = Vec::new();
        let mut users = Vec::with_capacity(w.orders.len());
        for o in &w.orders {
            orders.push(json!({
                "id": hex(o.id), "user_id": hex(o.user_id), "status": o.status.as_str(),
                "subtotal": o.subtotal, "discount_total": o.discount_total, "total": o.total,
                "currency": o.currency, "adjustments": o.adjustments, "plugins": o.plugins,
                "created_at": sqlite_time(o.created_at), "updated_at": sqlite_time(o.updated_at),
            }));
            users.push(hex(o.user_id));
            for (line_no, i) in o.items.iter().enumerate() {
                items.push(json!({
                    "order_id": hex(o.id), "line_no": line_no, "product_id": hex(i.product_id),
                    "sku": i.sku, "name": i.name, "seller_id": hex(i.seller_id),
                    "quantity": i.quantity, "unit_price": i.unit_price, "line_total": i.line_total,
                    "adjustments": i.adjustments,
                }));
            }
        }
        let now = sqlite_time(shopeezy_common::db::now());
        let keys: Vec<_> = w
            .keys
            .iter()
            .map(|k| {
                json!({
                    "user_id": hex(k.user_id), "key": k.key, "body_hash": k.stored.body_hash,
                    "cart_hash": k.stored.cart_hash, "order_id": hex(k.stored.order_id),
                    "status": k.stored.status, "response": k.stored.response.0, "created_at": now,
                })
            })
            .collect();
        let events: Vec<_> = w
            .events
            .iter()
            .map(|e| {
                json!({
                    "id": hex(e.id), "routing_key": e.routing_key, "event_type": e.event_type,
                    "subject": e.subject, "payload": e.document, "created_at": sqlite_time(e.time),
                })
            })
            .collect();
        let users = serde_json::Value::from(users).to_string();
        let statements: [(&str, String); 7] = [
            (
                "INSERT INTO orders (id, user_id, status, subtotal, discount_total, total, currency, adjustments, plugins, created_at, updated_at)
                 SELECT unhex(value ->> 'id'), unhex(value ->> 'user_id'), value ->> 'status', value ->> 'subtotal',
                        value ->> 'discount_total', value ->> 'total', value ->> 'currency', value -> 'adjustments',
                        value -> 'plugins', value ->> 'created_at', value ->> 'updated_at'
                 FROM json_each($1)",
                serde_json::Value::from(orders).to_string(),
            ),
            (
                "INSERT INTO order_items (order_id, line_no, product_id, sku, name, seller_id, quantity, unit_price, line_total, adjustments)
                 SELECT unhex(value ->> 'order_id'), value ->> 'line_no', unhex(value ->> 'product_id'), value ->> 'sku',
                        value ->> 'name', unhex(value ->> 'seller_id'), value ->> 'quantity', value ->> 'unit_price',
                        value ->> 'line_total', value -> 'adjustments'
                 FROM json_each($1)",
                serde_json::Value::from(items).to_string(),
            ),
            (
                "INSERT INTO customer_order_counts (user_id, placed)
                 SELECT unhex(value), COUNT(*) FROM json_each($1) WHERE true GROUP BY value
                 ON CONFLICT (user_id) DO UPDATE SET placed = placed + excluded.placed",
                users.clone(),
            ),
            ("DELETE FROM cart_items WHERE user_id IN (SELECT unhex(value) FROM json_each($1))", users.clone()),
            ("DELETE FROM cart_codes WHERE user_id IN (SELECT unhex(value) FROM json_each($1))", users),
            (
                "INSERT INTO idempotency (user_id, \"key\", body_hash, cart_hash, order_id, status, response, created_at)
                 SELECT unhex(value ->> 'user_id'), value ->> 'key', value ->> 'body_hash', value ->> 'cart_hash',
                        unhex(value ->> 'order_id'), value ->> 'status', value -> 'response', value ->> 'created_at'
                 FROM json_each($1)",
                serde_json::Value::from(keys).to_string(),
            ),
            (
                "INSERT INTO outbox (id, routing_key, event_type, subject, payload, created_at)
                 SELECT unhex(value ->> 'id'), value ->> 'routing_key', value ->> 'event_type', value ->> 'subject',
                        value -> 'payload', value ->> 'created_at'
                 FROM json_each($1)",
                serde_json::Value::from(events).to_string(),
            ),
        ];
        for (sql, rows) in statements {
            sqlx::query(sql).bind(rows).execute(&mut *self).await?;
        }
        for (order, (plugin, key, who)) in &w.order_uses {
            sqlx::query(ORDER_USE_SQL)
                .bind(order)
                .bind(plugin)
                .bind(key)
                .bind(who)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

/// Most rows one multi-row `INSERT` carries on MySQL (its statements take
/// at most 65,535 placeholders; an order line takes ten).
const MYSQL_ROWS_PER_INSERT: usize = 2_000;

/// `?, ?, …` for `n` placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Inserts `rows` with `head` (`INSERT INTO t (columns) `) and one
/// `VALUES` tuple per row, as `bind` binds it: at most
/// [`MYSQL_ROWS_PER_INSERT`] rows per statement.
async fn insert_rows<'a, T>(
    conn: &mut MySqlConnection,
    head: &str,
    rows: &'a [T],
    mut bind: impl FnMut(sqlx::query_builder::Separated<'_, 'a, sqlx::MySql, &'static str>, &'a T),
) -> sqlx::Result<()> {
    for chunk in rows.chunks(MYSQL_ROWS_PER_INSERT) {
        let mut query = sqlx::QueryBuilder::<sqlx::MySql>::new(head);
        query.push_values(chunk, &mut bind);
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Turns a duplicate key of the statement just run into
/// [`Error::Contention`]: a racing batch wrote the same idempotency key or
/// usage counter first, and the next try reads what it wrote.
fn raced(e: sqlx::Error) -> Error {
    match shopeezy_common::db::unique_violation(&e) {
        Some(_) => Error::Contention,
        None => Error::Database(e),
    }
}

/// On InnoDB the batch runs at READ COMMITTED and every row a decision
/// rests on is locked before it is read, to the commit:
/// - the batch's carts, by their users' rows of `cart_locks` (written, in
///   user order): every change to a cart takes its user's row first, so
///   a cart cannot change, not even gain a line or a code, between the
///   batch's read and its commit — what PostgreSQL's SERIALIZABLE detects
///   instead. (Locking the cart rows themselves at REPEATABLE READ does it
///   too, with gap locks that reach into other shoppers' carts: puts of
///   shoppers outside the batch waited on it and deadlocked with it.)
/// - the stock rows, `FOR UPDATE` in product-id order, and the usage
///   counters `FOR UPDATE`: a locking read reads the latest committed
///   version;
/// - the idempotency keys are read plainly: a key another replica writes
///   meanwhile makes this batch's insert fail on the primary key, and the
///   batch is tried again (then it reads the key and replays).
///
/// SERIALIZABLE would turn every plain read into a shared lock (and gap
/// locks), which two batches then both try to upgrade to write: deadlocks,
/// for no guarantee these locks do not give already. A deadlock or a lock
/// wait that timed out is retried like a serialization failure. The
/// conditional writes (`stock >= q`, `uses + n <= cap`) stay as a second
/// guard.
impl CheckoutTx for MySqlConnection {
    const BEGIN: &'static str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";

    async fn carts(&mut self, users: &[Uuid]) -> Result<HashMap<Uuid, Cart>> {
        let ids = marks(users.len());
        // The carts' locks, in user order (see `carts::LOCK_CART_SQL`):
        // every change to these carts waits for this batch's commit.
        let mut sorted = users.to_vec();
        sorted.sort();
        let locks = format!(
            "INSERT INTO cart_locks (user_id) VALUES {} ON DUPLICATE KEY UPDATE user_id = user_id",
            vec!["(?)"; sorted.len()].join(", ")
        );
        let mut query = sqlx::query(&locks);
        for user in &sorted {
            query = query.bind(user);
        }
        query.execute(&mut *self).await?;
        let sql = format!(
            "SELECT c.user_id, {}, c.quantity FROM cart_items c JOIN products p ON p.id = c.product_id
             WHERE c.user_id IN ({ids}) AND p.deleted_at IS NULL ORDER BY c.user_id, p.id",
            super::products::COLUMNS
        );
        let mut query = sqlx::query_as(&sql);
        for user in users {
            query = query.bind(user);
        }
        let rows: Vec<carts::UserLineRow> = query.fetch_all(&mut *self).await?;
        let sql = format!(
            "SELECT user_id, code FROM cart_codes WHERE user_id IN ({ids}) ORDER BY user_id, added_at, code"
        );
        let mut query = sqlx::query_as(&sql);
        for user in users {
            query = query.bind(user);
        }
        let codes: Vec<(Uuid, String)> = query.fetch_all(&mut *self).await?;
        Ok(assemble_carts(rows, codes))
    }

    async fn stored_keys(
        &mut self,
        keys: &[(Uuid, String)],
    ) -> Result<HashMap<(Uuid, String), StoredKey>> {
        let pairs = vec!["(?, ?)"; keys.len()].join(", ");
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM idempotency WHERE (user_id, \"key\") IN ({pairs})");
        let mut query = sqlx::query_as(&sql);
        for (user, key) in keys {
            query = query.bind(user).bind(key);
        }
        let rows: Vec<KeyRow> = query.fetch_all(&mut *self).await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.user_id, r.key), r.stored))
            .collect())
    }

    async fn lock_stock(&mut self, products: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let sql = format!(
            "SELECT id, stock FROM products WHERE id IN ({}) AND deleted_at IS NULL ORDER BY id FOR UPDATE",
            marks(products.len())
        );
        let mut query = sqlx::query_as(&sql);
        for product in products {
            query = query.bind(product);
        }
        let rows: Vec<(Uuid, i64)> = query.fetch_all(&mut *self).await?;
        Ok(rows.into_iter().collect())
    }

    async fn uses(&mut self, counters: &[Counter]) -> Result<HashMap<Counter, i64>> {
        let mut sorted: Vec<&Counter> = counters.iter().collect();
        sorted.sort();
        let triples = vec!["(?, ?, ?)"; sorted.len()].join(", ");
        let sql = format!(
            "SELECT plugin_id, limit_key, customer_key, uses FROM promotion_usage
             WHERE (plugin_id, limit_key, customer_key) IN ({triples})
             ORDER BY plugin_id, limit_key, customer_key FOR UPDATE"
        );
        let mut query = sqlx::query_as(&sql);
        for (plugin, key, who) in sorted {
            query = query.bind(plugin).bind(key).bind(who);
        }
        let rows: Vec<(Uuid, String, String, i64)> = query.fetch_all(&mut *self).await?;
        Ok(rows
            .into_iter()
            .map(|(p, k, w, n)| ((p, k, w), n))
            .collect())
    }

    async fn write(&mut self, w: &Writes) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        // The keys first: a racing replica's key fails this statement alone,
        // and the batch is tried again.
        let now = shopeezy_common::db::now();
        insert_rows(
            self,
            "INSERT INTO idempotency (user_id, \"key\", body_hash, cart_hash, order_id, status, response, created_at) ",
            &w.keys,
            |mut row, k| {
                row.push_bind(k.user_id)
                    .push_bind(&k.key)
                    .push_bind(&k.stored.body_hash)
                    .push_bind(&k.stored.cart_hash)
                    .push_bind(k.stored.order_id)
                    .push_bind(k.stored.status)
                    .push_bind(&k.stored.response)
                    .push_bind(now);
            },
        )
        .await
        .map_err(raced)?;
        // Stock, where enough is left: the rows updated are the rows that
        // had enough (sqlx asks MySQL for rows found, not rows changed).
        if !w.stock.is_empty() {
            let wanted = vec!["SELECT ? AS id, ? AS q"; w.stock.len()].join(" UNION ALL ");
            let sql = format!(
                "UPDATE products p JOIN ({wanted}) AS d ON p.id = d.id
                 SET p.stock = p.stock - d.q
                 WHERE p.stock >= d.q AND p.deleted_at IS NULL"
            );
            let mut query = sqlx::query(&sql);
            for (product, quantity) in &w.stock {
                query = query.bind(product).bind(quantity);
            }
            let done = query.execute(&mut *self).await?.rows_affected();
            if done != w.stock.len() as u64 {
                return Err(Error::Contention);
            }
        }
        for ((plugin, key, who), uses) in &w.new_uses {
            sqlx::query(
                "INSERT INTO promotion_usage (plugin_id, limit_key, customer_key, uses) VALUES (?, ?, ?, ?)",
            )
            .bind(plugin)
            .bind(key)
            .bind(who)
            .bind(uses)
            .execute(&mut *self)
            .await
            .map_err(raced)?;
        }
        for ((plugin, key, who), add, cap) in &w.more_uses {
            let done = sqlx::query(
                "UPDATE promotion_usage SET uses = uses + ?
                 WHERE plugin_id = ? AND limit_key = ? AND customer_key = ? AND uses + ? <= ?",
            )
            .bind(add)
            .bind(plugin)
            .bind(key)
            .bind(who)
            .bind(add)
            .bind(cap)
            .execute(&mut *self)
            .await?
            .rows_affected();
            if done != 1 {
                return Err(Error::Contention);
            }
        }
        insert_rows(
            self,
            "INSERT INTO orders (id, user_id, status, subtotal, discount_total, total, currency, adjustments, plugins, created_at, updated_at) ",
            &w.orders,
            |mut row, o| {
                row.push_bind(o.id)
                    .push_bind(o.user_id)
                    .push_bind(o.status.as_str())
                    .push_bind(o.subtotal)
                    .push_bind(o.discount_total)
                    .push_bind(o.total)
                    .push_bind(&o.currency)
                    .push_bind(Json(&o.adjustments))
                    .push_bind(Json(&o.plugins))
                    .push_bind(o.created_at)
                    .push_bind(o.updated_at);
            },
        )
        .await?;
        let items: Vec<(Uuid, usize, &crate::domain::PricedItem)> = w
            .orders
            .iter()
            .flat_map(|o| o.items.iter().enumerate().map(|(n, i)| (o.id, n, i)))
            .collect();
        insert_rows(
            self,
            "INSERT INTO order_items (order_id, line_no, product_id, sku, name, seller_id, quantity, unit_price, line_total, adjustments) ",
            &items,
            |mut row, (order, line_no, i)| {
                row.push_bind(*order)
                    .push_bind(*line_no as i32)
                    .push_bind(i.product_id)
                    .push_bind(&i.sku)
                    .push_bind(&i.name)
                    .push_bind(i.seller_id)
                    .push_bind(i.quantity)
                    .push_bind(i.unit_price)
                    .push_bind(i.line_total)
                    .push_bind(Json(&i.adjustments));
            },
        )
        .await?;
        let mut placed: Vec<(Uuid, i64)> = Vec::new();
        for o in &w.orders {
            match placed.iter_mut().find(|(user, _)| *user == o.user_id) {
                Some((_, n)) => *n += 1,
                None => placed.push((o.user_id, 1)),
            }
        }
        placed.sort();
        let users = marks(placed.len());
        let sql = format!(
            "INSERT INTO customer_order_counts (user_id, placed) VALUES {}
             ON DUPLICATE KEY UPDATE placed = placed + VALUES(placed)",
            vec!["(?, ?)"; placed.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (user, n) in &placed {
            query = query.bind(user).bind(n);
        }
        query.execute(&mut *self).await?;
        for table in ["cart_items", "cart_codes"] {
            let sql = format!("DELETE FROM {table} WHERE user_id IN ({users})");
            let mut query = sqlx::query(&sql);
            for (user, _) in &placed {
                query = query.bind(user);
            }
            query.execute(&mut *self).await?;
        }
        insert_rows(
            self,
            "INSERT INTO outbox (id, routing_key, event_type, subject, payload, created_at) ",
            &w.events,
            |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(&e.routing_key)
                    .push_bind(&e.event_type)
                    .push_bind(&e.subject)
                    .push_bind(Json(&e.document))
                    .push_bind(e.time);
            },
        )
        .await?;
        insert_rows(
            self,
            "INSERT INTO order_promotion_usage (order_id, plugin_id, limit_key, customer_key) ",
            &w.order_uses,
            |mut row, (order, (plugin, key, who))| {
                row.push_bind(*order)
                    .push_bind(*plugin)
                    .push_bind(key)
                    .push_bind(who);
            },
        )
        .await?;
        Ok(())
    }
}
