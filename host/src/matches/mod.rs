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
    GameState, MatchRecord, PlayerId, PlayerSlot, QueueEntry, RoomId, SocketId, Status, now_ms,
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
/// order) and every instance hands them to its own sockets ([`Outbox::deliver_here`]); alone,
/// the actor hands them over itself.
pub trait Outbox: Send + Sync + 'static {
    /// Delivers the messages, in order, to the recipients' sockets on this instance.
    fn deliver_here(&self, messages: Vec<Message>) -> Delivery<'_>;
    /// Delivers the messages to the recipients' sockets wherever they are (through the
    /// Socket.IO adapter); for messages that belong to no state change, like chat.
    fn broadcast(&self, messages: Vec<Message>) -> Delivery<'_>;
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
    pub instance_id: String,
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
    #[error("the game store is unreachable; try again shortly")]
    Unavailable,
    #[error("the match kept changing under this request; try again")]
    Busy,
    #[error("there is no game {game:?} here; the games are {served:?}")]
    UnknownGame { game: String, served: Vec<String> },
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
            MatchError::Rules(_) => "rules_failed",
            MatchError::Gone | MatchError::Unavailable | MatchError::Busy => "unavailable",
        }
    }
}

impl From<StoreError> for MatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchGame(_) => MatchError::NoSuchRoom,
            StoreError::Conflict { .. } => MatchError::Busy,
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => MatchError::Unavailable,
        }
    }
}

/// What a returning player needs to pick up where it left off.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub game: GameState,
    pub view: Box<RawValue>,
}

