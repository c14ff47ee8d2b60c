//! The chaos run's invariants, as plain functions over what the players recorded and what the
//! fleet stored (the match logs): no server needed, so each one is unit-tested with the
//! violation it exists to catch.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A match's log as `GET /matches/<room>/log` answers it.
pub type Log = abi::log::MatchLog<Value>;
type Input = abi::log::Input<Value>;

/// One message of a match a player received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub player: String,
    pub room: String,
    /// Which of the player's connections it came on (they count up from 1).
    pub connection: u64,
    pub event: String,
    pub version: u64,
    /// The whole payload, as received.
    pub body: String,
}

/// An action the server acknowledged (`{success: true}`).
#[derive(Debug, Clone)]
pub struct Acked {
    pub player: String,
    pub room: String,
    pub action: Value,
}

/// What one invariant found: how many things it looked at, and each violation's evidence.
#[derive(Debug, Default)]
pub struct Verdict {
    pub checked: usize,
    pub violations: Vec<String>,
}

/// Each player saw each match message exactly once and in order: per player and room, versions
/// never go back (one change's events and view share its version), no message arrives twice,
/// and no version brings two views. `resumed` is a snapshot: it may repeat (two reconnections
/// with nothing between) but it may not go back either.
pub fn exactly_once_in_order(seen: &[Seen]) -> Verdict {
    let mut verdict = Verdict::default();
    let mut last: HashMap<(&str, &str), (u64, &str)> = HashMap::new();
    let mut bodies: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut views: HashSet<(&str, &str, u64)> = HashSet::new();
    for message in seen {
        verdict.checked += 1;
        let key = (message.player.as_str(), message.room.as_str());
        if let Some(&(before, event)) = last.get(&key)
            && message.version < before
        {
            verdict.violations.push(format!(
                "{} in {}: {} of version {} after {event} of version {before} (connection {})",
                message.player, message.room, message.event, message.version, message.connection
            ));
        }
        last.insert(key, (message.version, message.event.as_str()));
        if message.event == "resumed" {
            continue;
        }
        if !bodies.insert((key.0, key.1, message.body.as_str())) {
            verdict.violations.push(format!(
                "{} in {}: {} received twice: {}",
                message.player, message.room, message.event, message.body
            ));
        } else if message.event == "view" && !views.insert((key.0, key.1, message.version)) {
            verdict.violations.push(format!(
                "{} in {}: two different views of version {}",
                message.player, message.room, message.version
            ));
        }
    }
    verdict
}

/// Nothing was lost on a live connection: between the first and the last version a player saw
/// on one connection, every change that tells everyone (an action, a timeout: each player gets
/// the rules' events and its view) reached it, or a `resumed` of that version or later did (a
/// snapshot of the match as it stood, which a resuming connection may get after a message or
/// two of before).
pub fn nothing_missed_while_connected(seen: &[Seen], logs: &BTreeMap<String, Log>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut spans: BTreeMap<(&str, &str, u64), BTreeSet<u64>> = BTreeMap::new();
    let mut snapshots: HashMap<(&str, &str, u64), u64> = HashMap::new();
    for message in seen {
        let key = (
            message.player.as_str(),
            message.room.as_str(),
            message.connection,
        );
        spans.entry(key).or_default().insert(message.version);
        if message.event == "resumed" {
            let latest = snapshots.entry(key).or_default();
            *latest = (*latest).max(message.version);
        }
    }
    for ((player, room, connection), versions) in spans {
        let snapshot = snapshots
            .get(&(player, room, connection))
            .copied()
            .unwrap_or(0);
        let Some(log) = logs.get(room) else { continue };
        let (Some(&first), Some(&last)) = (versions.first(), versions.last()) else {
            continue;
        };
        for entry in &log.entries {
            let tells_everyone = matches!(entry.input, Input::Action { .. } | Input::Timeout);
            if !tells_everyone || entry.version <= first || entry.version > last {
                continue;
            }
            verdict.checked += 1;
            if !versions.contains(&entry.version) && entry.version > snapshot {
                verdict.violations.push(format!(
                    "{player} in {room}: nothing of version {} ({}) on connection {connection}, \
                     which saw versions {first} to {last}",
                    entry.version,
                    describe(&entry.input)
                ));
            }
        }
    }
    verdict
}

