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

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rust_socketio::Payload;
use rust_socketio::asynchronous::Client;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod chaos;
mod churn;
mod matchmaking;
mod relay;

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

use example_bot::{Inbox, connect};

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
            play(urls, players, Duration::from_secs(secs), level, ramp).await
        }
        Mode::Pingpong { urls, pairs, secs } => {
            pingpong(urls, pairs, Duration::from_secs(secs)).await
        }
        Mode::Relay {
            urls,
            pairs,
            rate,
            secs,
            pids,
            idle_pids,
        } => {
            relay::relay(relay::Relay {
                urls,
                pairs,
                rate,
                length: Duration::from_secs(secs),
                pids,
                idle_pids,
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
            let swaps = Swaps {
                urls,
                game,
                dir,
                token,
            };
            swap(swaps, &module, times, interval).await
        }
        Mode::Idle {
            urls,
            sockets,
            pids,
            settle_secs,
        } => idle(urls, sockets, pids, Duration::from_secs(settle_secs)).await,
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

async fn play(
    urls: Vec<String>,
    players: usize,
    length: Duration,
    level: i64,
    ramp: Duration,
) -> Result<()> {
    if urls.is_empty() {
        bail!("give at least one --urls");
    }
    let stats = Stats::new();
    let deadline = Instant::now() + length;
    let guard = progress(stats.clone(), "matches", length);
    let bots: Vec<_> = (0..players)
        .map(|n| {
            let (url, stats) = (urls[n % urls.len()].clone(), stats.clone());
            let start_after = ramp.mul_f64(n as f64 / players as f64);
            tokio::spawn(async move {
                tokio::time::sleep(start_after).await;
                if let Err(error) = play_bot(&url, level, deadline, &stats).await {
                    stats.error(format!("bot failed: {error:#}"));
                }
            })
        })
        .collect();
    for bot in bots {
        let _ = bot.await;
    }
    drop(guard);
    // Both players of a match see its end.
    let matches = stats.completed.load(Ordering::Relaxed) / 2;
    report(
        &stats,
        "matches completed",
        matches,
        stats.started.elapsed(),
    );
    Ok(())
}

/// One bot: queues, plays each match to its end, queues again, until `deadline`. The action
/// round trip is from `submitAction` to its acknowledgement (the state is stored by then).
async fn play_bot(url: &str, level: i64, deadline: Instant, stats: &Arc<Stats>) -> Result<()> {
    // As a real client would, try again when a connection attempt fails; each retry is counted.
    let mut attempt = 1;
    let (client, mut events, tx) = loop {
        match connect(url).await {
            Ok(connected) => break connected,
            Err(error) if attempt < 3 => {
                stats.retried_connects.fetch_add(1, Ordering::Relaxed);
                tracing_error(&error);
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error),
        }
    };
    let mut room = String::new();
    let mut last_view = Value::Null;
    let mut cast_in_round = None;
    let mut in_match = false;
    // One action awaits its answer at a time, and the next waits for it: rust_socketio 0.6 picks
    // acknowledgement ids at random below 999, and two outstanding ones that share an id crash
    // its event loop.
    let mut awaiting_answer = false;
    let mut next_action: Option<Value> = None;
    let wait = deadline + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(wait.into(), events.recv()).await;
        let Ok(Some((event, data))) = next else {
            if in_match {
                stats.error("a match did not end in time");
            }
            break;
        };
        match event.as_str() {
            "session" => {
                client
                    .emit("joinMatchmaking", json!({ "level": level }))
                    .await?;
            }
            "matchFound" => {
                room = data["roomId"].as_str().unwrap_or_default().to_string();
                in_match = true;
                cast_in_round = None;
            }
            "view" => {
                last_view = data["view"].clone();
                let view = &data["view"];
                let you = &view["you"];
                let open =
                    you["alive"] == true && you["submitted"].is_null() && view["winners"].is_null();
                if open && cast_in_round != view["round"].as_u64() {
                    cast_in_round = view["round"].as_u64();
                    let action = example_bot::choose(view);
                    if awaiting_answer {
                        next_action = Some(action);
                    } else {
                        awaiting_answer = true;
                        submit(&client, &room, action, stats, &tx).await?;
                    }
                }
            }
            "__answered" => {
                awaiting_answer = false;
                if data["success"] == true {
                    if let Some(action) = next_action.take() {
                        awaiting_answer = true;
                        submit(&client, &room, action, stats, &tx).await?;
                    }
                    continue;
                }
                next_action = None;
                if data["code"] == "rate_limited" {
                    // Too many refused tries too fast: wait, then try again.
                    let retry = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        let _ = retry.send(("__retry".into(), Value::Null));
                    });
                } else if example_bot::worth_another_try(&data["code"]) {
                    awaiting_answer = true;
                    submit(&client, &room, example_bot::choose(&last_view), stats, &tx).await?;
                } else {
                    stats.error(format!("refused: {}", data["code"]));
                }
            }
            "__retry" if in_match && !awaiting_answer => {
                awaiting_answer = true;
                submit(&client, &room, example_bot::choose(&last_view), stats, &tx).await?;
            }
            "serverError" => stats.error(format!("serverError: {}", data["code"])),
            "gameOver" => {
                stats.completed.fetch_add(1, Ordering::Relaxed);
                let at = stats.started.elapsed().as_millis() as u64;
                stats.last_completed_ms.fetch_max(at, Ordering::Relaxed);
                in_match = false;
                next_action = None;
                if Instant::now() >= deadline {
                    break;
                }
                client
                    .emit("joinMatchmaking", json!({ "level": level }))
                    .await?;
            }
            "__closed" => {
                if Instant::now() < deadline || in_match {
                    stats.error("disconnected");
                }
                return Ok(());
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}

fn tracing_error(error: &anyhow::Error) {
    if std::env::var_os("LOADGEN_VERBOSE").is_some() {
        eprintln!("connect failed, retrying: {error:#}");
    }
}

async fn submit(
    client: &Client,
    room: &str,
    action: Value,
    stats: &Arc<Stats>,
    inbox: &mpsc::UnboundedSender<(String, Value)>,
) -> Result<()> {
    let sent = Instant::now();
    let (stats, inbox) = (stats.clone(), inbox.clone());
    client
        .emit_with_ack(
            "submitAction",
            json!({ "roomId": room, "action": action }),
            Duration::from_secs(10),
            move |payload, _| {
                stats.round_trip(sent.elapsed());
                let _ = inbox.send(("__answered".into(), ack_value(payload)));
                async {}.boxed()
            },
        )
        .await?;
    Ok(())
}

async fn pingpong(urls: Vec<String>, pairs: usize, length: Duration) -> Result<()> {
    let ready = relay::matched_pairs(&urls, pairs).await?;
    println!("{} pairs matched; ping-pong for {length:?}", ready.len());
    let stats = Stats::new();
    let deadline = stats.started + length;
    let guard = progress(stats.clone(), "pairs", length);
    let mut tasks = Vec::new();
    for relay::Pair {
        a,
        mut a_in,
        b,
        mut b_in,
        b_id,
        room,
    } in ready
    {
        let stats = stats.clone();
        // b answers each of a's messages (the ones with a `seq`; the room relays b's own
        // replies back to b too).
        let answering = tokio::spawn({
            let room = room.clone();
            async move {
                while let Some((event, data)) = b_in.recv().await {
                    let seq = &data["message"]["seq"];
                    if event != "gameMessage" || seq.is_null() {
                        continue;
                    }
                    let reply = json!({ "roomId": room, "message": { "reply": seq } });
                    if b.emit("gameMessage", reply).await.is_err() {
                        break;
                    }
                }
                let _ = b.disconnect().await;
            }
        });
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let sent = Instant::now();
                let message = json!({ "roomId": room, "message": { "seq": seq } });
                if a.emit("gameMessage", message).await.is_err() {
                    stats.error("emit failed");
                    break;
                }
                let answer = async {
                    while let Some((event, data)) = a_in.recv().await {
                        if event == "gameMessage"
                            && data["sender"] == b_id
                            && data["message"]["reply"] == seq
                        {
                            return true;
                        }
                        if event == "__closed" {
                            return false;
                        }
                    }
                    false
                };
                match tokio::time::timeout(Duration::from_secs(5), answer).await {
                    Ok(true) => stats.round_trip(sent.elapsed()),
                    Ok(false) => {
                        stats.error("disconnected");
                        break;
                    }
                    Err(_) => stats.error("no answer within 5 s"),
                }
            }
            let _ = a.disconnect().await;
            answering.abort();
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(guard);
    let pairs = stats.round_trips.load(Ordering::Relaxed);
    report(&stats, "messages answered", pairs, length);
    Ok(())
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

struct Swaps {
    urls: Vec<String>,
    game: String,
    dir: Option<std::path::PathBuf>,
    token: Option<String>,
}

/// The module with a custom section appended: the same rules, another version.
fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    use wasm_encoder::Section;
    let mut out = bytes.to_vec();
    let section = wasm_encoder::CustomSection {
        name: "loadgen-swap".into(),
        data: tag.as_bytes().into(),
    };
    section.append_to(&mut out);
    out
}

async fn swap(
    swaps: Swaps,
    module: &std::path::Path,
    times: usize,
    interval: Duration,
) -> Result<()> {
    if swaps.urls.is_empty() {
        bail!("give at least one --urls");
    }
    let base =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let http = reqwest::Client::new();
    let mut latencies = Histogram::<u64>::new(3)?;
    let run = format!("{}", std::process::id());
    for n in 0..times {
        let bytes = tagged(&base, &format!("{run}-{n}"));
        let landed = Instant::now();
        // The version is whatever the host answers (upload) or the one every instance reports.
        let version = match &swaps.dir {
            Some(dir) => {
                let temp = dir.join(format!(".{}.wasm.part", swaps.game));
                std::fs::write(&temp, &bytes)?;
                std::fs::rename(&temp, dir.join(format!("{}.wasm", swaps.game)))?;
                None
            }
            None => {
                let url = format!("{}/rules/{}", swaps.urls[n % swaps.urls.len()], swaps.game);
                let mut request = http.post(url).body(bytes.clone());
                if let Some(token) = &swaps.token {
                    request = request.bearer_auth(token);
                }
                let answer: Value = request.send().await?.error_for_status()?.json().await?;
                Some(answer["version"].as_str().unwrap_or_default().to_string())
            }
        };
        let landed = if version.is_some() {
            Instant::now()
        } else {
            landed
        };
        let wanted = match version {
            Some(version) => version,
            None => sha256_hex(&bytes),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<&String> = swaps.urls.iter().collect();
        while !pending.is_empty() {
            // All instances at once, then a pause: asking in a tight loop would load the very
            // machine whose swap is being timed.
            let asked = pending.iter().map(|url| {
                let (http, wanted, game) = (&http, &wanted, &swaps.game);
                async move {
                    let rules: Value = http
                        .get(format!("{url}/rules"))
                        .send()
                        .await?
                        .json()
                        .await?;
                    anyhow::Ok(rules["games"][game]["active"] == wanted.as_str())
                }
            });
            let answers = futures_util::future::join_all(asked).await;
            let mut still = Vec::new();
            for (url, active) in pending.into_iter().zip(answers) {
                if !active? {
                    still.push(url);
                }
            }
            pending = still;
            if Instant::now() > deadline {
                bail!("swap {n}: not active everywhere within 10 s");
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let took = landed.elapsed();
        latencies.record(took.as_micros().max(1) as u64)?;
        println!(
            "swap {n}: active on {} instances after {:.1} ms",
            swaps.urls.len(),
            took.as_secs_f64() * 1000.0
        );
        tokio::time::sleep(interval).await;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{times} swaps; landing to active everywhere: p50 {:.1} ms, max {:.1} ms",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.max())
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

async fn idle(urls: Vec<String>, sockets: usize, pids: Vec<u32>, settle: Duration) -> Result<()> {
    if urls.is_empty() || pids.is_empty() {
        bail!("give --urls and the --pids of the server processes");
    }
    let rss = || -> Result<u64> {
        pids.iter()
            .map(|pid| resident_kib(*pid))
            .sum::<Result<u64>>()
    };
    tokio::time::sleep(settle).await;
    let before = rss()?;
    let stats = Stats::new();
    let mut clients = Vec::new();
    for batch in (0..sockets).collect::<Vec<_>>().chunks(100) {
        let connects = batch.iter().map(|n| connect(&urls[n % urls.len()]));
        for connected in futures_util::future::join_all(connects).await {
            match connected {
                Ok((client, inbox, _)) => clients.push((client, inbox)),
                Err(error) => stats.error(format!("{error:#}")),
            }
        }
    }
    for (_, inbox) in &mut clients {
        wait_for(inbox, "session").await?;
    }
    tokio::time::sleep(settle).await;
    let after = rss()?;
    let connected = clients.len() as u64;
    println!(
        "idle sockets connected: {connected}, errors: {}",
        stats.error_count()
    );
    println!("server resident memory: {before} KiB before, {after} KiB after");
    println!(
        "per idle socket: {:.2} KiB",
        after.saturating_sub(before) as f64 / connected.max(1) as f64
    );
    for (client, _) in clients {
        let _ = client.disconnect().await;
    }
    Ok(())
}

/// `VmRSS` of a process, in KiB.
fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}
