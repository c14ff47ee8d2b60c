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
use crate::redis_store::pubsub::Bus;
use crate::store::Store;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{AckSender, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::Socket;
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

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

/// socketioxide's Redis adapter over our [`Bus`]; with no Redis the bus delivers locally only,
/// so a lone instance and a fleet run the same code.
pub type HostAdapter = socketioxide_redis::CustomRedisAdapter<Emitter, Bus>;
pub type Io = SocketIo<HostAdapter>;
type Sock = socketioxide::extract::SocketRef<HostAdapter>;

/// The room every socket of a player is in.
pub fn player_room(player: &str) -> String {
    format!("player:{player}")
}

/// Delivers match messages through Socket.IO rooms.
pub struct SocketOutbox {
    io: Io,
}

impl SocketOutbox {
    pub fn new(io: Io) -> Self {
        SocketOutbox { io }
    }
}

impl SocketOutbox {
    async fn deliver(&self, messages: Vec<Message>, here_only: bool) {
        for message in messages {
            let rooms: Vec<String> = match &message.to {
                To::Player(player) => vec![player_room(player)],
                To::Players(players) => players.iter().map(|p| player_room(p)).collect(),
            };
            // After shutdown closed the namespace there is nobody left to tell.
            let Some(namespace) = self.io.of("/") else {
                return;
            };
            let namespace = if here_only {
                namespace.local()
            } else {
                namespace
            };
            let event = message.event.as_ref();
            if let Err(error) = namespace.to(rooms).emit(event, &message.payload).await {
                tracing::warn!(event, %error, "delivery failed");
            }
        }
    }
}

impl Outbox for SocketOutbox {
    fn deliver_here(&self, messages: Vec<Message>) -> Delivery<'_> {
        Box::pin(self.deliver(messages, true))
    }

    fn broadcast(&self, messages: Vec<Message>) -> Delivery<'_> {
        Box::pin(self.deliver(messages, false))
    }
}

/// Who a socket speaks for; set by the connect middleware.
#[derive(Clone)]
struct Identity {
    player: PlayerId,
    token: String,
    resumed: bool,
}

/// Where a socket is in its life. Its handlers are registered before it is connected (so that
/// nothing it sends, and no disconnection, can come before them), but its mapping and session are
/// stored once it is: events and the disconnection wait for that, so that a socket that closes
/// at any moment leaves nothing behind.
#[derive(Default)]
struct SocketLife {
    set_up: AtomicBool,
    set_up_now: Notify,
    /// Its departure was handled (it closed, or shutdown let it go): each socket goes once.
    gone: AtomicBool,
}

impl SocketLife {
    fn mark_set_up(&self) {
        self.set_up.store(true, Ordering::SeqCst);
        self.set_up_now.notify_waiters();
    }

    /// Waits until the socket's mapping and session are stored.
    async fn set_up(&self) {
        if self.set_up.load(Ordering::SeqCst) {
            return;
        }
        loop {
            let notified = self.set_up_now.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.set_up.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// How long a closing socket waits for its own set-up. A socket whose connection failed before
/// it was connected is never set up, and has nothing stored either.
const SET_UP_WAIT: Duration = Duration::from_secs(10);

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
    incoming: Incoming<HostAdapter>,
}

impl Request {
    /// Answers with `payload`: as the acknowledgement if one was asked for, else as `event`.
    fn answer<T: Serialize>(self, socket: &Sock, event: &str, payload: &T) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        } else {
            let _ = socket.emit(event, payload);
        }
    }

    /// Answers on `event` always, as the original did, and also through the acknowledgement
    /// when one was asked for.
    fn answer_and_emit(self, socket: &Sock, event: &str, payload: &Value) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        }
        let _ = socket.emit(event, payload);
    }

    fn refuse(self, socket: &Sock, error: ClientError) {
        refuse(socket, self.event, self.incoming, error);
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, hint: &str) -> Result<T, ClientError> {
        T::deserialize(&self.data)
            .map_err(|e| ClientError::new("invalid_payload", format!("{e}; expected {hint}")))
    }
}

fn refuse(socket: &Sock, event: &str, incoming: Incoming<HostAdapter>, error: ClientError) {
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
    io: Io,
    /// Every socket's rate limit, from `limits`.
    quota: Quota,
    store: Arc<Store>,
    matches: Matches,
    outbox: Arc<dyn Outbox>,
    limits: ClientLimits,
    instance_id: String,
    /// Set at shutdown: new sockets are refused.
    draining: AtomicBool,
}

