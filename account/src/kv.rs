//! The few key-value operations that revocation and login throttling need,
//! in Redis (shared by every replica) or in-process (the embedded default).
//!
//! When Redis is configured but unreachable, every operation fails with
//! [`Error::RevocationUnavailable`] within [`REDIS_TIMEOUT`], so callers fail
//! closed rather than wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};

/// How long a Redis command may take before the operation fails closed.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Sets `KEYS[1]` to `ARGV[1]` (with `ARGV[2]` seconds to live) unless it
/// already holds a number at least as large: a user-wide cutoff only moves
/// forward, whichever of two writers comes last.
const SET_MAX_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 0";

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]` (the lock this
/// holder took, not one another took after it expired).
const DEL_IF_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// While `KEYS[1]` still holds `ARGV[1]`, sets `KEYS[2]` to `ARGV[2]` (for
/// `ARGV[3]` seconds) and deletes `KEYS[1]`; 1 if so, else 0.
const SET_IF_HELD_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0";

/// A key-value store with expiring integer values.
#[derive(Clone, Debug)]
pub enum Kv {
    /// Redis, connected lazily.
    Redis(RedisKv),
    /// A map in this process.
    Memory(Arc<Mutex<MemoryKv>>),
}

/// A Redis client and its connection, once made.
#[derive(Clone)]
pub struct RedisKv {
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

/// The in-process store: values with the instant they expire.
#[derive(Debug, Default)]
pub struct MemoryKv {
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

/// One value to write with [`Kv::set_many`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: i64,
    /// Seconds until it expires (at least 1).
    pub ttl_secs: u64,
    /// Keep the larger of this and a value already there.
    pub keep_max: bool,
}

impl Kv {
    /// Redis at `url`, connected on first use, or in-process with `None`.
    pub fn new(url: Option<&str>) -> anyhow::Result<Self> {
        Ok(match url {
            Some(url) => Self::Redis(RedisKv {
                client: redis::Client::open(url)?,
                conn: Arc::default(),
            }),
            None => Self::Memory(Arc::default()),
        })
    }

    /// `redis` or `in-process`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "in-process",
        }
    }

    /// Writes every entry, in one round trip.
    pub async fn set_many(&self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                for e in entries {
                    let ttl = e.ttl_secs.max(1);
                    if e.keep_max {
                        pipe.cmd("EVAL")
                            .arg(SET_MAX_SCRIPT)
                            .arg(1)
                            .arg(&e.key)
                            .arg(e.value)
                            .arg(ttl)
                            .ignore();
                    } else {
                        pipe.set_ex(&e.key, e.value, ttl).ignore();
                    }
                }
                r.query(&pipe).await
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                for e in entries {
                    let until = Instant::now() + Duration::from_secs(e.ttl_secs.max(1));
                    let kept = e
                        .keep_max
                        .then(|| m.live(&e.key))
                        .flatten()
                        .filter(|&(current, _)| current >= e.value);
                    if kept.is_none() {
                        m.insert(&e.key, e.value, until);
                    }
                }
                Ok(())
            }
        }
    }

    /// Sets `key` to `value` for `ttl_secs` unless it exists; whether it was set.
    pub async fn set_if_absent(&self, key: &str, value: i64, ttl_secs: u64) -> Result<bool> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_secs.max(1));
                let (set,): (Option<String>,) = r.query(&pipe).await?;
                Ok(set.is_some())
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                if m.live(key).is_some() {
                    return Ok(false);
                }
                let until = Instant::now() + Duration::from_secs(ttl_secs.max(1));
                m.insert(key, value, until);
                Ok(true)
            }
        }
    }

    /// Sets `key` to `value` for `ttl_secs` and deletes `lock_key`, both
    /// only while `lock_key` still holds `holder`; whether it did. A lock taken before
    /// writing other keys is thus a canary: if the store lost its keys since
    /// (a restart), the lock is gone too and `key` is not set.
    pub async fn set_if_held(
        &self,
        lock_key: &str,
        holder: i64,
        key: &str,
        value: i64,
        ttl_secs: u64,
    ) -> Result<bool> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                pipe.cmd("EVAL")
                    .arg(SET_IF_HELD_SCRIPT)
                    .arg(2)
                    .arg(lock_key)
                    .arg(key)
                    .arg(holder)
                    .arg(value)
                    .arg(ttl_secs.max(1));
                let (set,): (i64,) = r.query(&pipe).await?;
                Ok(set == 1)
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                if m.live(lock_key)
                    .is_none_or(|(current, _)| current != holder)
                {
                    return Ok(false);
                }
                m.entries.remove(lock_key);
                let until = Instant::now() + Duration::from_secs(ttl_secs.max(1));
                m.insert(key, value, until);
                Ok(true)
            }
        }
    }

    /// Deletes `key` if it still holds `value`.
    pub async fn delete_if(&self, key: &str, value: i64) -> Result<()> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                pipe.cmd("EVAL")
                    .arg(DEL_IF_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(value)
                    .ignore();
                r.query(&pipe).await
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                if m.live(key).is_some_and(|(current, _)| current == value) {
                    m.entries.remove(key);
                }
                Ok(())
            }
        }
    }

    /// The values of `keys` (`None` where absent), in one round trip.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<i64>>> {
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

    /// Each key's value (0 when absent) and its remaining seconds, in one
    /// round trip.
    pub async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<(i64, u64)>> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.get(key).ttl(key);
                }
                let values: Vec<redis::Value> = r.query(&pipe).await?;
                let mut out = Vec::with_capacity(keys.len());
                for pair in values.chunks(2) {
                    let [value, ttl] = pair else {
                        return Err(unavailable("Redis answered an odd number of values"));
                    };
                    let value: Option<i64> = redis::from_redis_value(value).map_err(unavailable)?;
                    let ttl: i64 = redis::from_redis_value(ttl).map_err(unavailable)?;
                    out.push((value.unwrap_or(0), ttl.max(0) as u64));
                }
                Ok(out)
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                let now = Instant::now();
                Ok(keys
                    .iter()
                    .map(|k| {
                        m.live(k).map_or((0, 0), |(v, until)| {
                            (v, until.saturating_duration_since(now).as_secs())
                        })
                    })
                    .collect())
            }
        }
    }

    /// Adds one to each counter, atomically; a counter's window starts with
    /// its first increment.
    pub async fn incr_in_window(&self, keys: &[String], window_secs: u64) -> Result<()> {
        match self {
            Self::Redis(r) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in keys {
                    pipe.incr(key, 1)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(key)
                        .arg(window_secs.max(1))
                        .arg("NX")
                        .ignore();
                }
                r.query(&pipe).await
            }
            Self::Memory(m) => {
                let mut m = lock(m);
                for key in keys {
                    let (count, until) = m
                        .live(key)
                        .unwrap_or((0, Instant::now() + Duration::from_secs(window_secs.max(1))));
                    m.insert(key, count + 1, until);
                }
                Ok(())
            }
        }
    }

    /// Deletes `key`.
    pub async fn del(&self, key: &str) -> Result<()> {
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
