//! Where the host keeps what outlives one request: socket mappings, queues, matches, game
//! states, sessions and (with Redis) the instance registry. Every record has the shape the
//! original backend kept in Redis (see [`crate::model`]).
//!
//! Two backends sit behind one interface: [`MemoryStore`] for a lone instance (the default) and
//! [`RedisStore`] (chosen by `REDIS_URL`) for many instances sharing one Redis.
//!
//! **Invariants:**
//! * every change of a game state is a compare-and-set on its `version`
//!   ([`Store::replace_game`]), so two writers can never silently overwrite each other;
//! * matchmaking is atomic: a waiting player is handed to at most one match, once;
//! * a session's socket is only released by the socket that holds it, so a late disconnect of a
//!   replaced socket cannot undo a reconnection elsewhere.

mod memory;

pub use crate::redis_store::RedisStore;
pub use memory::MemoryStore;

use crate::matches::Message;
use crate::matchmaking::{Joined, Lane, Seating};
use crate::model::{
    GameState, LogEntry, MatchRecord, PlayerId, QueueEntry, RoomId, Session, SocketMapping,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("room {0} has no game state")]
    NoSuchGame(RoomId),
    #[error("room {room} changed meanwhile (version {found}, expected {expected})")]
    Conflict {
        room: RoomId,
        expected: u64,
        found: u64,
    },
    /// A new match was not stored: one of its players was seated in another running match
    /// meanwhile (a player must never play two at once).
    #[error("{player} plays in room {room} already")]
    Seated { player: PlayerId, room: RoomId },
    /// The shared store cannot be reached now; the request may succeed later.
    #[error("the shared store is unreachable: {0}")]
    Unavailable(String),
    /// The shared store holds something this host cannot read.
    #[error("unreadable record in the store: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What `/health/cleanup` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub socket_mappings: usize,
    /// Sessions held by a socket nothing live backs, released (their grace starts).
    pub sessions: usize,
    pub queue_entries: usize,
    pub matches: usize,
    pub instances: usize,
}

impl Cleaned {
    pub fn total(&self) -> usize {
        self.socket_mappings + self.sessions + self.queue_entries + self.matches + self.instances
    }
}

/// A live instance as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub sockets: usize,
    /// When it started (ms since the epoch), as its heartbeat says; `None` where no heartbeat
    /// is kept (in memory, there is only this instance).
    pub started_at: Option<u64>,
    /// The `gamehost` version it runs, as its heartbeat says.
    pub build: Option<String>,
    /// Which code it runs each rules version it has loaded on (`baseline`, `optimized`).
    pub code: BTreeMap<String, String>,
}

/// What an instance says of itself with its heartbeat.
#[derive(Debug, Clone, Default)]
pub struct InstanceAbout {
    /// When it started, in ms since the epoch.
    pub started_at: u64,
    /// Rules version → the code tier it runs it on.
    pub code: BTreeMap<String, String>,
}

/// The host's store: in memory, or shared through Redis.
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Default for Store {
    fn default() -> Self {
        Store::Memory(MemoryStore::default())
    }
}

