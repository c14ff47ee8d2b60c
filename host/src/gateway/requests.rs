//! How every event is handled before its own code runs: admitted (size, rate), its socket set up,
//! its payload parsed; and how it is answered or refused.

use super::identity::{Identity, SocketLife};
use super::{Gateway, HostAdapter, Sock};
use crate::matches::MatchError;
use crate::model::PlayerId;
use governor::DefaultDirectRateLimiter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

/// A refusal of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: String,
    pub message: String,
}

impl ClientError {
    pub(super) fn new(code: &str, message: impl Into<String>) -> Self {
        ClientError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl ClientError {
    /// The answer a refused request gets: `{success: false, code, error}`.
    pub(super) fn answer(&self) -> Value {
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
    pub(super) ack: AckSender<A>,
    pub(super) wants_ack: bool,
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
pub(super) struct Request {
    pub(super) event: &'static str,
    pub(super) player: PlayerId,
    pub(super) data: Value,
    pub(super) incoming: Incoming<HostAdapter>,
}

impl Request {
    /// Answers with `payload`: as the acknowledgement if one was asked for, else as `event`.
    pub(super) fn answer<T: Serialize>(self, socket: &Sock, event: &str, payload: &T) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        } else {
            let _ = socket.emit(event, payload);
        }
    }

    /// Answers on `event` always, as the original did, and also through the acknowledgement
    /// when one was asked for.
    pub(super) fn answer_and_emit(self, socket: &Sock, event: &str, payload: &Value) {
        if self.incoming.wants_ack {
            let _ = self.incoming.ack.send(payload);
        }
        let _ = socket.emit(event, payload);
    }

    pub(super) fn refuse(self, socket: &Sock, error: ClientError) {
        refuse(socket, self.event, self.incoming, error);
    }

    pub(super) fn parse<T: for<'de> Deserialize<'de>>(&self, hint: &str) -> Result<T, ClientError> {
        // The decoder's wording (Rust types, serde's phrases) is not for players: the shape is.
        T::deserialize(&self.data).map_err(|error| {
            tracing::debug!(%error, "a payload did not decode");
            ClientError::new("invalid_payload", format!("this event takes {hint}"))
        })
    }
}

pub(super) fn refuse(
    socket: &Sock,
    event: &str,
    incoming: Incoming<HostAdapter>,
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

impl Gateway {
    pub(super) fn register_handlers(&self, socket: &Sock) {
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
        socket.on_disconnect(
            move |socket: Sock, reason: socketioxide::socket::DisconnectReason| {
                let gateway = gateway.clone();
                async move {
                    gateway.admin_socket_gone(&socket, reason);
                    gateway.disconnected(socket).await
                }
            },
        );
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
}

/// A request about one room: `{roomId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RoomRequest {
    pub(super) room_id: String,
}

impl RoomRequest {
    pub(super) const SHAPE: &str = "{\"roomId\": <string>}";
}
