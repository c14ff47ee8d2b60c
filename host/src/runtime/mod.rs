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

mod epoch;

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

/// Cranelift's incremental compilation cache, in memory: compiled functions by the hash of
/// their input. When it holds more than [`CompiledFunctions::BUDGET`] bytes it starts afresh
/// (the next compilation refills it with what is in use).
#[derive(Debug, Default)]
struct CompiledFunctions {
    entries: Mutex<CacheEntries>,
}

#[derive(Debug, Default)]
struct CacheEntries {
    by_key: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl CompiledFunctions {
    const BUDGET: usize = 64 << 20;
}

impl wasmtime::CacheStore for CompiledFunctions {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .by_key
            .get(key)
            .cloned()
            .map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.bytes + value.len() > Self::BUDGET {
            entries.by_key.clear();
            entries.bytes = 0;
        }
        entries.bytes += key.len() + value.len();
        entries.by_key.insert(key.to_vec(), value);
        true
    }
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

/// The process's wasm engine. Clone it freely; clones share everything.
#[derive(Clone)]
pub struct RulesEngine {
    inner: Arc<EngineInner>,
}

/// One wasmtime engine and the host functions linked into its modules.
struct Compiler {
    engine: Engine,
    linker: Linker<CallState>,
}

struct EngineInner {
    optimized: Compiler,
    baseline: Compiler,
    limits: Limits,
    deadline_ticks: u64,
    /// Modules compiled from each SHA-256, while anyone still holds them. Weak, so that a module
    /// (which holds its engine) does not keep the engine alive in a cycle.
    compiled: Mutex<HashMap<[u8; 32], Weak<ModuleInner>>>,
    /// Idle instances across all modules, and how many may idle: each holds a slot of the
    /// instance pool, and calls of other modules need slots too.
    idle_total: AtomicUsize,
    idle_cap: usize,
    ticker: Arc<Ticker>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// What a store carries through one call.
struct CallState {
    memory: MemoryCap,
    panic_message: Option<String>,
}

/// Caps linear memory and remembers whether the cap was hit, so a trap that follows an
/// allocation failure is reported as what it is.
struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl RulesEngine {
    pub fn new(limits: Limits) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(limits.concurrent_calls)
            .total_memories(limits.concurrent_calls)
            .total_tables(limits.concurrent_calls)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(limits.memory_bytes)
            // Reusing a slot zeroes this much by hand instead of returning it to the kernel,
            // which is faster for the small heaps rules modules use.
            .linear_memory_keep_resident(0);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .cranelift_opt_level(OptLevel::Speed);
        // A new version of a game mostly repeats the old one's functions (serde, std, most
        // rules): Cranelift's incremental cache compiles only what changed. Bounded; see
        // `CompiledFunctions`.
        config
            .enable_incremental_compilation(Arc::new(CompiledFunctions::default()))
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let optimized = Compiler::new(config)?;

        // Baseline code runs only until the optimised code is ready (well under a second), so
        // its instances are allocated on demand rather than reserving a second pool.
        let mut config = Config::new();
        config.strategy(Strategy::Winch);
        let baseline = Compiler::new(config)?;

        let ticker = Ticker::start(vec![optimized.engine.clone(), baseline.engine.clone()]);
        let limits_concurrent = limits.concurrent_calls as usize;
        let deadline_ticks = limits
            .call_budget
            .as_micros()
            .div_ceil(EPOCH_TICK.as_micros())
            .max(1) as u64;
        Ok(RulesEngine {
            inner: Arc::new(EngineInner {
                optimized,
                baseline,
                limits,
                deadline_ticks,
                compiled: Mutex::new(HashMap::new()),
                idle_total: AtomicUsize::new(0),
                idle_cap: (limits_concurrent / 2).max(1),
                ticker,
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Validates and compiles a module with the optimising compiler, or returns the one already
    /// compiled from the same bytes (moving it to optimised code first if it has only baseline
    /// code).
    pub fn load(&self, bytes: &[u8]) -> Result<RulesModule, LoadError> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(module) = self.loaded(sha256) {
            module.optimize(bytes)?;
            return Ok(module);
        }
        let code = self.compile(Tier::Optimized, bytes)?;
        Ok(self.remember(self.check(code, sha256)?))
    }

    /// Validates and compiles a module as fast as possible: with the baseline compiler, or with
    /// the optimising one if the baseline compiler cannot take it. Its code is meant to be
    /// replaced soon by [`RulesModule::optimize`] or [`RulesModule::adopt_artifact`].
    pub fn load_quickly(&self, bytes: &[u8]) -> Result<RulesModule, LoadError> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(module) = self.loaded(sha256) {
            return Ok(module);
        }
        let code = match self.compile(Tier::Baseline, bytes) {
            Ok(code) => code,
            // Winch lacks a few proposals Cranelift has (tail calls, for one); the optimising
            // compiler is the authority on whether the module is valid.
            Err(_) => self.compile(Tier::Optimized, bytes)?,
        };
        Ok(self.remember(self.check(code, sha256)?))
    }

    fn loaded(&self, sha256: [u8; 32]) -> Option<RulesModule> {
        let inner = self.compiled().get(&sha256).and_then(Weak::upgrade)?;
        Some(RulesModule { inner })
    }

    /// Makes `module` the one later loads of its bytes get, unless another thread loaded them
    /// meanwhile: then that one is returned (one module per bytes), on the better code of the two.
    fn remember(&self, module: RulesModule) -> RulesModule {
        let mut compiled = self.compiled();
        if let Some(inner) = compiled.get(&module.inner.sha256).and_then(Weak::upgrade) {
            let existing = RulesModule { inner };
            if existing.tier() == Tier::Baseline && module.tier() == Tier::Optimized {
                existing.install_code(module.code());
            }
            return existing;
        }
        compiled.retain(|_, module| module.strong_count() > 0);
        compiled.insert(module.inner.sha256, Arc::downgrade(&module.inner));
        module
    }

    fn compiled(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Weak<ModuleInner>>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn compiler(&self, tier: Tier) -> &Compiler {
        match tier {
            Tier::Baseline => &self.inner.baseline,
            Tier::Optimized => &self.inner.optimized,
        }
    }

    /// Names what compiled artifacts of `tier` this engine can run: the same for every instance
    /// of the same build and settings ([`RulesModule::artifact`], [`RulesEngine::load_artifact`]).
    pub fn artifact_compatibility(&self, tier: Tier) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.compiler(tier)
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        match tier {
            Tier::Optimized => format!("{:016x}", hasher.finish()),
            Tier::Baseline => format!("{:016x}-{}", hasher.finish(), tier.name()),
        }
    }

    /// Loads a module from the compiled artifact another instance of this build made
    /// ([`RulesModule::artifact`]): microseconds instead of a compilation. `sha256` is the
    /// version (the SHA-256 of the module's bytes) the artifact was compiled from. A module
    /// already loaded here is returned as it is.
    ///
    /// The artifact is native code and is trusted as such: only load artifacts from where this
    /// fleet keeps its own (its Redis), never from users.
    pub fn load_artifact(
        &self,
        sha256: [u8; 32],
        tier: Tier,
        artifact: &[u8],
    ) -> Result<RulesModule, LoadError> {
        if let Some(module) = self.loaded(sha256) {
            return Ok(module);
        }
        let code = self.deserialize(tier, artifact)?;
        Ok(self.remember(self.check(code, sha256)?))
    }

    fn deserialize(&self, tier: Tier, artifact: &[u8]) -> Result<(Tier, Module), LoadError> {
        // SAFETY: the artifact was produced by `Module::serialize` in an engine with the same
        // compatibility hash (the key it is stored under), and the store it comes from is trusted
        // like the binary itself (see `load_artifact`). wasmtime checks the header and the
        // engine settings.
        let module = unsafe { Module::deserialize(&self.compiler(tier).engine, artifact) }
            .map_err(|e| LoadError::Invalid(format!("unusable compiled artifact: {e:#}")))?;
        Ok((tier, module))
    }

    fn compile(&self, tier: Tier, bytes: &[u8]) -> Result<(Tier, Module), LoadError> {
        self.measure(bytes)?;
        let module = Module::new(&self.compiler(tier).engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")));
        // Compiling a large module allocates hundreds of megabytes, which the allocator would
        // keep for the process's life. Trimming walks every heap under its lock, so it is kept
        // for the modules whose compilation is worth it.
        if bytes.len() >= TRIM_AFTER_MODULE_BYTES {
            give_back_freed_memory();
        }
        Ok((tier, module?))
    }

    /// Refuses a module whose compilation would cost more than the limits allow, before any of
    /// it is compiled: its size, and how many functions it defines (read from its function
    /// section, without validating anything else).
    fn measure(&self, bytes: &[u8]) -> Result<(), LoadError> {
        let limits = &self.inner.limits;
        if bytes.len() > limits.module_bytes {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit: limits.module_bytes,
            });
        }
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(wasmparser::Payload::FunctionSection(functions)) => {
                    let count = functions.count();
                    if count > limits.module_functions {
                        return Err(LoadError::TooManyFunctions {
                            count,
                            limit: limits.module_functions,
                        });
                    }
                    return Ok(());
                }
                // The code section comes after the function section: there is none.
                Ok(wasmparser::Payload::CodeSectionStart { .. }) => return Ok(()),
                Ok(_) => {}
                // Not wasm: the compiler says what is wrong with it.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// The load-time checks (imports, ABI version, exports) of freshly compiled code.
    /// The module then describes itself, if it can.
    fn check(&self, code: (Tier, Module), sha256: [u8; 32]) -> Result<RulesModule, LoadError> {
        let (code, optional) = self.checked_code(code)?;
        let mut module = RulesModule {
            inner: Arc::new(ModuleInner {
                idle: Mutex::new(Vec::new()),
                engine: self.clone(),
                code: RwLock::new(code),
                sha256,
                optional,
                description: None,
            }),
        };
        if optional.describes {
            let description: Description = module
                .call_typed(Operation::Describe, &())
                .map_err(|e| LoadError::Describe(e.to_string()))?;
            check_description(&description)?;
            Arc::get_mut(&mut module.inner)
                .expect("nobody else holds a module being checked")
                .description = Some(description);
        }
        Ok(module)
    }

    /// Checks compiled code and readies it for instantiation; also says which optional exports
    /// it has.
    fn checked_code(
        &self,
        (tier, module): (Tier, Module),
    ) -> Result<(Arc<Code>, Optional), LoadError> {
        check_imports(&module)?;
        let i32_ = || ValType::I32;
        let compiler = self.compiler(tier);
        let engine = &compiler.engine;
        let version_type = FuncType::new(engine, [], [i32_()]);
        check_export(&module, abi::EXPORT_ABI_VERSION, &version_type, "() -> i32")?;
        let pre = compiler
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;

        // Ask for the version before anything else, so a module of another ABI version is told
        // so rather than being told about the exports it names differently.
        let mut store = self.store(tier);
        let _ticking = self.inner.ticker.running();
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let version = instance
            .get_typed_func::<(), u32>(&mut store, abi::EXPORT_ABI_VERSION)
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        if version != abi::ABI_VERSION {
            return Err(LoadError::AbiVersion {
                found: version,
                expected: abi::ABI_VERSION,
            });
        }

        match module.get_export(abi::EXPORT_MEMORY) {
            Some(ExternType::Memory(_)) => {}
            Some(_) => {
                return Err(LoadError::WrongExport {
                    name: abi::EXPORT_MEMORY,
                    expected: "a memory",
                });
            }
            None => return Err(LoadError::MissingExport(abi::EXPORT_MEMORY)),
        }
        let alloc_type = FuncType::new(engine, [i32_()], [i32_()]);
        check_export(&module, abi::EXPORT_ALLOC, &alloc_type, "(i32) -> i32")?;
        let operation_type = FuncType::new(engine, [i32_(), i32_()], [ValType::I64]);
        for operation in Operation::ALL {
            check_export(
                &module,
                operation.export(),
                &operation_type,
                "(i32, i32) -> i64",
            )?;
        }
        let mut optional = Optional::default();
        for (export, present) in [
            (abi::EXPORT_MIGRATE, &mut optional.migrates),
            (abi::EXPORT_DESCRIBE, &mut optional.describes),
            (abi::EXPORT_BOT, &mut optional.bots),
        ] {
            *present = module.get_export(export).is_some();
            if *present {
                check_export(&module, export, &operation_type, "(i32, i32) -> i64")?;
            }
        }
        Ok((Arc::new(Code { tier, pre }), optional))
    }

    fn store(&self, tier: Tier) -> Store<CallState> {
        let mut store = Store::new(
            &self.compiler(tier).engine,
            CallState {
                memory: MemoryCap {
                    limit: self.inner.limits.memory_bytes,
                    hit: false,
                },
                panic_message: None,
            },
        );
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.inner.deadline_ticks);
        store
    }
}

impl Compiler {
    /// An engine with the settings both tiers share, and its linker.
    fn new(mut config: Config) -> Result<Self, LoadError> {
        config
            .epoch_interruption(true)
            // The same inputs must give the same bytes on every machine, whichever tier runs
            // them (Winch honours this setting too).
            .cranelift_nan_canonicalization(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Invalid(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                abi::IMPORT_MODULE,
                abi::IMPORT_PANIC,
                |mut caller: Caller<'_, CallState>, ptr: u32, len: u32| {
                    let message = read_guest_memory(&mut caller, ptr, len.min(4096))
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .unwrap_or_else(|| "(the panic message was out of bounds)".into());
                    caller.data_mut().panic_message = Some(message);
                },
            )
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        Ok(Compiler { engine, linker })
    }
}

fn check_imports(module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let allowed = import.module() == abi::IMPORT_MODULE
            && import.name() == abi::IMPORT_PANIC
            && matches!(import.ty(), ExternType::Func(f)
                if f.params().map(|p| p.is_i32()).eq([true, true]) && f.results().len() == 0);
        if !allowed {
            return Err(LoadError::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    Ok(())
}

fn check_export(
    module: &Module,
    name: &'static str,
    expected: &FuncType,
    described: &'static str,
) -> Result<(), LoadError> {
    match module.get_export(name) {
        Some(ExternType::Func(found)) if FuncType::eq(&found, expected) => Ok(()),
        Some(_) => Err(LoadError::WrongExport {
            name,
            expected: described,
        }),
        None => Err(LoadError::MissingExport(name)),
    }
}

fn read_guest_memory(caller: &mut Caller<'_, CallState>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let memory = caller.get_export(abi::EXPORT_MEMORY)?.into_memory()?;
    let data = memory.data(&caller);
    let start = ptr as usize;
    data.get(start..start.checked_add(len as usize)?)
        .map(<[u8]>::to_vec)
}

/// A validated, compiled rules module. Clones share the compiled code.
#[derive(Clone)]
pub struct RulesModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    /// Instances whose last call succeeded, ready for the next one. All of the current code.
    idle: Mutex<Vec<Instance>>,
    engine: RulesEngine,
    /// Replaced once, when optimised code takes over from baseline code.
    code: RwLock<Arc<Code>>,
    sha256: [u8; 32],
    /// Which optional exports it has.
    optional: Optional,
    /// What it said of itself, if it describes itself.
    description: Option<Description>,
}

impl Drop for ModuleInner {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |idle| idle.len());
        self.engine
            .inner
            .idle_total
            .fetch_sub(idle, Ordering::Relaxed);
    }
}

/// A module's compiled code, ready to instantiate.
struct Code {
    tier: Tier,
    pre: InstancePre<CallState>,
}

/// An instance of a module, ready for calls.
pub struct Instance {
    /// The code it runs: an instance of replaced code is not kept for later calls.
    code: Arc<Code>,
    store: Store<CallState>,
    deadline_ticks: u64,
    /// Ticks while this instance runs a call.
    ticker: Arc<Ticker>,
    memory: wasmtime::Memory,
    alloc: TypedFunc<u32, u32>,
    /// The operation exports, in [`Operation::ALL`] order, looked up once.
    operations: Vec<TypedFunc<(u32, u32), u64>>,
    /// The optional exports, where the module has them.
    migrate: Option<TypedFunc<(u32, u32), u64>>,
    describe: Option<TypedFunc<(u32, u32), u64>>,
    bot: Option<TypedFunc<(u32, u32), u64>>,
}

impl RulesModule {
    /// The module's version: the SHA-256 of its bytes.
    pub fn sha256(&self) -> [u8; 32] {
        self.inner.sha256
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.inner.sha256)
    }

