//! Behind a real load balancer: Debian's HAProxy with `deploy/haproxy/haproxy.cfg` in front of
//! three `gamehost` processes on one Redis. The official JavaScript client plays two matches
//! through it (`tests/js/haproxy.mjs`: polling-first, polling-only and websocket-only players)
//! while this test drains the instance of one player (SIGTERM) and kills the instance of another
//! (SIGKILL); every player resumes through the balancer and both matches end.

use crate::cluster_support::{HostProcess, PrivateRedis, Shared, free_port, unique_prefix};

use crate::support::Endpoint;
use redis::Commands;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// HAProxy in the foreground, on a free port; stopped when dropped.
struct Balancer {
    child: Child,
    port: u16,
}

impl Balancer {
    fn start(backends: &[&HostProcess]) -> Balancer {
        let config =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
        let port = free_port();
        let mut command = Command::new("haproxy");
        command
            .args(["-db", "-f"])
            .arg(&config)
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (i, backend) in backends.iter().enumerate() {
            command.env(format!("GAMEHOST_{}", i + 1), backend.addr().to_string());
        }
        let child = command
            .spawn()
            .expect("haproxy runs (`cargo xtask test` installs Debian's package)");
        Balancer { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the balancer answers and sees every backend up.
    async fn ready(&self, backends: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = BTreeSet::new();
        while Instant::now() < deadline {
            // Each request without the cookie goes to the least loaded server; every one is
            // seen once all are up.
            if let Ok(response) = reqwest::get(format!("{}/health", self.url())).await
                && let Ok(health) = response.json::<Value>().await
                && let Some(instance) = health["instanceId"].as_str()
            {
                seen.insert(instance.to_string());
                if seen.len() == backends {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("haproxy did not reach the {backends} instances: saw {seen:?}");
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node script, spoken to line by line.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Script {
    fn start(balancer: &Balancer) -> Script {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
        let mut child = Command::new("node")
            .arg("haproxy.mjs")
            .arg(balancer.url())
            .current_dir(folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Script {
            child,
            stdin,
            lines,
        }
    }

    /// The script's next line, which must be `step`.
    async fn step(&mut self, step: &str) -> Value {
        let lines = &self.lines;
        let line = tokio::task::block_in_place(|| lines.recv_timeout(Duration::from_secs(90)));
        let Ok(line) = line else {
            let status = self.child.try_wait().unwrap();
            panic!("the script stopped before {step} (exit: {status:?}; its stderr is above)");
        };
        let message: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(message["step"], step, "{message}");
        message
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which instance holds each player's socket, from the stored socket mappings.
fn instances_of(redis: &PrivateRedis, prefix: &str, step: &Value) -> BTreeMap<String, String> {
    let mappings: BTreeMap<String, String> = redis
        .conn()
        .hgetall(format!("{prefix}socket_mappings"))
        .unwrap();
    let players = step["players"].as_object().unwrap();
    players
        .iter()
        .map(|(name, player)| {
            let socket = player["socketId"].as_str().unwrap();
            let mapping: Value = serde_json::from_str(&mappings[socket]).unwrap();
            (
                name.clone(),
                mapping["instanceId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_matches_survive_a_drained_and_a_killed_instance() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    // Out of rotation before its players are let go: HAProxy checks every 500 ms, fall 2.
    let env = [("DRAIN_DELAY_MS", "3000")];
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(Some(HostProcess::spawn(&redis, &prefix, &env).await));
    }
    let backends: Vec<&HostProcess> = fleet.iter().flatten().collect();
    let balancer = Balancer::start(&backends);
    balancer.ready(3).await;

    let mut script = Script::start(&balancer);
    let matched = script.step("matched").await;
    let at = instances_of(&redis, &prefix, &matched);
    let spread: BTreeSet<&String> = at.values().collect();
    assert!(spread.len() >= 2, "the balancer spread the players: {at:?}");

    // Drain the instance of A (polling first): it leaves the rotation, then lets its players go.
    let index = |id: &str, fleet: &[Option<HostProcess>]| {
        fleet
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.instance_id == id))
            .unwrap()
    };
    let drained = index(&at["A"], &fleet);
    let draining = fleet[drained].take().unwrap();
    draining.send_term();
    // At once out of rotation, with its players still on it: no new player is sent there.
    let ready = format!("{}/health/ready", draining.url());
    let deadline = Instant::now() + Duration::from_secs(2);
    while reqwest::get(&ready).await.unwrap().status() != 503 {
        assert!(
            Instant::now() < deadline,
            "readiness still 200 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handshake = format!("{}/socket.io/?EIO=4&transport=polling", draining.url());
    assert_eq!(reqwest::get(&handshake).await.unwrap().status(), 503);
    let now_at = instances_of(&redis, &prefix, &matched);
    assert_eq!(now_at["A"], at["A"], "A is still on the draining instance");
    // New sessions through the balancer are opened elsewhere (refused there with 503 and retried,
    // until the checks take it out of rotation): the cookie names the instance that took each.
    let drained_cookie = format!("GAMEHOST={}", ["one", "two", "three"][drained]);
    let through = format!("{}/socket.io/?EIO=4&transport=polling", balancer.url());
    for _ in 0..6 {
        let response = reqwest::get(&through).await.unwrap();
        assert_eq!(response.status(), 200);
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(!cookie.starts_with(&drained_cookie), "{cookie}");
    }
    draining.wait_exit().await;
    script.go();

    let resumed = script.step("resumed").await;
    let at = instances_of(&redis, &prefix, &resumed);
    assert!(
        at.values()
            .all(|id| fleet.iter().flatten().any(|h| &h.instance_id == id)),
        "every player is on a live instance: {at:?}"
    );
    // Kill the instance of C (polling only), without a word.
    let killed = index(&at["C"], &fleet);
    fleet[killed].take().unwrap().kill();
    script.go();

    let done = script.step("done").await;
    let disconnections = done["disconnections"].as_object().unwrap();
    assert!(disconnections["A"].as_u64().unwrap() >= 1, "{done}");
    assert!(disconnections["C"].as_u64().unwrap() >= 1, "{done}");
    drop(balancer);
}
