//! A Redis Cluster of the test's own: three masters started and joined here, and what the
//! cluster tests do to it (slots moved, nodes paused or restarted, ports announced wrong).

use crate::cluster_support::{Shared, answers, free_port, unique_prefix, wait_for_ping};
use host::config::RedisTarget;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        self.until_every_node_lists(
            |listed| !self.ports.iter().any(|own| listed.contains(own)),
            "the nodes never announced the new ports",
        );
    }

    /// Has every node announce its own port again, and waits until every node lists them all:
    /// nodes learn each other's ports by gossip, and one that still lists a port nobody listens
    /// on sends clients there (`MOVED`).
    pub fn announce_own_ports(&self) {
        for port in &self.ports {
            self.announce(*port, 0);
        }
        let mut own = self.ports.clone();
        own.sort_unstable();
        self.until_every_node_lists(
            |mut listed| {
                listed.sort_unstable();
                listed.dedup();
                listed == own
            },
            "the nodes never listed their own ports again",
        );
    }

    /// Waits (30 s at most, else panics with `never`) until the masters' ports every node
    /// lists satisfy `listed`.
    fn until_every_node_lists(&self, listed: impl Fn(Vec<u16>) -> bool, never: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .ports
            .iter()
            .all(|port| listed(self.listed_ports(*port)))
        {
            assert!(Instant::now() < deadline, "{never}");
            std::thread::sleep(Duration::from_millis(100));
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

    /// Each instance's sockets are a hash in the instance's slot (`instance:{<id>}:sockets`).
    fn socket_mappings(&self, prefix: &str) -> BTreeMap<String, String> {
        use redis::Commands;
        let mut mappings = BTreeMap::new();
        for mut node in self.every_node() {
            let lists: Vec<String> = node
                .keys(format!("{prefix}instance:{{*}}:sockets"))
                .unwrap();
            for list in lists {
                let held: BTreeMap<String, String> = node.hgetall(list).unwrap();
                mappings.extend(held);
            }
        }
        mappings
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
