//! Carts: each user's lines and promotion codes.

use chrono::Utc;
use shopeezy_common::db::{Db, Pool};
use shopeezy_common::sql;
use shopeezy_common::with_db;
use sqlx::types::Json;
use uuid::Uuid;

use super::products::{COLUMNS, Row as ProductRow};
use crate::domain::{Cart, Line, MAX_CODES, Product};
use crate::error::Result;

#[derive(sqlx::FromRow)]
pub(super) struct LineRow {
    #[sqlx(flatten)]
    product: ProductRow,
    quantity: i64,
}

/// A cart line with the user whose cart it is in.
#[derive(sqlx::FromRow)]
pub(super) struct UserLineRow {
    user_id: Uuid,
    #[sqlx(flatten)]
    line: LineRow,
}

impl UserLineRow {
    /// The user, and the line.
    pub(super) fn into_parts(self) -> (Uuid, Line) {
        (self.user_id, self.line.into())
    }
}

impl From<LineRow> for Line {
    fn from(r: LineRow) -> Self {
        Self {
            product: r.product.into(),
            quantity: r.quantity,
        }
    }
}

/// The lines of a user's cart, in product-id order (the order in which
/// checkout takes stock, so concurrent checkouts never deadlock).
///
/// On PostgreSQL each product is reached through its primary key, in a
/// LATERAL subquery the planner cannot flatten (`OFFSET 0`): with a plain
/// join it may scan the products table instead (it did whenever the table's
/// statistics were young), and under SERIALIZABLE that scan takes a
/// predicate lock on every product, so every concurrent checkout conflicts
/// with every other (measured: 60 % of checkouts retried at 8 shoppers, 8 %
/// with this form).
fn lines_sql(postgres: bool) -> String {
    if postgres {
        format!(
            "SELECT {COLUMNS}, c.quantity FROM cart_items c
             CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
             WHERE c.user_id = $1"
        )
    } else {
        format!(
            "SELECT {COLUMNS}, c.quantity FROM cart_items c JOIN products p ON p.id = c.product_id
             WHERE c.user_id = $1 AND p.deleted_at IS NULL"
        )
    }
}

/// The lines of the carts of the users `$1` (an array; PostgreSQL only),
/// by user and then product id, each product reached by its primary key as
/// in [`lines_sql`].
pub(super) fn users_lines_sql() -> String {
    format!(
        "SELECT c.user_id, {COLUMNS}, c.quantity FROM cart_items c
         CROSS JOIN LATERAL (SELECT * FROM products p WHERE p.id = c.product_id AND p.deleted_at IS NULL OFFSET 0) p
         WHERE c.user_id = ANY($1) ORDER BY c.user_id, p.id"
    )
}

/// How many orders the user placed: the count checkout keeps.
const COUNT_SQL: &str = "SELECT placed FROM customer_order_counts WHERE user_id = $1";

/// The lines of the carts of the users `ids` (a subquery giving their ids;
/// SQLite), by user and then product id.
pub(super) fn users_lines_sqlite(ids: &str) -> String {
    format!(
        "SELECT c.user_id, {COLUMNS}, c.quantity FROM cart_items c JOIN products p ON p.id = c.product_id
         WHERE c.user_id IN ({ids}) AND p.deleted_at IS NULL ORDER BY c.user_id, p.id"
    )
}

/// A cart line (none on the one row of an empty cart) with what else
/// pricing needs of its user, the same on every row: the cart's codes and
/// the user's count of orders.
struct PricingRow {
    line: Option<LineRow>,
    codes: Json<Vec<String>>,
    placed: Option<i64>,
}

macro_rules! pricing_row {
    ($row:ty) => {
        impl<'r> sqlx::FromRow<'r, $row> for PricingRow {
            fn from_row(row: &'r $row) -> sqlx::Result<Self> {
                use sqlx::Row;
                let id: Option<Uuid> = row.try_get("id")?;
                Ok(Self {
                    line: id.map(|_| LineRow::from_row(row)).transpose()?,
                    codes: row.try_get("codes")?,
                    placed: row.try_get("placed")?,
                })
            }
        }
    };
}
pricing_row!(sqlx::postgres::PgRow);
pricing_row!(sqlx::sqlite::SqliteRow);
pricing_row!(sqlx::mysql::MySqlRow);

/// The user's cart and how many orders they placed (what pricing needs), in
/// one statement: the lines (an empty cart gives one row without a line),
/// each row carrying the codes and the count.
pub async fn get(db: &Db, user_id: Uuid) -> Result<(Cart, i64)> {
    let (cart, placed, _) = read(db, user_id, None).await?;
    Ok((cart, placed))
}

/// As [`get`], with the product `product_id` (on sale) read in the same
/// statement when it is not in the cart already: what a shopper setting a
/// line needs.
pub async fn get_with_product(
    db: &Db,
    user_id: Uuid,
    product_id: Uuid,
) -> Result<(Cart, i64, Option<Product>)> {
    read(db, user_id, Some(product_id)).await
}

