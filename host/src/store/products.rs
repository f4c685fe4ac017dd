//! Products: the catalog and each product's stock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use shopeezy_common::db::Db;
use shopeezy_common::sql;
use shopeezy_common::with_db;
use sqlx::types::Json;
use uuid::Uuid;

use super::conflict_on;
use crate::domain::{Changes, NewProduct, Product};
use crate::error::{Error, Result};

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    id: Uuid,
    seller_id: Uuid,
    sku: String,
    name: String,
    description: String,
    price: i64,
    currency: String,
    stock: i64,
    tags: Json<Vec<String>>,
    attributes: Json<BTreeMap<String, String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Row> for Product {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            seller_id: r.seller_id,
            sku: r.sku,
            name: r.name,
            description: r.description,
            price: r.price,
            currency: r.currency,
            stock: r.stock,
            tags: r.tags.0,
            attributes: r.attributes.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The columns of [`Row`], for `SELECT`s (prefixed `p.`), as a literal for
/// `concat!`.
macro_rules! columns {
    () => {
        "p.id, p.seller_id, p.sku, p.name, p.description, p.price, p.currency, p.stock, p.tags, p.attributes, p.created_at, p.updated_at"
    };
}

/// The same, for statements made at run time.
pub(super) const COLUMNS: &str = columns!();

/// Lists a product.
pub async fn insert(db: &Db, new: NewProduct) -> Result<Product> {
    let now = shopeezy_common::db::now();
    let product = Product {
        id: Uuid::now_v7(),
        seller_id: new.seller_id,
        sku: new.sku,
        name: new.name,
        description: new.description,
        price: new.price,
        currency: new.currency,
        stock: new.stock,
        tags: new.tags,
        attributes: new.attributes,
        created_at: now,
        updated_at: now,
    };
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(
            sql!(pool, "INSERT INTO products (id, seller_id, sku, name, description, price, currency, stock, tags, attributes, created_at, updated_at, name_folded)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
        )
        .bind(product.id)
        .bind(product.seller_id)
        .bind(&product.sku)
        .bind(&product.name)
        .bind(&product.description)
        .bind(product.price)
        .bind(&product.currency)
        .bind(product.stock)
        .bind(Json(&product.tags))
        .bind(Json(&product.attributes))
        .bind(product.created_at)
        .bind(product.updated_at)
        .bind(product.name.to_lowercase())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on(e, "sku", Error::SkuTaken))?;
        for tag in &product.tags {
            sqlx::query(sql!(pool, "INSERT INTO product_tags (product_id, tag) VALUES ($1, $2)"))
                .bind(product.id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    });
    Ok(product)
}

/// The product with this id, unless deleted.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Product>> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM products p WHERE p.id = $1 AND p.deleted_at IS NULL"
    );
    let row: Option<Row> =
        with_db!(db, pool => sqlx::query_as(sql!(pool, SQL)).bind(id).fetch_optional(pool).await?);
    Ok(row.map(Product::from))
}

/// What to list.
#[derive(Debug, Default)]
pub struct Filter {
    /// Words the name contains (case-insensitive).
    pub q: Option<String>,
    /// A tag the product has.
    pub tag: Option<String>,
    /// The seller it belongs to.
    pub seller_id: Option<Uuid>,
}

/// Up to `limit` products after `after` (in listing order) that match `filter`.
pub async fn list(
    db: &Db,
    filter: &Filter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Product>> {
    let pattern = filter
        .q
        .as_deref()
        .map(|q| format!("%{}%", escape_like(&q.to_lowercase())));
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM products p
         WHERE p.deleted_at IS NULL
           AND ($1 IS NULL OR p.id > $2)
           AND ($3 IS NULL OR p.name_folded LIKE $4 ESCAPE '\\')
           AND ($5 IS NULL OR EXISTS (SELECT 1 FROM product_tags t WHERE t.tag = $6 AND t.product_id = p.id))
           AND ($7 IS NULL OR p.seller_id = $8)
         ORDER BY p.id LIMIT $9"
    );
    let rows: Vec<Row> = with_db!(db, pool => sqlx::query_as(sql!(pool, SQL))
        .bind(after)
        .bind(after)
        .bind(pattern.as_deref())
        .bind(pattern.as_deref())
        .bind(filter.tag.as_deref())
        .bind(filter.tag.as_deref())
        .bind(filter.seller_id)
        .bind(filter.seller_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?);
    Ok(rows.into_iter().map(Product::from).collect())
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Applies `changes`; `None` when there is no such (undeleted) product.
pub async fn update(db: &Db, id: Uuid, changes: Changes) -> Result<Option<Product>> {
    const SQL: &str = "UPDATE products SET sku = COALESCE($1, sku), name = COALESCE($2, name),
               description = COALESCE($3, description), price = COALESCE($4, price),
               currency = COALESCE($5, currency), tags = COALESCE($6, tags),
               attributes = COALESCE($7, attributes), stock = COALESCE($8, stock), updated_at = $9,
               name_folded = COALESCE($10, name_folded)
               WHERE id = $11 AND deleted_at IS NULL";
    let found = with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let done = sqlx::query(sql!(pool, SQL))
            .bind(changes.sku.as_deref())
            .bind(changes.name.as_deref())
            .bind(changes.description.as_deref())
            .bind(changes.price)
            .bind(changes.currency.as_deref())
            .bind(changes.tags.as_ref().map(Json))
            .bind(changes.attributes.as_ref().map(Json))
            .bind(changes.stock)
            .bind(shopeezy_common::db::now())
            .bind(changes.name.as_ref().map(|n| n.to_lowercase()))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on(e, "sku", Error::SkuTaken))?
            .rows_affected();
        if let (1, Some(tags)) = (done, &changes.tags) {
            sqlx::query(sql!(pool, "DELETE FROM product_tags WHERE product_id = $1")).bind(id).execute(&mut *tx).await?;
            for tag in tags {
                sqlx::query(sql!(pool, "INSERT INTO product_tags (product_id, tag) VALUES ($1, $2)"))
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        done == 1
    });
    if !found {
        return Ok(None);
    }
    get(db, id).await
}

/// Hides a product from sale and takes it out of every cart; past orders
/// keep their lines. Whether there was such a product.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool> {
    let now = shopeezy_common::db::now();
    let found = with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        let done = sqlx::query(sql!(pool, "UPDATE products SET deleted_at = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL"))
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(sql!(pool, "DELETE FROM cart_items WHERE product_id = $1")).bind(id).execute(&mut *tx).await?;
        sqlx::query(sql!(pool, "DELETE FROM product_tags WHERE product_id = $1")).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        done == 1
    });
    Ok(found)
}
