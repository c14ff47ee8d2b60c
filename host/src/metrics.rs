//! Prometheus metrics: **the only code that knows the `metrics` crates**. The rest of the host
//! calls the functions here, which cost an atomic add or a histogram push and nothing when
//! metrics are off (`METRICS=false`: no recorder is installed, so every call is a no-op).
//!
//! Counters and histograms are recorded where things happen. Gauges (sockets, matches, queues)
//! are read when `/metrics` is scraped, from what the instance already knows, so they cost
//! nothing between scrapes.
//!
//! The recorder is global to the process (the `metrics` facade has one): several servers in one
//! process, as in the tests, share it, and the first one installs it.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
/// Whether a recorder is installed: without one, the calls below return before building their
/// labels, so that metrics off cost nothing but this load.
static ON: AtomicBool = AtomicBool::new(false);

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Bucket bounds (seconds) of both histograms: from well under a rules call (tens of µs) to a
/// slow store round trip.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// Installs the Prometheus recorder for this process, once. Returns the handle `/metrics`
/// renders, or `None` when the recorder could not be installed (another one was first).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .expect("the bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    // Counters without labels read 0 from the start, not absent.
                    counter!("gamehost_store_errors_total").absolute(0);
                    counter!("gamehost_instances_reaped_total").absolute(0);
                    for feed in ["rooms", "other"] {
                        counter!("gamehost_pubsub_messages_total", "feed" => feed).absolute(0);
                    }
                    ON.store(true, Ordering::Relaxed);
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics are off: a recorder was already installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "gamehost_sockets",
        "Sockets connected to this instance now."
    );
    describe_gauge!(
        "gamehost_matches_running",
        "Matches whose actor runs on this instance, by game and module version."
    );
    describe_gauge!(
        "gamehost_queue_players",
        "Players waiting in matchmaking, by game and level (the whole fleet's queues)."
    );
    describe_counter!(
        "gamehost_pubsub_messages_total",
        "Pub/sub messages this instance received from Redis: rooms (the matches and chat of its own players) or other (modules, the Admin UI, the adapter)."
    );
    describe_counter!(
        "gamehost_actions_total",
        "Actions submitted to matches on this instance, by game and result code (ok or the refusal's code)."
    );
    describe_histogram!(
        "gamehost_action_seconds",
        Unit::Seconds,
        "Time from an action's arrival to its answer, by game."
    );
    describe_histogram!(
        "gamehost_rules_call_seconds",
        Unit::Seconds,
        "Time of one call into a rules module, by operation and code tier."
    );
    describe_counter!(
        "gamehost_store_errors_total",
        "Requests to the shared store (Redis) that failed."
    );
    describe_counter!(
        "gamehost_swaps_total",
        "Rules versions that became the active version of their game, by game."
    );
    describe_counter!(
        "gamehost_instances_reaped_total",
        "Dead instances this instance cleaned up after."
    );
}

/// The most refusal codes counted apart per game; any further code counts as `other`.
const CODES_PER_GAME: usize = 32;
static CODES_SEEN: Mutex<BTreeMap<String, std::collections::BTreeSet<String>>> =
    Mutex::new(BTreeMap::new());

/// The `code` label of an action: refusal codes come from the rules module, and a module that
/// made up a new one each time must not grow the registry (and every scrape) without end.
fn code_label(game: &str, code: &str) -> String {
    if code == "ok" {
        return code.to_string();
    }
    let mut seen = CODES_SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let codes = seen.entry(game.to_string()).or_default();
    if codes.contains(code) || codes.len() < CODES_PER_GAME {
        codes.insert(code.to_string());
        code.to_string()
    } else {
        "other".to_string()
    }
}

/// An action a match answered: `code` is `ok` or the refusal's code.
pub fn action(game: &str, code: &str, took: Duration) {
    if !on() {
        return;
    }
    let code = code_label(game, code);
    counter!("gamehost_actions_total", "game" => game.to_string(), "code" => code).increment(1);
    histogram!("gamehost_action_seconds", "game" => game.to_string()).record(took.as_secs_f64());
}

