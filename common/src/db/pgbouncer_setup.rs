//! Running PgBouncer the way the services expect it behind
//! `pgbouncer=true`: transaction pooling, trust on loopback, the start-up
//! parameters sqlx sends that PgBouncer does not track ignored. One
//! configuration for the tests (testkit) and the benchmarks (devtools).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes PgBouncer's configuration (and its auth file, `user` without a
/// password) into `dir`: listening on `127.0.0.1:listen_port`, every
/// database of the server at `server` (`host:port`), `pool_size` server
/// connections per database; the configuration's path.
pub fn write_config(
    dir: &Path,
    server: &str,
    user: &str,
    listen_port: u16,
    pool_size: usize,
) -> std::io::Result<PathBuf> {
    let (host, port) = server.rsplit_once(':').unwrap_or((server, "5432"));
    let users = dir.join("pgbouncer-users.txt");
    std::fs::write(&users, format!("\"{user}\" \"\"\n"))?;
    let config = dir.join("pgbouncer.ini");
    std::fs::write(
        &config,
        format!(
            "[databases]\n\
             * = host={host} port={port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen_port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             max_client_conn = 1000\n\
             default_pool_size = {pool_size}\n\
             ignore_startup_parameters = extra_float_digits,options,search_path\n\
             log_connections = 0\n\
             log_disconnections = 0\n\
             log_stats = 0\n",
            users = users.display(),
        ),
    )?;
    Ok(config)
}

/// The command that runs PgBouncer on `config`. PgBouncer refuses to run
/// as root: as root it is told to switch to `postgres` once it has read its
/// files.
pub fn command(config: &Path) -> Command {
    let mut cmd = Command::new("pgbouncer");
    if running_as_root() {
        cmd.args(["-u", "postgres"]);
    }
    cmd.arg(config);
    cmd
}

/// Whether this process runs as root (its real uid is 0).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(uids.split_whitespace().next()? == "0")
        })
        .unwrap_or(false)
}

/// `host:port` of a `scheme://[user[:password]@]host:port[/path]` URL.
pub fn url_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}
