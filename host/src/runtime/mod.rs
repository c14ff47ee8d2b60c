//! The rules runtime: loads rules modules and calls them. **The only code that touches wasmtime.**
//!
//! * [`RulesEngine`] is one per process: two wasmtime engines, one per [`Tier`] (epoch
//!   interruption and NaN canonicalisation for determinism in both; the optimising one has the
//!   pooling allocator and Cranelift's incremental cache), the epoch ticker thread that enforces
//!   each call's time budget, and the cache of compiled modules keyed by their SHA-256.
//! * [`RulesModule`] is one validated, compiled, pre-instantiated module. It is cheap to clone.
//!   Its code can move from the baseline tier to the optimised one while it serves calls
//!   ([`RulesModule::optimize`]): a swap goes live on code that compiles fast, and the match
//!   never notices when the faster code takes over.
//! * Calls are pure functions of their input: the caller keeps the match state it passed in
//!   until a call succeeds, so a failed call leaves the stored state exactly as it was.
//! * Instances come from the pooling allocator (a few microseconds each). An instance whose call
//!   completed goes back to a small per-module idle list and serves a later call (the ABI makes
//!   every call start afresh at `gamehost_alloc`, and the SDK resets its heap there). An instance
//!   whose call failed in any way (trap, panic, timeout, memory cap, unusable reply) is dropped,
//!   so nothing a misbehaving call did can reach the next one.
//!
//! The boundary itself (exports, messages, errors) is defined in the `abi` crate.

mod engine;
mod epoch;
mod module;

pub use engine::RulesEngine;
use engine::*;
use module::*;
pub use module::{Instance, RulesModule, decode_reply};

use abi::{GuestError, Rejection, Reply, Seat};
use epoch::{EPOCH_TICK, Ticker};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use wasmtime::{
    Caller, Config, Engine, ExternType, FuncType, InstanceAllocationStrategy, InstancePre, Linker,
    Module, OptLevel, PoolingAllocationConfig, ResourceLimiter, Store, Strategy, Trap, TypedFunc,
    ValType,
};

/// Idle instances kept per module (and at most half the instance pool across all modules).
const IDLE_INSTANCES: usize = 4;

/// What one call may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time one call may run before it is interrupted.
    pub call_budget: Duration,
    /// The most linear memory one instance may have.
    pub memory_bytes: usize,
    /// Instances that may run at the same time (the size of the instance pool).
    pub concurrent_calls: u32,
    /// The largest reply the host reads back.
    pub reply_bytes: usize,
    /// The largest module compiled. Compiling costs time and memory in proportion to the code, so
    /// a module is measured before it is compiled.
    pub module_bytes: usize,
    /// The most functions a module may define (the other measure of what compiling it costs).
    pub module_functions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_budget: Duration::from_millis(200),
            memory_bytes: 32 << 20,
            concurrent_calls: 128,
            reply_bytes: 4 << 20,
            // Wizard battle is about 400 KiB: room for games many times larger.
            module_bytes: 8 << 20,
            module_functions: 20_000,
        }
    }
}

/// Why a module was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    #[error(
        "the module was built for rules ABI version {found}; this host speaks version {expected}"
    )]
    AbiVersion { found: u32, expected: u32 },
    #[error("the module lacks the export `{0}` required by rules ABI version {v}", v = abi::ABI_VERSION)]
    MissingExport(&'static str),
    #[error("the export `{name}` should be {expected}")]
    WrongExport {
        name: &'static str,
        expected: &'static str,
    },
    #[error(
        "the module imports `{module}.{name}`; a rules module may import only `{}.{}` (no WASI, clock or host state)",
        abi::IMPORT_MODULE,
        abi::IMPORT_PANIC
    )]
    ForbiddenImport { module: String, name: String },
    #[error("the module could not be instantiated: {0}")]
    Instantiate(String),
    #[error("the module's description of itself is unusable: {0}")]
    Describe(String),
    #[error("the module is {size} bytes; a rules module may have at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the module defines {count} functions; a rules module may define at most {limit}")]
    TooManyFunctions { count: u32, limit: u32 },
}

/// Why one call produced no result. The match state passed in is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The rules refused the input. This is the player's concern, not a fault of the module.
    #[error("refused: {0}")]
    Rejected(Rejection),
    #[error("the module did not finish within its {0:?} budget")]
    Timeout(Duration),
    #[error("the module tried to use more than {0} bytes of memory")]
    MemoryLimit(usize),
    #[error("the module panicked: {0}")]
    Panicked(String),
    #[error("the module trapped: {0}")]
    Trapped(String),
    #[error("the module's reply is unusable: {0}")]
    BadReply(String),
    /// The module could not decode what the host sent: a state from another game, most likely.
    #[error("the module could not read its input: {0}")]
    BadInput(String),
    #[error("the module failed to produce a reply: {0}")]
    Guest(String),
    #[error("the module could not be started: {0}")]
    Instantiate(String),
}

/// One of the module's operation exports. Its discriminant indexes `Operation::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Setup,
    Action,
    Timeout,
    Leave,
    View,
    /// Optional: only modules that export it can carry a match over from another version.
    Migrate,
    /// Optional: what game the module is.
    Describe,
    /// Optional: the game's own bot.
    Bot,
}

impl Operation {
    pub fn export(self) -> &'static str {
        match self {
            Operation::Setup => abi::EXPORT_SETUP,
            Operation::Action => abi::EXPORT_ACTION,
            Operation::Timeout => abi::EXPORT_TIMEOUT,
            Operation::Leave => abi::EXPORT_LEAVE,
            Operation::View => abi::EXPORT_VIEW,
            Operation::Migrate => abi::EXPORT_MIGRATE,
            Operation::Describe => abi::EXPORT_DESCRIBE,
            Operation::Bot => abi::EXPORT_BOT,
        }
    }

    /// The operation's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Setup => "setup",
            Operation::Action => "action",
            Operation::Timeout => "timeout",
            Operation::Leave => "leave",
            Operation::View => "view",
            Operation::Migrate => "migrate",
            Operation::Describe => "describe",
            Operation::Bot => "bot",
        }
    }

    const ALL: [Operation; 5] = [
        Operation::Setup,
        Operation::Action,
        Operation::Timeout,
        Operation::Leave,
        Operation::View,
    ];
}

/// A transition as the host sees it: the state, views and events stay raw JSON, since the host
/// stores and forwards them without knowing the game.
pub type Transition = abi::Transition<Box<RawValue>, Box<RawValue>, Box<RawValue>>;

/// What a module says of itself ([`abi::EXPORT_DESCRIBE`]), its modes' settings as raw JSON.
pub type Description = abi::Description<Box<RawValue>>;

/// Which optional exports a module has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Optional {
    migrates: bool,
    describes: bool,
    bots: bool,
}

/// Which compiler made a module's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch, wasmtime's single-pass compiler: compiles a module several times faster than
    /// Cranelift and runs it a few times slower. What a newly installed module starts on, so
    /// that it goes live across the fleet in milliseconds.
    Baseline,
    /// Cranelift, optimising: what every module ends up running.
    Optimized,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_index_their_own_exports() {
        for operation in Operation::ALL {
            assert_eq!(Operation::ALL[operation as usize], operation);
        }
    }
}
