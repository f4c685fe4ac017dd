//! Installed plugins: their rows (the component bytes too, so every replica
//! runs the same versions) and the generation every change bumps, in the
//! same transaction, so that replicas know to reload (`plugins::registry`).

use chrono::{DateTime, Utc};
use shopeezy_common::db::dialect::placeholders;
use shopeezy_common::db::{Db, now};
use shopeezy_common::sql;
use shopeezy_common::{with_db, with_tx};
use uuid::Uuid;

use super::conflict_on;
use crate::domain::{FailurePolicy, Hook, Plugin, Scope, Settings};
use crate::error::{Error, Result};

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    hook: String,
    seller_id: Option<Uuid>,
    version: i64,
    sha256: String,
    size: i64,
    priority: i32,
    failure_policy: String,
    config: String,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, hook, seller_id, version, sha256, size, priority, failure_policy, config, enabled, created_at, updated_at";

impl TryFrom<Row> for Plugin {
    type Error = Error;

    fn try_from(r: Row) -> Result<Self> {
        let corrupt = |what: &str| {
            Error::Internal(anyhow::anyhow!("stored plugin {} has a bad {what}", r.id))
        };
        Ok(Self {
            id: r.id,
            hook: Hook::parse(&r.hook).ok_or_else(|| corrupt("hook"))?,
            scope: Scope {
                kind: if r.seller_id.is_some() {
                    "seller"
                } else {
                    "platform"
                }
                .into(),
                seller_id: r.seller_id,
            },
            version: r.version,
            sha256: r.sha256.clone(),
            size: r.size,
            priority: r.priority,
            failure_policy: if r.failure_policy == "open" {
                FailurePolicy::Open
            } else {
                FailurePolicy::Closed
            },
            config: serde_json::from_str(&r.config).map_err(|_| corrupt("config"))?,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            name: r.name,
        })
    }
}

/// Every change to `plugins` runs this in its own transaction: replicas
/// reload when the generation moves.
const BUMP_GENERATION: &str =
    "UPDATE plugin_generation SET generation = generation + 1 WHERE id = 1";

/// How many plugins are enabled.
pub async fn count_enabled(db: &Db) -> Result<i64> {
    Ok(with_db!(db, pool =>
        sqlx::query_scalar(sql!(pool, "SELECT COUNT(*) FROM plugins WHERE enabled = $1")).bind(true).fetch_one(pool).await?))
}

/// The generation of the stored plugins: it moves with every change.
pub async fn generation(db: &Db) -> Result<i64> {
    Ok(with_db!(db, pool =>
        sqlx::query_scalar(sql!(pool, "SELECT generation FROM plugin_generation WHERE id = 1")).fetch_one(pool).await?))
}

/// The enabled plugins, in running order (priority, then age).
pub async fn enabled(db: &Db) -> Result<Vec<Plugin>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins WHERE enabled = $1 ORDER BY priority, created_at, id"
    );
    let rows: Vec<Row> = with_db!(db, pool => sqlx::query_as(&placeholders(pool, &sql)).bind(true).fetch_all(pool).await?);
    rows.into_iter().map(Plugin::try_from).collect()
}

/// The component bytes of plugin `id`'s current version.
pub async fn component(db: &Db, id: Uuid) -> Result<Vec<u8>> {
    Ok(with_db!(db, pool =>
        sqlx::query_scalar(sql!(pool, "SELECT component FROM plugins WHERE id = $1")).bind(id).fetch_one(pool).await?))
}

/// Stores a new plugin with its component; 409 `plugin_name_taken` when its
/// scope has one of that name.
pub async fn insert(db: &Db, plugin: &Plugin, bytes: &[u8]) -> Result<()> {
    let scope_key = plugin
        .seller()
        .map_or_else(|| "platform".to_owned(), |s| s.to_string());
    with_tx!(db, tx => {
        sqlx::query(
            sql!(tx, "INSERT INTO plugins (id, name, hook, scope_key, seller_id, version, sha256, size, component, priority, failure_policy, config, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"),
        )
        .bind(plugin.id)
        .bind(&plugin.name)
        .bind(plugin.hook.as_str())
        .bind(&scope_key)
        .bind(plugin.seller())
        .bind(plugin.version)
        .bind(&plugin.sha256)
        .bind(plugin.size)
        .bind(bytes)
        .bind(plugin.priority)
        .bind(plugin.failure_policy.as_str())
        .bind(plugin.config.to_string())
        .bind(plugin.enabled)
        .bind(plugin.created_at)
        .bind(plugin.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on(e, "name", Error::PluginNameTaken))?;
        sqlx::query(sql!(tx, BUMP_GENERATION)).execute(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// One plugin.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<Plugin>> {
    let sql = format!("SELECT {COLUMNS} FROM plugins WHERE id = $1");
    let row: Option<Row> = with_db!(db, pool => sqlx::query_as(&placeholders(pool, &sql)).bind(id).fetch_optional(pool).await?);
    row.map(Plugin::try_from).transpose()
}

/// Up to `limit` plugins after `after`, of one seller or all.
pub async fn list(
    db: &Db,
    seller_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Plugin>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins WHERE ($1 IS NULL OR seller_id = $2) AND ($3 IS NULL OR id > $4) ORDER BY id LIMIT $5"
    );
    let rows: Vec<Row> = with_db!(db, pool =>
        sqlx::query_as(&placeholders(pool, &sql)).bind(seller_id).bind(seller_id).bind(after).bind(after).bind(i64::from(limit)).fetch_all(pool).await?);
    rows.into_iter().map(Plugin::try_from).collect()
}

/// Changes settings; whether there was such a plugin.
pub async fn update(db: &Db, id: Uuid, s: &Settings) -> Result<bool> {
    let config = s.config.as_ref().map(serde_json::Value::to_string);
    let found = with_tx!(db, tx => {
        let done = sqlx::query(
            sql!(tx, "UPDATE plugins SET enabled = COALESCE($1, enabled), priority = COALESCE($2, priority),
             failure_policy = COALESCE($3, failure_policy), config = COALESCE($4, config), updated_at = $5 WHERE id = $6"),
        )
        .bind(s.enabled)
        .bind(s.priority)
        .bind(s.failure_policy.map(FailurePolicy::as_str))
        .bind(config.as_deref())
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            sqlx::query(sql!(tx, BUMP_GENERATION)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        done == 1
    });
    Ok(found)
}

/// Swaps in a new component (the next version); whether there was such a
/// plugin.
pub async fn replace_component(db: &Db, id: Uuid, bytes: &[u8], sha: &str) -> Result<bool> {
    let found = with_tx!(db, tx => {
        let done = sqlx::query(
            sql!(tx, "UPDATE plugins SET component = $1, sha256 = $2, size = $3, version = version + 1, updated_at = $4 WHERE id = $5"),
        )
        .bind(bytes)
        .bind(sha)
        .bind(bytes.len() as i64)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            sqlx::query(sql!(tx, BUMP_GENERATION)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        done == 1
    });
    Ok(found)
}

/// Uninstalls; whether there was such a plugin.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool> {
    let found = with_tx!(db, tx => {
        let done = sqlx::query(sql!(tx, "DELETE FROM plugins WHERE id = $1")).bind(id).execute(&mut *tx).await?.rows_affected();
        if done == 1 {
            sqlx::query(sql!(tx, BUMP_GENERATION)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        done == 1
    });
    Ok(found)
}