macro_rules! delegate {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> StoreResult<$ret> {
                    match self {
                        Store::Memory(store) => store.$name($($arg),*).await,
                        Store::Redis(store) => store.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    /// Records (or rewrites) which instance holds a socket and what it is doing.
    fn put_socket(&self, mapping: &SocketMapping) -> ();
    /// Forgets a socket held by `instance`; returns its mapping if there was one.
    fn remove_socket(&self, socket: &str, instance: &str) -> Option<SocketMapping>;
    /// Records which room a socket plays in, whichever instance (`instance`) holds it.
    fn set_socket_room(&self, socket: &str, instance: &str, room: Option<&str>) -> ();
    fn socket_count(&self) -> usize;
    /// Socket counts of every instance that has mappings.
    fn sockets_by_instance(&self) -> BTreeMap<String, usize>;
    /// The mappings of every socket `instance` registered.
    fn instance_sockets(&self, instance: &str) -> Vec<SocketMapping>;

    /// Queues a player (whose socket is on `instance`) in a lane (a game and mode, see
    /// [`crate::matchmaking`]), or takes the players it completes a match with, atomically
    /// ([`crate::matchmaking::decide`]). A waiting player whose instance is gone is never handed
    /// out.
    fn join_queue(&self, lane: &str, entry: &QueueEntry, instance: &str, seating: Seating) -> Joined;
    /// Takes the players of a queue that has waited long enough for a partial match, if it has,
    /// atomically: each waiting player is handed to one caller at most.
    fn fill_queue(&self, lane: &str, level: i64, seating: Seating) -> Option<Vec<QueueEntry>>;
    /// Takes a player out of whichever queue holds it; returns whether it was waiting.
    fn leave_queue(&self, player: &str) -> bool;
    /// How many wait in each lane at each level.
    fn queue_counts(&self) -> BTreeMap<(Lane, i64), usize>;

    /// Stores a new match and its first game state, announcing `messages` with it (with
    /// Redis: on the room's channel and in its log; in memory the writer delivers them) and
    /// appending `log` to its match log, in one step. In the same step its players' sessions
    /// name it and their queue entries are dropped (a player seated while it queued again on
    /// another connection must not be taken from the queue a second time); and if one of them
    /// was seated in another running match meanwhile, nothing is stored ([`StoreError::Seated`]).
    fn insert_match(&self, record: &MatchRecord, game: &GameState, messages: &[Message], log: &[LogEntry]) -> ();
    fn game(&self, room: &str) -> Option<GameState>;
    /// Writes `game` if the stored one still has version `expected`, announcing `messages` with
    /// it (with Redis: on the room's channel and in its log) and appending `log` (the inputs
    /// that led to it) to its match log, in one step: the log and the state never disagree.
    fn replace_game(&self, game: &GameState, expected: u64, messages: &[Message], log: &[LogEntry]) -> ();
    /// A match's log, oldest entry first; kept as long as its game.
    fn match_log(&self, room: &str) -> Vec<LogEntry>;
    /// Every stored room, sorted.
    fn game_rooms(&self) -> Vec<RoomId>;
    /// How many stored games are not finished.
    fn active_game_count(&self) -> usize;
    fn match_count(&self) -> usize;
    /// Forgets finished games (and their match records) that ended before `cutoff_ms`;
    /// returns how many.
    fn prune_finished(&self, cutoff_ms: u64) -> usize;

    fn session(&self, player: &str) -> Option<Session>;
    /// How many sessions are kept, held or in their grace.
    fn session_count(&self) -> usize;
    /// Marks `socket` as the player's current one (creating the session as `fresh` if there is
    /// none) and cancels any pending expiry; returns the session.
    fn claim_session(&self, fresh: &Session, socket: &str) -> Session;
    /// If `socket` is still the player's current one, lets it go: the session now expires at
    /// `expires_at` unless the player comes back. Returns the session if it was released.
    fn release_session(&self, player: &str, socket: &str, expires_at: u64) -> Option<Session>;
    /// Takes the sessions whose grace ran out before `now_ms`; each is handed to exactly one
    /// caller, whichever instance asks.
    fn expire_sessions(&self, now_ms: u64) -> Vec<Session>;

    /// Removes what nothing live backs: mappings of sockets neither `live` (this instance's
    /// sockets) nor a live instance holds, queue entries of players without a live socket,
    /// match records without a game, and registrations of dead instances; and releases the
    /// sessions such sockets held, as if they had disconnected.
    fn cleanup(&self, instance: &str, live: &HashSet<String>) -> Cleaned;

    /// Says this instance is alive for another `ttl_ms`. Returns whether the registry still
    /// listed it: `false` on the first beat, or when another instance took it for dead (its
    /// heartbeat expired: a slow or unreachable Redis) and reaped its players meanwhile.
    fn heartbeat(&self, instance: &str, ttl_ms: u64, about: &InstanceAbout) -> bool;
    /// Removes this instance from the registry at once (a clean shutdown).
    fn deregister(&self, instance: &str) -> ();
    /// Live instances and their socket counts.
    fn live_instances(&self) -> Vec<InstanceInfo>;
    /// Registered instances whose heartbeat expired. Each is returned to exactly one caller,
    /// which must reap what it left ([`Store::instance_sockets`]).
    fn claim_dead_instances(&self, instance: &str) -> Vec<String>;
    /// Puts a dead instance claimed by [`Store::claim_dead_instances`] back in the registry,
    /// for a reaper that could not read its sockets: the next round claims it again.
    fn return_dead_instance(&self, instance: &str) -> ();
    /// Forgets the socket list of a reaped instance.
    fn forget_instance(&self, instance: &str) -> ();
    /// Whether `instance`'s heartbeat is alive now (a reaper stops when it beats again).
    fn instance_alive(&self, instance: &str) -> bool;

    /// Shares a rules module's bytes (under its version, the SHA-256 hex) with every instance.
    fn put_module(&self, game: &str, version: &str, bytes: &[u8]) -> ();
    /// A shared module: `(game, bytes)`.
    fn module(&self, version: &str) -> Option<(String, Vec<u8>)>;
    /// Shares the compiled code of a version, for instances of the same build (`compat`); for
    /// `lifetime`, or for good.
    fn put_artifact(&self, version: &str, compat: &str, artifact: &[u8], lifetime: Option<Duration>) -> ();
    fn artifact(&self, version: &str, compat: &str) -> Option<Vec<u8>>;
    /// Makes `version` the active one of `game` for every instance, and announces it.
    fn set_active_module(&self, game: &str, version: &str) -> ();
    /// Each game's active version, as shared.
    fn active_modules(&self) -> BTreeMap<String, String>;
    /// Every shared version, with its game.
    fn module_versions(&self) -> BTreeMap<String, String>;
    /// How many running matches use each version.
    fn matches_by_module(&self) -> BTreeMap<String, usize>;
}

/// Whether something live holds the socket `socket` of `owner`: this instance (`instance`) if it
/// is among `live`, or another instance if that instance is `alive`.
pub fn socket_is_backed(
    socket: &str,
    owner: &str,
    instance: &str,
    live: &HashSet<String>,
    alive: &HashSet<String>,
) -> bool {
    if owner == instance {
        live.contains(socket)
    } else {
        alive.contains(owner)
    }
}

/// Records which room each of `sockets` (socket, its instance) plays in
/// ([`Store::set_socket_room`]), on a task of its own, for callers that must not wait for it: a
/// mapping's room is for operators to read (nothing in the fleet acts on it), and on a Redis
/// Cluster it is written on the node of the socket's instance, which may be slow or hung while
/// the match plays on other nodes.
pub fn note_socket_rooms(store: &Arc<Store>, sockets: Vec<(String, String)>, room: &str) {
    let (store, room) = (store.clone(), room.to_string());
    tokio::spawn(async move {
        for (socket, instance) in sockets {
            if let Err(error) = store.set_socket_room(&socket, &instance, Some(&room)).await {
                tracing::warn!(socket, %error, "socket mapping not updated");
            }
        }
    });
}

impl Store {
    /// Whether this store is shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Whether the shared store answers now (always true in memory).
    pub fn is_reachable(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis(store) => store.is_up(),
        }
    }
}
