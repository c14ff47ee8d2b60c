//! The task that follows rooms for this instance (what it promises: [`super::feeds`]).
//!
//! Its state (each followed room's `Sequence`, sockets and subscription) lives in one loop,
//! but no call to Redis is awaited there: each room's calls (subscribe, unsubscribe, read its
//! version, read its log) run in tasks of their own, one at a time per room and in the order
//! asked (`calls`), and report back. On a Redis Cluster a node that hangs holds up its own
//! rooms' calls until they time out, and no other room's deliveries (a loop that awaited each
//! call stalled every room of the instance: found with a node stopped by `SIGSTOP`).
//!
//! A room's versions are delivered only while none of its calls is under way, so each goes out
//! when it would have if the calls were awaited: after the room is subscribed, after a resuming
//! socket's place is known, after a log read has filled what it could.

mod calls;

use super::feeds::{Command, Delivered, FeedsTask, From, Seated};
use super::order::Sequence;
use crate::gateway::Gateway;
use crate::matches::{Matches, Message};
use crate::redis_store::RedisStore;
use crate::redis_store::pubsub::{Bus, BusError};
use crate::store::StoreResult;
use calls::{Answer, Call, Calls};
use futures_util::StreamExt;
use serde::Deserialize;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use std::collections::{HashMap, HashSet, VecDeque};
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

/// A room followed here.
struct Feed {
    /// Tells this feed from an earlier one of the same room, whose calls may still answer.
    id: u64,
    /// The versions delivered here, and those waiting for a gap to close.
    sequence: Sequence<Vec<Message>>,
    /// This instance's sockets that play in the room.
    sockets: HashSet<String>,
    /// Whether Redis confirmed the subscription (else it is asked again at the next catch-up).
    subscribed: bool,
    /// Sockets here that resumed at a stored version this feed has not delivered yet: their
    /// `resumed` brings that state itself, so they are not sent the versions up to it.
    resumed_at: HashMap<String, u64>,
    /// The highest version held when the last log read began, if that read answered and no
    /// gap was found since: a gap below it is one the log no longer holds.
    read_with: Option<u64>,
    /// The last log read failed: the next is at the next catch-up, not at once.
    read_failed: bool,
}

