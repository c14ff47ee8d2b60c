//! The guest SDK: write a turn-based game's rules as plain Rust, test them natively, and export
//! them as a wasm rules module the game host can run.
//!
//! # Writing a game
//!
//! Implement [`Game`] for a type and export it with [`export_game!`]:
//!
//! ```
//! use sdk::{Ctx, Game, Outcome, Rejection, Seat};
//! use serde::{Deserialize, Serialize};
//!
//! /// First to say "42" wins.
//! pub struct FortyTwo;
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct State { players: Vec<String>, winner: Option<String>, turn: u64 }
//!
//! impl Game for FortyTwo {
//!     type Config = ();
//!     type State = State;
//!     type Action = u32;
//!     type View = Option<String>;
//!     type Event = String;
//!
//!     fn setup(players: &[Seat], _: (), _: &mut Ctx<String>) -> Result<State, Rejection> {
//!         Ok(State { players: players.iter().map(|s| s.id.clone()).collect(), winner: None, turn: 1 })
//!     }
//!     fn action(s: &mut State, player: &str, n: u32, ctx: &mut Ctx<String>) -> Result<(), Rejection> {
//!         if s.winner.is_some() { return Err(Rejection::new("game_over", "the game is over")); }
//!         if n != 42 { return Err(Rejection::new("wrong", "that is not the answer")); }
//!         s.winner = Some(player.to_string());
//!         ctx.broadcast(format!("{player} knew it"));
//!         Ok(())
//!     }
//!     fn timeout(s: &mut State, _: &mut Ctx<String>) { s.turn += 1; }
//!     fn leave(_: &mut State, _: &str, _: &mut Ctx<String>) {}
//!     fn view(s: &State, _: &str) -> Option<String> { s.winner.clone() }
//!     fn turn(s: &State) -> u64 { s.turn }
//!     fn outcome(s: &State) -> Option<Outcome> {
//!         s.winner.clone().map(|w| Outcome { winners: vec![w] })
//!     }
//! }
//!
//! sdk::export_game!(FortyTwo);
//!
//! // Natively, with no wasm involved:
//! let mut game = sdk::testing::Match::<FortyTwo>::start(7, &[("ann", 1), ("bob", 1)], ()).unwrap();
//! assert_eq!(game.act("bob", &41).unwrap_err().code, "wrong");
//! let step = game.act("ann", &42).unwrap();
//! assert_eq!(step.outcome.unwrap().winners, ["ann"]);
//! ```
//!
//! Build the module with `cargo xtask build-rules` (see the repository's README).
//!
//! # From nothing to a match against the host's bot
//!
//! 1. **Start a crate.** `cargo xtask new-game my-game` writes `rules/my-game`: a counting race
//!    for 2 to 4 players with two modes and a bot, and its tests. Every crate under `rules/` is a
//!    workspace member; no other file needs a line for it.
//! 2. **Write the rules** in `src/lib.rs`: the types (`Config`, `State`, `Action`, `View`,
//!    `Event`) and the [`Game`] functions. Keep what a player may not know out of its `View`: the
//!    host sends each player its own view after every change, and never the state.
//! 3. **Say what the game is**: [`Game::players`] (how many a match seats: the host starts a
//!    match as soon as the most wait, or once the fewest have waited `MATCH_FILL_MS`),
//!    [`Game::round_timeout`] and [`Game::modes`] (named configs a player asks for with
//!    `joinMatchmaking {mode}`). The game's name is its crate's.
//! 4. **Give it a bot** ([`Bot`]): from a seat's view, the action that seat takes now, or `None`.
//!    Export it: `sdk::export_game!(MyGame, bot)`.
//! 5. **Test it natively** with [`testing::Match`]: `start`, `act`, `timeout`, `leave`, `view`,
//!    and `play_bot`, through the same code the wasm module runs: `cargo test -p my-game`. A
//!    real match's log (`GET /matches/<room>/log` on a host) replays natively with
//!    `testing::replay`, which says at which input your rules went another way.
//! 6. **Build and load it**: `cargo xtask build-rules my-game` writes
//!    `target/rules/my-game.wasm`; a host started with `cargo xtask run` watches that folder and
//!    serves the game at once (a new version of it too; running matches keep theirs).
//! 7. **Play it**: connect any Socket.IO v4 client and send
//!    `joinMatchmaking {level: 1, game: "my-game", vsBot: true}`. The ack is the room; then come
//!    `matchFound` (every seat, bots marked), a `view` after every change, `gameEvent`s, and
//!    `gameOver`. Act with `submitAction {roomId, action}`. (`docs/PROTOCOL.md` has every event.)
//!
//! Two conventions the host relies on:
//!
//! * **Do not emit a game-over event.** The host tells every player `gameOver {roomId, winners}`
//!   from [`Game::outcome`]; an event of the rules' own would reach them twice.
//! * **Refusals are for players.** Their `reason` is shown as it is; say what to do, in the
//!   player's words, and keep a stable `code` for clients to switch on.
//!
//! # What the SDK guarantees
//!
//! * **Determinism.** The only randomness is [`Ctx::rng`], seeded by the host at setup and kept in
//!   the match state, so the same seed and inputs give byte-identical states, natively and in wasm.
//!   A module has no clock, no WASI and no access to host state.
//! * **Refusals are values.** Return a [`Rejection`]; the host keeps the state it had and the
//!   player sees the code and reason. An action that does not even decode as `Game::Action` is
//!   refused with code `invalid_action`; one from a player not seated in the match with
//!   `not_in_match`. The rules never see either.
//! * **A panic is a bug**, not a refusal: the module traps, the host reports the panic message and
//!   keeps the previous state.
//!
//! # Layout
//!
//! * [`Game`], [`Bot`] and [`Ctx`]: what an author implements and uses.
//! * [`dispatch`]: the ABI's operations as plain `bytes -> bytes` functions, generic over a game;
//!   the wasm exports and the native harness both call these.
//! * [`testing`]: the native harness.
//! * [`export_game!`]: the `#[no_mangle]` exports, on `wasm32` only.

