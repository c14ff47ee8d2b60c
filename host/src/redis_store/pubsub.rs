//! The pub/sub carrier under socketioxide's Redis adapter, and under our `room_events`.
//!
//! socketioxide-redis's own driver holds one plain multiplexed connection: after a Redis restart
//! every adapter call fails until the process restarts (see the stack notes). [`Bus`] rides on
//! the store's [`ConnectionManager`] instead, which reconnects with backoff and subscribes again
//! by itself. Two more choices keep an instance serving its own players while Redis is away:
//! a publish that cannot reach Redis is dropped with a log line rather than failing the emit (the
//! adapter would otherwise skip the local delivery too), and a bus with no Redis at all (a lone
//! instance) delivers locally only.

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::mpsc;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Clone, Default)]
pub struct Bus {
    handlers: Handlers,
    redis: Arc<OnceLock<(ConnectionManager, Arc<AtomicBool>)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("redis pub/sub: {0}")]
pub struct BusError(#[from] redis::RedisError);

impl Bus {
    /// A bus that delivers locally only, until `Bus::attach` gives it a connection.
    pub fn new() -> Self {
        Bus::default()
    }

    /// What the connection calls with every pushed message.
    pub fn push_sender(&self) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + use<> {
        let handlers = self.handlers.clone();
        move |push| {
            route(&handlers, push);
            Ok(())
        }
    }

    pub(super) fn attach(&self, conn: ConnectionManager, up: Arc<AtomicBool>) {
        let _ = self.redis.set((conn, up));
    }

    /// The connection, if there is one and Redis was reachable at last contact.
    fn live(&self) -> Option<ConnectionManager> {
        let (conn, up) = self.redis.get()?;
        up.load(Ordering::Relaxed).then(|| conn.clone())
    }
}

fn route(handlers: &Handlers, push: PushInfo) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) || push.data.len() < 2 {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(message)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(message)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(message),
    ) else {
        tracing::warn!("unreadable pub/sub message");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|p| p.into_inner());
    if let Some(handler) = handlers.get(&channel)
        && let Err(error) = handler.try_send((channel, message))
    {
        tracing::warn!(%error, "pub/sub consumer is behind; message dropped");
    }
}

impl Driver for Bus {
    type Error = BusError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let Some(mut conn) = self.live() else {
            return Ok(());
        };
        if let Err(error) = redis::AsyncCommands::publish::<_, _, ()>(&mut conn, &chan, val).await {
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
        if let Some(mut conn) = self.live() {
            conn.unsubscribe(&chan).await?;
        }
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let Some(mut conn) = self.live() else {
            return Ok(1);
        };
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
}
