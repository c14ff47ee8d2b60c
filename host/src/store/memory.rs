//! The in-memory store a lone instance uses. Its methods are `async` only to share the
//! [`super::Store`] interface; none of them waits.

use super::{Cleaned, InstanceAbout, InstanceInfo, StoreError, StoreResult};
use crate::matches::Message;
use crate::matchmaking::{Joined, Lane, Queues, Seating};
use crate::model::{
    GameState, LogEntry, MatchRecord, PlayerId, QueueEntry, RoomId, Session, SocketId,
    SocketMapping, Status, now_ms,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
pub struct MemoryStore {
    /// Boxed, so that a `Store` of either kind is as small as a handle.
    inner: Box<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    sockets: HashMap<SocketId, SocketMapping>,
    queues: Queues,
    matches: HashMap<RoomId, MatchRecord>,
    games: HashMap<RoomId, GameState>,
    /// Each game's match log, kept as long as the game.
    logs: HashMap<RoomId, Vec<LogEntry>>,
    sessions: HashMap<PlayerId, Session>,
}

impl Inner {
    /// The running match `player`'s session names, if any (`join_queue.lua` and
    /// `insert_match.lua` ask the same of Redis).
    fn running_match_of(&self, player: &str) -> Option<RoomId> {
        let room = self.sessions.get(player)?.room_id.clone()?;
        let running = self
            .games
            .get(&room)
            .is_some_and(|game| game.status != Status::Finished);
        running.then_some(room)
    }
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic elsewhere cannot have
        // left them half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // Socket mappings.

    pub async fn put_socket(&self, mapping: &SocketMapping) -> StoreResult<()> {
        self.lock()
            .sockets
            .insert(mapping.socket_id.clone(), mapping.clone());
        Ok(())
    }

    pub async fn remove_socket(
        &self,
        socket: &str,
        _instance: &str,
    ) -> StoreResult<Option<SocketMapping>> {
        Ok(self.lock().sockets.remove(socket))
    }

    pub async fn set_socket_room(
        &self,
        socket: &str,
        _instance: &str,
        room: Option<&str>,
    ) -> StoreResult<()> {
        if let Some(mapping) = self.lock().sockets.get_mut(socket) {
            mapping.room_id = room.map(str::to_string);
        }
        Ok(())
    }

    pub async fn socket_count(&self) -> StoreResult<usize> {
        Ok(self.lock().sockets.len())
    }

    pub async fn sockets_by_instance(&self) -> StoreResult<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for mapping in self.lock().sockets.values() {
            *counts.entry(mapping.instance_id.clone()).or_default() += 1;
        }
        Ok(counts)
    }

    pub async fn instance_sockets(&self, instance: &str) -> StoreResult<Vec<SocketMapping>> {
        Ok(self
            .lock()
            .sockets
            .values()
            .filter(|m| m.instance_id == instance)
            .cloned()
            .collect())
    }

    // Matchmaking. A lone instance is always alive, so its waiting players always are.

    pub async fn join_queue(
        &self,
        lane: &str,
        entry: &QueueEntry,
        _instance: &str,
        seating: Seating,
    ) -> StoreResult<Joined> {
        let mut inner = self.lock();
        // Seated while its request to join was on its way: it must not be seated twice.
        if let Some(room) = inner.running_match_of(&entry.id) {
            return Ok(Joined::Playing { room });
        }
        Ok(inner.queues.join(lane, entry.clone(), seating, now_ms()))
    }

    pub async fn fill_queue(
        &self,
        lane: &str,
        level: i64,
        seating: Seating,
    ) -> StoreResult<Option<Vec<QueueEntry>>> {
        Ok(self.lock().queues.fill(lane, level, seating, now_ms()))
    }

    pub async fn leave_queue(&self, player: &str) -> StoreResult<bool> {
        Ok(self.lock().queues.leave(player))
    }

    pub async fn queue_counts(&self) -> StoreResult<BTreeMap<(Lane, i64), usize>> {
        Ok(self.lock().queues.counts())
    }

    // Matches and their game states.

    pub async fn insert_match(
        &self,
        record: &MatchRecord,
        game: &GameState,
        _messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        let mut inner = self.lock();
        let humans = game.humans();
        for player in &humans {
            let playing = inner.running_match_of(player);
            if let Some(room) = playing.filter(|room| *room != game.room_id) {
                let player = player.to_string();
                return Err(StoreError::Seated { player, room });
            }
        }
        inner.matches.insert(record.room_id.clone(), record.clone());
        inner.games.insert(game.room_id.clone(), game.clone());
        // Its players' sessions name it now, in the same step (see `join_queue`), and none of
        // them waits in a queue any more.
        for player in humans {
            inner.queues.leave(player);
            if let Some(session) = inner.sessions.get_mut(player) {
                session.room_id = Some(game.room_id.clone());
            }
        }
        let kept = inner.logs.entry(game.room_id.clone()).or_default();
        kept.extend_from_slice(log);
        Ok(())
    }

    pub async fn match_log(&self, room: &str) -> StoreResult<Vec<LogEntry>> {
        Ok(self.lock().logs.get(room).cloned().unwrap_or_default())
    }

    pub async fn game(&self, room: &str) -> StoreResult<Option<GameState>> {
        Ok(self.lock().games.get(room).cloned())
    }

    pub async fn replace_game(
        &self,
        game: &GameState,
        expected: u64,
        _messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        let mut inner = self.lock();
        let stored = inner
            .games
            .get_mut(&game.room_id)
            .ok_or_else(|| StoreError::NoSuchGame(game.room_id.clone()))?;
        if stored.version != expected {
            return Err(StoreError::Conflict {
                room: game.room_id.clone(),
                expected,
                found: stored.version,
            });
        }
        *stored = game.clone();
        let kept = inner.logs.entry(game.room_id.clone()).or_default();
        kept.extend_from_slice(log);
        Ok(())
    }

    pub async fn game_rooms(&self) -> StoreResult<Vec<RoomId>> {
        let mut rooms: Vec<RoomId> = self.lock().games.keys().cloned().collect();
        rooms.sort();
        Ok(rooms)
    }

    pub async fn active_game_count(&self) -> StoreResult<usize> {
        Ok(self
            .lock()
            .games
            .values()
            .filter(|g| g.status != Status::Finished)
            .count())
    }

    pub async fn match_count(&self) -> StoreResult<usize> {
        Ok(self.lock().matches.len())
    }

    pub async fn prune_finished(&self, cutoff_ms: u64) -> StoreResult<usize> {
        let mut inner = self.lock();
        let Inner {
            matches,
            games,
            logs,
            ..
        } = &mut *inner;
        let before = games.len();
        games.retain(|_, g| g.status != Status::Finished || g.updated_at >= cutoff_ms);
        matches.retain(|room, _| games.contains_key(room));
        logs.retain(|room, _| games.contains_key(room));
        Ok(before - games.len())
    }

    // Sessions.

    pub async fn session(&self, player: &str) -> StoreResult<Option<Session>> {
        Ok(self.lock().sessions.get(player).cloned())
    }

    pub async fn session_count(&self) -> StoreResult<usize> {
        Ok(self.lock().sessions.len())
    }

    pub async fn claim_session(&self, fresh: &Session, socket: &str) -> StoreResult<Session> {
        let mut inner = self.lock();
        let session = inner
            .sessions
            .entry(fresh.player_id.clone())
            .or_insert_with(|| fresh.clone());
        session.socket_id = Some(socket.to_string());
        session.instance_id = fresh.instance_id.clone();
        session.expires_at = None;
        Ok(session.clone())
    }

    pub async fn release_session(
        &self,
        player: &str,
        socket: &str,
        expires_at: u64,
    ) -> StoreResult<Option<Session>> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(player) else {
            return Ok(None);
        };
        if session.socket_id.as_deref() != Some(socket) {
            return Ok(None);
        }
        session.socket_id = None;
        session.expires_at = Some(expires_at);
        Ok(Some(session.clone()))
    }

    pub async fn expire_sessions(&self, now_ms: u64) -> StoreResult<Vec<Session>> {
        let mut inner = self.lock();
        let expired: Vec<Session> = inner
            .sessions
            .values()
            .filter(|s| s.socket_id.is_none() && s.expires_at.is_some_and(|at| at <= now_ms))
            .cloned()
            .collect();
        for session in &expired {
            inner.sessions.remove(&session.player_id);
        }
        Ok(expired)
    }

    pub async fn cleanup(&self, _instance: &str, live: &HashSet<String>) -> StoreResult<Cleaned> {
        let mut inner = self.lock();
        let before = inner.sockets.len();
        inner.sockets.retain(|socket, _| live.contains(socket));
        let socket_mappings = before - inner.sockets.len();

        // Sessions still held by a socket that is gone: released, expiring at once.
        let released_at = crate::model::now_ms();
        let mut sessions = 0;
        for session in inner.sessions.values_mut() {
            if session
                .socket_id
                .as_ref()
                .is_some_and(|s| !live.contains(s))
            {
                session.socket_id = None;
                session.expires_at = Some(released_at);
                sessions += 1;
            }
        }

        let connected: HashSet<PlayerId> = inner
            .sockets
            .values()
            .map(|m| m.player_id.clone())
            .collect();
        let queue_entries = inner.queues.retain(|player| connected.contains(player));

        let Inner { matches, games, .. } = &mut *inner;
        let before = matches.len();
        matches.retain(|room, _| games.contains_key(room));
        Ok(Cleaned {
            socket_mappings,
            sessions,
            queue_entries,
            matches: before - matches.len(),
            instances: 0,
        })
    }

    // The instance registry: a lone instance is the only one, and never dies while it runs.

    pub async fn heartbeat(
        &self,
        _instance: &str,
        _ttl_ms: u64,
        _about: &InstanceAbout,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    pub async fn deregister(&self, _instance: &str) -> StoreResult<()> {
        Ok(())
    }

    pub async fn live_instances(&self) -> StoreResult<Vec<InstanceInfo>> {
        let counts = self.sockets_by_instance().await?;
        Ok(counts
            .into_iter()
            .map(|(id, sockets)| InstanceInfo {
                id,
                sockets,
                started_at: None,
                build: None,
                code: Default::default(),
            })
            .collect())
    }

    pub async fn claim_dead_instances(&self, _instance: &str) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    pub async fn return_dead_instance(&self, _instance: &str) -> StoreResult<()> {
        Ok(())
    }

    pub async fn forget_instance(&self, _instance: &str) -> StoreResult<()> {
        Ok(())
    }

    pub async fn instance_alive(&self, _instance: &str) -> StoreResult<bool> {
        Ok(true)
    }

    // Rules modules: a lone instance's rules registry is all there is to share.

    pub async fn put_module(&self, _game: &str, _version: &str, _bytes: &[u8]) -> StoreResult<()> {
        Ok(())
    }

    pub async fn module(&self, _version: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        Ok(None)
    }

    pub async fn put_artifact(
        &self,
        _version: &str,
        _compat: &str,
        _artifact: &[u8],
        _lifetime: Option<Duration>,
    ) -> StoreResult<()> {
        Ok(())
    }

    pub async fn artifact(&self, _version: &str, _compat: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(None)
    }

    pub async fn set_active_module(&self, _game: &str, _version: &str) -> StoreResult<()> {
        Ok(())
    }

    pub async fn active_modules(&self) -> StoreResult<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    pub async fn module_versions(&self) -> StoreResult<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    pub async fn matches_by_module(&self) -> StoreResult<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for game in self.lock().games.values() {
            if game.status != Status::Finished {
                *counts.entry(game.module.clone()).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogInput;
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

    #[tokio::test]
    async fn a_write_based_on_an_old_version_is_refused() {
        let store = MemoryStore::default();
        let logged = |version| game("r", version).log_entry(LogInput::Timeout);
        store
            .insert_match(&record("r"), &game("r", 1), &[], &[logged(1)])
            .await
            .unwrap();
        store
            .replace_game(&game("r", 2), 1, &[], &[logged(2)])
            .await
            .unwrap();
        let stale = store
            .replace_game(&game("r", 2), 1, &[], &[logged(2)])
            .await;
        assert_eq!(
            stale,
            Err(StoreError::Conflict {
                room: "r".into(),
                expected: 1,
                found: 2
            })
        );
        assert_eq!(store.game("r").await.unwrap().unwrap().version, 2);
        let versions: Vec<u64> = store
            .match_log("r")
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, [1, 2], "the refused write logged nothing");
        assert_eq!(
            store.replace_game(&game("x", 1), 0, &[], &[]).await,
            Err(StoreError::NoSuchGame("x".into()))
        );
    }

    #[tokio::test]
    async fn cleanup_removes_only_what_nothing_live_backs() {
        let store = MemoryStore::default();
        for (socket, player, level) in [("s1", "p1", 1), ("s2", "p2", 2)] {
            let mapping = SocketMapping {
                socket_id: socket.into(),
                instance_id: "i".into(),
                room_id: None,
                player_id: player.into(),
            };
            store.put_socket(&mapping).await.unwrap();
            let entry = QueueEntry {
                id: player.into(),
                level,
            };
            store
                .join_queue("", &entry, "i", Seating::exactly(2))
                .await
                .unwrap();
            let session = Session {
                player_id: player.into(),
                token_sha256: "00".into(),
                socket_id: None,
                instance_id: Some("i".into()),
                room_id: None,
                expires_at: None,
            };
            store.claim_session(&session, socket).await.unwrap();
        }
        store
            .insert_match(&record("gone"), &game("gone", 1), &[], &[])
            .await
            .unwrap();
        store.lock().games.remove("gone");
        let live = HashSet::from(["s1".to_string()]);
        let cleaned = store.cleanup("i", &live).await.unwrap();
        assert_eq!(
            cleaned,
            Cleaned {
                socket_mappings: 1,
                sessions: 1,
                queue_entries: 1,
                matches: 1,
                instances: 0
            }
        );
        assert_eq!(store.socket_count().await.unwrap(), 1);
        let released = store.session("p2").await.unwrap().unwrap();
        assert_eq!(released.socket_id, None, "p2's socket is gone");
        assert!(released.expires_at.is_some());
        let kept = store.session("p1").await.unwrap().unwrap();
        assert_eq!(kept.socket_id.as_deref(), Some("s1"));
        let queued: usize = store.queue_counts().await.unwrap().values().sum();
        assert_eq!(queued, 1);
        assert_eq!(
            store.cleanup("i", &live).await.unwrap().total(),
            0,
            "a second pass finds nothing"
        );
    }

    #[tokio::test]
    async fn finished_games_are_forgotten_after_their_retention() {
        let store = MemoryStore::default();
        let mut done = game("done", 1);
        done.status = Status::Finished;
        done.updated_at = 1_000;
        store
            .insert_match(
                &record("done"),
                &done,
                &[],
                &[done.log_entry(LogInput::Timeout)],
            )
            .await
            .unwrap();
        store
            .insert_match(&record("live"), &game("live", 1), &[], &[])
            .await
            .unwrap();
        assert_eq!(
            store.prune_finished(1_000).await.unwrap(),
            0,
            "not older than the cutoff yet"
        );
        assert_eq!(store.prune_finished(1_001).await.unwrap(), 1);
        assert!(store.game("done").await.unwrap().is_none());
        assert!(
            store.match_log("done").await.unwrap().is_empty(),
            "its log goes with it"
        );
        assert!(
            store.game("live").await.unwrap().is_some(),
            "running games stay, however old"
        );
        assert_eq!(store.match_count().await.unwrap(), 1);
    }
}
