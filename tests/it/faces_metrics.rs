//! `/metrics`: Prometheus text whose counters move as a scripted match is played. Each test runs
//! `gamehost` processes, since the metrics recorder is global to a process.

use crate::cluster_support::{HostProcess, PrivateRedis, unique_prefix};
use crate::support::{Endpoint, Player, act, position, settle, target_dir, upload, variant};
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::json;
use std::time::{Duration, Instant};

pub(crate) async fn scrape(host: &impl Endpoint) -> Scrape {
    let response = reqwest::get(format!("{}/metrics", host.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    Scrape::parse(lines).expect("the metrics parse as Prometheus text")
}

/// The value of `metric` over the samples whose labels include `labels` (summed); a histogram
/// reads as its count. `None` when no sample matches.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Sample::Summary(_) => panic!("{metric} is a summary, not a histogram"),
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

pub(crate) fn read(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?} in /metrics"))
}

/// Scrapes until `check` holds (gauges follow events a moment later).
async fn until(host: &impl Endpoint, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(host).await;
        if check(&scraped) {
            return scraped;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", scraped.samples);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_parse_and_their_counters_move_as_a_match_is_played() {
    let host = HostProcess::standalone(&[]).await;
    let start = scrape(&host).await;
    assert_eq!(read(&start, "gamehost_sockets", &[]), 0.0);
    assert_eq!(read(&start, "gamehost_store_errors_total", &[]), 0.0);
    assert_eq!(read(&start, "gamehost_instances_reaped_total", &[]), 0.0);
    let game = ("game", "wizard-battle");

    let a = Player::connect(&host).await;
    let b = Player::connect(&host).await;
    a.request("joinMatchmaking", json!({ "level": 7 })).await;
    let waiting = scrape(&host).await;
    assert_eq!(read(&waiting, "gamehost_sockets", &[]), 2.0);
    assert_eq!(
        read(&waiting, "gamehost_queue_players", &[game, ("level", "7")]),
        1.0
    );

    let room = b.request("joinMatchmaking", json!({ "level": 7 })).await;
    let room = room.as_str().unwrap().to_string();
    a.next("view").await;
    b.next("view").await;
    let playing = scrape(&host).await;
    assert_eq!(
        read(&playing, "gamehost_queue_players", &[game, ("level", "7")]),
        0.0
    );
    assert_eq!(read(&playing, "gamehost_matches_running", &[game]), 1.0);
    let calls_before = value(
        &playing,
        "gamehost_rules_call_seconds",
        &[("operation", "action")],
    )
    .unwrap_or(0.0);

    let refused = act(&a, &room, json!({ "spell": "abracadabra" })).await;
    assert_eq!(refused["code"], "unknown_spell");
    for (caster, target) in [(&a, &b), (&b, &a)] {
        let ack = act(
            caster,
            &room,
            json!({ "spell": "lightning", "target": position(target) }),
        )
        .await;
        assert_eq!(ack["success"], true, "{ack}");
    }
    a.next("gameOver").await;

    let over = until(&host, "the match stops running", |s| {
        value(s, "gamehost_matches_running", &[game]) == Some(0.0)
    })
    .await;
    assert_eq!(
        read(&over, "gamehost_actions_total", &[game, ("code", "ok")]),
        2.0
    );
    assert_eq!(
        read(
            &over,
            "gamehost_actions_total",
            &[game, ("code", "unknown_spell")]
        ),
        1.0
    );
    assert_eq!(read(&over, "gamehost_action_seconds_count", &[game]), 3.0);
    let calls = read(
        &over,
        "gamehost_rules_call_seconds",
        &[("operation", "action")],
    );
    assert!(
        calls >= calls_before + 3.0,
        "every action called the rules: {calls_before} → {calls}"
    );
    assert!(
        value(
            &over,
            "gamehost_rules_call_seconds",
            &[("tier", "optimized")]
        )
        .is_some()
    );

    let bytes = std::fs::read(target_dir().join("rules/wizard-battle.wasm")).unwrap();
    let (status, _) = upload(&host, "wizard-battle", variant(&bytes, "metrics"), None).await;
    assert_eq!(status, 200);
    let swapped = scrape(&host).await;
    assert_eq!(read(&swapped, "gamehost_swaps_total", &[game]), 1.0);

    a.disconnect().await;
    b.disconnect().await;
    until(&host, "the sockets are gone", |s| {
        value(s, "gamehost_sockets", &[]) == Some(0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaped_instance_and_a_store_outage_are_counted() {
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let doomed = HostProcess::spawn(&redis, &prefix, &[]).await;
    let survivor = HostProcess::spawn(&redis, &prefix, &[]).await;
    let _player = Player::connect(&doomed).await;
    settle().await;
    doomed.kill();
    until(&survivor, "the dead instance is reaped", |s| {
        value(s, "gamehost_instances_reaped_total", &[]) == Some(1.0)
    })
    .await;

    redis.stop();
    until(&survivor, "failed store requests are counted", |s| {
        value(s, "gamehost_store_errors_total", &[]).is_some_and(|errors| errors >= 1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_off_nothing_is_recorded_and_the_endpoint_says_so() {
    let host = HostProcess::standalone(&[("METRICS", "false")]).await;
    let response = reqwest::get(format!("{}/metrics", host.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("METRICS=false"),
        "{body}"
    );
}