enum Command {
    Act {
        player: PlayerId,
        action: Box<RawValue>,
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
        done: oneshot::Sender<Result<Resumed, MatchError>>,
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

    /// The queue of `game` (default: the configured one) in `mode` (default: the game's first),
    /// as the active module of that game describes it.
    pub fn queue(&self, game: Option<&str>, asked: Option<&str>) -> Result<Queue, MatchError> {
        let rules = self.inner.modules.rules();
        let default_game = &self.inner.settings.game;
        let game = game.unwrap_or(default_game);
        let Some(module) = rules.active(game) else {
            return Err(MatchError::UnknownGame {
                game: game.to_string(),
                served: rules.games(),
            });
        };
        let description = crate::rules::description_of(&module, game);
        let mode = match asked {
            Some(name) => description.modes.iter().find(|m| m.name == name),
            None => description.modes.first(),
        };
        let Some(mode) = mode else {
            return Err(MatchError::UnknownMode {
                game: game.to_string(),
                mode: asked.unwrap_or_default().to_string(),
                modes: description.modes.iter().map(|m| m.name.clone()).collect(),
            });
        };
        // The default game's default mode keeps the original's queues. Only the default game's
        // own first mode can be it, and that is this description's first mode.
        let first_mode = &description.modes[0].name;
        Ok(Queue {
            game: game.to_string(),
            mode: mode.name.clone(),
            lane: crate::matchmaking::lane(game, &mode.name, default_game, first_mode),
            config: mode.config.clone(),
        })
    }

    /// Starts a match between two paired players of `queue`, each given with its socket and the
    /// instance holding that socket: sets it up with the game's active rules and the mode's
    /// settings, stores it and tells them.
    pub async fn start(
        &self,
        queue: &Queue,
        pair: [(QueueEntry, SocketId, String); 2],
    ) -> Result<GameState, MatchError> {
        let hub = &self.inner;
        let game = queue.game.clone();
        let module = hub
            .modules
            .rules()
            .active(&game)
            .ok_or_else(|| MatchError::NoRules(game.clone()))?;
        let mut pair = pair;
        pair.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let seats: Vec<Seat> = pair
            .iter()
            .map(|(entry, _, _)| Seat {
                id: entry.id.clone(),
                level: entry.level,
            })
            .collect();
        let seed: u64 = rand::random();
        let config = queue.config.clone();
        let transition = call(&module, move |m| m.setup(seed, &seats, &config)).await?;

        let room_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let players = pair
            .iter()
            .map(|(entry, socket, instance)| PlayerSlot {
                id: entry.id.clone(),
                socket_id: socket.clone(),
                instance_id: instance.clone(),
                state: Value::Object(Default::default()),
                level: entry.level,
                connected: true,
            })
            .collect();
        let mut state = GameState {
            room_id: room_id.clone(),
            players,
            game_data: RawValue::from_string("null".into()).expect("null is JSON"),
            turn: 0,
            status: Status::Active,
            created_at: now,
            updated_at: now,
            game,
            module: module.sha256_hex(),
            version: 1,
            winners: None,
            round_ends_at: None,
        };
        let record = MatchRecord {
            player1: pair[0].0.clone(),
            player2: pair[1].0.clone(),
            room_id: room_id.clone(),
        };
        fold(
            &mut state,
            &transition,
            hub.settings.round_timeout_of(&module),
            true,
        );
        let mut messages = vec![match_found(&state, &pair)];
        messages.extend(announcements(&state, &transition));
        hub.store.insert_match(&record, &state, &messages).await?;
        if !hub.store.announces() {
            hub.outbox.deliver_here(messages).await;
        }
        self.remember_members(&state);
        for (entry, socket, _) in &pair {
            // The match is stored: a failure here only leaves a mapping less precise.
            let room = Some(room_id.as_str());
            if let Err(error) = hub.store.set_session_room(&entry.id, room).await {
                tracing::warn!(player = entry.id, %error, "session not updated");
            }
            if let Err(error) = hub.store.set_socket_room(socket, room).await {
                tracing::warn!(socket, %error, "socket mapping not updated");
            }
        }

        self.spawn_actor(module, state.clone());

        // A player whose socket closed while the match was being set up was not yet in it when
        // its disconnection was handled: hand that disconnection to the match now.
        for (entry, socket, _) in &pair {
            let current = hub.store.session(&entry.id).await.ok().flatten();
            if current.and_then(|s| s.socket_id).as_deref() != Some(socket.as_str()) {
                self.disconnected(&room_id, &entry.id, socket).await;
            }
        }
        Ok(state)
    }

    fn spawn_actor(&self, module: RulesModule, game: GameState) -> Mailbox {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.actors().insert(game.room_id.clone(), sender.clone());
        let actor = Actor {
            matches: self.clone(),
            module,
            stored_version: game.version,
            game,
            unsaved: false,
            round_ended: false,
            refused_migration: None,
        };
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
        self.ask(room, |done| Command::Act {
            player,
            action,
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

    /// A change of a room was stored (by any instance, this one included): hands its messages
    /// to this instance's sockets, and lets an actor here catch up.
    pub async fn announced(&self, room: &str, version: u64, messages: Vec<Message>) {
        if let Some(mailbox) = self.actors().get(room) {
            let _ = mailbox.send(Command::Changed { version });
        }
        if !messages.is_empty() {
            self.inner.outbox.deliver_here(messages).await;
        }
    }

    /// The player is back on `socket`.
    pub async fn reconnected(
        &self,
        room: &str,
        player: &str,
        socket: &str,
    ) -> Result<Resumed, MatchError> {
        let (owned, socket) = (player.to_string(), socket.to_string());
        match self
            .ask(room, |done| Command::Reconnected {
                player: owned,
                socket,
                done,
            })
            .await
        {
            Err(MatchError::Finished) => {
                let (game, view) = self.finished_view(room, player).await?;
                Ok(Resumed { game, view })
            }
            other => other,
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

/// Writes a transition into the game state document. The round clock restarts when the turn
/// moves, or when `restart_clock` says so (a timeout that left the round open).
fn fold(
    game: &mut GameState,
    transition: &Transition,
    round_timeout: Duration,
    restart_clock: bool,
) {
    let turn_moved = transition.turn != game.turn;
    game.game_data = transition.state.clone();
    game.turn = transition.turn;
    if let Some(outcome) = &transition.outcome {
        game.status = Status::Finished;
        game.winners = Some(outcome.winners.clone());
        game.round_ends_at = None;
    } else if turn_moved || restart_clock {
        game.round_ends_at = Some(now_ms() + round_timeout.as_millis() as u64);
    }
}

/// `matchFound`, as the original sent it: the room and both players, sorted by id.
fn match_found(game: &GameState, pair: &[(QueueEntry, SocketId, String); 2]) -> Message {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct MatchFound<'a> {
        room_id: &'a str,
        players: Vec<&'a QueueEntry>,
    }
    Message::new(
        everyone(game),
        "matchFound",
        payload(&MatchFound {
            room_id: &game.room_id,
            players: pair.iter().map(|(entry, _, _)| entry).collect(),
        }),
    )
}

/// Every player of a game.
fn everyone(game: &GameState) -> To {
    To::Players(game.players.iter().map(|p| p.id.clone()).collect())
}

/// What each player hears of a transition: the rules' events (each to its audience), then its
/// own view, then the end of the game if it ended.
fn announcements(game: &GameState, transition: &Transition) -> Vec<Message> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GameEvent<'a> {
        room_id: &'a str,
        turn: u64,
        event: &'a RawValue,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ViewEvent<'a> {
        room_id: &'a str,
        turn: u64,
        view: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        round_ends_at: Option<u64>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GameOver<'a> {
        room_id: &'a str,
        winners: &'a [PlayerId],
    }
    let room = game.room_id.as_str();
    let mut messages = Vec::new();
    for event in &transition.events {
        let body = payload(&GameEvent {
            room_id: room,
            turn: transition.turn,
            event: &event.event,
        });
        let to = match &event.to {
            None => everyone(game),
            Some(player) => To::Player(player.clone()),
        };
        messages.push(Message::new(to, "gameEvent", body));
    }
    for view in &transition.views {
        let body = payload(&ViewEvent {
            room_id: room,
            turn: transition.turn,
            view: &view.view,
            round_ends_at: game.round_ends_at,
        });
        messages.push(Message::new(To::Player(view.player.clone()), "view", body));
    }
    if let Some(outcome) = &transition.outcome {
        let body = payload(&GameOver {
            room_id: room,
            winners: &outcome.winners,
        });
        messages.push(Message::new(everyone(game), "gameOver", body));
    }
    messages
}

/// A change an actor computed: the next game state and what to tell once it is stored.
struct Change<T> {
    next: GameState,
    messages: Vec<Message>,
    answer: T,
}

/// The task that owns a running match on this instance.
struct Actor {
    matches: Matches,
    module: RulesModule,
    /// The last state this actor saw or wrote.
    game: GameState,
    /// The version the store holds, as far as this actor knows.
    stored_version: u64,
    /// Changes went on in memory while the store was away and still have to be written back.
    unsaved: bool,
    /// A round just ended: the moment a match may move to a newly active version.
    round_ended: bool,
    /// The version that refused to carry this match over (not asked again).
    refused_migration: Option<String>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, me: Mailbox) {
        let room = self.game.room_id.clone();
        let mut write_back = tokio::time::interval(WRITE_BACK_EVERY);
        while self.game.status != Status::Finished || self.unsaved {
            let next = self.round_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = sleep_until(next), if next.is_some() && self.game.status != Status::Finished => {
                    self.on_round_deadline().await
                }
                _ = write_back.tick(), if self.unsaved => self.write_back().await,
            }
            if std::mem::take(&mut self.round_ended) {
                self.migrate_if_asked().await;
            }
            if !self.unsaved && !self.has_local_player() {
                // The match's players are on other instances now; their actors carry it.
                break;
            }
        }
        {
            let mut actors = self.matches.actors();
            if actors.get(&room).is_some_and(|m| m.same_channel(&me)) {
                actors.remove(&room);
            }
        }
        // Answer whatever arrived meanwhile, so no caller waits forever.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.handle(command).await;
        }
        if self.game.status == Status::Finished {
            tracing::info!(room, winners = ?self.game.winners, "match over");
        }
    }

    fn hub(&self) -> &Hub {
        &self.matches.inner
    }

    fn instance(&self) -> &str {
        &self.hub().settings.instance_id
    }

    fn has_local_player(&self) -> bool {
        self.game
            .players
            .iter()
            .any(|p| p.instance_id == self.instance())
    }

    fn round_deadline(&self) -> Option<Instant> {
        let ends_at = self.game.round_ends_at?;
        let left = ends_at.saturating_sub(now_ms());
        Some(Instant::now() + Duration::from_millis(left))
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Act {
                player,
                action,
                done,
            } => {
                let _ = done.send(self.act(&player, action).await);
            }
            Command::View { player, done } => {
                let _ = done.send(
                    self.view(&player)
                        .await
                        .map(|view| (self.game.clone(), view)),
                );
            }
            Command::PlayerState {
                player,
                state,
                done,
            } => {
                let _ = done.send(self.set_player_state(&player, state).await);
            }
            Command::Disconnected {
                player,
                socket,
                grace,
                done,
            } => {
                let _ = done.send(self.disconnected(&player, &socket, grace).await);
            }
            Command::Reconnected {
                player,
                socket,
                done,
            } => {
                let _ = done.send(self.reconnected(&player, &socket).await);
            }
            Command::Forfeit { player, done } => {
                let _ = done.send(self.forfeit(&player).await);
            }
            Command::Changed { version } => {
                if version > self.game.version && !self.unsaved {
                    self.reload().await;
                }
            }
        }
    }

    /// Reads the stored state. Returns false if the store could not be read.
    async fn reload(&mut self) -> bool {
        match self.hub().store.game(&self.game.room_id).await {
            Ok(Some(stored)) => {
                if stored.module != self.game.module
                    && let Ok(module) = self.matches.pinned_module(&stored.module).await
                {
                    self.module = module;
                }
                self.stored_version = stored.version;
                self.game = stored;
                true
            }
            Ok(None) => {
                // Pruned or cleaned away: nothing is left to play.
                self.game.status = Status::Finished;
                true
            }
            Err(error) => {
                tracing::warn!(room = %self.game.room_id, %error, "could not reload the match");
                false
            }
        }
    }

    /// Computes a change from the current state and stores it by compare-and-set; when another
    /// instance wrote first, reloads and computes again. Tells the players once it is stored.
    async fn change<T, F, Fut>(&mut self, mut compute: F) -> Result<T, MatchError>
    where
        F: FnMut(GameState, RulesModule, MatchSettings) -> Fut,
        Fut: Future<Output = Result<Option<Change<T>>, MatchError>>,
        T: Default,
    {
        for _ in 0..MAX_ATTEMPTS {
            let settings = self.hub().settings.clone();
            let Some(change) = compute(self.game.clone(), self.module.clone(), settings).await?
            else {
                return Ok(T::default());
            };
            let mut next = change.next;
            next.version = self.game.version + 1;
            next.updated_at = now_ms();
            let mut deliver_here = !self.hub().store.announces();
            match self.store(&next, &change.messages).await {
                Ok(()) => {
                    self.stored_version = next.version;
                    self.unsaved = false;
                }
                Err(StoreError::Conflict { .. }) if !self.unsaved => {
                    if !self.reload().await {
                        return Err(MatchError::Unavailable);
                    }
                    if self.game.status == Status::Finished {
                        return Err(MatchError::Finished);
                    }
                    continue;
                }
                Err(StoreError::Unavailable(_)) if self.all_players_local() => {
                    // Nobody elsewhere can change this match meanwhile: go on in memory.
                    self.unsaved = true;
                    deliver_here = true;
                }
                Err(error) => {
                    tracing::warn!(room = %self.game.room_id, %error, "change not stored");
                    return Err(MatchError::Unavailable);
                }
            }
            self.round_ended |= next.turn != self.game.turn && next.status != Status::Finished;
            self.game = next;
            if deliver_here {
                self.hub().outbox.deliver_here(change.messages).await;
            }
            return Ok(change.answer);
        }
        Err(MatchError::Busy)
    }

    fn all_players_local(&self) -> bool {
        self.game
            .players
            .iter()
            .all(|p| p.instance_id == self.instance())
    }

    /// Stores `next` by compare-and-set on the version the store holds. A store that lost the
    /// match altogether (Redis came back empty) gets it back whole: this copy is the newest.
    async fn store(&self, next: &GameState, messages: &[Message]) -> Result<(), StoreError> {
        let store = &self.hub().store;
        match store
            .replace_game(next, self.stored_version, messages)
            .await
        {
            Err(StoreError::NoSuchGame(_)) => {
                tracing::warn!(room = %next.room_id, "the store lost this match; restoring it");
                let entry = |slot: &PlayerSlot| QueueEntry {
                    id: slot.id.clone(),
                    level: slot.level,
                };
                let (Some(first), Some(last)) = (next.players.first(), next.players.last()) else {
                    return Err(StoreError::NoSuchGame(next.room_id.clone()));
                };
                let record = MatchRecord {
                    player1: entry(first),
                    player2: entry(last),
                    room_id: next.room_id.clone(),
                };
                store.insert_match(&record, next, messages).await
            }
            other => other,
        }
    }

    /// Writes back what changed while the store was away.
    async fn write_back(&mut self) {
        let game = self.game.clone();
        match self.store(&game, &[]).await {
            Ok(()) => {
                tracing::info!(room = %self.game.room_id, version = self.game.version, "match written back");
                self.stored_version = self.game.version;
                self.unsaved = false;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(error) => {
                // Someone else changed the stored match meanwhile (only possible if it had a
                // player elsewhere after all): the stored one wins.
                tracing::error!(room = %self.game.room_id, %error, "write-back refused; taking the stored match");
                self.unsaved = false;
                self.reload().await;
            }
        }
    }

    async fn act(&mut self, player: &str, action: Box<RawValue>) -> Result<u64, MatchError> {
        let player = player.to_string();
        self.change(|game, module, settings| {
            let (player, action) = (player.clone(), action.clone());
            async move {
                check_player(&game, &player)?;
                let state = game.game_data.clone();
                let transition = call(&module, move |m| m.action(&state, &player, &action)).await?;
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    false,
                )))
            }
        })
        .await
        .map(|()| self.game.turn)
    }

    async fn view(&self, player: &str) -> Result<Box<RawValue>, MatchError> {
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let (state, who) = (self.game.game_data.clone(), player.to_string());
        call(&self.module, move |m| m.view(&state, &who)).await
    }

    async fn set_player_state(&mut self, player: &str, state: Value) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|mut game, _, _| {
            let (player, state) = (player.clone(), state.clone());
            async move {
                let slot = game.slot_mut(&player).ok_or(MatchError::NotInRoom)?;
                slot.state = state.clone();
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Updated<'a> {
                    player_id: &'a str,
                    state: &'a Value,
                }
                let body = payload(&Updated {
                    player_id: &player,
                    state: &state,
                });
                let messages = vec![Message::new(everyone(&game), "playerStateUpdated", body)];
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                }))
            }
        })
        .await
    }

    async fn disconnected(
        &mut self,
        player: &str,
        socket: &str,
        grace: Duration,
    ) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|mut game, _, _| {
            let player = player.clone();
            let socket = socket.to_string();
            async move {
                let Some(slot) = game.slot_mut(&player) else {
                    return Ok(None);
                };
                // A socket the player already replaced going away changes nothing.
                if slot.socket_id != socket || !slot.connected {
                    return Ok(None);
                }
                slot.connected = false;
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Gone<'a> {
                    room_id: &'a str,
                    player_id: &'a str,
                    reconnect_within_ms: u64,
                }
                let body = payload(&Gone {
                    room_id: &game.room_id,
                    player_id: &player,
                    reconnect_within_ms: grace.as_millis() as u64,
                });
                let messages = to_others(&game, &player, "opponentDisconnected", body);
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                }))
            }
        })
        .await
    }

    async fn reconnected(&mut self, player: &str, socket: &str) -> Result<Resumed, MatchError> {
        let instance = self.instance().to_string();
        let player = player.to_string();
        self.change(|mut game, _, _| {
            let (player, socket, instance) = (player.clone(), socket.to_string(), instance.clone());
            async move {
                let slot = game.slot_mut(&player).ok_or(MatchError::NotInRoom)?;
                let was_away = !slot.connected;
                slot.socket_id = socket;
                slot.instance_id = instance;
                slot.connected = true;
                let mut messages = Vec::new();
                if was_away {
                    #[derive(Serialize)]
                    #[serde(rename_all = "camelCase")]
                    struct Back<'a> {
                        room_id: &'a str,
                        player_id: &'a str,
                    }
                    let body = payload(&Back {
                        room_id: &game.room_id,
                        player_id: &player,
                    });
                    messages = to_others(&game, &player, "opponentReconnected", body);
                }
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                }))
            }
        })
        .await?;
        let view = self.view(&player).await?;
        Ok(Resumed {
            game: self.game.clone(),
            view,
        })
    }

    async fn forfeit(&mut self, player: &str) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|game, module, settings| {
            let player = player.clone();
            async move {
                // Back in time after all, or already out.
                if game.slot(&player).is_none_or(|slot| slot.connected)
                    || game.status == Status::Finished
                {
                    return Ok(None);
                }
                tracing::info!(room = %game.room_id, player, "reconnection grace over: forfeit");
                let state = game.game_data.clone();
                let transition = call(&module, move |m| m.leave(&state, &player)).await?;
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    false,
                )))
            }
        })
        .await
    }

    /// At a round boundary: if another version of the game is active now and it can carry this
    /// match over (its optional migration export accepts the state), the match moves to it.
    /// Otherwise it stays on the version it started with.
    async fn migrate_if_asked(&mut self) {
        if self.unsaved || self.game.status == Status::Finished {
            return;
        }
        let Some(active) = self.hub().modules.rules().active(&self.game.game) else {
            return;
        };
        let target = active.sha256_hex();
        if target == self.game.module
            || !active.can_migrate()
            || self.refused_migration.as_deref() == Some(target.as_str())
        {
            return;
        }
        let result = self
            .change(|game, _, _| {
                let (active, target) = (active.clone(), target.clone());
                async move {
                    if game.module == target || game.status == Status::Finished {
                        return Ok(None);
                    }
                    let state = game.game_data.clone();
                    let transition = call(&active, move |m| m.migrate(&state)).await?;
                    let mut next = game;
                    next.module = target;
                    next.game_data = transition.state.clone();
                    let messages = announcements(&next, &transition);
                    Ok(Some(Change {
                        next,
                        messages,
                        answer: (),
                    }))
                }
            })
            .await;
        match result {
            Ok(()) if self.game.module == target => {
                tracing::info!(room = %self.game.room_id, version = target, "match moved to the active version");
                self.module = active;
            }
            Ok(()) => {}
            Err(error) => {
                tracing::info!(room = %self.game.room_id, version = target, %error, "match stays on its version");
                self.refused_migration = Some(target);
            }
        }
    }

    async fn on_round_deadline(&mut self) {
        // Another instance may have moved the round on already; catch up before timing it out.
        if !self.unsaved {
            self.reload().await;
        }
        let due = |game: &GameState| {
            game.status != Status::Finished && game.round_ends_at.is_some_and(|at| at <= now_ms())
        };
        if !due(&self.game) {
            return;
        }
        let result = self
            .change(|game, module, settings| async move {
                if !due(&game) {
                    return Ok(None);
                }
                let state = game.game_data.clone();
                let transition = call(&module, move |m| m.timeout(&state)).await?;
                // If the rules keep the round open, it gets another full round.
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    true,
                )))
            })
            .await;
        if let Err(error) = result {
            tracing::error!(room = %self.game.room_id, %error, "round timeout failed");
            // Try again after another full round rather than at once.
            let retry_at = now_ms() + self.hub().settings.round_timeout.as_millis() as u64;
            self.game.round_ends_at = Some(retry_at);
        }
    }
}

fn check_player(game: &GameState, player: &str) -> Result<(), MatchError> {
    if game.status == Status::Finished {
        return Err(MatchError::Finished);
    }
    if !game.has_player(player) {
        return Err(MatchError::NotInRoom);
    }
    Ok(())
}

/// The change a rules transition makes, with its announcements.
fn transitioned(
    mut game: GameState,
    transition: &Transition,
    round_timeout: Duration,
    restart_clock: bool,
) -> Change<()> {
    fold(&mut game, transition, round_timeout, restart_clock);
    let messages = announcements(&game, transition);
    Change {
        next: game,
        messages,
        answer: (),
    }
}

/// The same message for every player of the match but `player`.
fn to_others(
    game: &GameState,
    player: &str,
    event: &'static str,
    body: Box<RawValue>,
) -> Vec<Message> {
    game.players
        .iter()
        .filter(|p| p.id != player)
        .map(|p| Message::new(To::Player(p.id.clone()), event, body.clone()))
        .collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
