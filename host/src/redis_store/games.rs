//! Matches and their game states: stored, changed by compare-and-set, read, pruned.
//!
//! **On one server**, the original's layout: fleet-wide hashes (`matches`, `game_states`,
//! `game_versions`, `game_modules`) and one script per change, which also keeps the fleet's
//! records of the match (`finished_games`, `module_matches`) and seats its players.
//!
//! **On a Redis Cluster** ("spread"), each room's game is a hash of its own in the room's slot
//! (`game:{<room>}`: `state`, `version`, `module`, `finished`), beside its logs and channel, so a
//! change, the hot path, is one script on the room's node and the fleet's rooms spread over the
//! cluster. The fleet's records of a match (`matches`, `finished_games`, `module_matches`) and
//! its players' sessions stay in the fleet's slot; they change in a second step, only when a
//! match starts, ends or moves to another module version:
//! - **starting**: the room is written first (`open_room.lua`), then its players are seated
//!   (`seat_match.lua`). No instance follows a room before its players are seated, so nobody
//!   hears a room whose seating is refused, and it is deleted. A crash between the two steps
//!   leaves a room nobody names, never a player seated in a match that does not exist; the
//!   fleet's tidying removes it once it is a minute old ([`RedisStore::tidy_rooms`]).
//! - **ending, or a new module version**: the room's write says so (`write_room.lua`), then the
//!   fleet is told (`settle_room.lua`, which an end told twice does not change). A crash between
//!   leaves the fleet taking an ended match for running: whoever finds a player held by it
//!   (joining a queue, seating a match) settles it from the room and tries again
//!   ([`RedisStore::settle_if_over`]), and the fleet's tidying settles it within an interval.

use super::{Keys, RedisStore, glob_escape, json, parse, rooms};
use crate::matches::Message;
use crate::model::{GameState, LogEntry, MatchRecord, RoomId, Status};
use crate::store::{StoreError, StoreResult};
use redis::AsyncCommands;
use serde::Serialize;

/// How old a room nobody was seated in must be before a cleanup removes it.
const ORPHAN_AFTER_MS: u64 = 60_000;

impl Keys {
    /// The hash whose fields are the rooms of every match stored: `matches` on a cluster (the
    /// fleet's slot), `game_versions` on one server.
    pub(super) fn running_index(&self) -> &str {
        if self.spread {
            &self.matches
        } else {
            &self.game_versions
        }
    }
}

/// What one tidying of a cluster's rooms did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tidied {
    /// Rooms nobody was seated in, removed.
    pub orphan_rooms: usize,
    /// Matches the fleet took for running though their room had ended (or was gone), settled.
    pub missed_ends: usize,
}

impl RedisStore {
    /// On a cluster, what a crash between the two steps of a start or an end left behind:
    /// rooms nobody was seated in (`remove_orphan_rooms`) and matches whose end
    /// the fleet missed (`settle_missed_ends`). Done by one instance of the fleet
    /// per `interval` (whichever claims it first); `None` when another has it, or on one server
    /// (which starts and ends a match in one step).
    pub async fn tidy_rooms(
        &self,
        instance: &str,
        interval: std::time::Duration,
    ) -> StoreResult<Option<Tidied>> {
        if !self.keys.spread {
            return Ok(None);
        }
        let claimed: Result<Option<String>, _> = redis::cmd("SET")
            .arg(&self.keys.rooms_tidied)
            .arg(instance)
            .arg("NX")
            .arg("PX")
            .arg(interval.as_millis().max(1) as u64)
            .query_async(&mut self.conn())
            .await;
        if self.ok(claimed)?.is_none() {
            return Ok(None);
        }
        self.tidy_now().await.map(Some)
    }

    /// One tidying of a cluster's rooms, whoever else tidies (a cleanup asks for it).
    pub(super) async fn tidy_now(&self) -> StoreResult<Tidied> {
        Ok(Tidied {
            orphan_rooms: self.remove_orphan_rooms().await?,
            missed_ends: self.settle_missed_ends().await?,
        })
    }

