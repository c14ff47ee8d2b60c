//! The Socket.IO gateway: **the only code that handles Socket.IO events** (`server` merely builds
//! socketioxide's layer). It turns client events into calls on the store and the matches, and
//! implements [`Outbox`](crate::matches::Outbox) over Socket.IO rooms.
//!
//! Conventions every event follows (see `docs/PROTOCOL.md`):
//! * A request's answer goes to its acknowledgement when the client asked for one, and otherwise
//!   to the event named for that request (for the original's events, exactly as it did).
//! * A refused request answers `{success: false, code, error}` the same way; without an
//!   acknowledgement it arrives as a `serverError` event `{event, code, error}`.
//! * Every socket is in its player's own room (`player:<id>`), so the host reaches a player on
//!   whichever socket it uses.
//!
//! Its parts, one concern each:
//! * `identity`: who a socket is (fresh, or resumed by token), its set-up and its
//!   departure, whatever the timing; shutdown and write-back;
//! * `requests`: how every event is admitted (size, rate), parsed, answered and refused;
//! * `matchmaking`, `play`, `room_events`: the events themselves;
//! * `outbox`: match messages to players, through Socket.IO rooms;
//! * `waiting`: which sockets wait for a match, to queue them again after a write-back.

mod admin_ui;
mod identity;
mod matchmaking;
mod outbox;
mod play;
mod requests;
mod room_events;
mod waiting;

pub use admin_ui::AdminUi;
pub use identity::Refused;
pub use outbox::SocketOutbox;
pub use requests::{ClientError, EVENTS, Incoming};

use crate::matches::Matches;
use crate::redis_store::pubsub::Bus;
use crate::store::Store;
use governor::Quota;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide::extract::TryData;
use socketioxide::handler::ConnectHandler;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Limits on what one client may send.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// The largest event payload handled; larger ones are refused with `payload_too_large`.
    pub max_event_bytes: usize,
    /// Sustained events per second per socket; more are refused with `rate_limited`.
    pub events_per_second: u32,
    /// Events a socket may send in a burst above the sustained rate.
    pub burst: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_event_bytes: 16 * 1024,
            events_per_second: 20,
            burst: 40,
        }
    }
}

/// socketioxide's Redis adapter over our [`Bus`]; with no Redis the bus delivers locally only,
/// so a lone instance and a fleet run the same code.
pub type HostAdapter = socketioxide_redis::CustomRedisAdapter<Emitter, Bus>;
pub type Io = SocketIo<HostAdapter>;
type Sock = socketioxide::extract::SocketRef<HostAdapter>;

/// The room every socket of a player is in.
pub fn player_room(player: &str) -> String {
    format!("player:{player}")
}

/// The Socket.IO side of the host.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<GatewayInner>,
}

struct GatewayInner {
    io: Io,
    /// Every socket's rate limit, from `limits`.
    quota: Quota,
    store: Arc<Store>,
    matches: Matches,
    outbox: Arc<SocketOutbox>,
    limits: ClientLimits,
    instance_id: String,
    /// Set at shutdown: new sockets are refused.
    draining: AtomicBool,
    admin_ui: AdminUi,
}
impl Gateway {
    pub fn new(
        io: Io,
        store: Arc<Store>,
        matches: Matches,
        outbox: Arc<SocketOutbox>,
        limits: ClientLimits,
        instance_id: String,
        admin_ui: AdminUi,
    ) -> Self {
        Gateway {
            inner: Arc::new(GatewayInner {
                io,
                quota: Quota::per_second(
                    NonZeroU32::new(limits.events_per_second).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN)),
                store,
                matches,
                outbox,
                limits,
                instance_id,
                draining: AtomicBool::new(false),
                admin_ui,
            }),
        }
    }

    /// The ids of the sockets connected to this instance now.
    pub fn live_sockets(&self) -> std::collections::HashSet<String> {
        self.local_sockets()
            .iter()
            .map(|socket| socket.id.to_string())
            .collect()
    }

    /// How many sockets are connected to this instance now.
    pub fn socket_count(&self) -> usize {
        self.local_sockets().len()
    }

    /// The sockets connected to this instance (none once shutdown closed the namespace).
    pub(super) fn local_sockets(&self) -> Vec<Sock> {
        self.inner
            .io
            .of("/")
            .map(|namespace| namespace.sockets())
            .unwrap_or_default()
    }

    /// Serves the default namespace and the Admin UI's. With Redis, this subscribes to the
    /// adapter's channels.
    pub async fn attach(&self) -> Result<(), String> {
        let io = &self.inner.io;
        let on_connect = {
            let gateway = self.clone();
            move |socket: Sock| {
                let gateway = gateway.clone();
                async move { gateway.connected(socket).await }
            }
        };
        let identify = {
            let gateway = self.clone();
            move |socket: Sock, TryData(auth): TryData<Value>| {
                let gateway = gateway.clone();
                async move { gateway.identify(&socket, auth.unwrap_or(Value::Null)).await }
            }
        };
        io.ns("/", on_connect.with(identify))
            .await
            .map_err(|e| e.to_string())?;
        self.attach_admin_ui().await
    }

    pub(super) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(super) fn grace(&self) -> Duration {
        self.inner.matches.settings().reconnect_grace
    }

    /// Whether the instance still takes players.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }
}

fn unavailable(error: crate::store::StoreError) -> ClientError {
    tracing::warn!(%error, "store request failed");
    ClientError::new(
        "unavailable",
        "the game store is unreachable; try again shortly",
    )
}