pub use abi::{self, Outcome, PlayerId, Rejection, Seat};
use serde::{Serialize, de::DeserializeOwned};

pub mod dispatch;
mod rng;
pub mod testing;

/// The `rand` crate, for its distributions and `seq::SliceRandom` (shuffling, choosing).
pub use rand;
/// Random-number traits, for `ctx.rng().random_range(..)` and friends.
pub use rand::{Rng as RandomExt, RngCore};
pub use rng::Rng;
/// The JSON crate the ABI speaks, re-exported for [`Game::migrate`].
pub use serde_json;

/// A game's rules. Every method is a pure function of its inputs: no I/O, no clock, and
/// randomness only from [`Ctx::rng`]. Keep everything in `State`: no `static`s, no lazily
/// initialised globals. The host reuses an instance for many calls and the SDK frees all memory
/// at the start of each, so anything kept outside `State` would be lost or, worse, overwritten.
pub trait Game {
    /// Per-match settings the host passes at setup. JSON `null` means `Default::default()`.
    /// Named ones are the game's modes ([`Game::modes`]).
    type Config: Serialize + DeserializeOwned + Default;
    /// Everything the game needs between calls. It is stored as JSON by the host.
    type State: Serialize + DeserializeOwned;
    /// One move by one player, as the client sends it (JSON).
    type Action: DeserializeOwned;
    /// What one player may see. Must never include what that player is not allowed to know.
    type View: Serialize;
    /// Something that happened, for clients.
    type Event: Serialize;

    /// Starts a match for these seats. Refuse seats or a config the game cannot play with.
    fn setup(
        players: &[Seat],
        config: Self::Config,
        ctx: &mut Ctx<Self::Event>,
    ) -> Result<Self::State, Rejection>;

    /// Applies one player's action. On `Err` the state is thrown away, so the rules may return
    /// early after partial changes without corrupting anything.
    fn action(
        state: &mut Self::State,
        player: &str,
        action: Self::Action,
        ctx: &mut Ctx<Self::Event>,
    ) -> Result<(), Rejection>;

    /// The current round's time ran out.
    fn timeout(state: &mut Self::State, ctx: &mut Ctx<Self::Event>);

    /// A player left the match for good.
    fn leave(state: &mut Self::State, player: &str, ctx: &mut Ctx<Self::Event>);

