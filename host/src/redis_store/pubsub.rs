//! The pub/sub carrier under socketioxide's Redis adapter, and under our `room_events`.
//!
//! socketioxide-redis's own driver holds one plain multiplexed connection: after a Redis restart
//! every adapter call fails until the process restarts (see the stack notes). [`Bus`] rides on
//! the store's connection instead (a `ConnectionManager`, or a cluster client), which reconnects with backoff and subscribes again
//! by itself. Two more choices keep an instance serving its own players while Redis is away:
//! a publish that cannot reach Redis is dropped with a log line rather than failing the emit (the
//! adapter would otherwise skip the local delivery too), and a bus with no Redis at all (a lone
//! instance) delivers locally only.
//!
//! On a Redis Cluster the channels are sharded (`SSUBSCRIBE`, `SPUBLISH`), and two redis-rs
//! defects lose sharded subscriptions (stack notes): when a slot moves, the server's
//! `SUNSUBSCRIBE` is taken for ours and never undone, and a reconnection subscribes again to all
//! of a node's channels in one command, which Redis refuses if they are in different slots (our
//! rooms' channels are spread over slots). The bus answers both (`super::renewal`): it
//! subscribes again, one channel at a time, to every channel it still wants that the server
//! drops or that a lost connection took.
//!
//! The room feeds (`crate::cluster::feeds`) subscribe to one channel per room whose players
//! this instance holds; their messages all go to one consumer, registered by prefix
//! ([`Bus::route_prefix`]), so subscribing to a room costs a Redis subscription and nothing
//! more here. A lost connection is told to whoever watches [`Bus::disconnections`]: what was
//! published while it was down is not replayed by Redis.

use super::connection::Conn;
use super::renewal::{Renewal, Subscriber};
use redis::aio::{AsyncPushSender, SendError};
use redis::{FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{mpsc, watch};

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;
type PrefixHandler = Arc<RwLock<Option<(String, mpsc::Sender<ChanItem>)>>>;

#[derive(Clone)]
pub struct Bus {
    handlers: Handlers,
    /// Every channel under one prefix goes to this consumer.
    prefixed: PrefixHandler,
    /// Every channel subscribed to and not yet let go: what a dropped subscription is renewed
    /// from.
    wanted: Arc<Mutex<HashSet<String>>>,
    /// On a cluster, what makes them again.
    renewal: Arc<Renewal>,
    /// Counts the connection's losses.
    disconnections: Arc<watch::Sender<u64>>,
    redis: Arc<OnceLock<(Conn, Arc<AtomicBool>)>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            handlers: Handlers::default(),
            prefixed: PrefixHandler::default(),
            wanted: Arc::default(),
            renewal: Arc::default(),
            disconnections: Arc::new(watch::channel(0).0),
            redis: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("redis pub/sub: {0}")]
pub struct BusError(#[from] redis::RedisError);

impl Bus {
    /// A bus that delivers locally only, until `Bus::attach` gives it a connection.
    pub fn new() -> Self {
        Bus::default()
    }

    /// What the connection hands every pushed message to.
    pub(super) fn push_sender(&self) -> Pushes {
        Pushes(self.clone())
    }

    /// Sends every message of a channel that starts with `prefix` (and has no handler of its
    /// own) to `consumer`. Subscribing to those channels is [`Bus::subscribe_channel`]'s job.
    pub fn route_prefix(&self, prefix: String, consumer: mpsc::Sender<ChanItem>) {
        *self.prefixed.write().unwrap_or_else(|p| p.into_inner()) = Some((prefix, consumer));
    }

    /// Subscribes the connection to `channel` (kept across reconnections).
    pub async fn subscribe_channel(&self, channel: &str) -> Result<(), BusError> {
        self.want(channel, true);
        if let Some((conn, _)) = self.redis.get() {
            conn.clone().subscribe(channel).await?;
        }
        Ok(())
    }

    pub async fn unsubscribe_channel(&self, channel: &str) -> Result<(), BusError> {
        self.want(channel, false);
        if let Some((conn, _)) = self.redis.get() {
            conn.clone().unsubscribe(channel).await?;
        }
        Ok(())
    }

    fn want(&self, channel: &str, wanted: bool) {
        let mut set = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if wanted {
            set.insert(channel.to_string());
        } else {
            set.remove(channel);
        }
    }

    /// Changes each time the connection is lost (it then reconnects and subscribes again).
    pub fn disconnections(&self) -> watch::Receiver<u64> {
        self.disconnections.subscribe()
    }

    pub(super) fn attach(&self, conn: Conn, up: Arc<AtomicBool>) {
        let cluster = conn.is_cluster();
        let _ = self.redis.set((conn, up));
        if cluster {
            let subscriber = Subscriber {
                conn: Arc::downgrade(&self.redis),
                wanted: self.wanted.clone(),
                disconnections: self.disconnections.clone(),
            };
            tokio::spawn(self.renewal.clone().run(subscriber));
        }
    }

    /// The connection, if there is one and Redis was reachable at last contact.
    fn live(&self) -> Option<Conn> {
        let (conn, up) = self.redis.get()?;
        up.load(Ordering::Relaxed).then(|| conn.clone())
    }
}

impl Bus {
    fn route(&self, push: PushInfo) {
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            tracing::debug!(kind = ?push.kind, data = ?push.data, "pub/sub push");
        }
        if push.kind == PushKind::Disconnection {
            self.disconnections.send_modify(|count| *count += 1);
            self.renew_all();
            return;
        }
        if push.kind == PushKind::SUnsubscribe {
            self.renew(push);
            return;
        }
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) || push.data.len() < 2 {
            return;
        }
        let Some((channel, message)) = unpack(push) else {
            tracing::warn!("unreadable pub/sub message");
            return;
        };
        let handler = {
            let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
            handlers.get(&channel).cloned()
        };
        let (handler, feed) = match handler {
            Some(handler) => (handler, "other"),
            None => {
                let prefixed = self.prefixed.read().unwrap_or_else(|p| p.into_inner());
                match &*prefixed {
                    Some((prefix, consumer)) if channel.starts_with(prefix.as_str()) => {
                        (consumer.clone(), "rooms")
                    }
                    _ => return,
                }
            }
        };
        crate::metrics::pubsub_received(feed);
        if let Err(error) = handler.try_send((channel, message)) {
            tracing::warn!(%error, "pub/sub consumer is behind; message dropped");
        }
    }
}

