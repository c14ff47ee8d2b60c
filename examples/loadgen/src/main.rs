//! Load generator for gamehost. Start instances (see the README), then:
//!
//! ```text
//! # 1,000 bots play whole wizard-battle matches for 60 s against two instances
//! cargo run --release -p loadgen -- play --urls http://127.0.0.1:3030,http://127.0.0.1:3031 --players 1000
//! # 50 pairs ping-pong `gameMessage`, each pair's players on different instances
//! cargo run --release -p loadgen -- pingpong --urls http://127.0.0.1:3030,http://127.0.0.1:3031 --pairs 50
//! # chat at 2,000 messages/s over 4 instances, and what each costs (CPU from /proc)
//! cargo run --release -p loadgen -- relay --urls http://127.0.0.1:3030,http://127.0.0.1:3031,http://127.0.0.1:3032,http://127.0.0.1:3033 --rate 2000 --pids 11,12,13,14
//! # memory per idle socket: 1,000 sockets that only connect, RSS of the given server processes
//! cargo run --release -p loadgen -- idle --urls http://127.0.0.1:3030 --sockets 1000 --pids 1234
//! # what 10,000 connections that send their connect and reset at once leave behind
//! cargo run --release -p loadgen -- churn --urls http://127.0.0.1:3030 --connections 10000 --pids 1234
//! # 1,000 players join liar's dice over three levels at once, on three instances
//! cargo run --release -p loadgen -- matchmaking --urls http://127.0.0.1:3030,http://127.0.0.1:3031,http://127.0.0.1:3032 --players 1000 --game liars-dice --levels 3
//! # a chaos run: its own Redis and 3 instances, 16 players, faults at random for 2 minutes
//! cargo run -p loadgen -- chaos --secs 120
//! # the same on its own three-master Redis Cluster, with slot migrations among the faults
//! cargo run -p loadgen -- chaos --secs 120 --cluster
//! ```
//!
//! Bots connect round-robin over the URLs (in `play`, spread over `--ramp-secs`). While it runs, a status line shows progress; at the
//! end it prints throughput, round-trip latency (p50/p99/max) and every error by kind.
//!
//! The host limits events per socket (`EVENTS_PER_SECOND`, default 20): raise it on the
//! instances for `pingpong`, which sends as fast as answers come back.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use example_bot::Inbox;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rust_socketio::Payload;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod chaos;
mod churn;
mod idle;
mod matchmaking;
mod meter;
mod pingpong;
mod play;
mod relay;
mod swap;

