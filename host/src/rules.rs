//! The rules modules this host knows: each game's active module, and every version by SHA-256 so
//! a running match keeps the exact code it started with.

use crate::runtime::{Description, LoadError, RulesEngine, RulesModule};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the rules folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} was refused: {source}")]
    Refused { path: PathBuf, source: LoadError },
    #[error(
        "no rules module for the game {game:?} in {folder} (build them with `cargo xtask build-rules`)"
    )]
    MissingGame { game: String, folder: PathBuf },
    #[error("the module was refused: {0}")]
    Invalid(#[from] LoadError),
    #[error("the module failed its trial match: {0}")]
    Trial(String),
    #[error("no module {0} is known")]
    UnknownVersion(String),
    #[error(
        "{0:?} is not a game name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
    )]
    InvalidGameName(String),
    #[error("module {version} plays {actual:?}, not {expected:?}")]
    WrongGame {
        version: String,
        expected: String,
        actual: String,
    },
}

/// Checks that `name` can name a game: it becomes a key, a file name and part of URLs, so it is
/// kept to lowercase letters, digits, `-` and `_` (nothing that climbs folders or needs escaping).
pub fn check_game_name(name: &str) -> Result<(), RulesError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(RulesError::InvalidGameName(name.to_string()))
    }
}

/// What `module`, installed as `game`, says of itself; for a module without the export, what
/// the ABI says to assume: two players, the host's round timeout, one mode `default` (`null`).
pub fn description_of(module: &RulesModule, game: &str) -> Description {
    module
        .description()
        .cloned()
        .unwrap_or_else(|| abi::Description {
            name: game.to_string(),
            players: abi::PlayerCount { min: 2, max: 2 },
            round_timeout_ms: None,
            modes: vec![abi::Mode {
                name: "default".into(),
                config: serde_json::value::RawValue::from_string("null".into())
                    .expect("null is JSON"),
            }],
        })
}

/// Refuses to install `module` as `game` if it says it is another game.
pub fn check_plays(module: &RulesModule, game: &str) -> Result<(), RulesError> {
    let Some(description) = module.description() else {
        return Ok(());
    };
    check_game_name(&description.name)?;
    if description.name != game {
        return Err(RulesError::WrongGame {
            version: module.sha256_hex(),
            expected: game.to_string(),
            actual: description.name.clone(),
        });
    }
    Ok(())
}

#[derive(Clone)]
pub struct Rules {
    engine: RulesEngine,
    inner: Arc<RwLock<Registry>>,
}

/// How many of a game's most recently active versions stay loaded, used or not, so that a
/// rollback reaches them on any instance (in memory too, where there is no shared store).
pub const KEPT_VERSIONS: usize = 10;

#[derive(Default)]
struct Registry {
    active: HashMap<String, RulesModule>,
    /// Every loaded version, with the game it plays.
    versions: HashMap<String, (String, RulesModule)>,
    /// Each game's last [`KEPT_VERSIONS`] active versions, oldest first.
    recent: HashMap<String, VecDeque<String>>,
    /// Files of the rules folder refused at start or since, with why (until a good file replaces
    /// them).
    refused: BTreeMap<String, String>,
}

impl Rules {
    pub fn new(engine: RulesEngine) -> Self {
        Rules {
            engine,
            inner: Arc::default(),
        }
    }

