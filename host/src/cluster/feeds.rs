//! Room feeds: an instance hears the rooms whose players it holds, and no others.
//!
//! Every stored change of a match is published on the room's own channel by the script that
//! stores it, so in version order, and kept a while in the room's log. An instance subscribes
//! to a room's channel while one of its sockets plays there ([`Feeds::follow`]), and lets it go
//! when the last one leaves ([`Feeds::unfollow`]); an instance with no player in a match is
//! never sent its messages. Chat goes to the same channel, unlogged.
//!
//! Exactly once, in order: each room has a cursor, the last version delivered here. A message
//! at or below it is dropped; one past a gap is preceded by what the log holds in between. The
//! log also serves an instance that subscribes after the match started (a match set up
//! elsewhere tells it through its inbox, and it reads the room from the first version), and one
//! whose connection was lost: Redis does not replay what it missed, so it reads every room's
//! log again a few times while it reconnects and subscribes anew.

use crate::gateway::Gateway;
use crate::matches::{Matches, Message};
use crate::redis_store::RedisStore;
use crate::redis_store::pubsub::{Bus, BusError};
use crate::store::Store;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

/// When, after the connection was lost, every followed room's log is read again.
const CATCH_UP_AFTER_LOSS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(750),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
/// When a room's log that could not be read is read again.
const RETRY_CATCH_UP: Duration = Duration::from_millis(500);
/// Room messages that may wait for the follower (a lost one is read back from the log).
const INCOMING_CAPACITY: usize = 65_536;

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
type Delivered = Arc<std::sync::Mutex<HashMap<String, u64>>>;

enum Command {
    Follow {
        room: String,
        socket: String,
        from: From,
        done: oneshot::Sender<()>,
    },
    Unfollow {
        socket: String,
    },
}

/// A note to another instance: some of its sockets were seated in a match set up here.
#[derive(Serialize, Deserialize)]
struct Seated {
    room: String,
    sockets: Vec<String>,
}

/// The follower's half, until [`Follower::run`] takes it.
pub struct FeedsTask {
    store: RedisStore,
    commands: mpsc::UnboundedReceiver<Command>,
    delivered: Delivered,
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
    /// up.
    pub async fn follow(&self, room: &str, socket: &str, from: From) {
        let Some(shared) = &self.shared else {
            return;
        };
        let (done, caught_up) = oneshot::channel();
        let command = Command::Follow {
            room: room.to_string(),
            socket: socket.to_string(),
            from,
            done,
        };
        if shared.commands.send(command).is_ok() {
            let _ = caught_up.await;
        }
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

/// A room followed here.
struct Feed {
    /// The last version delivered here.
    cursor: u64,
    /// This instance's sockets that play in the room.
    sockets: HashSet<String>,
    /// Whether Redis confirmed the subscription (else it is asked again at the next catch-up).
    subscribed: bool,
}

/// The task that follows rooms for this instance.
pub struct Follower {
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::Receiver<ChanItem>,
    notes: MessageStream<ChanItem>,
    lost: watch::Receiver<u64>,
    store: RedisStore,
    bus: Bus,
    matches: Matches,
    gateway: Gateway,
    rooms: HashMap<String, Feed>,
    /// Which room each following socket plays in.
    sockets: HashMap<String, String>,
    delivered: Delivered,
    /// A room's log could not be read: read every followed room's log again shortly.
    retry_soon: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    event: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    messages: Vec<Message>,
}

impl Follower {
    /// Subscribes to this instance's inbox and to every room channel's messages (none are
    /// subscribed yet); call before taking players.
    pub async fn start(
        task: FeedsTask,
        instance: &str,
        matches: Matches,
        gateway: Gateway,
    ) -> Result<Follower, BusError> {
        let bus = task.store.bus();
        let (tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
        bus.route_prefix(task.store.room_channel_prefix().to_string(), tx);
        let inbox = task.store.inbox_channel(instance);
        let notes = Driver::subscribe(&bus, inbox, 1024).await?;
        Ok(Follower {
            commands: task.commands,
            incoming,
            notes,
            lost: bus.disconnections(),
            bus,
            store: task.store,
            matches,
            gateway,
            rooms: HashMap::new(),
            sockets: HashMap::new(),
            delivered: task.delivered,
            retry_soon: false,
        })
    }

    /// Follows rooms until the host stops.
    pub async fn run(mut self) {
        let mut catch_ups: VecDeque<Instant> = VecDeque::new();
        loop {
            let next_catch_up = catch_ups.front().copied();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => return,
                },
                Some((channel, message)) = self.incoming.recv() => {
                    self.incoming(&channel, &message).await
                }
                Some((_, note)) = self.notes.next() => self.note(&note).await,
                Ok(()) = self.lost.changed() => {
                    let now = Instant::now();
                    catch_ups = CATCH_UP_AFTER_LOSS.iter().map(|after| now + *after).collect();
                }
                _ = sleep_until(next_catch_up.unwrap_or_else(Instant::now)), if next_catch_up.is_some() => {
                    catch_ups.pop_front();
                    self.catch_up_all().await;
                }
            }
            if std::mem::take(&mut self.retry_soon) {
                catch_ups.push_front(Instant::now() + RETRY_CATCH_UP);
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Follow {
                room,
                socket,
                from,
                done,
            } => {
                self.follow(room, socket, from).await;
                let _ = done.send(());
            }
            Command::Unfollow { socket } => {
                if let Some(room) = self.sockets.remove(&socket) {
                    self.leave(&room, &socket).await;
                }
            }
        }
    }

    async fn follow(&mut self, room: String, socket: String, from: From) {
        if let Some(before) = self.sockets.insert(socket.clone(), room.clone())
            && before != room
        {
            self.leave(&before, &socket).await;
        }
        if let Some(feed) = self.rooms.get_mut(&room) {
            feed.sockets.insert(socket);
            return;
        }
        let subscribed = self.subscribe(&room).await;
        // Read after subscribing: whatever is stored later is published to us.
        let cursor = match from {
            From::First => 0,
            From::Now => match self.store.room_version(&room).await {
                Ok(version) => version.unwrap_or(0),
                Err(error) => {
                    tracing::warn!(room, %error, "room version unknown; following from the log");
                    0
                }
            },
        };
        let feed = Feed {
            cursor,
            sockets: HashSet::from([socket]),
            subscribed,
        };
        self.rooms.insert(room.clone(), feed);
        if from == From::First {
            self.catch_up(&room, None).await;
        }
    }

    async fn subscribe(&self, room: &str) -> bool {
        match self
            .bus
            .subscribe_channel(&self.store.room_channel(room))
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(room, %error, "room not subscribed yet");
                false
            }
        }
    }

