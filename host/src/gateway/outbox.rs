//! Match messages to players, through Socket.IO rooms: every socket is in its player's room.

use super::{Io, player_room};
use crate::matches::{Delivery, Message, Outbox, To};

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
