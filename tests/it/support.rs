//! Where the built modules are, and engines to run them.

use host::runtime::{Limits, RulesEngine, RulesModule};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The workspace's `target/` folder, wherever cargo was told to put it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The bytes of a built module: `kind` is `rules` or `fixtures`.
pub fn module_bytes(kind: &str, name: &str) -> Vec<u8> {
    let path = target_dir().join(kind).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. Build the modules first: `cargo xtask build-rules` \
             (`cargo xtask test` does it for you)",
            path.display()
        )
    })
}

/// A module written in the text format, for fixtures that break the ABI on purpose.
pub fn wat_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("it/modules")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same rules with a custom section appended: behaves the same, but is another version.
pub fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    use wasm_encoder::Section;
    let mut out = bytes.to_vec();
    let section = wasm_encoder::CustomSection {
        name: "gamehost-test-version".into(),
        data: tag.as_bytes().into(),
    };
    section.append_to(&mut out);
    out
}

/// The test binary's engine, shared so each module is compiled once: a short call budget so that
/// runaway modules fail fast, and a small memory cap.
pub fn engine() -> RulesEngine {
    static ENGINE: OnceLock<RulesEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            RulesEngine::new(Limits {
                call_budget: Duration::from_millis(250),
                memory_bytes: 16 << 20,
                concurrent_calls: 32,
                ..Limits::default()
            })
            .expect("the engine starts")
        })
        .clone()
}

pub fn wizard_battle(engine: &RulesEngine) -> RulesModule {
    engine
        .load(&module_bytes("rules", "wizard-battle"))
        .expect("wizard-battle loads")
}

// ---- A real server in-process, and real Socket.IO clients ----

use futures_util::FutureExt;
use host::config::Config;
use host::server::RunningServer;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, oneshot};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// How long a connecting client waits for its session (or its refusal).
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Lets players act faster than the default rate limit: a whole match played by the tests'
/// strategies resolves its rounds in milliseconds.
pub fn unhurried_limits(config: &mut Config) {
    config.client_limits.events_per_second = 1_000;
    config.client_limits.burst = 1_000;
}

/// Starts a gamehost on a free port with the built rules, after `tweak` has its say.
pub async fn server(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    static INSTANCE: AtomicUsize = AtomicUsize::new(0);
    let mut config = Config::new(target_dir().join("rules"));
    config.instance_id = format!(
        "test-{}-{}",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::Relaxed)
    );
    config.runtime.concurrent_calls = 16;
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    host::server::start(listener, config)
        .await
        .expect("the server starts")
}

/// Something clients can reach: a server in this process, or a `gamehost` process.
pub trait Endpoint {
    /// `http://<addr>`.
    fn url(&self) -> String;
}

impl Endpoint for RunningServer {
    fn url(&self) -> String {
        RunningServer::url(self)
    }
}

/// Every event a client received, in order, and a way to wait for more.
#[derive(Default)]
struct Inbox {
    events: Mutex<Vec<(String, Value)>>,
    arrived: Notify,
}

/// A player: a real Socket.IO client (`rust_socketio`) that records what it receives.
pub struct Player {
    client: Client,
    inbox: Arc<Inbox>,
    pub id: String,
    pub token: String,
    socket: String,
}

/// The first argument of an event.
fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        _ => Value::Null,
    }
}

/// The first argument of an acknowledgement: `rust_socketio` hands over the whole argument
/// array as one value.
fn first_ack_value(payload: Payload) -> Value {
    match first_value(payload) {
        Value::Array(mut arguments) if !arguments.is_empty() => arguments.swap_remove(0),
        other => other,
    }
}

impl Player {
    /// Connects without identity and waits for the session the server hands out.
    pub async fn connect(server: &impl Endpoint) -> Player {
        Player::connect_with(server, None)
            .await
            .expect("the connection is accepted")
    }

