//! The Socket.IO gateway: **the only code that handles Socket.IO events** (`server` merely builds
//! socketioxide's layer). It turns client events into calls on the store and the matches, and
//! implements [`Outbox`] over Socket.IO rooms.
//!
//! Conventions every event follows (see `docs/PROTOCOL.md`):
//! * A request's answer goes to its acknowledgement when the client asked for one, and otherwise
//!   to the event named for that request (for the original's events, exactly as it did).
//! * A refused request answers `{success: false, code, error}` the same way; without an
//!   acknowledgement it arrives as a `serverError` event `{event, code, error}`.
//! * Every socket is in its player's own room (`player:<id>`), so the host reaches a player on
//!   whichever socket it uses.

use crate::matches::{Delivery, MatchError, Matches, Message, Outbox, To, payload};
use crate::matchmaking::Joined;
use crate::model::{PlayerId, QueueEntry, Session, SocketMapping, Status, now_ms};
use crate::store::Store;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::Socket;
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Limits on what one client may send.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// The largest event payload handled; larger ones are refused with `payload_too_large`.
    pub max_event_bytes: usize,
    /// Sustained events per second per socket; more are refused with `rate_limited`.
    pub events_per_second: u32,
    /// Events a socket may send in a burst above the sustained rate.
    pub burst: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_event_bytes: 16 * 1024,
            events_per_second: 20,
            burst: 40,
        }
    }
}

/// The room every socket of a player is in.
pub fn player_room(player: &str) -> String {
    format!("player:{player}")
}

/// Delivers match messages through Socket.IO rooms.
pub struct SocketOutbox {
    io: SocketIo,
}

impl SocketOutbox {
    pub fn new(io: SocketIo) -> Self {
        SocketOutbox { io }
    }
}

impl Outbox for SocketOutbox {
    fn send(&self, messages: Vec<Message>) -> Delivery<'_> {
        Box::pin(async move {
            for message in messages {
                let room = match &message.to {
                    To::Player(player) => player_room(player),
                    To::Room(room) => room.clone(),
                };
                if let Err(error) = self.io.to(room).emit(message.event, &message.payload).await {
                    tracing::warn!(event = message.event, %error, "delivery failed");
                }
            }
        })
    }

    fn join_room<'a>(&'a self, player: &'a str, room: &'a str) -> Delivery<'a> {
        Box::pin(async move {
            if let Err(error) = self.io.to(player_room(player)).join(room.to_string()).await {
                tracing::warn!(player, room, %error, "could not join the room");
            }
        })
    }
}

/// Who a socket speaks for; set by the connect middleware.
#[derive(Clone)]
struct Identity {
    player: PlayerId,
    token: String,
    resumed: bool,
}

/// What a client may present in the handshake `auth` to come back as the same player.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claim {
    player_id: Option<String>,
    resume_token: Option<String>,
}

/// A refusal at connection time; the client gets it as `connect_error` with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// A refusal of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: String,
    pub message: String,
}

impl ClientError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ClientError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl ClientError {
    /// The answer a refused request gets: `{success: false, code, error}`.
    fn answer(&self) -> Value {
        json!({ "success": false, "code": self.code, "error": self.message })
    }
}

impl From<MatchError> for ClientError {
    fn from(error: MatchError) -> Self {
        let message = match &error {
            MatchError::Rejected(rejection) => rejection.reason.clone(),
            other => other.to_string(),
        };
        ClientError {
            code: error.code().to_string(),
            message,
        }
    }
}

/// What the gateway learns about each incoming event before it is parsed: whether the client
/// wants an acknowledgement, and how large the payload is.
pub struct Incoming<A: Adapter> {
    ack: AckSender<A>,
    wants_ack: bool,
    size: usize,
}

impl<A: Adapter> FromMessageParts<A> for Incoming<A> {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        data: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Incoming {
            ack: AckSender::from_message_parts(socket, data, ack_id)?,
            wants_ack: ack_id.is_some(),
            size: data.len(),
        })
    }
}

/// One admitted request.
struct Request {
    event: &'static str,
    player: PlayerId,
    data: Value,
    incoming: Incoming<socketioxide::adapter::LocalAdapter>,
}

