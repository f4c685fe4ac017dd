//! Orders: reading them, and moving them through their states.

use chrono::{DateTime, Utc};
use shopeezy_common::db::Db;
use shopeezy_common::db::dialect::placeholders;
use shopeezy_common::sql;
use shopeezy_common::{insert_event, with_db, with_tx};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{Adjustment, Order, PluginRun, PricedItem, Status};
use crate::error::{Error, Result};

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: String,
    subtotal: i64,
    discount_total: i64,
    total: i64,
    currency: String,
    adjustments: Json<Vec<Adjustment>>,
    plugins: Json<Vec<PluginRun>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    order_id: Uuid,
    product_id: Uuid,
    sku: String,
    name: String,
    seller_id: Uuid,
    quantity: i64,
    unit_price: i64,
    line_total: i64,
    adjustments: Json<Vec<Adjustment>>,
}

const ORDER_COLUMNS: &str = "id, user_id, status, subtotal, discount_total, total, currency, adjustments, plugins, created_at, updated_at";
const ITEM_COLUMNS: &str =
    "order_id, product_id, sku, name, seller_id, quantity, unit_price, line_total, adjustments";

fn assemble(orders: Vec<OrderRow>, items: Vec<ItemRow>) -> Result<Vec<Order>> {
    let mut out: Vec<Order> = Vec::with_capacity(orders.len());
    for o in orders {
        out.push(Order {
            id: o.id,
            user_id: o.user_id,
            status: Status::parse(&o.status)?,
            items: Vec::new(),
            adjustments: o.adjustments.0,
            subtotal: o.subtotal,
            discount_total: o.discount_total,
            total: o.total,
            currency: o.currency,
            plugins: o.plugins.0,
            created_at: o.created_at,
            updated_at: o.updated_at,
        });
    }
    // Items arrive ordered by (order, line); attach each to its order.
    for i in items {
        if let Some(order) = out.iter_mut().find(|o| o.id == i.order_id) {
            order.items.push(PricedItem {
                product_id: i.product_id,
                sku: i.sku,
                name: i.name,
                seller_id: i.seller_id,
                quantity: i.quantity,
                unit_price: i.unit_price,
                line_total: i.line_total,
                adjustments: i.adjustments.0,
            });
        }
    }
    Ok(out)
}

/// Reads the orders whose rows `orders` holds, with their lines.
async fn with_items(db: &Db, orders: Vec<OrderRow>) -> Result<Vec<Order>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<ItemRow> = with_db!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(format!("SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id IN ("));
        let mut list = q.separated(", ");
        for o in &orders {
            list.push_bind(o.id);
        }
        q.push(") ORDER BY order_id, line_no");
        q.build_query_as().fetch_all(pool).await?
    });
    assemble(orders, items)
}

/// The order with this id.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
    let rows: Vec<OrderRow> = with_db!(db, pool => sqlx::query_as(&placeholders(pool, &sql)).bind(id).fetch_all(pool).await?);
    Ok(with_items(db, rows).await?.pop())
}

/// Up to `limit` orders after `after`, newest first; of one user, or all.
pub async fn list(
    db: &Db,
    user_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Order>> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR user_id = $2) AND ($3 IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    );
    let rows: Vec<OrderRow> = with_db!(db, pool => sqlx::query_as(&placeholders(pool, &sql)).bind(user_id).bind(user_id).bind(after).bind(after).bind(i64::from(limit)).fetch_all(pool).await?);
    with_items(db, rows).await
}

/// Moves an order to `next` if its state machine allows it, in one
/// transaction with its event; cancelling puts the stock back. The move is
/// conditional on the status read, so two racing moves cannot both apply
/// (the loser gets 409 `invalid_transition`).
pub async fn transition(db: &Db, id: Uuid, next: Status) -> Result<Order> {
    let mut order = get(db, id).await?.ok_or_else(|| Error::NotFound("order"))?;
    let from = order.status;
    if !from.may_become(next) {
        return Err(invalid_transition(from, next));
    }
    order.status = next;
    order.updated_at = shopeezy_common::db::now();
    let event = order.status_event();
    with_tx!(db, tx => {
        let moved = sqlx::query(sql!(tx, "UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4"))
            .bind(next.as_str())
            .bind(order.updated_at)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Err(invalid_transition(from, next));
        }
        if next == Status::Cancelled {
            // Lines are in product order, like checkout's, so this cannot deadlock with it.
            let mut lines: Vec<&PricedItem> = order.items.iter().collect();
            lines.sort_by_key(|l| l.product_id);
            for line in lines {
                sqlx::query(sql!(tx, "UPDATE products SET stock = stock + $1 WHERE id = $2"))
                    .bind(line.quantity)
                    .bind(line.product_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if next == Status::Cancelled {
            // Give back the uses of limited discounts the order took.
            let uses: Vec<(Uuid, String, String)> = sqlx::query_as(
                sql!(tx, "SELECT plugin_id, limit_key, customer_key FROM order_promotion_usage WHERE order_id = $1"),
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for (plugin_id, key, who) in uses {
                sqlx::query(sql!(tx, "UPDATE promotion_usage SET uses = uses - 1 WHERE plugin_id = $1 AND limit_key = $2 AND customer_key = $3 AND uses > 0"))
                    .bind(plugin_id)
                    .bind(key)
                    .bind(who)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(sql!(tx, "DELETE FROM order_promotion_usage WHERE order_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        insert_event!(&mut *tx, &event)?;
        tx.commit().await?;
    });
    Ok(order)
}

fn invalid_transition(from: Status, to: Status) -> Error {
    Error::InvalidTransition {
        from: from.as_str(),
        to: to.as_str(),
    }
}