/// One call into a rules module.
pub fn rules_call(operation: &'static str, tier: &'static str, took: Duration) {
    if !on() {
        return;
    }
    histogram!("gamehost_rules_call_seconds", "operation" => operation, "tier" => tier)
        .record(took.as_secs_f64());
}

pub fn store_error() {
    counter!("gamehost_store_errors_total").increment(1);
}

pub fn swapped(game: &str) {
    if !on() {
        return;
    }
    counter!("gamehost_swaps_total", "game" => game.to_string()).increment(1);
}

/// A pub/sub message reached this instance, for `feed` (`rooms` or `other`).
pub fn pubsub_received(feed: &'static str) {
    counter!("gamehost_pubsub_messages_total", "feed" => feed).increment(1);
}

pub fn instance_reaped() {
    counter!("gamehost_instances_reaped_total").increment(1);
}

/// A match running on this instance, counted in `gamehost_matches_running` from its actor's
/// start until it is dropped, under the version it runs.
pub struct RunningMatch {
    game: String,
    version: String,
    /// Whether it was counted (metrics were on).
    counted: bool,
}

impl RunningMatch {
    pub fn new(game: &str, version: &str) -> RunningMatch {
        let running = RunningMatch {
            game: game.to_string(),
            version: version.to_string(),
            counted: on(),
        };
        if running.counted {
            running.gauge().increment(1.0);
        }
        running
    }

    /// The match moved to another version (a migration).
    pub fn runs(&mut self, version: &str) {
        if self.counted && self.version != version {
            self.gauge().decrement(1.0);
            self.version = version.to_string();
            self.gauge().increment(1.0);
        }
    }

    fn gauge(&self) -> metrics::Gauge {
        gauge!("gamehost_matches_running", "game" => self.game.clone(), "version" => self.version.clone())
    }
}

impl Drop for RunningMatch {
    fn drop(&mut self) {
        if self.counted {
            self.gauge().decrement(1.0);
        }
    }
}

/// What the gauges read at a scrape.
#[derive(Debug, Default)]
pub struct Gauges {
    pub sockets: usize,
    /// (game, level) → players, over every mode; `None` while the store cannot tell (the
    /// gauges keep their last values).
    pub queues: Option<BTreeMap<(String, i64), usize>>,
}

/// The queues the last scrape saw, so that one that emptied reads 0 rather than its last value.
static LAST_QUEUES: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

/// Sets the gauges and renders every metric as Prometheus text.
pub fn render(handle: &PrometheusHandle, now: Gauges) -> String {
    gauge!("gamehost_sockets").set(now.sockets as f64);
    let Some(queues) = now.queues else {
        return handle.render();
    };
    let mut last = LAST_QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    for gone in last.iter().filter(|key| !queues.contains_key(*key)) {
        gauge!("gamehost_queue_players", "game" => gone.0.clone(), "level" => gone.1.to_string())
            .set(0.0);
    }
    for ((game, level), count) in &queues {
        gauge!("gamehost_queue_players", "game" => game.clone(), "level" => level.to_string())
            .set(*count as f64);
    }
    *last = queues.keys().cloned().collect();
    drop(last);
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_game_gets_a_bounded_number_of_code_labels() {
        assert_eq!(code_label("made-up-codes", "ok"), "ok");
        for n in 0..CODES_PER_GAME {
            let code = format!("code_{n}");
            assert_eq!(code_label("made-up-codes", &code), code);
        }
        assert_eq!(code_label("made-up-codes", "one_too_many"), "other");
        assert_eq!(
            code_label("made-up-codes", "code_3"),
            "code_3",
            "a known code stays"
        );
        assert_eq!(code_label("made-up-codes", "ok"), "ok");
        assert_eq!(code_label("another-game", "one_too_many"), "one_too_many");
    }
}
