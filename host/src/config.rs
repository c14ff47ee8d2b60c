//! The host's settings, as a plain struct. `main` fills it from flags and the environment; tests
//! build it directly.

use crate::gateway::ClientLimits;
use crate::listener::ConnectionLimits;
pub use crate::matches::BotSettings;
use crate::runtime::Limits;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Names this process in socket mappings and stats: `<pid>-<start ms>`, as the original.
    pub instance_id: String,
    /// Where the rules modules are (`*.wasm`, the file stem names the game).
    pub rules_dir: PathBuf,
    /// The game matchmaking starts.
    pub game: String,
    pub round_timeout: Duration,
    pub reconnect_grace: Duration,
    /// How long the oldest of enough players for a match waits for more (a game that seats a
    /// range) before the match starts with those there are.
    pub match_fill: Duration,
    /// Bots: after how long a waiting player gets them, and how long they think.
    pub bots: BotSettings,
    /// How long a finished game stays readable (`getGameState`) before it is forgotten.
    pub finished_game_retention: Duration,
    /// On a Redis Cluster, how often the fleet looks for what a crash between the two steps of
    /// a match's start or end left behind (one instance looks each time).
    pub tidy_interval: Duration,
    /// Required as a bearer token by admin endpoints; without it they answer loopback only.
    pub admin_token: Option<String>,
    pub client_limits: ClientLimits,
    /// Connections held at once, in all and per address, and the deadline for request headers.
    pub connection_limits: ConnectionLimits,
    /// Engine.IO's own limit on one HTTP request body or websocket message; above it the
    /// connection closes (a websocket message as soon as its frame header announces it).
    /// Keep it well above `client_limits.max_event_bytes`, which gets a clear error instead.
    pub transport_max_payload: u64,
    /// Packets buffered per socket before emits to it fail.
    pub socket_buffer: usize,
    pub runtime: Limits,
    /// Redis to share state with other instances through; `None` runs alone, in memory.
    pub redis: Option<RedisTarget>,
    /// Prepended to every Redis key and channel, so several fleets (or tests) share one Redis.
    pub redis_prefix: String,
    /// How long a Redis command may take before Redis counts as unreachable for it.
    pub redis_response_timeout: Duration,
    /// How long an instance's heartbeat lives: others reap a silent instance after this.
    pub heartbeat_ttl: Duration,
    /// How long a terminated instance stays out of rotation with its players still on it.
    pub drain_delay: Duration,
    /// The pages and the npm packages they load (`web/` of the checkout); `None` serves none.
    pub web_dir: Option<PathBuf>,
    /// Whether to record Prometheus metrics (and serve `/metrics`).
    pub metrics: bool,
    /// Whether every match keeps its log of inputs (`GET /matches/<room>/log`, replay).
    pub match_log: bool,
}

impl Config {
    /// Defaults for everything but where the rules are.
    pub fn new(rules_dir: impl Into<PathBuf>) -> Self {
        Config {
            instance_id: default_instance_id(),
            rules_dir: rules_dir.into(),
            game: "wizard-battle".into(),
            round_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(30),
            match_fill: Duration::from_secs(5),
            bots: BotSettings::default(),
            finished_game_retention: Duration::from_secs(600),
            tidy_interval: Duration::from_secs(300),
            admin_token: None,
            client_limits: ClientLimits::default(),
            connection_limits: ConnectionLimits::default(),
            transport_max_payload: 1 << 20,
            socket_buffer: 1024,
            runtime: Limits::default(),
            redis: None,
            redis_prefix: String::new(),
            redis_response_timeout: crate::redis_store::RESPONSE_TIMEOUT,
            heartbeat_ttl: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            web_dir: None,
            metrics: true,
            match_log: true,
        }
    }
}

pub fn default_instance_id() -> String {
    format!("{}-{}", std::process::id(), crate::model::now_ms())
}

/// Where a fleet's Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`REDIS_URL`).
    Server(String),
    /// A Redis Cluster, found through these seed nodes (`REDIS_CLUSTER_NODES`).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The target the two settings name (empty counts as unset): neither runs alone in memory;
    /// both is a mistake worth refusing to start over, since either choice could be the wrong one.
    pub fn from_settings(
        url: Option<&str>,
        cluster_nodes: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let url = url.map(str::trim).filter(|url| !url.is_empty());
        let nodes: Vec<String> = cluster_nodes
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(String::from)
            .collect();
        match (url, nodes.is_empty()) {
            (Some(_), false) => Err(
                "REDIS_URL and REDIS_CLUSTER_NODES are both set: set REDIS_URL for one Redis server, \
                 or REDIS_CLUSTER_NODES for a Redis Cluster"
                    .into(),
            ),
            (Some(url), true) => Ok(Some(RedisTarget::Server(url.to_string()))),
            (None, false) => Ok(Some(RedisTarget::Cluster(nodes))),
            (None, true) => Ok(None),
        }
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Server(url) => write!(f, "Redis at {url}"),
            RedisTarget::Cluster(nodes) => write!(f, "the Redis Cluster at {}", nodes.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn redis_is_one_server_a_cluster_or_none_but_never_both() {
        assert_eq!(RedisTarget::from_settings(None, None), Ok(None));
        assert_eq!(RedisTarget::from_settings(Some(""), Some(" , ")), Ok(None));
        assert_eq!(
            RedisTarget::from_settings(Some("redis://h:1"), None),
            Ok(Some(RedisTarget::Server("redis://h:1".into())))
        );
        assert_eq!(
            RedisTarget::from_settings(None, Some("redis://a:1, redis://b:2,")),
            Ok(Some(RedisTarget::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into()
            ])))
        );
        let both = RedisTarget::from_settings(Some("redis://h:1"), Some("redis://a:1"));
        assert!(both.unwrap_err().contains("both set"));
    }
}
