//! **The only code that talks to Redis.** [`RedisStore`] implements the [`crate::store::Store`]
//! interface over one shared Redis server or a Redis Cluster (`connection::Conn`), and
//! [`pubsub::Bus`] carries socketioxide's adapter traffic (and our `room_events`) over the same
//! connection.
//!
//! Key layout, under a configurable prefix (empty by default, so `redis-cli hgetall game_states`
//! shows the games as the original's tooling expects), on one Redis server:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `socket_mappings` | hash | socket id -> [`SocketMapping`] JSON (as the original) |
//! | `waiting:level:<n>` | list | [`QueueEntry`] JSON, oldest first (as the original): the default game's default mode |
//! | `waiting:<game>:<mode>:level:<n>` | list | the same, for every other game and mode (see [`crate::matchmaking`]) |
//! | `matches` | hash | room id -> [`MatchRecord`] JSON (as the original) |
//! | `game_states` | hash | room id -> [`GameState`](crate::model::GameState) JSON (the original's fields and ours) |
//! | `room_events` | channel | `{roomId, event, data, timestamp}` (as the original; for outside tools: no instance reads it) |
//! | `room:{<room>}` | channel | the same envelopes for one room, and its chat: read by the instances that hold its players |
//! | `match_log:{<room>}` | list | the match's log ([`abi::log::Entry`] JSON, oldest first): every input with the state it produced; written by the script that stores that state, deleted with the game |
//! | `room:{<room>}:log` | stream, TTL (an hour; a minute once the match is over) | the room's latest envelopes, entry id `<version>-0`: an instance that subscribed late or lost its connection catches up from it |
//! | `instance:<id>:inbox` | channel | notes to one instance (a match of its players started elsewhere) |
//! | `queued` | hash | player -> `{level, lane, instance, entry, at}`: who waits where, on which instance, since when (Redis's clock, ms) |
//! | `game_versions` | hash | room id -> version, the compare-and-set guard |
//! | `finished_games` | sorted set | room id by end time, for retention |
//! | `session:<player>` | string, TTL | [`Session`] JSON |
//! | `session_expiry` | sorted set | player by the end of its reconnection grace |
//! | `instances` | set | registered instance ids |
//! | `instance:<id>` | string, TTL | the heartbeat: present while the instance lives |
//! | `instance:<id>:sockets` | set, TTL | the instance's socket ids, for reaping |
//! | `module:<version>` | string | a rules module's bytes (version = SHA-256 hex) |
//! | `module_games` | hash | version -> game |
//! | `module_artifact:<version>:<build>` | string | the version compiled by this build of the host (native code: Redis is trusted like the binary); `<build>` ends in `-baseline` for the quickly compiled code a swap starts on, kept for an hour |
//! | `active_modules` | hash | game -> active version |
//! | `module_matches` | hash | version -> running matches |
//! | `game_modules` | hash | room id -> the version its match runs |
//! | `module_events` | channel | `{game, version}` when a version becomes active |
//!
//! Every multi-key change is one Lua script (atomic) or one `MULTI` pipeline; nothing on a hot
//! path reads a whole hash.
//!
//! **On a Redis Cluster** a script runs only if all its keys are in one slot, and ours join the
//! fleet's records to a player's or a room's keys. So the fleet's own keys get the hash tag
//! `{fleet}` after the prefix (`{fleet}session:<player>`, the queues, the registry, the
//! modules, and the fleet's records of matches: `matches`, `finished_games`,
//! `module_matches`); and each room's keys, tagged by the room, stay in the room's slot: its
//! channel and logs as above, and its game as one hash, `game:{<room>}` (`state`, `version`,
//! `module`, `finished`), in place of its fields of `game_states`, `game_versions` and
//! `game_modules`. A match's every change is then one script on its room's node, and rooms
//! spread over the cluster (`games` says how a start and an end reach the fleet's records).
//! Each instance's sockets are one hash in the instance's slot, `instance:{<id>}:sockets`
//! (socket id -> [`SocketMapping`] JSON), in place of `socket_mappings` and the instance's set:
//! a socket's connection, its room and its end are written on its instance's node, and only
//! the instance's heartbeat on the fleet's (`sockets` says how the fleet's counts are read).
//! Pub/sub is sharded (`SPUBLISH`, `SSUBSCRIBE`); `room_events` is not published there.

mod cleanup;
mod cluster_conn;
mod connection;
mod games;
mod modules;
pub mod pubsub;
mod queues;
mod registry;
mod sessions;
mod sockets;
pub use games::Tidied;
mod renewal;
mod rooms;

