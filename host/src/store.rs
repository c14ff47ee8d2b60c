//! Where the host keeps what outlives one request: socket mappings, queues, matches, game
//! states and sessions. This is the in-memory store a lone instance uses; every record has the
//! shape the original backend kept in Redis (see [`crate::model`]).
//!
//! **Invariant:** every change of a game state is a compare-and-set on its `version`
//! ([`Store::replace_game`]), so two writers can never silently overwrite each other.

use crate::matchmaking::{Joined, Queues};
use crate::model::{
    GameState, MatchRecord, PlayerId, QueueEntry, RoomId, Session, SocketId, SocketMapping, Status,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("room {0} has no game state")]
    NoSuchGame(RoomId),
    #[error("room {room} changed meanwhile (version {found}, expected {expected})")]
    Conflict {
        room: RoomId,
        expected: u64,
        found: u64,
    },
}

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sockets: HashMap<SocketId, SocketMapping>,
    queues: Queues,
    matches: HashMap<RoomId, MatchRecord>,
    games: HashMap<RoomId, GameState>,
    sessions: HashMap<PlayerId, Session>,
}

/// What `/health/cleanup` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub socket_mappings: usize,
    pub queue_entries: usize,
    pub matches: usize,
}

impl Cleaned {
    pub fn total(&self) -> usize {
        self.socket_mappings + self.queue_entries + self.matches
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic elsewhere cannot have
        // left them half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // Socket mappings.

    pub fn put_socket(&self, mapping: SocketMapping) {
        self.lock()
            .sockets
            .insert(mapping.socket_id.clone(), mapping);
    }

    pub fn remove_socket(&self, socket: &str) -> Option<SocketMapping> {
        self.lock().sockets.remove(socket)
    }

    pub fn set_socket_room(&self, socket: &str, room: Option<RoomId>) {
        if let Some(mapping) = self.lock().sockets.get_mut(socket) {
            mapping.room_id = room;
        }
    }

    pub fn socket_count(&self) -> usize {
        self.lock().sockets.len()
    }

    pub fn sockets_by_instance(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for mapping in self.lock().sockets.values() {
            *counts.entry(mapping.instance_id.clone()).or_default() += 1;
        }
        counts
    }

    // Matchmaking.

    /// Queues a player or pairs it, atomically.
    pub fn join_queue(&self, entry: QueueEntry) -> Joined {
        self.lock().queues.join(entry)
    }

    pub fn leave_queue(&self, player: &str) -> bool {
        self.lock().queues.leave(player)
    }

    pub fn queue_counts(&self) -> BTreeMap<i64, usize> {
        self.lock().queues.counts()
    }

    // Matches and their game states.

    pub fn insert_match(&self, record: MatchRecord, game: GameState) {
        let mut inner = self.lock();
        inner.matches.insert(record.room_id.clone(), record);
        inner.games.insert(game.room_id.clone(), game);
    }

    pub fn game(&self, room: &str) -> Option<GameState> {
        self.lock().games.get(room).cloned()
    }

    /// Writes `game` if the stored one still has `game.version - 1`.
    pub fn replace_game(&self, game: GameState) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let stored = inner
            .games
            .get_mut(&game.room_id)
            .ok_or_else(|| StoreError::NoSuchGame(game.room_id.clone()))?;
        let expected = game.version.wrapping_sub(1);
        if stored.version != expected {
            return Err(StoreError::Conflict {
                room: game.room_id.clone(),
                expected,
                found: stored.version,
            });
        }
        *stored = game;
        Ok(())
    }

    /// `(room, status)` of every stored game.
    pub fn games(&self) -> Vec<(RoomId, Status)> {
        let mut games: Vec<_> = self
            .lock()
            .games
            .values()
            .map(|g| (g.room_id.clone(), g.status))
            .collect();
        games.sort();
        games
    }

    pub fn match_count(&self) -> usize {
        self.lock().matches.len()
    }

    // Sessions.

    pub fn put_session(&self, session: Session) {
        self.lock()
            .sessions
            .insert(session.player_id.clone(), session);
    }

    pub fn session(&self, player: &str) -> Option<Session> {
        self.lock().sessions.get(player).cloned()
    }

    /// Changes a session in place; returns what it became, or `None` if there is none.
    pub fn update_session(
        &self,
        player: &str,
        change: impl FnOnce(&mut Session),
    ) -> Option<Session> {
        let mut inner = self.lock();
        let session = inner.sessions.get_mut(player)?;
        change(session);
        Some(session.clone())
    }