/// No player was ever seated in two running matches: per player, the span from a match's setup
/// to its end (or to the player's leaving) never overlaps another match's.
pub fn one_running_match_per_player(logs: &BTreeMap<String, Log>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut spans: BTreeMap<&str, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for (room, log) in logs {
        let Some(setup) = log.entries.first() else {
            continue;
        };
        let Input::Setup { seats, .. } = &setup.input else {
            verdict
                .violations
                .push(format!("{room}: the log does not start with the setup"));
            continue;
        };
        let ended = log
            .entries
            .iter()
            .find(|e| e.winners.is_some())
            .map_or(u64::MAX, |e| e.at);
        for seat in seats {
            let left = log
                .entries
                .iter()
                .find(|e| matches!(&e.input, Input::Leave { player } if *player == seat.id))
                .map_or(u64::MAX, |e| e.at);
            spans
                .entry(&seat.id)
                .or_default()
                .push((setup.at, ended.min(left), room));
        }
    }
    for (player, mut matches) in spans {
        matches.sort();
        verdict.checked += matches.len();
        for pair in matches.windows(2) {
            let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
            if start < end {
                verdict.violations.push(format!(
                    "{player} was seated in {second} (at {start}) while {first} still ran{}",
                    if end == u64::MAX {
                        String::new()
                    } else {
                        format!(" (until {end})")
                    }
                ));
            }
        }
    }
    verdict
}

/// No acknowledged action was lost: each one is in its match's log, as many times as it was
/// acknowledged.
pub fn acknowledged_actions_logged(acked: &[Acked], logs: &BTreeMap<String, Log>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut logged: HashMap<(&str, &str, String), usize> = HashMap::new();
    for (room, log) in logs {
        for entry in &log.entries {
            if let Input::Action { player, action, .. } = &entry.input {
                *logged
                    .entry((room, player, action.to_string()))
                    .or_default() += 1;
            }
        }
    }
    for ack in acked {
        verdict.checked += 1;
        if !logs.contains_key(&ack.room) {
            verdict.violations.push(format!(
                "{} had an action acknowledged in {}, which has no log",
                ack.player, ack.room
            ));
            continue;
        }
        let key = (
            ack.room.as_str(),
            ack.player.as_str(),
            ack.action.to_string(),
        );
        match logged.get_mut(&key) {
            Some(count) if *count > 0 => *count -= 1,
            _ => verdict.violations.push(format!(
                "{} in {}: acknowledged action {} is not in the log",
                ack.player, ack.room, ack.action
            )),
        }
    }
    verdict
}

/// What a log entry's input was, in a few words.
pub fn describe(input: &Input) -> String {
    match input {
        Input::Setup { .. } => "setup".into(),
        Input::Action { player, .. } => format!("action of {player}"),
        Input::Timeout => "timeout".into(),
        Input::Leave { player } => format!("{player} left"),
        Input::Migrate { from } => format!("migration from {from}"),
        Input::Disconnected { player } => format!("{player} disconnected"),
        Input::Reconnected { player } => format!("{player} reconnected"),
    }
}

