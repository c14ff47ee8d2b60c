//! Room feeds: an instance hears the rooms whose players it holds, and no others.
//!
//! Every stored change of a match is published on the room's own channel by the script that
//! stores it, so in version order, and kept a while in the room's log. An instance subscribes
//! to a room's channel while one of its sockets plays there ([`Feeds::follow`]), and lets it go
//! when the last one leaves ([`Feeds::unfollow`]); an instance with no player in a match is
//! never sent its messages. Chat goes to the same channel, unlogged.
//!
//! Exactly once, in order: each room has a [`Sequence`], whose cursor is the last version
//! delivered here. This instance's own actors hand over what they store (or make in memory while
//! Redis is away) as well, and whichever copy comes first counts. A version at or below the
//! cursor is dropped; one past a gap waits for what the log holds in between. The log also
//! serves an instance that subscribes after the match started (a match set up
//! elsewhere tells it through its inbox, and it reads the room from the first version), and one
//! whose connection was lost: Redis does not replay what it missed, so it reads every room's
//! log again a few times while it reconnects and subscribes anew.

use super::order::Sequence;
use crate::gateway::Gateway;
use crate::matches::{Matches, Message};
use crate::redis_store::RedisStore;
use crate::redis_store::pubsub::{Bus, BusError};
use crate::store::{Store, StoreError};
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