impl Bus {
    /// A sharded subscription the server dropped (its slot moved to another node) while we
    /// still want it: subscribed again, which reaches the slot's new owner. Our own
    /// unsubscriptions come here too, for channels no longer wanted.
    fn renew(&self, push: PushInfo) {
        let Some(channel) = push.data.into_iter().next() else {
            return;
        };
        let Ok(channel) = String::from_redis_value(channel) else {
            return;
        };
        let wanted = {
            let set = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            set.contains(&channel)
        };
        if wanted {
            tracing::info!(
                channel,
                "the server dropped a sharded subscription: subscribing again"
            );
            self.renewal.ask([channel]);
        }
    }

    /// After a lost connection to one of a cluster's nodes: every wanted channel, again. (One
    /// server's `ConnectionManager` subscribes again by itself, correctly.)
    fn renew_all(&self) {
        if !self.redis.get().is_some_and(|(conn, _)| conn.is_cluster()) {
            return;
        }
        let channels: Vec<String> = {
            let set = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            set.iter().cloned().collect()
        };
        self.renewal.ask(channels);
    }
}

/// Hands every message the connection is pushed to the bus.
#[derive(Clone)]
pub(super) struct Pushes(Bus);

impl AsyncPushSender for Pushes {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        self.0.route(push);
        Ok(())
    }
}

fn unpack(push: PushInfo) -> Option<(String, Vec<u8>)> {
    let mut data = push.data.into_iter();
    let (channel, message) = (data.next()?, data.next()?);
    Some((
        String::from_redis_value(channel).ok()?,
        Vec::<u8>::from_redis_value(message).ok()?,
    ))
}

impl Driver for Bus {
    type Error = BusError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let Some(mut conn) = self.live() else {
            return Ok(());
        };
        if let Err(error) = conn.publish(&chan, val).await {
            tracing::debug!(chan, %error, "publish dropped: Redis unreachable");
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size.max(1));
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(chan.clone(), tx);
        self.want(&chan, true);
        if let Some((conn, _)) = self.redis.get() {
            conn.clone().subscribe(&chan).await?;
        }
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&chan);
        self.want(&chan, false);
        if let Some(mut conn) = self.live() {
            conn.unsubscribe(&chan).await?;
        }
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let Some(mut conn) = self.live() else {
            return Ok(1);
        };
        Ok(conn.subscribers(chan).await?)
    }
}
