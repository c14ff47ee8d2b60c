//! The boundary between the game host and a rules module: **ABI version 1**.
//!
//! This crate is the one place where the boundary is defined. The host (`host::runtime`) and the
//! guest SDK (`sdk`) both depend on it, so a message shape or an export name cannot drift between
//! the two sides.
//!
//! # The module
//!
//! A rules module is a core WebAssembly module (`wasm32-unknown-unknown`). It must export:
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `memory` | memory | the guest's linear memory; all messages live in it |
//! | [`EXPORT_ABI_VERSION`] | `() -> i32` | returns [`ABI_VERSION`]; the host refuses any other value |
//! | [`EXPORT_ALLOC`] | `(len: i32) -> i32` | reserves `len` bytes for an input message and returns their address |
//! | [`EXPORT_SETUP`] | `(ptr: i32, len: i32) -> i64` | [`SetupInput`] in, `Reply<Transition>` out |
//! | [`EXPORT_ACTION`] | `(ptr: i32, len: i32) -> i64` | [`ActionInput`] in, `Reply<Transition>` out |
//! | [`EXPORT_TIMEOUT`] | `(ptr: i32, len: i32) -> i64` | [`TimeoutInput`] in, `Reply<Transition>` out |
//! | [`EXPORT_LEAVE`] | `(ptr: i32, len: i32) -> i64` | [`LeaveInput`] in, `Reply<Transition>` out |
//! | [`EXPORT_VIEW`] | `(ptr: i32, len: i32) -> i64` | [`ViewInput`] in, `Reply<view>` out |
//!
//! It may also export, optionally:
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | [`EXPORT_MIGRATE`] | `(ptr: i32, len: i32) -> i64` | [`MigrateInput`] in, `Reply<Transition>` out: the state of a match another version of this game started, carried over to this version (no events), or `Rejected` with code `cannot_migrate` |
//! | [`EXPORT_DESCRIBE`] | `(ptr: i32, len: i32) -> i64` | JSON `null` in, `Reply<Description>` out: the game's name, how many players a match seats, its round timeout and its modes |
//! | [`EXPORT_BOT`] | `(ptr: i32, len: i32) -> i64` | [`BotInput`] in, `Reply<action or null>` out: the action a bot in that seat takes now, from that seat's view only; `null` when it has nothing to do (not its turn, already acted) |
//!
//! A host moves a running match to a newly active version only through the migration export,
//! and only at a round boundary; without it, a match stays on the version it started with.
//!
//! A host asks a module to describe itself once, when it loads it. A module without
//! [`EXPORT_DESCRIBE`] (built before it existed) is taken to be a game of exactly two players,
//! named as it was installed, with the host's round timeout and one mode, `default`, whose
//! configuration is `null`. A module that describes itself is installed only under the name it
//! gives.
//!
//! # Changes within version 1
//!
//! Optional exports are added without changing [`ABI_VERSION`]: a module built before one
//! existed loads as it did.
//!
//! * [`EXPORT_MIGRATE`]: carries running matches over to a new version.
//! * [`EXPORT_DESCRIBE`]: a module says what game it is ([`Description`]).
//! * [`EXPORT_BOT`]: the game plays its own bots. The host seats bots only in games whose module
//!   has it; a bot's action goes through [`EXPORT_ACTION`] like any player's, refusals included.
//!
//! A module may import exactly one function, and nothing else (no WASI, no clock, no host state):
//!
//! | import | signature | meaning |
//! |---|---|---|
//! | [`IMPORT_MODULE`]`.`[`IMPORT_PANIC`] | `(ptr: i32, len: i32) -> ()` | hands the host a UTF-8 panic message just before the guest traps, so the host can report it |
//!
//! # One call
//!
//! 1. The host takes an instance of the module: a new one, or one whose previous call completed
//!    normally. An instance whose call trapped or failed is never used again.
//! 2. It calls [`EXPORT_ALLOC`] with the input's length and writes the input (UTF-8 JSON) there.
//!    **Each call begins here**: from this point the guest must behave exactly as a fresh
//!    instance would, carrying nothing over from an earlier call; everything it allocated for
//!    earlier calls is free again. (The SDK resets its heap in this export, so the guest never
//!    needs to free memory.)
//! 3. It calls the operation's export with that address and length.
//! 4. The export returns `(out_ptr << 32) | out_len` as an `i64`: the address and length of the
//!    reply, a JSON [`Reply`], in guest memory.
//!
//! All messages are JSON (`serde_json` on both sides), so a match's state is readable wherever the
//! host stores it. Serialisation must be deterministic: the same input gives the same bytes.
//!
//! # Errors and traps
//!
//! * A rule that refuses an input answers `{"Err": {"Rejected": {"code", "reason"}}}` and changes
//!   nothing: the host keeps the state it passed in.
//! * Input the guest cannot decode (a host bug, or a state from another game) is answered with
//!   `{"Err": {"BadInput": {"message"}}}`.
//! * Anything else is a trap: a panic (preceded by a call to the panic import when the module has
//!   it), running past the host's time budget (epoch deadline), growing memory past the host's cap
//!   (the allocation fails and the guest aborts), or a reply the host cannot read (out of bounds,
//!   not UTF-8 JSON, wrong shape). The host turns each of these into an error for that one call and
//!   keeps the match's previous state.
//!
//! # Versioning
//!
//! [`ABI_VERSION`] changes whenever an export, an import or a message shape changes in a way an
//! older module or host would misread. Adding an optional field with a default does not change it.

