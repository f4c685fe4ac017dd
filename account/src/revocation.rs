//! Token revocation: durable in the account database, answered from Redis
//! (shared by every replica) or from memory (the embedded default).
//!
//! A revoked token id is kept until the token would have expired anyway; a
//! user-wide cutoff (password change, account deletion) revokes every token
//! of the user issued up to that millisecond.
//!
//! The database is the record, the key-value store the fast path:
//! - a revocation is written to the database first, then to the store, and is
//!   reported done only when both succeeded;
//! - the store holds a marker, `revoked:loaded`, set once every unexpired
//!   revocation in the database has been copied into it. A check reads the
//!   marker with its two keys in one round trip. When the marker is missing
//!   (Redis restarted empty, a failover to an empty replica, this process
//!   just started, or the marker's own expiry), the check answers from the
//!   database, so even the first check after a restart is right, and starts
//!   copying the database into the store, after which it sets the marker
//!   (only if the store kept the copy's lock, so a store that lost its keys
//!   again meanwhile is not marked loaded).
//!   One task per process copies at a time, and a Redis lock keeps replicas
//!   from copying side by side; checks answer from the database meanwhile;
//! - the marker expires after [`LOADED_TTL`], so keys lost any other way
//!   (eviction, a revocation whose Redis write failed) come back by then.
//!
//! Every revocation (and every role change, `store::change_role`) is also
//! written, in the same transaction, to the ordered change log
//! `revocation_log`, which [`crate::feed`] tails and streams to the services
//! that verify tokens themselves (gRPC `WatchRevocations`).
//!
//! When Redis is configured but unreachable, checks and revocations fail
//! closed with [`RevocationUnavailable`](crate::error::Error::RevocationUnavailable)
//! (503): answering from the database alone would be right during the
//! outage, but a revocation made meanwhile would be missing from Redis when
//! it came back with its data and marker (until the marker's expiry).

use std::sync::Arc;
use std::time::Duration;

use shopeezy_common::db::Db;
use shopeezy_common::sql;
use shopeezy_common::with_db;
use uuid::Uuid;

use crate::error::Result;
use crate::kv::{Entry, Kv};
use crate::tokens::Claims;

/// How long the store is trusted to hold every revocation before they are
/// copied from the database again.
pub const LOADED_TTL: Duration = Duration::from_secs(300);

/// How long one copy may hold the lock that keeps replicas from copying at
/// the same time (it is released when the copy ends).
const LOADING_LOCK_TTL: Duration = Duration::from_secs(30);

/// Rows read, and keys written, per round trip while copying.
const LOAD_BATCH: i64 = 2000;

/// Revoked tokens and users.
#[derive(Clone, Debug)]
pub struct Revocation {
    kv: Kv,
    db: Db,
    prefix: String,
    token_ttl_secs: u64,
    /// Held by the one task of this process that copies the database.
    loading: Arc<tokio::sync::Mutex<()>>,
    /// Wakes this replica's [`crate::feed::Feed`] after a write.
    written: Arc<tokio::sync::Notify>,
}

impl Revocation {
    /// Revocation recorded in `db`, answered from `kv`, whose keys start with
    /// `prefix`. `token_ttl_secs` is the access tokens' lifetime.
    pub fn new(kv: Kv, db: Db, prefix: &str, token_ttl_secs: u64) -> Self {
        Self {
            kv,
            db,
            prefix: prefix.to_owned(),
            token_ttl_secs,
            loading: Arc::default(),
            written: Arc::default(),
        }
    }

    /// Notified after every revocation or role change this process writes.
    pub fn written(&self) -> Arc<tokio::sync::Notify> {
        self.written.clone()
    }

    /// Tells this replica's feed that the log has a new entry.
    pub fn wrote(&self) {
        self.written.notify_one();
    }

    /// The access tokens' lifetime, in seconds.
    pub fn token_ttl_secs(&self) -> u64 {
        self.token_ttl_secs
    }

