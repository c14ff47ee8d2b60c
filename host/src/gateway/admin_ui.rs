//! The server side of the stock Socket.IO Admin UI (`@socket.io/admin-ui` 0.5), on the `/admin`
//! namespace, for the whole fleet: the UI pointed at any instance lists every instance and every
//! socket, and its operations reach sockets wherever they are.
//!
//! The protocol, as the UI speaks it:
//! * Log-in: handshake auth `{username, password}` (`admin` and the `ADMIN_TOKEN`; without a
//!   token, loopback clients only), or `{sessionId}` from an earlier log-in. A refusal is
//!   exactly `invalid credentials`, which the UI shows as such.
//! * To the UI: `session`, `config {supportedFeatures}`, `all_sockets`, `server_stats` every 2 s
//!   from every instance, `socket_connected`, `socket_disconnected`, `room_joined`.
//! * From the UI: `emit`, `join`, `leave`, `_disconnect`, each with a namespace and an optional
//!   filter (a room; the UI names a socket by its id, so every socket is in a room named so).
//!
//! The fleet: every message to the UIs is broadcast on `/admin` through the adapter, so it
//! reaches the UIs on every instance; the operations go through the adapter too. For the list of
//! sockets, the instance a UI logs in to sends its own and asks the others, over the bus, to send
//! theirs to that UI. Socket events are only broadcast while some UI watches somewhere (each
//! instance with one says so on the bus every 2 s), so that a fleet nobody watches pays nothing.

use super::{Gateway, HostAdapter, Sock};
use crate::redis_store::pubsub::Bus;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use socketioxide::extract::{Data, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide_redis::drivers::Driver;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub const NAMESPACE: &str = "/admin";
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How long a UI's "I am watching" lasts without being said again.
const WATCH_LASTS_MS: u64 = 5_000;
const FEATURES: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

/// The Admin UI's state on this instance.
pub struct AdminUi {
    /// `ADMIN_TOKEN`; `None`: loopback clients only.
    token: Option<String>,
    /// Session ids handed out at log-in (the UI reconnects with one).
    sessions: Mutex<HashSet<String>>,
    bus: Bus,
    /// The bus channel the fleet's instances talk about UIs on.
    channel: String,
    started: Instant,
    /// Until when (ms since the epoch) some UI in the fleet is known to watch.
    watched_until: AtomicU64,
}

/// What instances tell each other about UIs.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Note {
    /// A UI watches on `instance`.
    Watching { instance: String },
    /// A UI (the `/admin` socket `ui`) logged in on `instance` and wants every socket.
    Snapshot { instance: String, ui: String },
}

impl AdminUi {
    pub fn new(token: Option<String>, bus: Bus, redis_prefix: &str) -> AdminUi {
        AdminUi {
            token,
            sessions: Mutex::default(),
            bus,
            channel: format!("{redis_prefix}admin-ui"),
            started: Instant::now(),
            watched_until: AtomicU64::new(0),
        }
    }

    fn watched(&self) -> bool {
        self.watched_until.load(Ordering::Relaxed) > crate::model::now_ms()
    }

    fn watching_now(&self) {
        self.watched_until
            .fetch_max(crate::model::now_ms() + WATCH_LASTS_MS, Ordering::Relaxed);
    }

