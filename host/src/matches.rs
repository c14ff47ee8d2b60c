//! Authoritative matches. Each running match has one task (an actor) that owns it: every action,
//! timeout, disconnection and reconnection of that match goes through the actor's queue, so they
//! are applied one at a time in arrival order, whatever task or socket they came from.
//!
//! The actor calls the match's rules module (pinned by SHA-256 for the match's whole life), writes
//! the new game state with a compare-and-set, and only then tells the players: each gets the
//! rules' events meant for it and its own view, never another player's.

use crate::model::{
    GameState, MatchRecord, PlayerId, PlayerSlot, QueueEntry, RoomId, SocketId, Status, now_ms,
};
use crate::rules::Rules;
use crate::runtime::{CallError, RulesModule, Transition};
use crate::store::Store;
use abi::{Rejection, Seat};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// Every socket of one player.
    Player(PlayerId),
    /// Every socket in a match's room.
    Room(RoomId),
}

/// One event for clients.
#[derive(Debug, Clone)]
pub struct Message {
    pub to: To,
    pub event: &'static str,
    pub payload: Box<RawValue>,
}

impl Message {
    pub fn new(to: To, event: &'static str, payload: Box<RawValue>) -> Self {
        Message { to, event, payload }
    }
}

pub type Delivery<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// How the host reaches players. The gateway implements it over Socket.IO rooms; a player's
/// sockets are all in that player's own room, so a message reaches it on whichever socket (and,
/// with the Redis adapter, whichever instance) it is.
pub trait Outbox: Send + Sync + 'static {
    /// Delivers the messages in order: a player sees them in the order the match produced them.
    fn send(&self, messages: Vec<Message>) -> Delivery<'_>;
    /// Puts every socket of `player` into `room`.
    fn join_room<'a>(&'a self, player: &'a str, room: &'a str) -> Delivery<'a>;
}

/// Serialises an event payload once, for every recipient.
pub fn payload<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    to_raw_value(value).expect("host payloads always serialise")
}

#[derive(Debug, Clone)]
pub struct MatchSettings {
    /// The game new matches play.
    pub game: String,
    /// How long a round may take before it resolves with what was submitted.
    pub round_timeout: Duration,
    /// How long a disconnected player has to come back before forfeiting.
    pub reconnect_grace: Duration,
    pub instance_id: String,
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
}

impl MatchError {
    pub fn code(&self) -> &str {
        match self {
            MatchError::NoSuchRoom => "unknown_room",
            MatchError::NotInRoom => "not_in_room",
            MatchError::Finished => "game_over",
            MatchError::Rejected(rejection) => &rejection.code,
            MatchError::NoRules(_) => "no_rules",
            MatchError::Rules(_) => "rules_failed",
            MatchError::Gone => "unavailable",
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
    },
    Reconnected {
        player: PlayerId,
        socket: SocketId,
        done: oneshot::Sender<Result<Resumed, MatchError>>,
    },
}

/// Starts matches and routes requests to their actors.
#[derive(Clone)]
pub struct Matches {
    inner: Arc<Hub>,
}

struct Hub {
    store: Arc<Store>,
    rules: Rules,
    outbox: Arc<dyn Outbox>,
    settings: MatchSettings,
    actors: Mutex<HashMap<RoomId, mpsc::UnboundedSender<Command>>>,
}

impl Matches {
    pub fn new(
        store: Arc<Store>,
        rules: Rules,
        outbox: Arc<dyn Outbox>,
        settings: MatchSettings,
    ) -> Self {
        Matches {
            inner: Arc::new(Hub {
                store,
                rules,
                outbox,
                settings,
                actors: Mutex::default(),
            }),
        }
    }

    pub fn settings(&self) -> &MatchSettings {
        &self.inner.settings
    }

    /// Rooms whose actor is running.
    pub fn running(&self) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = self.actors().keys().cloned().collect();
        rooms.sort();
        rooms
    }

