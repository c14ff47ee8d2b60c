//! Authoritative matches. On each instance, every match it touches has one task (an actor): every
//! action, timeout, disconnection and reconnection that reaches this instance for that match goes
//! through the actor's queue, so they are applied one at a time in arrival order, whatever task or
//! socket they came from.
//!
//! Across instances the store is the arbiter: an actor holds the last game state it saw, computes
//! the next one with the match's rules module (pinned by SHA-256), and writes it by
//! compare-and-set on the version. If another instance wrote first, the actor reloads the stored
//! state and computes again, so no update is lost and each transition is applied once. Only the
//! writer of a transition tells the players about it: each gets the rules' events meant for it
//! and its own view, never another player's, through the outbox (which reaches a player on
//! whichever instance its socket is).
//!
//! If the shared store is unreachable, a match whose players are all on this instance goes on in
//! memory and is written back when the store returns; a match with a player elsewhere refuses
//! changes (`unavailable`) rather than split in two.

use crate::model::{
    GameState, LogEntry, LogInput, MatchRecord, PlayerId, PlayerSlot, QueueEntry, RoomId, Session,
    SocketId, Status, now_ms,
};
use crate::modules::Modules;
use crate::runtime::{CallError, RulesModule, Transition};
use crate::store::{Store, StoreError};
use abi::{Rejection, Seat};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum To {
    /// Every socket of one player.
    Player(PlayerId),
    /// Every socket of each of these players (each socket gets one copy).
    Players(Vec<PlayerId>),
}

/// One event for clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub to: To,
    pub event: Cow<'static, str>,
    pub payload: Box<RawValue>,
}

impl Message {
    pub fn new(to: To, event: &'static str, payload: Box<RawValue>) -> Self {
        Message {
            to,
            event: Cow::Borrowed(event),
            payload,
        }
    }
}

pub type Delivery<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// How the host reaches players. The gateway implements it over Socket.IO rooms; a player's
/// sockets are all in that player's own room.
///
/// A match's messages reach players in the order the match produced them: with Redis, the store
/// publishes them together with the state change they announce (one script, so in version
/// order) to the instances that hold the match's players ([`Outbox::seated`] tells the outbox
/// where they are), and each hands them to its own sockets ([`Outbox::deliver_here`]); the
/// writer's own instance takes them from the writer as well ([`Outbox::changed`]), in version
/// order with the rest. Alone, the actor's are the only ones.
pub trait Outbox: Send + Sync + 'static {
    /// Delivers the messages, in order, to the recipients' sockets on this instance, except
    /// the sockets named in `except`.
    fn deliver_here(&self, messages: Vec<Message>, except: Vec<String>) -> Delivery<'_>;
    /// A change of `room` was stored under `version` by this instance, or made in memory while
    /// the store was away: delivers its messages to this instance's sockets in version order
    /// with the room's other changes (never before a version under it).
    fn changed<'a>(&'a self, room: &'a str, version: u64, messages: Vec<Message>) -> Delivery<'a>;
    /// Delivers the messages to the room's players wherever they are; for messages that belong
    /// to no state change, like chat.
    fn tell_room<'a>(&'a self, room: &'a str, messages: Vec<Message>) -> Delivery<'a>;
    /// A match was set up (and stored) in `room` with these players' sockets, each on its
    /// instance: they hear the room from its first message on.
    fn seated<'a>(&'a self, room: &'a str, seats: Vec<SocketAt>) -> Delivery<'a>;
    /// The last version of `room` delivered here through the fleet (0 when none, or alone).
    fn delivered(&self, _room: &str) -> u64 {
        0
    }
}

/// Where a player of a new match is: its socket, on its instance.
#[derive(Debug, Clone)]
pub struct SocketAt {
    pub socket: SocketId,
    pub instance: String,
}

/// Serialises an event payload once, for every recipient.
pub fn payload<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    to_raw_value(value).expect("host payloads always serialise")
}

