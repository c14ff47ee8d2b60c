//! The rules modules this host knows: each game's active module, and every version by SHA-256 so
//! a running match keeps the exact code it started with.

use crate::runtime::{LoadError, RulesEngine, RulesModule};
use std::collections::HashMap;
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
}

#[derive(Clone)]
pub struct Rules {
    engine: RulesEngine,
    inner: Arc<RwLock<Registry>>,
}

#[derive(Default)]
struct Registry {
    active: HashMap<String, RulesModule>,
    versions: HashMap<String, RulesModule>,
}

impl Rules {
    pub fn new(engine: RulesEngine) -> Self {
        Rules {
            engine,
            inner: Arc::default(),
        }
    }

    /// Loads every `*.wasm` in `folder`; each file's stem names its game.
    pub fn load_folder(&self, folder: &Path) -> Result<Vec<String>, RulesError> {
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
            let bytes = std::fs::read(&path).map_err(|source| RulesError::File {
                path: path.clone(),
                source,
            })?;
            let module = self
                .engine
                .load(&bytes)
                .map_err(|source| RulesError::Refused {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(game, version = %module.sha256_hex(), path = %path.display(), "rules module loaded");
            self.activate(&game, module);
            games.push(game);
        }
        Ok(games)
    }

    pub fn activate(&self, game: &str, module: RulesModule) {
        let mut registry = self.inner.write().unwrap_or_else(|p| p.into_inner());
        registry
            .versions
            .insert(module.sha256_hex(), module.clone());
        registry.active.insert(game.to_string(), module);
    }

    /// The module new matches of `game` start with.
    pub fn active(&self, game: &str) -> Option<RulesModule> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.active.get(game).cloned()
    }

    /// A module by its SHA-256 (hex), for a match pinned to it.
    pub fn version(&self, sha256_hex: &str) -> Option<RulesModule> {
        let registry = self.inner.read().unwrap_or_else(|p| p.into_inner());
        registry.versions.get(sha256_hex).cloned()
    }

    pub fn require(&self, game: &str, folder: &Path) -> Result<(), RulesError> {
        match self.active(game) {
            Some(_) => Ok(()),
            None => Err(RulesError::MissingGame {
                game: game.to_string(),
                folder: folder.to_path_buf(),
            }),
        }
    }
}