    /// Carries a running match over from another version of this game, so that a balance fix
    /// or a new rule reaches matches already under way. `old` is the game state (as JSON) that
    /// another version stored; it may lack fields this version added, or have fields it dropped.
    /// Return this version's state for the same match, or `None` if `old` cannot be carried over
    /// (the match then finishes on the version it started with).
    ///
    /// The host calls it only for modules exported with `export_game!(Game, migrations)`, and
    /// only at a round boundary, so a migration never lands in the middle of a round. Players
    /// and the RNG carry over untouched. The default carries nothing over.
    fn migrate(old: serde_json::Value) -> Option<Self::State> {
        let _ = old;
        None
    }

    /// How many players a match seats, fewest to most. The host starts a match as soon as the
    /// most are waiting, or once the fewest have waited long enough. Default: exactly two.
    fn players() -> std::ops::RangeInclusive<u32> {
        2..=2
    }

    /// How long a round may take before the host times it out (and calls [`Game::timeout`]).
    /// Default: `None`, the host's own setting (`ROUND_TIMEOUT_MS`).
    fn round_timeout() -> Option<std::time::Duration> {
        None
    }

    /// The named settings a player can ask for when joining a queue (`joinMatchmaking {mode}`),
    /// e.g. a bigger map; the first is the default. Default: one mode, `default`, with
    /// `Config::default()`.
    fn modes() -> Vec<(String, Self::Config)> {
        vec![("default".to_string(), Self::Config::default())]
    }

    /// Whether `state` is one this game could have produced for these `seats`: `Err` says
    /// what is wrong with it. The host only ever hands back states the rules returned, but a
    /// stored record can be damaged, and the rules' other functions may then rely on what a
    /// state of theirs always holds (a wizard for every seat, positions on the map). The SDK
    /// asks before any other function sees a state and answers one that fails with `BadInput`,
    /// so the host keeps the match's last good state. Default: every state that decodes.
    fn check(state: &Self::State, seats: &[Seat]) -> Result<(), String> {
        let _ = (state, seats);
        Ok(())
    }

    /// What `player` (a seated player) may see.
    fn view(state: &Self::State, player: &str) -> Self::View;

    /// The current turn or round number. The host restarts its round timer when it changes.
    fn turn(state: &Self::State) -> u64;

    /// `Some` once the match is over.
    fn outcome(state: &Self::State) -> Option<Outcome>;
}

/// A game's own bot: what a player in a seat would do, seeing only what that seat sees.
///
/// Export it with `export_game!(MyGame, bot)`; the host then seats bots in matches of the game
/// (`joinMatchmaking {vsBot: true}`, or after a wait, see the host's `BOT_AFTER_MS`). After every
/// change of a match it asks each bot's seat, with that seat's [`Game::View`] (never the state),
/// and plays the action it returns through [`Game::action`] like a player's, after a short think
/// delay. A refused action is dropped, so a bot cannot break a match; it would only stall until
/// the round times out.
pub trait Bot: Game
where
    Self::View: DeserializeOwned,
    Self::Action: Serialize,
{
    /// The action of the bot in seat `me` now, or `None` when it has nothing to do (not its turn,
    /// already acted this round, out of the game). `rng` is seeded by the host from the match's
    /// progress, so asking twice at the same point gives the same answer.
    fn act(view: Self::View, me: &str, rng: &mut Rng) -> Option<Self::Action>;
}

/// Refuses seats that name one player twice (`duplicate_player`), for [`Game::setup`].
pub fn distinct_seats(players: &[Seat]) -> Result<(), Rejection> {
    for (i, seat) in players.iter().enumerate() {
        if players[..i].iter().any(|other| other.id == seat.id) {
            return Err(Rejection::new(
                "duplicate_player",
                format!("player {:?} is seated twice", seat.id),
            ));
        }
    }
    Ok(())
}

/// What a rule can do besides changing its state: draw random numbers and emit events.
pub struct Ctx<'a, E> {
    rng: &'a mut Rng,
    events: Vec<abi::Event<E>>,
}

impl<'a, E> Ctx<'a, E> {
    /// A context drawing from `rng`. The SDK makes one for every call; make your own to unit-test
    /// a helper that takes a `Ctx`.
    pub fn new(rng: &'a mut Rng) -> Self {
        Ctx {
            rng,
            events: Vec::new(),
        }
    }