#[derive(Debug, Clone)]
pub struct MatchSettings {
    /// The game players get when they ask for none (`GAME`).
    pub game: String,
    /// How long a round may take before it resolves with what was submitted, unless the game
    /// says otherwise ([`MatchSettings::round_timeout_of`]).
    pub round_timeout: Duration,
    /// How long a disconnected player has to come back before forfeiting.
    pub reconnect_grace: Duration,
    /// With enough players for a match but fewer than the most, how long the oldest waits for
    /// more before the match starts anyway (`MATCH_FILL_MS`).
    pub match_fill: Duration,
    /// How a game's bots are seated and play.
    pub bots: BotSettings,
    /// Whether every match keeps its log of inputs (`MATCH_LOG`).
    pub match_log: bool,
    pub instance_id: String,
}

/// How a game's bots are seated and play.
#[derive(Debug, Clone)]
pub struct BotSettings {
    /// A player who has waited this long is seated with bots in the empty seats
    /// (`BOT_AFTER_MS`); `None`: only players who ask (`vsBot`) get bots.
    pub after: Option<Duration>,
    /// How long a bot waits before it acts (`BOT_THINK_MS`), so that a human can follow.
    pub think: Duration,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            after: None,
            think: Duration::from_millis(600),
        }
    }
}

impl MatchSettings {
    /// A round's time in matches of `module`: the game's own, if its description gives one.
    pub fn round_timeout_of(&self, module: &RulesModule) -> Duration {
        module
            .description()
            .and_then(|d| d.round_timeout_ms)
            .map_or(self.round_timeout, Duration::from_millis)
    }
}

/// Why a match request failed. Each maps to a code the client sees.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error("no such room")]
    NoSuchRoom,
    #[error("you are not a player in this room")]
    NotInRoom,
    #[error("this match is over")]
    Finished,
    #[error("{0}")]
    Rejected(Rejection),
    #[error("no rules module is loaded for {0:?}")]
    NoRules(String),
    #[error("the rules module failed: {0}")]
    Rules(CallError),
    #[error("the match is shutting down")]
    Gone,
    #[error("you are playing in room {0}")]
    AlreadyInMatch(String),
    /// A match was not started: `player`, one of its seats, was seated in `room` meanwhile.
    #[error("{player} plays in room {room} already")]
    SeatedElsewhere { player: PlayerId, room: RoomId },
    #[error("the game store is unreachable; try again shortly")]
    Unavailable,
    #[error("the match kept changing under this request; try again")]
    Busy,
    #[error("there is no game {game:?} here; the games are {served:?}")]
    UnknownGame { game: String, served: Vec<String> },
    #[error("{0} has no bots")]
    NoBots(String),
    #[error("{game} seats {min} to {max} players, not {asked}")]
    BadSeats {
        game: String,
        asked: usize,
        min: usize,
        max: usize,
    },
    #[error("{game} has no mode {mode:?}; its modes are {modes:?}")]
    UnknownMode {
        game: String,
        mode: String,
        modes: Vec<String>,
    },
}

/// Where a player queues: a game, one of its modes, and the settings matches of that mode get.
#[derive(Debug, Clone)]
pub struct Queue {
    pub game: String,
    pub mode: String,
    /// The queues' key (see [`crate::matchmaking::lane`]).
    pub lane: crate::matchmaking::Lane,
    /// The mode's match configuration, passed to the rules at setup.
    pub config: Box<RawValue>,
    /// How many a match seats, and how long a partly full queue waits.
    pub seating: crate::matchmaking::Seating,
    /// Whether the game has bots to fill empty seats with.
    pub bots: bool,
}

