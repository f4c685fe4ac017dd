//! The checkout's statements: the transaction that turns a cart into an
//! order, on either backend, the same text on both; the session advisory
//! locks PostgreSQL checkouts queue on; and the idempotency records.
//! What to run, in which order, and what an outcome means is the use case's
//! (`checkout.rs`); this module only says how to read and write it.

use std::future::Future;

use shopeezy_common::db::{Db, Pool};
use shopeezy_common::insert_event;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use uuid::Uuid;

use super::{carts, orders};
use crate::domain::{Cart, Line, Order};
use crate::error::Result;

/// A stored idempotency record.
#[derive(sqlx::FromRow)]
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

const IDEMPOTENCY_SQL: &str = "SELECT body_hash, cart_hash, order_id, status, response FROM idempotency WHERE user_id = $1 AND key = $2";

/// The stored record of `key` for this user, if the key was used before.
pub async fn stored_key(db: &Db, user_id: Uuid, key: &str) -> Result<Option<StoredKey>> {
    Ok(shopeezy_common::with_db!(db, pool =>
        sqlx::query_as(IDEMPOTENCY_SQL).bind(user_id).bind(key).fetch_optional(pool).await?))
}

/// The work of one checkout attempt, run inside its transaction.
pub trait Attempt: Send {
    /// What a committed attempt answers.
    type Output: Send;

    /// Runs the attempt's reads and writes on `tx`; an error rolls all of
    /// them back.
    fn run<C: CheckoutTx>(self, tx: &mut C) -> impl Future<Output = Result<Self::Output>> + Send;
}

/// Runs `attempt` in one checkout transaction (SERIALIZABLE on PostgreSQL,
/// `BEGIN IMMEDIATE` on SQLite) and commits it. On PostgreSQL the session
/// advisory locks `lock_keys` are taken first, before the transaction's
/// snapshot, and released after it.
pub async fn transaction<A: Attempt>(db: &Db, lock_keys: &[i64], attempt: A) -> Result<A::Output> {
    match db.pool() {
        Pool::Postgres(pool) => {
            let mut conn = AdvisoryLocked::acquire(pool, lock_keys).await?;
            let result = in_transaction(conn.connection(), attempt).await;
            conn.release().await;
            result
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            in_transaction(&mut *conn, attempt).await
        }
    }
}

/// Begins the checkout's transaction on `conn`, runs `attempt` and commits.
/// Any error drops the transaction, which rolls it back.
async fn in_transaction<DB, C, A>(conn: &mut C, attempt: A) -> Result<A::Output>
where
    DB: sqlx::Database<Connection = C>,
    C: Connection<Database = DB> + CheckoutTx,
    A: Attempt,
{
    let mut tx = conn.begin_with(C::BEGIN).await?;
    let output = attempt.run(&mut *tx).await?;
    tx.commit().await?;
    Ok(output)
}

/// A PostgreSQL connection holding the session advisory locks of a cart's
/// products, taken before the transaction begins so that its snapshot sees
/// every earlier checkout of those products.
struct AdvisoryLocked {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    released: bool,
}

impl AdvisoryLocked {
    async fn acquire(pool: &sqlx::PgPool, keys: &[i64]) -> Result<Self> {
        let mut this = Self {
            conn: pool.acquire().await?,
            released: false,
        };
        for key in keys {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut *this.conn)
                .await?;
        }
        Ok(this)
    }

    fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    async fn release(&mut self) {
        if sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *self.conn)
            .await
            .is_ok()
        {
            self.released = true;
        }
    }
}

impl Drop for AdvisoryLocked {
    fn drop(&mut self) {
        if !self.released {
            // Never hand a connection that may still hold locks back to the pool.
            self.conn.close_on_drop();
        }
    }
}

/// The statements of a checkout, on either backend's connection.
pub trait CheckoutTx: Send {
    /// The statement that begins the checkout's transaction.
    const BEGIN: &'static str;