use serde::{Deserialize, Serialize};

pub mod log;

/// The version of the boundary described here.
pub const ABI_VERSION: u32 = 1;

/// The guest's linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: the ABI version the module was built for.
pub const EXPORT_ABI_VERSION: &str = "gamehost_abi_version";
/// `(len: i32) -> i32`: room for an input message.
pub const EXPORT_ALLOC: &str = "gamehost_alloc";
/// `(ptr, len) -> i64`: start a match.
pub const EXPORT_SETUP: &str = "gamehost_setup";
/// `(ptr, len) -> i64`: a player's action.
pub const EXPORT_ACTION: &str = "gamehost_action";
/// `(ptr, len) -> i64`: the round's time ran out.
pub const EXPORT_TIMEOUT: &str = "gamehost_timeout";
/// `(ptr, len) -> i64`: a player left the match for good.
pub const EXPORT_LEAVE: &str = "gamehost_leave";
/// `(ptr, len) -> i64`: what one player may see of the match.
pub const EXPORT_VIEW: &str = "gamehost_view";

/// Optional: `(ptr, len) -> i64`, [`MigrateInput`] in, `Reply<Transition>` out.
pub const EXPORT_MIGRATE: &str = "gamehost_migrate";

/// Optional: `(ptr, len) -> i64`, JSON `null` in, `Reply<Description>` out.
pub const EXPORT_DESCRIBE: &str = "gamehost_describe";

/// Optional: `(ptr, len) -> i64`, [`BotInput`] in, `Reply<action or null>` out.
pub const EXPORT_BOT: &str = "gamehost_bot";

/// Every required operation export, in the order the host checks them.
pub const OPERATION_EXPORTS: [&str; 5] = [
    EXPORT_SETUP,
    EXPORT_ACTION,
    EXPORT_TIMEOUT,
    EXPORT_LEAVE,
    EXPORT_VIEW,
];

/// The import module of this ABI version; its name carries the version so that a host and a
/// module of different versions cannot link by accident.
pub const IMPORT_MODULE: &str = "gamehost_v1";
/// `(ptr: i32, len: i32) -> ()`: a panic message, sent just before the guest traps.
pub const IMPORT_PANIC: &str = "panic";

/// Packs a reply's address and length into the `i64` an operation export returns.
pub fn pack_reply(ptr: u32, len: u32) -> u64 {
    (u64::from(ptr) << 32) | u64::from(len)
}

/// Splits an operation export's return value into the reply's address and length.
pub fn unpack_reply(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// A player's identity inside a match. The host decides what it is (a socket id, an account id);
/// the rules only compare it.
pub type PlayerId = String;

/// A player as matchmaking seated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub id: PlayerId,
    /// The level the player queued at. Any integer; what it unlocks is up to the rules.
    pub level: i64,
}

impl From<(&str, i64)> for Seat {
    fn from((id, level): (&str, i64)) -> Self {
        Seat {
            id: id.to_string(),
            level,
        }
    }
}

/// Input of [`EXPORT_SETUP`]. `C` is the game's own match configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupInput<C> {
    /// The only source of randomness the module gets. The same seed, seats, config and later
    /// inputs give byte-identical states.
    pub seed: u64,
    pub players: Vec<Seat>,
    pub config: C,
}