    /// Which compiler made the code that runs now.
    pub fn tier(&self) -> Tier {
        self.code().tier
    }

    fn code(&self) -> Arc<Code> {
        self.inner
            .code
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The compiled code and its tier, for other instances of this build to load without
    /// compiling ([`RulesEngine::load_artifact`]).
    pub fn artifact(&self) -> Result<(Tier, Vec<u8>), LoadError> {
        let code = self.code();
        let artifact = code.pre.module().serialize().map_err(|e| {
            LoadError::Invalid(format!("cannot serialise the compiled module: {e:#}"))
        })?;
        Ok((code.tier, artifact))
    }

    /// Moves the module to optimised code compiled from `bytes` (its own bytes), unless it has
    /// that already. Takes as long as a compilation: call from a blocking task. Calls go on
    /// meanwhile; the ones that start afterwards run the new code.
    pub fn optimize(&self, bytes: &[u8]) -> Result<(), LoadError> {
        if self.tier() == Tier::Optimized {
            return Ok(());
        }
        if <[u8; 32]>::from(Sha256::digest(bytes)) != self.inner.sha256 {
            return Err(LoadError::Invalid(
                "these bytes are not the module's own".into(),
            ));
        }
        let code = self.inner.engine.compile(Tier::Optimized, bytes)?;
        self.replace_code(code)
    }

    /// Moves the module to the optimised code of an artifact another instance of this build
    /// compiled from the same bytes (trusted as in [`RulesEngine::load_artifact`]).
    pub fn adopt_artifact(&self, artifact: &[u8]) -> Result<(), LoadError> {
        if self.tier() == Tier::Optimized {
            return Ok(());
        }
        let code = self.inner.engine.deserialize(Tier::Optimized, artifact)?;
        self.replace_code(code)
    }

    fn replace_code(&self, code: (Tier, Module)) -> Result<(), LoadError> {
        let (code, optional) = self.inner.engine.checked_code(code)?;
        if optional != self.inner.optional {
            return Err(LoadError::Invalid(
                "the new code does not export what the old one did".into(),
            ));
        }
        self.install_code(code);
        Ok(())
    }

    /// Makes `code` (checked, of this module's bytes) the code later calls run.
    fn install_code(&self, code: Arc<Code>) {
        *self.inner.code.write().unwrap_or_else(|p| p.into_inner()) = code;
        // Idle instances run the old code; calls in flight keep theirs until they finish.
        let dropped = std::mem::take(&mut *self.idle()).len();
        let engine = &self.inner.engine.inner;
        engine.idle_total.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Whether the module exports [`abi::EXPORT_MIGRATE`]: it may carry running matches over
    /// from other versions of its game.
    pub fn can_migrate(&self) -> bool {
        self.inner.optional.migrates
    }

    /// What the module said of itself when it was loaded ([`abi::EXPORT_DESCRIBE`]); `None` for
    /// a module without that export.
    pub fn description(&self) -> Option<&Description> {
        self.inner.description.as_ref()
    }

    /// Whether the module exports [`abi::EXPORT_BOT`]: the host may seat its bots.
    pub fn has_bot(&self) -> bool {
        self.inner.optional.bots
    }

    /// What a bot in seat `player` does now, given that seat's view (see [`abi::EXPORT_BOT`]):
    /// `None` when it has nothing to do.
    pub fn bot(
        &self,
        view: &RawValue,
        player: &str,
        seed: u64,
    ) -> Result<Option<Box<RawValue>>, CallError> {
        let input = abi::BotInput {
            view,
            player: player.to_string(),
            seed,
        };
        let action: Box<RawValue> = self.call_typed(Operation::Bot, &input)?;
        Ok((action.get() != "null").then_some(action))
    }

    /// Carries a match's state over from another version of this game (see
    /// [`abi::EXPORT_MIGRATE`]); `Rejected` with `cannot_migrate` if the module cannot.
    pub fn migrate(&self, state: &RawValue) -> Result<Transition, CallError> {
        self.call_typed(Operation::Migrate, &abi::MigrateInput { state })
    }

    /// Whether both handles share one compilation (true for every load of the same bytes).
    pub fn same_code_as(&self, other: &RulesModule) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_idle(&self) -> Option<Instance> {
        let instance = self.idle().pop()?;
        let engine = &self.inner.engine.inner;
        engine.idle_total.fetch_sub(1, Ordering::Relaxed);
        Some(instance)
    }

    /// Keeps an instance whose call completed, unless enough are idle already or its code has
    /// been replaced.
    fn put_idle(&self, instance: Instance) {
        let engine = &self.inner.engine.inner;
        let mut idle = self.idle();
        if idle.len() >= IDLE_INSTANCES || !Arc::ptr_eq(&instance.code, &self.code()) {
            return;
        }
        if engine.idle_total.fetch_add(1, Ordering::Relaxed) < engine.idle_cap {
            idle.push(instance);
        } else {
            // The engine-wide cap is reached: let this one go.
            engine.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Starts a fresh instance from the pool.
    pub fn instantiate(&self) -> Result<Instance, CallError> {
        let code = self.code();
        let mut store = self.inner.engine.store(code.tier);
        let instance = {
            let _ticking = self.inner.engine.inner.ticker.running();
            code.pre.instantiate(&mut store)
        }
        .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| CallError::Instantiate("no memory export".into()))?;
        let unusable = |e: wasmtime::Error| CallError::Instantiate(format!("{e:#}"));
        let alloc = instance
            .get_typed_func::<u32, u32>(&mut store, abi::EXPORT_ALLOC)
            .map_err(unusable)?;
        let operations = Operation::ALL
            .iter()
            .map(|op| instance.get_typed_func::<(u32, u32), u64>(&mut store, op.export()))
            .collect::<Result<_, _>>()
            .map_err(unusable)?;
        let mut optional = |present: bool, export: &str| {
            present
                .then(|| instance.get_typed_func::<(u32, u32), u64>(&mut store, export))
                .transpose()
                .map_err(unusable)
        };
        let migrate = optional(self.inner.optional.migrates, abi::EXPORT_MIGRATE)?;
        let describe = optional(self.inner.optional.describes, abi::EXPORT_DESCRIBE)?;
        let bot = optional(self.inner.optional.bots, abi::EXPORT_BOT)?;
        Ok(Instance {
            deadline_ticks: self.inner.engine.inner.deadline_ticks,
            ticker: self.inner.engine.inner.ticker.clone(),
            code,
            store,
            memory,
            alloc,
            operations,
            migrate,
            describe,
            bot,
        })
    }

    /// Runs one operation on raw input bytes and returns the raw reply bytes.
    pub fn call_raw(&self, operation: Operation, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let limits = self.inner.engine.limits();
        let mut instance = match self.take_idle() {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        let started = std::time::Instant::now();
        let tier = instance.code.tier.name();
        let reply = instance.call(operation, input, limits);
        crate::metrics::rules_call(operation.name(), tier, started.elapsed());
        let reply = reply?;
        self.put_idle(instance);
        Ok(reply)
    }

    /// Starts a match.
    pub fn setup(
        &self,
        seed: u64,
        players: &[Seat],
        config: &RawValue,
    ) -> Result<Transition, CallError> {
        self.call_typed(
            Operation::Setup,
            &abi::SetupInput {
                seed,
                players: players.to_vec(),
                config,
            },
        )
    }

    /// Applies a player's action to `state`.
    pub fn action(
        &self,
        state: &RawValue,
        player: &str,
        action: &RawValue,
    ) -> Result<Transition, CallError> {
        self.call_typed(
            Operation::Action,
            &abi::ActionInput {
                state,
                player: player.to_string(),
                action,
            },
        )
    }

    /// Resolves the round with what was submitted.
    pub fn timeout(&self, state: &RawValue) -> Result<Transition, CallError> {
        self.call_typed(Operation::Timeout, &abi::TimeoutInput { state })
    }

    /// Removes a player for good.
    pub fn leave(&self, state: &RawValue, player: &str) -> Result<Transition, CallError> {
        self.call_typed(
            Operation::Leave,
            &abi::LeaveInput {
                state,
                player: player.to_string(),
            },
        )
    }

    /// What `player` may see of `state`.
    pub fn view(&self, state: &RawValue, player: &str) -> Result<Box<RawValue>, CallError> {
        self.call_typed(
            Operation::View,
            &abi::ViewInput {
                state,
                player: player.to_string(),
            },
        )
    }

    fn call_typed<I: Serialize, T: DeserializeOwned>(
        &self,
        operation: Operation,
        input: &I,
    ) -> Result<T, CallError> {
        let input = serde_json::to_vec(input).expect("host inputs always serialise");
        let reply = self.call_raw(operation, &input)?;
        decode_reply(&reply)
    }
}

/// Turns a reply's bytes into a result, or says why they are unusable.
pub fn decode_reply<T: DeserializeOwned>(reply: &[u8]) -> Result<T, CallError> {
    match serde_json::from_slice::<Reply<T>>(reply) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(GuestError::Rejected(rejection))) => Err(CallError::Rejected(rejection)),
        Ok(Err(GuestError::BadInput { message })) => Err(CallError::BadInput(message)),
        Ok(Err(GuestError::Internal { message })) => Err(CallError::Guest(message)),
        Err(e) => Err(CallError::BadReply(e.to_string())),
    }
}

impl Instance {
    /// Runs one operation. After an error, drop the instance: only an instance whose call
    /// completed may serve another.
    pub fn call(
        &mut self,
        operation: Operation,
        input: &[u8],
        limits: &Limits,
    ) -> Result<Vec<u8>, CallError> {
        let store = &mut self.store;
        store.set_epoch_deadline(self.deadline_ticks);
        let _ticking = self.ticker.running();
        let state = store.data_mut();
        state.panic_message = None;
        state.memory.hit = false;
        let len = u32::try_from(input.len())
            .map_err(|_| CallError::BadInput("the input is larger than 4 GiB".into()))?;
        let run = match operation {
            Operation::Migrate => self.migrate.as_ref().ok_or_else(|| {
                CallError::Rejected(abi::Rejection::new(
                    "cannot_migrate",
                    "this module does not migrate matches",
                ))
            })?,
            Operation::Describe => self.describe.as_ref().ok_or_else(|| {
                CallError::Rejected(abi::Rejection::new(
                    "cannot_describe",
                    "this module does not describe itself",
                ))
            })?,
            Operation::Bot => self.bot.as_ref().ok_or_else(|| {
                CallError::Rejected(abi::Rejection::new("no_bot", "this game has no bot"))
            })?,
            other => &self.operations[other as usize],
        };
        let ptr = self
            .alloc
            .call(&mut *store, len)
            .map_err(|e| classify_trap(e, store, limits))?;
        self.memory
            .write(&mut *store, ptr as usize, input)
            .map_err(|_| CallError::BadReply("alloc returned memory out of bounds".into()))?;
        let packed = run
            .call(&mut *store, (ptr, len))
            .map_err(|e| classify_trap(e, store, limits))?;
        let (reply_ptr, reply_len) = abi::unpack_reply(packed);
        if reply_len as usize > limits.reply_bytes {
            return Err(CallError::BadReply(format!(
                "a reply of {reply_len} bytes is over the {} byte limit",
                limits.reply_bytes
            )));
        }
        let mut reply = vec![0; reply_len as usize];
        self.memory
            .read(&*store, reply_ptr as usize, &mut reply)
            .map_err(|_| {
                CallError::BadReply(format!(
                    "the reply at {reply_ptr}+{reply_len} lies outside the module's memory"
                ))
            })?;
        Ok(reply)
    }
}

fn classify_trap(error: wasmtime::Error, store: &Store<CallState>, limits: &Limits) -> CallError {
    let state = store.data();
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        CallError::Timeout(limits.call_budget)
    } else if state.memory.hit {
        CallError::MemoryLimit(limits.memory_bytes)
    } else if let Some(message) = &state.panic_message {
        CallError::Panicked(message.clone())
    } else {
        CallError::Trapped(format!("{error:#}"))
    }
}

/// Checks what a module says of itself: a match seats at least one player and no fewer than
/// the most it seats, and there is at least one mode, each named once.
fn check_description(description: &Description) -> Result<(), LoadError> {
    let abi::PlayerCount { min, max } = description.players;
    if min == 0 || min > max {
        return Err(LoadError::Describe(format!(
            "players {{min: {min}, max: {max}}}: a match seats 1 or more, and min <= max"
        )));
    }
    if description.modes.is_empty() {
        return Err(LoadError::Describe("a game needs at least one mode".into()));
    }
    let mut names = std::collections::HashSet::new();
    for mode in &description.modes {
        if mode.name.is_empty() || !names.insert(mode.name.as_str()) {
            return Err(LoadError::Describe(format!(
                "mode names must be non-empty and distinct ({:?})",
                mode.name
            )));
        }
    }
    Ok(())
}

/// Modules from this size up have their compiler's memory handed back to the system after.
const TRIM_AFTER_MODULE_BYTES: usize = 1 << 20;

/// Hands the memory the allocator holds free back to the system (glibc keeps freed memory for
/// reuse; after a compilation that is tens of megabytes nothing reuses).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
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