    /// On a cluster, the matches the fleet takes for running whose room says they ended (or
    /// is gone): settled, as [`RedisStore::settle_if_over`] does when a player of one is held
    /// up by it. How many.
    async fn settle_missed_ends(&self) -> StoreResult<usize> {
        if !self.keys.spread {
            return Ok(0);
        }
        let rooms: Vec<String> = self
            .scan_hash::<serde::de::IgnoredAny>(&self.keys.matches)
            .await?
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        let mut settled = 0;
        for rooms in rooms.chunks(500) {
            let result: Result<Vec<Option<f64>>, _> = redis::cmd("ZMSCORE")
                .arg(&self.keys.finished_games)
                .arg(rooms)
                .query_async(&mut self.conn())
                .await;
            let ended = self.ok(result)?;
            for (room, _) in rooms.iter().zip(ended).filter(|(_, at)| at.is_none()) {
                if self.settle_if_over(room).await? {
                    settled += 1;
                }
            }
        }
        Ok(settled)
    }

    pub async fn insert_match(
        &self,
        record: &MatchRecord,
        game: &GameState,
        messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        if !self.keys.spread {
            return self.insert_match_here(record, game, messages, log).await;
        }
        let room = &game.room_id;
        let opened: Result<i64, _> = self
            .scripts
            .open_room
            .key(self.keys.game(room))
            .key(self.keys.room_log(room))
            .key(self.keys.match_log(room))
            .arg(json(game))
            .arg(game.version)
            .arg(&game.module)
            .arg(state_changed(game, messages))
            .arg(self.keys.room_channel(room))
            .arg(rooms::LOG_LIFETIME_MS)
            .arg(log.iter().map(json).collect::<Vec<_>>())
            .invoke_async(&mut self.conn())
            .await;
        self.ok(opened)?;
        let mut seated = self.seat_match(record, game).await;
        if let Err(StoreError::Seated { room: other, .. }) = &seated
            && self.settle_if_over(other).await?
        {
            seated = self.seat_match(record, game).await;
        }
        if let Err(StoreError::Seated { .. }) = &seated {
            // Refused: nobody follows the room yet, so nobody heard it. (Any other error leaves
            // it: the seating may have been done, and a write-back makes both steps again.)
            let result: Result<(), _> = self.conn().del(&self.keys.room_keys(room)).await;
            if let Err(error) = result {
                tracing::warn!(room, %error, "a room whose seating was refused is left behind");
            }
        }
        seated
    }

