//! `gamehost`: the game host server. Every flag can also be set by the environment variable
//! named beside it; `gamehost --help` lists them.

use clap::Parser;
use host::config::{BotSettings, Config, RedisTarget, default_instance_id};
use host::gateway::ClientLimits;
use host::listener::ConnectionLimits;
use host::runtime::Limits;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Where `cargo xtask build-rules` puts the modules of this checkout.
const BUILT_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/rules");
/// The pages of this checkout, with the npm packages `cargo xtask run` installs beside them.
const WEB_PAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");

#[derive(Debug, Parser)]
#[command(
    name = "gamehost",
    version,
    about = "A Socket.IO host for turn-based games whose rules are wasm modules"
)]
struct Args {
    /// Port for HTTP and Socket.IO.
    #[arg(long, env = "APP_PORT", default_value_t = 3030)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Folder of rules modules (`<game>.wasm`).
    #[arg(long, env = "RULES_DIR", default_value = BUILT_RULES)]
    rules_dir: PathBuf,
    /// The game matchmaking starts.
    #[arg(long, env = "GAME", default_value = "wizard-battle")]
    game: String,
    /// How long a round may take before it resolves with what was submitted.
    #[arg(long, env = "ROUND_TIMEOUT_MS", default_value_t = 30_000)]
    round_timeout_ms: u64,
    /// How long a disconnected player has to come back before forfeiting.
    #[arg(long, env = "RECONNECT_GRACE_MS", default_value_t = 30_000)]
    reconnect_grace_ms: u64,
    /// For a game that seats a range of players: how long the oldest of enough waiting players
    /// waits for more before its match starts with those there are.
    #[arg(long, env = "MATCH_FILL_MS", default_value_t = 5_000)]
    match_fill_ms: u64,
    /// A player who has waited this long is seated with the game's bots (games that have them);
    /// unset: only players who ask (`vsBot`) get bots.
    #[arg(long, env = "BOT_AFTER_MS")]
    bot_after_ms: Option<u64>,
    /// How long a bot waits before it acts.
    #[arg(long, env = "BOT_THINK_MS", default_value_t = 600)]
    bot_think_ms: u64,
    /// How long a finished game stays readable before it is forgotten.
    #[arg(long, env = "FINISHED_GAME_RETENTION_MS", default_value_t = 600_000)]
    finished_game_retention_ms: u64,
    /// On a Redis Cluster, how often the fleet removes rooms nobody was seated in and settles
    /// matches whose end it missed (what a crash between two steps leaves).
    #[arg(long, env = "TIDY_INTERVAL_MS", default_value_t = 300_000)]
    tidy_interval_ms: u64,
    /// Bearer token for admin endpoints; without it they answer loopback clients only.
    #[arg(long, env = "ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Largest event payload a client may send, in bytes.
    #[arg(long, env = "MAX_EVENT_BYTES", default_value_t = 16 * 1024)]
    max_event_bytes: usize,
    /// Sustained events per second one socket may send.
    #[arg(long, env = "EVENTS_PER_SECOND", default_value_t = 20)]
    events_per_second: u32,
    /// Events one socket may send in a burst.
    #[arg(long, env = "EVENT_BURST", default_value_t = 40)]
    event_burst: u32,
    /// Connections held at once; more are closed as they arrive (0: no limit). Lowered below
    /// the open-file limit if it is above it.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Connections held at once from one IP address (0: no limit; set 0 behind a load balancer).
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDR", default_value_t = 1_000)]
    max_connections_per_addr: usize,
    /// How long a client may take to send a request's headers, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    header_read_timeout_ms: u64,
    /// Largest HTTP request body or websocket message, in bytes; a larger one closes the
    /// connection.
    #[arg(long, env = "MAX_TRANSPORT_PAYLOAD", default_value_t = 1 << 20)]
    max_transport_payload: u64,
    /// Largest rules module accepted (upload or file), in bytes.
    #[arg(long, env = "RULES_MAX_MODULE_BYTES", default_value_t = 8 << 20)]
    rules_max_module_bytes: usize,
    /// Most functions a rules module may define.
    #[arg(long, env = "RULES_MAX_FUNCTIONS", default_value_t = 20_000)]
    rules_max_functions: u32,
    /// Time budget of one rules call, in milliseconds.
    #[arg(long, env = "RULES_CALL_BUDGET_MS", default_value_t = 200)]
    rules_call_budget_ms: u64,
    /// Memory cap of one rules instance, in MiB.
    #[arg(long, env = "RULES_MEMORY_MIB", default_value_t = 32)]
    rules_memory_mib: usize,
    /// Rules calls that may run at once.
    #[arg(long, env = "RULES_CONCURRENCY", default_value_t = 128)]
    rules_concurrency: u32,
    /// Redis to share state with other instances through (e.g. `redis://127.0.0.1:6379`).
    /// Unset: standalone, in memory. Unreachable at start: waited for, nothing served meanwhile.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// A Redis Cluster to share state through instead of one server: its seed nodes, comma
    /// separated (e.g. `redis://10.0.0.1:7000,redis://10.0.0.2:7000`). Not with REDIS_URL.
    #[arg(long, env = "REDIS_CLUSTER_NODES")]
    redis_cluster_nodes: Option<String>,
    /// Prefix of every Redis key and channel this fleet uses.
    #[arg(long, env = "REDIS_PREFIX", default_value = "")]
    redis_prefix: String,
    /// How long a Redis command may take before Redis counts as unreachable for it (the
    /// request then fails, or the instance goes on alone, see the README).
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = 2_000)]
    redis_response_timeout_ms: u64,
    /// How long an instance's heartbeat lives; a silent instance is reaped after this.
    #[arg(long, env = "HEARTBEAT_TTL_MS", default_value_t = 10_000)]
    heartbeat_ttl_ms: u64,
    /// On SIGTERM, how long the instance keeps its players while `/health/ready` answers 503
    /// and new sessions are refused, so that a load balancer takes it out of rotation before
    /// its players reconnect (a little over the balancer's checks: interval x fall).
    #[arg(long, env = "DRAIN_DELAY_MS", default_value_t = 0)]
    drain_delay_ms: u64,
    /// Folder of the pages (`/`, `/play`, `/console`) and of the npm packages they use.
    #[arg(long, env = "WEB_DIR", default_value = WEB_PAGES)]
    web_dir: PathBuf,
    /// Prometheus metrics at `/metrics`; `false` records none (no cost at all).
    #[arg(long, env = "METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    metrics: bool,
    /// Keep every match's log of inputs (`GET /matches/<room>/log`, `gamehost replay`).
    #[arg(long, env = "MATCH_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    match_log: bool,
    /// This instance's name in mappings and stats (default `<pid>-<start ms>`).
    #[arg(long, env = "INSTANCE_ID")]
    instance_id: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replays a match's log through the module versions it records (from RULES_DIR, or else
    /// the store at REDIS_URL) and checks every state and the outcome. Exits 0 when all agree,
    /// 1 where the replay diverges (saying at which entry), 2 when it cannot run.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The log as `GET /matches/<room>/log` answers it; `-` reads standard input.
    #[arg(required_unless_present = "room", conflicts_with = "room")]
    log: Option<PathBuf>,
    /// Read the log of this room from the store at REDIS_URL instead; repeat it to audit
    /// several matches in one run (one line each).
    #[arg(long)]
    room: Vec<String>,
}