/// The cart, the count of orders, and `wanted` when it is on sale and not in
/// the cart: it comes as a line of quantity 0 (a cart line's is at least 1).
async fn read(
    db: &Db,
    user_id: Uuid,
    wanted: Option<Uuid>,
) -> Result<(Cart, i64, Option<Product>)> {
    if let Pool::MySql(pool) = db.pool() {
        let rows: Vec<PricingRow> = match wanted {
            Some(id) => {
                sqlx::query_as(&mysql_read_sql(true))
                    .bind(user_id)
                    .bind(user_id)
                    .bind(user_id)
                    .bind(id)
                    .bind(user_id)
                    .bind(id)
                    .fetch_all(pool)
                    .await?
            }
            None => {
                sqlx::query_as(&mysql_read_sql(false))
                    .bind(user_id)
                    .bind(user_id)
                    .bind(user_id)
                    .fetch_all(pool)
                    .await?
            }
        };
        return Ok(pricing_rows(rows));
    }
    let postgres = db.is_postgres();
    let (codes, join) = if postgres {
        (
            "(SELECT COALESCE(json_agg(code ORDER BY added_at, code), '[]') FROM cart_codes WHERE user_id = $1)",
            "LEFT JOIN LATERAL",
        )
    } else {
        (
            "(SELECT json_group_array(code) FROM (SELECT code FROM cart_codes WHERE user_id = $1 ORDER BY added_at, code))",
            "LEFT JOIN",
        )
    };
    let lines = lines_sql(postgres);
    let wanted_line = if wanted.is_some() {
        format!(
            "UNION ALL
             SELECT {COLUMNS}, 0 AS quantity FROM products p
             WHERE p.id = $2 AND p.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM cart_items c WHERE c.user_id = $1 AND c.product_id = $2)"
        )
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT l.*, {codes} AS codes, ({COUNT_SQL}) AS placed
         FROM (SELECT 1) AS one {join} ({lines} {wanted_line}) AS l ON true ORDER BY l.id"
    );
    let rows: Vec<PricingRow> = with_db!(db, pool => {
        let query = sqlx::query_as(&sql).bind(user_id);
        match wanted {
            Some(id) => query.bind(id),
            None => query,
        }
        .fetch_all(pool)
        .await?
    });
    Ok(pricing_rows(rows))
}

/// [`read`]'s statement on MySQL, where each placeholder is bound once: the
/// user three times, then (with the wanted product) the product, the user
/// and the product.
fn mysql_read_sql(wanted: bool) -> String {
    let wanted_line = if wanted {
        format!(
            "UNION ALL
             SELECT {COLUMNS}, 0 AS quantity FROM products p
             WHERE p.id = ? AND p.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM cart_items c WHERE c.user_id = ? AND c.product_id = ?)"
        )
    } else {
        String::new()
    };
    format!(
        "SELECT l.*,
           COALESCE((SELECT JSON_ARRAYAGG(code ORDER BY added_at, code) FROM cart_codes WHERE user_id = ?), '[]') AS codes,
           (SELECT placed FROM customer_order_counts WHERE user_id = ?) AS placed
         FROM (SELECT 1) AS one LEFT JOIN (
           SELECT {COLUMNS}, c.quantity FROM cart_items c JOIN products p ON p.id = c.product_id
           WHERE c.user_id = ? AND p.deleted_at IS NULL
           {wanted_line}
         ) AS l ON TRUE ORDER BY l.id"
    )
}

/// The cart, the count of orders and the wanted product of [`read`]'s rows.
fn pricing_rows(rows: Vec<PricingRow>) -> (Cart, i64, Option<Product>) {
    let codes = rows.first().map(|r| r.codes.0.clone()).unwrap_or_default();
    let placed = rows.first().and_then(|r| r.placed).unwrap_or(0);
    let mut product = None;
    let mut cart_lines = Vec::with_capacity(rows.len());
    for line in rows.into_iter().filter_map(|r| r.line.map(Line::from)) {
        if line.quantity == 0 {
            product = Some(line.product);
        } else {
            cart_lines.push(line);
        }
    }
    (
        Cart {
            lines: cart_lines,
            codes,
        },
        placed,
        product,
    )
}

/// On MySQL every change to a user's cart first writes (so locks, to its
/// commit) the user's row of `cart_locks`, and a checkout batch takes the
/// rows of its users the same way: a cart cannot change between the batch's
/// read and its commit, without the gap locks (and the deadlocks between
/// unrelated shoppers) that locking the cart's rows themselves would take.
const LOCK_CART_SQL: &str =
    "INSERT INTO cart_locks (user_id) VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id";

/// A transaction holding the lock of `user_id`'s cart (MySQL).
async fn locked_cart(
    pool: &sqlx::MySqlPool,
    user_id: Uuid,
) -> Result<sqlx::Transaction<'static, sqlx::MySql>> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_CART_SQL)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Runs one statement on a user's cart under its lock (MySQL); the rows it
/// changed.
async fn mysql_cart_write<'q>(
    pool: &sqlx::MySqlPool,
    user_id: Uuid,
    query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
) -> Result<u64> {
    let mut tx = locked_cart(pool, user_id).await?;
    let done = query.execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(done)
}