    fn actors(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, mpsc::UnboundedSender<Command>>> {
        self.inner.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a match between two paired players: sets it up with the game's active rules,
    /// stores it, seats both players' sockets in its room and tells them.
    pub async fn start(&self, pair: [(QueueEntry, SocketId); 2]) -> Result<GameState, MatchError> {
        let hub = &self.inner;
        let game = hub.settings.game.clone();
        let module = hub
            .rules
            .active(&game)
            .ok_or_else(|| MatchError::NoRules(game.clone()))?;
        let mut pair = pair;
        pair.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let seats: Vec<Seat> = pair
            .iter()
            .map(|(entry, _)| Seat {
                id: entry.id.clone(),
                level: entry.level,
            })
            .collect();
        let seed: u64 = rand::random();
        let null = RawValue::from_string("null".into()).expect("null is JSON");
        let transition = call(&module, move |m| m.setup(seed, &seats, &null)).await?;

        let room_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let players = pair
            .iter()
            .map(|(entry, socket)| PlayerSlot {
                id: entry.id.clone(),
                socket_id: socket.clone(),
                instance_id: hub.settings.instance_id.clone(),
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
        let round_deadline = fold(&mut state, &transition, hub.settings.round_timeout, true);
        hub.store.insert_match(record, state.clone());
        for (entry, socket) in &pair {
            hub.store.set_socket_room(socket, Some(room_id.clone()));
            hub.store
                .update_session(&entry.id, |s| s.room_id = Some(room_id.clone()));
            hub.outbox.join_room(&entry.id, &room_id).await;
        }

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct MatchFound<'a> {
            room_id: &'a str,
            players: Vec<&'a QueueEntry>,
        }
        let found = Message::new(
            To::Room(room_id.clone()),
            "matchFound",
            payload(&MatchFound {
                room_id: &room_id,
                players: pair.iter().map(|(entry, _)| entry).collect(),
            }),
        );
        let mut messages = vec![found];
        messages.extend(announcements(&state, &transition));
        hub.outbox.send(messages).await;

        let (sender, receiver) = mpsc::unbounded_channel();
        self.actors().insert(room_id.clone(), sender);
        let actor = Actor {
            matches: self.clone(),
            module,
            game: state.clone(),
            round_deadline,
            grace: HashMap::new(),
        };
        tokio::spawn(actor.run(receiver));

        // A player whose socket closed while the match was being set up was not yet in it when
        // its disconnection was handled: hand that disconnection to the match now.
        for (entry, socket) in &pair {
            let session_socket = hub.store.session(&entry.id).and_then(|s| s.socket_id);
            if session_socket.as_deref() != Some(socket.as_str()) {
                self.disconnected(&room_id, &entry.id, socket);
            }
        }
        Ok(state)
    }

    fn send(&self, room: &str, command: Command) -> Result<(), MatchError> {
        let sender = self.actors().get(room).cloned();
        match sender {
            Some(sender) => sender.send(command).map_err(|_| MatchError::Gone),
            None if self.inner.store.game(room).is_some() => Err(MatchError::Finished),
            None => Err(MatchError::NoSuchRoom),
        }
    }

    async fn ask<T>(
        &self,
        room: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, MatchError>>) -> Command,
    ) -> Result<T, MatchError> {
        let (done, answer) = oneshot::channel();
        self.send(room, command(done))?;
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
        let game = self.inner.store.game(room).ok_or(MatchError::NoSuchRoom)?;
        if !game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let module = self
            .inner
            .rules
            .version(&game.module)
            .ok_or_else(|| MatchError::NoRules(game.module.clone()))?;
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

    /// The player's socket went away; its grace period starts.
    pub fn disconnected(&self, room: &str, player: &str, socket: &str) {
        let _ = self.send(
            room,
            Command::Disconnected {
                player: player.to_string(),
                socket: socket.to_string(),
            },
        );
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

/// Writes a transition into the game state document; returns the new round deadline, if the
/// round moved (or `starting`).
fn fold(
    game: &mut GameState,
    transition: &Transition,
    round_timeout: Duration,
    starting: bool,
) -> Option<Instant> {
    let turn_moved = starting || transition.turn != game.turn;
    game.game_data = transition.state.clone();
    game.turn = transition.turn;
    if let Some(outcome) = &transition.outcome {
        game.status = Status::Finished;
        game.winners = Some(outcome.winners.clone());
        game.round_ends_at = None;
        None
    } else if turn_moved {
        game.round_ends_at = Some(now_ms() + round_timeout.as_millis() as u64);
        Some(Instant::now() + round_timeout)
    } else {
        None
    }
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
            None => To::Room(room.to_string()),
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
        messages.push(Message::new(To::Room(room.to_string()), "gameOver", body));
    }
    messages
}

/// The one task that owns a running match.
struct Actor {
    matches: Matches,
    module: RulesModule,
    game: GameState,
    round_deadline: Option<Instant>,
    /// Disconnected players and when their grace runs out.
    grace: HashMap<PlayerId, Instant>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let room = self.game.room_id.clone();
        while self.game.status != Status::Finished {
            let next = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = sleep_until(next), if next.is_some() => self.on_deadline().await,
            }
        }
        self.matches.actors().remove(&room);
        // Answer whatever arrived meanwhile, so no caller waits forever.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.handle(command).await;
        }
        tracing::info!(room, winners = ?self.game.winners, "match over");
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.grace
            .values()
            .copied()
            .chain(self.round_deadline)
            .min()
    }

    fn hub(&self) -> &Hub {
        &self.matches.inner
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
            Command::Disconnected { player, socket } => self.disconnected(&player, &socket).await,
            Command::Reconnected {
                player,
                socket,
                done,
            } => {
                let _ = done.send(self.reconnected(&player, &socket).await);
            }
        }
    }