impl MatchError {
    pub fn code(&self) -> &str {
        match self {
            MatchError::NoSuchRoom => "unknown_room",
            MatchError::NotInRoom => "not_in_room",
            MatchError::Finished => "game_over",
            MatchError::Rejected(rejection) => &rejection.code,
            MatchError::NoRules(_) => "no_rules",
            MatchError::UnknownGame { .. } => "unknown_game",
            MatchError::UnknownMode { .. } => "unknown_mode",
            MatchError::NoBots(_) => "no_bots",
            MatchError::BadSeats { .. } => "invalid_seats",
            MatchError::Rules(_) => "rules_failed",
            MatchError::AlreadyInMatch(_) | MatchError::SeatedElsewhere { .. } => {
                "already_in_match"
            }
            MatchError::Gone | MatchError::Unavailable | MatchError::Busy => "unavailable",
        }
    }

    /// Whether the same request may work a moment later: the store was unreachable, or the
    /// match kept changing under it.
    pub fn is_transient(&self) -> bool {
        matches!(self, MatchError::Unavailable | MatchError::Busy)
    }
}

impl From<StoreError> for MatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchGame(_) => MatchError::NoSuchRoom,
            StoreError::Conflict { .. } => MatchError::Busy,
            StoreError::Seated { player, room } => MatchError::SeatedElsewhere { player, room },
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => MatchError::Unavailable,
        }
    }
}

enum Command {
    Act {
        player: PlayerId,
        action: Box<RawValue>,
        /// When the action reached the host, for `gamehost_action_seconds`.
        arrived: std::time::Instant,
        done: oneshot::Sender<Result<u64, MatchError>>,
    },
    View {
        player: PlayerId,
        done: oneshot::Sender<Result<(GameState, Box<RawValue>), MatchError>>,
    },
    PlayerState {
        player: PlayerId,
        state: Value,
        done: oneshot::Sender<Result<(), MatchError>>,
    },
    Disconnected {
        player: PlayerId,
        socket: SocketId,
        grace: Duration,
        done: oneshot::Sender<Result<(), MatchError>>,
    },
    Reconnected {
        player: PlayerId,
        socket: SocketId,
        done: oneshot::Sender<Result<(), MatchError>>,
    },
    /// The player's reconnection grace ran out.
    Forfeit {
        player: PlayerId,
        done: oneshot::Sender<Result<(), MatchError>>,
    },
    /// Another instance stored this version.
    Changed { version: u64 },
}

type Mailbox = mpsc::UnboundedSender<Command>;

/// Starts matches and routes requests to their actors.
#[derive(Clone)]
pub struct Matches {
    inner: Arc<Hub>,
}

struct Hub {
    store: Arc<Store>,
    modules: Modules,
    outbox: Arc<dyn Outbox>,
    settings: MatchSettings,
    actors: Mutex<HashMap<RoomId, Mailbox>>,
    /// The players of every room this instance has seen. A room's players never change, so
    /// this answers "who is in this room" without the store.
    members: Mutex<HashMap<RoomId, Vec<PlayerId>>>,
}

/// How often an actor retries a change that raced with another instance before giving up.
const MAX_ATTEMPTS: usize = 16;
/// How often a match that went on while the store was away tries to write itself back.
const WRITE_BACK_EVERY: Duration = Duration::from_millis(250);
/// Rooms remembered in the membership cache before it starts afresh.
const MEMBERS_CACHE_ROOMS: usize = 100_000;

impl Matches {
    pub fn new(
        store: Arc<Store>,
        modules: Modules,
        outbox: Arc<dyn Outbox>,
        settings: MatchSettings,
    ) -> Self {
        Matches {
            inner: Arc::new(Hub {
                store,
                modules,
                outbox,
                settings,
                actors: Mutex::default(),
                members: Mutex::default(),
            }),
        }
    }

    pub fn settings(&self) -> &MatchSettings {
        &self.inner.settings
    }

