//! A followed room's calls to Redis: asked in order, one under way at a time per room, each in
//! a task of its own that answers back to the follower's loop.
//!
//! One at a time, so that an unsubscribe is done before the same room is subscribed again and
//! a log read starts from the cursor the previous read left; in tasks, so that a room whose
//! node hangs holds up only its own calls.

use crate::redis_store::RedisStore;
use crate::redis_store::pubsub::Bus;
use crate::store::StoreResult;
use std::collections::{HashMap, VecDeque};
use tokio::sync::{mpsc, oneshot};

/// A call to Redis for one room.
pub(super) enum Call {
    Subscribe,
    Unsubscribe,
    /// The room's stored version: where `socket` resumes, or (`opens`) where a new feed
    /// starts.
    Version {
        socket: String,
        opens: bool,
        done: Option<oneshot::Sender<bool>>,
    },
    /// What the room's log holds past the cursor.
    Log {
        done: Option<oneshot::Sender<bool>>,
    },
}

/// What a call brought back.
pub(super) enum Answer {
    Subscribed(bool),
    Unsubscribed,
    Version(StoreResult<Option<u64>>),
    /// The log's entries, and the highest version the feed held when the read began.
    Log(StoreResult<Vec<Vec<u8>>>, u64),
}

/// Every room's calls under way or waiting, each with the id of the feed it is for (an
/// unsubscribe outlives its feed; a later feed of the same room has another id).
#[derive(Default)]
pub(super) struct Calls {
    rooms: HashMap<String, RoomCalls>,
}

#[derive(Default)]
struct RoomCalls {
    running: Option<(u64, Call)>,
    queue: VecDeque<(u64, Call)>,
}

/// A log read nobody waits for: one already waiting serves for another.
fn plain_read(call: &Call) -> bool {
    matches!(call, Call::Log { done: None })
}

impl Calls {
    /// Whether no call of `room` is under way or waiting.
    pub(super) fn idle(&self, room: &str) -> bool {
        self.rooms
            .get(room)
            .is_none_or(|calls| calls.running.is_none() && calls.queue.is_empty())
    }

    /// Queues `call` of `room` for the feed `id`, behind the room's other calls.
    pub(super) fn ask(&mut self, room: &str, id: u64, call: Call) {
        let calls = self.rooms.entry(room.to_string()).or_default();
        let same_read = |(feed, waiting): &(u64, Call)| *feed == id && plain_read(waiting);
        if plain_read(&call) && calls.queue.iter().any(same_read) {
            return;
        }
        calls.queue.push_back((id, call));
    }

    /// `room`'s next call, taken from its queue, if none is under way; the caller starts it
    /// and says so with [`Calls::running`] (or drops it and asks for the next).
    pub(super) fn next(&mut self, room: &str) -> Option<(u64, Call)> {
        let calls = self.rooms.get_mut(room)?;
        if calls.running.is_some() {
            return None;
        }
        let next = calls.queue.pop_front();
        if next.is_none() {
            self.rooms.remove(room);
        }
        next
    }

    /// `call` of `room` is under way.
    pub(super) fn running(&mut self, room: &str, id: u64, call: Call) {
        self.rooms.entry(room.to_string()).or_default().running = Some((id, call));
    }

    /// The call of `room` that was under way, now answered.
    pub(super) fn finished(&mut self, room: &str) -> Option<(u64, Call)> {
        self.rooms.get_mut(room)?.running.take()
    }
}

/// Runs `call` of `room` in a task of its own, which sends its answer `to` the follower. A log
/// is read past `reading`'s cursor, the first of the two; the second is the highest version
/// the feed held when the read began.
pub(super) fn spawn(
    room: &str,
    call: &Call,
    reading: Option<(u64, u64)>,
    store: &RedisStore,
    bus: &Bus,
    to: &mpsc::UnboundedSender<(String, Answer)>,
) {
    let (store, bus, to) = (store.clone(), bus.clone(), to.clone());
    let channel = store.room_channel(room);
    let room = room.to_string();
    match call {
        Call::Subscribe => tokio::spawn(async move {
            let subscribed = match bus.subscribe_channel(&channel).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(room, %error, "room not subscribed yet");
                    false
                }
            };
            let _ = to.send((room, Answer::Subscribed(subscribed)));
        }),
        Call::Unsubscribe => tokio::spawn(async move {
            if let Err(error) = bus.unsubscribe_channel(&channel).await {
                tracing::debug!(room, %error, "room not unsubscribed");
            }
            let _ = to.send((room, Answer::Unsubscribed));
        }),
        Call::Version { .. } => tokio::spawn(async move {
            let version = store.room_version(&room).await;
            let _ = to.send((room, Answer::Version(version)));
        }),
        Call::Log { .. } => {
            let (cursor, held) = reading.unwrap_or_default();
            tokio::spawn(async move {
                let entries = store.room_log_after(&room, cursor).await;
                let _ = to.send((room, Answer::Log(entries, held)));
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read() -> Call {
        Call::Log { done: None }
    }

    fn kind(call: &(u64, Call)) -> (u64, &'static str) {
        let name = match call.1 {
            Call::Subscribe => "subscribe",
            Call::Unsubscribe => "unsubscribe",
            Call::Version { .. } => "version",
            Call::Log { .. } => "log",
        };
        (call.0, name)
    }

    #[test]
    fn one_call_runs_at_a_time_per_room_in_the_order_asked() {
        let mut calls = Calls::default();
        calls.ask("a", 1, Call::Unsubscribe);
        calls.ask("a", 2, Call::Subscribe);
        calls.ask("b", 3, Call::Subscribe);

        let first = calls.next("a").unwrap();
        assert_eq!(kind(&first), (1, "unsubscribe"));
        calls.running("a", first.0, first.1);
        assert!(calls.next("a").is_none(), "the unsubscribe is under way");
        assert_eq!(kind(&calls.next("b").unwrap()), (3, "subscribe"));

        assert_eq!(kind(&calls.finished("a").unwrap()), (1, "unsubscribe"));
        assert!(!calls.idle("a"), "the subscribe waits");
        assert_eq!(kind(&calls.next("a").unwrap()), (2, "subscribe"));
        assert!(calls.next("a").is_none());
        assert!(calls.idle("a"));
    }

    #[test]
    fn a_waiting_log_read_serves_for_another_of_the_same_feed() {
        let mut calls = Calls::default();
        calls.ask("a", 1, Call::Subscribe);
        let (id, call) = calls.next("a").unwrap();
        calls.running("a", id, call);
        calls.ask("a", 1, read());
        calls.ask("a", 1, read());
        calls.ask("a", 2, read());
        let (done, _) = oneshot::channel();
        calls.ask("a", 1, Call::Log { done: Some(done) });

        calls.finished("a");
        let waiting: Vec<_> = std::iter::from_fn(|| calls.next("a"))
            .map(|call| kind(&call))
            .collect();
        assert_eq!(waiting, [(1, "log"), (2, "log"), (1, "log")]);
    }
}
