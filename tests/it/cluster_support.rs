//! What the multi-instance tests run on: private `redis-server`s and private Redis Clusters
//! ([`Shared`]), in-process servers sharing one, and `gamehost` processes (so an instance can be
//! killed for real).

use crate::support::{Endpoint, target_dir};
use host::config::{Config, RedisTarget};
use host::server::RunningServer;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a fleet under test shares its state through.
pub trait Shared {
    /// How an in-process server reaches it.
    fn target(&self) -> RedisTarget;
    /// How a `gamehost` process reaches it: one variable of its environment.
    fn env(&self) -> (&'static str, String);
    /// A plain connection for looking at what the instances stored (on a cluster, to the node
    /// that holds the fleet's keys now).
    fn conn(&self) -> redis::Connection;
    /// What the names of the fleet-wide keys a fleet with `prefix` writes start with.
    fn key_prefix(&self, prefix: &str) -> String;
    /// The game state stored for `room` by a fleet with `prefix`, as JSON.
    fn stored_game(&self, prefix: &str, room: &str) -> Option<String>;
    /// A plain connection to each of its servers.
    fn every_node(&self) -> Vec<redis::Connection>;
    /// A plain connection to the server that holds `key`.
    fn holding(&self, key: &str) -> redis::Connection;
    /// Stops every server: everything they held is lost.
    fn stop(&mut self);
    /// Starts them again where they were, empty (a cluster with its slots as before).
    fn start_again(&mut self);
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk: stopping it
/// loses everything, as a restart of the machine's Redis would.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            child: None,
        };
        redis.launch();
        redis
    }

    /// Redis on `port`, started now (for a server that was started before it).
    pub fn start_on(port: u16) -> PrivateRedis {
        let mut redis = PrivateRedis { port, child: None };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (`cargo xtask test` installs it)");
        self.child = Some(child);
        wait_for_ping(&self.url());
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Shared for PrivateRedis {
    fn target(&self) -> RedisTarget {
        RedisTarget::Server(self.url())
    }

    fn env(&self) -> (&'static str, String) {
        ("REDIS_URL", self.url())
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn key_prefix(&self, prefix: &str) -> String {
        prefix.to_string()
    }

    fn stored_game(&self, prefix: &str, room: &str) -> Option<String> {
        redis::Commands::hget(&mut self.conn(), format!("{prefix}game_states"), room).unwrap()
    }

    fn every_node(&self) -> Vec<redis::Connection> {
        vec![self.conn()]
    }

    fn holding(&self, _key: &str) -> redis::Connection {
        self.conn()
    }

    fn stop(&mut self) {
        PrivateRedis::stop(self)
    }

    fn start_again(&mut self) {
        self.launch()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of the test's own: three masters on free ports, no replicas, keeping nothing
/// on disk (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`).
pub struct LocalCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: std::path::PathBuf,
}

/// The slot a fleet's keys are in on a cluster (that of its hash tag, `{fleet}`).
const FLEET_SLOT_KEY: &str = "{fleet}";

impl LocalCluster {
    pub fn start() -> LocalCluster {
        let dir = std::env::temp_dir().join(format!(
            "gamehost-cluster-{}",
            unique_prefix().trim_end_matches(':').replace(':', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = LocalCluster {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        while cluster.ports.len() < 3 {
            // A port found free may be taken by another test's server before ours binds it (its
            // own or its bus port): then this one exits, and another port is tried.
            let port = free_cluster_port();
            let mut child = cluster.launch(port);
            if answers(&format!("redis://127.0.0.1:{port}"), &mut child) {
                cluster.children.push(child);
                cluster.ports.push(port);
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok();
        cluster
    }

    /// A node on `port`, its cluster state kept in this cluster's folder.
    fn launch(&self, port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            // Written only by an explicit `SAVE` (`stop_node`), and read when it starts again.
            .arg("--dbfilename")
            .arg(format!("dump-{port}.rdb"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (`cargo xtask test` installs it)")
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ports.iter().all(|port| self.node_is_ok(*port)) {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached state ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn node(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Whether the node at `port` answers and says the cluster is ok (false while it starts).
    fn node_is_ok(&self, port: u16) -> bool {
        let Ok(mut conn) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|client| client.get_connection())
        else {
            return false;
        };
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut conn)
            .unwrap_or_default();
        info.contains("cluster_state:ok")
    }

    /// The slot the fleet's keys are in.
    pub fn fleet_slot(&self) -> u16 {
        self.slot_of(FLEET_SLOT_KEY)
    }

    /// The slot `key` is in.
    pub fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.node(self.ports[0]))
            .unwrap()
    }

    /// The node that serves the slot of `key` now.
    pub fn node_of(&self, key: &str) -> redis::Connection {
        self.node(self.owner_of(self.slot_of(key)))
    }

    /// The port of the node that serves `slot` now, as the node asked first sees it.
    pub fn owner_of(&self, slot: u16) -> u16 {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.node(self.ports[0]))
            .unwrap();
        for range in ranges {
            // start, end, then the master: address, port, id and (Redis 7) more.
            let (start, end, master): (u16, u16, Vec<redis::Value>) =
                redis::FromRedisValue::from_redis_value(range).unwrap();
            if (start..=end).contains(&slot) {
                return redis::FromRedisValue::from_redis_value(master[1].clone()).unwrap();
            }
        }
        panic!("no node serves slot {slot}");
    }

    fn id_of(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.node(port))
            .unwrap()
    }

    /// Moves `slot` and its keys from the node that serves it to another, as
    /// `redis-cli --cluster reshard` does; returns the new owner's port.
    pub fn migrate_slot(&self, slot: u16) -> u16 {
        let from = self.owner_of(slot);
        let to = *self.ports.iter().find(|port| **port != from).unwrap();
        self.migrate_slot_to(slot, to);
        to
    }

    /// Moves `slot` and its keys to the node at `to` (nothing to do if it is there).
    pub fn migrate_slot_to(&self, slot: u16, to: u16) {
        let from = self.owner_of(slot);
        if from != to {
            self.migrate_slot_between(slot, from, to);
        }
    }

    /// Moves `slot` from the node at `from` to the node at `to`, as `redis-cli --cluster
    /// reshard` does.
    pub fn migrate_slot_between(&self, slot: u16, from: u16, to: u16) {
        let (from_id, to_id) = (self.id_of(from), self.id_of(to));
        let (mut source, mut target) = (self.node(from), self.node(to));
        let set = |conn: &mut redis::Connection, state: &str, id: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query(conn)
                .unwrap();
        };
        set(&mut target, "IMPORTING", &from_id);
        set(&mut source, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys)
                .query(&mut source)
                .unwrap();
        }
        for port in &self.ports {
            set(&mut self.node(*port), "NODE", &to_id);
        }
    }

    /// A connection to the node at `port`.
    pub fn node_conn(&self, port: u16) -> redis::Connection {
        self.node(port)
    }

    /// The nodes' ports.
    pub fn node_ports(&self) -> &[u16] {
        &self.ports
    }

    /// Saves the node at `port` to disk (`SAVE`), then kills it (`kill -9`): it answers
    /// nothing until [`LocalCluster::start_node`] starts it again with what it saved.
    pub fn stop_node(&mut self, port: u16) {
        let () = redis::cmd("SAVE").query(&mut self.node(port)).unwrap();
        let node = self.ports.iter().position(|p| *p == port).unwrap();
        let _ = self.children[node].kill();
        let _ = self.children[node].wait();
    }

    /// Lets the nodes answer for their own slots while another node is taken for failed
    /// (`cluster-require-full-coverage no`), as a fleet that would rather lose some matches
    /// for a while than all of them is configured.
    pub fn serve_the_slots_of_live_nodes(&self) {
        for port in &self.ports {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("cluster-require-full-coverage")
                .arg("no")
                .query(&mut self.node(*port))
                .unwrap();
        }
    }

    /// Has every node announce a port nobody listens on (`cluster-announce-port`), as nodes
    /// whose addresses changed do: a client told where a slot is cannot reach it. Returns once
    /// every node lists only those ports (the cluster's gossip carries them).
    pub fn announce_ports_nobody_listens_on(&self) {
        for port in &self.ports {
            self.announce(*port, free_port());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ports.iter().any(|port| {
            let listed = self.listed_ports(*port);
            self.ports.iter().any(|own| listed.contains(own))
        }) {
            assert!(
                Instant::now() < deadline,
                "the nodes never announced the new ports"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Has every node announce its own port again.
    pub fn announce_own_ports(&self) {
        for port in &self.ports {
            self.announce(*port, 0);
        }
    }

    fn announce(&self, node: u16, port: u16) {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-announce-port")
            .arg(port)
            .query(&mut self.node(node))
            .unwrap();
    }

    /// The masters' ports as the node at `port` lists them (`CLUSTER SLOTS`).
    fn listed_ports(&self, port: u16) -> Vec<u16> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.node(port))
            .unwrap();
        ranges
            .into_iter()
            .map(|range| {
                let (_, _, master): (u16, u16, Vec<redis::Value>) =
                    redis::FromRedisValue::from_redis_value(range).unwrap();
                redis::FromRedisValue::from_redis_value(master[1].clone()).unwrap()
            })
            .collect()
    }

    /// Stops the node at `port` where it stands (`SIGSTOP`): it keeps its connections open and
    /// answers nothing, as a hung machine or a lost network does, until
    /// [`LocalCluster::resume_node`].
    pub fn pause_node(&self, port: u16) {
        self.signal_node(port, "-STOP");
    }

    pub fn resume_node(&self, port: u16) {
        self.signal_node(port, "-CONT");
    }

    fn signal_node(&self, port: u16, signal: &str) {
        let node = self.ports.iter().position(|p| *p == port).unwrap();
        let pid = self.children[node].id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn start_node(&mut self, port: u16) {
        let node = self.ports.iter().position(|p| *p == port).unwrap();
        self.children[node] = self.launch(port);
        self.wait_until_ok();
    }
}

impl Shared for LocalCluster {
    fn target(&self) -> RedisTarget {
        RedisTarget::Cluster(self.env().1.split(',').map(String::from).collect())
    }

    fn env(&self) -> (&'static str, String) {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        ("REDIS_CLUSTER_NODES", nodes.join(","))
    }

    fn conn(&self) -> redis::Connection {
        self.node(self.owner_of(self.fleet_slot()))
    }

    fn key_prefix(&self, prefix: &str) -> String {
        format!("{prefix}{FLEET_SLOT_KEY}")
    }

    /// A room's game is a hash in the room's own slot (`game:{<room>}`).
    fn stored_game(&self, prefix: &str, room: &str) -> Option<String> {
        let key = format!("{prefix}game:{{{room}}}");
        redis::Commands::hget(&mut self.node_of(&key), key, "state").unwrap()
    }

    fn every_node(&self) -> Vec<redis::Connection> {
        self.ports.iter().map(|port| self.node(*port)).collect()
    }

    fn holding(&self, key: &str) -> redis::Connection {
        self.node_of(key)
    }

    fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    fn start_again(&mut self) {
        for port in self.ports.clone() {
            let child = self.launch(port);
            self.children.push(child);
            wait_for_ping(&format!("redis://127.0.0.1:{port}"));
        }
        self.wait_until_ok();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (10000 above it) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Whether the `redis-server` just started at `url` answers (false once it exited).
fn answers(url: &str, server: &mut Child) -> bool {
    answers_unless(url, || server.try_wait().unwrap().is_some())
}

fn wait_for_ping(url: &str) {
    answers_unless(url, || false);
}

/// Waits (up to 10 s) until Redis at `url` answers a `PING`: true, or false as soon as `gone`
/// says it never will.
fn answers_unless(url: &str, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if gone() {
            return false;
        }
        if let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection())
            && redis::cmd("PING").query::<String>(&mut conn).is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server at {url} never answered");
}

/// Cuts every pub/sub connection of the servers at `nodes` (`CLIENT KILL TYPE pubsub`) every
/// `every`, for `length`; the thread answers how many it cut.
pub fn cut_pub_sub(
    mut nodes: Vec<redis::Connection>,
    length: Duration,
    every: Duration,
) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let until = Instant::now() + length;
        let mut cut = 0;
        while Instant::now() < until {
            for conn in &mut nodes {
                let killed: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query(conn)
                    .unwrap();
                cut += killed;
            }
            std::thread::sleep(every);
        }
        cut
    })
}

/// An in-process server sharing `redis` under `prefix`.
pub async fn cluster_server(
    redis: &impl Shared,
    prefix: &str,
    tweak: impl FnOnce(&mut Config),
) -> RunningServer {
    let (target, prefix) = (redis.target(), prefix.to_string());
    crate::support::server(move |config| {
        config.redis = Some(target);
        config.redis_prefix = prefix;
        config.heartbeat_ttl = Duration::from_millis(1_000);
        tweak(config);
    })
    .await
}

/// The `gamehost` binary the tests run (`GAMEHOST_BIN`, else the debug build).
pub fn gamehost_binary() -> std::path::PathBuf {
    let binary = std::env::var_os("GAMEHOST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/gamehost"));
    assert!(
        binary.is_file(),
        "{} is missing: `cargo xtask test` builds it (or `cargo build -p host`)",
        binary.display()
    );
    binary
}

/// A `gamehost` process sharing `redis` under `prefix`.
pub struct HostProcess {
    pub port: u16,
    pub instance_id: String,
    child: Child,
    /// Where its standard error goes, when kept ([`HostProcess::standalone_logged`]).
    log: Option<std::path::PathBuf>,
}

impl Endpoint for HostProcess {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl HostProcess {
    pub async fn spawn(redis: &impl Shared, prefix: &str, env: &[(&str, &str)]) -> HostProcess {
        let (variable, value) = redis.env();
        let mut shared = vec![(variable, value.as_str()), ("REDIS_PREFIX", prefix)];
        shared.extend_from_slice(env);
        HostProcess::start(&shared, None, None).await
    }

    /// A `gamehost` process on its own, in memory.
    pub async fn standalone(env: &[(&str, &str)]) -> HostProcess {
        HostProcess::start(env, None, None).await
    }

    /// A `gamehost` process on its own whose standard error is kept ([`HostProcess::log`]).
    pub async fn standalone_logged(env: &[(&str, &str)]) -> HostProcess {
        let log = std::env::temp_dir().join(format!(
            "gamehost-{}.log",
            unique_prefix().trim_end_matches(':').replace(':', "-")
        ));
        HostProcess::start(env, None, Some(log)).await
    }

    /// What it wrote to standard error so far (kept by [`HostProcess::standalone_logged`]).
    pub fn log(&self) -> String {
        let path = self
            .log
            .as_ref()
            .expect("a process started with its log kept");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A `gamehost` process on its own that may open at most `files` files (`ulimit -n`).
    pub async fn standalone_with_open_files(files: u32, env: &[(&str, &str)]) -> HostProcess {
        HostProcess::start(env, Some(files), None).await
    }

    async fn start(
        env: &[(&str, &str)],
        open_files: Option<u32>,
        log: Option<std::path::PathBuf>,
    ) -> HostProcess {
        let binary = gamehost_binary();
        let port = free_port();
        let instance_id = format!("proc-{port}");
        let mut command = match open_files {
            None => Command::new(&binary),
            Some(files) => {
                let mut limited = Command::new("bash");
                limited
                    .arg("-c")
                    .arg(format!("ulimit -n {files} && exec \"$0\""))
                    .arg(&binary);
                limited
            }
        };
        let child = command
            .env("APP_PORT", port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("RULES_DIR", target_dir().join("rules"))
            .env("INSTANCE_ID", &instance_id)
            .env("HEARTBEAT_TTL_MS", "1000")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(match &log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("gamehost starts");
        let process = HostProcess {
            port,
            instance_id,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            let ready = client
                .get(format!("{}/health/ready", process.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gamehost on port {port} never became ready");
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// `kill -9`: no goodbye, no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -TERM`, without waiting.
    pub fn send_term(&self) {
        self.signal("TERM");
    }

    /// `kill -<name>` (`STOP` freezes the process as a long pause would, `CONT` thaws it).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let flag = format!("-{name}");
        let status = Command::new("kill").args([&flag, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// `kill -TERM`, then waits for the process to finish.
    pub async fn terminate(self) {
        self.send_term();
        self.wait_exit().await;
    }

    /// Waits for the process to finish (after [`HostProcess::send_term`]).
    pub async fn wait_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gamehost did not stop within 15 s of SIGTERM");
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
