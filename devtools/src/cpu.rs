//! CPU time per process, from `/proc/<pid>/stat` (utime + stime, in clock
//! ticks): the bench reads it before and after each load level and divides
//! what each process spent by the orders placed in the level.
//!
//! The processes: the host, the account service, PgBouncer (when the run
//! goes through it), the database server (`database`), and the load
//! generator itself (`/proc/self`). The database server is PostgreSQL (the
//! postmaster and its children, summed; client backends connected to
//! databases other than the run's own are left out, so that other work on a
//! shared server does not count) or MariaDB/MySQL (one process, its threads
//! summed, `/proc/<pid>/task/<tid>/stat`; the threads serving connections to databases
//! other than the run's own are left out, found by the `TID` that MariaDB's
//! `information_schema.PROCESSLIST` gives each connection's thread). A
//! process or thread that exits during a level takes its CPU time with it;
//! one that starts counts from zero.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks; of one thread when `pid` is
/// `<pid>/task/<tid>` (`/proc/<tid>/stat` would give the whole process's).
fn ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Which processes a run measures.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Named single processes: (name, pid).
    pub processes: Vec<(String, u32)>,
    /// The database server, summed as `database`.
    pub database: Option<DatabaseServer>,
}

/// A database server whose processes (or threads) a run sums, leaving out
/// the connections to databases whose names do not start with one of the
/// run's.
#[derive(Debug, Clone)]
pub enum DatabaseServer {
    /// PostgreSQL's processes (command `postgres`).
    Postgres(Vec<String>),
    /// The threads of MariaDB's (or MySQL's) server process, `mariadbd` or
    /// `mysqld`; `client` runs the `mysql` client against it (to read which
    /// thread serves which database).
    MySql {
        databases: Vec<String>,
        client: fn() -> std::process::Command,
    },
}

/// CPU ticks of each watched process at one moment: name → pid → ticks.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<String, BTreeMap<String, u64>>);

impl Watched {
    /// Reads every watched process now.
    pub fn snapshot(&self) -> Snapshot {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (name, pid) in &self.processes {
            let pid = pid.to_string();
            if let Some(t) = ticks(&pid) {
                out.entry(name.clone()).or_default().insert(pid, t);
            }
        }
        if let Some(server) = &self.database {
            let pids = match server {
                DatabaseServer::Postgres(databases) => postgres_pids(databases),
                DatabaseServer::MySql { databases, client } => mysql_tids(databases, *client),
            };
            let group = out.entry("database".into()).or_default();
            for pid in pids {
                if let Some(t) = ticks(&pid) {
                    group.insert(pid, t);
                }
            }
        }
        if let Some(t) = ticks("self") {
            out.entry("load generator".into())
                .or_default()
                .insert("self".into(), t);
        }
        Snapshot(out)
    }
}

/// PostgreSQL's processes (command `postgres`), without the client
/// backends of other databases. A backend's title (its command line) is
/// `postgres: [cluster: ]user database host(port) activity`.
fn postgres_pids(databases: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let title = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let words: Vec<&str> = title.split_whitespace().collect();
        // A client backend: a word `host(port)` or `[local]` follows the database.
        let at = words
            .iter()
            .position(|w| *w == "[local]" || (w.contains('(') && w.ends_with(')')));
        let ours = match at {
            Some(i) if i >= 1 => databases.iter().any(|d| words[i - 1].starts_with(d)),
            _ => true,
        };
        if ours {
            pids.push(pid);
        }
    }
    pids
}

/// The threads (`<pid>/task/<tid>`) of the MariaDB/MySQL server processes (command `mariadbd`
/// or `mysqld`), without those serving a connection whose database is not
/// one of `databases` (a connection without a database, such as this
/// reading's own, is left out too). The background threads (InnoDB's
/// flushing and purge, the threads cached between connections) count. When
/// the server cannot be asked, every thread counts.
fn mysql_tids(databases: &[String], client: fn() -> std::process::Command) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let servers: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "mariadbd" | "mysqld")
        })
        .collect();
    if servers.is_empty() {
        return Vec::new();
    }
    // TID is MariaDB's (10.5 and later); a MySQL server answers an error and
    // every thread counts.
    let others: Vec<String> = client()
        .args(["-N", "-B", "-e"])
        .arg("SELECT TID, IFNULL(DB, '') FROM information_schema.PROCESSLIST WHERE TID IS NOT NULL")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .filter(|(_, db)| !databases.iter().any(|d| db.starts_with(d.as_str())))
                .map(|(tid, _)| tid.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut tids = Vec::new();
    for pid in servers {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            if !others.contains(&tid) {
                tids.push(format!("{pid}/task/{tid}"));
            }
        }
    }
    tids
}

impl Snapshot {
    /// CPU milliseconds each process spent from `before` to this snapshot
    /// (`"total"` for their sum), and per order when `orders` > 0.
    pub fn since(&self, before: &Snapshot, orders: u64) -> Value {
        let per_tick_ms = 1000.0 / ticks_per_second();
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let mut spent = serde_json::Map::new();
        let mut per_order = serde_json::Map::new();
        let mut total = 0.0;
        for (name, pids) in &self.0 {
            let ms: f64 = pids
                .iter()
                .map(|(pid, after)| {
                    let was = before.0.get(name).and_then(|b| b.get(pid)).copied();
                    after.saturating_sub(was.unwrap_or(0)) as f64 * per_tick_ms
                })
                .sum();
            total += ms;
            spent.insert(name.clone(), json!(round(ms)));
            if orders > 0 {
                per_order.insert(name.clone(), json!(round(ms / orders as f64)));
            }
        }
        spent.insert("total".into(), json!(round(total)));
        if orders > 0 {
            per_order.insert("total".into(), json!(round(total / orders as f64)));
        }
        json!({"cpu_ms": spent, "cpu_ms_per_order": per_order})
    }
}
