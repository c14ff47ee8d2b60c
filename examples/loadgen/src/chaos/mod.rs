//! `chaos`: a Jepsen-style run. It starts its own Redis (one server, or with `--cluster` a
//! three-master Redis Cluster, behind proxies it controls; see `backend`) and a fleet
//! of `gamehost` processes, has players play wizard battles through them as real clients do
//! (reconnecting and resuming when their server goes), injects faults at random for the run's
//! length, lets the fleet heal and the matches finish, then checks what the players saw against
//! what the fleet stored:
//!
//! - every match ended, or runs on and its players can resume it;
//! - no player was ever in two running matches;
//! - each player saw each match message exactly once, in version order, and nothing of a
//!   match was missing while it was connected;
//! - every action a player saw acknowledged is in its match's log;
//! - every match's log replays to its stored state and outcome (`gamehost replay`);
//! - no instance panicked or stopped on its own.
//!
//! Any violation is printed with its evidence and makes the run exit non-zero.

mod backend;
mod check;
mod faults;
mod fleet;
mod player;
mod proxy;

use anyhow::{Context, Result, bail};
use backend::Backend;
use check::{Log, Verdict};
use faults::{Fault, Schedule};
use fleet::Fleet;
use player::{Journal, Table};
use proxy::Mode;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GAME: &str = "wizard-battle";
const PREFIX: &str = "chaos:";
const ADMIN_TOKEN: &str = "chaos-admin";
const RECONNECT_GRACE: Duration = Duration::from_secs(20);

pub struct Chaos {
    pub instances: usize,
    pub players: usize,
    /// How long faults are injected (the first round of every kind is completed regardless).
    pub length: Duration,
    /// How long matches may take to finish once faults stop.
    pub drain: Duration,
    /// The mean pause between faults.
    pub fault_every: Duration,
    pub gamehost: PathBuf,
    pub rules_dir: PathBuf,
    /// Where to keep Redis's files and the instances' logs (a fresh folder if not given).
    pub dir: Option<PathBuf>,
    pub seed: Option<u64>,
    /// The instances' `RUST_LOG`.
    pub instance_log: String,
    /// On a three-master Redis Cluster instead of one server.
    pub cluster: bool,
}

/// What the run did and found.
#[derive(Default)]
struct Report {
    faults: BTreeMap<Fault, usize>,
    verdicts: Vec<(&'static str, Verdict)>,
}

impl Report {
    fn violated(&mut self, invariant: &'static str, evidence: String) {
        match self
            .verdicts
            .iter_mut()
            .find(|(name, _)| *name == invariant)
        {
            Some((_, verdict)) => verdict.violations.push(evidence),
            None => self.verdicts.push((
                invariant,
                Verdict {
                    checked: 0,
                    violations: vec![evidence],
                },
            )),
        }
    }

    fn add(&mut self, invariant: &'static str, verdict: Verdict) {
        match self
            .verdicts
            .iter_mut()
            .find(|(name, _)| *name == invariant)
        {
            Some((_, known)) => {
                known.checked += verdict.checked;
                known.violations.extend(verdict.violations);
            }
            None => self.verdicts.push((invariant, verdict)),
        }
    }