#[derive(Debug, Parser)]
#[command(about = "Load generator for gamehost")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Bots play whole matches, queueing again after each, until time is up.
    Play {
        /// Instances, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        players: usize,
        #[arg(long, default_value_t = 60)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        level: i64,
        /// Bots start evenly spread over this many seconds (connection storms aside, this is
        /// what a real fleet sees).
        #[arg(long, default_value_t = 5)]
        ramp_secs: u64,
    },
    /// Pairs (players on different instances) bounce `gameMessage` back and forth.
    Pingpong {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// Chat at a fixed rate (messages per second over all pairs, whatever the number of
    /// instances), each message across two instances; reports the hosts' CPU per message.
    Relay {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 64)]
        pairs: usize,
        /// Messages per second, over all pairs.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// The instances' processes, in the order of `--urls`, whose CPU time to read.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// Processes of instances in the fleet that hold no player.
        #[arg(long, value_delimiter = ',')]
        idle_pids: Vec<u32>,
        /// The instances run under valgrind's callgrind, writing to `<DIR>/callgrind.<pid>`:
        /// count the instructions they run instead of their CPU time.
        #[arg(long, value_name = "DIR")]
        callgrind_dumps: Option<std::path::PathBuf>,
    },
    /// Swaps the rules module again and again (uploads to each instance in turn, or writes into
    /// a watched folder) and measures how long until every instance serves the new version.
    Swap {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        /// The module to swap in; each swap makes it a new version by appending a custom section.
        #[arg(long)]
        module: std::path::PathBuf,
        #[arg(long, default_value = "wizard-battle")]
        game: String,
        #[arg(long, default_value_t = 20)]
        times: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Write the module into this (watched) folder instead of uploading it.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// `ADMIN_TOKEN` of the instances, if they have one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Sockets that connect and do nothing; reports the servers' memory per socket.
    Idle {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        /// Server processes whose resident memory to read (from /proc).
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// How long to let the servers settle before each reading.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
    },
    /// Players connect, then all join one game's queues at once; reports matches formed per
    /// second and when the last player was matched.
    Matchmaking {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        players: usize,
        #[arg(long, default_value = "wizard-battle")]
        game: String,
        /// Players spread over levels 1 to this.
        #[arg(long, default_value_t = 1)]
        levels: i64,
        /// How long a player may wait for its match.
        #[arg(long, default_value_t = 60)]
        limit_secs: u64,
    },
    /// Starts its own Redis (one server or a cluster, behind proxies it controls) and
    /// `gamehost` instances, plays with players that reconnect and resume, injects faults at
    /// random (kill -9, SIGTERM, Redis restart, Redis slow or unreachable, module swap and
    /// rollback, and on a cluster slot migrations), then checks that nothing
    /// was lost, doubled or reordered and that every match replays. Exits 1 if an invariant
    /// broke.
    Chaos {
        #[arg(long, default_value_t = 3)]
        instances: usize,
        #[arg(long, default_value_t = 16)]
        players: usize,
        /// How long faults are injected (at least one of each kind, whatever this says).
        #[arg(long, default_value_t = 120)]
        secs: u64,
        /// The mean pause between faults.
        #[arg(long, default_value_t = 3000)]
        fault_every_ms: u64,
        /// How long matches may take to finish once the faults stop.
        #[arg(long, default_value_t = 60)]
        drain_secs: u64,
        /// The `gamehost` binary (default: the one beside this program).
        #[arg(long)]
        gamehost: Option<std::path::PathBuf>,
        /// Where the rules modules are (default: `rules/` beside this program's folder).
        #[arg(long)]
        rules_dir: Option<std::path::PathBuf>,
        /// Where to keep Redis's files and the instances' logs.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Seeds the faults' kinds and timing (printed at the start of every run).
        #[arg(long)]
        seed: Option<u64>,
        /// What the instances log (their `RUST_LOG`), into `--dir`.
        #[arg(long, default_value = "warn")]
        instance_log: String,
        /// Runs the fleet on a three-master Redis Cluster, each node behind its proxy, and
        /// adds slot migrations to the faults.
        #[arg(long)]
        cluster: bool,
    },
    /// Connections that send their connect and reset at once; reports what the servers kept of
    /// them (mappings, sessions, memory).
    Churn {
        #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3030")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Server processes whose resident memory to read (from /proc).
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// How long to let the servers settle before the second reading (let it exceed the
        /// instances' `RECONNECT_GRACE_MS`: released sessions live that long).
        #[arg(long, default_value_t = 5)]
        settle_secs: u64,
    },
}

/// What every bot reports into.
struct Stats {
    started: Instant,
    /// Round trips in microseconds.
    rtt: Mutex<Histogram<u64>>,
    completed: AtomicU64,
    /// When the last match ended, in ms after `started`: the rate is over the time matches ran,
    /// not over the tail where the last bots wait for opponents that stopped queueing.
    last_completed_ms: AtomicU64,
    round_trips: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Connection attempts that failed and were tried again (not errors unless all failed).
    retried_connects: AtomicU64,
}

impl Stats {
    fn new() -> Arc<Stats> {
        Arc::new(Stats {
            started: Instant::now(),
            rtt: Mutex::new(Histogram::new(3).expect("3 significant figures is valid")),
            completed: AtomicU64::new(0),
            last_completed_ms: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            errors: Mutex::default(),
            retried_connects: AtomicU64::new(0),
        })
    }

    fn round_trip(&self, took: Duration) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let micros = took.as_micros().max(1) as u64;
        let _ = self.rtt.lock().unwrap().record(micros);
    }

    fn error(&self, kind: impl Into<String>) {
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.lock().unwrap().values().sum()
    }

    fn latency(&self) -> (f64, f64, f64) {
        let rtt = self.rtt.lock().unwrap();
        let ms = |micros: u64| micros as f64 / 1000.0;
        (
            ms(rtt.value_at_quantile(0.5)),
            ms(rtt.value_at_quantile(0.99)),
            ms(rtt.max()),
        )
    }
}

/// A status line that refreshes every quarter second until the returned guard is dropped.
fn progress(stats: Arc<Stats>, what: &'static str, total: Duration) -> impl Drop {
    let bar = ProgressBar::new(total.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos:>3}/{len}s {msg}").expect("a valid template"),
    );
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (p50, p99, _) = stats.latency();
            shown.set_position(stats.started.elapsed().as_secs().min(total.as_secs()));
            shown.set_message(format!(
                "{what} {} | round trips {} | p50 {p50:.1} ms p99 {p99:.1} ms | errors {}",
                stats.completed.load(Ordering::Relaxed),
                stats.round_trips.load(Ordering::Relaxed),
                stats.error_count()
            ));
        }
    });
    struct Guard(ProgressBar, tokio::task::JoinHandle<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.abort();
            self.0.finish_and_clear();
        }
    }
    Guard(bar, task)
}

