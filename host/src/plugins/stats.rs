//! Per-plugin call statistics of this replica, for the merchant console
//! (`GET /v1/plugins/{id}/stats`): how often the pipeline ran a plugin, how
//! often it failed and why lately, and how long its calls took.
//!
//! The Prometheus metrics are labelled by plugin *name*, which is unique
//! only per seller, so they cannot answer for one plugin; these figures are
//! keyed by plugin id. They are in memory and per replica, counted from when
//! this replica started counting the plugin: a fleet's figures are the sum
//! of its replicas'. Only the pipeline (cart views and checkouts) records:
//! dry runs are the merchant's experiments, not shoppers' traffic.
//!
//! Checkout is hot, so recording takes no lock but its own plugin's: each
//! [`Installed`](super::registry::Installed) plugin holds its
//! [`PluginStats`], handed out by [`Stats`] when the snapshot is built.
//! Whatever allocates (the failure's reason, the time stamp) is made before
//! that lock is taken, and what is evicted is dropped after it is released.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shopeezy_common::extract::excerpt;
use uuid::Uuid;

use super::runtime::{Failure, FailureKind};

/// How many of the latest call times the percentiles are computed over.
pub const SAMPLED_CALLS: usize = 1_000;

/// How many of the latest failures are kept, newest first.
pub const RECENT_FAILURES: usize = 10;

/// The longest failure reason kept, in bytes: reasons are mostly short, but
/// some quote a guest's error text or a compile error.
pub const MAX_REASON_BYTES: usize = 300;

/// How many plugins no longer in force (uninstalled, disabled, or out of
/// this replica's snapshot) keep their figures; older ones are forgotten.
/// A seller installing and uninstalling in a loop on another replica thus
/// costs this one at most this many entries (about 5 KiB each).
pub const RETIRED_KEPT: usize = 256;

/// The statistics of every plugin this replica has counted.
#[derive(Debug)]
pub struct Stats {
    /// When this replica started counting.
    started: DateTime<Utc>,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<Uuid, Entry>,
    /// Counts retirements, to find the oldest retired entries.
    retirements: u64,
}

#[derive(Debug)]
struct Entry {
    stats: Arc<PluginStats>,
    /// When (in retirement order) it went out of force; `None` while in force.
    retired: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-update leaves at worst a counter one behind: still figures.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// An empty store, counting from now.
    pub fn new() -> Self {
        Self {
            started: Utc::now(),
            entries: Mutex::default(),
        }
    }

    /// The statistics of plugin `id`, made when it has none yet: what a
    /// snapshot's [`Installed`](super::registry::Installed) records into.
    pub fn entry(&self, id: Uuid) -> Arc<PluginStats> {
        let mut entries = lock(&self.entries);
        let entry = entries.by_id.entry(id).or_insert_with(|| Entry {
            stats: Arc::new(PluginStats::new()),
            retired: None,
        });
        entry.retired = None;
        entry.stats.clone()
    }

    /// After a reload: the plugins of `in_force` are counted; any other is
    /// retired, and of the retired only the latest [`RETIRED_KEPT`] stay.
    pub fn retain(&self, in_force: &HashSet<Uuid>) {
        let mut entries = lock(&self.entries);
        let Entries { by_id, retirements } = &mut *entries;
        for (id, entry) in by_id.iter_mut() {
            if in_force.contains(id) {
                entry.retired = None;
            } else if entry.retired.is_none() {
                *retirements += 1;
                entry.retired = Some(*retirements);
            }
        }
        let mut retired: Vec<(u64, Uuid)> = by_id
            .iter()
            .filter_map(|(id, e)| e.retired.map(|order| (order, *id)))
            .collect();
        if retired.len() > RETIRED_KEPT {
            retired.sort_unstable();
            for (_, id) in &retired[..retired.len() - RETIRED_KEPT] {
                by_id.remove(id);
            }
        }
    }