/// Sets a line's quantity (adding the line when new).
pub async fn set_quantity(db: &Db, user_id: Uuid, product_id: Uuid, quantity: i64) -> Result<()> {
    const SQL: &str =
        "INSERT INTO cart_items (user_id, product_id, quantity, added_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity";
    const MYSQL: &str =
        "INSERT INTO cart_items (user_id, product_id, quantity, added_at) VALUES (?, ?, ?, ?)
               ON DUPLICATE KEY UPDATE quantity = VALUES(quantity)";
    if let Pool::MySql(pool) = db.pool() {
        let query = sqlx::query(MYSQL)
            .bind(user_id)
            .bind(product_id)
            .bind(quantity)
            .bind(Utc::now());
        mysql_cart_write(pool, user_id, query).await?;
        return Ok(());
    }
    with_db!(db, pool => sqlx::query(sql!(pool, SQL, mysql: MYSQL)).bind(user_id).bind(product_id).bind(quantity).bind(Utc::now()).execute(pool).await.map(|_| ())?);
    Ok(())
}

/// Removes a line; whether there was one.
pub async fn remove(db: &Db, user_id: Uuid, product_id: Uuid) -> Result<bool> {
    const SQL: &str = "DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2";
    if let Pool::MySql(pool) = db.pool() {
        let query = sqlx::query(sql!(pool, SQL)).bind(user_id).bind(product_id);
        return Ok(mysql_cart_write(pool, user_id, query).await? > 0);
    }
    let done = with_db!(db, pool => sqlx::query(sql!(pool, SQL)).bind(user_id).bind(product_id).execute(pool).await?.rows_affected());
    Ok(done > 0)
}

/// Empties the cart: lines and codes.
pub async fn clear(db: &Db, user_id: Uuid) -> Result<()> {
    if let Pool::MySql(pool) = db.pool() {
        let mut tx = locked_cart(pool, user_id).await?;
        sqlx::query("DELETE FROM cart_items WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cart_codes WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(());
    }
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(sql!(pool, "DELETE FROM cart_items WHERE user_id = $1")).bind(user_id).execute(&mut *tx).await?;
        sqlx::query(sql!(pool, "DELETE FROM cart_codes WHERE user_id = $1")).bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Enters a code (a code already entered stays as it is); `false` when the
/// cart already holds [`MAX_CODES`] other codes. Concurrent entries for one
/// user are serialised (SQLite: its single writer; PostgreSQL: an advisory
/// lock on the user; MySQL: the cart's lock, [`LOCK_CART_SQL`]), so the
/// count cannot be raced past the limit.
pub async fn add_code(db: &Db, user_id: Uuid, code: &str) -> Result<bool> {
    macro_rules! enter {
        ($tx:ident) => {{
            let present: i64 = sqlx::query_scalar(sql!(
                $tx,
                "SELECT COUNT(*) FROM cart_codes WHERE user_id = $1 AND code = $2"
            ))
            .bind(user_id)
            .bind(code)
            .fetch_one(&mut *$tx)
            .await?;
            if present == 1 {
                return Ok(true);
            }
            let count: i64 = sqlx::query_scalar(sql!(
                $tx,
                "SELECT COUNT(*) FROM cart_codes WHERE user_id = $1"
            ))
            .bind(user_id)
            .fetch_one(&mut *$tx)
            .await?;
            if count >= MAX_CODES {
                return Ok(false);
            }
            sqlx::query(sql!(
                $tx,
                "INSERT INTO cart_codes (user_id, code, added_at) VALUES ($1, $2, $3)"
            ))
            .bind(user_id)
            .bind(code)
            .bind(shopeezy_common::db::now())
            .execute(&mut *$tx)
            .await?;
            $tx.commit().await?;
            Ok(true)
        }};
    }
    match db.pool() {
        Pool::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(user_lock_key(user_id))
                .execute(&mut *tx)
                .await?;
            enter!(tx)
        }
        Pool::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            enter!(tx)
        }
        Pool::MySql(pool) => {
            let mut tx = locked_cart(pool, user_id).await?;
            enter!(tx)
        }
    }
}

/// The advisory-lock key of a user's cart (its own key space).
fn user_lock_key(user_id: Uuid) -> i64 {
    let b = user_id.as_bytes();
    i64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
        ^ 0x4341_5254_434f_4445
}

/// Removes a code; whether it was entered.
pub async fn remove_code(db: &Db, user_id: Uuid, code: &str) -> Result<bool> {
    const SQL: &str = "DELETE FROM cart_codes WHERE user_id = $1 AND code = $2";
    if let Pool::MySql(pool) = db.pool() {
        let query = sqlx::query(sql!(pool, SQL)).bind(user_id).bind(code);
        return Ok(mysql_cart_write(pool, user_id, query).await? > 0);
    }
    let done = with_db!(db, pool => sqlx::query(sql!(pool, SQL)).bind(user_id).bind(code).execute(pool).await?.rows_affected());
    Ok(done > 0)
}