    async fn leave(&mut self, room: &str, socket: &str) {
        let Some(feed) = self.rooms.get_mut(room) else {
            return;
        };
        feed.sockets.remove(socket);
        if !feed.sockets.is_empty() {
            return;
        }
        self.rooms.remove(room);
        self.delivered.lock().unwrap().remove(room);
        if let Err(error) = self
            .bus
            .unsubscribe_channel(&self.store.room_channel(room))
            .await
        {
            tracing::debug!(room, %error, "room not unsubscribed");
        }
    }

    /// Another instance seated some of our sockets in a match.
    async fn note(&mut self, note: &[u8]) {
        let Ok(Seated { room, sockets }) = serde_json::from_slice::<Seated>(note) else {
            tracing::warn!("unreadable note in this instance's inbox");
            return;
        };
        for socket in sockets {
            if self.gateway.is_connected("/", &socket) {
                self.follow(room.clone(), socket, From::First).await;
            }
        }
    }

    async fn incoming(&mut self, channel: &str, message: &[u8]) {
        let Some(room) = self.store.room_of_channel(channel) else {
            return;
        };
        if !self.rooms.contains_key(room) {
            return; // Unsubscribed a moment ago.
        }
        let room = room.to_string();
        match serde_json::from_slice::<Envelope>(message) {
            Ok(Envelope {
                event,
                data:
                    Data {
                        version: Some(version),
                        messages,
                    },
            }) if event == "stateChanged" => self.versioned(&room, version, messages).await,
            Ok(Envelope { data, .. }) if data.version.is_none() => {
                self.matches.relay(data.messages).await
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(room, %error, "unreadable room message"),
        }
    }

    /// Delivers version `version` of `room`, after whatever this instance missed before it.
    async fn versioned(&mut self, room: &str, version: u64, messages: Vec<Message>) {
        let Some(cursor) = self.rooms.get(room).map(|feed| feed.cursor) else {
            return;
        };
        if version <= cursor {
            return;
        }
        if version > cursor + 1 {
            self.catch_up(room, Some(version)).await;
            let caught_up = self.rooms.get(room).map_or(0, |feed| feed.cursor);
            if caught_up + 1 < version && self.retry_soon {
                // The versions between could not be read: deliver nothing past the gap (the
                // players would get this one before them); the log has this one too, and is
                // read again shortly (found by the chaos run).
                return;
            }
        }
        self.deliver(room, version, messages).await;
    }

    async fn deliver(&mut self, room: &str, version: u64, messages: Vec<Message>) {
        let Some(feed) = self.rooms.get_mut(room) else {
            return;
        };
        if version <= feed.cursor {
            return;
        }
        feed.cursor = version;
        self.delivered
            .lock()
            .unwrap()
            .insert(room.to_string(), version);
        self.matches.announced(room, version, messages).await;
    }

    /// Delivers what `room`'s log holds past the cursor (and before `until`).
    async fn catch_up(&mut self, room: &str, until: Option<u64>) {
        let Some(cursor) = self.rooms.get(room).map(|feed| feed.cursor) else {
            return;
        };
        let entries = match self.store.room_log_after(room, cursor).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(room, %error, "could not read the room's log");
                self.retry_soon = true;
                return;
            }
        };
        for entry in entries {
            let Ok(Envelope {
                data:
                    Data {
                        version: Some(version),
                        messages,
                    },
                ..
            }) = serde_json::from_slice::<Envelope>(&entry)
            else {
                tracing::warn!(room, "unreadable entry in the room's log");
                continue;
            };
            if until.is_some_and(|until| version >= until) {
                break;
            }
            let expected = self.rooms.get(room).map_or(0, |feed| feed.cursor) + 1;
            if version > expected {
                tracing::warn!(room, from = expected, to = version - 1, "versions missed");
            }
            self.deliver(room, version, messages).await;
        }
    }

    /// After a lost connection: subscribe where it failed, and read every room's log.
    async fn catch_up_all(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            if self.rooms.get(&room).is_some_and(|feed| !feed.subscribed) {
                let subscribed = self.subscribe(&room).await;
                if let Some(feed) = self.rooms.get_mut(&room) {
                    feed.subscribed = subscribed;
                }
            }
            self.catch_up(&room, None).await;
        }
    }
}
