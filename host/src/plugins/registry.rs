//! The registry of installed plugins: rows in the host's database
//! (`store::plugins`; the component bytes too, so every replica runs the
//! same versions) and, in memory, an immutable snapshot of the enabled
//! plugins, compiled and pre-instantiated, swapped atomically when anything
//! changes.
//!
//! Every change bumps `plugin_generation` in its own transaction; each
//! replica polls that one row (every 250 ms by default) and reloads when it
//! moved, compiling only versions it has not compiled before (cached by
//! content hash). A request takes one snapshot and uses it throughout, so it
//! sees the old or the new set of plugins, never a mix.
//!
//! The cache holds only what is in force: after each reload, a version no
//! enabled plugin uses any more (uninstalled, replaced, disabled) is
//! dropped, and its compiled code is freed once the last request using the
//! old snapshot ends. Compiles go through [`Compiler`], which bounds their
//! cost. At start-up the installed plugins are compiled in the background
//! (see [`Registry::load`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use shopeezy_common::db::{Db, now};
use uuid::Uuid;

use super::compile::{CompileLimits, Compiler};
use super::runtime::{Compiled, Runtime};
use super::stats::{PluginStats, Stats};
use crate::domain::{Hook, NewPlugin, Plugin, Scope, Settings};
use crate::error::Result;
use crate::store::plugins;

/// An enabled plugin, ready to call.
#[derive(Debug, Clone)]
pub struct Installed {
    /// What it is.
    pub plugin: Plugin,
    /// Its config as the JSON text the plugin receives.
    pub config_text: String,
    /// Its compiled component.
    pub compiled: Compiled,
    /// Its call statistics on this replica, which the pipeline records into.
    pub stats: Arc<PluginStats>,
}

/// The enabled plugins at one generation, each hook's in running order.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The generation this snapshot reflects.
    pub generation: i64,
    /// Pricing plugins, by priority.
    pub pricing: Vec<Arc<Installed>>,
    /// Promotion plugins, by priority.
    pub promotion: Vec<Arc<Installed>>,
    /// Validation plugins, by priority.
    pub validation: Vec<Arc<Installed>>,
}

impl Snapshot {
    /// Whether no plugin is enabled.
    pub fn is_empty(&self) -> bool {
        self.pricing.is_empty() && self.promotion.is_empty() && self.validation.is_empty()
    }
}

/// A compiled version's key: the component's SHA-256 and the hook's world.
type VersionKey = (String, Hook);

/// Most compiled versions kept that no plugin has used yet: compiled at an
/// upload that then failed (a name taken) or for a dry-run of a disabled
/// plugin. The oldest go first.
const UNUSED_KEPT: usize = 4;

/// The compiled versions in memory.
#[derive(Default)]
struct Cache {
    entries: HashMap<VersionKey, Cached>,
    /// Counts insertions, to find the oldest unused entries.
    inserted: u64,
}

struct Cached {
    compiled: Compiled,
    /// Whether a published snapshot used it: once it no longer does, it goes.
    used: bool,
    order: u64,
}

impl Cache {
    fn get(&self, key: &VersionKey) -> Option<Compiled> {
        self.entries.get(key).map(|c| c.compiled.clone())
    }

    /// Adds a compiled version; `used` when it is compiled for the
    /// snapshot being built (so it is not taken for an unused one).
    fn insert(&mut self, key: VersionKey, compiled: Compiled, used: bool) {
        self.inserted += 1;
        let order = self.inserted;
        self.entries
            .entry(key)
            .or_insert(Cached {
                compiled,
                used,
                order,
            })
            .used |= used;
        self.forget_unused(|_| false);
    }

    /// Keeps what `in_use` holds (marked used), what was never used yet
    /// (the newest few), and drops the rest.
    fn retain(&mut self, in_use: &HashSet<VersionKey>) {
        for (key, cached) in &mut self.entries {
            cached.used |= in_use.contains(key);
        }
        self.forget_unused(|key| !in_use.contains(key));
    }

    /// Drops the entries `gone` says are out of use, and all but the newest
    /// [`UNUSED_KEPT`] entries never used.
    fn forget_unused(&mut self, gone: impl Fn(&VersionKey) -> bool) {
        self.entries.retain(|key, c| !(c.used && gone(key)));
        let mut unused: Vec<(u64, VersionKey)> = self
            .entries
            .iter()
            .filter(|(_, c)| !c.used)
            .map(|(k, c)| (c.order, k.clone()))
            .collect();
        if unused.len() > UNUSED_KEPT {
            unused.sort_unstable_by_key(|(order, _)| *order);
            for (_, key) in &unused[..unused.len() - UNUSED_KEPT] {
                self.entries.remove(key);
            }
        }
        metrics::gauge!("plugin_compiled_versions").set(self.entries.len() as f64);
    }
}