    /// The match's deterministic random-number generator.
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// Sends an event to every player in the match.
    pub fn broadcast(&mut self, event: E) {
        self.events.push(abi::Event { to: None, event });
    }

    /// The events emitted so far, in order.
    pub fn events(&self) -> &[abi::Event<E>] {
        &self.events
    }

    /// Sends an event to one player only.
    pub fn tell(&mut self, player: &str, event: E) {
        self.events.push(abi::Event {
            to: Some(player.to_string()),
            event,
        });
    }
}

/// Exports a [`Game`] as a rules module: expands to the ABI's `#[no_mangle]` functions when
/// compiled for `wasm32`, and to nothing natively (so several games can be linked into one native
/// test binary).
///
/// The module describes itself ([`abi::EXPORT_DESCRIBE`]) with its crate's name and what
/// [`Game::players`], [`Game::round_timeout`] and [`Game::modes`] say: the host installs it only
/// under that name.
///
/// Optional exports follow the game, in any order:
///
/// * `export_game!(MyGame, migrations)` exports the migration ([`Game::migrate`]): then, when
///   this module becomes the active version of its game, the host carries each running match
///   over to it at the match's next round boundary, if `migrate` accepts its state. Without
///   `migrations`, running matches finish on the version they started with.
/// * `export_game!(MyGame, bot)` exports the game's bot ([`Bot`]), so the host can seat bots.
#[macro_export]
macro_rules! export_game {
    ($game:ty, $($extra:ident),+ $(,)?) => {
        $crate::export_game!($game);
        $( $crate::__export_extra!($game, $extra); )+
    };
    ($game:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[global_allocator]
            static GAMEHOST_ALLOCATOR: $crate::__private::Allocator =
                $crate::__private::allocator();

            #[unsafe(no_mangle)]
            pub extern "C" fn gamehost_abi_version() -> u32 {
                $crate::abi::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn gamehost_alloc(len: u32) -> u32 {
                GAMEHOST_ALLOCATOR.begin_call($crate::__private::prepare);
                $crate::__private::alloc(len)
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_setup(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::setup::<$game>) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_action(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::action::<$game>) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_timeout(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::timeout::<$game>) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_leave(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::leave::<$game>) }
            }

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_view(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::view::<$game>) }
            }

            // The game is named after its crate, as `cargo xtask build-rules` names its file.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_describe(ptr: u32, len: u32) -> u64 {
                unsafe {
                    $crate::__private::call(ptr, len, |input| {
                        $crate::dispatch::describe::<$game>(env!("CARGO_PKG_NAME"), input)
                    })
                }
            }
        };
    };
}

/// One optional export of [`export_game!`]. Not part of the SDK's API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_extra {
    ($game:ty, migrations) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_migrate(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::migrate::<$game>) }
            }
        };
    };
    ($game:ty, bot) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gamehost_bot(ptr: u32, len: u32) -> u64 {
                unsafe { $crate::__private::call(ptr, len, $crate::dispatch::bot::<$game>) }
            }
        };
        // Checked natively too, so a game that names `bot` without implementing it fails to
        // build in its own tests, not only for wasm.
        const _: fn(&[u8]) -> Vec<u8> = $crate::dispatch::bot::<$game>;
    };
}

/// The glue [`export_game!`] expands to. Not part of the SDK's API.
#[doc(hidden)]
pub mod __private {
    /// The allocator of a rules module: a bump allocator that never frees one allocation but
    /// frees everything at once when a call begins (`gamehost_alloc`): nothing outlives a call
    /// (see the ABI). It uses the memory the module starts with before it grows any (growing
    /// costs the host a system call), and it extends the newest allocation in place, which is how
    /// a serialiser's output buffer grows. A module that allocates without bound still meets the
    /// host's memory cap: growing fails and the allocation aborts.
    #[cfg(target_arch = "wasm32")]
    pub type Allocator = bump::Bump;

    #[cfg(target_arch = "wasm32")]
    pub const fn allocator() -> Allocator {
        bump::Bump::new()
    }

    #[cfg(target_arch = "wasm32")]
    mod bump {
        use core::alloc::{GlobalAlloc, Layout};
        use core::arch::wasm32::{memory_grow, memory_size};
        use core::cell::Cell;