impl Gateway {
    pub fn new(
        io: Io,
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
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// The ids of the sockets connected to this instance now.
    pub fn live_sockets(&self) -> std::collections::HashSet<String> {
        self.local_sockets()
            .iter()
            .map(|socket| socket.id.to_string())
            .collect()
    }

    /// The sockets connected to this instance (none once shutdown closed the namespace).
    fn local_sockets(&self) -> Vec<Sock> {
        self.inner
            .io
            .of("/")
            .map(|namespace| namespace.sockets())
            .unwrap_or_default()
    }

    /// Serves the default namespace. With Redis, this subscribes to the adapter's channels.
    pub async fn attach(&self) -> Result<(), String> {
        let io = &self.inner.io;
        let on_connect = {
            let gateway = self.clone();
            move |socket: Sock| {
                let gateway = gateway.clone();
                async move { gateway.connected(socket).await }
            }
        };
        let identify = {
            let gateway = self.clone();
            move |socket: Sock, TryData(auth): TryData<Value>| {
                let gateway = gateway.clone();
                async move { gateway.identify(&socket, auth.unwrap_or(Value::Null)).await }
            }
        };
        io.ns("/", on_connect.with(identify))
            .await
            .map_err(|e| e.to_string())
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn grace(&self) -> Duration {
        self.inner.matches.settings().reconnect_grace
    }

    /// Decides who a new socket is: the player whose valid resume token it presents, or a new
    /// player named after the socket (as the original did).
    async fn identify(&self, socket: &Sock, auth: Value) -> Result<(), Refused> {
        if self.inner.draining.load(Ordering::Relaxed) {
            return Err(Refused(
                "this instance is shutting down; connect to another one".into(),
            ));
        }
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
                let session = self.store().session(&player).await.map_err(|e| {
                    Refused(format!(
                        "cannot check the resume token now ({e}); try again"
                    ))
                })?;
                let valid = session.is_some_and(|s| s.token_sha256 == sha256_hex(&token));
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
        socket
            .extensions
            .insert(Arc::new(RateLimiter::direct(self.inner.quota)));
        socket.extensions.insert(Arc::new(SocketLife::default()));
        // Before the socket is connected: whatever it sends, and its disconnection, find them.
        self.register_handlers(socket);
        Ok(())
    }

    /// Whether the socket `sid` is connected to `namespace` here.
    pub fn is_connected(&self, namespace: &str, sid: &str) -> bool {
        let Ok(sid) = sid.parse() else {
            return false;
        };
        self.inner
            .io
            .of(namespace)
            .is_some_and(|namespace| namespace.get_socket(sid).is_some())
    }

    fn mapping(&self, socket: &str, player: &str, room: Option<String>) -> SocketMapping {
        SocketMapping {
            socket_id: socket.to_string(),
            instance_id: self.inner.instance_id.clone(),
            room_id: room,
            player_id: player.to_string(),
        }
    }

    async fn connected(&self, socket: Sock) {
        let life: Arc<SocketLife> = socket.extensions.get().expect("identify ran first");
        self.set_up(&socket).await;
        life.mark_set_up();
        // It may have closed before its disconnection could be handled (see `SocketLife`).
        if !socket.connected() {
            self.disconnected(socket).await;
        }
    }

    /// Stores a new socket's mapping and session, tells it who it is, and resumes its match.
    async fn set_up(&self, socket: &Sock) {
        let identity: Identity = socket.extensions.get().expect("identify ran first");
        let socket_id = socket.id.to_string();
        let player = identity.player.clone();
        socket.join(player_room(&player));

        if let Err(error) = self
            .store()
            .put_socket(&self.mapping(&socket_id, &player, None))
            .await
        {
            tracing::warn!(socket = %socket_id, %error, "socket mapping not stored");
        }
        let fresh = Session {
            player_id: player.clone(),
            token_sha256: sha256_hex(&identity.token),
            socket_id: Some(socket_id.clone()),
            instance_id: Some(self.inner.instance_id.clone()),
            room_id: None,
            expires_at: None,
        };
        let session = match self.store().claim_session(&fresh, &socket_id).await {
            Ok(session) => session,
            Err(error) => {
                // Playing on is possible; resuming this identity later may not be.
                tracing::warn!(player, %error, "session not stored");
                fresh
            }
        };

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
                    let _ = self.store().set_socket_room(&socket_id, Some(&room)).await;
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

    async fn disconnected(&self, socket: Sock) {
        let Some(identity) = socket.extensions.get::<Identity>() else {
            return;
        };
        let Some(life) = socket.extensions.get::<Arc<SocketLife>>() else {
            return;
        };
        // What it stored is removed only after it was stored.
        if tokio::time::timeout(SET_UP_WAIT, life.set_up())
            .await
            .is_err()
        {
            tracing::debug!(socket = %socket.id, "closed before it was set up");
        }
        // Shutdown lets sockets go itself before closing them; each goes once.
        if life.gone.swap(true, Ordering::SeqCst) {
            return;
        }
        let socket_id = socket.id.to_string();
        let instance = self.inner.instance_id.clone();
        self.socket_gone(&socket_id, &identity.player, &instance)
            .await;
    }

    /// A socket of `player` held by `instance` is gone (closed, or its instance died): forget
    /// its mapping and, if it was the player's current socket, take the player out of the queue
    /// and start its reconnection grace in its match.
    pub async fn socket_gone(&self, socket_id: &str, player: &str, instance: &str) {
        if let Err(error) = self.store().remove_socket(socket_id, instance).await {
            tracing::warn!(socket = socket_id, %error, "socket mapping not removed");
        }
        let expires = now_ms() + self.grace().as_millis() as u64;
        let session = match self
            .store()
            .release_session(player, socket_id, expires)
            .await
        {
            Ok(Some(session)) => session,
            // A socket the player has already replaced no longer speaks for it.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(player, %error, "session not released");
                return;
            }
        };
        if let Err(error) = self.store().leave_queue(player).await {
            tracing::warn!(player, %error, "queue entry not removed");
        }
        if let Some(room) = session.room_id {
            self.inner
                .matches
                .disconnected(&room, player, socket_id)
                .await;
        }
        tracing::debug!(socket = socket_id, player, "disconnected");
    }

    /// Lets every socket of this instance go as if it had closed (mappings, queue entries,
    /// grace in its match), so its players can resume elsewhere; then stops taking new ones.
    pub async fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        let sockets = self.local_sockets();
        let mut pending = Vec::new();
        for socket in sockets {
            let gateway = self.clone();
            pending.push(tokio::spawn(
                async move { gateway.disconnected(socket).await },
            ));
        }
        for task in pending {
            let _ = task.await;
        }
    }

    /// Puts this instance's socket mappings and sessions back into the store, e.g. after Redis
    /// came back without them.
    pub async fn write_back(&self) {
        for socket in self.local_sockets() {
            let Some(identity) = socket.extensions.get::<Identity>() else {
                continue;
            };
            let socket_id = socket.id.to_string();
            let room = self.inner.matches.local_room_of(&identity.player);
            let mapping = self.mapping(&socket_id, &identity.player, room.clone());
            let fresh = Session {
                player_id: identity.player.clone(),
                token_sha256: sha256_hex(&identity.token),
                socket_id: Some(socket_id.clone()),
                instance_id: Some(self.inner.instance_id.clone()),
                room_id: room,
                expires_at: None,
            };
            let stored = async {
                self.store().put_socket(&mapping).await?;
                self.store().claim_session(&fresh, &socket_id).await
            };
            if let Err(error) = stored.await {
                tracing::warn!(socket = socket_id, %error, "write-back of a socket failed");
                return;
            }
        }
    }

    /// Whether the instance still takes players.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    fn register_handlers(&self, socket: &Sock) {
        self.on(socket, "joinMatchmaking", |g, s, r| async move {
            g.join_matchmaking(s, r).await
        });
        self.on(socket, "leaveMatchmaking", |g, s, r| async move {
            g.leave_matchmaking(s, r).await
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
            move |socket: Sock,
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
        socket.on_disconnect(move |socket: Sock| {
            let gateway = gateway.clone();
            async move { gateway.disconnected(socket).await }
        });
    }

    /// Registers a handler behind the checks every event passes: size, rate, and a payload that
    /// is JSON at all.
    fn on<F, Fut>(&self, socket: &Sock, event: &'static str, handler: F)
    where
        F: Fn(Gateway, Sock, Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let gateway = self.clone();
        socket.on(
            event,
            move |socket: Sock, incoming: Incoming<_>, TryData(data): TryData<Value>| {
                let (gateway, handler) = (gateway.clone(), handler.clone());
                async move {
                    if let Err(error) = gateway.admit(&socket, &incoming) {
                        return refuse(&socket, event, incoming, error);
                    }
                    let Some(identity) = socket.extensions.get::<Identity>() else {
                        return;
                    };
                    if let Some(life) = socket.extensions.get::<Arc<SocketLife>>() {
                        life.set_up().await;
                    }
                    // Any JSON is a `Value`: what fails is an event without an argument, as
                    // `leaveMatchmaking` is sent. Each event says what it expects of `null`.
                    let data = data.unwrap_or(Value::Null);
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

    fn admit(&self, socket: &Sock, incoming: &Incoming<HostAdapter>) -> Result<(), ClientError> {
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

    /// Checks that `player` plays in `room`; returns the room's players.
    async fn check_member(&self, player: &str, room: &str) -> Result<Vec<PlayerId>, ClientError> {
        let members = self
            .inner
            .matches
            .members(room)
            .await
            .map_err(|error| match error {
                MatchError::NoSuchRoom => {
                    ClientError::new("unknown_room", format!("there is no room {room:?}"))
                }
                other => ClientError::from(other),
            })?;
        if !members.iter().any(|p| p == player) {
            return Err(ClientError::new(
                "not_in_room",
                "you are not a player in this room",
            ));
        }
        Ok(members)
    }

    async fn join_matchmaking(&self, socket: Sock, request: Request) {
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
        match self.playing(&player).await {
            Ok(None) => {}
            Ok(Some(room)) => {
                let error = ClientError::new(
                    "already_in_match",
                    format!("you are playing in room {room}"),
                );
                return request.refuse(&socket, error);
            }
            Err(error) => return request.refuse(&socket, error),
        }
        let me = QueueEntry {
            id: player.clone(),
            level,
        };
        let instance = self.inner.instance_id.clone();
        let opponent = loop {
            let joined = match self.store().join_queue(&me, &instance).await {
                Ok(joined) => joined,
                Err(error) => return request.refuse(&socket, unavailable(error)),
            };
            let Joined::Paired { opponent } = joined else {
                break None;
            };
            match self.store().session(&opponent.id).await {
                Ok(Some(Session {
                    socket_id: Some(socket_id),
                    instance_id: Some(instance_id),
                    ..
                })) => break Some((opponent, socket_id, instance_id)),
                // The opponent left between queueing and now: look again.
                Ok(_) => continue,
                Err(error) => return request.refuse(&socket, unavailable(error)),
            }
        };
        let Some(opponent) = opponent else {
            let _ = socket.emit("waiting", &json!({ "message": "Waiting for a match..." }));
            return request.answer(&socket, "joinMatchmaking", &Value::Null);
        };
        let pair = [opponent, (me, socket.id.to_string(), instance)];
        match self.inner.matches.start(pair).await {
            Ok(game) => {
                socket.join(game.room_id.clone());
                request.answer(&socket, "joinMatchmaking", &game.room_id)
            }
            Err(error) => {
                tracing::error!(%error, "could not start a match");
                request.refuse(&socket, error.into())
            }
        }
    }

    /// The room of the match `player` plays now, if any.
    async fn playing(&self, player: &str) -> Result<Option<String>, ClientError> {
        let session = self.store().session(player).await.map_err(unavailable)?;
        let Some(room) = session.and_then(|s| s.room_id) else {
            return Ok(None);
        };
        let game = self.store().game(&room).await.map_err(unavailable)?;
        Ok(game
            .filter(|game| game.status != Status::Finished)
            .map(|game| game.room_id))
    }

    async fn leave_matchmaking(&self, socket: Sock, request: Request) {
        match self.store().leave_queue(&request.player).await {
            Ok(left) => request.answer(
                &socket,
                "matchmakingLeft",
                &json!({ "success": true, "left": left }),
            ),
            Err(error) => request.refuse(&socket, unavailable(error)),
        }
    }

    async fn game_message(&self, socket: Sock, request: Request) {
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
        let members = match self.check_member(&request.player, &message.room_id).await {
            Ok(members) => members,
            Err(error) => return request.refuse(&socket, error),
        };
        let body = payload(&json!({
            "roomId": message.room_id,
            "sender": request.player,
            "message": message.message,
        }));
        self.inner
            .outbox
            .broadcast(vec![Message::new(
                To::Players(members),
                "gameMessage",
                body,
            )])
            .await;
        if request.incoming.wants_ack {
            let _ = request.incoming.ack.send(&json!({ "success": true }));
        }
    }

    async fn update_player_state(&self, socket: Sock, request: Request) {
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

    async fn get_game_state(&self, socket: Sock, request: Request) {
        let get = match request.parse::<RoomRequest>(RoomRequest::SHAPE) {
            Ok(get) => get,
            Err(error) => return request.refuse(&socket, error),
        };
        let result = match self.check_member(&request.player, &get.room_id).await {
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

    async fn submit_action(&self, socket: Sock, request: Request) {
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

    async fn get_view(&self, socket: Sock, request: Request) {
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

fn unavailable(error: crate::store::StoreError) -> ClientError {
    tracing::warn!(%error, "store request failed");
    ClientError::new(
        "unavailable",
        "the game store is unreachable; try again shortly",
    )
}

/// A fresh resume token: 256 random bits, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
