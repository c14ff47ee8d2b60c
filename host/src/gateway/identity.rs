//! Who a socket is, and its life from connect to departure: a new player named after its
//! socket, or a known one resumed by its token; its mapping and session stored once it is
//! connected and removed when it goes, whenever that is; shutdown and write-back.

use super::{Gateway, Sock, player_room};
use crate::cluster::feeds::From;
use crate::matches::MatchError;
use crate::model::{PlayerId, Session, SocketMapping, now_ms};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Who a socket speaks for; set by the connect middleware.
#[derive(Clone)]
pub(super) struct Identity {
    pub(super) player: PlayerId,
    token: String,
    resumed: bool,
}

/// What the host keeps of each socket, in one allocation (socketioxide boxes each extension).
pub(super) struct SocketState {
    pub(super) identity: Identity,
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) life: SocketLife,
}

/// The socket's state, once its connect middleware identified it.
pub(super) fn state_of(socket: &Sock) -> Option<Arc<SocketState>> {
    socket.extensions.get::<Arc<SocketState>>()
}

/// Where a socket is in its life. Its handlers are registered before it is connected (so that
/// nothing it sends, and no disconnection, can come before them), but its mapping and session are
/// stored once it is: events and the disconnection wait for that, so that a socket that closes
/// at any moment leaves nothing behind.
#[derive(Default)]
pub(super) struct SocketLife {
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
    pub(super) async fn set_up(&self) {
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
/// How long a resume is tried again while the store fails (see `Gateway::resume`).
const RESUME_PATIENCE: Duration = Duration::from_secs(8);

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

impl Gateway {
    /// Decides who a new socket is: the player whose valid resume token it presents, or a new
    /// player named after the socket (as the original did).
    pub(super) async fn identify(&self, socket: &Sock, auth: Value) -> Result<(), Refused> {
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
        socket.extensions.insert(Arc::new(SocketState {
            identity,
            limiter: RateLimiter::direct(self.inner.quota),
            life: SocketLife::default(),
        }));
        // Before the socket is connected: whatever it sends, and its disconnection, find them.
        self.register_handlers(socket);
        Ok(())
    }

    /// Whether the socket `sid` is connected to `namespace` here.
    pub fn is_connected(&self, namespace: &str, sid: &str) -> bool {
        self.socket_in(namespace, sid).is_some()
    }

    /// The socket `sid` of `namespace`, if it is connected here.
    pub(super) fn socket_in(&self, namespace: &str, sid: &str) -> Option<Sock> {
        let sid = sid.parse().ok()?;
        self.inner.io.of(namespace)?.get_socket(sid)
    }

    fn mapping(&self, socket: &str, player: &str, room: Option<String>) -> SocketMapping {
        SocketMapping {
            socket_id: socket.to_string(),
            instance_id: self.inner.instance_id.clone(),
            room_id: room,
            player_id: player.to_string(),
        }
    }

    pub(super) async fn connected(&self, socket: Sock) {
        let state = state_of(&socket).expect("identify ran first");
        self.set_up(&socket).await;
        state.life.mark_set_up();
        self.admin_socket_connected(&socket);
        // It may have closed before its disconnection could be handled (see `SocketLife`).
        if !socket.connected() {
            self.disconnected(socket).await;
        }
    }

    /// Stores a new socket's mapping and session, tells it who it is, and resumes its match.
    async fn set_up(&self, socket: &Sock) {
        let state = state_of(socket).expect("identify ran first");
        let identity = &state.identity;
        let socket_id = socket.id.to_string();
        let player = identity.player.clone();
        // A socket resuming a match joins its player's room only once the room's feed knows
        // where its `resumed` will start (below): joined sooner, it could be handed versions
        // its player already heard on the connection before (found by the chaos run).
        if !identity.resumed {
            socket.join(player_room(&player));
        }
        // The Admin UI names a socket by a room of its id.
        socket.join(socket_id.clone());

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

        let Some(room) = session.room_id.filter(|_| identity.resumed) else {
            if identity.resumed {
                socket.join(player_room(&player));
            }
            return;
        };
        self.resume(socket, &player, &room).await;
    }

    /// Brings a resuming socket back into its match. The shared store may fail on the way (on
    /// a cluster, the room's node may be down while the fleet's answered for the session): it
    /// is tried again until it works, the socket goes, or [`RESUME_PATIENCE`] has passed; then
    /// the socket is disconnected, so that its client connects and resumes again later rather
    /// than stay connected with no `resumed` (found by the chaos run on a cluster).
    async fn resume(&self, socket: &Sock, player: &str, room: &str) {
        let socket_id = socket.id.to_string();
        let deadline = tokio::time::Instant::now() + RESUME_PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.try_resume(socket, player, room).await {
                Ok(()) => return,
                Err(error) if error.is_transient() && socket.connected() => {
                    if tokio::time::Instant::now() + pause > deadline {
                        tracing::warn!(player, room, %error, "could not resume: disconnecting");
                        let _ = socket.clone().disconnect();
                        return;
                    }
                    tracing::debug!(player, room, %error, "resume failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    tracing::warn!(player, room, socket = socket_id, %error, "could not resume");
                    return;
                }
            }
        }
    }

    async fn try_resume(&self, socket: &Sock, player: &str, room: &str) -> Result<(), MatchError> {
        let socket_id = socket.id.to_string();
        // Heard from now on, before the match is told: its next message reaches us. What the
        // feed holds up to the stored version, the `resumed` snapshot brings.
        let feeds = self.inner.outbox.feeds();
        if !feeds.follow(room, &socket_id, From::Now).await {
            return Err(MatchError::Unavailable);
        }
        socket.join(player_room(player));
        let finished = self
            .inner
            .matches
            .reconnected(room, player, &socket_id)
            .await?;
        let this = (socket_id.clone(), self.inner.instance_id.clone());
        crate::store::note_socket_rooms(&self.inner.store, vec![this], room);
        self.join_room(socket, room.to_string());
        if let Some(resumed) = finished {
            let _ = socket.emit(resumed.event.as_ref(), &resumed.payload);
        }
        Ok(())
    }

    pub(super) async fn disconnected(&self, socket: Sock) {
        let Some(state) = state_of(&socket) else {
            return;
        };
        let (identity, life) = (&state.identity, &state.life);
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
        self.inner.outbox.feeds().unfollow(&socket_id);
        self.inner.outbox.waiting().stops(&socket_id);
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

    /// Puts this instance's socket mappings and sessions back into the store: after an outage
    /// (Redis may have come back without them), or after another instance took this one for
    /// dead and let its sockets go. A player another instance reaped is handed back to its
    /// match, before its grace runs out; a player that has meanwhile connected elsewhere keeps
    /// its session there; a player that waited for a match waits in its queue again.
    pub async fn write_back(&self) {
        for socket in self.local_sockets() {
            let Some(state) = state_of(&socket) else {
                continue;
            };
            let identity = &state.identity;
            let socket_id = socket.id.to_string();
            let before = match self.store().session(&identity.player).await {
                Ok(before) => before,
                Err(error) => {
                    tracing::warn!(socket = socket_id, %error, "write-back of a socket failed");
                    return;
                }
            };
            let holder = before.as_ref().and_then(|s| s.socket_id.as_deref());
            if holder.is_some_and(|holder| holder != socket_id) {
                tracing::debug!(
                    socket = socket_id,
                    "the player has moved on: not written back"
                );
                self.inner.outbox.waiting().stops(&socket_id);
                continue;
            }
            let released = before.is_some() && holder.is_none();
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
            let session = match stored.await {
                Ok(session) => session,
                Err(error) => {
                    tracing::warn!(socket = socket_id, %error, "write-back of a socket failed");
                    return;
                }
            };
            if let Some(room) = session.room_id.filter(|_| released) {
                let back = self
                    .inner
                    .matches
                    .reconnected(&room, &identity.player, &socket_id)
                    .await;
                if let Err(error) = back {
                    tracing::warn!(socket = socket_id, room, %error, "could not hand a player back to its match");
                }
            }
        }
        self.requeue_waiting().await;
    }
}

/// A fresh resume token: 256 random bits, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
