//! How every event is handled before its own code runs: admitted (size, rate), its socket set up,
//! its payload parsed; and how it is answered or refused.

use super::identity::state_of;
use super::{Gateway, HostAdapter, Sock};
use crate::matches::MatchError;
use crate::model::PlayerId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use std::convert::Infallible;
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

/// The events a client may send.
pub const EVENTS: [&str; 7] = [
    "joinMatchmaking",
    "leaveMatchmaking",
    "gameMessage",
    "updatePlayerState",
    "getGameState",
    "submitAction",
    "getView",
];

impl Gateway {
    /// One handler for every event, which dispatches on its name: a handler registered per
    /// event would cost each socket a boxed closure and a map entry apiece (about 1 KiB per idle
    /// socket for the seven).
    pub(super) fn register_handlers(&self, socket: &Sock) {
        let gateway = self.clone();
        socket.on_fallback(
            move |socket: Sock,
                  incoming: Incoming<_>,
                  socketioxide::extract::Event(event): socketioxide::extract::Event,
                  TryData(data): TryData<Value>| {
                let gateway = gateway.clone();
                async move { gateway.dispatch(socket, &event, incoming, data.ok()).await }
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

    /// Every event passes the same checks (size, rate, a payload that is JSON at all), then goes
    /// to its handler.
    async fn dispatch(
        self,
        socket: Sock,
        event: &str,
        incoming: Incoming<HostAdapter>,
        data: Option<Value>,
    ) {
        if let Err(error) = self.admit(&socket, &incoming) {
            return refuse(&socket, event, incoming, error);
        }
        let Some(event) = EVENTS.iter().copied().find(|known| *known == event) else {
            let error = ClientError::new(
                "unknown_event",
                format!("there is no event called {event:?}"),
            );
            return refuse(&socket, event, incoming, error);
        };
        let Some(state) = state_of(&socket) else {
            return;
        };
        state.life.set_up().await;
        // Any JSON is a `Value`: what fails is an event without an argument, as
        // `leaveMatchmaking` is sent. Each event says what it expects of `null`.
        let request = Request {
            event,
            player: state.identity.player.clone(),
            data: data.unwrap_or(Value::Null),
            incoming,
        };
        match event {
            "joinMatchmaking" => self.join_matchmaking(socket, request).await,
            "leaveMatchmaking" => self.leave_matchmaking(socket, request).await,
            "gameMessage" => self.game_message(socket, request).await,
            "updatePlayerState" => self.update_player_state(socket, request).await,
            "getGameState" => self.get_game_state(socket, request).await,
            "submitAction" => self.submit_action(socket, request).await,
            "getView" => self.get_view(socket, request).await,
            _ => unreachable!("every name in EVENTS has its handler"),
        }
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
        if state_of(socket).is_some_and(|state| state.limiter.check().is_err()) {
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