    /// `redis` or `in-process`.
    pub fn backend(&self) -> &'static str {
        self.kv.backend()
    }

    /// Refuses the token from now until it expires.
    pub async fn revoke_token(&self, claims: &Claims) -> Result<()> {
        let expires_at = i64::try_from(claims.exp).unwrap_or(i64::MAX);
        db::insert_token(&self.db, claims.jti, expires_at).await?;
        self.wrote();
        self.kv
            .set_many(&[self.token_entry(claims.jti, expires_at)])
            .await
    }

    /// Refuses every token of the user issued until now.
    pub async fn revoke_user(&self, user_id: Uuid) -> Result<()> {
        let cutoff_ms = chrono::Utc::now().timestamp_millis().max(0);
        // Kept as long as any token issued before now can live.
        let expires_at = cutoff_ms / 1000 + self.token_ttl_secs as i64 + 60;
        db::upsert_user(&self.db, user_id, cutoff_ms, expires_at).await?;
        self.wrote();
        self.kv
            .set_many(&[self.user_entry(user_id, cutoff_ms, expires_at)])
            .await
    }

    /// Whether the token was revoked, by itself or with all its user's tokens.
    pub async fn is_revoked(&self, claims: &Claims) -> Result<bool> {
        let values = self
            .kv
            .get_many(&[
                self.loaded_key(),
                self.token_key(claims.jti),
                self.user_key(claims.sub),
            ])
            .await?;
        let loaded = values.first().copied().flatten().is_some();
        if loaded {
            let token = values.get(1).copied().flatten().is_some();
            let cutoff = values.get(2).copied().flatten();
            return Ok(token || revoked_by_cutoff(claims, cutoff));
        }
        self.start_loading();
        let (token, cutoff) = db::lookup(&self.db, claims.jti, claims.sub).await?;
        Ok(token || revoked_by_cutoff(claims, cutoff))
    }

    /// Starts copying the database into the store, unless this process is
    /// doing so already. The check that starts it does not wait for it.
    fn start_loading(&self) {
        let Ok(loading) = self.loading.clone().try_lock_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.load_unless_loaded().await {
                // The next check that finds the marker missing tries again.
                tracing::warn!(error = %e, "copying the revocations into the store failed");
            }
            drop(loading);
        });
    }

    /// Copies every unexpired revocation from the database into the store
    /// and sets the marker, unless that is done or a replica is doing it.
    async fn load_unless_loaded(&self) -> Result<()> {
        // Another copy may have just finished.
        let loaded = self.kv.get_many(&[self.loaded_key()]).await?;
        if loaded.first().copied().flatten().is_some() {
            return Ok(());
        }
        let holder: i64 = rand::random();
        let lock = self.loading_lock_key();
        if !self
            .kv
            .set_if_absent(&lock, holder, LOADING_LOCK_TTL.as_secs())
            .await?
        {
            return Ok(());
        }
        let count = match self.load().await {
            Ok(count) => count,
            Err(e) => {
                // Or it expires by itself.
                let _ = self.kv.delete_if(&lock, holder).await;
                return Err(e);
            }
        };
        // The marker is set only while the lock is still there: had the store
        // lost its keys during the copy (restarted again), the lock would be
        // gone with them, and the next check copies again.
        let marked = self
            .kv
            .set_if_held(&lock, holder, &self.loaded_key(), 1, LOADED_TTL.as_secs())
            .await?;
        if marked {
            tracing::info!(
                revocations = count,
                store = self.kv.backend(),
                "copied the revocations from the database into the store"
            );
            metrics::counter!("account_revocation_loads_total").increment(1);
        } else {
            tracing::warn!("the store lost its keys during the copy of the revocations");
        }
        Ok(())
    }

    /// Copies the unexpired revocations; how many.
    async fn load(&self) -> Result<usize> {
        let now = now_secs();
        let mut count = 0;
        let mut after = None;
        loop {
            let rows = db::tokens_page(&self.db, now, after, LOAD_BATCH).await?;
            let entries: Vec<Entry> = rows
                .iter()
                .map(|&(jti, expires_at)| self.token_entry(jti, expires_at))
                .collect();
            self.kv.set_many(&entries).await?;
            count += rows.len();
            match rows.last() {
                Some(&(jti, _)) if rows.len() as i64 == LOAD_BATCH => after = Some(jti),
                _ => break,
            }
        }
        let mut after = None;
        loop {
            let rows = db::users_page(&self.db, now, after, LOAD_BATCH).await?;
            let entries: Vec<Entry> = rows
                .iter()
                .map(|&(user_id, cutoff_ms, expires_at)| {
                    self.user_entry(user_id, cutoff_ms, expires_at)
                })
                .collect();
            self.kv.set_many(&entries).await?;
            count += rows.len();
            match rows.last() {
                Some(&(user_id, ..)) if rows.len() as i64 == LOAD_BATCH => after = Some(user_id),
                _ => break,
            }
        }
        Ok(count)
    }

    /// Deletes the revocations (and log entries) that can no longer refuse
    /// anything: tokens past their expiry, cutoffs and role changes older
    /// than any living token; how many.
    pub async fn prune(&self) -> Result<u64> {
        db::prune(&self.db, now_secs()).await
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<()> {
        self.kv.get_many(&[self.loaded_key()]).await.map(|_| ())
    }

    fn token_entry(&self, jti: Uuid, expires_at: i64) -> Entry {
        Entry {
            key: self.token_key(jti),
            value: 1,
            ttl_secs: ttl_until(expires_at),
            keep_max: false,
        }
    }

    fn user_entry(&self, user_id: Uuid, cutoff_ms: i64, expires_at: i64) -> Entry {
        Entry {
            key: self.user_key(user_id),
            value: cutoff_ms,
            ttl_secs: ttl_until(expires_at),
            // A copy from the database must not move a newer cutoff back.
            keep_max: true,
        }
    }

    fn token_key(&self, jti: Uuid) -> String {
        format!("{}revoked:token:{jti}", self.prefix)
    }

    fn user_key(&self, user_id: Uuid) -> String {
        format!("{}revoked:user:{user_id}", self.prefix)
    }

    fn loaded_key(&self) -> String {
        format!("{}revoked:loaded", self.prefix)
    }

    fn loading_lock_key(&self) -> String {
        format!("{}revoked:loading", self.prefix)
    }
}