impl Request {
    /// Answers with `payload`: as the acknowledgement if one was asked for, else as `event`.
    fn answer<T: Serialize>(self, socket: &SocketRef, event: &str, payload: &T) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        } else {
            let _ = socket.emit(event, payload);
        }
    }

    /// Answers on `event` always, as the original did, and also through the acknowledgement
    /// when one was asked for.
    fn answer_and_emit(self, socket: &SocketRef, event: &str, payload: &Value) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        }
        let _ = socket.emit(event, payload);
    }

    fn refuse(self, socket: &SocketRef, error: ClientError) {
        refuse(socket, self.event, self.incoming, error);
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, hint: &str) -> Result<T, ClientError> {
        T::deserialize(&self.data)
            .map_err(|e| ClientError::new("invalid_payload", format!("{e}; expected {hint}")))
    }
}

fn refuse(
    socket: &SocketRef,
    event: &str,
    incoming: Incoming<socketioxide::adapter::LocalAdapter>,
    error: ClientError,
) {
    if incoming.wants_ack {
        let _ = incoming.ack.send(&error.answer());
    } else {
        let _ = socket.emit(
            "serverError",
            &json!({ "event": event, "code": error.code, "error": error.message }),
        );
    }
}

/// The Socket.IO side of the host.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<GatewayInner>,
}

struct GatewayInner {
    io: SocketIo,
    /// Every socket's rate limit, from `limits`.
    quota: Quota,
    store: Arc<Store>,
    matches: Matches,
    outbox: Arc<dyn Outbox>,
    limits: ClientLimits,
    instance_id: String,
}

