//! `cargo xtask bench`: starts the system (the release binaries, built by
//! `cargo xtask bench` before it) on PostgreSQL (straight, or through
//! PgBouncer), on MySQL/MariaDB and on the SQLite default, drives it over
//! real HTTP with real tokens and idempotency keys, and writes
//! `bench/results/{quick,full}.{md,json}` (by the run's kind) with the
//! machine's cores, memory and versions.
//!
//! The load generator runs on the same machine as the services and the
//! database (2 cores here): every figure includes that competition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use serde_json::{Value, json};
use shopeezy_proto::auth::v1::ValidateTokenRequest;
use shopeezy_proto::auth::v1::auth_service_client::AuthServiceClient;

use crate::services::{Services, bin_dir, wait_ready};
use crate::{backends, root};

/// How long and how hard to push.
struct Plan {
    seconds: u64,
    levels: Vec<usize>,
    hot_stock: i64,
    catalog: usize,
}

/// Runs the benchmarks and writes the results.
/// Runs the benchmarks (the quick or the `full` plan) on `backend` (else
/// both) with the example components in `plugins`, and writes the results.
pub fn run(
    full: bool,
    backend: Option<&str>,
    out: Option<&str>,
    plugins: &std::path::Path,
) -> Result<()> {
    let kind = if full { "full" } else { "quick" };
    let name = out.unwrap_or(kind);
    let plan = if full {
        Plan {
            seconds: 20,
            levels: vec![1, 8, 32, 64],
            hot_stock: 6000,
            catalog: 1000,
        }
    } else {
        Plan {
            seconds: 5,
            levels: vec![1, 8, 32, 64],
            hot_stock: 1500,
            catalog: 1000,
        }
    };
    let backends = backends(backend)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = BTreeMap::new();
    for backend in backends {
        eprintln!("== {backend}");
        let result = runtime.block_on(bench_backend(backend, &plan, plugins))?;
        results.insert(backend.to_owned(), result);
    }
    // Instantiate-and-call of each example and the pricing pipeline with all
    // of them versus none, at 1 to 1,000 lines, in this process, which
    // links the host library built as the server is (release).
    eprintln!("== plugins (shopeezy_devtools::fixtures)");
    let plugin_results =
        shopeezy_devtools::fixtures::percentiles(plugins, if full { 10_000 } else { 2000 })?;
    let report = json!({
        "command": format!("cargo xtask bench --{kind}{}", backend.map_or(String::new(), |b| format!(" --backend {b}"))),
        "machine": machine(),
        "plan": {"seconds_per_level": plan.seconds, "levels": plan.levels, "hot_stock": plan.hot_stock, "catalog": plan.catalog},
        "backends": results,
        "plugins": plugin_results["plugins"],
        "pipeline": plugin_results["pipeline"],
    });
    let dir = root().join("bench").join("results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    println!("{md}");
    println!("written to {}", dir.display());
    Ok(())
}

/// The MySQL/MariaDB server a run uses: its host, port and user (no
/// password).
const MYSQL: (&str, u16, &str) = ("127.0.0.1", 3306, "root");

/// The `mysql` client, connected to [`MYSQL`].
pub(crate) fn mysql_client() -> std::process::Command {
    let (host, port, user) = MYSQL;
    let mut cmd = std::process::Command::new("mysql");
    cmd.args(["-h", host, "-P", &port.to_string(), "-u", user]);
    cmd
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The settings of one bench run's services.
fn service_env(
    backend: &str,
    dir: &std::path::Path,
    ports: (u16, u16, u16),
    pgbouncer_port: Option<u16>,
) -> Vec<(String, String)> {
    let (account_db, host_db) = match (backend, pgbouncer_port) {
        ("postgres", _) => {
            let name = format!("shopeezy_bench_{}", uuid::Uuid::new_v4().simple());
            (
                format!("postgres://postgres@127.0.0.1:5432/{name}_account"),
                format!("postgres://postgres@127.0.0.1:5432/{name}_host"),
            )
        }
        ("pgbouncer", Some(port)) => {
            let name = format!("shopeezy_bench_{}", uuid::Uuid::new_v4().simple());
            (
                format!("postgres://postgres@127.0.0.1:{port}/{name}_account?pgbouncer=true"),
                format!("postgres://postgres@127.0.0.1:{port}/{name}_host?pgbouncer=true"),
            )
        }
        // The services create their databases (utf8mb4, see common::db).
        ("mysql", _) => {
            let name = format!("shopeezy_bench_{}", uuid::Uuid::new_v4().simple());
            let (host, port, user) = MYSQL;
            (
                format!("mysql://{user}@{host}:{port}/{name}_account"),
                format!("mysql://{user}@{host}:{port}/{name}_host"),
            )
        }
        _ => (
            format!("sqlite://{}/account.db", dir.display()),
            format!("sqlite://{}/host.db", dir.display()),
        ),
    };
    let (http_a, grpc_a, http_h) = ports;
    [
        ("SHOPEEZY_ACCOUNT_DATABASE_URL", account_db),
        ("SHOPEEZY_HOST_DATABASE_URL", host_db),
        ("SHOPEEZY_ACCOUNT_HTTP_ADDR", format!("127.0.0.1:{http_a}")),
        ("SHOPEEZY_ACCOUNT_GRPC_ADDR", format!("127.0.0.1:{grpc_a}")),
        ("SHOPEEZY_HOST_HTTP_ADDR", format!("127.0.0.1:{http_h}")),
        (
            "SHOPEEZY_AUTH_GRPC_URL",
            format!("http://127.0.0.1:{grpc_a}"),
        ),
        ("SHOPEEZY_ADMIN_EMAIL", "admin@bench.local".to_owned()),
        ("SHOPEEZY_ADMIN_PASSWORD", "bench-admin-password".to_owned()),
        ("SHOPEEZY_DATA_DIR", dir.display().to_string()),
        ("SHOPEEZY_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A client of both services' REST APIs.
pub(crate) struct Client {
    http: reqwest::Client,
    account: String,
    host: String,
    /// The account service's gRPC address (`http://…`).
    grpc: String,
}

impl Client {
    async fn post(&self, url: String, token: Option<&str>, body: Value) -> Result<(u16, Value)> {
        let mut req = self.http.post(url).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) async fn login(&self, email: &str, password: &str) -> Result<String> {
        let (code, body) = self
            .post(
                format!("{}/v1/auth/login", self.account),
                None,
                json!({"email": email, "password": password}),
            )
            .await?;
        if code != 200 {
            bail!("login {email}: {code} {body}");
        }
        Ok(body["access_token"]
            .as_str()
            .context("no token")?
            .to_owned())
    }

    async fn user(&self, name: &str) -> Result<String> {
        let email = format!("{name}@bench.local");
        let body =
            json!({"name": name, "username": name, "email": email, "password": "bench-password"});
        let (code, reply) = self
            .post(format!("{}/v1/auth/register", self.account), None, body)
            .await?;
        if code != 201 {
            bail!("register {name}: {code} {reply}");
        }
        self.login(&email, "bench-password").await
    }
}

/// Latencies of one scenario, in microseconds, and the statuses answered.
#[derive(Default)]
pub(crate) struct Sample {
    micros: Vec<u64>,
    /// How many answers of each status.
    pub(crate) statuses: BTreeMap<u16, u64>,
    elapsed: Duration,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.micros.extend(other.micros);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }

    fn summary(mut self) -> Value {
        self.micros.sort_unstable();
        let pct = |p: f64| millis_at(&self.micros, p);
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| **s < 300)
            .map(|(_, n)| n)
            .sum();
        let five: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum();
        json!({
            "requests": self.micros.len(),
            "ok_per_s": (ok as f64 / self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "errors_5xx": five,
        })
    }
}

/// The `p` quantile (0–1, nearest rank) of sorted microseconds, in
/// milliseconds; 0 when there are none.
pub fn millis_at(sorted_micros: &[u64], p: f64) -> f64 {
    let Some(last) = sorted_micros.len().checked_sub(1) else {
        return 0.0;
    };
    sorted_micros[(last as f64 * p).round() as usize] as f64 / 1000.0
}

/// Runs `workers` workers (each until its own deadline) and merges their samples.
async fn timed<F, Fut>(workers: usize, make: F) -> Sample
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Sample>,
{
    let started = Instant::now();
    let parts = join_all((0..workers).map(&make)).await;
    let mut all = Sample::default();
    for p in parts {
        all.add(p);
    }
    all.elapsed = started.elapsed();
    all
}

/// Starts the account service and the host on `backend`, each on a fresh
/// database, and waits until both are ready: the services, their settings,
/// their data folder and a client of both.
pub(crate) async fn start(
    backend: &str,
) -> Result<(
    Services,
    Vec<(String, String)>,
    std::path::PathBuf,
    Arc<Client>,
)> {
    let run = start_with(backend, false).await?;
    Ok((run.services, run.env, run.dir, run.client))
}

/// The system of one bench run.
pub(crate) struct Run {
    pub(crate) services: Services,
    /// The services' settings.
    pub(crate) env: Vec<(String, String)>,
    /// Their data folder.
    pub(crate) dir: std::path::PathBuf,
    pub(crate) client: Arc<Client>,
    /// With `count_statements`: what the host sent its database.
    pub(crate) counts: Option<Arc<crate::wire::Counts>>,
    /// The processes whose CPU time a level reads.
    pub(crate) watched: crate::cpu::Watched,
}

/// As [`start`]; `pgbouncer` puts PgBouncer (transaction pooling) between
/// both services and PostgreSQL; with `count_statements` the host reaches
/// its database through a counting proxy ([`crate::wire`]).
pub(crate) async fn start_with(backend: &str, count_statements: bool) -> Result<Run> {
    let dir =
        std::env::temp_dir().join(format!("shopeezy-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut services = Services::default();
    let pgbouncer = if backend == "pgbouncer" {
        Some(services.start_pgbouncer(&dir)?)
    } else {
        None
    };
    let ports = (free_port()?, free_port()?, free_port()?);
    let mut env = service_env(backend, &dir, ports, pgbouncer);
    if pgbouncer.is_some() {
        // Made directly: PgBouncer cannot log in to a database that is missing.
        create_databases(&env)?;
    }
    let counts = if count_statements && backend != "sqlite" {
        let url = env
            .iter_mut()
            .find(|(k, _)| k == "SHOPEEZY_HOST_DATABASE_URL")
            .map(|(_, v)| v)
            .context("no host database")?;
        let target = shopeezy_common::db::pgbouncer_setup::url_host_port(url);
        let (protocol, no_tls) = if backend == "mysql" {
            (crate::wire::Protocol::MySql, "ssl-mode=disabled")
        } else {
            (crate::wire::Protocol::Postgres, "sslmode=disable")
        };
        let (proxy, counts) = crate::wire::start(target.clone(), protocol).await?;
        *url = url.replacen(&target, &proxy, 1);
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(no_tls);
        Some(counts)
    } else {
        None
    };
    let bin = bin_dir()?;
    services.start_with("account", &bin.join("shopeezy-account"), &env)?;
    let account = format!("127.0.0.1:{}", ports.0);
    wait_ready(&account, &AtomicBool::new(false), &mut services)?;
    services.start_with("host", &bin.join("shopeezy-host"), &env)?;
    let host = format!("127.0.0.1:{}", ports.2);
    wait_ready(&host, &AtomicBool::new(false), &mut services)?;
    let client = Arc::new(Client {
        // A request stuck (e.g. on a lock a pooler's server connection
        // kept) answers 599 after this instead of stalling the run.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        account: format!("http://{account}"),
        host: format!("http://{host}"),
        grpc: format!("http://127.0.0.1:{}", ports.1),
    });
    let watched = crate::cpu::Watched {
        processes: services
            .pids()
            .into_iter()
            .map(|(name, pid)| (name.to_owned(), pid))
            .collect(),
        database: match backend {
            "sqlite" => None,
            "mysql" => Some(crate::cpu::DatabaseServer::MySql {
                databases: database_names(&env),
                client: mysql_client,
            }),
            _ => Some(crate::cpu::DatabaseServer::Postgres(database_names(&env))),
        },
    };
    Ok(Run {
        services,
        env,
        dir,
        client,
        counts,
        watched,
    })
}

/// The names of the run's PostgreSQL or MySQL databases.
fn database_names(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(k, v)| {
            k.ends_with("DATABASE_URL") && (v.starts_with("postgres") || v.starts_with("mysql"))
        })
        .map(|(_, v)| {
            let path = v.rsplit('/').next().unwrap_or_default();
            path.split('?').next().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Creates the run's PostgreSQL databases on the server itself.
fn create_databases(env: &[(String, String)]) -> Result<()> {
    for name in database_names(env) {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "creating {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

async fn bench_backend(backend: &str, plan: &Plan, plugin_dir: &std::path::Path) -> Result<Value> {
    let run = start_with(backend, false).await?;
    let watched = run.watched.clone();
    let (mut services, env, dir, c) = (run.services, run.env, run.dir, run.client);
    let mut memory = serde_json::Map::new();
    memory.insert("idle".into(), resident(&services));
    let mut out = serde_json::Map::new();
    let seconds = plan.seconds;
    let deadline = move || Instant::now() + Duration::from_secs(seconds);

    // Setup: an admin, the catalog, shoppers.
    let admin = c.login("admin@bench.local", "bench-admin-password").await?;
    let products = catalog(&c, &admin, plan.catalog).await?;
    let max_level = plan.levels.iter().copied().max().unwrap_or(1);
    let shoppers = shoppers(&c, max_level).await?;
    let products = Arc::new(products);
    let shoppers = Arc::new(shoppers);

    // 1. Authentication: gRPC ValidateToken, one caller, then requests with and without a token.
    let mut grpc = AuthServiceClient::connect(c.grpc.clone()).await?;
    let mut auth = Sample::default();
    let started = Instant::now();
    for _ in 0..2000 {
        let t = Instant::now();
        let r = grpc
            .validate_token(ValidateTokenRequest {
                token: shoppers[0].clone(),
            })
            .await;
        auth.micros.push(t.elapsed().as_micros() as u64);
        *auth
            .statuses
            .entry(if r.is_ok() { 200 } else { 401 })
            .or_default() += 1;
    }
    auth.elapsed = started.elapsed();
    out.insert("validate_token_sequential".into(), auth.summary());
    for (name, path, with_token) in [
        ("get_product_anonymous", "product", false),
        ("get_cart_authenticated", "cart", true),
    ] {
        let s = timed(8, |w| {
            let (c, shoppers, products) = (c.clone(), shoppers.clone(), products.clone());
            async move {
                let mut s = Sample::default();
                let end = deadline();
                while Instant::now() < end {
                    let url = if path == "cart" {
                        format!("{}/v1/cart", c.host)
                    } else {
                        format!("{}/v1/products/{}", c.host, products[w])
                    };
                    let mut req = c.http.get(url);
                    if with_token {
                        req = req.bearer_auth(&shoppers[w % shoppers.len()]);
                    }
                    let t = Instant::now();
                    let code = req.send().await.map_or(599, |r| r.status().as_u16());
                    s.micros.push(t.elapsed().as_micros() as u64);
                    *s.statuses.entry(code).or_default() += 1;
                }
                s
            }
        })
        .await;
        out.insert(format!("{name}_8_clients"), s.summary());
    }

    // 2. Logins (argon2id at its production cost), 4 clients.
    let logins = timed(4, |_| {
        let c = c.clone();
        async move {
            let mut s = Sample::default();
            let end = deadline();
            while Instant::now() < end {
                let t = Instant::now();
                let code = c
                    .post(
                        format!("{}/v1/auth/login", c.account),
                        None,
                        json!({"email": "shopper0@bench.local", "password": "bench-password"}),
                    )
                    .await
                    .map_or(599, |r| r.0);
                s.micros.push(t.elapsed().as_micros() as u64);
                *s.statuses.entry(code).or_default() += 1;
            }
            s
        }
    })
    .await;
    out.insert("login_4_clients".into(), logins.summary());

    // 3. Checkout on a spread catalog, at each level of concurrency.
    let stop = Arc::new(AtomicBool::new(false));
    for &level in &plan.levels {
        let before = watched.snapshot();
        let s = checkout_load(&c, &shoppers, &products, level, deadline(), &stop, false).await;
        out.insert(
            format!("checkout_spread_{level}"),
            with_cpu(s, &before, &watched),
        );
    }

    // 4. A hot product: everyone races for the same stock until it is gone.
    for &level in &plan.levels {
        let (code, hot) = c
            .post(format!("{}/v1/products", c.host), Some(&admin), json!({"sku": format!("HOT-{level}"), "name": "Hot item", "price": 999, "currency": "USD", "stock": plan.hot_stock}))
            .await?;
        if code != 201 {
            bail!("creating the hot product: {code}");
        }
        let hot = Arc::new(vec![hot["id"].as_str().context("no id")?.to_owned()]);
        let before = watched.snapshot();
        let s = checkout_load(
            &c,
            &shoppers,
            &hot,
            level,
            Instant::now() + Duration::from_secs(120),
            &stop,
            true,
        )
        .await;
        let sold = s.statuses.get(&201).copied().unwrap_or(0);
        let mut summary = with_cpu(s, &before, &watched);
        summary["sold"] = json!(sold);
        summary["stock"] = json!(plan.hot_stock);
        out.insert(format!("checkout_hot_{level}"), summary);
    }

    memory.insert("after_load".into(), resident(&services));

    // 5. Checkout with the example plugins installed, one and eight clients,
    //    against the same levels without them measured just before (the
    //    database has grown since the first scenarios).
    for level in [1, 8] {
        let s = checkout_load(&c, &shoppers, &products, level, deadline(), &stop, false).await;
        out.insert(
            format!("checkout_spread_{level}_before_plugins"),
            s.summary(),
        );
    }
    install_examples(&c, &admin, plugin_dir, 0..4).await?;
    for level in [1, 8] {
        let s = checkout_load(&c, &shoppers, &products, level, deadline(), &stop, false).await;
        out.insert(format!("checkout_spread_{level}_with_plugins"), s.summary());
    }
    let pricing = in_server_pricing(&c).await?;

    // 6. Ten plugins installed, each run once by a cart view.
    install_examples(&c, &admin, plugin_dir, 4..10).await?;
    let _ = c
        .http
        .put(format!("{}/v1/cart/items/{}", c.host, products[0]))
        .bearer_auth(&shoppers[0])
        .json(&json!({"quantity": 1}))
        .send()
        .await?;
    let view = c
        .http
        .get(format!("{}/v1/cart", c.host))
        .bearer_auth(&shoppers[0])
        .send()
        .await?;
    if !view.status().is_success() {
        bail!("the cart view with ten plugins answered {}", view.status());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    memory.insert("ten_plugins".into(), resident(&services));

    services.stop();

    // The ceiling: the same SQL, driven by pgbench against the same database,
    // once the services are stopped (their pools would take connections
    // pgbench needs at 64 clients; PostgreSQL allows 100).
    // (pgbench is PostgreSQL's: no ceiling on SQLite or MySQL.)
    let ceiling = if matches!(backend, "postgres" | "pgbouncer") {
        ceiling(&env, plan, &out)
    } else {
        Ok(serde_json::Map::new())
    };
    drop_databases(&env);
    let ceiling = ceiling?;
    let _ = std::fs::remove_dir_all(&dir);

    // Statements per order, on a system of its own whose host reaches its
    // database through a counting proxy.
    let statements = if backend == "sqlite" {
        Value::Null
    } else {
        eprintln!("statements per order (calibration, host database through a counting proxy)");
        calibrate(backend).await?
    };
    Ok(
        json!({"scenarios": out, "memory": memory, "ceiling": ceiling, "pricing_in_server": pricing, "statements": statements}),
    )
}

/// A level's summary with the orders placed (201s) and the CPU time each
/// watched process spent from `before` until now, in all and per order.
fn with_cpu(s: Sample, before: &crate::cpu::Snapshot, watched: &crate::cpu::Watched) -> Value {
    let cpu = watched
        .snapshot()
        .since(before, s.statuses.get(&201).copied().unwrap_or(0));
    let orders = s.statuses.get(&201).copied().unwrap_or(0);
    let mut summary = s.summary();
    summary["orders"] = json!(orders);
    summary["cpu_ms"] = cpu["cpu_ms"].clone();
    summary["cpu_ms_per_order"] = cpu["cpu_ms_per_order"].clone();
    summary
}

/// Orders placed (201) among `replies`' statuses.
fn placed(statuses: &[u16]) -> u64 {
    statuses.iter().filter(|s| **s == 201).count() as u64
}

/// The calibration pass: a system whose host's database connections go
/// through a counting proxy; what the host sends per placed order. First
/// idle (the background: plugin and outbox polling), then shoppers in the
/// bench's loop (put a line, check out) at 8 and 32, then 40 rounds of 8
/// shoppers in lock step (all put a line; then all check out, and 100 ms
/// for the outbox relay to send their events) to tell a put from a checkout.
async fn calibrate(backend: &str) -> Result<Value> {
    let run = start_with(backend, true).await?;
    let counts = run.counts.clone().context("no counting proxy")?;
    let c = run.client.clone();
    let admin = c.login("admin@bench.local", "bench-admin-password").await?;
    let products = Arc::new(catalog(&c, &admin, 200).await?);
    let shoppers = Arc::new(shoppers(&c, 32).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut out = serde_json::Map::new();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_from, started) = (counts.read(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = counts.read().since(idle_from);
    let per_s = |n: u64| (n as f64 / started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    out.insert(
        "idle_per_s".into(),
        json!({"statements": per_s(idle.statements()), "parse": per_s(idle.parse)}),
    );

    for level in [8, 32] {
        let from = counts.read();
        let end = Instant::now() + Duration::from_secs(3);
        let s = checkout_load(&c, &shoppers, &products, level, end, &stop, false).await;
        let sent = counts.read().since(from);
        let orders = s.statuses.get(&201).copied().unwrap_or(0);
        out.insert(
            format!("loop_{level}"),
            json!({"orders": orders, "per_order": sent.per(orders), "checkout_statuses": s.summary()["statuses"].clone()}),
        );
    }

    let (mut put, mut check) = (
        crate::wire::Reading::default(),
        crate::wire::Reading::default(),
    );
    let (mut puts, mut checkouts, mut orders) = (0u64, 0u64, 0u64);
    for round in 0..40usize {
        let from = counts.read();
        let put_codes = join_all((0..8).map(|w| {
            let (c, token) = (c.clone(), shoppers[w].clone());
            let product = products[(round * 8 + w) % products.len()].clone();
            async move {
                c.http
                    .put(format!("{}/v1/cart/items/{product}", c.host))
                    .bearer_auth(token)
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await
                    .map_or(599, |r| r.status().as_u16())
            }
        }))
        .await;
        let middle = counts.read();
        let codes = join_all((0..8).map(|w| {
            let (c, token) = (c.clone(), shoppers[w].clone());
            async move {
                c.http
                    .post(format!("{}/v1/checkout", c.host))
                    .bearer_auth(token)
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .send()
                    .await
                    .map_or(599, |r| r.status().as_u16())
            }
        }))
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let to = counts.read();
        put = put.plus(middle.since(from));
        check = check.plus(to.since(middle));
        puts += put_codes.iter().filter(|s| **s < 300).count() as u64;
        checkouts += codes.len() as u64;
        orders += placed(&codes);
    }
    out.insert(
        "split_8".into(),
        json!({
            "puts": puts, "per_put": put.per(puts),
            "checkouts": checkouts, "orders": orders, "per_checkout": check.per(checkouts),
            "per_order": put.plus(check).per(orders),
        }),
    );

    let Run {
        mut services,
        env,
        dir,
        ..
    } = run;
    services.stop();
    drop_databases(&env);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Value::Object(out))
}

/// Creates `n` products (`SKU-0`…) with ample stock; their ids.
pub(crate) async fn catalog(c: &Arc<Client>, admin: &str, n: usize) -> Result<Vec<String>> {
    let made = join_all((0..n).map(|i| {
        let c = c.clone();
        let admin = admin.to_owned();
        async move {
            let body = json!({"sku": format!("SKU-{i}"), "name": format!("Product {i}"), "price": 1000 + i as i64, "currency": "USD", "stock": 1_000_000, "tags": ["bench"]});
            c.post(format!("{}/v1/products", c.host), Some(&admin), body).await
        }
    }))
    .await;
    let mut products = Vec::with_capacity(n);
    for m in made {
        let (code, body) = m?;
        if code != 201 {
            bail!("creating a product: {code} {body}");
        }
        products.push(body["id"].as_str().context("no id")?.to_owned());
    }
    Ok(products)
}

/// Registers `n` shoppers, eight at a time; their access tokens.
pub(crate) async fn shoppers(c: &Arc<Client>, n: usize) -> Result<Vec<String>> {
    let mut shoppers = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let made = join_all(chunk.iter().map(|i| {
            let c = c.clone();
            async move { c.user(&format!("shopper{i}")).await }
        }))
        .await;
        for m in made {
            shoppers.push(m?);
        }
    }
    Ok(shoppers)
}

/// pgbench on the checkout's SQL against the host's own database, at each
/// level, beside the HTTP checkout's throughput at that level (`scenarios`).
fn ceiling(
    env: &[(String, String)],
    plan: &Plan,
    scenarios: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>> {
    let mut ceiling = serde_json::Map::new();
    if !crate::ceiling::available() {
        eprintln!("pgbench is not installed: no ceiling (Debian: apt install postgresql-client)");
        return Ok(ceiling);
    }
    let url = env
        .iter()
        .find(|(k, _)| k == "SHOPEEZY_HOST_DATABASE_URL")
        .map(|(_, v)| v.clone())
        .context("no host database")?;
    // Straight to PostgreSQL, also in a run through PgBouncer: pgbench's
    // prepared statements need a session of their own, and the ceiling is
    // the database's.
    let name = database_names(&[("SHOPEEZY_HOST_DATABASE_URL".into(), url)]).remove(0);
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let catalog = crate::ceiling::prepare(&url)?;
    for &level in &plan.levels {
        eprintln!("pgbench, {level} clients");
        let mut run = crate::ceiling::run(&url, catalog, level, plan.seconds)?;
        let checkout = scenarios
            .get(&format!("checkout_spread_{level}"))
            .and_then(|s| s["ok_per_s"].as_f64())
            .unwrap_or(0.0);
        let tps = run["tps"].as_f64().unwrap_or(0.0);
        run["checkout_ok_per_s"] = json!(checkout);
        run["ratio"] = json!(if tps > 0.0 {
            (checkout / tps * 1000.0).round() / 1000.0
        } else {
            0.0
        });
        ceiling.insert(level.to_string(), run);
    }
    crate::ceiling::finish(&url)?;
    Ok(ceiling)
}

/// Drops the run's PostgreSQL or MySQL databases (on the servers
/// themselves, whatever proxy or pooler the URLs name).
pub(crate) fn drop_databases(env: &[(String, String)]) {
    for (key, url) in env {
        if !key.ends_with("DATABASE_URL") || !url.starts_with("mysql") {
            continue;
        }
        let name = database_names(&[(key.clone(), url.clone())]).remove(0);
        let _ = mysql_client()
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS `{name}`"))
            .status();
    }
    let postgres: Vec<(String, String)> = env
        .iter()
        .filter(|(_, url)| url.starts_with("postgres"))
        .cloned()
        .collect();
    for name in database_names(&postgres) {
        let _ = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .status();
    }
}

/// What the host's own metrics say about pricing with the four examples
/// (the cart views and checkouts of the with-plugins scenarios): the whole
/// pipeline (`pricing_seconds`) and each plugin call (`plugin_call_seconds`),
/// p50 and p99 in µs.
async fn in_server_pricing(c: &Client) -> Result<Value> {
    let text = c
        .http
        .get(format!("{}/metrics", c.host))
        .send()
        .await?
        .text()
        .await?;
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let Some((metric, labels)) = name.split_once('{') else {
            continue;
        };
        let quantile = match labels.rsplit_once("quantile=\"") {
            Some((_, "0.5\"}")) => "p50_us",
            Some((_, "0.99\"}")) => "p99_us",
            _ => continue,
        };
        let key = match metric {
            "pricing_seconds" => "pipeline".to_owned(),
            "plugin_call_seconds" => labels
                .split_once("plugin=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or_else(String::new, |(plugin, _)| plugin.to_owned()),
            _ => continue,
        };
        let us = value.parse::<f64>().unwrap_or(0.0) * 1e6;
        if let Some(figures) = out.entry(key).or_insert_with(|| json!({})).as_object_mut() {
            figures.insert(quantile.to_owned(), json!((us * 10.0).round() / 10.0));
        }
    }
    Ok(Value::Object(out))
}

/// Resident memory now (VmRSS) and at its peak since start (VmHWM) of each
/// service, in MiB.
fn resident(services: &Services) -> Value {
    let mut out = serde_json::Map::new();
    for (name, pid) in services.pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
        };
        out.insert(
            name.to_owned(),
            json!({"rss_mib": mib("VmRSS:"), "peak_mib": mib("VmHWM:")}),
        );
    }
    Value::Object(out)
}

/// `level` shoppers in a loop: put one unit of a product in the cart, check
/// out with a fresh key; only the checkout is timed. With `until_sold_out`,
/// a worker stops at its first 409.
pub(crate) async fn checkout_load(
    c: &Arc<Client>,
    shoppers: &Arc<Vec<String>>,
    products: &Arc<Vec<String>>,
    level: usize,
    end: Instant,
    stop: &Arc<AtomicBool>,
    until_sold_out: bool,
) -> Sample {
    stop.store(false, Ordering::SeqCst);
    timed(level, |w| {
        let (c, shoppers, products) = (c.clone(), shoppers.clone(), products.clone());
        async move {
            let mut s = Sample::default();
            let token = &shoppers[w];
            // Start from an empty cart: an earlier scenario may have left a sold-out line.
            let _ = c
                .http
                .delete(format!("{}/v1/cart", c.host))
                .bearer_auth(token)
                .send()
                .await;
            let mut n = w * 7919;
            while Instant::now() < end {
                n += 1;
                let product = &products[n % products.len()];
                let put = c
                    .http
                    .put(format!("{}/v1/cart/items/{product}", c.host))
                    .bearer_auth(token)
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await;
                let put_code = put.map_or(599, |r| r.status().as_u16());
                if put_code == 409 && until_sold_out {
                    break;
                }
                let t = Instant::now();
                let reply = c
                    .http
                    .post(format!("{}/v1/checkout", c.host))
                    .bearer_auth(token)
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .send()
                    .await;
                let code = match reply {
                    Ok(r) if r.status().is_server_error() => {
                        let status = r.status().as_u16();
                        eprintln!(
                            "checkout answered {status}: {}",
                            r.text().await.unwrap_or_default()
                        );
                        status
                    }
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 599,
                };
                s.micros.push(t.elapsed().as_micros() as u64);
                *s.statuses.entry(code).or_default() += 1;
                if code == 409 && until_sold_out {
                    break;
                }
            }
            s
        }
    })
    .await
}

/// Installs the example plugins, cycling through them: the `n`th is named
/// after its example, with `-{round}` from the second round on.
async fn install_examples(
    c: &Client,
    admin: &str,
    dir: &std::path::Path,
    which: std::ops::Range<usize>,
) -> Result<()> {
    let set = [
        (
            "attribute-sale",
            json!({"name": "attribute-sale", "hook": "promotion", "config": {}}),
        ),
        (
            "promo-codes",
            json!({"name": "promo-codes", "hook": "promotion", "config": {"codes": [{"code": "SAVE10", "percent": 1000}]}}),
        ),
        (
            "purchase-limits",
            json!({"name": "purchase-limits", "hook": "validation", "config": {"max_per_product": 100}}),
        ),
        (
            "volume-pricing",
            json!({"name": "volume-pricing", "hook": "pricing", "config": {"tiers": [{"min_quantity": 3, "percent_off": 5}]}}),
        ),
    ];
    for n in which {
        let (file, manifest) = &set[n % set.len()];
        let mut manifest = manifest.clone();
        if n >= set.len() {
            manifest["name"] = json!(format!("{file}-{}", n / set.len() + 1));
        }
        let wasm = std::fs::read(dir.join(format!("{}.wasm", file.replace('-', "_"))))?;
        let form = reqwest::multipart::Form::new()
            .part(
                "manifest",
                reqwest::multipart::Part::text(manifest.to_string())
                    .mime_str("application/json")?,
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(wasm).file_name("p.wasm"),
            );
        let resp = c
            .http
            .post(format!("{}/v1/plugins", c.host))
            .bearer_auth(admin)
            .multipart(form)
            .send()
            .await?;
        if resp.status().as_u16() != 201 {
            bail!(
                "installing {file}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub(crate) fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "rustc": version("rustc", "--version"),
        "postgres": version("psql", "--version"),
        "mysql": mysql_client()
            .args(["-N", "-B", "-e", "SELECT VERSION()"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| format!("MariaDB/MySQL server {}", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default(),
        "kernel": version("uname", "-r"),
        "date_utc": version("date", "-u"),
    })
}

fn markdown(report: &Value) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "# Benchmark results\n\nCommand: `{}`\n\n",
        report["command"].as_str().unwrap_or("")
    ));
    let m = &report["machine"];
    let servers: Vec<&str> = [&m["postgres"], &m["mysql"]]
        .into_iter()
        .filter_map(|v| v.as_str().filter(|s| !s.is_empty()))
        .collect();
    md.push_str(&format!(
        "Machine: {} cores ({}), {} GiB, {}, {}, kernel {}; {}.\nThe load generator, the services and the database share the machine.\n\n",
        m["cores"], m["cpu"].as_str().unwrap_or(""), m["memory_gib"], m["rustc"].as_str().unwrap_or(""), servers.join(", "), m["kernel"].as_str().unwrap_or(""), m["date_utc"].as_str().unwrap_or("")
    ));
    let empty = serde_json::Map::new();
    for (backend, result) in report["backends"].as_object().unwrap_or(&empty) {
        md.push_str(&format!("## {backend}\n\n| scenario | ok/s | p50 ms | p95 ms | p99 ms | requests | 5xx | statuses |\n|---|---|---|---|---|---|---|---|\n"));
        for (name, v) in result["scenarios"].as_object().unwrap_or(&empty) {
            let extra = match (v.get("sold"), v.get("stock")) {
                (Some(sold), Some(stock)) => format!(" (sold {sold} of {stock})"),
                _ => String::new(),
            };
            md.push_str(&format!(
                "| {name}{extra} | {} | {} | {} | {} | {} | {} | {} |\n",
                v["ok_per_s"],
                v["p50_ms"],
                v["p95_ms"],
                v["p99_ms"],
                v["requests"],
                v["errors_5xx"],
                v["statuses"]
            ));
        }
        md.push_str(&checkout_table(backend, result));
        md.push_str(&statements_table(backend, &result["statements"]));
        let ceiling = result["ceiling"].as_object().unwrap_or(&empty);
        if !matches!(backend.as_str(), "postgres" | "pgbouncer") {
            md.push_str(&format!(
                "\n### {backend}: checkout against its ceiling\n\nn/a: the ceiling is pgbench's, on PostgreSQL only.\n"
            ));
        } else if !ceiling.is_empty() {
            md.push_str(&format!(
                "\n### {backend}: checkout against its ceiling\n\nThe ceiling is `bench/pgbench/checkout.sql` (the SQL of one shopper iteration: add to cart, check out) run by pgbench against the same database after the HTTP scenarios, with the services stopped (straight to PostgreSQL, also after a run through PgBouncer).\n\n| shoppers | checkout ok/s | pgbench tps | ratio | pgbench p50 ms | p99 ms | retried | failed |\n|---|---|---|---|---|---|---|---|\n"
            ));
            let mut levels: Vec<_> = ceiling.keys().collect();
            levels.sort_by_key(|k| k.parse::<usize>().unwrap_or(0));
            for level in levels {
                let v = &ceiling[level];
                md.push_str(&format!(
                    "| {level} | {} | {} | {} | {} | {} | {} | {} |\n",
                    v["checkout_ok_per_s"],
                    v["tps"],
                    v["ratio"],
                    v["p50_ms"],
                    v["p99_ms"],
                    v["retried"],
                    v["failed"]
                ));
            }
        }
        md.push_str(&format!("\n### {backend}: resident memory, MiB (peak since start in brackets)\n\n| service | idle | after the load | ten plugins installed |\n|---|---|---|---|\n"));
        let memory = &result["memory"];
        for service in memory["idle"].as_object().unwrap_or(&empty).keys() {
            let cell = |phase: &str| {
                let v = &memory[phase][service];
                format!("{} ({})", v["rss_mib"], v["peak_mib"])
            };
            md.push_str(&format!(
                "| {service} | {} | {} | {} |\n",
                cell("idle"),
                cell("after_load"),
                cell("ten_plugins")
            ));
        }
        if let Some(pricing) = result["pricing_in_server"]
            .as_object()
            .filter(|p| !p.is_empty())
        {
            md.push_str(&format!("\n### {backend}: pricing inside the host, four examples (its own metrics)\n\n| what | p50 µs | p99 µs |\n|---|---|---|\n"));
            for (what, v) in pricing {
                md.push_str(&format!("| {what} | {} | {} |\n", v["p50_us"], v["p99_us"]));
            }
        }
        md.push('\n');
    }
    md.push_str("## Plugins: instantiate and call (fresh instance per call, optimised build)\n\n| plugin | lines | p50 µs | p99 µs | fuel |\n|---|---|---|---|---|\n");
    let by_lines = |sizes: &serde_json::Map<String, Value>| {
        let mut keys: Vec<_> = sizes.keys().cloned().collect();
        keys.sort_by_key(|k| k.parse::<usize>().unwrap_or(0));
        keys
    };
    for (name, sizes) in report["plugins"].as_object().unwrap_or(&empty) {
        let sizes = sizes.as_object().unwrap_or(&empty);
        for k in by_lines(sizes) {
            let v = &sizes[&k];
            md.push_str(&format!(
                "| {name} | {k} | {} | {} | {} |\n",
                v["p50_us"], v["p99_us"], v["fuel"]
            ));
        }
    }
    md.push_str("\n## Pricing pipeline: all four examples versus none\n\n| lines | none p50 µs | none p99 µs | all p50 µs | all p99 µs | added p50 µs |\n|---|---|---|---|---|---|\n");
    let pipeline = &report["pipeline"];
    if let Some(none) = pipeline["none"].as_object() {
        for k in by_lines(none) {
            let (a, b) = (&pipeline["none"][&k], &pipeline["all_examples"][&k]);
            let added = b["p50_us"].as_f64().unwrap_or(0.0) - a["p50_us"].as_f64().unwrap_or(0.0);
            md.push_str(&format!(
                "| {k} | {} | {} | {} | {} | {:.1} |\n",
                a["p50_us"], a["p99_us"], b["p50_us"], b["p99_us"], added
            ));
        }
    }
    md
}

/// Checkout per level: orders/s, latency and CPU per order per process.
fn checkout_table(backend: &str, result: &Value) -> String {
    let processes = ["host", "account", "pgbouncer", "database", "load generator"];
    let database = match backend {
        "sqlite" => "none (SQLite runs in the services)",
        "mysql" => {
            "the MariaDB/MySQL server, its threads summed (those serving connections to other databases left out)"
        }
        _ => "PostgreSQL, the postmaster and its children (backends of other databases left out)",
    };
    let mut md = format!(
        "\n### {backend}: checkout, orders/s and CPU per placed order\n\n\
         One iteration of a shopper puts a line in the cart and checks out (only the checkout is timed). \
         CPU: utime + stime of each process over the level (`/proc/<pid>/stat`), divided by the orders placed in it; \
         database is {database}, the load generator is this process.\n\n\
         | scenario | shoppers | orders | orders/s | p50 ms | p95 ms | p99 ms | 5xx | CPU ms/order: host | account | pgbouncer | database | load generator | total |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let empty = serde_json::Map::new();
    let scenarios = result["scenarios"].as_object().unwrap_or(&empty);
    for kind in ["spread", "hot"] {
        let prefix = format!("checkout_{kind}_");
        let mut levels: Vec<usize> = scenarios
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
            .collect();
        levels.sort_unstable();
        for level in levels {
            let v = &scenarios[&format!("{prefix}{level}")];
            let cpu = &v["cpu_ms_per_order"];
            let cells: Vec<String> = processes
                .iter()
                .chain(std::iter::once(&"total"))
                .map(|p| {
                    cpu.get(*p).map_or_else(
                        || "–".to_owned(),
                        |x| format!("{:.2}", x.as_f64().unwrap_or(0.0)),
                    )
                })
                .collect();
            md.push_str(&format!(
                "| {kind} | {level} | {} | {} | {} | {} | {} | {} | {} |\n",
                v["orders"],
                v["ok_per_s"],
                v["p50_ms"],
                v["p95_ms"],
                v["p99_ms"],
                v["errors_5xx"],
                cells.join(" | ")
            ));
        }
    }
    md
}

/// What the host sent its database per order (the calibration pass).
fn statements_table(backend: &str, statements: &Value) -> String {
    if statements.is_null() {
        return String::new();
    }
    let mysql = backend == "mysql";
    let (what, columns) = if mysql {
        (
            "command packets: `COM_QUERY` (a text statement string: `BEGIN`, `COMMIT`…) plus `COM_STMT_EXECUTE` are statements; \
             `COM_STMT_PREPARE` is a statement prepared on the server; `COM_PING`, sqlx's check of a pooled connection, is a round trip but no statement",
            "of which COM_QUERY | COM_STMT_EXECUTE | prepares / order | pings / order |\n|---|---|---|---|---|---|---|\n",
        )
    } else {
        (
            "frontend messages: simple Query `Q` plus extended Execute `E` are statements; Parse `P` is a statement prepared on the server",
            "of which Q | E | parses / order |\n|---|---|---|---|---|---|\n",
        )
    };
    let mut md = format!(
        "\n### {backend}: statements the host sends per order\n\n\
         A calibration pass on a system of its own, the host's database connections through a counting proxy \
         ({what}). \
         Background while idle: {} statements/s ({} parses/s), counted in the figures below.\n\n\
         | pass | orders | statements / order | {columns}",
        statements["idle_per_s"]["statements"], statements["idle_per_s"]["parse"]
    );
    let row = |name: &str, orders: &Value, v: &Value| {
        let ping = if mysql {
            format!(" {} |", v["ping"])
        } else {
            String::new()
        };
        format!(
            "| {name} | {orders} | {} | {} | {} | {} |{ping}\n",
            v["statements"], v["query"], v["execute"], v["parse"]
        )
    };
    for level in [8, 32] {
        let v = &statements[&format!("loop_{level}")];
        if !v.is_null() {
            md.push_str(&row(
                &format!("{level} shoppers: put a line, check out (+ relay)"),
                &v["orders"],
                &v["per_order"],
            ));
        }
    }
    let split = &statements["split_8"];
    if !split.is_null() {
        md.push_str(&row(
            "8 in lock step: per put",
            &split["puts"],
            &split["per_put"],
        ));
        md.push_str(&row(
            "8 in lock step: per checkout request (+ relay)",
            &split["checkouts"],
            &split["per_checkout"],
        ));
        md.push_str(&row(
            "8 in lock step: per order",
            &split["orders"],
            &split["per_order"],
        ));
    }
    md
}