    /// Whether a handshake may log in.
    fn admits(&self, auth: &Value, peer: Option<SocketAddr>) -> bool {
        if let Some(session) = auth["sessionId"].as_str() {
            return self.sessions.lock().unwrap().contains(session);
        }
        let digest = |text: &str| sha2::Sha256::digest(text.as_bytes());
        let user = auth["username"].as_str() == Some("admin");
        match &self.token {
            // Compared as digests, so the time taken says nothing about the token.
            Some(token) => {
                user && auth["password"]
                    .as_str()
                    .is_some_and(|password| digest(password) == digest(token))
            }
            None => user && peer.is_some_and(|peer| peer.ip().is_loopback()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid credentials")]
struct InvalidCredentials;

impl Gateway {
    fn admin(&self) -> &AdminUi {
        &self.inner.admin_ui
    }

    /// Serves `/admin`.
    pub(super) async fn attach_admin_ui(&self) -> Result<(), String> {
        let check = {
            let gateway = self.clone();
            move |socket: Sock, TryData(auth): TryData<Value>| {
                let gateway = gateway.clone();
                async move {
                    let peer = socket
                        .req_parts()
                        .extensions
                        .get::<axum::extract::ConnectInfo<SocketAddr>>()
                        .map(|info| info.0);
                    let auth = auth.unwrap_or(Value::Null);
                    if gateway.admin().admits(&auth, peer) {
                        gateway.register_admin_handlers(&socket);
                        Ok(())
                    } else {
                        Err(InvalidCredentials)
                    }
                }
            }
        };
        let on_connect = {
            let gateway = self.clone();
            move |socket: Sock, TryData(auth): TryData<Value>| {
                let gateway = gateway.clone();
                async move {
                    gateway
                        .admin_connected(socket, auth.unwrap_or_default())
                        .await
                }
            }
        };
        self.inner
            .io
            .ns(NAMESPACE, on_connect.with(check))
            .await
            .map_err(|e| e.to_string())
    }

    async fn admin_connected(&self, socket: Sock, auth: Value) {
        socket.join(socket.id.to_string());
        if auth.get("sessionId").is_none() {
            let session = uuid::Uuid::new_v4().simple().to_string();
            self.admin()
                .sessions
                .lock()
                .unwrap()
                .insert(session.clone());
            let _ = socket.emit("session", &session);
        }
        self.admin().watching_now();
        let _ = socket.emit("config", &json!({ "supportedFeatures": FEATURES }));
        let mine: Vec<Value> = self.local_sockets().iter().map(serialize).collect();
        // One argument, the list (a bare Vec would go as one argument per socket).
        let _ = socket.emit("all_sockets", &(mine,));
        self.tell_fleet(Note::Snapshot {
            instance: self.inner.instance_id.clone(),
            ui: socket.id.to_string(),
        })
        .await;
        let _ = socket.emit("server_stats", &self.server_stats());
    }

    /// The UI's operations. Registered by the connect middleware, before the UI is told it is
    /// connected: an operation sent right behind the connect would find no handler otherwise
    /// (socketioxide drops an event nobody listens to).
    fn register_admin_handlers(&self, socket: &Sock) {
        let gateway = self.clone();
        socket.on("emit", move |Data(Arguments(args)): Data<Arguments>| {
            let gateway = gateway.clone();
            async move { gateway.admin_emit(args).await }
        });
        for operation in ["join", "leave", "_disconnect"] {
            let gateway = self.clone();
            socket.on(operation, move |Data(Arguments(args)): Data<Arguments>| {
                let gateway = gateway.clone();
                async move { gateway.admin_operation(operation, args).await }
            });
        }
    }

    /// `emit(nsp, filter, event, ...args)`: sends an event to the sockets of a room (or all).
    async fn admin_emit(&self, args: Vec<Value>) {
        let (Some(nsp), Some(event)) = (args.first().and_then(Value::as_str), args.get(2)) else {
            return;
        };
        let (Some(sockets), Some(event)) = (self.inner.io.of(nsp), event.as_str()) else {
            return;
        };
        let payload: Vec<Value> = args.get(3..).unwrap_or_default().to_vec();
        let sockets = match args[1].as_str() {
            Some(room) => sockets.to(room.to_string()),
            None => sockets,
        };
        tracing::info!(nsp, event, "Admin UI: emit");
        let sent = match payload.len() {
            1 => sockets.emit(event, &payload[0]).await,
            // Several arguments go as several (a list is sent that way).
            _ => sockets.emit(event, &payload).await,
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "Admin UI: emit failed");
        }
    }

    /// `join(nsp, room, filter)`, `leave(nsp, room, filter)`, `_disconnect(nsp, close, filter)`.
    async fn admin_operation(&self, operation: &str, args: Vec<Value>) {
        let Some(sockets) = args
            .first()
            .and_then(Value::as_str)
            .and_then(|nsp| self.inner.io.of(nsp))
        else {
            return;
        };
        let sockets = match args.get(2).and_then(Value::as_str) {
            Some(filter) => sockets.within(filter.to_string()),
            None => sockets,
        };
        tracing::info!(operation, ?args, "Admin UI operation");
        let result = match (operation, args.get(1).and_then(Value::as_str)) {
            ("join", Some(room)) => sockets
                .join(room.to_string())
                .await
                .map_err(|e| e.to_string()),
            ("leave", Some(room)) => sockets
                .leave(room.to_string())
                .await
                .map_err(|e| e.to_string()),
            ("_disconnect", _) => sockets.disconnect().await.map_err(|e| e.to_string()),
            _ => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(operation, %error, "Admin UI operation failed");
        }
    }

    fn server_stats(&self) -> Value {
        let players = self.local_sockets();
        let admins = self
            .inner
            .io
            .of(NAMESPACE)
            .map(|ns| ns.sockets().len())
            .unwrap_or(0);
        let polling = players
            .iter()
            .filter(|s| s.transport_type() == socketioxide::TransportType::Polling)
            .count();
        json!({
            "serverId": self.inner.instance_id,
            "hostname": hostname(),
            "pid": std::process::id(),
            "uptime": self.admin().started.elapsed().as_secs_f64(),
            "clientsCount": players.len() + admins,
            "pollingClientsCount": polling,
            "namespaces": [
                { "name": "/", "socketsCount": players.len() },
                { "name": NAMESPACE, "socketsCount": admins },
            ],
        })
    }

    fn to_uis(&self) -> Option<socketioxide::operators::BroadcastOperators<HostAdapter>> {
        self.inner.io.of(NAMESPACE)
    }

    /// Every 2 s: this instance's stats to every UI in the fleet, and, while a UI is connected
    /// here, word that one watches. Also follows what other instances say of their UIs.
    pub async fn serve_admin_ui(self) {
        let follow = tokio::spawn(self.clone().follow_admin_notes());
        let mut tick = tokio::time::interval(STATS_EVERY);
        loop {
            tick.tick().await;
            let Some(uis) = self.to_uis() else {
                break;
            };
            if self.draining() {
                continue;
            }
            let local_uis = uis.clone().local().sockets().len();
            if local_uis > 0 {
                self.admin().watching_now();
                self.tell_fleet(Note::Watching {
                    instance: self.inner.instance_id.clone(),
                })
                .await;
            }
            if self.admin().watched() {
                let _ = uis.emit("server_stats", &self.server_stats()).await;
            }
        }
        follow.abort();
    }

    async fn tell_fleet(&self, note: Note) {
        let admin = self.admin();
        let message = serde_json::to_vec(&note).expect("notes serialize");
        if let Err(error) = admin.bus.publish(admin.channel.clone(), message).await {
            tracing::debug!(%error, "could not tell the fleet about an Admin UI");
        }
    }

    async fn follow_admin_notes(self) {
        use futures_util::StreamExt;
        let admin = self.admin();
        let mut notes = match admin.bus.subscribe(admin.channel.clone(), 64).await {
            Ok(notes) => notes,
            Err(error) => {
                tracing::warn!(%error, "cannot follow the fleet's Admin UI notes");
                return;
            }
        };
        while let Some((_, message)) = notes.next().await {
            match serde_json::from_slice::<Note>(&message) {
                Ok(Note::Watching { .. }) => self.admin().watching_now(),
                Ok(Note::Snapshot { instance, ui }) if instance != self.inner.instance_id => {
                    self.admin().watching_now();
                    let Some(uis) = self.to_uis() else { continue };
                    // Added one by one to what the UI listed (its `all_sockets` replaces).
                    for socket in self.local_sockets() {
                        let message = (serialize(&socket), timestamp());
                        let to_ui = uis.clone().to(ui.clone());
                        let _ = to_ui.emit("socket_connected", &message).await;
                    }
                    let _ = uis.to(ui).emit("server_stats", &self.server_stats()).await;
                }
                Ok(Note::Snapshot { .. }) => {}
                Err(error) => tracing::warn!(%error, "unreadable Admin UI note"),
            }
        }
    }

    /// Tells every UI of the fleet, if one watches; in the background, since a broadcast goes
    /// through the adapter (Redis).
    fn tell_uis<T: Serialize + Send + Sync + 'static>(&self, event: &'static str, message: T) {
        if !self.admin().watched() {
            return;
        }
        if let Some(uis) = self.to_uis() {
            tokio::spawn(async move {
                if let Err(error) = uis.emit(event, &message).await {
                    tracing::debug!(event, %error, "could not tell the Admin UIs");
                }
            });
        }
    }

    /// A player's socket is set up: the UIs list it.
    pub(super) fn admin_socket_connected(&self, socket: &Sock) {
        self.tell_uis("socket_connected", (serialize(socket), timestamp()));
    }

    pub(super) fn admin_socket_gone(&self, socket: &Sock, reason: DisconnectReason) {
        let message = ("/", socket.id.to_string(), reason_name(reason), timestamp());
        self.tell_uis("socket_disconnected", message);
    }

    /// Puts a socket in a room, and tells the UIs.
    pub(super) fn join_room(&self, socket: &Sock, room: String) {
        socket.join(room.clone());
        self.tell_uis(
            "room_joined",
            ("/", room, socket.id.to_string(), timestamp()),
        );
    }
}

/// Every argument of an event, however many. socketioxide hands a handler several arguments
/// only when it asks for a tuple (any other type gets the first), and the UI's operations take
/// two to four: this reads as a tuple of any length.
struct Arguments(Vec<Value>);

impl<'de> Deserialize<'de> for Arguments {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Collect;
        impl<'de> serde::de::Visitor<'de> for Collect {
            type Value = Vec<Value>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("the event's arguments")
            }

            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Vec<Value>, S::Error> {
                let mut all = Vec::new();
                while let Some(argument) = seq.next_element()? {
                    all.push(argument);
                }
                Ok(all)
            }
        }
        deserializer
            .deserialize_tuple(usize::MAX, Collect)
            .map(Arguments)
    }
}

