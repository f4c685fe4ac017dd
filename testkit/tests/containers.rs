//! The container images (`deploy/Containerfile`) and the compose files.
//!
//! The images are built from the binaries this very test build made: `cargo
//! xtask test` builds for `x86_64-unknown-linux-musl`, so the services'
//! binaries beside this test binary are static, and `deploy/build-images.sh`
//! strips them into a `FROM scratch` image each (no second compile). The
//! services then run from those images with podman, on the host's network,
//! against the machine's real servers, and a shopper goes through them:
//! register, sign in, a seller's product, the cart, checkout, the order.
//!
//! Every test here builds its images under a tag of its own and removes its
//! containers, volumes and tags when it ends, failed or not (the containers'
//! logs are printed first when it failed).
//!
//! Without podman, or on a build that is not for musl (a plain `cargo
//! test`), the image tests are skipped with a `SKIPPED` line; without
//! `docker-compose`, the compose check is. Under `CI=true` each fails
//! instead. In a sandbox without a usable crun (cgroups v1 in hybrid mode),
//! podman runs with `runc` when it is installed; the tests write their own
//! `containers.conf` (no default ulimits, cgroupfs) and point
//! `CONTAINERS_CONF` at it, so the machine's configuration is not touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use shopeezy_testkit::servers::{self, fresh_postgres, skip};
use shopeezy_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, Accounts, User, eventually, id_of, send};
use uuid::Uuid;

const SERVICES: [&str; 3] = ["account", "host", "notifier"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit is in the workspace")
        .to_owned()
}

// ---------------------------------------------------------------- podman

/// podman with the tests' own `containers.conf`.
struct Podman {
    conf: tempfile::TempDir,
}

impl Podman {
    /// `None` (skipped, or failing under CI) when podman does not run, or
    /// when this build is not for musl (its binaries would need glibc).
    fn find() -> Option<Self> {
        if !cfg!(target_env = "musl") {
            return skip(
                "the images hold the musl build's binaries and this test build is not for musl (cargo xtask test builds for x86_64-unknown-linux-musl)",
                "the container tests run on the musl build (cargo xtask test), not this one",
            );
        }
        if let Err(e) = Command::new("podman").arg("--version").output() {
            return skip(
                &format!("podman is not installed ({e}; Debian: apt install podman runc)"),
                &format!("podman is required under CI=true but could not be run: {e}"),
            );
        }
        let conf = tempfile::Builder::new()
            .prefix("shopeezy-podman-")
            .tempdir()
            .expect("a temporary folder");
        // runc where it is installed: crun (podman's default on Debian)
        // refuses cgroups v1 in hybrid mode, as in this sandbox.
        let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
            .iter()
            .any(|p| Path::new(p).exists());
        let engine = if runc {
            "[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n"
        } else {
            "[engine]\ncgroup_manager = \"cgroupfs\"\n"
        };
        std::fs::write(
            conf.path().join("containers.conf"),
            format!("[containers]\ndefault_ulimits = []\n\n{engine}"),
        )
        .expect("containers.conf is written");
        Some(Self { conf })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.conf.path().join("containers.conf"));
        cmd
    }

    /// Runs `podman args…`; its output, whatever its status.
    fn output(&self, args: &[&str]) -> Output {
        tokio::task::block_in_place(|| self.command().args(args).output()).expect("podman runs")
    }

    /// Runs `podman args…`, asserting success; its standard output.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// What one test made with podman, removed when dropped (its containers'