    /// Forgets plugin `id` (it was uninstalled).
    pub fn remove(&self, id: Uuid) {
        lock(&self.entries).by_id.remove(&id);
    }

    /// The figures of plugin `id`; zeros when this replica has not counted it.
    pub fn report(&self, id: Uuid) -> StatsReport {
        let stats = lock(&self.entries).by_id.get(&id).map(|e| e.stats.clone());
        match stats {
            Some(stats) => stats.report(id),
            None => StatsReport {
                plugin_id: id,
                calls: 0,
                failures: 0,
                recent_failures: Vec::new(),
                p50_us: None,
                p99_us: None,
                sampled_calls: 0,
                since: self.started,
            },
        }
    }

    /// How many plugins have figures (in force or retired).
    pub fn len(&self) -> usize {
        lock(&self.entries).by_id.len()
    }

    /// Whether no plugin has figures.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The statistics of one plugin.
#[derive(Debug)]
pub struct PluginStats {
    since: DateTime<Utc>,
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    calls: u64,
    failures: u64,
    /// Newest first, at most [`RECENT_FAILURES`].
    recent: VecDeque<RecentFailure>,
    /// Call times in µs: a ring of the latest [`SAMPLED_CALLS`].
    times_us: Vec<u32>,
    /// Where the next time goes once the ring is full.
    next: usize,
}

/// One recent failure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecentFailure {
    /// When it failed (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// The kind of failure.
    pub kind: FailureKind,
    /// Why, as the cart view and checkout showed it (at most 300 bytes).
    #[schema(value_type = String)]
    pub reason: Arc<str>,
}

impl PluginStats {
    fn new() -> Self {
        Self {
            since: Utc::now(),
            counts: Mutex::new(Counts {
                calls: 0,
                failures: 0,
                recent: VecDeque::with_capacity(RECENT_FAILURES + 1),
                times_us: Vec::with_capacity(SAMPLED_CALLS),
                next: 0,
            }),
        }
    }