/// A socket as the UI shows it. Never the Engine.IO session id (a secret, see `transport`).
fn serialize(socket: &Sock) -> Value {
    let parts = socket.req_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let address = header("x-forwarded-for").map(str::to_string).or_else(|| {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string())
    });
    let shown = ["user-agent", "origin", "host", "x-forwarded-for"];
    let headers: serde_json::Map<String, Value> = shown
        .iter()
        .filter_map(|name| Some((name.to_string(), json!(header(name)?))))
        .collect();
    let transport = match socket.transport_type() {
        socketioxide::TransportType::Polling => "polling",
        socketioxide::TransportType::Websocket => "websocket",
    };
    let player = super::identity::state_of(socket).map(|state| state.identity.player.clone());
    let rooms: Vec<String> = socket.rooms().iter().map(|room| room.to_string()).collect();
    json!({
        "id": socket.id.to_string(),
        "clientId": socket.id.to_string(),
        "transport": transport,
        "nsp": socket.ns(),
        "data": { "playerId": player },
        "handshake": {
            "address": address,
            "headers": headers,
            "query": {},
            "issued": 0,
            "secure": false,
            "time": "",
            "url": parts.uri.path(),
            "xdomain": header("origin").is_some(),
        },
        "rooms": rooms,
    })
}

