//! What the multi-instance tests run on: private `redis-server`s and private Redis Clusters
//! ([`Shared`]; the cluster is `local_cluster`), in-process servers sharing one, and `gamehost`
//! processes (`host_process`, so an instance can be killed for real).

use host::config::{Config, RedisTarget};
use host::server::RunningServer;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::host_process::{HostProcess, gamehost_binary};
pub use crate::local_cluster::LocalCluster;

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
    /// The socket mappings a fleet with `prefix` stored, by socket id, as JSON (on a cluster,
    /// every instance's own hash).
    fn socket_mappings(&self, prefix: &str) -> BTreeMap<String, String>;
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

    fn socket_mappings(&self, prefix: &str) -> BTreeMap<String, String> {
        redis::Commands::hgetall(&mut self.conn(), format!("{prefix}socket_mappings")).unwrap()
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

/// Whether the `redis-server` just started at `url` answers (false once it exited).
pub(crate) fn answers(url: &str, server: &mut Child) -> bool {
    answers_unless(url, || server.try_wait().unwrap().is_some())
}

pub(crate) fn wait_for_ping(url: &str) {
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
                cut += kill_pub_sub(conn);
            }
            std::thread::sleep(every);
        }
        cut
    })
}

/// Cuts every pub/sub connection of the server `conn` reaches (`CLIENT KILL TYPE pubsub`);
/// how many it cut.
pub fn kill_pub_sub(conn: &mut redis::Connection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(conn)
        .unwrap()
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
