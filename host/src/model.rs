//! The records the host keeps, in the shapes the original backend stored them (so existing
//! clients and `redis-cli` users read the same JSON), plus what authoritative play needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::time::{SystemTime, UNIX_EPOCH};

pub type PlayerId = String;
pub type RoomId = String;
pub type SocketId = String;

/// Milliseconds since the Unix epoch, as the original stored times.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `socket_mappings` entry: which instance holds a socket, and what the socket is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketMapping {
    pub socket_id: SocketId,
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<RoomId>,
    pub player_id: PlayerId,
}

/// `waiting:level:<n>` entry: a player waiting for an opponent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: PlayerId,
    pub level: i64,
}

/// `matches` entry. The original's matches had two players; a match of more keeps its first two
/// here (by seat order) and every seat in its game state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchRecord {
    pub player1: QueueEntry,
    pub player2: QueueEntry,
    pub room_id: RoomId,
}

impl MatchRecord {
    /// The record of a game's match. A match of one player names it twice.
    pub fn of(game: &GameState) -> MatchRecord {
        let entry = |slot: &PlayerSlot| QueueEntry {
            id: slot.id.clone(),
            level: slot.level,
        };
        let first = game.players.first().map(entry).unwrap_or(QueueEntry {
            id: String::new(),
            level: 0,
        });
        let second = game.players.get(1).map(entry).unwrap_or(first.clone());
        MatchRecord {
            player1: first,
            player2: second,
            room_id: game.room_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Waiting,
    Active,
    Finished,
}

/// One seat in a game state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerSlot {
    pub id: PlayerId,
    pub socket_id: SocketId,
    pub instance_id: String,
    /// Free-form client state, written by `updatePlayerState` (the original's only state).
    pub state: Value,
    pub level: i64,
    /// Whether the player has a socket now; false during a reconnection grace period.
    pub connected: bool,
    /// A bot the host plays with the game's own bot export: no socket, no session, no instance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

impl PlayerSlot {
    /// A new bot's seat, named so that nobody mistakes it for a player (`bot-<hex>`).
    pub fn bot(level: i64) -> PlayerSlot {
        let id = uuid::Uuid::new_v4().simple().to_string();
        PlayerSlot {
            id: format!("bot-{}", &id[..12]),
            socket_id: String::new(),
            instance_id: String::new(),
            state: Value::Object(Default::default()),
            level,
            connected: true,
            bot: true,
        }
    }
}

/// `game_states` entry: the original's document, with `gameData` holding the rules' state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameState {
    pub room_id: RoomId,
    pub players: Vec<PlayerSlot>,
    /// The rules module's full match state. Never sent to players as it is: it holds what each
    /// of them may not see. Players get their own view instead.
    pub game_data: Box<RawValue>,
    pub turn: u64,
    pub status: Status,
    pub created_at: u64,
    pub updated_at: u64,
    /// The game's name (the rules module's file stem).
    pub game: String,
    /// The SHA-256 of the rules module this match runs.
    pub module: String,
    /// Increases by one with every change; the store refuses a write based on an older one.
    pub version: u64,
    /// Set when the match is over; empty is a draw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<PlayerId>>,
    /// When the current round times out, in ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_ends_at: Option<u64>,
}

impl GameState {
    /// The ids of its seats played by people (bots have no session, socket or queue entry).
    pub fn humans(&self) -> Vec<&str> {
        self.players
            .iter()
            .filter(|p| !p.bot)
            .map(|p| p.id.as_str())
            .collect()
    }

    pub fn slot(&self, player: &str) -> Option<&PlayerSlot> {
        self.players.iter().find(|p| p.id == player)
    }

    pub fn slot_mut(&mut self, player: &str) -> Option<&mut PlayerSlot> {
        self.players.iter_mut().find(|p| p.id == player)
    }

    pub fn has_player(&self, player: &str) -> bool {
        self.slot(player).is_some()
    }

    /// The seats the host's bots play.
    pub fn bots(&self) -> impl Iterator<Item = &PlayerSlot> {
        self.players.iter().filter(|p| p.bot)
    }

    /// The document as one player may see it: `gameData` replaced by that player's view.
    pub fn for_player(&self, view: Box<RawValue>) -> GameState {
        GameState {
            game_data: view,
            ..self.clone()
        }
    }
}

/// A player's identity across connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub player_id: PlayerId,
    /// SHA-256 of the resume token, hex. The token itself is only ever sent to its player.
    pub token_sha256: String,
    /// The socket the player uses now, if connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<SocketId>,
    /// The instance that holds (or last held) the player's socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<RoomId>,
    /// When a disconnected session is forgotten, in ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// One entry of a match's log ([`abi::log`]): actions and settings kept as the raw JSON received.
pub type LogEntry = abi::log::Entry<Box<RawValue>>;
/// What caused one stored change of a match.
pub type LogInput = abi::log::Input<Box<RawValue>>;
/// A match's whole log, as `GET /matches/<room>/log` answers it and `gamehost replay` reads it.
pub type MatchLog = abi::log::MatchLog<Box<RawValue>>;

/// How a match log names a rules state: the SHA-256 of its JSON bytes, lowercase hex.
pub fn state_digest(state: &RawValue) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(state.get().as_bytes()))
}

impl GameState {
    /// The log entry of this state, produced by `input`.
    pub fn log_entry(&self, input: LogInput) -> LogEntry {
        LogEntry {
            version: self.version,
            module: self.module.clone(),
            at: self.updated_at,
            input,
            turn: self.turn,
            state: state_digest(&self.game_data),
            winners: self.winners.clone(),
        }
    }

    /// The log of this stored state: its `entries`, with what the state is now.
    pub fn log(&self, entries: Vec<LogEntry>) -> MatchLog {
        MatchLog {
            room_id: self.room_id.clone(),
            game: self.game.clone(),
            version: self.version,
            state: state_digest(&self.game_data),
            winners: self.winners.clone(),
            entries,
        }
    }
}
