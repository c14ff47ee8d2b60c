//! Where the built modules are, and engines to run them.

use host::runtime::{Limits, RulesEngine, RulesModule};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The workspace's `target/` folder, wherever cargo was told to put it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The bytes of a built module: `kind` is `rules` or `fixtures`.
pub fn module_bytes(kind: &str, name: &str) -> Vec<u8> {
    let path = target_dir().join(kind).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. Build the modules first: `cargo xtask build-rules` \
             (`cargo xtask test` does it for you)",
            path.display()
        )
    })
}

/// A module written in the text format, for fixtures that break the ABI on purpose.
pub fn wat_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("it/modules")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The test binary's engine, shared so each module is compiled once: a short call budget so that
/// runaway modules fail fast, and a small memory cap.
pub fn engine() -> RulesEngine {
    static ENGINE: OnceLock<RulesEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            RulesEngine::new(Limits {
                call_budget: Duration::from_millis(250),
                memory_bytes: 16 << 20,
                concurrent_calls: 32,
                ..Limits::default()
            })
            .expect("the engine starts")
        })
        .clone()
}

pub fn wizard_battle(engine: &RulesEngine) -> RulesModule {
    engine
        .load(&module_bytes("rules", "wizard-battle"))
        .expect("wizard-battle loads")
}
