//! One compiled rules module, its instances, and a call through one of them: the reply read
//! back, a trap told for what it was.

use super::*;

/// A validated, compiled rules module. Clones share the compiled code.
#[derive(Clone)]
pub struct RulesModule {
    pub(super) inner: Arc<ModuleInner>,
}

pub(super) struct ModuleInner {
    /// Instances whose last call succeeded, ready for the next one. All of the current code.
    pub(super) idle: Mutex<Vec<Instance>>,
    pub(super) engine: RulesEngine,
    /// Replaced once, when optimised code takes over from baseline code.
    pub(super) code: RwLock<Arc<Code>>,
    pub(super) sha256: [u8; 32],
    /// Which optional exports it has.
    pub(super) optional: Optional,
    /// What it said of itself, if it describes itself.
    pub(super) description: Option<Description>,
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
pub(super) struct Code {
    pub(super) tier: Tier,
    pub(super) pre: InstancePre<CallState>,
}

/// An instance of a module, ready for calls.
pub struct Instance {
    /// The code it runs: an instance of replaced code is not kept for later calls.
    pub(super) code: Arc<Code>,
    pub(super) store: Store<CallState>,
    pub(super) deadline_ticks: u64,
    /// Ticks while this instance runs a call.
    pub(super) ticker: Arc<Ticker>,
    pub(super) memory: wasmtime::Memory,
    alloc: TypedFunc<u32, u32>,
    /// The operation exports, in [`Operation::ALL`] order, looked up once.
    operations: Vec<TypedFunc<(u32, u32), u64>>,
    /// The optional exports, where the module has them.
    pub(super) migrate: Option<TypedFunc<(u32, u32), u64>>,
    pub(super) describe: Option<TypedFunc<(u32, u32), u64>>,
    pub(super) bot: Option<TypedFunc<(u32, u32), u64>>,
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

    pub(super) fn code(&self) -> Arc<Code> {
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
    pub(super) fn install_code(&self, code: Arc<Code>) {
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

    pub(super) fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
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

    pub(super) fn call_typed<I: Serialize, T: DeserializeOwned>(
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
pub(super) fn check_description(description: &Description) -> Result<(), LoadError> {
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

/// Hands the memory the allocator holds free back to the system (glibc keeps freed memory for
/// reuse; after a compilation that is tens of megabytes nothing reuses).
pub(super) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::debug!(took = ?started.elapsed(), "freed memory handed back");
    }
}
