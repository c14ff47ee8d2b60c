//! The accept loop: every TCP connection the host serves passes here, before hyper and axum see
//! it. It holds the limits they leave open:
//!
//! * a cap on connections in all ([`ConnectionLimits::max_connections`]) and from one address
//!   ([`ConnectionLimits::max_per_address`]): a connection over either is closed at once, so that
//!   one client cannot take every file descriptor, and the others keep being served;
//! * a deadline for a request's headers ([`ConnectionLimits::header_read_timeout`]): a client
//!   that trickles them, or sends nothing, is disconnected (axum's own `serve` sets none);
//! * TCP_NODELAY on every connection (events are small and latency is the point);
//! * the websocket gate (`gate`): an event sent right behind a Socket.IO `connect` packet waits
//!   for the connection to be accepted, instead of arriving before the socket exists.
//!
//! A connection's slot is held by the connection itself, so it is given back when the connection
//! is dropped, also after it was upgraded to a websocket (hyper's `Upgraded` owns it then).

mod gate;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

pub use gate::GatedIo;

/// Limits on the connections one instance holds.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections held at once; more are closed as they arrive. 0: no limit.
    pub max_connections: usize,
    /// Connections held at once from one IP address. 0: no limit (behind a load balancer, every
    /// connection comes from the balancer's address).
    pub max_per_address: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_per_address: 1_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept free of client connections: Redis, module files, the watcher, logs.
const RESERVED_DESCRIPTORS: usize = 256;

impl ConnectionLimits {
    /// These limits as they can hold: the global one below the process's open-file limit (past
    /// that every `accept` fails and nobody is served), and one address's share at most half of
    /// the global one (so that one address can never take every place).
    pub fn fitted(mut self) -> Self {
        if let Some(files) = open_file_limit() {
            let room = files.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            if self.max_connections == 0 || self.max_connections > room {
                tracing::warn!(
                    configured = self.max_connections,
                    open_file_limit = files,
                    lowered_to = room,
                    "MAX_CONNECTIONS lowered below the open-file limit (raise `ulimit -n` to hold more)"
                );
                self.max_connections = room;
            }
        }
        if self.max_connections > 0 && self.max_per_address > 0 {
            let half = (self.max_connections / 2).max(1);
            if self.max_per_address > half {
                tracing::info!(
                    configured = self.max_per_address,
                    lowered_to = half,
                    "MAX_CONNECTIONS_PER_ADDR lowered to half of MAX_CONNECTIONS"
                );
                self.max_per_address = half;
            }
        }
        self
    }
}

/// The soft limit on open files, if the platform says.
fn open_file_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if ok && limit.rlim_cur != libc::RLIM_INFINITY {
            return usize::try_from(limit.rlim_cur).ok();
        }
    }
    None
}

/// Raises the soft open-file limit to the hard one, as servers holding many sockets do; a
/// process starts with the soft limit (often 1,024).
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write only the struct they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    tracing::debug!("the open-file limit could not be raised");
                }
            }
        }
    }
}

/// Counts connections in all and by address.
struct Slots {
    limits: ConnectionLimits,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One connection's place; given back on drop.
pub struct Slot {
    slots: Arc<Slots>,
    address: IpAddr,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a connection from `address`, or `None` if a limit is reached.
    fn take(self: &Arc<Self>, address: IpAddr) -> Option<Slot> {
        let mut held = self.lock();
        let limits = &self.limits;
        if limits.max_connections > 0 && held.total >= limits.max_connections {
            return None;
        }
        let from_address = held.by_address.get(&address).copied().unwrap_or(0);
        if limits.max_per_address > 0 && from_address >= limits.max_per_address {
            return None;
        }
        held.total += 1;
        held.by_address.insert(address, from_address + 1);
        Some(Slot {
            slots: self.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        held.total -= 1;
        if let Some(count) = held.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.by_address.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits (at
/// most `drain`) for the requests under way.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots {
        limits,
        held: Mutex::new(Held::default()),
    });
    // Each connection's task holds a sender: when all are dropped, every connection has ended.
    let (connections, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut refused_logged_at: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or the peer gave up already: wait a moment, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(peer.ip()) else {
            // Closed at once, without a word: a limit is not worth a response to whoever
            // holds too many connections already.
            let now = tokio::time::Instant::now();
            if refused_logged_at.is_none_or(|at| now - at > Duration::from_secs(10)) {
                refused_logged_at = Some(now);
                tracing::warn!(peer = %peer.ip(), "connection limit reached: closing new connections");
            }
            drop(tcp);
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let io = TokioIo::new(GatedIo::new(tcp, slot));
        let service = connection_service(app.clone(), peer);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(slots.limits.header_read_timeout)
            .serve_connection(io, service)
            .with_upgrades();
        let (held, mut closing) = (connections.clone(), closing.clone());
        tokio::spawn(async move {
            let _held = held;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = closing.wait_for(|closing| *closing) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    // Answers the request under way, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, peer = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(connections);
    if tokio::time::timeout(drain, all_ended.recv()).await.is_err() {
        tracing::info!("requests still under way at shutdown were cut off");
    }
    Ok(())
}

/// The router as hyper calls it for one connection: each request carries the peer's address
/// (`ConnectInfo`), as `axum::serve` would give it.
fn connection_service(
    app: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { app.call(request.map(axum::body::Body::new)).await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_connections: usize, max_per_address: usize) -> Arc<Slots> {
        Arc::new(Slots {
            limits: ConnectionLimits {
                max_connections,
                max_per_address,
                header_read_timeout: Duration::from_secs(1),
            },
            held: Mutex::new(Held::default()),
        })
    }

    #[test]
    fn an_address_gets_its_share_and_no_more_and_a_closed_connection_gives_its_place_back() {
        let slots = slots(5, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a third from one address");
        let _other = slots.take(b).unwrap();
        drop(first);
        assert!(slots.take(a).is_some(), "a place came back");
    }

    #[test]
    fn the_total_is_capped_whoever_asks() {
        let slots = slots(3, 0);
        let held: Vec<Slot> = (1..=3)
            .map(|i| slots.take(IpAddr::from([127, 0, 0, i])).unwrap())
            .collect();
        assert!(slots.take("127.0.0.9".parse().unwrap()).is_none());
        drop(held);
        assert_eq!(slots.lock().total, 0);
        assert!(
            slots.lock().by_address.is_empty(),
            "nothing kept per address"
        );
    }

    #[test]
    fn one_address_gets_half_the_places_at_most() {
        let limits = ConnectionLimits {
            max_connections: 100,
            max_per_address: 1_000,
            header_read_timeout: Duration::from_secs(1),
        }
        .fitted();
        assert_eq!(limits.max_per_address, 50);
        let off = ConnectionLimits {
            max_per_address: 0,
            ..limits.clone()
        };
        assert_eq!(off.fitted().max_per_address, 0, "off stays off");
    }

    #[test]
    fn zero_means_no_limit() {
        let slots = slots(0, 0);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let held: Vec<Slot> = (0..100).map(|_| slots.take(a).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