    /// Connects with a handshake `auth`; `Err` carries the server's refusal.
    pub async fn connect_with(
        server: &impl Endpoint,
        auth: Option<Value>,
    ) -> Result<Player, String> {
        let inbox = Arc::new(Inbox::default());
        let recorder = inbox.clone();
        let mut builder = ClientBuilder::new(server.url())
            .reconnect(false)
            .on_any(move |event, payload, _| {
                let recorder = recorder.clone();
                async move {
                    let name = match event {
                        Event::Custom(name) => name,
                        other => other.as_str().to_string(),
                    };
                    recorder
                        .events
                        .lock()
                        .unwrap()
                        .push((name, first_value(payload)));
                    recorder.arrived.notify_waiters();
                }
                .boxed()
            })
            .on(Event::Error, {
                let recorder = inbox.clone();
                move |payload, _| {
                    let recorder = recorder.clone();
                    async move {
                        let text = match payload {
                            Payload::Text(values) => values
                                .iter()
                                .map(|v| v.to_string())
                                .collect::<Vec<_>>()
                                .join(" "),
                            #[allow(deprecated)]
                            Payload::String(text) => text,
                            Payload::Binary(_) => "binary".into(),
                        };
                        recorder
                            .events
                            .lock()
                            .unwrap()
                            .push(("error".into(), Value::String(text)));
                        recorder.arrived.notify_waiters();
                    }
                    .boxed()
                }
            });
        if let Some(auth) = auth {
            builder = builder.auth(auth);
        }
        let client = builder.connect().await.map_err(|e| e.to_string())?;
        let mut player = Player {
            client,
            inbox,
            id: String::new(),
            token: String::new(),
            socket: String::new(),
        };
        // The first of the two, with more patience than other events get: a test that connects
        // a thousand clients at once on a busy machine waits seconds for the last sessions.
        let first = async {
            loop {
                let arrived = player.inbox.arrived.notified();
                let events = player.received_of(&["session", "error"]);
                if let Some(first) = events.into_iter().next() {
                    return first;
                }
                arrived.await;
            }
        };
        let first = tokio::time::timeout(CONNECT_PATIENCE, first)
            .await
            .unwrap_or_else(|_| panic!("no session nor refusal within {CONNECT_PATIENCE:?}"));
        if player.count("session") == 0 {
            return Err(first.as_str().unwrap_or_default().to_string());
        }
        let session = player.next("session").await;
        player.id = session["playerId"].as_str().unwrap().to_string();
        player.token = session["resumeToken"].as_str().unwrap().to_string();
        player.socket = session["socketId"].as_str().unwrap().to_string();
        Ok(player)
    }

    /// The `n`th (1-based) `event` received, waiting for it if need be.
    pub async fn nth(&self, event: &str, n: usize) -> Value {
        let wait = async {
            loop {
                let arrived = self.inbox.arrived.notified();
                if let Some(value) = self.received(event).into_iter().nth(n - 1) {
                    return value;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!("{} never got {event} #{n}; got {:?}", self.id, self.names())
            })
    }

    /// The first `event` for which `check` holds, waiting for it if need be.
    pub async fn first_where(&self, event: &str, check: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            loop {
                let arrived = self.inbox.arrived.notified();
                if let Some(value) = self.received(event).into_iter().find(|v| check(v)) {
                    return value;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} never got the {event} awaited; got {:?}",
                    self.id,
                    self.names()
                )
            })
    }

    pub async fn next(&self, event: &str) -> Value {
        self.nth(event, 1).await
    }

    /// Every `event` received so far.
    pub fn received(&self, event: &str) -> Vec<Value> {
        let events = self.inbox.events.lock().unwrap();
        events
            .iter()
            .filter(|(name, _)| name == event)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every event named in `events` received so far, in the order they came.
    pub fn received_of(&self, events: &[&str]) -> Vec<Value> {
        let received = self.inbox.events.lock().unwrap();
        received
            .iter()
            .filter(|(name, _)| events.contains(&name.as_str()))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn count(&self, event: &str) -> usize {
        self.received(event).len()
    }

    fn names(&self) -> Vec<String> {
        self.inbox
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client
            .emit(event, Payload::Text(vec![data]))
            .await
            .unwrap();
    }

    /// Emits with an acknowledgement and returns what the server acknowledged with.
    pub async fn request(&self, event: &str, data: Value) -> Value {
        self.request_with(event, Payload::Text(vec![data])).await
    }

    /// Emits an event without any argument (`42["event"]`).
    pub async fn emit_bare(&self, event: &str) {
        self.client
            .emit(event, Payload::Text(Vec::new()))
            .await
            .unwrap();
    }

    /// Emits an event without any argument, with an acknowledgement; returns what the server
    /// acknowledged with.
    pub async fn request_bare(&self, event: &str) -> Value {
        self.request_with(event, Payload::Text(Vec::new())).await
    }

    /// [`Player::request`], waiting up to `patience` for the answer: for a burst of a thousand
    /// requests at once, which a loaded machine answers within seconds, not at once.
    pub async fn request_within(&self, event: &str, data: Value, patience: Duration) -> Value {
        self.answer_within(event, Payload::Text(vec![data]), patience)
            .await
    }

    async fn request_with(&self, event: &str, payload: Payload) -> Value {
        self.answer_within(event, payload, PATIENCE).await
    }

    async fn answer_within(&self, event: &str, payload: Payload, patience: Duration) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, payload, patience, move |payload, _| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(first_ack_value(payload));
                }
                async {}.boxed()
            })
            .await
            .unwrap();
        tokio::time::timeout(patience, rx)
            .await
            .unwrap_or_else(|_| panic!("no acknowledgement for {event}"))
            .unwrap()
    }

    pub async fn disconnect(self) {
        self.client.disconnect().await.unwrap();
    }

    /// The id of the socket this player uses now.
    pub fn socket_id(&self) -> &str {
        &self.socket
    }

    /// The handshake auth that resumes this player.
    pub fn resume_auth(&self) -> Value {
        json!({ "playerId": self.id, "resumeToken": self.token })
    }
}

