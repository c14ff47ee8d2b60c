//! The Redis a chaos run's fleet stores everything in: one server, or (`--cluster`) a Redis
//! Cluster of three masters. Every node is behind a proxy of the run's (see `proxy`), so that
//! Redis can be made slow or unreachable for the whole fleet. A cluster's nodes announce their
//! proxies' ports (`cluster-announce-port`), so the instances, told where a slot lives, go
//! through the proxies too; the nodes' own cluster bus does not.
//!
//! The faults of this layer: a node killed and started again from its append-only file, every
//! proxy slowed or cut, and, on a cluster, a slot moved to another node with its keys (a
//! running match's room, or the fleet's own slot) as `redis-cli --cluster reshard` moves them.

use super::fleet::{Redis, free_port};
use super::proxy::{Mode, Proxy};
use anyhow::{Context, Result, bail};
use rand::Rng;
use redis::aio::MultiplexedConnection;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hash tag that puts the fleet's own keys in one slot.
const FLEET_TAG: &str = "{fleet}";
const MASTERS: usize = 3;

pub struct Backend {
    nodes: Vec<Redis>,
    proxies: Vec<Proxy>,
    /// On a cluster, each node's id (kept across its restarts, in its `nodes.conf`).
    ids: Vec<String>,
    cluster: bool,
}

impl Backend {
    /// One server behind a proxy.
    pub async fn single(dir: &Path) -> Result<Backend> {
        let port = free_port()?;
        let proxy = Proxy::start(port).await?;
        let redis = Redis::start(dir.join("redis"), port, Vec::new()).await?;
        Ok(Backend {
            nodes: vec![redis],
            proxies: vec![proxy],
            ids: Vec::new(),
            cluster: false,
        })
    }

    /// Three masters, each behind its proxy, joined by `redis-cli --cluster create`.
    pub async fn cluster(dir: &Path) -> Result<Backend> {
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        for node in 0..MASTERS {
            let port = free_cluster_port()?;
            let proxy = Proxy::start(port).await?;
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                // Longer than any outage the run makes: a node restarted is never failed over
                // (there are no replicas), its slots only unreachable while it is down.
                "--cluster-node-timeout",
                "5000",
                "--cluster-announce-port",
                &proxy.port.to_string(),
            ]
            .map(str::to_string)
            .to_vec();
            nodes.push(Redis::start(dir.join(format!("redis-{node}")), port, extra).await?);
            proxies.push(proxy);
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("redis-cli does not run (Debian's redis-tools package has it)")?;
        if !created.success() {
            bail!("redis-cli --cluster create failed");
        }
        let mut backend = Backend {
            nodes,
            proxies,
            ids: Vec::new(),
            cluster: true,
        };
        backend.wait_until_ok().await?;
        for node in 0..MASTERS {
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut backend.conn(node).await?)
                .await?;
            backend.ids.push(id);
        }
        Ok(backend)
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// How the instances reach it: through the proxies.
    pub fn instance_env(&self) -> (&'static str, String) {
        self.env(self.proxies.iter().map(|p| p.port))
    }

    /// How a tool reaches it once the faults are over: straight to the nodes.
    pub fn direct_env(&self) -> (&'static str, String) {
        self.env(self.nodes.iter().map(|n| n.port))
    }

    fn env(&self, ports: impl Iterator<Item = u16>) -> (&'static str, String) {
        let urls: Vec<String> = ports.map(|p| format!("redis://127.0.0.1:{p}")).collect();
        if self.cluster {
            ("REDIS_CLUSTER_NODES", urls.join(","))
        } else {
            ("REDIS_URL", urls.join(","))
        }
    }

    /// Every node slow, unreachable, or reached again.
    pub fn set(&self, mode: Mode) {
        for proxy in &self.proxies {
            proxy.set(mode);
        }
    }

    /// `kill -9` of a node, `down_for`, and back with what its append-only file kept.
    pub async fn restart(&mut self, rng: &mut impl Rng, down_for: Duration) -> Result<String> {
        let node = rng.random_range(0..self.nodes.len());
        self.nodes[node].restart(down_for).await?;
        if !self.cluster {
            return Ok(format!("down for {down_for:?}"));
        }
        self.wait_until_ok().await?;
        Ok(format!("node {node} down for {down_for:?}"))
    }