    async fn act(&mut self, player: &str, action: Box<RawValue>) -> Result<u64, MatchError> {
        self.check_player(player)?;
        let (state, who) = (self.game.game_data.clone(), player.to_string());
        let transition = call(&self.module, move |m| m.action(&state, &who, &action)).await?;
        self.commit(transition).await;
        Ok(self.game.turn)
    }

    async fn view(&self, player: &str) -> Result<Box<RawValue>, MatchError> {
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let (state, who) = (self.game.game_data.clone(), player.to_string());
        call(&self.module, move |m| m.view(&state, &who)).await
    }

    fn check_player(&self, player: &str) -> Result<(), MatchError> {
        if self.game.status == Status::Finished {
            return Err(MatchError::Finished);
        }
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        Ok(())
    }

    /// Stores the next version of the game and, once stored, tells the players.
    async fn commit(&mut self, transition: Transition) {
        let mut next = self.game.clone();
        let deadline = fold(
            &mut next,
            &transition,
            self.hub().settings.round_timeout,
            false,
        );
        if !self.save(next) {
            return;
        }
        if deadline.is_some() || self.game.status == Status::Finished {
            self.round_deadline = deadline;
        }
        let messages = announcements(&self.game, &transition);
        self.hub().outbox.send(messages).await;
    }

    /// Stores `next` as the version after the current one, by compare-and-set. The actor is the
    /// match's only writer, so a conflict means something outside it wrote; the stored version
    /// wins and the change is dropped.
    fn save(&mut self, mut next: GameState) -> bool {
        next.version = self.game.version + 1;
        next.updated_at = now_ms();
        match self.hub().store.replace_game(next.clone()) {
            Ok(()) => {
                self.game = next;
                true
            }
            Err(error) => {
                tracing::error!(room = %self.game.room_id, %error, "game state not saved");
                if let Some(stored) = self.hub().store.game(&self.game.room_id) {
                    self.game = stored;
                }
                false
            }
        }
    }

