//! Match messages to players, through Socket.IO rooms on this instance (every socket is in its
//! player's room), and through the room feeds to the other instances that hold a room's players.

use super::waiting::Waiting;
use super::{Io, player_room};
use crate::cluster::feeds::{Feeds, From};
use crate::matches::{Delivery, Message, Outbox, SocketAt, To};
use std::collections::BTreeMap;

/// Delivers match messages through Socket.IO rooms and the room feeds.
pub struct SocketOutbox {
    io: Io,
    feeds: Feeds,
    instance: String,
    waiting: Waiting,
}

impl SocketOutbox {
    pub fn new(io: Io, feeds: Feeds, instance: String) -> Self {
        SocketOutbox {
            io,
            feeds,
            instance,
            waiting: Waiting::default(),
        }
    }

    /// This instance's sockets that wait for a match.
    pub(super) fn waiting(&self) -> &Waiting {
        &self.waiting
    }

    /// The rooms this instance hears.
    pub fn feeds(&self) -> &Feeds {
        &self.feeds
    }

    async fn deliver(&self, messages: Vec<Message>, except: Vec<String>) {
        for message in messages {
            let rooms: Vec<String> = match &message.to {
                To::Player(player) => vec![player_room(player)],
                To::Players(players) => players.iter().map(|p| player_room(p)).collect(),
            };
            // After shutdown closed the namespace there is nobody left to tell.
            let Some(namespace) = self.io.of("/") else {
                return;
            };
            let namespace = namespace.local();
            let event = message.event.as_ref();
            // Every socket is in a room of its own id: `except` names them.
            let recipients = namespace.to(rooms).except(except.clone());
            if let Err(error) = recipients.emit(event, &message.payload).await {
                tracing::warn!(event, %error, "delivery failed");
            }
        }
    }
}

impl Outbox for SocketOutbox {
    fn delivered(&self, room: &str) -> u64 {
        self.feeds.delivered(room)
    }

    fn deliver_here(&self, messages: Vec<Message>, except: Vec<String>) -> Delivery<'_> {
        Box::pin(self.deliver(messages, except))
    }

    fn changed<'a>(&'a self, room: &'a str, version: u64, messages: Vec<Message>) -> Delivery<'a> {
        Box::pin(async move {
            if self.feeds.orders_deliveries() {
                self.feeds.offer(room, version, messages);
            } else {
                self.deliver(messages, Vec::new()).await;
            }
        })
    }

    fn tell_room<'a>(&'a self, room: &'a str, messages: Vec<Message>) -> Delivery<'a> {
        Box::pin(async move {
            // Without Redis (or while it is away) only this instance's players can be reached.
            if !self.feeds.publish(room, &messages).await {
                self.deliver(messages, Vec::new()).await;
            }
        })
    }

    fn seated<'a>(&'a self, room: &'a str, seats: Vec<SocketAt>) -> Delivery<'a> {
        Box::pin(async move {
            let mut elsewhere: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for seat in seats {
                if seat.instance == self.instance {
                    self.waiting.stops(&seat.socket);
                    self.feeds.follow(room, &seat.socket, From::First).await;
                } else {
                    elsewhere
                        .entry(seat.instance)
                        .or_default()
                        .push(seat.socket);
                }
            }
            for (instance, sockets) in elsewhere {
                self.feeds.tell_seated(&instance, room, sockets).await;
            }
        })
    }
}