    /// The second step of a new match on a cluster: its players seated in it.
    async fn seat_match(&self, record: &MatchRecord, game: &GameState) -> StoreResult<()> {
        let sessions: Vec<String> = game.humans().iter().map(|p| self.keys.session(p)).collect();
        let result: Result<Vec<String>, _> = self
            .scripts
            .seat_match
            .key(&self.keys.matches)
            .key(&self.keys.module_matches)
            .key(&self.keys.finished_games)
            .key(&self.keys.queued)
            .key(sessions)
            .arg(&record.room_id)
            .arg(json(record))
            .arg(&game.module)
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn())
            .await;
        seat_answer(self.ok(result)?, "seat_match")
    }

    /// On a cluster, when the fleet still takes `room` for running: settles it if its room says
    /// it ended (or is gone). True if it did, so that what it held up may be tried again.
    pub(super) async fn settle_if_over(&self, room: &str) -> StoreResult<bool> {
        if !self.keys.spread {
            return Ok(false);
        }
        let result: Result<(Option<String>, Option<String>), _> = redis::cmd("HMGET")
            .arg(self.keys.game(room))
            .arg("module")
            .arg("finished")
            .query_async(&mut self.conn())
            .await;
        let settle = match self.ok(result)? {
            (Some(module), Some(finished)) => (module, finished),
            (None, _) => {
                // Pruned, or never opened: no longer a match of the fleet's.
                let result: Result<(), _> = self.conn().hdel(&self.keys.matches, room).await;
                self.ok(result)?;
                return Ok(true);
            }
            (Some(_), None) => return Ok(false),
        };
        tracing::info!(
            room,
            "a match the fleet took for running had ended: settled"
        );
        self.settle_room(room, &settle.0, "", &settle.1).await?;
        Ok(true)
    }

    async fn settle_room(
        &self,
        room: &str,
        module: &str,
        previous: &str,
        finished_at: &str,
    ) -> StoreResult<()> {
        let result: Result<i64, _> = self
            .scripts
            .settle_room
            .key(&self.keys.module_matches)
            .key(&self.keys.finished_games)
            .arg(room)
            .arg(module)
            .arg(previous)
            .arg(finished_at)
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result).map(|_| ())
    }

    /// On a cluster, the rooms of matches that were never seated (an instance died between the
    /// two steps of a start) once they are `ORPHAN_AFTER_MS` old: deleted. How many.
    async fn remove_orphan_rooms(&self) -> StoreResult<usize> {
        if !self.keys.spread {
            return Ok(0);
        }
        let games = format!("{}game:{{", self.keys.tagged_prefix);
        let result = self
            .conn()
            .scan_everywhere(&format!("{}*", glob_escape(&games)))
            .await;
        let mut removed = 0;
        for key in self.ok(result)? {
            let Some(room) = key.strip_prefix(&games).and_then(|r| r.strip_suffix('}')) else {
                continue;
            };
            let result: Result<bool, _> = self.conn().hexists(&self.keys.matches, room).await;
            if self.ok(result)? {
                continue;
            }
            let game = match self.game(room).await {
                Ok(Some(game)) => Some(game),
                Ok(None) => continue,
                Err(StoreError::Corrupt(_)) => None, // unreadable: not a game anyone plays
                Err(error) => return Err(error),
            };
            if let Some(game) = game {
                // A start takes milliseconds between its two steps: a young room may be
                // seated yet.
                if game.updated_at + ORPHAN_AFTER_MS > crate::model::now_ms() {
                    continue;
                }
                // Seated after all, and the fleet lost its record of it (a node that came
                // back without its data): its players play on in it.
                if self.names_the_room(&game).await? {
                    tracing::warn!(room, "a match the fleet has no record of is played: kept");
                    continue;
                }
            }
            let result: Result<(), _> = self.conn().del(&self.keys.room_keys(room)).await;
            self.ok(result)?;
            tracing::info!(room, "removed the room of a match that was never seated");
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether the session of one of `game`'s players names its room (set only by seating).
    async fn names_the_room(&self, game: &GameState) -> StoreResult<bool> {
        for player in game.humans() {
            let seated = self.session(player).await?;
            if seated.is_some_and(|session| session.room_id.as_ref() == Some(&game.room_id)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn game(&self, room: &str) -> StoreResult<Option<GameState>> {
        if !self.keys.spread {
            return self.game_here(room).await;
        }
        let result: Result<Option<String>, _> =
            self.conn().hget(self.keys.game(room), "state").await;
        self.ok(result)?.map(|raw| parse(&raw)).transpose()
    }

    /// Whether `room` has a stored game.
    pub(super) async fn has_game(&self, room: &str) -> StoreResult<bool> {
        let result = if self.keys.spread {
            self.conn().exists(self.keys.game(room)).await
        } else {
            self.conn().hexists(&self.keys.game_states, room).await
        };
        self.ok(result)
    }

    pub async fn replace_game(
        &self,
        game: &GameState,
        expected: u64,
        messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        if !self.keys.spread {
            return self.replace_game_here(game, expected, messages, log).await;
        }
        let room = &game.room_id;
        let finished_at = finished_at(game);
        let result: Result<(i64, String, i64), _> = self
            .scripts
            .write_room
            .key(self.keys.game(room))
            .key(self.keys.room_log(room))
            .key(self.keys.match_log(room))
            .arg(expected)
            .arg(game.version)
            .arg(json(game))
            .arg(&finished_at)
            .arg(state_changed(game, messages))
            .arg(&game.module)
            .arg(self.keys.room_channel(room))
            .arg(log_lifetime(game))
            .arg(log.iter().map(json).collect::<Vec<_>>())
            .invoke_async(&mut self.conn())
            .await;
        let (migrated, ended) = match self.ok(result)? {
            (2, migrated, ended) => (migrated, ended == 1),
            (1, found, _) => {
                return Err(StoreError::Conflict {
                    room: room.clone(),
                    expected,
                    found: found.parse().unwrap_or_default(),
                });
            }
            _ => return Err(StoreError::NoSuchGame(room.clone())),
        };
        if !migrated.is_empty() || ended {
            let finished_at = if ended { finished_at.as_str() } else { "" };
            // The write stands whatever happens here: a lost settle is made good by
            // `settle_if_over` (an end) or stays off by one in the counts (a migration).
            if let Err(error) = self
                .settle_room(room, &game.module, &migrated, finished_at)
                .await
            {
                tracing::warn!(room, %error, "the fleet's records of a match were not updated");
            }
        }
        Ok(())
    }

    pub async fn game_rooms(&self) -> StoreResult<Vec<RoomId>> {
        if !self.keys.spread {
            return self.game_rooms_here().await;
        }
        let result: Result<Vec<String>, _> = self.conn().hkeys(&self.keys.matches).await;
        let mut rooms = self.ok(result)?;
        rooms.sort();
        Ok(rooms)
    }

    pub async fn active_game_count(&self) -> StoreResult<usize> {
        if !self.keys.spread {
            return self.active_game_count_here().await;
        }
        let result: Result<(usize, usize), _> = redis::pipe()
            .hlen(&self.keys.matches)
            .zcard(&self.keys.finished_games)
            .query_async(&mut self.conn())
            .await;
        let (all, finished) = self.ok(result)?;
        Ok(all.saturating_sub(finished))
    }

    pub async fn prune_finished(&self, cutoff_ms: u64) -> StoreResult<usize> {
        if !self.keys.spread {
            return self.prune_finished_here(cutoff_ms).await;
        }
        let result: Result<Vec<String>, _> = self
            .conn()
            .zrangebyscore_limit(&self.keys.finished_games, 0, cutoff_ms as f64, 0, 500)
            .await;
        let rooms = self.ok(result)?;
        // Each room's keys on its node first, then the fleet's records: a crash between leaves
        // records of a finished match whose game is gone, which the next sweep takes.
        for room in &rooms {
            let keys = [self.keys.game(room), self.keys.match_log(room)];
            let result: Result<(), _> = self.conn().del(&keys).await;
            self.ok(result)?;
        }
        if rooms.is_empty() {
            return Ok(0);
        }
        let result = redis::pipe()
            .atomic()
            .hdel(&self.keys.matches, &rooms)
            .ignore()
            .zrem(&self.keys.finished_games, &rooms)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await;
        self.ok(result)?;
        Ok(rooms.len())
    }

    // On one server.

    async fn insert_match_here(
        &self,
        record: &MatchRecord,
        game: &GameState,
        messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        // One script: the match, its announcement and its log entries are stored together, and
        // its players' sessions name it (so that none of them can queue again meanwhile).
        let humans = game.humans();
        let result: Result<Vec<String>, _> = self
            .scripts
            .insert_match
            .key(&self.keys.matches)
            .key(&self.keys.game_states)
            .key(&self.keys.game_versions)
            .key(&self.keys.room_events)
            .key(&self.keys.module_matches)
            .key(&self.keys.game_modules)
            .key(self.keys.room_log(&game.room_id))
            .key(self.keys.match_log(&game.room_id))
            .key(&self.keys.finished_games)
            .key(&self.keys.queued)
            .key(
                humans
                    .iter()
                    .map(|p| self.keys.session(p))
                    .collect::<Vec<_>>(),
            )
            .arg(&record.room_id)
            .arg(json(record))
            .arg(json(game))
            .arg(game.version)
            .arg(state_changed(game, messages))
            .arg(&game.module)
            .arg(self.keys.room_channel(&game.room_id))
            .arg(rooms::LOG_LIFETIME_MS)
            .arg(&self.keys.prefix)
            .arg(log.iter().map(json).collect::<Vec<_>>())
            .invoke_async(&mut self.conn())
            .await;
        seat_answer(self.ok(result)?, "insert_match")
    }

    pub async fn match_log(&self, room: &str) -> StoreResult<Vec<LogEntry>> {
        let result: Result<Vec<String>, _> =
            self.conn().lrange(self.keys.match_log(room), 0, -1).await;
        self.ok(result)?.iter().map(|raw| parse(raw)).collect()
    }

    async fn game_here(&self, room: &str) -> StoreResult<Option<GameState>> {
        let result: Result<Option<String>, _> =
            self.conn().hget(&self.keys.game_states, room).await;
        self.ok(result)?.map(|raw| parse(&raw)).transpose()
    }

    async fn replace_game_here(
        &self,
        game: &GameState,
        expected: u64,
        messages: &[Message],
        log: &[LogEntry],
    ) -> StoreResult<()> {
        let finished_at = finished_at(game);
        let envelope = state_changed(game, messages);
        let result: Result<(i64, String), _> = self
            .scripts
            .replace_game
            .key(&self.keys.game_states)
            .key(&self.keys.game_versions)
            .key(&self.keys.finished_games)
            .key(&self.keys.room_events)
            .key(&self.keys.module_matches)
            .key(&self.keys.game_modules)
            .key(self.keys.room_log(&game.room_id))
            .key(self.keys.match_log(&game.room_id))
            .arg(&game.room_id)
            .arg(expected)
            .arg(game.version)
            .arg(json(game))
            .arg(finished_at)
            .arg(envelope)
            .arg(&game.module)
            .arg(self.keys.room_channel(&game.room_id))
            .arg(log_lifetime(game))
            .arg(log.iter().map(json).collect::<Vec<_>>())
            .invoke_async(&mut self.conn())
            .await;
        match self.ok(result)? {
            (2, _) => Ok(()),
            (1, found) => Err(StoreError::Conflict {
                room: game.room_id.clone(),
                expected,
                found: found.parse().unwrap_or_default(),
            }),
            _ => Err(StoreError::NoSuchGame(game.room_id.clone())),
        }
    }

    async fn game_rooms_here(&self) -> StoreResult<Vec<RoomId>> {
        let result: Result<Vec<String>, _> = self.conn().hkeys(&self.keys.game_versions).await;
        let mut rooms = self.ok(result)?;
        rooms.sort();
        Ok(rooms)
    }

    async fn active_game_count_here(&self) -> StoreResult<usize> {
        let result: Result<(usize, usize), _> = redis::pipe()
            .hlen(&self.keys.game_versions)
            .zcard(&self.keys.finished_games)
            .query_async(&mut self.conn())
            .await;
        let (all, finished) = self.ok(result)?;
        Ok(all.saturating_sub(finished))
    }

    pub async fn match_count(&self) -> StoreResult<usize> {
        let result = self.conn().hlen(&self.keys.matches).await;
        self.ok(result)
    }

    async fn prune_finished_here(&self, cutoff_ms: u64) -> StoreResult<usize> {
        let result: Result<Vec<String>, _> = self
            .conn()
            .zrangebyscore_limit(&self.keys.finished_games, 0, cutoff_ms as f64, 0, 500)
            .await;
        let rooms = self.ok(result)?;
        if rooms.is_empty() {
            return Ok(0);
        }
        let logs: Vec<String> = rooms.iter().map(|room| self.keys.match_log(room)).collect();
        let result = redis::pipe()
            .atomic()
            .del(&logs)
            .ignore()
            .hdel(&self.keys.game_states, &rooms)
            .ignore()
            .hdel(&self.keys.game_versions, &rooms)
            .ignore()
            .hdel(&self.keys.matches, &rooms)
            .ignore()
            .hdel(&self.keys.game_modules, &rooms)
            .ignore()
            .zrem(&self.keys.finished_games, &rooms)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await;
        self.ok(result)?;
        Ok(rooms.len())
    }
}

/// When the match ended (ms), for a finished state; empty while it runs.
fn finished_at(game: &GameState) -> String {
    match game.status {
        Status::Finished => game.updated_at.to_string(),
        _ => String::new(),
    }
}

/// How long a room's delivery log outlives this write.
fn log_lifetime(game: &GameState) -> u64 {
    match game.status {
        Status::Finished => rooms::FINISHED_LOG_LIFETIME_MS,
        _ => rooms::LOG_LIFETIME_MS,
    }
}

/// What a script that seats a match answered.
fn seat_answer(answer: Vec<String>, script: &str) -> StoreResult<()> {
    match answer.as_slice() {
        [stored] if stored == "stored" => Ok(()),
        [playing, player, room] if playing == "playing" => Err(StoreError::Seated {
            player: player.clone(),
            room: room.clone(),
        }),
        other => Err(StoreError::Corrupt(format!("{script} answered {other:?}"))),
    }
}

/// The `room_events` envelope of a stored change: the original's `{roomId, event, data,
/// timestamp}`, with the new version and the messages that announce the change.
fn state_changed(game: &GameState, messages: &[Message]) -> String {
    // Structs, not `json!`: a `RawValue` payload must be written as it is, not as a `Value`.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        room_id: &'a str,
        event: &'static str,
        data: Change<'a>,
        timestamp: u64,
    }
    #[derive(Serialize)]
    struct Change<'a> {
        version: u64,
        turn: u64,
        status: Status,
        messages: &'a [Message],
    }
    json(&Envelope {
        room_id: &game.room_id,
        event: "stateChanged",
        data: Change {
            version: game.version,
            turn: game.turn,
            status: game.status,
            messages,
        },
        timestamp: game.updated_at,
    })
}