    /// Loads every `*.wasm` in `folder`, each active for the game its file stem names; returns
    /// `(game, bytes)` of each, for sharing. A file that is refused is skipped and remembered
    /// with why ([`Rules::refused`]): it never stops the others.
    pub fn load_folder(&self, folder: &Path) -> Result<Vec<(String, Vec<u8>)>, RulesError> {
        let entries = std::fs::read_dir(folder).map_err(|source| RulesError::Folder {
            path: folder.to_path_buf(),
            source,
        })?;
        let mut games = Vec::new();
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let game = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Err(error) = check_game_name(&game) {
                tracing::warn!(path = %path.display(), %error, "not a rules module: skipped");
                continue;
            }
            let loaded = std::fs::read(&path)
                .map_err(|source| RulesError::File {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| {
                    let module =
                        self.engine
                            .load(&bytes)
                            .map_err(|source| RulesError::Refused {
                                path: path.clone(),
                                source,
                            })?;
                    check_plays(&module, &game)?;
                    Ok((module, bytes))
                });
            match loaded {
                Ok((module, bytes)) => {
                    tracing::info!(game, version = %module.sha256_hex(), path = %path.display(), "rules module loaded");
                    self.activate(&game, module);
                    games.push((game, bytes));
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "rules module refused; the other games are served");
                    self.refuse(&path, &error);
                }
            }
        }
        Ok(games)
    }

    /// Remembers that the file at `path` was refused, and why.
    pub fn refuse(&self, path: &Path, error: &RulesError) {
        let file = file_name(path);
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        registry.refused.insert(file, error.to_string());
    }

    /// Forgets an earlier refusal of the file at `path` (a good file replaced it).
    pub fn accept(&self, path: &Path) {
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        registry.refused.remove(&file_name(path));
    }

    /// The folder's files that were refused, with why.
    pub fn refused(&self) -> BTreeMap<String, String> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.refused.clone()
    }

    /// Loads a module and plays a short trial match with it (set up, each player's view, a round
    /// timed out), so that a module that traps or answers garbage is refused before any player
    /// meets it. The module gets quickly compiled code ([`RulesEngine::load_quickly`]); move it
    /// to optimised code afterwards. Compiling takes milliseconds: call from a blocking task.
    pub fn validate(&self, bytes: &[u8]) -> Result<RulesModule, RulesError> {
        let module = self.engine.load_quickly(bytes)?;
        let trial = |what: &str, error: crate::runtime::CallError| {
            RulesError::Trial(format!("{what}: {error}"))
        };
        let seats = [
            abi::Seat::from(("trial-a", 1)),
            abi::Seat::from(("trial-b", 1)),
        ];
        let null = serde_json::value::RawValue::from_string("null".into()).expect("null is JSON");
        let setup = module
            .setup(1, &seats, &null)
            .map_err(|e| trial("setup", e))?;
        for seat in &seats {
            module
                .view(&setup.state, &seat.id)
                .map_err(|e| trial("view", e))?;
        }
        module
            .timeout(&setup.state)
            .map_err(|e| trial("timeout", e))?;
        Ok(module)
    }

    /// The engine modules are loaded into.
    pub fn engine(&self) -> &RulesEngine {
        &self.engine
    }

    /// Knows `module` as a version of `game`, without making it active.
    pub fn add(&self, game: &str, module: RulesModule) {
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        registry
            .versions
            .insert(module.sha256_hex(), (game.to_string(), module));
    }

    /// Makes `module` the version new matches of `game` start with.
    pub fn activate(&self, game: &str, module: RulesModule) {
        self.add(game, module.clone());
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let version = module.sha256_hex();
        let recent = registry.recent.entry(game.to_string()).or_default();
        recent.retain(|v| *v != version);
        recent.push_back(version);
        if recent.len() > KEPT_VERSIONS {
            recent.pop_front();
        }
        registry.active.insert(game.to_string(), module);
    }

    /// The module new matches of `game` start with.
    pub fn active(&self, game: &str) -> Option<RulesModule> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.active.get(game).cloned()
    }

    /// The games with an active module, sorted.
    pub fn games(&self) -> Vec<String> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut games: Vec<String> = registry.active.keys().cloned().collect();
        games.sort();
        games
    }

    /// A module by its SHA-256 (hex), for a match pinned to it.
    pub fn version(&self, sha256_hex: &str) -> Option<RulesModule> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.versions.get(sha256_hex).map(|(_, m)| m.clone())
    }

    /// A loaded version with its game.
    pub fn find(&self, sha256_hex: &str) -> Option<(String, RulesModule)> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.versions.get(sha256_hex).cloned()
    }

    /// Every loaded version as `(game, version, active)`, sorted.
    pub fn list(&self) -> Vec<(String, String, bool)> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<(String, String, bool)> = registry
            .versions
            .iter()
            .map(|(sha, (game, _))| {
                let active = registry
                    .active
                    .get(game)
                    .is_some_and(|m| &m.sha256_hex() == sha);
                (game.clone(), sha.clone(), active)
            })
            .collect();
        list.sort();
        list
    }

    /// Unloads the versions that are neither active, nor among their game's recent ones, nor in
    /// `in_use`; returns them.
    pub fn forget_unused(&self, in_use: &std::collections::HashSet<String>) -> Vec<String> {
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let active: std::collections::HashSet<String> = registry
            .active
            .values()
            .map(|m| m.sha256_hex())
            .chain(registry.recent.values().flatten().cloned())
            .collect();
        let unused: Vec<String> = registry
            .versions
            .keys()
            .filter(|sha| !active.contains(*sha) && !in_use.contains(*sha))
            .cloned()
            .collect();
        for sha in &unused {
            registry.versions.remove(sha);
        }
        unused
    }

    /// Fails only if `game` has no module and none was even offered (a misconfiguration); a
    /// game whose file was refused leaves the instance serving the others.
    pub fn require(&self, game: &str, folder: &Path) -> Result<(), RulesError> {
        let offered = self
            .refused()
            .keys()
            .any(|file| file == &format!("{game}.wasm"));
        match self.active(game) {
            Some(_) => Ok(()),
            None if offered => {
                tracing::error!(
                    game,
                    "the default game's module was refused: it is not served"
                );
                Ok(())
            }
            None => Err(RulesError::MissingGame {
                game: game.to_string(),
                folder: folder.to_path_buf(),
            }),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn game_names_are_plain_words() {
        for good in ["wizard-battle", "liars_dice", "2048", "a"] {
            assert!(check_game_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "../../tmp/pwn",
            "Wizard",
            "-leading",
            "a b",
            "a/b",
            "a.wasm",
            "é",
            long.as_str(),
        ] {
            assert!(
                matches!(check_game_name(bad), Err(RulesError::InvalidGameName(_))),
                "{bad:?}"
            );
        }
    }
}
