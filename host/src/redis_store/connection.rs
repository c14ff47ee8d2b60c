//! One Redis server or a Redis Cluster, behind one connection type.
//!
//! Both kinds reconnect by themselves, and both take the same commands and scripts. What
//! differs is said here and nowhere else:
//! - **pub/sub**: a cluster carries a channel on every node (`PUBLISH` is copied to all of them)
//!   unless it is sharded; ours are sharded (`SPUBLISH`, `SSUBSCRIBE`), so a message goes to the
//!   one node that owns its channel's slot;
//! - **key scans**: a cluster's `SCAN` answers for one node, so it is sent to the node that owns
//!   the fleet's slot for the fleet's keys, or to every master for rooms (a cleanup).

use super::cluster_conn::{HealingCluster, Watch};
use crate::config::RedisTarget;
use futures_util::FutureExt;
use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};
use redis::{PushInfo, PushKind};
use std::time::Duration;

/// The hash tag every key and channel of a fleet carries on a cluster (after its prefix), so
/// that every script's keys are in one slot.
pub const FLEET_TAG: &str = "{fleet}";

#[derive(Clone)]
pub enum Conn {
    Server(ConnectionManager),
    Cluster(HealingCluster),
}

/// How one connection is made.
#[derive(Clone)]
pub struct Settings<P> {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Where pushed messages (pub/sub, disconnections) go; `None` for a command connection.
    pub pushes: Option<P>,
}

impl Conn {
    /// Connects to `target`; fails if it does not answer a `PING` within the connect timeout.
    pub async fn open<P: AsyncPushSender + Clone>(
        target: &RedisTarget,
        settings: Settings<P>,
    ) -> Result<Conn, RedisError> {
        let timeout = settings.connect_timeout;
        let connect = async {
            let mut conn = match target {
                RedisTarget::Server(url) => Conn::Server(open_server(url, settings).await?),
                RedisTarget::Cluster(nodes) => Conn::Cluster(open_cluster(nodes, settings).await?),
            };
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(conn)
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// The command that publishes on a channel: sharded on a cluster (the scripts use it too).
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Subscribes to `channel` (kept across reconnections).
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            Conn::Server(conn) => conn.subscribe(channel).await,
            Conn::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            Conn::Server(conn) => conn.unsubscribe(channel).await,
            Conn::Cluster(conn) => conn.sunsubscribe(channel).await,
        }
    }

    /// Publishes `message` on `channel` (sharded on a cluster).
    pub async fn publish(
        &mut self,
        channel: &str,
        message: impl redis::ToRedisArgs,
    ) -> Result<(), RedisError> {
        redis::cmd(self.publish_command())
            .arg(channel)
            .arg(message)
            .query_async(self)
            .await
    }

    /// How many connections listen on `channel` (on a cluster: on the node that owns it).
    pub async fn subscribers(&mut self, channel: &str) -> Result<u16, RedisError> {
        let count = if self.is_cluster() {
            "SHARDNUMSUB"
        } else {
            "NUMSUB"
        };
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg(count).arg(channel);
        let (_, listeners): (String, u16) = self.query_where(cmd, channel).await?;
        Ok(listeners)
    }

    /// Runs a command that names no key where the keys like `key` are: on a cluster, on the node
    /// that owns `key`'s slot (`PUBSUB`).
    pub async fn query_where<T: FromRedisValue>(
        &mut self,
        cmd: Cmd,
        key: &str,
    ) -> Result<T, RedisError> {
        match self {
            Conn::Server(conn) => cmd.query_async(conn).await,
            Conn::Cluster(conn) => Ok(T::from_redis_value(
                conn.route_command(cmd, owner_of(key)).await?,
            )?),
        }
    }
}

/// On a cluster, the node that owns `key`'s slot.
fn owner_of(key: &str) -> RoutingInfo {
    let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))
}

impl Conn {
    /// Every key that matches `pattern`, on the one server or on every master of a cluster:
    /// for maintenance, never a hot path.
    pub async fn scan_everywhere(&mut self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let nodes: Vec<Option<RoutingInfo>> = match self {
            Conn::Server(_) => vec![None],
            Conn::Cluster(_) => self
                .masters()
                .await?
                .into_iter()
                .map(|(host, port)| {
                    let node = SingleNodeRoutingInfo::ByAddress { host, port };
                    Some(RoutingInfo::SingleNode(node))
                })
                .collect(),
        };
        let mut keys = Vec::new();
        for node in nodes {
            keys.extend(self.scan(pattern, node).await?);
        }
        Ok(keys)
    }