    /// The caller's cart and its products.
    fn cart(&mut self, user_id: Uuid) -> impl Future<Output = Result<Cart>> + Send;
    /// The stored record of `key`, if used before.
    fn idempotency(
        &mut self,
        user_id: Uuid,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredKey>>> + Send;
    /// Takes `quantity` of the product's stock if that much is left.
    fn take_stock(
        &mut self,
        product_id: Uuid,
        quantity: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Writes the order and its lines, and counts it for its user.
    fn insert_order(&mut self, order: &Order) -> impl Future<Output = Result<()>> + Send;
    /// Writes the idempotency record.
    fn insert_idempotency(
        &mut self,
        user_id: Uuid,
        key: &str,
        body_hash: &str,
        cart_hash: &str,
        order_id: Uuid,
        body: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Writes an outbox event.
    fn insert_event(
        &mut self,
        event: &shopeezy_common::outbox::Event,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Takes one use of a counter if it is below `cap`.
    fn take_use(
        &mut self,
        plugin_id: Uuid,
        key: &str,
        who: &str,
        cap: u32,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records that the order took a use, so cancelling gives it back.
    fn record_use(
        &mut self,
        order_id: Uuid,
        plugin_id: Uuid,
        key: &str,
        who: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Empties the cart: lines and codes.
    fn clear_cart(&mut self, user_id: Uuid) -> impl Future<Output = Result<()>> + Send;
}

macro_rules! checkout_statements {
    ($conn:ty, $begin:expr, $postgres:expr) => {
        impl CheckoutTx for $conn {
            const BEGIN: &'static str = $begin;

            async fn cart(&mut self, user_id: Uuid) -> Result<Cart> {
                let rows: Vec<carts::LineRow> = sqlx::query_as(&carts::lines_sql($postgres)).bind(user_id).fetch_all(&mut *self).await?;
                let codes: Vec<String> = sqlx::query_scalar(carts::CODES_SQL).bind(user_id).fetch_all(&mut *self).await?;
                Ok(Cart { lines: rows.into_iter().map(Line::from).collect(), codes })
            }

            async fn idempotency(&mut self, user_id: Uuid, key: &str) -> Result<Option<StoredKey>> {
                Ok(sqlx::query_as(IDEMPOTENCY_SQL).bind(user_id).bind(key).fetch_optional(&mut *self).await?)
            }

            async fn take_stock(&mut self, product_id: Uuid, quantity: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 AND deleted_at IS NULL",
                )
                .bind(quantity)
                .bind(product_id)
                .execute(&mut *self)
                .await?
                .rows_affected();
                Ok(done == 1)
            }

            async fn insert_order(&mut self, order: &Order) -> Result<()> {
                sqlx::query(orders::INSERT_ORDER_SQL)
                    .bind(order.id)
                    .bind(order.user_id)
                    .bind(order.status.as_str())
                    .bind(order.subtotal)
                    .bind(order.discount_total)
                    .bind(order.total)
                    .bind(&order.currency)
                    .bind(Json(&order.adjustments))
                    .bind(Json(&order.plugins))
                    .bind(order.created_at)
                    .bind(order.updated_at)
                    .execute(&mut *self)
                    .await?;
                for (line_no, item) in order.items.iter().enumerate() {
                    sqlx::query(orders::INSERT_ITEM_SQL)
                        .bind(order.id)
                        .bind(line_no as i32)
                        .bind(item.product_id)
                        .bind(&item.sku)
                        .bind(&item.name)
                        .bind(item.seller_id)
                        .bind(item.quantity)
                        .bind(item.unit_price)
                        .bind(item.line_total)
                        .bind(Json(&item.adjustments))
                        .execute(&mut *self)
                        .await?;
                }
                sqlx::query(orders::COUNT_ORDER_SQL)
                    .bind(order.user_id)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn insert_idempotency(
                &mut self,
                user_id: Uuid,
                key: &str,
                body_hash: &str,
                cart_hash: &str,
                order_id: Uuid,
                body: &serde_json::Value,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO idempotency (user_id, key, body_hash, cart_hash, order_id, status, response, created_at)
                     VALUES ($1, $2, $3, $4, $5, 201, $6, $7)",
                )
                .bind(user_id)
                .bind(key)
                .bind(body_hash)
                .bind(cart_hash)
                .bind(order_id)
                .bind(Json(body))
                .bind(shopeezy_common::db::now())
                .execute(&mut *self)
                .await?;
                Ok(())
            }

            async fn insert_event(&mut self, event: &shopeezy_common::outbox::Event) -> Result<()> {
                insert_event!(&mut *self, event)?;
                Ok(())
            }

            async fn take_use(&mut self, plugin_id: Uuid, key: &str, who: &str, cap: u32) -> Result<bool> {
                if cap == 0 {
                    return Ok(false);
                }
                let done = sqlx::query(
                    "INSERT INTO promotion_usage (plugin_id, limit_key, customer_key, uses) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (plugin_id, limit_key, customer_key)
                     DO UPDATE SET uses = promotion_usage.uses + 1 WHERE promotion_usage.uses < $4",
                )
                .bind(plugin_id)
                .bind(key)
                .bind(who)
                .bind(i64::from(cap))
                .execute(&mut *self)
                .await?
                .rows_affected();
                Ok(done == 1)
            }

            async fn record_use(&mut self, order_id: Uuid, plugin_id: Uuid, key: &str, who: &str) -> Result<()> {
                sqlx::query("INSERT INTO order_promotion_usage (order_id, plugin_id, limit_key, customer_key) VALUES ($1, $2, $3, $4)")
                    .bind(order_id)
                    .bind(plugin_id)
                    .bind(key)
                    .bind(who)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn clear_cart(&mut self, user_id: Uuid) -> Result<()> {
                sqlx::query("DELETE FROM cart_items WHERE user_id = $1").bind(user_id).execute(&mut *self).await?;
                sqlx::query("DELETE FROM cart_codes WHERE user_id = $1").bind(user_id).execute(&mut *self).await?;
                Ok(())
            }
        }
    };
}

// Index scans only: under SERIALIZABLE a sequential scan would take a
// predicate lock on the whole table and make unrelated checkouts conflict.
checkout_statements!(
    PgConnection,
    "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL enable_seqscan = off",
    true
);
checkout_statements!(SqliteConnection, "BEGIN IMMEDIATE", false);
