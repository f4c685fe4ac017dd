//! Token revocation and login throttling, in Redis (shared by every replica)
//! or in-process (the embedded default).
//!
//! Revoked token ids are kept until the token would have expired anyway; a
//! user-wide cutoff (password change, account deletion) revokes every token
//! issued up to that millisecond. When Redis is configured but unreachable,
//! every check fails closed with [`Error::RevocationUnavailable`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::tokens::Claims;

/// How long a Redis command may take before the check fails closed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Revocation and throttling state.
#[derive(Clone, Debug)]
pub struct Revocation {
    kv: Kv,
    prefix: String,
    token_ttl_secs: u64,
    max_failures: u32,
    window_secs: u64,
}

impl Revocation {
    /// Revocation in Redis at `url` (or in-process with `None`). Redis is
    /// connected lazily, so the service starts (unready) while it is down.
    pub fn new(
        url: Option<&str>,
        prefix: &str,
        token_ttl_secs: u64,
        max_failures: u32,
        window_secs: u64,
    ) -> anyhow::Result<Self> {
        let kv = match url {
            Some(url) => Kv::Redis(RedisKv {
                client: redis::Client::open(url)?,
                conn: Arc::default(),
            }),
            None => Kv::Memory(Arc::default()),
        };
        Ok(Self {
            kv,
            prefix: prefix.to_owned(),
            token_ttl_secs,
            max_failures,
            window_secs,
        })
    }

    /// `redis` or `in-process`.
    pub fn backend(&self) -> &'static str {
        match self.kv {
            Kv::Redis(_) => "redis",
            Kv::Memory(_) => "in-process",
        }
    }

    /// Refuses the token from now until it expires.
    pub async fn revoke_token(&self, claims: &Claims) -> Result<()> {
        let now = now_secs();
        let ttl = claims.exp.saturating_sub(now).max(1);
        self.kv.set_ex(&self.token_key(claims.jti), 1, ttl).await
    }

    /// Refuses every token of the user issued until now.
    pub async fn revoke_user(&self, user_id: Uuid) -> Result<()> {
        let now_ms = chrono::Utc::now().timestamp_millis().max(0);
        // Kept as long as any token issued before now can live.
        self.kv
            .set_ex(&self.user_key(user_id), now_ms, self.token_ttl_secs + 60)
            .await
    }

    /// Whether the token was revoked, by itself or with all its user's tokens.
    pub async fn is_revoked(&self, claims: &Claims) -> Result<bool> {
        let values = self
            .kv
            .get_many(&[self.token_key(claims.jti), self.user_key(claims.sub)])
            .await?;
        let token_revoked = values.first().copied().flatten().is_some();
        let cutoff = values.get(1).copied().flatten();
        let user_revoked =
            cutoff.is_some_and(|cutoff_ms| claims.issued_at_ms() as i64 <= cutoff_ms);
        Ok(token_revoked || user_revoked)
    }

    /// When logins for `login` are throttled, the seconds until they are not.
    pub async fn login_retry_after(&self, login: &str) -> Result<Option<u64>> {
        let (failures, ttl) = self.kv.get_with_ttl(&self.login_key(login)).await?;
        Ok((failures >= i64::from(self.max_failures)).then_some(ttl.max(1)))
    }

    /// Counts a failed login for `login` in the current window.
    pub async fn login_failed(&self, login: &str) -> Result<()> {
        self.kv
            .incr_in_window(&self.login_key(login), self.window_secs)
            .await
    }

    /// Forgets the failed logins of `login`.
    pub async fn login_succeeded(&self, login: &str) -> Result<()> {
        self.kv.del(&self.login_key(login)).await
    }

    /// Whether the backend answers.
    pub async fn ping(&self) -> Result<()> {
        self.kv
            .get_many(&[format!("{}ping", self.prefix)])
            .await
            .map(|_| ())
    }

    fn token_key(&self, jti: Uuid) -> String {
        format!("{}revoked:token:{jti}", self.prefix)
    }

    fn user_key(&self, user_id: Uuid) -> String {
        format!("{}revoked:user:{user_id}", self.prefix)
    }

    fn login_key(&self, login: &str) -> String {
        format!("{}login_failures:{}", self.prefix, login.to_lowercase())
    }
}

fn now_secs() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// The few key-value operations revocation needs, on either backend.
#[derive(Clone, Debug)]
enum Kv {
    Redis(RedisKv),
    Memory(Arc<Mutex<MemoryKv>>),
}