    /// Rooms whose actor runs on this instance.
    pub fn running(&self) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = self.actors().keys().cloned().collect();
        rooms.sort();
        rooms
    }

    fn actors(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Mailbox>> {
        self.inner.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_members(&self, game: &GameState) {
        let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        if members.len() >= MEMBERS_CACHE_ROOMS {
            members.clear();
        }
        members
            .entry(game.room_id.clone())
            .or_insert_with(|| game.players.iter().map(|p| p.id.clone()).collect());
    }

    /// The module version a match is pinned to: loaded here, or fetched from the fleet.
    async fn pinned_module(&self, version: &str) -> Result<RulesModule, MatchError> {
        self.inner.modules.module(version).await.map_err(|error| {
            tracing::warn!(version, %error, "a match's module is not available");
            MatchError::NoRules(version.to_string())
        })
    }

    /// The room of a match running here that `player` plays in, if any.
    pub fn local_room_of(&self, player: &str) -> Option<RoomId> {
        let rooms = self.running();
        let members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        rooms.into_iter().find(|room| {
            members
                .get(room)
                .is_some_and(|m| m.iter().any(|p| p == player))
        })
    }

    /// The players of a room.
    pub async fn members(&self, room: &str) -> Result<Vec<PlayerId>, MatchError> {
        let cached = self
            .inner
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .cloned();
        if let Some(players) = cached {
            return Ok(players);
        }
        let game = self.load(room).await?;
        Ok(game.players.iter().map(|p| p.id.clone()).collect())
    }

    /// A room's stored game (its players remembered on the way).
    async fn load(&self, room: &str) -> Result<GameState, MatchError> {
        let game = self
            .inner
            .store
            .game(room)
            .await?
            .ok_or(MatchError::NoSuchRoom)?;
        self.remember_members(&game);
        Ok(game)
    }

    fn spawn_actor(&self, module: RulesModule, game: GameState) -> Mailbox {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.actors().insert(game.room_id.clone(), sender.clone());
        let actor = Actor::new(self.clone(), module, game);
        tokio::spawn(actor.run(receiver, sender.clone()));
        sender
    }

    /// The actor of a running match on this instance, started from the stored state if this
    /// instance has none yet.
    async fn actor(&self, room: &str) -> Result<Mailbox, MatchError> {
        if let Some(mailbox) = self.actors().get(room).filter(|m| !m.is_closed()) {
            return Ok(mailbox.clone());
        }
        let game = self.load(room).await?;
        if game.status == Status::Finished {
            return Err(MatchError::Finished);
        }
        let module = self.pinned_module(&game.module).await?;
        if let Some(mailbox) = self.actors().get(room).filter(|m| !m.is_closed()) {
            return Ok(mailbox.clone());
        }
        Ok(self.spawn_actor(module, game))
    }

    async fn send(&self, room: &str, command: Command) -> Result<(), MatchError> {
        let mut command = command;
        // An actor may be winding down just as the command arrives; a fresh one then takes it.
        for _ in 0..2 {
            match self.actor(room).await?.send(command) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(returned)) => command = returned,
            }
        }
        Err(MatchError::Gone)
    }

    async fn ask<T>(
        &self,
        room: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, MatchError>>) -> Command,
    ) -> Result<T, MatchError> {
        let (done, answer) = oneshot::channel();
        self.send(room, command(done)).await?;
        answer.await.map_err(|_| MatchError::Gone)?
    }

    /// A player's action; returns the turn after it.
    pub async fn act(
        &self,
        room: &str,
        player: &str,
        action: Box<RawValue>,
    ) -> Result<u64, MatchError> {
        let player = player.to_string();
        let arrived = std::time::Instant::now();
        self.ask(room, |done| Command::Act {
            player,
            action,
            arrived,
            done,
        })
        .await
    }

    /// The game state as `player` may see it, with its own view.
    pub async fn view(
        &self,
        room: &str,
        player: &str,
    ) -> Result<(GameState, Box<RawValue>), MatchError> {
        let owned = player.to_string();
        match self
            .ask(room, |done| Command::View {
                player: owned,
                done,
            })
            .await
        {
            Err(MatchError::Finished) => self.finished_view(room, player).await,
            other => other,
        }
    }

    /// A finished match has no actor; its last state is still in the store.
    async fn finished_view(
        &self,
        room: &str,
        player: &str,
    ) -> Result<(GameState, Box<RawValue>), MatchError> {
        let game = self.load(room).await?;
        if !game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let module = self.pinned_module(&game.module).await?;
        let (state, player) = (game.game_data.clone(), player.to_string());
        let view = call(&module, move |m| m.view(&state, &player)).await?;
        Ok((game, view))
    }

    /// Overwrites the player's free-form client state (the original's `updatePlayerState`).
    pub async fn set_player_state(
        &self,
        room: &str,
        player: &str,
        state: Value,
    ) -> Result<(), MatchError> {
        let player = player.to_string();
        self.ask(room, |done| Command::PlayerState {
            player,
            state,
            done,
        })
        .await
    }

    /// The player's socket went away; its grace period starts (the session store times it).
    /// Returns once the match has recorded it and told the other players.
    pub async fn disconnected(&self, room: &str, player: &str, socket: &str) {
        let (owned, socket) = (player.to_string(), socket.to_string());
        let grace = self.inner.settings.reconnect_grace;
        let result = self
            .ask(room, |done| Command::Disconnected {
                player: owned,
                socket,
                grace,
                done,
            })
            .await;
        if let Err(error) = result {
            tracing::debug!(room, player, %error, "disconnection not recorded in the match");
        }
    }

    /// The player did not come back in time: it leaves its match.
    pub async fn forfeit(&self, room: &str, player: &str) {
        let owned = player.to_string();
        let result = self
            .ask(room, |done| Command::Forfeit {
                player: owned,
                done,
            })
            .await;
        if let Err(error) = result {
            tracing::debug!(room, player, %error, "forfeit not applied");
        }
    }

    /// Hands messages that belong to no change (chat) to this instance's sockets.
    pub async fn relay(&self, messages: Vec<Message>) {
        self.inner.outbox.deliver_here(messages, Vec::new()).await;
    }

    /// A change of a room was stored (by any instance, this one included): hands its messages
    /// to this instance's sockets but those in `except`, and lets an actor here catch up.
    pub async fn announced(
        &self,
        room: &str,
        version: u64,
        messages: Vec<Message>,
        except: Vec<String>,
    ) {
        if let Some(mailbox) = self.actors().get(room) {
            let _ = mailbox.send(Command::Changed { version });
        }
        if !messages.is_empty() {
            self.inner.outbox.deliver_here(messages, except).await;
        }
    }

    /// The player is back on `socket`. A running match tells it `resumed` with the change that
    /// brought it back, in version order with everything else: `Ok(None)`. A finished one has
    /// no change to make: `Ok(Some(resumed))`, for the caller to send to the socket itself.
    pub async fn reconnected(
        &self,
        room: &str,
        player: &str,
        socket: &str,
    ) -> Result<Option<Message>, MatchError> {
        let (owned, socket) = (player.to_string(), socket.to_string());
        match self
            .ask(room, |done| Command::Reconnected {
                player: owned,
                socket,
                done,
            })
            .await
        {
            Ok(()) => Ok(None),
            Err(MatchError::Finished) => {
                let (game, view) = self.finished_view(room, player).await?;
                Ok(Some(announce::resumed(&game, player, view)))
            }
            Err(error) => Err(error),
        }
    }
}

/// Runs a rules call off the async threads: a call is short, but a runaway module may take its
/// whole budget, and that must not stall other matches' sockets.
async fn call<T: Send + 'static>(
    module: &RulesModule,
    f: impl FnOnce(&RulesModule) -> Result<T, CallError> + Send + 'static,
) -> Result<T, MatchError> {
    let module = module.clone();
    match tokio::task::spawn_blocking(move || f(&module)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(CallError::Rejected(rejection))) => Err(MatchError::Rejected(rejection)),
        Ok(Err(error)) => Err(MatchError::Rules(error)),
        Err(join) => Err(MatchError::Rules(CallError::Trapped(join.to_string()))),
    }
}

mod actor;
mod announce;
mod bots;
mod queueing;
mod setup;
mod write_back;

pub use setup::Seated;

use actor::Actor;