use crate::config::RedisTarget;
use crate::matchmaking::{Joined, Lane, Seating};
use crate::model::{MatchRecord, QueueEntry, Session, SocketMapping};
use crate::store::{Cleaned, InstanceAbout, InstanceInfo, StoreError, StoreResult};
use connection::{Conn, FLEET_TAG, Settings};
use redis::{AsyncCommands, ErrorKind, RedisError, Script, ServerErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long queue keys and a connected player's session live without being touched.
const IDLE_TTL_SECS: u64 = 24 * 3600;
/// How long an instance's socket list outlives its heartbeat, so a survivor can still reap it.
const SOCKET_LIST_TTL_MS: u64 = 3600 * 1000;
/// A released session's key outlives its grace by this much, so the expiry sweep finds it.
const SESSION_EXPIRY_MARGIN_MS: u64 = 60 * 1000;

struct Scripts {
    join_queue: Script,
    leave_queue: Script,
    replace_game: Script,
    claim_session: Script,
    release_session: Script,
    expire_sessions: Script,
    claim_dead_instances: Script,
    set_socket_room: Script,
    insert_match: Script,
    set_active_module: Script,
    // A Redis Cluster's: a match's room and its fleet records in two steps (see `games`).
    open_room: Script,
    seat_match: Script,
    write_room: Script,
    settle_room: Script,
}

impl Scripts {
    /// The scripts, publishing with `publish` (`PUBLISH`, or on a cluster `SPUBLISH`).
    fn load(publish: &str) -> Self {
        let script =
            |source: &str| Script::new(&source.replace("'PUBLISH'", &format!("'{publish}'")));
        // Lua has no `require` in Redis: the shared functions go in front of each script.
        let seating =
            |source: &str| script(&format!("{}\n{source}", include_str!("lua/seats.lua")));
        Scripts {
            join_queue: script(include_str!("lua/join_queue.lua")),
            leave_queue: script(include_str!("lua/leave_queue.lua")),
            replace_game: script(include_str!("lua/replace_game.lua")),
            claim_session: script(include_str!("lua/claim_session.lua")),
            release_session: script(include_str!("lua/release_session.lua")),
            expire_sessions: script(include_str!("lua/expire_sessions.lua")),
            claim_dead_instances: script(include_str!("lua/claim_dead_instances.lua")),
            set_socket_room: script(include_str!("lua/set_socket_room.lua")),
            insert_match: seating(include_str!("lua/insert_match.lua")),
            set_active_module: script(include_str!("lua/set_active_module.lua")),
            open_room: script(include_str!("lua/cluster/open_room.lua")),
            seat_match: seating(include_str!("lua/cluster/seat_match.lua")),
            write_room: script(include_str!("lua/cluster/write_room.lua")),
            settle_room: script(include_str!("lua/cluster/settle_room.lua")),
        }
    }
}

/// The key names, with the prefix (and on a cluster the fleet's hash tag) applied.
struct Keys {
    /// What the fleet's own keys start with: the configured prefix, then on a cluster `{fleet}`.
    prefix: String,
    /// What the keys tagged by their own subject (a room, an instance) start with: the
    /// configured prefix.
    tagged_prefix: String,
    /// On a Redis Cluster: each room's game is a hash of its own, in the room's slot, and each
    /// instance's socket mappings are a hash in the instance's slot.
    spread: bool,
    socket_mappings: String,
    matches: String,
    game_states: String,
    game_versions: String,
    finished_games: String,
    room_events: String,
    module_events: String,
    module_games: String,
    active_modules: String,
    module_matches: String,
    game_modules: String,
    queued: String,
    session_expiry: String,
    instances: String,
    /// Held (`SET NX PX`) by the instance tidying a cluster's rooms this interval.
    rooms_tidied: String,
    /// What every room's channel starts with (`room:{`).
    room_channels: String,
}

impl Keys {
    fn new(configured: &str, cluster: bool) -> Self {
        let prefix = if cluster {
            format!("{configured}{FLEET_TAG}")
        } else {
            configured.to_string()
        };
        let key = |name: &str| format!("{prefix}{name}");
        Keys {
            tagged_prefix: configured.to_string(),
            spread: cluster,
            socket_mappings: key("socket_mappings"),
            matches: key("matches"),
            game_states: key("game_states"),
            game_versions: key("game_versions"),
            finished_games: key("finished_games"),
            room_events: key("room_events"),
            module_events: key("module_events"),
            module_games: key("module_games"),
            active_modules: key("active_modules"),
            module_matches: key("module_matches"),
            game_modules: key("game_modules"),
            queued: key("queued"),
            session_expiry: key("session_expiry"),
            instances: key("instances"),
            rooms_tidied: key("rooms_tidied"),
            room_channels: format!("{configured}room:{{"),
            prefix,
        }
    }

    /// A lane's queue at a level: `waiting:level:<n>` for the default lane, as the original.
    fn waiting(&self, lane: &str, level: i64) -> String {
        format!("{}waiting:{lane}level:{level}", self.prefix)
    }

    fn session(&self, player: &str) -> String {
        format!("{}session:{player}", self.prefix)
    }

    fn instance(&self, id: &str) -> String {
        format!("{}instance:{id}", self.prefix)
    }

    fn module(&self, version: &str) -> String {
        format!("{}module:{version}", self.prefix)
    }

    /// An instance's sockets: on one server the set of their ids (their mappings are in
    /// `socket_mappings`); on a cluster the hash of their mappings, in the instance's slot.
    fn instance_sockets(&self, id: &str) -> String {
        if self.spread {
            format!("{}instance:{{{id}}}:sockets", self.tagged_prefix)
        } else {
            format!("{}instance:{id}:sockets", self.prefix)
        }
    }

    /// Where the mapping of a socket `instance` holds is kept: the fleet's `socket_mappings`,
    /// or on a cluster the instance's own hash.
    fn socket_mappings_of(&self, instance: &str) -> String {
        if self.spread {
            self.instance_sockets(instance)
        } else {
            self.socket_mappings.clone()
        }
    }
}

/// The store shared by every instance through one Redis server or one Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    /// False from the first failed command until a command succeeds again.
    up: Arc<AtomicBool>,
    bus: pubsub::Bus,
    /// On a cluster, while a renewal of this instance's socket list is on its way.
    renewing_sockets: Arc<AtomicBool>,
}