    /// Moves a slot with its keys to another node: a room's (a match's game, logs and channel)
    /// two times out of three, else the fleet's (sessions, queues, registry).
    pub async fn move_slot(&self, rng: &mut impl Rng, prefix: &str) -> Result<String> {
        if !self.cluster {
            bail!("only a cluster has slots to move");
        }
        let mut first = self.conn(0).await?;
        let room_key = if rng.random_bool(2.0 / 3.0) {
            self.a_room_key(rng, prefix).await?
        } else {
            None
        };
        let (key, what) = match &room_key {
            Some(key) => (key.as_str(), "a room's"),
            None => (FLEET_TAG, "the fleet's"),
        };
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut first)
            .await?;
        let from = self.owner_of(slot).await?;
        let to = (from + rng.random_range(1..self.nodes.len())) % self.nodes.len();
        self.migrate(slot, from, to).await?;
        Ok(format!("{what} slot {slot} from node {from} to node {to}"))
    }

    /// A key of a game stored by the run (`<prefix>game:{<room>}`), if there is one.
    async fn a_room_key(&self, rng: &mut impl Rng, prefix: &str) -> Result<Option<String>> {
        let node = rng.random_range(0..self.nodes.len());
        let mut conn = self.conn(node).await?;
        let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(format!("{prefix}game:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(keys[rng.random_range(0..keys.len())].clone()))
    }

    /// Which node serves `slot` now, as the first node sees it.
    async fn owner_of(&self, slot: u16) -> Result<usize> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conn(0).await?)
            .await?;
        for range in ranges {
            // start, end, then the master: address, port, id and (Redis 7) more.
            let (start, end, master): (u16, u16, Vec<redis::Value>) =
                redis::FromRedisValue::from_redis_value(range)?;
            if (start..=end).contains(&slot) {
                let id: String = redis::FromRedisValue::from_redis_value(master[2].clone())?;
                return self
                    .ids
                    .iter()
                    .position(|known| *known == id)
                    .with_context(|| format!("no node has the id {id}"));
            }
        }
        bail!("no node serves slot {slot}")
    }

    /// The steps of `redis-cli --cluster reshard` for one slot: the target imports it, the
    /// source migrates it, its keys are moved in batches, and every node is told its owner.
    async fn migrate(&self, slot: u16, from: usize, to: usize) -> Result<()> {
        let (from_id, to_id) = (&self.ids[from], &self.ids[to]);
        let (mut source, mut target) = (self.conn(from).await?, self.conn(to).await?);
        set_slot(&mut target, slot, "IMPORTING", from_id).await?;
        set_slot(&mut source, slot, "MIGRATING", to_id).await?;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut source)
                .await?;
            if keys.is_empty() {
                break;
            }
            let () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut source)
                .await?;
        }
        for node in 0..self.nodes.len() {
            set_slot(&mut self.conn(node).await?, slot, "NODE", to_id).await?;
        }
        Ok(())
    }

    async fn wait_until_ok(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for node in 0..self.nodes.len() {
                let info: String = match self.conn(node).await {
                    Ok(mut conn) => redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                ok &= info.contains("cluster_state:ok");
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster did not reach state ok within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A connection straight to a node, past its proxy.
    async fn conn(&self, node: usize) -> Result<MultiplexedConnection> {
        let url = format!("redis://127.0.0.1:{}", self.nodes[node].port);
        Ok(redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?)
    }
}

async fn set_slot(
    conn: &mut MultiplexedConnection,
    slot: u16,
    state: &str,
    id: &str,
) -> Result<()> {
    let () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(id)
        .query_async(conn)
        .await?;
    Ok(())
}

/// A free port whose cluster bus port (10,000 above) is free too.
fn free_cluster_port() -> Result<u16> {
    loop {
        let port = free_port()?;
        if port < 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
}