/// Two players matched at `level`: `(first to queue, second, room id)`.
pub async fn matched_pair(server: &impl Endpoint, level: i64) -> (Player, Player, String) {
    let a = Player::connect(server).await;
    let b = Player::connect(server).await;
    assert_eq!(
        a.request("joinMatchmaking", json!({ "level": level }))
            .await,
        Value::Null
    );
    let room = b
        .request("joinMatchmaking", json!({ "level": level }))
        .await;
    let room = room
        .as_str()
        .expect("matched: the ack is the room id")
        .to_string();
    for player in [&a, &b] {
        assert_eq!(player.next("matchFound").await["roomId"], room.as_str());
    }
    (a, b, room)
}

/// Submits an action in `room`; returns the acknowledgement.
pub async fn act(player: &Player, room: &str, action: Value) -> Value {
    player
        .request("submitAction", json!({ "roomId": room, "action": action }))
        .await
}

/// Both cast lightning where the other stands: the match ends in a draw.
pub async fn strike_each_other(a: &Player, b: &Player, room: &str) {
    for (caster, target) in [(a, b), (b, a)] {
        let spell = json!({ "spell": "lightning", "target": position(target) });
        let ack = act(caster, room, spell).await;
        assert_eq!(ack["success"], true, "{ack}");
    }
}

/// Where a player stands, from the last view it got.
pub fn position(player: &Player) -> Value {
    let views = player.received("view");
    views.last().expect("a view arrived")["view"]["you"]["position"].clone()
}

/// Lets in-flight events land before counting them.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A plain HTTP GET/POST against the server, returning status and JSON body.
pub async fn http(
    server: &impl Endpoint,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.url());
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /rules/<game>` with a module's bytes: status and JSON answer.
pub async fn upload(
    server: &impl Endpoint,
    game: &str,
    bytes: Vec<u8>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/rules/{game}", server.url()))
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `PUT /rules/<game>/active {version}`: status and JSON answer.
pub async fn activate(server: &impl Endpoint, game: &str, version: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/rules/{game}/active", server.url()))
        .json(&json!({ "version": version }))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The ids of the players a `matchFound` seats.
pub fn seated(found: &Value) -> Vec<&str> {
    found["players"]
        .as_array()
        .expect("matchFound lists its players")
        .iter()
        .map(|p| p["id"].as_str().expect("a player id"))
        .collect()
}

/// A module's version: the SHA-256 of its bytes, hex.
pub fn version_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A rules folder of the test's own, holding `files` (name, bytes).
pub fn rules_dir(files: &[(&str, &[u8])]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gamehost-rules-{}",
        crate::cluster_support::unique_prefix().replace(':', "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// Writes a file the way deployments should: to a temporary name, then renamed into place.
pub fn install_file(dir: &Path, name: &str, bytes: &[u8]) {
    let temp = dir.join(format!(".{name}.part"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

/// Runs `node <args...>` in `tests/js` (whose npm packages `cargo xtask test` installs, `package`
/// among them) and asserts it succeeded and printed `ok_line`.
pub async fn node(package: &str, args: Vec<String>, ok_line: &str) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        folder.join("node_modules").join(package).is_dir(),
        "{package} is not installed in {}; `cargo xtask test` installs it (npm ci)",
        folder.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(&args)
            .current_dir(folder)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(ok_line),
        "node failed:\n{stdout}\n{stderr}"
    );
}

/// The module version a match runs, as its player sees the stored document.
pub async fn module_of(player: &Player, room: &str) -> String {
    let state = player
        .request("getGameState", json!({ "roomId": room }))
        .await["state"]
        .clone();
    state["module"]
        .as_str()
        .expect("a module version")
        .to_string()
}

/// Plays one harmless round (both teleport to where they stand); returns once both saw it
/// resolve. Teleport is then cooling down for a round.
pub async fn play_a_round(a: &Player, b: &Player, room: &str) {
    let turn = a.received("view").last().unwrap()["turn"].as_u64().unwrap();
    for player in [a, b] {
        let stay = json!({ "spell": "teleport", "target": position(player) });
        let ack = act(player, room, stay).await;
        assert_eq!(ack["success"], true, "{ack}");
    }
    for player in [a, b] {
        player
            .first_where("view", |v| v["turn"].as_u64() > Some(turn))
            .await;
    }
}

/// Waits until a match's stored module is `version`.
pub async fn moves_to(player: &Player, room: &str, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while module_of(player, room).await != version {
        assert!(Instant::now() < deadline, "{room} never moved to {version}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stored game of nobody, for tests of the store itself: its match record and its state.
pub fn bare_game(room: &str) -> (host::model::MatchRecord, host::model::GameState) {
    use host::model::{MatchRecord, QueueEntry};
    let game = serde_json::from_value(json!({
        "roomId": room, "players": [], "gameData": { "count": 0 }, "turn": 0,
        "status": "active", "createdAt": 0, "updatedAt": 0, "game": "g", "module": "m",
        "version": 1
    }))
    .expect("a game state");
    let seat = |id: &str| QueueEntry {
        id: id.into(),
        level: 1,
    };
    let record = MatchRecord {
        player1: seat("a"),
        player2: seat("b"),
        room_id: room.into(),
    };
    (record, game)
}