/// How long one command may take, by default, before the store counts Redis as unreachable.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    /// Connects to `target` (with RESP3, which the adapter's pub/sub needs). Fails if Redis does
    /// not answer a `PING` within `connect_timeout`.
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        Self::connect_with(target, prefix, connect_timeout, RESPONSE_TIMEOUT).await
    }

    /// [`RedisStore::connect`], a command counting as failed after `response_timeout`.
    pub async fn connect_with(
        target: &RedisTarget,
        prefix: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let bus = pubsub::Bus::new();
        let settings = |pushes| Settings {
            connect_timeout,
            response_timeout,
            pushes,
        };
        // Two connections: commands, and pub/sub. A subscriber's connection may be cut on its
        // own (`CLIENT KILL TYPE pubsub`, a slow consumer's output limit) and must not take
        // commands in flight with it; nor may a burst of messages delay a command's reply.
        let conn = Conn::open(target, settings(None::<pubsub::Pushes>)).await?;
        let subscriber = Conn::open(target, settings(Some(bus.push_sender()))).await?;
        let up = Arc::new(AtomicBool::new(true));
        bus.attach(subscriber, up.clone());
        Ok(RedisStore {
            scripts: Arc::new(Scripts::load(conn.publish_command())),
            keys: Arc::new(Keys::new(prefix, conn.is_cluster())),
            conn,
            up,
            bus,
            renewing_sockets: Arc::default(),
        })
    }

    /// What every key and channel of this fleet starts with: the configured prefix, and on a
    /// cluster the fleet's hash tag.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// The pub/sub carrier for socketioxide's adapter, over this store's connection.
    pub fn bus(&self) -> pubsub::Bus {
        self.bus.clone()
    }

    /// The channel state changes are announced on.
    pub fn room_events_channel(&self) -> &str {
        &self.keys.room_events
    }

    /// The channel module activations are announced on.
    pub fn module_events_channel(&self) -> &str {
        &self.keys.module_events
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it is there; updates [`RedisStore::is_up`].
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let answer: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        let ok = answer.is_ok();
        self.up.store(ok, Ordering::Relaxed);
        ok
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Publishes `message` on `channel` (sharded on a cluster).
    async fn publish(&self, channel: &str, message: &str) -> StoreResult<()> {
        let result = self.conn().publish(channel, message).await;
        self.ok(result)
    }

    /// Turns a Redis error into a store error, noting that Redis is gone when it is.
    fn fail(&self, error: RedisError) -> StoreError {
        // A cluster says it too: no node reachable for a slot, or a cluster that lost its quorum.
        let cluster_away = matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound | ErrorKind::Server(ServerErrorKind::ClusterDown)
        );
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || cluster_away
        {
            self.up.store(false, Ordering::Relaxed);
        }
        crate::metrics::store_error();
        StoreError::Unavailable(error.to_string())
    }

    fn ok<T>(&self, result: Result<T, RedisError>) -> StoreResult<T> {
        match result {
            Ok(value) => {
                self.up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    // Helpers.

    /// Every field of a hash, read in batches (`HSCAN`): for maintenance, never a hot path.
    async fn scan_hash<T: DeserializeOwned>(&self, key: &str) -> StoreResult<Vec<(String, T)>> {
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let result: Result<(u64, Vec<(String, String)>), _> = redis::cmd("HSCAN")
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut self.conn())
                .await;
            let (next, fields) = self.ok(result)?;
            for (field, raw) in fields {
                match serde_json::from_str(&raw) {
                    Ok(value) => out.push((field, value)),
                    Err(error) => {
                        tracing::warn!(key, field, %error, "skipping an unreadable entry")
                    }
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Every key of the fleet's that matches `pattern` (on a cluster, on the fleet's node).
    async fn scan_keys(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let result = self.conn().scan_where(pattern, &self.keys.instances).await;
        self.ok(result)
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("store records always serialise")
}

fn parse<T: DeserializeOwned>(raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `text` matched literally in a SCAN pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::connection::with_resp3;
    use super::glob_escape;

    #[test]
    fn a_prefix_is_matched_literally() {
        assert_eq!(glob_escape("t-1:"), "t-1:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn resp3_is_asked_for_unless_the_url_says_otherwise() {
        assert_eq!(
            with_resp3("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379?protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h/0?timeout=1"),
            "redis://h/0?timeout=1&protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h?protocol=resp3"),
            "redis://h?protocol=resp3"
        );
    }
}
