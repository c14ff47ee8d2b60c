//! The process's engine: the two tiers' wasmtime engines and their linker, the cache of
//! compiled modules, and what every call's store carries (its memory cap, a guest's panic).

use super::*;

/// The process's wasm engine. Clone it freely; clones share everything.
#[derive(Clone)]
pub struct RulesEngine {
    pub(super) inner: Arc<EngineInner>,
}

/// One wasmtime engine and the host functions linked into its modules.
pub(super) struct Compiler {
    pub(super) engine: Engine,
    linker: Linker<CallState>,
}

pub(super) struct EngineInner {
    pub(super) optimized: Compiler,
    pub(super) baseline: Compiler,
    pub(super) limits: Limits,
    pub(super) deadline_ticks: u64,
    /// Modules compiled from each SHA-256, while anyone still holds them. Weak, so that a module
    /// (which holds its engine) does not keep the engine alive in a cycle.
    pub(super) compiled: Mutex<HashMap<[u8; 32], Weak<ModuleInner>>>,
    /// Idle instances across all modules, and how many may idle: each holds a slot of the
    /// instance pool, and calls of other modules need slots too.
    pub(super) idle_total: AtomicUsize,
    pub(super) idle_cap: usize,
    pub(super) ticker: Arc<Ticker>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// What a store carries through one call.
pub(super) struct CallState {
    pub(super) memory: MemoryCap,
    pub(super) panic_message: Option<String>,
}

/// Caps linear memory and remembers whether the cap was hit, so a trap that follows an
/// allocation failure is reported as what it is.
pub(super) struct MemoryCap {
    pub(super) limit: usize,
    pub(super) hit: bool,
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

    pub(super) fn loaded(&self, sha256: [u8; 32]) -> Option<RulesModule> {
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

    pub(super) fn compiled(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Weak<ModuleInner>>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn compiler(&self, tier: Tier) -> &Compiler {
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

    pub(super) fn deserialize(
        &self,
        tier: Tier,
        artifact: &[u8],
    ) -> Result<(Tier, Module), LoadError> {
        // SAFETY: the artifact was produced by `Module::serialize` in an engine with the same
        // compatibility hash (the key it is stored under), and the store it comes from is trusted
        // like the binary itself (see `load_artifact`). wasmtime checks the header and the
        // engine settings.
        let module = unsafe { Module::deserialize(&self.compiler(tier).engine, artifact) }
            .map_err(|e| LoadError::Invalid(format!("unusable compiled artifact: {e:#}")))?;
        Ok((tier, module))
    }

    pub(super) fn compile(&self, tier: Tier, bytes: &[u8]) -> Result<(Tier, Module), LoadError> {
        self.measure(bytes)?;
        let module = Module::new(&self.compiler(tier).engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")));
        // Compiling allocates megabytes (hundreds for a large module) that nothing reuses once
        // it is done: the bundled modules' compilations left 9 MiB free at start-up, a fifth
        // of an idle instance. Compilations are rare (start-up, swaps), so trimming after each
        // costs little, though it walks every heap under its lock.
        give_back_freed_memory();
        Ok((tier, module?))
    }

    /// Refuses a module whose compilation would cost more than the limits allow, before any of
    /// it is compiled: its size, and how many functions it defines (read from its function
    /// section, without validating anything else).
    pub(super) fn measure(&self, bytes: &[u8]) -> Result<(), LoadError> {
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
    pub(super) fn checked_code(
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

    pub(super) fn store(&self, tier: Tier) -> Store<CallState> {
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
    pub(super) fn new(mut config: Config) -> Result<Self, LoadError> {
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
    pub(super) bytes: usize,
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