/// The task that follows rooms for this instance.
pub struct Follower {
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::Receiver<ChanItem>,
    notes: MessageStream<ChanItem>,
    lost: watch::Receiver<u64>,
    answers: mpsc::UnboundedReceiver<(String, Answer)>,
    answer_to: mpsc::UnboundedSender<(String, Answer)>,
    store: RedisStore,
    bus: Bus,
    matches: Matches,
    gateway: Gateway,
    rooms: HashMap<String, Feed>,
    /// Calls under way or waiting, by room (an unsubscribe outlives its feed).
    calls: Calls,
    next_feed: u64,
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

fn answer(done: Option<oneshot::Sender<bool>>, followed: bool) {
    if let Some(done) = done {
        let _ = done.send(followed);
    }
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
        let (answer_to, answers) = mpsc::unbounded_channel();
        Ok(Follower {
            commands: task.commands,
            incoming,
            notes,
            lost: bus.disconnections(),
            answers,
            answer_to,
            bus,
            store: task.store,
            matches,
            gateway,
            rooms: HashMap::new(),
            calls: Calls::default(),
            next_feed: 0,
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
                self.settle(&room).await;
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
                Some((room, answer)) = self.answers.recv() => self.answered(room, answer).await,
                Some((channel, message)) = self.incoming.recv() => {
                    self.incoming(&channel, &message).await
                }
                Some((_, note)) = self.notes.next() => self.note(&note),
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
                    self.catch_up_all();
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
            } => self.follow(room, socket, from, Some(done)),
            Command::Unfollow { socket } => {
                if let Some(room) = self.sockets.remove(&socket) {
                    self.leave(&room, &socket);
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

    /// Follows `room` for `socket`; `done` is told once it is subscribed and, from the first,
    /// caught up, or (resuming, [`From::Now`]) once the socket's place is known. It is told
    /// false when that place cannot be read: following the socket from the log instead would
    /// hand it versions its player already heard (found by the chaos run on a cluster, the
    /// room's node down and the fleet's up). The socket is then not followed, and the caller
    /// tries again.
    fn follow(
        &mut self,
        room: String,
        socket: String,
        from: From,
        done: Option<oneshot::Sender<bool>>,
    ) {
        if let Some(before) = self.sockets.insert(socket.clone(), room.clone())
            && before != room
        {
            self.leave(&before, &socket);
        }
        if let Some(feed) = self.rooms.get_mut(&room) {
            feed.sockets.insert(socket.clone());
            let id = feed.id;
            match from {
                From::First => answer(done, true),
                From::Now => self.call(
                    &room,
                    id,
                    Call::Version {
                        socket,
                        opens: false,
                        done,
                    },
                ),
            }
            return;
        }
        self.next_feed += 1;
        let id = self.next_feed;
        let feed = Feed {
            id,
            sequence: Sequence::after(0),
            sockets: HashSet::from([socket.clone()]),
            subscribed: false,
            resumed_at: HashMap::new(),
            read_with: None,
            read_failed: false,
        };
        self.rooms.insert(room.clone(), feed);
        self.call(&room, id, Call::Subscribe);
        // Read after subscribing: whatever is stored later is published to us.
        match from {
            From::First => self.call(&room, id, Call::Log { done }),
            From::Now => self.call(
                &room,
                id,
                Call::Version {
                    socket,
                    opens: true,
                    done,
                },
            ),
        }
    }

    /// Undoes a [`Follower::follow`] that could not learn where `socket` resumes.
    fn not_followed(&mut self, room: &str, socket: &str, error: &str) {
        tracing::warn!(
            room,
            socket,
            error,
            "resume point unknown: not followed yet"
        );
        if self.sockets.get(socket).is_some_and(|r| r == room) {
            self.sockets.remove(socket);
        }
        self.leave(room, socket);
    }

    fn leave(&mut self, room: &str, socket: &str) {
        let Some(feed) = self.rooms.get_mut(room) else {
            return;
        };
        feed.sockets.remove(socket);
        feed.resumed_at.remove(socket);
        if !feed.sockets.is_empty() {
            return;
        }
        let id = feed.id;
        self.rooms.remove(room);
        self.delivered.lock().unwrap().remove(room);
        self.call(room, id, Call::Unsubscribe);
    }

    /// Another instance seated some of our sockets in a match.
    fn note(&mut self, note: &[u8]) {
        let Ok(Seated { room, sockets }) = serde_json::from_slice::<Seated>(note) else {
            tracing::warn!("unreadable note in this instance's inbox");
            return;
        };
        for socket in sockets {
            self.gateway.seated_by_another(&socket);
            if self.gateway.is_connected("/", &socket) {
                self.follow(room.clone(), socket, From::First, None);
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
        self.settle(room).await;
    }

    /// Delivers the versions of `room` that are in order, unless a call of the room is under
    /// way (then once it answered). A version past a gap waits for the log: read now, unless
    /// the last reading failed (then at the next, shortly: delivered before the gap, it would
    /// reach players before older versions, as the chaos run found). A gap below what the
    /// feed held when the log was last read is one the log no longer holds: given up.
    async fn settle(&mut self, room: &str) {
        if !self.calls.idle(room) {
            return;
        }
        loop {
            self.deliver_ready(room).await;
            let Some(feed) = self.rooms.get_mut(room) else {
                return;
            };
            let Some((_, to)) = feed.sequence.gap() else {
                return;
            };
            if feed.read_with.is_some_and(|held| to < held) {
                if let Some((from, to)) = feed.sequence.skip_gap() {
                    tracing::warn!(room, from, to, "versions missed");
                }
                continue;
            }
            feed.read_with = None;
            if !feed.read_failed {
                let id = feed.id;
                self.call(room, id, Call::Log { done: None });
            }
            return;
        }
    }

    /// Asks `call` of `room` for the feed `id`, after the room's other calls.
    fn call(&mut self, room: &str, id: u64, call: Call) {
        self.calls.ask(room, id, call);
        self.start_next(room);
    }

    /// Starts `room`'s next call if none runs.
    fn start_next(&mut self, room: &str) {
        while let Some((id, call)) = self.calls.next(room) {
            // A log is read from the cursor of the feed it is for, if that feed is still here.
            let reading = self
                .rooms
                .get(room)
                .filter(|feed| feed.id == id)
                .map(|feed| (feed.sequence.cursor(), feed.sequence.highest()));
            let call = match (call, reading) {
                (Call::Log { done }, None) => {
                    answer(done, true);
                    continue;
                }
                (call, _) => call,
            };
            calls::spawn(
                room,
                &call,
                reading,
                &self.store,
                &self.bus,
                &self.answer_to,
            );
            self.calls.running(room, id, call);
            return;
        }
    }

    /// A call of `room` answered: its answer is taken in, the room's next call starts, and,
    /// if none is left, what is in order is delivered.
    async fn answered(&mut self, room: String, answer: Answer) {
        let Some((id, call)) = self.calls.finished(&room) else {
            return;
        };
        let current = self.rooms.get(&room).is_some_and(|feed| feed.id == id);
        match (call, answer) {
            (Call::Subscribe, Answer::Subscribed(subscribed)) => {
                if let Some(feed) = self.rooms.get_mut(&room).filter(|_| current) {
                    feed.subscribed = subscribed;
                }
            }
            (
                Call::Version {
                    socket,
                    opens,
                    done,
                },
                Answer::Version(version),
            ) => match version {
                Ok(version) => {
                    if let Some(feed) = self.rooms.get_mut(&room).filter(|_| current) {
                        let version = version.unwrap_or(0);
                        if opens {
                            feed.sequence.advance_to(version);
                        } else if version > feed.sequence.cursor() && feed.sockets.contains(&socket)
                        {
                            feed.resumed_at.insert(socket, version);
                        }
                    }
                    self::answer(done, true);
                }
                Err(error) => {
                    if current {
                        self.not_followed(&room, &socket, &error.to_string());
                    }
                    self::answer(done, false);
                }
            },
            (Call::Log { done }, Answer::Log(entries, held)) => {
                if current {
                    self.read(&room, entries, held);
                }
                self::answer(done, true);
            }
            _ => {} // An unsubscribe, or an answer to another call (never sent).
        }
        self.start_next(&room);
        self.settle(&room).await;
    }

    /// Offers `room` what its log held past the cursor (or, unread, has it read again shortly).
    fn read(&mut self, room: &str, entries: StoreResult<Vec<Vec<u8>>>, held: u64) {
        let entries = match entries {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(room, %error, "could not read the room's log");
                if let Some(feed) = self.rooms.get_mut(room) {
                    feed.read_failed = true;
                }
                self.retry_soon = true;
                return;
            }
        };
        self.absorb_offers();
        let Some(feed) = self.rooms.get_mut(room) else {
            return;
        };
        feed.read_failed = false;
        feed.read_with = Some(held);
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
    fn catch_up_all(&mut self) {
        let rooms: Vec<(String, u64, bool)> = self
            .rooms
            .iter_mut()
            .map(|(room, feed)| {
                feed.read_failed = false;
                (room.clone(), feed.id, feed.subscribed)
            })
            .collect();
        for (room, id, subscribed) in rooms {
            if !subscribed {
                self.call(&room, id, Call::Subscribe);
            }
            self.call(&room, id, Call::Log { done: None });
        }
    }
}