    /// Records one run of the plugin by the pipeline: `elapsed` when it was
    /// called (`None` when it was not, its request's budget being spent),
    /// and its failure, if it failed.
    pub fn record(&self, elapsed: Option<Duration>, failure: Option<&Failure>) {
        let failure = failure.map(|f| RecentFailure {
            at: Utc::now(),
            kind: f.kind,
            reason: excerpt(&f.reason, MAX_REASON_BYTES).into(),
        });
        let time_us = elapsed.map(|e| u32::try_from(e.as_micros()).unwrap_or(u32::MAX));
        let evicted = {
            let mut c = lock(&self.counts);
            c.calls += 1;
            if let Some(us) = time_us {
                if c.times_us.len() < SAMPLED_CALLS {
                    c.times_us.push(us);
                } else {
                    let next = c.next;
                    c.times_us[next] = us;
                    c.next = (next + 1) % SAMPLED_CALLS;
                }
            }
            match failure {
                Some(f) => {
                    c.failures += 1;
                    c.recent.push_front(f);
                    if c.recent.len() > RECENT_FAILURES {
                        c.recent.pop_back()
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        // The oldest failure's reason is freed here, outside the lock.
        drop(evicted);
    }

    /// The figures of this plugin (`id`).
    fn report(&self, id: Uuid) -> StatsReport {
        // Copied into room made before the lock; sorted after it.
        let mut times = Vec::with_capacity(SAMPLED_CALLS);
        let mut recent = Vec::with_capacity(RECENT_FAILURES + 1);
        let (calls, failures) = {
            let c = lock(&self.counts);
            times.extend_from_slice(&c.times_us);
            recent.extend(c.recent.iter().cloned());
            (c.calls, c.failures)
        };
        times.sort_unstable();
        StatsReport {
            plugin_id: id,
            calls,
            failures,
            recent_failures: recent,
            p50_us: percentile(&times, 50),
            p99_us: percentile(&times, 99),
            sampled_calls: times.len(),
            since: self.since,
        }
    }
}

/// The `p`th percentile (nearest rank) of `sorted`; `None` when empty.
fn percentile(sorted: &[u32], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).map(|&us| u64::from(us))
}

/// What `GET /v1/plugins/{id}/stats` answers: this replica's figures of one
/// plugin since `since`. Dry runs are not counted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    /// The plugin.
    pub plugin_id: Uuid,
    /// Times the pipeline (cart views and checkouts) ran the plugin, its
    /// failures included, also those refused for a spent request budget.
    pub calls: u64,
    /// How many of those failed (any kind, invalid answers included).
    pub failures: u64,
    /// The latest failures (at most 10), newest first.
    pub recent_failures: Vec<RecentFailure>,
    /// Median call time in µs over the sampled calls; null without any.
    pub p50_us: Option<u64>,
    /// 99th-percentile call time in µs over the sampled calls; null without any.
    pub p99_us: Option<u64>,
    /// How many call times the percentiles are over: the latest at most
    /// 1,000 calls (a call refused for a spent budget has no time).
    pub sampled_calls: usize,
    /// Since when this replica counts the plugin (RFC 3339, UTC).
    pub since: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(reason: &str) -> Failure {
        Failure::new(FailureKind::Trap, reason)
    }

    #[test]
    fn counts_calls_failures_and_percentiles() {
        let stats = Stats::new();
        let id = Uuid::new_v4();
        let entry = stats.entry(id);
        for us in 1..=100u64 {
            entry.record(Some(Duration::from_micros(us)), None);
        }
        entry.record(None, Some(&Failure::new(FailureKind::Budget, "spent")));
        let report = stats.report(id);
        assert_eq!((report.calls, report.failures), (101, 1));
        assert_eq!(report.sampled_calls, 100);
        assert_eq!((report.p50_us, report.p99_us), (Some(50), Some(99)));
        assert_eq!(report.recent_failures[0].kind, FailureKind::Budget);
    }

    #[test]
    fn bounds_what_it_keeps() {
        let stats = Stats::new();
        let id = Uuid::new_v4();
        let entry = stats.entry(id);
        for i in 0..(SAMPLED_CALLS + 500) {
            let f = failure(&format!("{i} {}", "x".repeat(1_000)));
            entry.record(Some(Duration::from_micros(7)), Some(&f));
        }
        let report = stats.report(id);
        assert_eq!(report.sampled_calls, SAMPLED_CALLS);
        assert_eq!(report.recent_failures.len(), RECENT_FAILURES);
        let newest = &report.recent_failures[0].reason;
        assert!(newest.starts_with(&format!("{} ", SAMPLED_CALLS + 499)));
        assert!(newest.len() <= MAX_REASON_BYTES + '…'.len_utf8());
    }

    #[test]
    fn an_empty_entry_has_no_percentiles() {
        let stats = Stats::new();
        let report = stats.report(Uuid::new_v4());
        assert_eq!(
            (report.calls, report.p50_us, report.p99_us),
            (0, None, None)
        );
        assert_eq!(report.since, stats.started);
    }

    #[test]
    fn retired_entries_are_bounded_and_removed() {
        let stats = Stats::new();
        let kept = Uuid::new_v4();
        stats
            .entry(kept)
            .record(Some(Duration::from_micros(1)), None);
        // A seller installing and uninstalling in a loop, seen by a replica
        // that never hears of the uninstalls but through its reloads.
        for _ in 0..(RETIRED_KEPT * 3) {
            let churn = Uuid::new_v4();
            stats.entry(churn);
            stats.retain(&HashSet::from([kept, churn]));
        }
        stats.retain(&HashSet::from([kept]));
        assert_eq!(stats.len(), RETIRED_KEPT + 1);
        assert_eq!(
            stats.report(kept).calls,
            1,
            "the plugin in force keeps its figures"
        );
        stats.remove(kept);
        assert_eq!(stats.report(kept).calls, 0);
    }
}