impl Gateway {
    pub fn new(
        io: SocketIo,
        store: Arc<Store>,
        matches: Matches,
        outbox: Arc<dyn Outbox>,
        limits: ClientLimits,
        instance_id: String,
    ) -> Self {
        Gateway {
            inner: Arc::new(GatewayInner {
                io,
                quota: Quota::per_second(
                    NonZeroU32::new(limits.events_per_second).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN)),
                store,
                matches,
                outbox,
                limits,
                instance_id,
            }),
        }
    }

    /// The ids of the sockets connected to this instance now.
    pub fn live_sockets(&self) -> std::collections::HashSet<String> {
        self.inner
            .io
            .sockets()
            .iter()
            .map(|socket| socket.id.to_string())
            .collect()
    }

    /// Serves the default namespace.
    pub fn attach(&self) {
        let io = &self.inner.io;
        let on_connect = {
            let gateway = self.clone();
            move |socket: SocketRef| {
                let gateway = gateway.clone();
                async move { gateway.connected(socket).await }
            }
        };
        let identify = {
            let gateway = self.clone();
            move |socket: SocketRef, TryData(auth): TryData<Value>| {
                let gateway = gateway.clone();
                async move { gateway.identify(&socket, auth.unwrap_or(Value::Null)) }
            }
        };
        io.ns("/", on_connect.with(identify));
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn grace(&self) -> Duration {
        self.inner.matches.settings().reconnect_grace
    }

    /// Decides who a new socket is: the player whose valid resume token it presents, or a new
    /// player named after the socket (as the original did).
    fn identify(&self, socket: &SocketRef, auth: Value) -> Result<(), Refused> {
        let claim = match auth {
            Value::Null => Claim {
                player_id: None,
                resume_token: None,
            },
            Value::Object(_) => Claim::deserialize(&auth)
                .map_err(|e| Refused(format!("the handshake auth is not valid: {e}")))?,
            _ => return Err(Refused("the handshake auth must be an object".into())),
        };
        let identity = match (claim.player_id, claim.resume_token) {
            (None, None) => Identity {
                player: socket.id.to_string(),
                token: new_token(),
                resumed: false,
            },
            (Some(player), Some(token)) => {
                let valid = self
                    .store()
                    .session(&player)
                    .is_some_and(|session| session.token_sha256 == sha256_hex(&token));
                if !valid {
                    return Err(Refused(
                        "unknown player or wrong resume token; connect without auth to start as a new player"
                            .into(),
                    ));
                }
                Identity {
                    player,
                    token,
                    resumed: true,
                }
            }
            _ => {
                return Err(Refused(
                    "playerId and resumeToken must be presented together".into(),
                ));
            }
        };
        socket.extensions.insert(identity);
        Ok(())
    }

    async fn connected(&self, socket: SocketRef) {
        let identity: Identity = socket.extensions.get().expect("identify ran first");
        let socket_id = socket.id.to_string();
        let player = identity.player.clone();
        socket.join(player_room(&player));
        socket
            .extensions
            .insert(Arc::new(RateLimiter::direct(self.inner.quota)));

        self.store().put_socket(SocketMapping {
            socket_id: socket_id.clone(),
            instance_id: self.inner.instance_id.clone(),
            room_id: None,
            player_id: player.clone(),
        });
        let session = self
            .store()
            .update_session(&player, |s| {
                s.socket_id = Some(socket_id.clone());
                s.expires_at = None;
            })
            .unwrap_or_else(|| {
                let session = Session {
                    player_id: player.clone(),
                    token_sha256: sha256_hex(&identity.token),
                    socket_id: Some(socket_id.clone()),
                    room_id: None,
                    expires_at: None,
                };
                self.store().put_session(session.clone());
                session
            });

        self.register_handlers(&socket);
        let _ = socket.emit(
            "session",
            &json!({ "playerId": player, "resumeToken": identity.token, "socketId": socket_id }),
        );
        tracing::debug!(socket = %socket_id, player, resumed = identity.resumed, "connected");

        if let Some(room) = session.room_id.filter(|_| identity.resumed) {
            match self
                .inner
                .matches
                .reconnected(&room, &player, &socket_id)
                .await
            {
                Ok(resumed) => {
                    self.store().set_socket_room(&socket_id, Some(room.clone()));
                    socket.join(room.clone());
                    let turn = resumed.game.turn;
                    let ends = resumed.game.round_ends_at;
                    let state = resumed.game.for_player(resumed.view.clone());
                    let _ = socket.emit(
                        "resumed",
                        &json!({ "roomId": room, "turn": turn, "view": resumed.view, "roundEndsAt": ends, "state": state }),
                    );
                }
                Err(error) => tracing::warn!(player, room, %error, "could not resume"),
            }
        }
    }

    async fn disconnected(&self, socket: SocketRef) {
        let Some(identity) = socket.extensions.get::<Identity>() else {
            return;
        };
        let socket_id = socket.id.to_string();
        self.store().remove_socket(&socket_id);
        let expires = now_ms() + self.grace().as_millis() as u64;
        let mut was_current = false;
        let session = self.store().update_session(&identity.player, |s| {
            if s.socket_id.as_deref() == Some(socket_id.as_str()) {
                was_current = true;
                s.socket_id = None;
                s.expires_at = Some(expires);
            }
        });
        // A socket the player has already replaced no longer speaks for it.
        if !was_current {
            return;
        }
        self.store().leave_queue(&identity.player);
        if let Some(room) = session.and_then(|s| s.room_id) {
            self.inner
                .matches
                .disconnected(&room, &identity.player, &socket_id);
        }
        tracing::debug!(socket = %socket_id, player = identity.player, "disconnected");
    }

    fn register_handlers(&self, socket: &SocketRef) {
        self.on(socket, "joinMatchmaking", |g, s, r| async move {
            g.join_matchmaking(s, r).await
        });
        self.on(socket, "leaveMatchmaking", |g, s, r| async move {
            g.leave_matchmaking(s, r)
        });
        self.on(socket, "gameMessage", |g, s, r| async move {
            g.game_message(s, r).await
        });
        self.on(socket, "updatePlayerState", |g, s, r| async move {
            g.update_player_state(s, r).await
        });
        self.on(socket, "getGameState", |g, s, r| async move {
            g.get_game_state(s, r).await
        });
        self.on(socket, "submitAction", |g, s, r| async move {
            g.submit_action(s, r).await
        });
        self.on(socket, "getView", |g, s, r| async move {
            g.get_view(s, r).await
        });

        let gateway = self.clone();
        socket.on_fallback(
            move |socket: SocketRef,
                  incoming: Incoming<_>,
                  socketioxide::extract::Event(event): socketioxide::extract::Event| {
                let gateway = gateway.clone();
                async move {
                    if gateway.admit(&socket, &incoming).is_ok() {
                        refuse(
                            &socket,
                            &event,
                            incoming,
                            ClientError::new(
                                "unknown_event",
                                format!("there is no event called {event:?}"),
                            ),
                        );
                    }
                }
            },
        );
        let gateway = self.clone();
        socket.on_disconnect(move |socket: SocketRef| {
            let gateway = gateway.clone();
            async move { gateway.disconnected(socket).await }
        });
    }

    /// Registers a handler behind the checks every event passes: size, rate, and a payload that
    /// is JSON at all.
    fn on<F, Fut>(&self, socket: &SocketRef, event: &'static str, handler: F)
    where
        F: Fn(Gateway, SocketRef, Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let gateway = self.clone();
        socket.on(
            event,
            move |socket: SocketRef, incoming: Incoming<_>, TryData(data): TryData<Value>| {
                let (gateway, handler) = (gateway.clone(), handler.clone());
                async move {
                    if let Err(error) = gateway.admit(&socket, &incoming) {
                        return refuse(&socket, event, incoming, error);
                    }
                    let Some(identity) = socket.extensions.get::<Identity>() else {
                        return;
                    };
                    let data = match data {
                        Ok(data) => data,
                        Err(e) => {
                            let error = ClientError::new("invalid_payload", e.to_string());
                            return refuse(&socket, event, incoming, error);
                        }
                    };
                    let request = Request {
                        event,
                        player: identity.player,
                        data,
                        incoming,
                    };
                    handler(gateway, socket, request).await
                }
            },
        );
    }

    fn admit(
        &self,
        socket: &SocketRef,
        incoming: &Incoming<socketioxide::adapter::LocalAdapter>,
    ) -> Result<(), ClientError> {
        let limits = &self.inner.limits;
        if incoming.size > limits.max_event_bytes {
            return Err(ClientError::new(
                "payload_too_large",
                format!(
                    "an event may carry at most {} bytes; this one had {}",
                    limits.max_event_bytes, incoming.size
                ),
            ));
        }
        let limiter: Option<Arc<DefaultDirectRateLimiter>> = socket.extensions.get();
        if limiter.is_some_and(|l| l.check().is_err()) {
            return Err(ClientError::new(
                "rate_limited",
                format!(
                    "at most {} events per second (bursts of {}); slow down",
                    limits.events_per_second, limits.burst
                ),
            ));
        }
        Ok(())
    }

    /// The room the player is playing in, if it is in `room`.
    fn check_member(
        &self,
        player: &str,
        room: &str,
    ) -> Result<crate::model::GameState, ClientError> {
        let game = self.store().game(room).ok_or_else(|| {
            ClientError::new("unknown_room", format!("there is no room {room:?}"))
        })?;
        if !game.has_player(player) {
            return Err(ClientError::new(
                "not_in_room",
                "you are not a player in this room",
            ));
        }
        Ok(game)
    }

    async fn join_matchmaking(&self, socket: SocketRef, request: Request) {
        #[derive(Deserialize)]
        struct Join {
            level: i64,
        }
        let level = match request.parse::<Join>("{\"level\": <integer>}") {
            Ok(join) => join.level,
            Err(_) => {
                let error = ClientError::new(
                    "invalid_level",
                    "level must be an integer number, e.g. {\"level\": 2}",
                );
                return request.refuse(&socket, error);
            }
        };
        let player = request.player.clone();
        let playing = self
            .store()
            .session(&player)
            .and_then(|s| s.room_id)
            .and_then(|room| self.store().game(&room))
            .filter(|game| game.status != Status::Finished);
        if let Some(game) = playing {
            let error = ClientError::new(
                "already_in_match",
                format!("you are playing in room {}", game.room_id),
            );
            return request.refuse(&socket, error);
        }
        let me = QueueEntry {
            id: player.clone(),
            level,
        };
        let opponent = match self.store().join_queue(me.clone()) {
            Joined::Waiting => None,
            Joined::Paired { opponent } => {
                let socket_id = self.store().session(&opponent.id).and_then(|s| s.socket_id);
                match socket_id {
                    Some(socket_id) => Some((opponent, socket_id)),
                    None => {
                        // The opponent left between queueing and now: wait for another one.
                        self.store().join_queue(me.clone());
                        None
                    }
                }
            }
        };
        let Some(opponent) = opponent else {
            let _ = socket.emit("waiting", &json!({ "message": "Waiting for a match..." }));
            return request.answer(&socket, "joinMatchmaking", &Value::Null);
        };
        let pair = [opponent, (me, socket.id.to_string())];
        match self.inner.matches.start(pair).await {
            Ok(game) => request.answer(&socket, "joinMatchmaking", &game.room_id),
            Err(error) => {
                tracing::error!(%error, "could not start a match");
                request.refuse(&socket, error.into())
            }
        }
    }

    fn leave_matchmaking(&self, socket: SocketRef, request: Request) {
        let left = self.store().leave_queue(&request.player);
        request.answer(
            &socket,
            "matchmakingLeft",
            &json!({ "success": true, "left": left }),
        );
    }

    async fn game_message(&self, socket: SocketRef, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct GameMessage {
            room_id: String,
            #[serde(default)]
            message: Value,
        }
        let message =
            match request.parse::<GameMessage>("{\"roomId\": <string>, \"message\": <any>}") {
                Ok(message) => message,
                Err(error) => return request.refuse(&socket, error),
            };
        if let Err(error) = self.check_member(&request.player, &message.room_id) {
            return request.refuse(&socket, error);
        }
        let body = payload(&json!({
            "roomId": message.room_id,
            "sender": request.player,
            "message": message.message,
        }));
        self.inner
            .outbox
            .send(vec![Message::new(
                To::Room(message.room_id),
                "gameMessage",
                body,
            )])
            .await;
        if request.incoming.wants_ack {
            let _ = request.incoming.ack.send(&json!({ "success": true }));
        }
    }

    async fn update_player_state(&self, socket: SocketRef, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Update {
            room_id: String,
            player_id: String,
            #[serde(default)]
            state: Value,
        }
        let update = match request.parse::<Update>("{\"roomId\", \"playerId\", \"state\"}") {
            Ok(update) => update,
            Err(error) => return request.refuse(&socket, error),
        };
        let result = if update.player_id != request.player {
            Err(ClientError::new(
                "not_your_player",
                "a socket may only update its own player's state",
            ))
        } else {
            self.inner
                .matches
                .set_player_state(&update.room_id, &request.player, update.state)
                .await
                .map_err(ClientError::from)
        };
        let answer = match result {
            Ok(()) => json!({ "success": true }),
            Err(error) => error.answer(),
        };
        request.answer_and_emit(&socket, "playerStateUpdated", &answer);
    }

    async fn get_game_state(&self, socket: SocketRef, request: Request) {
        let get = match request.parse::<RoomRequest>(RoomRequest::SHAPE) {
            Ok(get) => get,
            Err(error) => return request.refuse(&socket, error),
        };
        let result = match self.check_member(&request.player, &get.room_id) {
            Ok(_) => self
                .inner
                .matches
                .view(&get.room_id, &request.player)
                .await
                .map_err(ClientError::from),
            Err(error) => Err(error),
        };
        // As the original: `state: null` and an `error` on failure.
        let answer = match result {
            Ok((game, view)) => json!({ "roomId": get.room_id, "state": game.for_player(view) }),
            Err(error) => {
                json!({ "roomId": get.room_id, "state": null, "code": error.code, "error": error.message })
            }
        };
        request.answer_and_emit(&socket, "gameState", &answer);
    }

    async fn submit_action(&self, socket: SocketRef, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Submit {
            room_id: String,
            action: Value,
        }
        let submit = match request
            .parse::<Submit>("{\"roomId\": <string>, \"action\": <the game's action>}")
        {
            Ok(submit) => submit,
            Err(error) => return request.refuse(&socket, error),
        };
        let action = payload(&submit.action);
        match self
            .inner
            .matches
            .act(&submit.room_id, &request.player, action)
            .await
        {
            Ok(turn) => request.answer(
                &socket,
                "actionResult",
                &json!({ "success": true, "turn": turn }),
            ),
            Err(error) => request.refuse(&socket, error.into()),
        }
    }

    async fn get_view(&self, socket: SocketRef, request: Request) {
        let get = match request.parse::<RoomRequest>(RoomRequest::SHAPE) {
            Ok(get) => get,
            Err(error) => return request.refuse(&socket, error),
        };
        match self.inner.matches.view(&get.room_id, &request.player).await {
            Ok((game, view)) => {
                let body = json!({ "roomId": get.room_id, "turn": game.turn, "view": view, "roundEndsAt": game.round_ends_at });
                request.answer(&socket, "view", &body)
            }
            Err(error) => request.refuse(&socket, error.into()),
        }
    }
}

/// A request about one room: `{roomId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomRequest {
    room_id: String,
}

impl RoomRequest {
    const SHAPE: &str = "{\"roomId\": <string>}";
}

/// A fresh resume token: 256 random bits, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