/// A disconnection's reason in the words Socket.IO's own servers use, which the UI shows.
fn reason_name(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::TransportError => "transport error",
        DisconnectReason::HeartbeatTimeout => "ping timeout",
        DisconnectReason::ClientNSDisconnect => "client namespace disconnect",
        DisconnectReason::ServerNSDisconnect => "server namespace disconnect",
        DisconnectReason::ClosingServer => "server shutting down",
        DisconnectReason::PacketParsingError => "parse error",
        DisconnectReason::MultipleHttpPollingError => "forced close",
    }
}

/// Now, as JavaScript's `Date` serialises (ISO 8601, UTC).
fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui(token: Option<&str>) -> AdminUi {
        AdminUi::new(token.map(str::to_string), Bus::new(), "")
    }

    const LOOPBACK: Option<SocketAddr> = Some(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        4000,
    ));
    const REMOTE: Option<SocketAddr> = Some(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)),
        4000,
    ));

    #[test]
    fn logging_in_takes_admin_and_the_token_from_anywhere() {
        let ui = ui(Some("s3cret"));
        let good = json!({ "username": "admin", "password": "s3cret" });
        assert!(ui.admits(&good, REMOTE));
        assert!(ui.admits(&good, LOOPBACK));
        for bad in [
            json!({ "username": "admin", "password": "wrong" }),
            json!({ "username": "root", "password": "s3cret" }),
            json!({ "username": "admin" }),
            json!({ "sessionId": "made-up" }),
            json!(null),
        ] {
            assert!(!ui.admits(&bad, LOOPBACK), "{bad}");
        }
    }

    #[test]
    fn without_a_token_only_loopback_clients_log_in() {
        let ui = ui(None);
        let admin = json!({ "username": "admin", "password": "" });
        assert!(ui.admits(&admin, LOOPBACK));
        assert!(!ui.admits(&admin, REMOTE));
        assert!(!ui.admits(&admin, None));
        assert!(!ui.admits(&json!({ "username": "guest" }), LOOPBACK));
    }

    #[test]
    fn a_session_handed_out_at_log_in_logs_in_again() {
        let ui = ui(Some("s3cret"));
        ui.sessions.lock().unwrap().insert("abc".into());
        assert!(ui.admits(&json!({ "sessionId": "abc" }), REMOTE));
        assert!(!ui.admits(&json!({ "sessionId": "abd" }), REMOTE));
    }

    #[test]
    fn disconnections_are_named_as_socket_io_names_them() {
        assert_eq!(
            reason_name(DisconnectReason::TransportClose),
            "transport close"
        );
        assert_eq!(
            reason_name(DisconnectReason::ServerNSDisconnect),
            "server namespace disconnect"
        );
    }

    #[test]
    fn every_argument_of_an_event_is_read() {
        let args: Arguments = serde_json::from_str(r#"["/", false, "socket"]"#).unwrap();
        assert_eq!(args.0, vec![json!("/"), json!(false), json!("socket")]);
        assert!(socketioxide_core::parser::is_de_tuple::<Arguments>());
    }
}
