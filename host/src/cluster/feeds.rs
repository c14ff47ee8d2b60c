//! Room feeds: an instance hears the rooms whose players it holds, and no others.
//!
//! Every stored change of a match is published on the room's own channel by the script that
//! stores it, so in version order, and kept a while in the room's log. An instance subscribes
//! to a room's channel while one of its sockets plays there ([`Feeds::follow`]), and lets it go
//! when the last one leaves ([`Feeds::unfollow`]); an instance with no player in a match is
//! never sent its messages. Chat goes to the same channel, unlogged.
//!
//! Exactly once, in order: each room has a `order::Sequence`, whose cursor is the last version
//! delivered here. This instance's own actors hand over what they store (or make in memory while
//! Redis is away) as well, and whichever copy comes first counts. A version at or below the
//! cursor is dropped; one past a gap waits for what the log holds in between. The log also
//! serves an instance that subscribes after the match started (a match set up
//! elsewhere tells it through its inbox, and it reads the room from the first version), and one
//! whose connection was lost: Redis does not replay what it missed, so it reads every room's
//! log again a few times while it reconnects and subscribes anew. The task that does all this
//! is [`super::follower::Follower`].

use crate::matches::Message;
use crate::redis_store::RedisStore;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// From which version a socket that starts following a room needs its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// From the match's first: a match just set up, maybe elsewhere.
    First,
    /// From what is stored next: a player resuming, who is sent the state itself.
    Now,
}

/// What the rest of the host asks of the follower. Free to clone; does nothing without Redis
/// (a lone instance's actors deliver their messages themselves).
#[derive(Clone, Default)]
pub struct Feeds {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    store: RedisStore,
    commands: mpsc::UnboundedSender<Command>,
    delivered: Delivered,
}

/// The last version of each followed room delivered here (the rooms' cursors, readable outside
/// the follower).
pub(super) type Delivered = Arc<std::sync::Mutex<HashMap<String, u64>>>;

pub(super) enum Command {
    Follow {
        room: String,
        socket: String,
        from: From,
        /// Whether it is followed (see [`Follower::follow`]).
        done: oneshot::Sender<bool>,
    },
    Unfollow {
        socket: String,
    },
    Offer {
        room: String,
        version: u64,
        messages: Vec<Message>,
    },
}

/// A note to another instance: some of its sockets were seated in a match set up here.
#[derive(Serialize, Deserialize)]
pub(super) struct Seated {
    pub room: String,
    pub sockets: Vec<String>,
}

/// The follower's half, until `Follower::run` takes it.
pub struct FeedsTask {
    pub(super) store: RedisStore,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) delivered: Delivered,
}

impl Feeds {
    /// The feeds of `store`: with Redis, a handle and the task that must run for it.
    pub fn new(store: &Store) -> (Feeds, Option<FeedsTask>) {
        let Store::Redis(redis) = store else {
            return (Feeds::default(), None);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let delivered = Delivered::default();
        let shared = Shared {
            store: redis.clone(),
            commands: tx,
            delivered: delivered.clone(),
        };
        let task = FeedsTask {
            store: redis.clone(),
            commands: rx,
            delivered,
        };
        (
            Feeds {
                shared: Some(Arc::new(shared)),
            },
            Some(task),
        )
    }

    /// `socket` (here) plays in `room` (instead of any room it played in before): this instance
    /// hears the room from `from` on. Returns once it is subscribed and, from the first, caught
    /// up; false if, resuming ([`From::Now`]), the room's stored version could not be read, and
    /// the socket is not followed.
    pub async fn follow(&self, room: &str, socket: &str, from: From) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let (done, caught_up) = oneshot::channel();
        let command = Command::Follow {
            room: room.to_string(),
            socket: socket.to_string(),
            from,
            done,
        };
        if shared.commands.send(command).is_err() {
            return true; // Shutting down: nothing more is followed.
        }
        caught_up.await.unwrap_or(true)
    }

    /// The last version of `room` this instance delivered from the room's feed (0 if none).
    pub fn delivered(&self, room: &str) -> u64 {
        self.shared.as_ref().map_or(0, |shared| {
            shared
                .delivered
                .lock()
                .unwrap()
                .get(room)
                .copied()
                .unwrap_or(0)
        })
    }

    /// Whether a follower orders this instance's deliveries (with Redis); without one, the
    /// actors deliver themselves.
    pub fn orders_deliveries(&self) -> bool {
        self.shared.is_some()
    }

    /// A change of `room` at `version` was stored by this instance, or made in memory while
    /// Redis was away: its messages go to this instance's sockets in version order with what
    /// the room's channel and log bring.
    pub fn offer(&self, room: &str, version: u64, messages: Vec<Message>) {
        if let Some(shared) = &self.shared {
            let room = room.to_string();
            let _ = shared.commands.send(Command::Offer {
                room,
                version,
                messages,
            });
        }
    }

    /// `socket` is gone from this instance.
    pub fn unfollow(&self, socket: &str) {
        if let Some(shared) = &self.shared {
            let socket = socket.to_string();
            let _ = shared.commands.send(Command::Unfollow { socket });
        }
    }

    /// Tells `instance` that its `sockets` play in `room`, so it follows the room from its
    /// first version.
    pub async fn tell_seated(&self, instance: &str, room: &str, sockets: Vec<String>) {
        let Some(shared) = &self.shared else {
            return;
        };
        let note = Seated {
            room: room.to_string(),
            sockets,
        };
        let note = serde_json::to_string(&note).expect("a note serializes");
        if let Err(error) = shared.store.tell_instance(instance, &note).await {
            tracing::warn!(instance, room, %error, "could not tell an instance of its match");
        }
    }

    /// Sends `messages` to the instances that follow `room`. False when they could not be
    /// sent (no Redis, or Redis unreachable): the caller delivers them here.
    pub async fn publish(&self, room: &str, messages: &[Message]) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        match shared.store.publish_to_room(room, messages).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(room, %error, "room message not published");
                false
            }
        }
    }
}