    /// Forgets sessions whose grace ran out before `now_ms`; returns them.
    pub fn expire_sessions(&self, now_ms: u64) -> Vec<Session> {
        let mut inner = self.lock();
        let expired: Vec<Session> = inner
            .sessions
            .values()
            .filter(|s| s.expires_at.is_some_and(|at| at <= now_ms))
            .cloned()
            .collect();
        for session in &expired {
            inner.sessions.remove(&session.player_id);
        }
        expired
    }

    /// Forgets finished games (and their match records) last changed before `cutoff_ms`;
    /// returns how many.
    pub fn prune_finished(&self, cutoff_ms: u64) -> usize {
        let mut inner = self.lock();
        let Inner { matches, games, .. } = &mut *inner;
        let before = games.len();
        games.retain(|_, g| g.status != Status::Finished || g.updated_at >= cutoff_ms);
        matches.retain(|room, _| games.contains_key(room));
        before - games.len()
    }

    /// Removes what no live socket or game backs: mappings of sockets `is_live` does not know,
    /// queue entries of players without a live socket, and match records without a game.
    pub fn cleanup(&self, is_live: impl Fn(&SocketId) -> bool) -> Cleaned {
        let mut inner = self.lock();
        let before = inner.sockets.len();
        inner.sockets.retain(|socket, _| is_live(socket));
        let socket_mappings = before - inner.sockets.len();

        let connected: std::collections::HashSet<PlayerId> = inner
            .sockets
            .values()
            .map(|m| m.player_id.clone())
            .collect();
        let queue_entries = inner.queues.retain(|player| connected.contains(player));

        let Inner { matches, games, .. } = &mut *inner;
        let before = matches.len();
        matches.retain(|room, _| games.contains_key(room));
        Cleaned {
            socket_mappings,
            queue_entries,
            matches: before - matches.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use serde_json::value::RawValue;

    fn game(room: &str, version: u64) -> GameState {
        GameState {
            room_id: room.into(),
            players: Vec::new(),
            game_data: RawValue::from_string("{}".into()).unwrap(),
            turn: 1,
            status: Status::Active,
            created_at: 0,
            updated_at: 0,
            game: "g".into(),
            module: "m".into(),
            version,
            winners: None,
            round_ends_at: None,
        }
    }

    fn record(room: &str) -> MatchRecord {
        let entry = |id: &str| QueueEntry {
            id: id.into(),
            level: 1,
        };
        MatchRecord {
            player1: entry("a"),
            player2: entry("b"),
            room_id: room.into(),
        }
    }

    #[test]
    fn a_write_based_on_an_old_version_is_refused() {
        let store = Store::default();
        store.insert_match(record("r"), game("r", 1));
        store.replace_game(game("r", 2)).unwrap();
        let stale = store.replace_game(game("r", 2));
        assert_eq!(
            stale,
            Err(StoreError::Conflict {
                room: "r".into(),
                expected: 1,
                found: 2
            })
        );
        assert_eq!(store.game("r").unwrap().version, 2);
        assert_eq!(
            store.replace_game(game("x", 1)),
            Err(StoreError::NoSuchGame("x".into()))
        );
    }

    #[test]
    fn cleanup_removes_only_what_nothing_live_backs() {
        let store = Store::default();
        for (socket, player, level) in [("s1", "p1", 1), ("s2", "p2", 2)] {
            store.put_socket(SocketMapping {
                socket_id: socket.into(),
                instance_id: "i".into(),
                room_id: None,
                player_id: player.into(),
            });
            store.join_queue(QueueEntry {
                id: player.into(),
                level,
            });
        }
        store.insert_match(record("gone"), game("gone", 1));
        store.lock().games.remove("gone");
        let cleaned = store.cleanup(|socket| socket == "s1");
        assert_eq!(
            cleaned,
            Cleaned {
                socket_mappings: 1,
                queue_entries: 1,
                matches: 1
            }
        );
        assert_eq!(store.socket_count(), 1);
        assert_eq!(store.queue_counts().values().sum::<usize>(), 1);
        assert_eq!(
            store.cleanup(|_| true).total(),
            0,
            "a second pass finds nothing"
        );
    }

    #[test]
    fn finished_games_are_forgotten_after_their_retention() {
        let store = Store::default();
        let mut done = game("done", 1);
        done.status = Status::Finished;
        done.updated_at = 1_000;
        store.insert_match(record("done"), done);
        store.insert_match(record("live"), game("live", 1));
        assert_eq!(
            store.prune_finished(1_000),
            0,
            "not older than the cutoff yet"
        );
        assert_eq!(store.prune_finished(1_001), 1);
        assert!(store.game("done").is_none());
        assert!(
            store.game("live").is_some(),
            "running games stay, however old"
        );
        assert_eq!(store.match_count(), 1);
    }
}
