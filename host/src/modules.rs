//! Rules modules across the fleet: which version of each game is active, shared through the
//! store so that every instance runs what any match needs, including a version it never had on
//! its own disk. A module is installed from a file (`RULES_DIR`, watched) or an upload; it is
//! validated (ABI, exports, a trial match) before it becomes active anywhere. A running match
//! keeps the version it started with (`GameState.module`); new matches get the active one.

use crate::rules::{Rules, RulesError};
use crate::runtime::{RulesModule, Tier};
use crate::store::{Store, StoreError};
use sha2::Digest;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long an instance running a version's baseline code waits for the installer's optimised
/// code before it compiles its own.
const OPTIMIZED_WAIT: Duration = Duration::from_secs(10);
/// How often it looks for that code meanwhile.
const OPTIMIZED_POLL: Duration = Duration::from_millis(20);
/// How long baseline code stays shared: only instances that adopt a version in the seconds
/// before its optimised code is shared need it.
const BASELINE_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A game's versions as `GET /rules` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    pub version: String,
    pub active: bool,
    /// Running matches on this version, across the fleet.
    pub matches: usize,
    /// Whether this instance has it loaded now.
    pub loaded: bool,
    /// Which code this instance runs it on, if loaded: `baseline` for the moments after an
    /// install, `optimized` after.
    pub code: Option<Tier>,
}

#[derive(Clone)]
pub struct Modules {
    rules: Rules,
    store: Arc<Store>,
}