        const PAGE: usize = 65536;

        unsafe extern "C" {
            static __heap_base: u8;
        }

        pub struct Bump {
            /// Where every call's allocations start: above whatever the first call's preparation
            /// allocated for good. 0 until then.
            mark: Cell<usize>,
            /// The first free byte; 0 until the first allocation.
            next: Cell<usize>,
            /// Where the newest allocation starts, so it can grow in place.
            last: Cell<usize>,
        }

        // SAFETY: the ABI has no threads; a rules module runs on one.
        unsafe impl Sync for Bump {}

        impl Bump {
            pub const fn new() -> Self {
                Bump {
                    mark: Cell::new(0),
                    next: Cell::new(0),
                    last: Cell::new(0),
                }
            }

            /// Starts a call: everything allocated by earlier calls is free again. The first
            /// time, `prepare` runs first, so what it allocates stays below the mark.
            pub fn begin_call(&self, prepare: fn()) {
                if self.mark.get() == 0 {
                    prepare();
                    let base = core::ptr::addr_of!(__heap_base) as usize;
                    self.mark.set(self.next.get().max(base));
                }
                self.next.set(self.mark.get());
                self.last.set(0);
            }

            /// Makes sure memory reaches `end`; false if the host refuses to grow it.
            fn reach(&self, end: usize) -> bool {
                let size = memory_size(0) * PAGE;
                if end <= size {
                    return true;
                }
                let needed = (end - size).div_ceil(PAGE);
                memory_grow(0, needed) != usize::MAX
            }
        }

        unsafe impl GlobalAlloc for Bump {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let mut next = self.next.get();
                if next == 0 {
                    next = core::ptr::addr_of!(__heap_base) as usize;
                }
                let start = (next + layout.align() - 1) & !(layout.align() - 1);
                let Some(end) = start.checked_add(layout.size()) else {
                    return core::ptr::null_mut();
                };
                if !self.reach(end) {
                    return core::ptr::null_mut();
                }
                self.next.set(end);
                self.last.set(start);
                start as *mut u8
            }

            unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let start = ptr as usize;
                if start == self.last.get() && start + layout.size() == self.next.get() {
                    let Some(end) = start.checked_add(new_size) else {
                        return core::ptr::null_mut();
                    };
                    if end <= self.next.get() || self.reach(end) {
                        self.next.set(end.max(start));
                        return ptr;
                    }
                    return core::ptr::null_mut();
                }
                // SAFETY: as `GlobalAlloc::realloc`'s default: a new block, then a copy.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    }
                    new
                }
            }
        }
    }

    /// Runs once per instance, before the heap mark is taken: sets up everything the standard
    /// library would otherwise allocate lazily, and for good, in the middle of some call.
    pub fn prepare() {
        install_panic_hook();
        let _ = std::io::stdout();
        let _ = std::thread::current();
    }

    /// Reserves `len` bytes for the call's input (the heap was just reset by the allocator).
    pub fn alloc(len: u32) -> u32 {
        let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len as usize));
        buffer.as_mut_ptr() as usize as u32
    }

    /// Runs one operation on the input the host wrote at `ptr` and returns the reply's address
    /// and length, packed.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be memory the host filled after a call to [`alloc`].
    pub unsafe fn call(ptr: u32, len: u32, operation: fn(&[u8]) -> Vec<u8>) -> u64 {
        install_panic_hook();
        let input = unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len as usize) };
        let reply = operation(input).leak();
        crate::abi::pack_reply(reply.as_ptr() as usize as u32, reply.len() as u32)
    }

    #[cfg(target_arch = "wasm32")]
    fn install_panic_hook() {
        #[link(wasm_import_module = "gamehost_v1")]
        unsafe extern "C" {
            #[link_name = "panic"]
            fn host_panic(ptr: *const u8, len: usize);
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = info.to_string();
                // SAFETY: the host copies the message out before the trap that follows.
                unsafe { host_panic(message.as_ptr(), message.len()) };
            }))
        });
    }

    // Natively a panic already prints through the default hook, and there is no host to tell.
    #[cfg(not(target_arch = "wasm32"))]
    fn install_panic_hook() {}
}