    async fn set_player_state(&mut self, player: &str, state: Value) -> Result<(), MatchError> {
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let mut next = self.game.clone();
        next.slot_mut(player).expect("checked").state = state.clone();
        if !self.save(next) {
            return Err(MatchError::Gone);
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Updated<'a> {
            player_id: &'a str,
            state: &'a Value,
        }
        let body = payload(&Updated {
            player_id: player,
            state: &state,
        });
        let to = To::Room(self.game.room_id.clone());
        self.hub()
            .outbox
            .send(vec![Message::new(to, "playerStateUpdated", body)])
            .await;
        Ok(())
    }

    async fn disconnected(&mut self, player: &str, socket: &str) {
        let Some(slot) = self.game.slot(player) else {
            return;
        };
        // A socket the player already replaced going away changes nothing.
        if slot.socket_id != socket || !slot.connected || self.game.status == Status::Finished {
            return;
        }
        let grace = self.hub().settings.reconnect_grace;
        let mut next = self.game.clone();
        next.slot_mut(player).expect("checked").connected = false;
        if !self.save(next) {
            return;
        }
        self.grace
            .insert(player.to_string(), Instant::now() + grace);

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Gone<'a> {
            room_id: &'a str,
            player_id: &'a str,
            reconnect_within_ms: u64,
        }
        let body = payload(&Gone {
            room_id: &self.game.room_id,
            player_id: player,
            reconnect_within_ms: grace.as_millis() as u64,
        });
        let messages = self.to_others(player, "opponentDisconnected", body);
        self.hub().outbox.send(messages).await;
    }

    async fn reconnected(&mut self, player: &str, socket: &str) -> Result<Resumed, MatchError> {
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let was_away = self.grace.remove(player).is_some();
        let mut next = self.game.clone();
        let slot = next.slot_mut(player).expect("checked");
        slot.socket_id = socket.to_string();
        slot.instance_id = self.hub().settings.instance_id.clone();
        slot.connected = true;
        if !self.save(next) {
            return Err(MatchError::Gone);
        }
        self.hub()
            .outbox
            .join_room(player, &self.game.room_id)
            .await;
        if was_away {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Back<'a> {
                room_id: &'a str,
                player_id: &'a str,
            }
            let body = payload(&Back {
                room_id: &self.game.room_id,
                player_id: player,
            });
            let messages = self.to_others(player, "opponentReconnected", body);
            self.hub().outbox.send(messages).await;
        }
        let view = self.view(player).await?;
        Ok(Resumed {
            game: self.game.clone(),
            view,
        })
    }

    /// The same message for every player of the match but `player`.
    fn to_others(&self, player: &str, event: &'static str, body: Box<RawValue>) -> Vec<Message> {
        self.game
            .players
            .iter()
            .filter(|p| p.id != player)
            .map(|p| Message::new(To::Player(p.id.clone()), event, body.clone()))
            .collect()
    }

    async fn on_deadline(&mut self) {
        let now = Instant::now();
        let expired: Vec<PlayerId> = self
            .grace
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(player, _)| player.clone())
            .collect();
        for player in expired {
            self.grace.remove(&player);
            tracing::info!(room = %self.game.room_id, player, "reconnection grace over: forfeit");
            let (state, who) = (self.game.game_data.clone(), player.clone());
            match call(&self.module, move |m| m.leave(&state, &who)).await {
                Ok(transition) => self.commit(transition).await,
                Err(error) => tracing::error!(room = %self.game.room_id, %error, "leave failed"),
            }
        }
        if self.round_deadline.is_some_and(|at| at <= now) && self.game.status != Status::Finished {
            let state = self.game.game_data.clone();
            match call(&self.module, move |m| m.timeout(&state)).await {
                Ok(transition) => {
                    let turn = self.game.turn;
                    self.commit(transition).await;
                    if self.game.turn == turn && self.game.status != Status::Finished {
                        // The rules kept the round open; try again after another full round.
                        self.round_deadline = Some(now + self.hub().settings.round_timeout);
                    }
                }
                Err(error) => {
                    tracing::error!(room = %self.game.room_id, %error, "round timeout failed");
                    self.round_deadline = Some(now + self.hub().settings.round_timeout);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
