//! Sharded subscriptions a Redis Cluster dropped, made again.
//!
//! redis-rs loses them two ways (stack notes): a slot that moves makes its old node send
//! `SUNSUBSCRIBE`, which redis-rs takes for ours and never undoes; and after a lost connection
//! it subscribes again to all of that node's channels in one `SSUBSCRIBE`, which the node refuses
//! when they are in different slots (our rooms' channels are). [`Renewal`] subscribes again, one
//! channel at a time, to each channel the bus still wants; one task does it, so that a storm of
//! cuts (every node's connection at once, again and again) makes rounds, not a task per cut.
//! (Many channels at once, so that one on a hung node would not hold up the round, was tried:
//! after a slot moved, one instance in two runs of eight never listened to the room again.)

use super::connection::Conn;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// A cut reaches every node's connection within moments: their renewals go in one round.
const GATHER: Duration = Duration::from_millis(50);
/// The longest wait between two tries of a channel that could not be subscribed to.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct Renewal {
    pending: Mutex<HashSet<String>>,
    wake: Notify,
}

/// What the renewing task works with; it stops once the connection is gone.
pub(super) struct Subscriber {
    pub conn: Weak<OnceLock<(Conn, Arc<std::sync::atomic::AtomicBool>)>>,
    pub wanted: Arc<Mutex<HashSet<String>>>,
    /// Told after each round: what was published meanwhile is missed, and the feeds catch up as
    /// after a lost connection.
    pub disconnections: Arc<watch::Sender<u64>>,
}

impl Renewal {
    /// Asks for `channels` to be subscribed to again (those still wanted when it is done).
    pub fn ask(&self, channels: impl IntoIterator<Item = String>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(channels);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<String> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().collect()
    }

    pub async fn run(self: Arc<Self>, subscriber: Subscriber) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(GATHER).await;
            let mut backoff = Duration::from_millis(100);
            loop {
                let Some(conn) = subscriber.conn.upgrade() else {
                    return;
                };
                let Some((conn, _)) = conn.get() else {
                    return;
                };
                let mut conn = conn.clone();
                let mut failed = Vec::new();
                for channel in self.take() {
                    let wanted = subscriber
                        .wanted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&channel);
                    if wanted && conn.subscribe(&channel).await.is_err() {
                        failed.push(channel);
                    }
                }
                subscriber.disconnections.send_modify(|count| *count += 1);
                if failed.is_empty() {
                    break;
                }
                tracing::debug!(channels = failed.len(), "subscriptions not made again yet");
                self.ask(failed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