#[derive(Clone)]
struct RedisKv {
    client: redis::Client,
    conn: Arc<tokio::sync::Mutex<RedisSlot>>,
}

/// The connection once made, or when the last attempt to make it failed.
#[derive(Default)]
struct RedisSlot {
    conn: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisKv")
    }
}

impl RedisKv {
    /// A connection, made on first use; the manager reconnects by itself later.
    async fn connection(&self) -> Result<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.conn.as_ref() {
            return Ok(conn.clone());
        }
        // While Redis is down, answer at once rather than queueing every
        // request behind a connection attempt.
        if slot
            .failed_at
            .is_some_and(|at| at.elapsed() < REDIS_TIMEOUT)
        {
            return Err(unavailable("Redis is unreachable"));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let made = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        match made {
            Ok(Ok(conn)) => {
                *slot = RedisSlot {
                    conn: Some(conn.clone()),
                    failed_at: None,
                };
                Ok(conn)
            }
            Ok(Err(e)) => {
                slot.failed_at = Some(Instant::now());
                Err(unavailable(e))
            }
            Err(_) => {
                slot.failed_at = Some(Instant::now());
                Err(unavailable("connecting timed out"))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::RevocationUnavailable(e.to_string())
}

#[derive(Debug, Default)]
struct MemoryKv {
    entries: HashMap<String, (i64, Instant)>,
}

impl MemoryKv {
    fn live(&mut self, key: &str) -> Option<(i64, Instant)> {
        let now = Instant::now();
        match self.entries.get(key) {
            Some(&(value, until)) if until > now => Some((value, until)),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: &str, value: i64, until: Instant) {
        // Expired entries are swept as the map grows, so it stays bounded by
        // what is live.
        if self.entries.len() >= 1024 && self.entries.len().is_power_of_two() {
            let now = Instant::now();
            self.entries.retain(|_, (_, until)| *until > now);
        }
        self.entries.insert(key.to_owned(), (value, until));
    }
}

impl Kv {
    async fn set_ex(&self, key: &str, value: i64, ttl_secs: u64) -> Result<()> {
        match self {
            Self::Redis(r) => {
                r.query(redis::pipe().set_ex(key, value, ttl_secs).ignore())
                    .await
            }
            Self::Memory(m) => {
                lock(m).insert(key, value, Instant::now() + Duration::from_secs(ttl_secs));
                Ok(())
            }
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<i64>>> {
        match self {
            Self::Redis(r) => r
                .query(redis::pipe().mget(keys))
                .await
                .map(|(v,): (Vec<Option<i64>>,)| v),
            Self::Memory(m) => {
                let mut m = lock(m);
                Ok(keys.iter().map(|k| m.live(k).map(|(v, _)| v)).collect())
            }
        }
    }

    /// The value (0 when absent) and its remaining seconds.
    async fn get_with_ttl(&self, key: &str) -> Result<(i64, u64)> {
        match self {
            Self::Redis(r) => {
                let (value, ttl): (Option<i64>, i64) =
                    r.query(redis::pipe().get(key).ttl(key)).await?;
                Ok((value.unwrap_or(0), ttl.max(0) as u64))
            }
            Self::Memory(m) => Ok(lock(m).live(key).map_or((0, 0), |(v, until)| {
                (v, until.saturating_duration_since(Instant::now()).as_secs())
            })),
        }
    }

    /// Adds one to a counter whose window starts with its first increment.
    async fn incr_in_window(&self, key: &str, window_secs: u64) -> Result<()> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .incr(key, 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(key)
                    .arg(window_secs)
                    .arg("NX")
                    .ignore();
                r.query(&pipe).await
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                let (count, until) = m
                    .live(key)
                    .unwrap_or((0, Instant::now() + Duration::from_secs(window_secs)));
                m.insert(key, count + 1, until);
                Ok(())
            }
        }
    }

    async fn del(&self, key: &str) -> Result<()> {
        match self {
            Self::Redis(r) => r.query(redis::pipe().del(key).ignore()).await,
            Self::Memory(m) => {
                lock(m).entries.remove(key);
                Ok(())
            }
        }
    }
}

fn lock(m: &Mutex<MemoryKv>) -> std::sync::MutexGuard<'_, MemoryKv> {
    // A panic while holding the lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