/// Input of [`EXPORT_ACTION`]. `S` is the match state a previous call returned; `A` the action
/// exactly as the client sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionInput<S, A> {
    pub state: S,
    pub player: PlayerId,
    pub action: A,
}

/// Input of [`EXPORT_TIMEOUT`]: the round's time ran out; resolve it with what was submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeoutInput<S> {
    pub state: S,
}

/// Input of [`EXPORT_LEAVE`]: a player left for good (gave up, or its reconnection grace ran out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveInput<S> {
    pub state: S,
    pub player: PlayerId,
}

/// Input of [`EXPORT_MIGRATE`]: `state` is what another version of the same game stored (any
/// shape that version had). Answer with this version's state for the same match, or refuse with
/// `cannot_migrate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateInput<S> {
    pub state: S,
}

/// What [`EXPORT_DESCRIBE`] answers: what game a module is. `C` is the game's match
/// configuration, as in [`SetupInput`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Description<C> {
    /// The game's name (1 to 64 of `a-z`, `0-9`, `-`, `_`): the module is installed under this
    /// name only.
    pub name: String,
    /// How many players a match seats.
    pub players: PlayerCount,
    /// How long a round may take before the host times it out, in milliseconds; absent: the
    /// host's own setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_timeout_ms: Option<u64>,
    /// The settings a queue can ask for by name; the first is the default. At least one.
    pub modes: Vec<Mode<C>>,
}

/// How many players a match seats: `min..=max`, `1 <= min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerCount {
    pub min: u32,
    pub max: u32,
}

/// A named match configuration, e.g. a bigger map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mode<C> {
    pub name: String,
    /// Passed as [`SetupInput::config`] to matches of this mode.
    pub config: C,
}

/// Input of [`EXPORT_BOT`]: what the seat `player` sees now (its view, exactly as
/// [`EXPORT_VIEW`] gave it, never the match state) and a seed for the bot's choices. The host
/// derives the seed from the match and its progress, so asking twice gives the same action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BotInput<V> {
    pub view: V,
    pub player: PlayerId,
    pub seed: u64,
}

/// Input of [`EXPORT_VIEW`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewInput<S> {
    pub state: S,
    pub player: PlayerId,
}

/// What every call that may change a match returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition<S, V, E> {
    /// The new match state; the host stores it and passes it back on the next call.
    pub state: S,
    /// The match's turn (round) number, so the host can restart its round timer when it moves.
    pub turn: u64,
    /// Events for clients, in order.
    pub events: Vec<Event<E>>,
    /// Each seated player's view after this call. A view holds only what that player may see.
    pub views: Vec<PlayerView<V>>,
    /// Set once the match is over (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// An event for clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<E> {
    /// Absent: everyone in the match. A player id: that player only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<PlayerId>,
    pub event: E,
}

/// One player's view of the match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerView<V> {
    pub player: PlayerId,
    pub view: V,
}

/// How a match ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The winners. Empty means a draw.
    pub winners: Vec<PlayerId>,
}

/// A rule's refusal: the input was understood and is not allowed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// A stable, machine-readable code, e.g. `on_cooldown`.
    pub code: String,
    /// A sentence for the player.
    pub reason: String,
}

impl Rejection {
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Why a guest did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestError {
    /// The rules refused the input; see [`Rejection`].
    Rejected(Rejection),
    /// The guest could not decode the input at all (not the state of this game, not JSON).
    BadInput { message: String },
    /// The rules failed to produce a reply they could encode: a bug in the module.
    Internal { message: String },
}

/// Every operation's reply: `{"Ok": ...}` or `{"Err": ...}`.
pub type Reply<T> = Result<T, GuestError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_pointer_round_trips() {
        for (ptr, len) in [(0, 0), (1, 2), (u32::MAX, u32::MAX), (0x1000, 0)] {
            assert_eq!(unpack_reply(pack_reply(ptr, len)), (ptr, len));
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let rejected: Reply<()> = Err(GuestError::Rejected(Rejection::new("dead", "you are out")));
        let json = serde_json::to_string(&rejected).unwrap();
        assert_eq!(
            json,
            r#"{"Err":{"Rejected":{"code":"dead","reason":"you are out"}}}"#
        );
    }
}