impl Args {
    /// Where the fleet's Redis is, if anywhere.
    fn redis(&self) -> anyhow::Result<Option<RedisTarget>> {
        RedisTarget::from_settings(
            self.redis_url.as_deref(),
            self.redis_cluster_nodes.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    }

    fn config(self) -> anyhow::Result<Config> {
        let redis = self.redis()?;
        let mut config = Config::new(self.rules_dir);
        config.instance_id = self.instance_id.unwrap_or_else(default_instance_id);
        config.game = self.game;
        config.web_dir = Some(self.web_dir);
        config.metrics = self.metrics;
        config.match_log = self.match_log;
        config.round_timeout = Duration::from_millis(self.round_timeout_ms);
        config.reconnect_grace = Duration::from_millis(self.reconnect_grace_ms);
        config.match_fill = Duration::from_millis(self.match_fill_ms);
        config.bots = BotSettings {
            after: self.bot_after_ms.map(Duration::from_millis),
            think: Duration::from_millis(self.bot_think_ms),
        };
        config.finished_game_retention = Duration::from_millis(self.finished_game_retention_ms);
        config.tidy_interval = Duration::from_millis(self.tidy_interval_ms.max(1));
        config.admin_token = self.admin_token.filter(|t| !t.is_empty());
        config.client_limits = ClientLimits {
            max_event_bytes: self.max_event_bytes,
            events_per_second: self.events_per_second,
            burst: self.event_burst,
        };
        config.connection_limits = ConnectionLimits {
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_addr,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
        };
        config.transport_max_payload = self.max_transport_payload;
        config.redis = redis;
        config.redis_prefix = self.redis_prefix;
        config.redis_response_timeout =
            Duration::from_millis(self.redis_response_timeout_ms.max(1));
        config.heartbeat_ttl = Duration::from_millis(self.heartbeat_ttl_ms.max(300));
        config.drain_delay = Duration::from_millis(self.drain_delay_ms);
        config.runtime = Limits {
            call_budget: Duration::from_millis(self.rules_call_budget_ms),
            memory_bytes: self.rules_memory_mib << 20,
            concurrent_calls: self.rules_concurrency,
            module_bytes: self.rules_max_module_bytes,
            module_functions: self.rules_max_functions,
            ..Limits::default()
        };
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let mut args = Args::parse();
    if let Some(Command::Replay(replay)) = args.command.take() {
        std::process::exit(replay_command(args, replay).await);
    }
    host::listener::raise_open_file_limit();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    host::server::run(listener, args.config()?, shutdown_signal()).await?;
    Ok(())
}

/// `gamehost replay`: the exit code, the worst of every log's (0 identical, 1 diverged, 2
/// could not run).
async fn replay_command(args: Args, replay: ReplayArgs) -> i32 {
    let setup = match ReplaySetup::new(&args).await {
        Ok(setup) => setup,
        Err(error) => {
            eprintln!("gamehost replay: {error:#}");
            return 2;
        }
    };
    let logs: Vec<(Option<&str>, LogSource)> = match &replay.log {
        Some(path) => vec![(None, LogSource::File(path))],
        None => replay
            .room
            .iter()
            .map(|room| (Some(room.as_str()), LogSource::Room(room)))
            .collect(),
    };
    let mut worst = 0;
    for (room, source) in logs {
        let said = |line: String| match room {
            Some(room) => format!("{room}: {line}"),
            None => line,
        };
        let code = match setup.replay(source).await {
            Ok(Ok(replayed)) => {
                println!("{}", said(identical(&replayed)));
                0
            }
            Ok(Err(divergence)) => {
                println!("{}", said(format!("diverged at {divergence}")));
                1
            }
            Err(error) => {
                eprintln!("gamehost replay: {}", said(format!("{error:#}")));
                2
            }
        };
        worst = worst.max(code);
    }
    worst
}

fn identical(replayed: &host::replay::Replayed) -> String {
    format!(
        "identical: {} entries ({} rules calls) on module versions {:?}; outcome {}",
        replayed.entries,
        replayed.rules_calls,
        replayed.modules,
        match &replayed.winners {
            Some(winners) if winners.is_empty() => "a draw".to_string(),
            Some(winners) => format!("won by {winners:?}"),
            None => "still running".to_string(),
        }
    )
}

/// Where `gamehost replay` reads a log.
enum LogSource<'a> {
    File(&'a std::path::Path),
    Room(&'a str),
}

/// What every replay of one `gamehost replay` run shares: the engine, the rules folder and
/// the store.
struct ReplaySetup {
    engine: host::runtime::RulesEngine,
    rules_dir: PathBuf,
    store: Option<host::store::Store>,
}

impl ReplaySetup {
    async fn new(args: &Args) -> anyhow::Result<ReplaySetup> {
        use anyhow::Context;
        let store = match args.redis()? {
            Some(target) => Some(host::store::Store::Redis(
                host::store::RedisStore::connect(
                    &target,
                    &args.redis_prefix,
                    Duration::from_secs(5),
                )
                .await
                .with_context(|| format!("cannot reach {target}"))?,
            )),
            None => None,
        };
        Ok(ReplaySetup {
            engine: host::runtime::RulesEngine::new(Limits::default())?,
            rules_dir: args.rules_dir.clone(),
            store,
        })
    }

    async fn replay(
        &self,
        source: LogSource<'_>,
    ) -> anyhow::Result<Result<host::replay::Replayed, host::replay::Divergence>> {
        use anyhow::Context;
        let log: host::model::MatchLog = match source {
            LogSource::File(path) => {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?
                };
                serde_json::from_str(&text).context("the file is not a match log")?
            }
            LogSource::Room(room) => {
                let store = self.store.as_ref().context(
                    "--room reads the log from the store: set REDIS_URL or REDIS_CLUSTER_NODES (a lone instance keeps \
                     its matches in memory: save GET /matches/<room>/log and replay the file)",
                )?;
                let game = store
                    .game(room)
                    .await?
                    .with_context(|| format!("no match is stored under {room}"))?;
                game.log(store.match_log(room).await?)
            }
        };
        let modules = host::replay::modules_for(
            &log,
            &self.engine,
            Some(&self.rules_dir),
            self.store.as_ref(),
        )
        .await;
        Ok(host::replay::replay(&log, &modules))
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
