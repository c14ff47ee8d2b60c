//! Replays a match's log ([`abi::log`]) through the module versions it records, and checks that
//! every input gives the state, turn and outcome the log says it gave, byte for byte (by the
//! digest of the state's JSON). The first difference is reported with the entry it happened at.
//!
//! Plain code over [`crate::runtime`]: where the modules come from (a folder, the store) is the
//! caller's business, so `gamehost replay` and the tests share it.

use crate::model::{LogInput, MatchLog, state_digest};
use crate::runtime::{CallError, RulesEngine, RulesModule, Transition};
use crate::store::Store;
use abi::log::Step;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use abi::log::{Divergence, Replayed};

/// Replays `log` with `modules` (by version, as [`modules_for`] loads them).
pub fn replay(
    log: &MatchLog,
    modules: &HashMap<String, RulesModule>,
) -> Result<Replayed, Divergence> {
    abi::log::replay(
        log,
        |entry, state: Option<&Box<RawValue>>| {
            let module = modules.get(&entry.module).ok_or_else(|| {
                format!(
                    "module {} is not available: neither the rules folder nor the store has it",
                    entry.module
                )
            })?;
            let transition = apply(module, &entry.input, state.map(|s| &**s))?;
            Ok(Step {
                state: transition.state,
                turn: transition.turn,
                winners: transition.outcome.map(|o| o.winners),
            })
        },
        |state| state_digest(state),
    )
}

/// One input's rules call on the state before it (`None` before the setup).
fn apply(
    module: &RulesModule,
    input: &LogInput,
    state: Option<&RawValue>,
) -> Result<Transition, String> {
    let no_state = || "no state to apply it to".to_string();
    match input {
        LogInput::Setup {
            seed,
            seats,
            config,
        } => module.setup(*seed, seats, config),
        LogInput::Action { player, action, .. } => {
            module.action(state.ok_or_else(no_state)?, player, action)
        }
        LogInput::Timeout => module.timeout(state.ok_or_else(no_state)?),
        LogInput::Leave { player } => module.leave(state.ok_or_else(no_state)?, player),
        LogInput::Migrate { .. } => module.migrate(state.ok_or_else(no_state)?),
        LogInput::Disconnected { .. } | LogInput::Reconnected { .. } => {
            return Err("this input calls no rules".into());
        }
    }
    .map_err(|error: CallError| format!("the rules answered: {error}"))
}

/// The module versions `log` names, each loaded from `dir` (any `.wasm` file in it whose
/// SHA-256 is that version) or else from `store` (where the fleet shares every version it
/// activated); a version found in neither is left out, and replay reports it where it is needed.
pub async fn modules_for(
    log: &MatchLog,
    engine: &RulesEngine,
    dir: Option<&Path>,
    store: Option<&Store>,
) -> HashMap<String, RulesModule> {
    let wanted: HashSet<&str> = log.entries.iter().map(|e| e.module.as_str()).collect();
    let mut found: HashMap<String, Vec<u8>> = HashMap::new();
    if let Some(dir) = dir
        && let Ok(files) = std::fs::read_dir(dir)
    {
        for path in files.flatten().map(|f| f.path()) {
            if path.extension().is_some_and(|e| e == "wasm")
                && let Ok(bytes) = std::fs::read(&path)
            {
                let version = hex::encode(Sha256::digest(&bytes));
                if wanted.contains(version.as_str()) {
                    found.insert(version, bytes);
                }
            }
        }
    }
    if let Some(store) = store {
        for version in &wanted {
            if !found.contains_key(*version)
                && let Ok(Some((_, bytes))) = store.module(version).await
            {
                found.insert(version.to_string(), bytes);
            }
        }
    }
    found
        .into_iter()
        .filter_map(|(version, bytes)| match engine.load(&bytes) {
            Ok(module) => Some((version, module)),
            Err(error) => {
                tracing::warn!(version, %error, "a logged module version does not load");
                None
            }
        })
        .collect()
}