    fn held(&self) -> bool {
        self.verdicts.iter().all(|(_, v)| v.violations.is_empty())
    }
}

/// Runs it; `Ok(false)` when an invariant broke (the evidence is printed).
pub async fn chaos(settings: Chaos) -> Result<bool> {
    let dir = match &settings.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("gamehost-chaos-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let seed = settings.seed.unwrap_or_else(|| rand::rng().random());
    println!(
        "chaos: {} instances on {}, {} players, faults for {:?}, seed {seed}; files in {}",
        settings.instances,
        if settings.cluster {
            "a Redis Cluster"
        } else {
            "one Redis"
        },
        settings.players,
        settings.length,
        dir.display()
    );
    let module = std::fs::read(settings.rules_dir.join(format!("{GAME}.wasm")))
        .with_context(|| format!("no {GAME}.wasm in {}", settings.rules_dir.display()))?;

    let mut redis = if settings.cluster {
        Backend::cluster(&dir).await?
    } else {
        Backend::single(&dir).await?
    };
    let env = fleet_env(&settings, redis.instance_env());
    let mut fleet = Fleet::new(
        settings.gamehost.clone(),
        dir.clone(),
        env,
        settings.instances,
    )?;
    for slot in 0..settings.instances {
        fleet.start(slot).await?;
    }
    let started = Instant::now();
    let mut report = Report::default();
    let mut versions = vec![active_version(&fleet.url(0)).await?];

    let table = Arc::new(Table {
        urls: fleet.urls(),
        level: 1,
        grace: RECONNECT_GRACE,
        stop_queueing: Default::default(),
    });
    let journals: Vec<Arc<Mutex<Journal>>> = (0..settings.players)
        .map(|_| Arc::new(Mutex::new(Journal::default())))
        .collect();
    let players: Vec<_> = journals
        .iter()
        .map(|journal| tokio::spawn(player::play(table.clone(), journal.clone())))
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut schedule = Schedule::new(&mut rng, Fault::kinds(redis.is_cluster()));
    let mut injected = 0;
    while started.elapsed() < settings.length || injected < schedule.kinds() {
        let pause = settings.fault_every.mul_f64(rng.random_range(0.25..1.75));
        tokio::time::sleep(pause).await;
        let fault = schedule.next(&mut rng);
        let at = started.elapsed().as_secs_f64();
        let what = inject(
            fault,
            &mut rng,
            &mut fleet,
            &mut redis,
            &module,
            &mut versions,
        )
        .await;
        match what {
            Ok(what) => println!("[{at:6.1} s] {}: {what}", fault.name()),
            Err(error) => {
                println!("[{at:6.1} s] {}: FAILED: {error:#}", fault.name());
                report.violated(
                    "every fault was injected",
                    format!("{}: {error:#}", fault.name()),
                );
            }
        }
        *report.faults.entry(fault).or_default() += 1;
        injected += 1;
        if let Err(error) = healthy(&mut fleet, Duration::from_secs(60)).await {
            report.violated("the fleet recovered after each fault", format!("{error:#}"));
            break;
        }
    }

    // Heal, let the matches finish, then look.
    redis.set(Mode::Pass);
    for slot in 0..settings.instances {
        if !fleet.running(slot) {
            fleet.start(slot).await?;
        }
    }
    println!(
        "[{:6.1} s] faults stopped; the players finish their matches",
        started.elapsed().as_secs_f64()
    );
    table.stop_queueing.store(true, Ordering::Relaxed);
    let drain_deadline = tokio::time::Instant::now() + settings.drain;
    for task in &players {
        while !task.is_finished() && tokio::time::Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for task in players {
        task.abort();
    }
    let journals: Vec<Journal> = journals
        .into_iter()
        .map(|journal| std::mem::take(&mut *journal.lock().unwrap()))
        .collect();

    let logs = fetch_logs(&fleet.url(0), &journals, &mut report).await?;
    keep_evidence(&dir, &journals, &logs)?;
    check_all(&journals, &logs, &mut report);
    check_running_resumable(&fleet.url(0), &journals, &logs, &mut report).await;
    replay_all(&settings, &redis, &logs, &mut report)?;
    fleet.stop_all().await?;
    check_instances(&fleet, &mut report)?;

    print_counts(&report, &journals, &logs, started.elapsed());
    print_verdicts(&report);
    Ok(report.held())
}

/// How every instance of the run is configured: Redis through the proxies, short clocks (a
/// round resolves after 3 s, a dead instance is noticed after 2 s) so faults have effects
/// within a short run, and finished matches kept until the end of the run.
fn fleet_env(settings: &Chaos, redis: (&'static str, String)) -> Vec<(String, String)> {
    [
        redis,
        ("REDIS_PREFIX", PREFIX.to_string()),
        ("RULES_DIR", settings.rules_dir.display().to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("HEARTBEAT_TTL_MS", "2000".to_string()),
        ("ROUND_TIMEOUT_MS", "3000".to_string()),
        (
            "RECONNECT_GRACE_MS",
            RECONNECT_GRACE.as_millis().to_string(),
        ),
        ("FINISHED_GAME_RETENTION_MS", "86400000".to_string()),
        ("EVENTS_PER_SECOND", "200".to_string()),
        ("EVENT_BURST", "400".to_string()),
        ("RUST_LOG", settings.instance_log.clone()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// The rules version the fleet serves now.
async fn active_version(url: &str) -> Result<String> {
    let rules: Value = reqwest::get(format!("{url}/rules")).await?.json().await?;
    rules["games"][GAME]["active"]
        .as_str()
        .map(str::to_string)
        .context("GET /rules names no active version")
}

/// Injects one fault and undoes it (starts the instance again, heals Redis); says what it did.
async fn inject(
    fault: Fault,
    rng: &mut impl Rng,
    fleet: &mut Fleet,
    redis: &mut Backend,
    module: &[u8],
    versions: &mut Vec<String>,
) -> Result<String> {
    let millis = |rng: &mut dyn rand::RngCore, low: u64, high: u64| {
        Duration::from_millis(rng.random_range(low..high))
    };
    let slot = rng.random_range(0..fleet.slots.len());
    match fault {
        Fault::Kill => {
            fleet.kill(slot);
            let down = millis(rng, 500, 3000);
            tokio::time::sleep(down).await;
            fleet.start(slot).await?;
            Ok(format!("instance {slot}, back after {down:?}"))
        }
        Fault::Terminate => {
            fleet.terminate(slot).await?;
            fleet.start(slot).await?;
            Ok(format!("instance {slot}, drained and back"))
        }
        Fault::RedisRestart => {
            let down = millis(rng, 200, 2000);
            redis.restart(rng, down).await
        }
        Fault::RedisSlow => {
            let (delay, length) = (millis(rng, 20, 300), millis(rng, 2000, 6000));
            redis.set(Mode::Slow(delay));
            tokio::time::sleep(length).await;
            redis.set(Mode::Pass);
            Ok(format!("{delay:?} each way for {length:?}"))
        }
        Fault::RedisDown => {
            let length = millis(rng, 500, 4000);
            redis.set(Mode::Down);
            tokio::time::sleep(length).await;
            redis.set(Mode::Pass);
            Ok(format!("for {length:?}"))
        }
        Fault::Swap => {
            let tag = format!("chaos-{}-{}", std::process::id(), versions.len());
            let bytes = crate::swap::tagged(module, &tag);
            let answer = admin(
                fleet,
                slot,
                reqwest::Method::POST,
                &format!("/rules/{GAME}"),
                bytes,
            )
            .await?;
            let version = answer["version"]
                .as_str()
                .context("no version")?
                .to_string();
            versions.push(version.clone());
            Ok(format!("{} through instance {slot}", &version[..12]))
        }
        Fault::Rollback => {
            if versions.len() < 2 {
                bail!("nothing to roll back to");
            }
            let back = versions[versions.len() - 2].clone();
            let body = serde_json::to_vec(&json!({ "version": back }))?;
            admin(
                fleet,
                slot,
                reqwest::Method::PUT,
                &format!("/rules/{GAME}/active"),
                body,
            )
            .await?;
            versions.push(back.clone());
            Ok(format!("back to {} through instance {slot}", &back[..12]))
        }
        Fault::SlotMove => redis.move_slot(rng, PREFIX).await,
    }
}

/// An admin request, tried a few times (the fleet may still be finding its feet).
async fn admin(
    fleet: &Fleet,
    slot: usize,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Value> {
    let http = reqwest::Client::new();
    let mut last = None;
    for _ in 0..5 {
        let sent = http
            .request(method.clone(), format!("{}{path}", fleet.url(slot)))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => return Ok(answer.json().await?),
            Ok(answer) => {
                let status = answer.status();
                last = Some(format!(
                    "{status}: {}",
                    answer.text().await.unwrap_or_default()
                ));
            }
            Err(error) => last = Some(error.to_string()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("{method} {path}: {}", last.unwrap_or_default())
}

/// Waits until every instance runs and says it is ready.
async fn healthy(fleet: &mut Fleet, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let http = reqwest::Client::new();
    loop {
        let mut waiting = Vec::new();
        for slot in 0..fleet.slots.len() {
            let ready = fleet.running(slot)
                && http
                    .get(format!("{}/health/ready", fleet.url(slot)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            if !ready {
                waiting.push(slot);
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("instances {waiting:?} not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log of every match a player heard of.
async fn fetch_logs(
    url: &str,
    journals: &[Journal],
    report: &mut Report,
) -> Result<BTreeMap<String, Log>> {
    let rooms: BTreeSet<&str> = journals
        .iter()
        .flat_map(|j| j.seen.iter().map(|s| s.room.as_str()))
        .collect();
    let http = reqwest::Client::new();
    let mut logs = BTreeMap::new();
    for room in rooms {
        let answer = http
            .get(format!("{url}/matches/{room}/log"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        if !answer.status().is_success() {
            report.violated(
                "every match ended or runs on, resumable",
                format!(
                    "{room}: GET /matches/{room}/log answered {}",
                    answer.status()
                ),
            );
            continue;
        }
        let log: Log = answer
            .json()
            .await
            .with_context(|| format!("the log of {room}"))?;
        logs.insert(room.to_string(), log);
    }
    Ok(logs)
}

/// What the players saw (`seen.jsonl`, one message a line, in the order each player got
/// them) and the match logs (`logs/<room>.json`), for reading a violation's story.
fn keep_evidence(
    dir: &std::path::Path,
    journals: &[Journal],
    logs: &BTreeMap<String, Log>,
) -> Result<()> {
    use std::io::Write;
    let mut seen = std::io::BufWriter::new(std::fs::File::create(dir.join("seen.jsonl"))?);
    for message in journals.iter().flat_map(|j| &j.seen) {
        let line = json!({
            "player": message.player, "room": message.room, "connection": message.connection,
            "event": message.event, "version": message.version, "body": message.body,
        });
        writeln!(seen, "{line}")?;
    }
    seen.flush()?;
    std::fs::create_dir_all(dir.join("logs"))?;
    for (room, log) in logs {
        std::fs::write(
            dir.join("logs").join(format!("{room}.json")),
            serde_json::to_vec_pretty(log)?,
        )?;
    }
    Ok(())
}

fn check_all(journals: &[Journal], logs: &BTreeMap<String, Log>, report: &mut Report) {
    let seen: Vec<_> = journals
        .iter()
        .flat_map(|j| j.seen.iter().cloned())
        .collect();
    let acked: Vec<_> = journals
        .iter()
        .flat_map(|j| j.acked.iter().cloned())
        .collect();
    report.add(
        "each message exactly once, in version order",
        check::exactly_once_in_order(&seen),
    );
    report.add(
        "nothing missed while connected",
        check::nothing_missed_while_connected(&seen, logs),
    );
    report.add(
        "no player in two running matches",
        check::one_running_match_per_player(logs),
    );
    report.add(
        "no acknowledged action lost",
        check::acknowledged_actions_logged(&acked, logs),
    );
    report.add(
        "clients saw nothing a correct server never sends",
        Verdict {
            checked: journals.len(),
            violations: journals.iter().flat_map(|j| j.anomalies.clone()).collect(),
        },
    );
}

/// Every match still running can be resumed by its players.
async fn check_running_resumable(
    url: &str,
    journals: &[Journal],
    logs: &BTreeMap<String, Log>,
    report: &mut Report,
) {
    let tokens: BTreeMap<&str, &str> = journals
        .iter()
        .filter_map(|j| Some((j.player.as_deref()?, j.token.as_deref()?)))
        .collect();
    let mut verdict = Verdict::default();
    for (room, log) in logs {
        verdict.checked += 1;
        if log.winners.is_some() {
            continue;
        }
        let Some(abi::log::Input::Setup { seats, .. }) = log.entries.first().map(|e| &e.input)
        else {
            continue;
        };
        for seat in seats {
            // Only the players still holding their session: one that started over has left.
            let Some(token) = tokens.get(seat.id.as_str()) else {
                continue;
            };
            if let Err(evidence) = player::check_resumable(url, &seat.id, token, room).await {
                verdict.violations.push(evidence);
            }
        }
    }
    report.add("every match ended or runs on, resumable", verdict);
}

/// `gamehost replay --room ...` over every match, against the run's Redis.
fn replay_all(
    settings: &Chaos,
    redis: &Backend,
    logs: &BTreeMap<String, Log>,
    report: &mut Report,
) -> Result<()> {
    let mut verdict = Verdict::default();
    let (variable, value) = redis.direct_env();
    for rooms in logs.keys().collect::<Vec<_>>().chunks(200) {
        let output = std::process::Command::new(&settings.gamehost)
            .arg("replay")
            .args(rooms.iter().flat_map(|room| ["--room", room.as_str()]))
            .env(variable, &value)
            .env("REDIS_PREFIX", PREFIX)
            .env("RULES_DIR", &settings.rules_dir)
            .env("RUST_LOG", "warn")
            .output()
            .context("gamehost replay")?;
        let said = String::from_utf8_lossy(&output.stdout);
        let identical = said.lines().filter(|l| l.contains(": identical: ")).count();
        verdict.checked += rooms.len();
        if identical != rooms.len() || !output.status.success() {
            verdict.violations.extend(
                said.lines()
                    .filter(|l| !l.contains(": identical: "))
                    .map(str::to_string),
            );
            verdict.violations.extend(
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .map(str::to_string),
            );
            if verdict.violations.is_empty() {
                verdict.violations.push(format!(
                    "gamehost replay exited {} with {identical} of {} identical",
                    output.status,
                    rooms.len()
                ));
            }
        }
    }
    report.add("every match's log replays to its stored state", verdict);
    Ok(())
}

/// No instance panicked or stopped on its own.
fn check_instances(fleet: &Fleet, report: &mut Report) -> Result<()> {
    let mut verdict = Verdict::default();
    for (slot, this) in fleet.slots.iter().enumerate() {
        verdict.checked += this.generation as usize;
        for crash in &this.crashes {
            verdict.violations.push(format!("instance {slot}: {crash}"));
        }
    }
    for (name, log) in fleet.logs()? {
        for line in log.lines().filter(|line| line.contains("panicked")) {
            verdict.violations.push(format!("{name}: {line}"));
        }
    }
    report.add("no instance panicked or stopped on its own", verdict);
    Ok(())
}

fn print_counts(
    report: &Report,
    journals: &[Journal],
    logs: &BTreeMap<String, Log>,
    took: Duration,
) {
    let finished = logs.values().filter(|log| log.winners.is_some()).count();
    let mut inputs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut modules: BTreeSet<&str> = BTreeSet::new();
    for log in logs.values() {
        for entry in &log.entries {
            *inputs.entry(check::kind(&entry.input)).or_default() += 1;
            modules.insert(&entry.module);
        }
    }
    let sum = |count: fn(&Journal) -> u64| journals.iter().map(count).sum::<u64>();
    println!("\nran {:.0} s", took.as_secs_f64());
    println!(
        "faults: {}",
        report
            .faults
            .iter()
            .map(|(fault, n)| format!("{} x{n}", fault.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "matches: {} ({finished} finished, {} running); on {} module versions",
        logs.len(),
        logs.len() - finished,
        modules.len()
    );
    println!(
        "log entries: {}",
        inputs
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "players: {} connections ({} resumed), {} failed connects, {} given up after {:?} of \
         silence, {} sessions started over; {} actions acknowledged, {} match messages received",
        sum(|j| j.connections),
        sum(|j| j.resumes),
        sum(|j| j.failed_connects),
        sum(|j| j.silent_connections),
        player::SILENCE,
        sum(|j| j.lost_sessions),
        sum(|j| j.acked.len() as u64),
        sum(|j| j.seen.len() as u64),
    );
    let mut refusals: BTreeMap<&str, u64> = BTreeMap::new();
    for journal in journals {
        for (what, n) in &journal.refusals {
            *refusals.entry(what).or_default() += n;
        }
    }
    if !refusals.is_empty() {
        println!(
            "refusals and errors the players handled: {}",
            refusals
                .iter()
                .map(|(what, n)| format!("{what} x{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn print_verdicts(report: &Report) {
    println!("\ninvariants:");
    for (name, verdict) in &report.verdicts {
        let status = if verdict.violations.is_empty() {
            "held"
        } else {
            "BROKEN"
        };
        println!("  {status:6} {name} ({} checked)", verdict.checked);
        for evidence in verdict.violations.iter().take(20) {
            println!("           {evidence}");
        }
        if verdict.violations.len() > 20 {
            println!("           ... and {} more", verdict.violations.len() - 20);
        }
    }
}