impl Modules {
    pub fn new(rules: Rules, store: Arc<Store>) -> Self {
        Modules { rules, store }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// At start: shares the modules read from `RULES_DIR`, makes each the active version of its
    /// game where the fleet has none yet, and adopts the fleet's active versions otherwise.
    pub async fn share_local(&self, loaded: Vec<(String, Vec<u8>)>) -> Result<(), ModuleError> {
        let active = self.store.active_modules().await?;
        for (game, bytes) in loaded {
            let version = sha256_hex(&bytes);
            self.store.put_module(&game, &version, &bytes).await?;
            if let Some(module) = self.rules.version(&version) {
                self.share_artifact(&version, &module).await;
            }
            match active.get(&game) {
                Some(shared) if *shared != version => self.adopt(&game, shared).await?,
                Some(_) => {}
                None => self.store.set_active_module(&game, &version).await?,
            }
        }
        for (game, version) in active {
            self.adopt(&game, &version).await?;
        }
        Ok(())
    }

    /// Validates `bytes` and makes them the active version of `game` on every instance.
    /// Installing the active version again changes nothing. Returns the version.
    ///
    /// The version goes live on baseline code, which compiles several times faster than
    /// optimised code; this instance then compiles the optimised code in the background and
    /// shares it, and every instance moves its running matches to it.
    pub async fn install(&self, game: &str, bytes: Vec<u8>) -> Result<String, ModuleError> {
        crate::rules::check_game_name(game)?;
        let version = sha256_hex(&bytes);
        if self
            .rules
            .active(game)
            .is_some_and(|m| m.sha256_hex() == version)
        {
            return Ok(version);
        }
        let started = std::time::Instant::now();
        let module = self.validate(&bytes).await?;
        crate::rules::check_plays(&module, game)?;
        let validated = started.elapsed();
        self.store.put_module(game, &version, &bytes).await?;
        self.share_artifact(&version, &module).await;
        self.store.set_active_module(game, &version).await?;
        self.rules.activate(game, module.clone());
        crate::metrics::swapped(game);
        tracing::info!(
            game,
            version,
            validated_ms = validated.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            tier = ?module.tier(),
            "rules module active"
        );
        self.optimize_later(version.clone(), module, bytes, Compile::Now);
        Ok(version)
    }

    /// Makes a version known to the fleet the active one of `game` again (a rollback).
    pub async fn activate(&self, game: &str, version: &str) -> Result<(), ModuleError> {
        let (owner, module) = self.find(version).await?;
        if owner != game {
            return Err(RulesError::WrongGame {
                version: version.to_string(),
                expected: game.to_string(),
                actual: owner,
            }
            .into());
        }
        self.store.set_active_module(game, version).await?;
        self.rules.activate(game, module);
        crate::metrics::swapped(game);
        tracing::info!(game, version, "rules module active (activated)");
        Ok(())
    }

    /// Adopts every active version the fleet's store names. Activations are announced on a
    /// channel, and a message sent while this instance's subscription was down (Redis
    /// restarting, unreachable) is lost for good: without this, two instances could each
    /// move the same match to the version it believes active, back and forth (seen in the
    /// chaos run).
    pub async fn reconcile(&self) -> Result<(), ModuleError> {
        for (game, version) in self.store.active_modules().await? {
            self.adopt(&game, &version).await?;
        }
        Ok(())
    }

    /// Another instance made `version` active for `game`: follow.
    pub async fn adopt(&self, game: &str, version: &str) -> Result<(), ModuleError> {
        if self
            .rules
            .active(game)
            .is_some_and(|m| m.sha256_hex() == version)
        {
            return Ok(());
        }
        let (_, module) = self.find(version).await?;
        self.rules.activate(game, module);
        tracing::info!(game, version, "rules module active (from the fleet)");
        Ok(())
    }

    /// A module by version: loaded here, or fetched from the fleet and loaded.
    pub async fn module(&self, version: &str) -> Result<RulesModule, ModuleError> {
        self.find(version).await.map(|(_, module)| module)
    }

    async fn find(&self, version: &str) -> Result<(String, RulesModule), ModuleError> {
        if let Some(found) = self.rules.find(version) {
            return Ok(found);
        }
        let (game, bytes) = self
            .store
            .module(version)
            .await?
            .ok_or_else(|| RulesError::UnknownVersion(version.to_string()))?;
        // The instance that installed it validated it (trial match included) and shared its
        // compiled code: loading that takes microseconds, compiling takes a while. Right after
        // an install, only its baseline code may be there yet.
        let mut artifact = None;
        for tier in [Tier::Optimized, Tier::Baseline] {
            let compat = self.rules.engine().artifact_compatibility(tier);
            if let Some(found) = self.store.artifact(version, &compat).await? {
                artifact = Some((tier, found));
                break;
            }
        }
        let engine = self.rules.engine().clone();
        let sha256: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        let shared = Arc::new(bytes);
        let source = shared.clone();
        let loaded = tokio::task::spawn_blocking(move || match artifact {
            Some((tier, artifact)) => engine
                .load_artifact(sha256, tier, &artifact)
                .or_else(|_| engine.load(&source)),
            None => engine.load(&source),
        })
        .await
        .map_err(|join| RulesError::Trial(join.to_string()))?;
        let module = loaded.map_err(RulesError::from)?;
        self.rules.add(&game, module.clone());
        if module.tier() == Tier::Baseline {
            let bytes = Arc::unwrap_or_clone(shared);
            self.optimize_later(
                version.to_string(),
                module.clone(),
                bytes,
                Compile::IfNotShared,
            );
        }
        Ok((game, module))
    }

    /// Moves a module from baseline to optimised code in the background: compiled here, or,
    /// with [`Compile::IfNotShared`], loaded from the installer's shared code if that comes
    /// within [`OPTIMIZED_WAIT`].
    fn optimize_later(
        &self,
        version: String,
        module: RulesModule,
        bytes: Vec<u8>,
        compile: Compile,
    ) {
        if module.tier() == Tier::Optimized {
            return;
        }
        let modules = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            if compile == Compile::IfNotShared && modules.adopt_shared_code(&version, &module).await
            {
                tracing::info!(
                    version,
                    ms = started.elapsed().as_millis() as u64,
                    "rules module optimised (from the fleet)"
                );
                return;
            }
            let optimizing = module.clone();
            match tokio::task::spawn_blocking(move || optimizing.optimize(&bytes)).await {
                Ok(Ok(())) => {
                    tracing::info!(
                        version,
                        ms = started.elapsed().as_millis() as u64,
                        "rules module optimised"
                    );
                    modules.share_artifact(&version, &module).await;
                }
                // The baseline code goes on serving: slower, still correct.
                Ok(Err(error)) => tracing::warn!(version, %error, "rules module not optimised"),
                Err(join) => tracing::warn!(version, %join, "rules module not optimised"),
            }
        });
    }

    /// Waits for the optimised code of `version` to be shared, and moves `module` to it. False
    /// if none came in time or it was unusable.
    async fn adopt_shared_code(&self, version: &str, module: &RulesModule) -> bool {
        let compat = self.rules.engine().artifact_compatibility(Tier::Optimized);
        let deadline = tokio::time::Instant::now() + OPTIMIZED_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.store.artifact(version, &compat).await {
                Ok(Some(artifact)) => {
                    let module = module.clone();
                    let adopted =
                        tokio::task::spawn_blocking(move || module.adopt_artifact(&artifact)).await;
                    return match adopted {
                        Ok(Ok(())) => true,
                        Ok(Err(error)) => {
                            tracing::warn!(version, %error, "shared optimised code unusable");
                            false
                        }
                        Err(_) => false,
                    };
                }
                Ok(None) | Err(_) => tokio::time::sleep(OPTIMIZED_POLL).await,
            }
        }
        false
    }

    /// Shares a version's compiled code with the instances of this build; best effort.
    async fn share_artifact(&self, version: &str, module: &RulesModule) {
        let module = module.clone();
        let artifact = tokio::task::spawn_blocking(move || module.artifact()).await;
        match artifact {
            Ok(Ok((tier, artifact))) => {
                let compat = self.rules.engine().artifact_compatibility(tier);
                let lifetime = (tier == Tier::Baseline).then_some(BASELINE_LIFETIME);
                let shared = self
                    .store
                    .put_artifact(version, &compat, &artifact, lifetime)
                    .await;
                if let Err(error) = shared {
                    tracing::warn!(version, %error, "compiled module not shared");
                }
            }
            Ok(Err(error)) => tracing::warn!(version, %error, "compiled module not shared"),
            Err(join) => tracing::warn!(version, %join, "compiled module not shared"),
        }
    }

    async fn validate(&self, bytes: &[u8]) -> Result<RulesModule, ModuleError> {
        let (rules, bytes) = (self.rules.clone(), bytes.to_vec());
        let validated = tokio::task::spawn_blocking(move || rules.validate(&bytes)).await;
        match validated {
            Ok(result) => Ok(result?),
            Err(join) => Err(RulesError::Trial(join.to_string()).into()),
        }
    }

    /// Which code each version loaded here runs on.
    pub fn loaded_code(&self) -> BTreeMap<String, String> {
        self.rules
            .list()
            .into_iter()
            .filter_map(|(_, version, _)| {
                let tier = self.rules.version(&version)?.tier();
                Some((version, tier.name().to_string()))
            })
            .collect()
    }

    /// Every game's versions: those the fleet shares and those loaded here.
    pub async fn list(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>, ModuleError> {
        let shared = self.store.module_versions().await?;
        let running = self.store.matches_by_module().await?;
        let local = self.rules.list();
        let mut versions: BTreeMap<String, String> = shared;
        for (game, version, _) in &local {
            versions.insert(version.clone(), game.clone());
        }
        let mut games: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
        for (version, game) in versions {
            let active = self
                .rules
                .active(&game)
                .is_some_and(|m| m.sha256_hex() == version);
            let code = self.rules.version(&version).map(|m| m.tier());
            games.entry(game).or_default().push(VersionInfo {
                matches: running.get(&version).copied().unwrap_or(0),
                version,
                active,
                loaded: code.is_some(),
                code,
            });
        }
        Ok(games)
    }

    /// What the active module of `game` says of itself (see [`crate::rules::description_of`]).
    pub fn description(&self, game: &str) -> Option<crate::runtime::Description> {
        let module = self.rules.active(game)?;
        Some(crate::rules::description_of(&module, game))
    }

    /// Unloads versions no running match uses and no game has active; returns how many.
    pub async fn unload_unused(&self, running_here: HashSet<String>) -> usize {
        let mut in_use = running_here;
        match self.store.matches_by_module().await {
            Ok(running) => in_use.extend(running.into_keys()),
            // Without the fleet's counts, keep everything.
            Err(_) => return 0,
        }
        let unloaded = self.rules.forget_unused(&in_use);
        for version in &unloaded {
            tracing::info!(version, "rules module unloaded: no match uses it");
        }
        unloaded.len()
    }

    /// Installs every `*.wasm` that appears or changes in `folder` (its stem names the game),
    /// until the returned watcher is dropped. Bad modules are refused with a log line; the
    /// active version stays.
    pub fn watch(&self, folder: &Path) -> notify::Result<impl Drop + use<>> {
        use notify::RecursiveMode;
        use notify_debouncer_full::new_debouncer;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        // Deployments should write a module whole and rename it into place (one event); a short
        // window still folds the events of a file written in several steps into one install.
        // The debouncer's thread wakes every tick whether or not anything happened: a 2.5 ms
        // tick (the default, a quarter of a 10 ms window) cost an idle instance 1% of a core.
        let mut debouncer = new_debouncer(
            Duration::from_millis(100),
            Some(Duration::from_millis(50)),
            move |result: notify_debouncer_full::DebounceEventResult| {
                let Ok(events) = result else { return };
                for event in events {
                    // Only new content matters: reading the file (as the install does) also
                    // makes events, and must not install it again.
                    use notify::EventKind;
                    if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                        continue;
                    }
                    for path in &event.paths {
                        if path.extension().is_some_and(|ext| ext == "wasm") {
                            let _ = tx.send(path.clone());
                        }
                    }
                }
            },
        )?;
        debouncer.watch(folder, RecursiveMode::NonRecursive)?;
        let modules = self.clone();
        // The files as they are now were loaded at start.
        let initial: std::collections::HashMap<PathBuf, String> = std::fs::read_dir(folder)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .filter_map(|path| std::fs::read(&path).ok().map(|b| (path, sha256_hex(&b))))
            .collect();
        let task = tokio::spawn(async move {
            // What each file held when last installed: a file is installed when its content
            // changes, not whenever it is touched (another version may be active meanwhile,
            // by upload or rollback, and must stay so).
            let mut seen = initial;
            while let Some(path) = rx.recv().await {
                let Some(game) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                    continue;
                };
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    // Renamed away or half-written: a later event brings the final file.
                    Err(error) => {
                        tracing::debug!(path = %path.display(), %error, "skipped");
                        continue;
                    }
                };
                let version = sha256_hex(&bytes);
                if seen.get(&path) == Some(&version) {
                    continue;
                }
                seen.insert(path.clone(), version);
                match modules.install(&game, bytes).await {
                    Ok(version) => {
                        modules.rules.accept(&path);
                        tracing::info!(game, version, path = %path.display(), "installed from file")
                    }
                    Err(ModuleError::Rules(error)) => {
                        tracing::warn!(game, path = %path.display(), %error, "module refused; the active version stays");
                        modules.rules.refuse(&path, &error);
                    }
                    Err(error) => {
                        tracing::warn!(game, path = %path.display(), %error, "module not installed; the active version stays")
                    }
                }
            }
        });
        struct Watcher<D>(D, tokio::task::JoinHandle<()>);
        impl<D> Drop for Watcher<D> {
            fn drop(&mut self) {
                self.1.abort();
            }
        }
        Ok(Watcher(debouncer, task))
    }
}

/// Whether an instance with a version's baseline code compiles the optimised code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compile {
    /// It installed the version: nobody else will.
    Now,
    /// Another instance installed it and shares its optimised code soon.
    IfNotShared,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}