/// A room followed here.
struct Feed {
    /// The versions delivered here, and those waiting for a gap to close.
    sequence: Sequence<Vec<Message>>,
    /// This instance's sockets that play in the room.
    sockets: HashSet<String>,
    /// Whether Redis confirmed the subscription (else it is asked again at the next catch-up).
    subscribed: bool,
    /// Sockets here that resumed at a stored version this feed has not delivered yet: their
    /// `resumed` brings that state itself, so they are not sent the versions up to it.
    resumed_at: HashMap<String, u64>,
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
    /// A command taken from the queue while looking for actors' versions, to run next.
    deferred: Option<Command>,
    /// Rooms given actors' versions out of turn, to deliver next.
    unsettled: HashSet<String>,
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
            deferred: None,
            unsettled: HashSet::new(),
        })
    }

    /// Follows rooms until the host stops.
    pub async fn run(mut self) {
        let mut catch_ups: VecDeque<Instant> = VecDeque::new();
        loop {
            if let Some(command) = self.deferred.take() {
                self.command(command).await;
            }
            for room in std::mem::take(&mut self.unsettled) {
                self.settle(&room, false).await;
            }
            let next_catch_up = catch_ups.front().copied();
            // Commands first: an actor here hands over each change it stored before its
            // channel copy can arrive, and must not be overtaken by the next version's copy.
            tokio::select! {
                biased;
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
                    let due = catch_ups.front().copied();
                    catch_ups = CATCH_UP_AFTER_LOSS.iter().map(|after| now + *after).collect();
                    // Losses again and again (connections cut in a storm) must not put the
                    // catch-up already due off for ever.
                    if let Some(due) = due.filter(|due| Some(due) < catch_ups.front()) {
                        catch_ups.push_front(due);
                    }
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
                let followed = self.follow(room, socket, from).await;
                let _ = done.send(followed);
            }
            Command::Unfollow { socket } => {
                if let Some(room) = self.sockets.remove(&socket) {
                    self.leave(&room, &socket).await;
                }
            }
            Command::Offer {
                room,
                version,
                messages,
            } => {
                tracing::debug!(room, version, "version from this instance's actor");
                self.take(&room, version, messages).await
            }
        }
    }

    /// Follows `room` for `socket`. False when `from` is [`From::Now`] and the room's stored
    /// version cannot be read: where the socket's `resumed` will stand is unknown, and following
    /// it from the log instead would hand it versions its player already heard (found by the
    /// chaos run on a cluster, the room's node down and the fleet's up). The socket is then not
    /// followed, and the caller tries again.
    async fn follow(&mut self, room: String, socket: String, from: From) -> bool {
        if let Some(before) = self.sockets.insert(socket.clone(), room.clone())
            && before != room
        {
            self.leave(&before, &socket).await;
        }
        if self.rooms.contains_key(&room) {
            let resumed_at = match from {
                From::First => None,
                From::Now => match self.store.room_version(&room).await {
                    Ok(version) => version,
                    Err(error) => return self.not_followed(&room, &socket, &error).await,
                },
            };
            if let Some(feed) = self.rooms.get_mut(&room) {
                if let Some(version) = resumed_at.filter(|v| *v > feed.sequence.cursor()) {
                    feed.resumed_at.insert(socket.clone(), version);
                }
                feed.sockets.insert(socket);
                return true;
            }
        }
        let subscribed = self.subscribe(&room).await;
        // Read after subscribing: whatever is stored later is published to us.
        let cursor = match from {
            From::First => 0,
            From::Now => match self.store.room_version(&room).await {
                Ok(version) => version.unwrap_or(0),
                Err(error) => return self.not_followed(&room, &socket, &error).await,
            },
        };
        let feed = Feed {
            sequence: Sequence::after(cursor),
            sockets: HashSet::from([socket]),
            subscribed,
            resumed_at: HashMap::new(),
        };
        self.rooms.insert(room.clone(), feed);
        if from == From::First {
            self.catch_up(&room).await;
        }
        true
    }

    /// Undoes a [`Follower::follow`] that could not learn where `socket` resumes.
    async fn not_followed(&mut self, room: &str, socket: &str, error: &StoreError) -> bool {
        tracing::warn!(room, socket, %error, "resume point unknown: not followed yet");
        self.sockets.remove(socket);
        if self.rooms.contains_key(room) {
            self.leave(room, socket).await;
        } else if let Err(error) = self
            .bus
            .unsubscribe_channel(&self.store.room_channel(room))
            .await
        {
            tracing::debug!(room, %error, "room not unsubscribed");
        }
        false
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
        feed.resumed_at.remove(socket);
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
            self.gateway.seated_by_another(&socket);
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
            }) if event == "stateChanged" => {
                tracing::debug!(room, version, "version from the room's channel");
                self.absorb_offers();
                self.take(&room, version, messages).await
            }
            Ok(Envelope { data, .. }) if data.version.is_none() => {
                self.matches.relay(data.messages).await
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(room, %error, "unreadable room message"),
        }
    }

    /// Takes a copy of version `version` of `room`, and delivers what is in order.
    async fn take(&mut self, room: &str, version: u64, messages: Vec<Message>) {
        let Some(feed) = self.rooms.get_mut(room) else {
            return; // Not followed here (any more): nobody to tell.
        };
        feed.sequence.offer(version, messages);
        self.settle(room, false).await;
    }

    /// Reads what `room`'s log holds past the cursor, and delivers what is in order.
    async fn catch_up(&mut self, room: &str) {
        self.settle(room, true).await;
    }

    /// Delivers the versions that are in order. A version past a gap waits for the log (read
    /// now, unless `read_log` already asked for that); if the log cannot be read, it waits for
    /// the next reading, shortly (delivered before the gap, it would reach players before older
    /// versions: found by the chaos run); if the log no longer holds the versions between,
    /// they are given up.
    async fn settle(&mut self, room: &str, read_log: bool) {
        if read_log && !self.read_log(room).await {
            return;
        }
        let mut log_read = read_log;
        loop {
            self.deliver_ready(room).await;
            let Some(feed) = self.rooms.get_mut(room) else {
                return;
            };
            if feed.sequence.gap().is_none() {
                return;
            }
            if log_read {
                if let Some((from, to)) = feed.sequence.skip_gap() {
                    tracing::warn!(room, from, to, "versions missed");
                }
                continue;
            }
            if !self.read_log(room).await {
                return;
            }
            log_read = true;
        }
    }

    /// Offers `room` what its log holds past the cursor. False if it could not be read (it is
    /// read again shortly).
    async fn read_log(&mut self, room: &str) -> bool {
        let Some(cursor) = self.rooms.get(room).map(|feed| feed.sequence.cursor()) else {
            return false;
        };
        let entries = match self.store.room_log_after(room, cursor).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(room, %error, "could not read the room's log");
                self.retry_soon = true;
                return false;
            }
        };
        self.absorb_offers();
        let Some(feed) = self.rooms.get_mut(room) else {
            return false;
        };
        for entry in entries {
            match serde_json::from_slice::<Envelope>(&entry) {
                Ok(Envelope {
                    data:
                        Data {
                            version: Some(version),
                            messages,
                        },
                    ..
                }) => feed.sequence.offer(version, messages),
                _ => tracing::warn!(room, "unreadable entry in the room's log"),
            }
        }
        true
    }

    /// Takes the versions this instance's actors handed over and that wait in the queue, before
    /// a copy from the channel or the log: an actor hands over each change before its copy
    /// can be published, and only its copy carries the messages of a change it made in memory
    /// (a write-back announces the version without them; taking that one first lost them:
    /// found by the chaos run). Stops at any other command, which runs next.
    fn absorb_offers(&mut self) {
        while self.deferred.is_none()
            && let Ok(command) = self.commands.try_recv()
        {
            match command {
                Command::Offer {
                    room,
                    version,
                    messages,
                } => {
                    if let Some(feed) = self.rooms.get_mut(&room) {
                        tracing::debug!(room, version, "version from this instance's actor");
                        feed.sequence.offer(version, messages);
                        self.unsettled.insert(room);
                    }
                }
                other => self.deferred = Some(other),
            }
        }
    }

    /// Hands the versions of `room` that are in order to this instance's sockets.
    async fn deliver_ready(&mut self, room: &str) {
        let Some(feed) = self.rooms.get_mut(room) else {
            return;
        };
        let ready = feed.sequence.ready();
        let Some(&(last, _)) = ready.last() else {
            return;
        };
        let ready: Vec<_> = ready
            .into_iter()
            .map(|(version, messages)| {
                let except = feed
                    .resumed_at
                    .iter()
                    .filter(|(_, resumed)| version <= **resumed)
                    .map(|(socket, _)| socket.clone())
                    .collect();
                (version, messages, except)
            })
            .collect();
        feed.resumed_at.retain(|_, resumed| *resumed > last);
        self.delivered
            .lock()
            .unwrap()
            .insert(room.to_string(), last);
        tracing::debug!(room, from = ready[0].0, to = last, "versions delivered");
        for (version, messages, except) in ready {
            self.matches
                .announced(room, version, messages, except)
                .await;
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
            self.catch_up(&room).await;
        }
    }
}
