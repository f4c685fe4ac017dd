//! The revocation feed: this replica's tail of `revocation_log`, which the
//! gRPC `WatchRevocations` streams to the services that verify tokens
//! themselves.
//!
//! Every replica polls the log every [`POLL_EVERY`] (and at once after a
//! write of its own), so it sees the other replicas' writes too, and
//! broadcasts each entry it has not seen yet to its streams. Applying an
//! entry is idempotent, so an entry sent twice does no harm.
//!
//! **Gaps.** On PostgreSQL a row's `seq` is taken when it is inserted, not
//! when its transaction commits, so a row with a lower `seq` can become
//! visible after one with a higher `seq`. Reading only `seq > highest seen`
//! would skip it for ever. So each poll also re-reads every row written in
//! the last [`REREAD_WINDOW`] (by `created_ms`, the writer's clock), and the
//! cursor a stream hands out — the *settled* cursor — only covers rows
//! older than that window: every `seq` at or below it has been seen, or
//! belongs to a transaction that did not commit within the window (the
//! log's writes are single short transactions; one held open for 10 s
//! would be lost to followers until they resync from 0). The window also
//! absorbs clock differences between account replicas (NTP keeps them to
//! milliseconds; 10 s is the margin).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shopeezy_common::db::Db;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_common::sql;
use shopeezy_common::with_db;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::error::Result;
use crate::revocation::now_ms;

/// How often the log is polled for other replicas' writes.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// How far back each poll re-reads, and how old an entry must be before
/// the cursor passes it.
pub const REREAD_WINDOW_MS: i64 = 10_000;

/// [`REREAD_WINDOW_MS`] as a duration.
pub const REREAD_WINDOW: Duration = Duration::from_millis(REREAD_WINDOW_MS as u64);

/// Entries a slow stream may fall behind by before it is ended (the client
/// reconnects and resumes from its cursor).
const BROADCAST_CAPACITY: usize = 4096;

/// One entry of `revocation_log`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogEntry {
    /// Its place in the log.
    pub seq: i64,
    /// `token`, `user` or `role`.
    pub kind: String,
    /// The token's jti (`token`) or the user's id.
    pub subject: Uuid,
    /// The cutoff (`user`) or the time of the change (`role`), in ms.
    pub at_ms: Option<i64>,
    /// The new role (`role`).
    pub role: Option<String>,
    /// When it stops mattering (seconds since the epoch).
    pub expires_at: i64,
    /// The writer's clock when it was written, in ms.
    pub created_ms: i64,
}

/// Where the tail is: the highest `seq` seen and the settled cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The highest `seq` seen.
    pub high: i64,
    /// Every entry at or below this has been seen (see the module docs).
    pub settled: i64,
}

/// This replica's tail of the log; cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    db: Db,
    entries: broadcast::Sender<Arc<LogEntry>>,
    position: watch::Sender<Option<Position>>,
    written: Arc<Notify>,
    shutdown: Shutdown,
}

impl Feed {
    /// A feed of `db`'s log, polled also when `written` is notified, until
    /// `shutdown` (which also ends every stream).
    pub fn new(db: Db, written: Arc<Notify>, shutdown: Shutdown) -> Self {
        Self {
            db,
            entries: broadcast::channel(BROADCAST_CAPACITY).0,
            position: watch::channel(None).0,
            written,
            shutdown,
        }
    }