/// Whether a user-wide cutoff covers the token.
fn revoked_by_cutoff(claims: &Claims, cutoff_ms: Option<i64>) -> bool {
    cutoff_ms.is_some_and(|cutoff_ms| {
        i64::try_from(claims.issued_at_ms()).unwrap_or(i64::MAX) <= cutoff_ms
    })
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp().max(0)
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis().max(0)
}

/// Appends one entry to `revocation_log`; binds: kind, subject, at_ms, role,
/// expires_at, created_ms.
pub(crate) const LOG_INSERT: &str =
    "INSERT INTO revocation_log (kind, subject, at_ms, role, expires_at, created_ms)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Seconds from now until `expires_at` (at least 1).
fn ttl_until(expires_at: i64) -> u64 {
    u64::try_from(expires_at.saturating_sub(now_secs())).map_or(1, |secs| secs.max(1))
}

/// The revocation tables. Every query reads the same on every backend but
/// the two upserts, which MySQL writes `ON DUPLICATE KEY UPDATE`.
mod db {
    use super::*;

    /// Records a revoked token (again: a no-op), and logs it.
    pub(super) async fn insert_token(db: &Db, jti: Uuid, expires_at: i64) -> Result<()> {
        with_db!(db, pool => {
            let mut tx = pool.begin().await?;
            // MySQL's plain INSERT fails on the key where the others do
            // nothing: a token revoked before.
            let inserted = match sqlx::query(
                sql!(pool, "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
                     mysql: "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"),
            )
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            {
                Ok(done) => done.rows_affected(),
                Err(e) if shopeezy_common::db::unique_violation(&e).is_some() => 0,
                Err(e) => return Err(e.into()),
            };
            if inserted > 0 {
                sqlx::query(sql!(pool, LOG_INSERT))
                    .bind("token")
                    .bind(jti)
                    .bind(None::<i64>)
                    .bind(None::<&str>)
                    .bind(expires_at)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a user-wide cutoff, keeping the later of two.
    pub(super) async fn upsert_user(
        db: &Db,
        user_id: Uuid,
        cutoff_ms: i64,
        expires_at: i64,
    ) -> Result<()> {
        with_db!(db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
            sql!(pool, "INSERT INTO revoked_users (user_id, cutoff_ms, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET
               cutoff_ms = CASE WHEN excluded.cutoff_ms > revoked_users.cutoff_ms
                                THEN excluded.cutoff_ms ELSE revoked_users.cutoff_ms END,
               expires_at = CASE WHEN excluded.expires_at > revoked_users.expires_at
                                 THEN excluded.expires_at ELSE revoked_users.expires_at END",
                 mysql: "INSERT INTO revoked_users (user_id, cutoff_ms, expires_at) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE
               cutoff_ms = GREATEST(cutoff_ms, VALUES(cutoff_ms)),
               expires_at = GREATEST(expires_at, VALUES(expires_at))"),
        )
        .bind(user_id)
        .bind(cutoff_ms)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
            sqlx::query(sql!(pool, LOG_INSERT))
                .bind("user")
                .bind(user_id)
                .bind(Some(cutoff_ms))
                .bind(None::<&str>)
                .bind(expires_at)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether the token is revoked by itself, and its user's cutoff.
    pub(super) async fn lookup(db: &Db, jti: Uuid, user_id: Uuid) -> Result<(bool, Option<i64>)> {
        let (tokens, cutoff): (i64, Option<i64>) = with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = $1),
                    (SELECT cutoff_ms FROM revoked_users WHERE user_id = $2)"),
        )
        .bind(jti)
        .bind(user_id)
        .fetch_one(pool)
        .await?);
        Ok((tokens > 0, cutoff))
    }

    /// Up to `limit` unexpired revoked tokens after `after`, in id order.
    pub(super) async fn tokens_page(
        db: &Db,
        now: i64,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<(Uuid, i64)>> {
        Ok(with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT jti, expires_at FROM revoked_tokens
             WHERE expires_at > $1 AND ($2 IS NULL OR jti > $3) ORDER BY jti LIMIT $4"),
        )
        .bind(now)
        .bind(after)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Up to `limit` unexpired user cutoffs after `after`, in user id order.
    pub(super) async fn users_page(
        db: &Db,
        now: i64,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<(Uuid, i64, i64)>> {
        Ok(with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT user_id, cutoff_ms, expires_at FROM revoked_users
             WHERE expires_at > $1 AND ($2 IS NULL OR user_id > $3) ORDER BY user_id LIMIT $4"),
        )
        .bind(now)
        .bind(after)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Deletes expired rows; how many.
    pub(super) async fn prune(db: &Db, now: i64) -> Result<u64> {
        let deleted = with_db!(db, pool => {
            let tokens = sqlx::query(sql!(pool, "DELETE FROM revoked_tokens WHERE expires_at <= $1"))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            let users = sqlx::query(sql!(pool, "DELETE FROM revoked_users WHERE expires_at <= $1"))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            let log = sqlx::query(sql!(pool, "DELETE FROM revocation_log WHERE expires_at <= $1"))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            tokens + users + log
        });
        Ok(deleted)
    }
}