    /// Every key that matches `pattern` where the keys like `key` are (on a cluster, on the
    /// node that owns `key`'s slot).
    pub async fn scan_where(
        &mut self,
        pattern: &str,
        key: &str,
    ) -> Result<Vec<String>, RedisError> {
        let node = self.is_cluster().then(|| owner_of(key));
        self.scan(pattern, node).await
    }

    /// `SCAN` to its end on one node (`None`: the one server).
    async fn scan(
        &mut self,
        pattern: &str,
        node: Option<RoutingInfo>,
    ) -> Result<Vec<String>, RedisError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500);
            let (next, found): (u64, Vec<String>) = match (&mut *self, &node) {
                (Conn::Cluster(conn), Some(node)) => {
                    FromRedisValue::from_redis_value(conn.route_command(scan, node.clone()).await?)?
                }
                (conn, _) => scan.query_async(conn).await?,
            };
            keys.extend(found);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// A cluster's masters, as `CLUSTER SLOTS` lists them: (host, port).
    async fn masters(&mut self) -> Result<Vec<(String, u16)>, RedisError> {
        let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(self).await?;
        let mut masters = Vec::new();
        for range in ranges {
            // start, end, then the master: host, port, id and (Redis 7) more.
            let Some(Value::Array(master)) = range.get(2) else {
                continue;
            };
            if let [host, port, ..] = master.as_slice() {
                let node = (
                    String::from_redis_value(host.clone())?,
                    u16::from_redis_value(port.clone())?,
                );
                if !masters.contains(&node) {
                    masters.push(node);
                }
            }
        }
        Ok(masters)
    }
}

async fn open_server<P: AsyncPushSender>(
    url: &str,
    settings: Settings<P>,
) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(with_resp3(url).as_str())?;
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(2);
    if let Some(pushes) = settings.pushes {
        config = config
            .set_push_sender(pushes)
            .set_automatic_resubscription();
    }
    ConnectionManager::new_with_config(client, config).await
}

/// A cluster connection, made again from `nodes` if redis-rs loses every node of it
/// (`cluster_conn`). A subscriber's push sender is told of it as of a lost connection.
async fn open_cluster<P: AsyncPushSender + Clone>(
    nodes: &[String],
    settings: Settings<P>,
) -> Result<HealingCluster, RedisError> {
    let nodes: Vec<String> = nodes.iter().map(|node| with_resp3(node)).collect();
    let conn = connect_cluster(nodes.clone(), settings.clone()).await?;
    let pushes = settings.pushes.clone();
    // A subscriber (with a push sender) must notice a node's connection that redis-rs replaced
    // without a word; a command connection only needs to know that its nodes answer.
    let asks = if pushes.is_some() {
        Watch::NodeConnections
    } else {
        Watch::Ping
    };
    let open = move || {
        let connect = connect_cluster(nodes.clone(), settings.clone());
        async move {
            let mut conn = connect.await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(conn)
        }
        .boxed()
    };
    let remade = move || {
        if let Some(pushes) = &pushes {
            let lost = PushInfo {
                kind: PushKind::Disconnection,
                data: Vec::new(),
            };
            let _ = pushes.send(lost);
        }
    };
    Ok(HealingCluster::new(
        conn,
        Box::new(open),
        Box::new(remade),
        asks,
    ))
}

async fn connect_cluster<P: AsyncPushSender>(
    nodes: Vec<String>,
    settings: Settings<P>,
) -> Result<ClusterConnection, RedisError> {
    let mut builder = ClusterClient::builder(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        .retries(2)
        .min_retry_wait(50)
        .max_retry_wait(2_000);
    if let Some(pushes) = settings.pushes {
        builder = builder.push_sender(pushes);
    }
    builder.build()?.get_async_connection().await
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// `url` with `protocol=resp3` unless it names a protocol: pushed messages need RESP3.
pub fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}protocol=resp3")
}