    /// The entries this replica sees from now on (possibly out of `seq`
    /// order, possibly again).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.entries.subscribe()
    }

    /// Where the tail is; waits (up to `within`) for its first poll.
    pub async fn position(&self, within: Duration) -> Option<Position> {
        let mut rx = self.position.subscribe();
        let waited = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(position)) => *position,
            _ => None,
        }
    }

    /// Where the tail is now, if it has polled.
    pub fn position_now(&self) -> Option<Position> {
        *self.position.borrow()
    }

    /// Resolves when the service stops.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.wait()
    }

    /// Every live entry (not yet expired) with `seq > after`, in `seq` order,
    /// read from the database.
    pub async fn since(&self, after: i64) -> Result<Vec<LogEntry>> {
        let now = chrono::Utc::now().timestamp();
        Ok(with_db!(&self.db, pool => sqlx::query_as(
            sql!(pool, "SELECT seq, kind, subject, at_ms, role, expires_at, created_ms FROM revocation_log
             WHERE seq > $1 AND expires_at > $2 ORDER BY seq"),
        )
        .bind(after)
        .bind(now)
        .fetch_all(pool)
        .await?))
    }

    /// The highest `seq` in the log now (0 when empty).
    pub async fn max_seq(&self) -> Result<i64> {
        Ok(with_db!(&self.db, pool => sqlx::query_scalar(
            sql!(pool, "SELECT COALESCE(MAX(seq), 0) FROM revocation_log"),
        )
        .fetch_one(pool)
        .await?))
    }

    /// Tails the log until the service stops.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run().await })
    }

    async fn run(self) {
        let stopped = self.shutdown.wait();
        tokio::pin!(stopped);
        let mut tail = None;
        loop {
            let polled = match tail.as_mut() {
                None => match Tail::start(&self.db).await {
                    Ok(started) => {
                        tail = Some(started);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Some(tail) => tail.poll(&self.db, &self.entries).await,
            };
            match polled {
                Ok(()) => {
                    if let Some(tail) = &tail {
                        let position = tail.position;
                        self.position.send_if_modified(|old| {
                            let changed = *old != Some(position);
                            *old = Some(position);
                            changed
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the revocation log failed"),
            }
            tokio::select! {
                () = &mut stopped => return,
                () = self.written.notified() => {}
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}

/// The state of the tail.
#[derive(Debug)]
struct Tail {
    position: Position,
    /// The entries of the last two windows: `seq` → `created_ms`.
    recent: BTreeMap<i64, i64>,
}

impl Tail {
    /// Starts at the end of the log: what is there is sent to each stream
    /// from the database when it starts.
    async fn start(db: &Db) -> Result<Self> {
        let settled_before = now_ms() - REREAD_WINDOW_MS;
        let (high, settled): (i64, i64) = with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT (SELECT COALESCE(MAX(seq), 0) FROM revocation_log),
                    (SELECT COALESCE(MAX(seq), 0) FROM revocation_log WHERE created_ms <= $1)"),
        )
        .bind(settled_before)
        .fetch_one(pool)
        .await?);
        let recent: Vec<(i64, i64)> = with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT seq, created_ms FROM revocation_log WHERE created_ms > $1"),
        )
        .bind(settled_before)
        .fetch_all(pool)
        .await?);
        let mut tail = Self {
            position: Position { high, settled },
            recent: recent.into_iter().collect(),
        };
        tail.settle(now_ms());
        Ok(tail)
    }

    /// Reads what is new (and the recent window again), broadcasts the
    /// entries not seen before and moves the cursor.
    async fn poll(&mut self, db: &Db, out: &broadcast::Sender<Arc<LogEntry>>) -> Result<()> {
        let now = now_ms();
        let rows: Vec<LogEntry> = with_db!(db, pool => sqlx::query_as(
            sql!(pool, "SELECT seq, kind, subject, at_ms, role, expires_at, created_ms FROM revocation_log
             WHERE seq > $1 OR created_ms > $2 ORDER BY seq"),
        )
        .bind(self.position.high)
        .bind(now - REREAD_WINDOW_MS)
        .fetch_all(pool)
        .await?);
        for row in rows {
            if self.recent.contains_key(&row.seq) {
                continue;
            }
            if row.seq <= self.position.settled {
                // Committed more than the window after it was written: the
                // streams get it now, a follower resuming from a later
                // cursor would not (it resyncs when it starts from 0).
                tracing::warn!(seq = row.seq, "a revocation log entry committed late");
            }
            self.recent.insert(row.seq, row.created_ms);
            self.position.high = self.position.high.max(row.seq);
            // No stream listening is no error.
            let _ = out.send(Arc::new(row));
        }
        self.settle(now);
        Ok(())
    }

    /// Moves the settled cursor past every entry older than the window, and
    /// forgets entries no poll can return again.
    fn settle(&mut self, now: i64) {
        let horizon = now - REREAD_WINDOW_MS;
        // The oldest entry still in the window: an entry with a lower `seq`
        // may still be uncommitted, so the cursor stays below it, at the
        // newest entry that is out of the window.
        let oldest_unsettled = self
            .recent
            .iter()
            .filter(|&(_, &created)| created > horizon)
            .map(|(&seq, _)| seq)
            .min();
        let settled = match oldest_unsettled {
            None => self.position.high,
            Some(oldest) => self
                .recent
                .iter()
                .filter(|&(&seq, &created)| created <= horizon && seq < oldest)
                .map(|(&seq, _)| seq)
                .max()
                .unwrap_or(self.position.settled),
        };
        self.position.settled = self.position.settled.max(settled);
        self.recent
            .retain(|_, &mut created| created > horizon - REREAD_WINDOW_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_does_not_pass_a_recent_entry() {
        let now = 1_000_000;
        let mut tail = Tail {
            position: Position {
                high: 9,
                settled: 5,
            },
            recent: BTreeMap::from([(7, now - 20_000), (9, now - 1_000)]),
        };
        tail.settle(now);
        assert_eq!(tail.position.settled, 7, "9 is in the window");
        // An entry out of the window above one in it does not move the
        // cursor past the one in it.
        tail.recent.insert(10, now - 30_000);
        tail.position.high = 10;
        tail.settle(now);
        assert_eq!(tail.position.settled, 7, "9 is still in the window");
        tail.settle(now + REREAD_WINDOW_MS);
        assert_eq!(tail.position.settled, 10, "everything is out of the window");
        assert!(!tail.recent.contains_key(&7), "7 can no longer come back");
    }
}