/// logs printed first when the test failed).
struct Made<'a> {
    podman: &'a Podman,
    id: String,
    tag: String,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl<'a> Made<'a> {
    fn new(podman: &'a Podman) -> Self {
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            podman,
            tag: format!("test-{id}"),
            id,
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn image(&self, service: &str) -> String {
        format!("localhost/shopeezy-{service}:{}", self.tag)
    }

    /// Builds the three images from the binaries beside this test binary.
    fn build_images(&self) {
        let bin_dir = std::env::current_exe()
            .expect("the test binary")
            .parent()
            .and_then(Path::parent)
            .expect("target/<triple>/<profile>/deps")
            .to_owned();
        let started = std::time::Instant::now();
        let out = tokio::task::block_in_place(|| {
            Command::new("bash")
                .current_dir(repo_root())
                .arg("deploy/build-images.sh")
                .arg(&bin_dir)
                .arg(&self.tag)
                .env(
                    "CONTAINERS_CONF",
                    self.podman.conf.path().join("containers.conf"),
                )
                .output()
        })
        .expect("bash runs");
        assert!(
            out.status.success(),
            "deploy/build-images.sh {} {} failed ({}): {}{}",
            bin_dir.display(),
            self.tag,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "images built in {:.1} s:\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout)
        );
        for service in SERVICES {
            let image = self.image(service);
            // Non-root, with the health check kept (docker format).
            let user =
                self.podman
                    .ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
            assert_eq!(user, "65532:65532", "{image} runs as");
            let check = self.podman.ok(&[
                "image",
                "inspect",
                "--format",
                "{{.HealthCheck.Test}}",
                &image,
            ]);
            assert!(
                check.contains("healthcheck"),
                "{image}'s HEALTHCHECK: {check}"
            );
        }
    }

    /// A named volume of this test (the image's /data, owned by its user,
    /// is copied into it on first use); its name.
    fn volume(&mut self, service: &str) -> String {
        let name = format!("shopeezy-test-{}-{service}", self.id);
        self.podman.ok(&["volume", "create", &name]);
        self.volumes.push(name.clone());
        name
    }

    /// Where a volume's files are on this machine.
    fn volume_dir(&self, volume: &str) -> PathBuf {
        PathBuf::from(
            self.podman
                .ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume]),
        )
    }

    /// Starts `service` from its image on the host's network with `env`
    /// and `/data` on `volume`; the container's name.
    fn run(&mut self, service: &str, volume: &str, env: &[(&str, String)]) -> String {
        let name = format!("shopeezy-test-{}-{service}", self.id);
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "host",
            "--volume",
            &format!("{volume}:/data"),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (key, value) in env {
            args.push("--env".into());
            args.push(format!("{key}={value}"));
        }
        args.push(self.image(service));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.containers.push(name.clone());
        self.podman.ok(&args);
        name
    }

    /// Waits until `container` answers 200 on `url`/readyz (it must keep
    /// running meanwhile).
    async fn wait_ready(&self, container: &str, url: &str) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = client.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            let running = self.podman.ok(&[
                "container",
                "inspect",
                "--format",
                "{{.State.Running}}",
                container,
            ]);
            assert_eq!(running, "true", "{container} stopped before it was ready");
            assert!(
                tokio::time::Instant::now() < deadline,
                "{container} was not ready at {url}/readyz within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts that the image's own health check passes in `container`.
    fn assert_healthy(&self, container: &str) {
        let out = self.podman.output(&["healthcheck", "run", container]);
        assert!(
            out.status.success(),
            "podman healthcheck run {container}: {} {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let run = |args: &[&str]| {
            let _ = self
                .podman
                .command()
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        for container in &self.containers {
            if failed {
                let logs = self
                    .podman
                    .command()
                    .args(["logs", "--tail", "60", container])
                    .output();
                if let Ok(logs) = logs {
                    eprintln!(
                        "---- {container}'s last logs\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
            }
            run(&["rm", "--force", "--time", "0", container]);
        }
        for volume in &self.volumes {
            run(&["volume", "rm", "--force", volume]);
        }
        for service in SERVICES {
            run(&["rmi", &self.image(service)]);
        }
    }
}

/// A free port on 127.0.0.1 (the containers share the host's network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What every account service of these tests is given: its addresses, the
/// testkit's admin, cheap password hashing.
fn account_env(http: u16, grpc: u16) -> Vec<(&'static str, String)> {
    vec![
        ("SHOPEEZY_ACCOUNT_HTTP_ADDR", format!("127.0.0.1:{http}")),
        ("SHOPEEZY_ACCOUNT_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
        ("SHOPEEZY_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("SHOPEEZY_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("SHOPEEZY_ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("SHOPEEZY_ARGON2_ITERATIONS", "1".to_owned()),
    ]
}

/// Register, sign in, a seller's product, the cart, checkout and the order,
/// through the account service at `account` and the host at `host`; the
/// customer and the order's id.
async fn shop(account: &str, host: &str) -> (User, Uuid) {
    let client = reqwest::Client::new();
    let accounts = Accounts::sign_in(client.clone(), account.to_owned()).await;
    let seller = accounts.seller().await;
    // The host follows the account service's keys and role changes: the
    // seller's fresh token is accepted as soon as the host has them.
    let sku = format!("mug-{}", Uuid::new_v4().simple());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mug = loop {
        let reply = send(
            client
                .post(format!("{host}/v1/products"))
                .bearer_auth(&seller.token)
                .json(&json!({"sku": sku, "name": "Mug", "price": 1999, "currency": "USD", "stock": 5})),
        )
        .await;
        if reply.status.as_u16() == 201 {
            break reply.id();
        }
        assert!(
            reply.status.as_u16() == 403 || reply.status.is_server_error(),
            "creating a product: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host did not accept the seller within 10 s: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // register → login
    let (customer, _email) = accounts.customer_with_email().await;
    let cart = send(
        client
            .put(format!("{host}/v1/cart/items/{mug}"))
            .bearer_auth(&customer.token)
            .json(&json!({"quantity": 2})),
    )
    .await;
    cart.expect(200);
    assert_eq!(cart.body["total"], 2 * 1999, "{}", cart.body);

    let placed = send(
        client
            .post(format!("{host}/v1/checkout"))
            .bearer_auth(&customer.token)
            .header("Idempotency-Key", "containers-1"),
    )
    .await;
    placed.expect(201);
    assert_eq!(placed.body["status"], "placed");
    assert_eq!(placed.body["total"], 2 * 1999);
    let order = placed.id();

    let read = send(
        client
            .get(format!("{host}/v1/orders/{order}"))
            .bearer_auth(&customer.token),
    )
    .await;
    read.expect(200);
    assert_eq!(read.body["user_id"], customer.id.to_string());
    let product = send(client.get(format!("{host}/v1/products/{mug}"))).await;
    product.expect(200);
    assert_eq!(product.body["stock"], 3);
    assert_eq!(id_of(&product.body), mug);
    (customer, order)
}

// ---------------------------------------------------------------- tests

/// The account service, the host and the notifier from their images, on
/// PostgreSQL (a fresh database each), Redis and RabbitMQ: a checkout goes
/// through, and its event reaches the notifier's container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_run_the_system_on_the_production_backends() {
    let Some(podman) = Podman::find() else {
        return;
    };
    let Some(account_db) = fresh_postgres().await else {
        return;
    };
    let Some(host_db) = fresh_postgres().await else {
        return;
    };
    let Some(notifier_db) = fresh_postgres().await else {
        return;
    };
    let Some(redis) = servers::reachable_redis().await else {
        return;
    };
    let Some(amqp) = servers::reachable_amqp().await else {
        return;
    };
    // Declared before `made`, so removed after the containers are (a
    // running notifier would declare its queue again).
    let broker = Broker::new(&amqp);
    let mut made = Made::new(&podman);
    made.build_images();

    let (account_http, account_grpc, host_http, notifier_http) =
        (free_port(), free_port(), free_port(), free_port());
    let events = [
        ("SHOPEEZY_AMQP_URL", amqp.clone()),
        ("SHOPEEZY_AMQP_EXCHANGE", broker.exchange.clone()),
    ];
    let mut env = account_env(account_http, account_grpc);
    env.extend([
        ("SHOPEEZY_ACCOUNT_DATABASE_URL", account_db.url.clone()),
        ("SHOPEEZY_ACCOUNT_DATABASE_MAX_CONNECTIONS", "4".to_owned()),
        ("SHOPEEZY_REDIS_URL", redis),
        ("SHOPEEZY_REDIS_KEY_PREFIX", servers::unique_prefix()),
    ]);
    env.extend(events.clone());
    let account_data = made.volume("account");
    let account = made.run("account", &account_data, &env);
    let account_url = format!("http://127.0.0.1:{account_http}");
    made.wait_ready(&account, &account_url).await;

    let mut env = vec![
        ("SHOPEEZY_HOST_HTTP_ADDR", format!("127.0.0.1:{host_http}")),
        ("SHOPEEZY_HOST_DATABASE_URL", host_db.url.clone()),
        ("SHOPEEZY_HOST_DATABASE_MAX_CONNECTIONS", "4".to_owned()),
        (
            "SHOPEEZY_AUTH_GRPC_URL",
            format!("http://127.0.0.1:{account_grpc}"),
        ),
    ];
    env.extend(events.clone());
    let host_data = made.volume("host");
    let host = made.run("host", &host_data, &env);

    let mut env = vec![
        (
            "SHOPEEZY_NOTIFIER_HTTP_ADDR",
            format!("127.0.0.1:{notifier_http}"),
        ),
        ("SHOPEEZY_NOTIFIER_DATABASE_URL", notifier_db.url.clone()),
        ("SHOPEEZY_NOTIFIER_DATABASE_MAX_CONNECTIONS", "4".to_owned()),
        ("SHOPEEZY_NOTIFIER_QUEUE", broker.queue.clone()),
        (
            "SHOPEEZY_AUTH_GRPC_URL",
            format!("http://127.0.0.1:{account_grpc}"),
        ),
    ];
    env.extend(events);
    let notifier_data = made.volume("notifier");
    let notifier = made.run("notifier", &notifier_data, &env);

    let host_url = format!("http://127.0.0.1:{host_http}");
    let notifier_url = format!("http://127.0.0.1:{notifier_http}");
    made.wait_ready(&host, &host_url).await;
    made.wait_ready(&notifier, &notifier_url).await;
    // Its queue is bound once it reports the broker: events published
    // from then on reach it.
    let bound = eventually(Duration::from_secs(30), || {
        let request = reqwest::Client::new().get(format!("{notifier_url}/readyz"));
        async move { send(request).await.body["checks"]["broker"]["status"] == "ok" }
    })
    .await;
    assert!(bound, "the notifier did not report its broker within 30 s");
    for container in [&account, &host, &notifier] {
        made.assert_healthy(container);
    }

    let (customer, order) = shop(&account_url, &host_url).await;

    // The order's event went from the host's outbox through RabbitMQ to
    // the notifier.
    let client = reqwest::Client::new();
    let subject = format!("orders/{order}");
    let notified = eventually(Duration::from_secs(20), || {
        let request = client
            .get(format!("{notifier_url}/v1/notifications"))
            .bearer_auth(&customer.token);
        let subject = subject.clone();
        async move {
            let reply = send(request).await;
            reply.status.is_success()
                && reply.body["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|n| n["subject"] == subject))
        }
    })
    .await;
    assert!(
        notified,
        "the notifier did not report {subject} within 20 s"
    );

    // The account service, user 65532, kept its generated signing key in
    // its /data volume.
    let key = made.volume_dir(&account_data).join("jwt-ed25519.pem");
    let meta = std::fs::metadata(&key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65532);
}

/// The account service and the host from their images with nothing
/// configured but their addresses and the admin: SQLite under /data
/// (volumes owned by the images' user), revocation in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_run_on_their_embedded_defaults() {
    let Some(podman) = Podman::find() else {
        return;
    };
    let mut made = Made::new(&podman);
    made.build_images();
    let (account_http, account_grpc, host_http) = (free_port(), free_port(), free_port());
    let account_data = made.volume("account");
    let account = made.run(
        "account",
        &account_data,
        &account_env(account_http, account_grpc),
    );
    let host_data = made.volume("host");
    let host = made.run(
        "host",
        &host_data,
        &[
            ("SHOPEEZY_HOST_HTTP_ADDR", format!("127.0.0.1:{host_http}")),
            (
                "SHOPEEZY_AUTH_GRPC_URL",
                format!("http://127.0.0.1:{account_grpc}"),
            ),
        ],
    );
    let account_url = format!("http://127.0.0.1:{account_http}");
    let host_url = format!("http://127.0.0.1:{host_http}");
    made.wait_ready(&account, &account_url).await;
    made.wait_ready(&host, &host_url).await;
    made.assert_healthy(&account);
    made.assert_healthy(&host);

    shop(&account_url, &host_url).await;

    for (volume, files) in [
        (&account_data, &["account.db", "jwt-ed25519.pem"][..]),
        (&host_data, &["host.db"][..]),
    ] {
        let dir = made.volume_dir(volume);
        for file in files {
            let meta = std::fs::metadata(dir.join(file))
                .unwrap_or_else(|e| panic!("{} in {volume}: {e}", file));
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65532, "{file}");
        }
    }
}

/// `compose.yaml` and `compose.embedded.yaml` pass the Compose file schema
/// (`docker-compose config -q`, which validates without an engine: their
/// third-party images cannot be pulled here), name the images
/// `deploy/build-images.sh` tags, and use only `SHOPEEZY_*` variables the
/// README documents.
#[test]
fn the_compose_files_are_valid() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for file in ["compose.yaml", "compose.embedded.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("the compose file");
        for service in ["account", "host"] {
            let image = format!("image: localhost/shopeezy-{service}:latest");
            assert!(text.contains(&image), "{file} has no `{image}`");
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("SHOPEEZY_") {
                assert!(
                    readme.contains(&format!("`{word}`")),
                    "{file} uses {word}, which README.md does not document"
                );
            }
        }
    }
    let validated = Command::new("docker-compose")
        .current_dir(&root)
        .args(["-f", "compose.yaml", "config", "-q"])
        .output();
    let out = match validated {
        Ok(out) => out,
        Err(e) => {
            let _: Option<()> = skip(
                &format!(
                    "docker-compose is not installed ({e}; Debian: apt install docker-compose)"
                ),
                &format!("docker-compose is required under CI=true but could not be run: {e}"),
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "compose.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("docker-compose")
        .current_dir(&root)
        .args(["-f", "compose.embedded.yaml", "config", "-q"])
        .output()
        .expect("docker-compose runs");
    assert!(
        out.status.success(),
        "compose.embedded.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- RabbitMQ

/// The exchange and the notifier queue of one test, on the real RabbitMQ;
/// removed (with the queue's dead-letter pair) when dropped.
struct Broker {
    url: String,
    exchange: String,
    queue: String,
}

impl Broker {
    fn new(url: &str) -> Self {
        let id = Uuid::new_v4().simple();
        Self {
            url: url.to_owned(),
            exchange: format!("shopeezy.events.test.{id}"),
            queue: format!("shopeezy.notifier.test.{id}"),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let (url, exchange, queue) = (self.url.clone(), self.exchange.clone(), self.queue.clone());
        shopeezy_testkit::servers::run_to_end(async move {
            let Ok(connection) =
                shopeezy_common::events::amqp::connect(&url, "shopeezy containers test").await
            else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                for queue in [queue.clone(), format!("{queue}.dead")] {
                    let _ = channel
                        .queue_delete(&queue, QueueDeleteOptions::default())
                        .await;
                }
                for exchange in [format!("{queue}.dlx"), exchange] {
                    let _ = channel
                        .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                        .await;
                }
            }
            shopeezy_common::events::amqp::close(&connection).await;
        });
    }
}