/// The registry.
pub struct Registry {
    db: Db,
    runtime: Runtime,
    compiler: Compiler,
    current: RwLock<Arc<Snapshot>>,
    /// The generation of each snapshot published, for waiting on the first.
    published: tokio::sync::watch::Sender<i64>,
    cache: Mutex<Cache>,
    reload: tokio::sync::Mutex<()>,
    stats: Stats,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("generation", &self.snapshot().generation)
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    /// A registry over `db` whose compiles are bounded by the default
    /// [`CompileLimits`]. With no plugin enabled it is loaded on return;
    /// otherwise their components are compiled in the background (a large
    /// set takes seconds) and [`Registry::loaded`] says when they are in
    /// force: until then the snapshot is empty, at generation -1, and a
    /// caller that prices must wait ([`Registry::wait_loaded`]).
    pub async fn load(db: Db, runtime: Runtime) -> anyhow::Result<Arc<Self>> {
        Self::load_with(db, runtime, CompileLimits::default()).await
    }

    /// As [`Registry::load`], with these compile limits.
    pub async fn load_with(
        db: Db,
        runtime: Runtime,
        limits: CompileLimits,
    ) -> anyhow::Result<Arc<Self>> {
        let registry = Arc::new(Self {
            db,
            runtime,
            compiler: Compiler::new(limits),
            current: RwLock::new(Arc::new(Snapshot {
                generation: -1,
                ..Snapshot::default()
            })),
            published: tokio::sync::watch::Sender::new(-1),
            cache: Mutex::new(Cache::default()),
            reload: tokio::sync::Mutex::new(()),
            stats: Stats::new(),
        });
        let enabled = plugins::count_enabled(&registry.db).await?;
        if enabled == 0 {
            registry
                .refresh()
                .await
                .map_err(|e| anyhow::anyhow!("loading plugins: {e}"))?;
        } else {
            tracing::info!(
                plugins = enabled,
                "compiling the installed plugins in the background"
            );
            let background = Arc::clone(&registry);
            tokio::spawn(async move {
                if let Err(e) = background.refresh().await {
                    // The watcher tries again on its next tick.
                    tracing::warn!(error = %e, "loading plugins failed; trying again");
                }
            });
        }
        Ok(registry)
    }

    /// Whether the enabled plugins were compiled and are in force (false
    /// only between a start with plugins installed and their first load).
    pub fn loaded(&self) -> bool {
        self.snapshot().generation >= 0
    }

    /// Waits up to `within` for [`Registry::loaded`]; whether it is.
    pub async fn wait_loaded(&self, within: Duration) -> bool {
        let mut published = self.published.subscribe();
        matches!(
            tokio::time::timeout(within, published.wait_for(|g| *g >= 0)).await,
            Ok(Ok(_))
        )
    }

    /// How many compiled versions are in memory: those of the enabled
    /// plugins, and at most a few compiled but not (yet) installed. Also
    /// the `plugin_compiled_versions` gauge.
    pub fn compiled_versions(&self) -> usize {
        lock(&self.cache).entries.len()
    }

    /// The limits compiles are held to.
    pub fn compile_limits(&self) -> &CompileLimits {
        self.compiler.limits()
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The plugins' call statistics on this replica.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The plugins in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reloads when the stored generation moved.
    pub async fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.reload.lock().await;
        let generation = plugins::generation(&self.db).await?;
        if generation == self.snapshot().generation {
            return Ok(());
        }
        let enabled = plugins::enabled(&self.db).await?;
        let mut next = Snapshot {
            generation,
            ..Snapshot::default()
        };
        for plugin in enabled {
            let compiled = match self.cached(&plugin.sha256, plugin.hook) {
                Some(c) => c,
                None => {
                    let bytes = plugins::component(&self.db, plugin.id).await?;
                    match self.compile_cached(plugin.hook, bytes, true).await {
                        Ok((c, _)) => c,
                        Err(reason) => {
                            // It compiled when it was uploaded; a compile limit
                            // set since, an engine change or a busy machine can
                            // refuse it now. It stays in the pipeline, failing
                            // under its own policy: a `closed` plugin must not
                            // simply stop applying.
                            tracing::error!(plugin = %plugin.name, %reason, "an installed plugin does not compile; its calls fail");
                            Compiled::Refused(reason.into())
                        }
                    }
                }
            };
            let installed = Arc::new(Installed {
                config_text: plugin.config.to_string(),
                stats: self.stats.entry(plugin.id),
                plugin,
                compiled,
            });
            match installed.plugin.hook {
                Hook::Pricing => next.pricing.push(installed),
                Hook::Promotion => next.promotion.push(installed),
                Hook::Validation => next.validation.push(installed),
            }
        }
        tracing::info!(
            generation,
            plugins = next.pricing.len() + next.promotion.len() + next.validation.len(),
            "plugins loaded"
        );
        let in_use: HashSet<VersionKey> = [&next.pricing, &next.promotion, &next.validation]
            .into_iter()
            .flatten()
            .map(|i| (i.plugin.sha256.clone(), i.plugin.hook))
            .collect();
        let in_force: HashSet<Uuid> = [&next.pricing, &next.promotion, &next.validation]
            .into_iter()
            .flatten()
            .map(|i| i.plugin.id)
            .collect();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        lock(&self.cache).retain(&in_use);
        self.stats.retain(&in_force);
        self.published.send_replace(generation);
        Ok(())
    }