/// The kind of a log entry's input, for counting.
pub fn kind(input: &Input) -> &'static str {
    match input {
        Input::Setup { .. } => "setup",
        Input::Action { bot: true, .. } => "bot action",
        Input::Action { .. } => "action",
        Input::Timeout => "timeout",
        Input::Leave { .. } => "leave",
        Input::Migrate { .. } => "migrate",
        Input::Disconnected { .. } => "disconnected",
        Input::Reconnected { .. } => "reconnected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(player: &str, connection: u64, event: &str, version: u64) -> Seen {
        Seen {
            player: player.into(),
            room: "r".into(),
            connection,
            event: event.into(),
            version,
            body: json!({ "event": event, "version": version }).to_string(),
        }
    }

    fn log(room: &str, at: u64, seats: &[&str], entries: &[(u64, Value)]) -> (String, Log) {
        let mut all = vec![json!({
            "version": 1, "module": "m", "at": at, "turn": 1, "state": "s",
            "input": { "setup": { "seed": 1, "config": null,
                "seats": seats.iter().map(|id| json!({ "id": id, "level": 1 })).collect::<Vec<_>>() } }
        })];
        for (version, input) in entries {
            all.push(json!({
                "version": version, "module": "m", "at": at + version, "turn": 1, "state": "s",
                "input": input
            }));
        }
        let log =
            json!({ "roomId": room, "game": "g", "version": 1, "state": "s", "entries": all });
        (room.to_string(), serde_json::from_value(log).unwrap())
    }

    fn ended(mut log: (String, Log), at: u64) -> (String, Log) {
        let last = log.1.entries.last_mut().unwrap();
        last.winners = Some(vec![]);
        last.at = at;
        log
    }

    #[test]
    fn messages_in_version_order_once_each_pass() {
        let messages = [
            seen("a", 1, "matchFound", 1),
            seen("a", 1, "view", 1),
            seen("a", 1, "gameEvent", 2),
            seen("a", 1, "view", 2),
            seen("a", 2, "resumed", 4),
            seen("a", 3, "resumed", 4),
            seen("a", 3, "view", 5),
        ];
        let verdict = exactly_once_in_order(&messages);
        assert_eq!(verdict.violations, Vec::<String>::new());
        assert_eq!(verdict.checked, 7);
    }

    #[test]
    fn a_message_twice_or_a_version_going_back_is_caught() {
        let twice = [seen("a", 1, "view", 1), seen("a", 1, "view", 1)];
        let verdict = exactly_once_in_order(&twice);
        assert!(
            verdict.violations[0].contains("received twice"),
            "{verdict:?}"
        );
        let back = [seen("a", 1, "view", 3), seen("a", 2, "resumed", 2)];
        let verdict = exactly_once_in_order(&back);
        assert!(verdict.violations[0].contains("after view of version 3"));
        let mut other = seen("a", 1, "view", 1);
        other.body = "another view".into();
        let verdict = exactly_once_in_order(&[seen("a", 1, "view", 1), other]);
        assert!(verdict.violations[0].contains("two different views"));
    }

    #[test]
    fn a_change_missing_on_a_live_connection_is_caught_but_not_one_while_away() {
        let action = json!({ "action": { "player": "b", "action": {} } });
        let logs = BTreeMap::from([log(
            "r",
            0,
            &["a", "b"],
            &[(2, action.clone()), (3, json!("timeout")), (4, action)],
        )]);
        // Connection 1 saw 1 and 3 but not 2; connection 2 began at 4 (2 and 3 happened away).
        let messages = [
            seen("a", 1, "view", 1),
            seen("a", 1, "view", 3),
            seen("a", 2, "resumed", 4),
        ];
        let verdict = nothing_missed_while_connected(&messages, &logs);
        assert_eq!(verdict.violations.len(), 1, "{verdict:?}");
        assert!(verdict.violations[0].contains("nothing of version 2 (action of b)"));
        assert_eq!(verdict.checked, 2);
    }

    #[test]
    fn a_change_a_resumed_snapshot_covers_is_not_missing() {
        let action = json!({ "action": { "player": "b", "action": {} } });
        let logs = BTreeMap::from([log(
            "r",
            0,
            &["a", "b"],
            &[(2, action.clone()), (3, action.clone()), (4, action)],
        )]);
        // A resuming connection heard version 1, then its `resumed` of version 3, then 4.
        let messages = [
            seen("a", 2, "view", 1),
            seen("a", 2, "resumed", 3),
            seen("a", 2, "view", 4),
        ];
        let verdict = nothing_missed_while_connected(&messages, &logs);
        assert_eq!(verdict.violations, Vec::<String>::new());
        // Without the snapshot, 2 and 3 are missing.
        let verdict =
            nothing_missed_while_connected(&[messages[0].clone(), messages[2].clone()], &logs);
        assert_eq!(verdict.violations.len(), 2, "{verdict:?}");
    }

    #[test]
    fn a_player_in_two_running_matches_is_caught() {
        let one_after_another = BTreeMap::from([
            ended(log("r1", 100, &["a", "b"], &[(2, json!("timeout"))]), 200),
            log("r2", 300, &["a", "c"], &[]),
        ]);
        let verdict = one_running_match_per_player(&one_after_another);
        assert_eq!(verdict.violations, Vec::<String>::new());
        let overlapping = BTreeMap::from([
            log("r1", 100, &["a", "b"], &[(2, json!("timeout"))]),
            log("r2", 300, &["a", "c"], &[]),
        ]);
        let verdict = one_running_match_per_player(&overlapping);
        assert_eq!(verdict.violations.len(), 1, "{verdict:?}");
        assert!(verdict.violations[0].starts_with("a was seated in r2"));
        // Having left for good, a player may play elsewhere while the others go on.
        let left = BTreeMap::from([
            log(
                "r1",
                100,
                &["a", "b", "d"],
                &[(2, json!({ "leave": { "player": "a" } }))],
            ),
            log("r2", 300, &["a", "c"], &[]),
        ]);
        assert_eq!(
            one_running_match_per_player(&left).violations,
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_acknowledged_action_missing_from_the_log_is_caught() {
        let cast = json!({ "spell": "dash" });
        let logs = BTreeMap::from([log(
            "r",
            0,
            &["a", "b"],
            &[(2, json!({ "action": { "player": "a", "action": cast } }))],
        )]);
        let ack = |room: &str| Acked {
            player: "a".into(),
            room: room.into(),
            action: cast.clone(),
        };
        assert!(
            acknowledged_actions_logged(&[ack("r")], &logs)
                .violations
                .is_empty()
        );
        let twice = acknowledged_actions_logged(&[ack("r"), ack("r")], &logs);
        assert!(
            twice.violations[0].contains("is not in the log"),
            "{twice:?}"
        );
        let nowhere = acknowledged_actions_logged(&[ack("elsewhere")], &logs);
        assert!(nowhere.violations[0].contains("has no log"));
    }
}