/// The first argument of an acknowledgement (`rust_socketio` hands over the argument array).
fn ack_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => match values.swap_remove(0) {
            Value::Array(mut arguments) if !arguments.is_empty() => arguments.swap_remove(0),
            other => other,
        },
        _ => Value::Null,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().mode {
        Mode::Play {
            urls,
            players,
            secs,
            level,
            ramp_secs,
        } => {
            let ramp = Duration::from_secs(ramp_secs);
            play::play(urls, players, Duration::from_secs(secs), level, ramp).await
        }
        Mode::Pingpong { urls, pairs, secs } => {
            pingpong::pingpong(urls, pairs, Duration::from_secs(secs)).await
        }
        Mode::Relay {
            urls,
            pairs,
            rate,
            secs,
            pids,
            idle_pids,
            callgrind_dumps,
        } => {
            relay::relay(relay::Relay {
                urls,
                pairs,
                rate,
                length: Duration::from_secs(secs),
                pids,
                idle_pids,
                meter: match callgrind_dumps {
                    Some(dumps) => meter::Meter::Instructions { dumps },
                    None => meter::Meter::CpuTime,
                },
            })
            .await
        }
        Mode::Swap {
            urls,
            module,
            game,
            times,
            interval_ms,
            dir,
            token,
        } => {
            let interval = Duration::from_millis(interval_ms);
            let swaps = swap::Swaps {
                urls,
                game,
                dir,
                token,
            };
            swap::swap(swaps, &module, times, interval).await
        }
        Mode::Idle {
            urls,
            sockets,
            pids,
            settle_secs,
        } => idle::idle(urls, sockets, pids, Duration::from_secs(settle_secs)).await,
        Mode::Churn {
            urls,
            connections,
            pids,
            settle_secs,
        } => churn::churn(urls, connections, pids, Duration::from_secs(settle_secs)).await,
        Mode::Chaos {
            instances,
            players,
            secs,
            fault_every_ms,
            drain_secs,
            gamehost,
            rules_dir,
            dir,
            seed,
            instance_log,
            cluster,
        } => {
            let beside = std::env::current_exe()?
                .parent()
                .context("this program's folder")?
                .to_path_buf();
            let settings = chaos::Chaos {
                instances,
                players,
                length: Duration::from_secs(secs),
                drain: Duration::from_secs(drain_secs),
                fault_every: Duration::from_millis(fault_every_ms),
                gamehost: gamehost.unwrap_or_else(|| beside.join("gamehost")),
                rules_dir: rules_dir.unwrap_or_else(|| beside.join("../rules")),
                dir,
                seed,
                instance_log,
                cluster,
            };
            if !chaos::chaos(settings).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Mode::Matchmaking {
            urls,
            players,
            game,
            levels,
            limit_secs,
        } => {
            let limit = Duration::from_secs(limit_secs);
            matchmaking::matchmaking(urls, players, game, levels, limit).await
        }
    }
}

fn report(stats: &Stats, done: &str, per: u64, took: Duration) {
    let (p50, p99, max) = stats.latency();
    let secs = took.as_secs_f64();
    println!("rates over {secs:.1} s");
    println!("{done}: {per} ({:.1}/s)", per as f64 / secs);
    let round_trips = stats.round_trips.load(Ordering::Relaxed);
    println!(
        "round trips: {round_trips} ({:.0}/s); p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        round_trips as f64 / secs
    );
    let retried = stats.retried_connects.load(Ordering::Relaxed);
    if retried > 0 {
        println!("connection attempts retried: {retried}");
    }
    let errors = stats.errors.lock().unwrap();
    println!("errors: {}", errors.values().sum::<u64>());
    for (kind, count) in errors.iter() {
        println!("  {kind}: {count}");
    }
}

async fn wait_for(inbox: &mut Inbox, wanted: &str) -> Result<Value> {
    let wait = async {
        while let Some((event, data)) = inbox.recv().await {
            if event == wanted {
                return Some(data);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .ok()
        .flatten()
        .with_context(|| format!("no {wanted} within 30 s"))
}