    /// Polls for changes every `every` until `stop` resolves.
    pub fn watch(
        self: &Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    _ = tick.tick() => {}
                }
                let Some(registry) = this.upgrade() else {
                    return;
                };
                if let Err(e) = registry.refresh().await {
                    tracing::warn!(error = %e, "reloading plugins failed; keeping the current set");
                }
            }
        });
    }

    fn cached(&self, sha256: &str, hook: Hook) -> Option<Compiled> {
        lock(&self.cache).get(&(sha256.to_owned(), hook))
    }

    /// Compiles a component of `hook` within the compile limits, off the
    /// async runtime (or takes it from the cache); with its SHA-256. The
    /// reason when it is not valid or breaks a limit.
    pub async fn compile(&self, hook: Hook, bytes: Vec<u8>) -> Result<(Compiled, String), String> {
        self.compile_cached(hook, bytes, false).await
    }

    /// [`Registry::compile`]; `for_snapshot` when the version is compiled
    /// for the snapshot being built.
    async fn compile_cached(
        &self,
        hook: Hook,
        bytes: Vec<u8>,
        for_snapshot: bool,
    ) -> Result<(Compiled, String), String> {
        let sha = sha256_hex(&bytes);
        if let Some(c) = self.cached(&sha, hook) {
            return Ok((c, sha));
        }
        let compiled = self
            .compiler
            .compile(&self.runtime, hook, &sha, bytes)
            .await?;
        lock(&self.cache).insert((sha.clone(), hook), compiled.clone(), for_snapshot);
        Ok((compiled, sha))
    }

    /// Installs a plugin whose component compiled as `sha`.
    pub async fn install(&self, new: NewPlugin, bytes: &[u8], sha: &str) -> Result<Plugin> {
        let at = now();
        let plugin = Plugin {
            id: Uuid::now_v7(),
            name: new.name,
            hook: new.hook,
            scope: Scope {
                kind: if new.seller_id.is_some() {
                    "seller"
                } else {
                    "platform"
                }
                .into(),
                seller_id: new.seller_id,
            },
            version: 1,
            sha256: sha.to_owned(),
            size: bytes.len() as i64,
            priority: new.priority,
            failure_policy: new.failure_policy,
            config: new.config,
            enabled: true,
            created_at: at,
            updated_at: at,
        };
        plugins::insert(&self.db, &plugin, bytes).await?;
        self.refresh().await?;
        Ok(plugin)
    }

    /// One plugin.
    pub async fn get(&self, id: Uuid) -> Result<Option<Plugin>> {
        plugins::get(&self.db, id).await
    }

    /// Up to `limit` plugins after `after`, of one seller or all.
    pub async fn list(
        &self,
        seller_id: Option<Uuid>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Plugin>> {
        plugins::list(&self.db, seller_id, after, limit).await
    }

    /// Changes settings; `None` when there is no such plugin.
    pub async fn update(&self, id: Uuid, s: Settings) -> Result<Option<Plugin>> {
        let found = plugins::update(&self.db, id, &s).await?;
        self.changed(found, id).await
    }

    /// Swaps in a new component (the next version); `None` when there is no
    /// such plugin.
    pub async fn replace_component(
        &self,
        id: Uuid,
        bytes: &[u8],
        sha: &str,
    ) -> Result<Option<Plugin>> {
        let found = plugins::replace_component(&self.db, id, bytes, sha).await?;
        self.changed(found, id).await
    }

    /// After a change to plugin `id` (`found`: whether it existed): this
    /// replica's snapshot reloaded, and the plugin as it is now.
    async fn changed(&self, found: bool, id: Uuid) -> Result<Option<Plugin>> {
        if !found {
            return Ok(None);
        }
        self.refresh().await?;
        self.get(id).await
    }

    /// Uninstalls; whether there was such a plugin.
    pub async fn delete(&self, id: Uuid) -> Result<bool> {
        let found = plugins::delete(&self.db, id).await?;
        if found {
            self.refresh().await?;
            // Other replicas only retire its figures (bounded); this one,
            // which knows it is gone, forgets them at once.
            self.stats.remove(id);
        }
        Ok(found)
    }
}

impl Registry {
    /// The compiled component of `plugin`'s current version (enabled or not).
    pub async fn compiled(&self, plugin: &Plugin) -> Result<Compiled> {
        if let Some(c) = self.cached(&plugin.sha256, plugin.hook) {
            return Ok(c);
        }
        let bytes = plugins::component(&self.db, plugin.id).await?;
        // A version that cannot be compiled now is run as what it is: a
        // failure with the reason (a dry run reports it; no 500).
        Ok(self
            .compile(plugin.hook, bytes)
            .await
            .map_or_else(|reason| Compiled::Refused(reason.into()), |(c, _)| c))
    }
}
