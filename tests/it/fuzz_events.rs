//! Fuzz target `events`: every client event's payload handling, through a real `gamehost`
//! process and a real Socket.IO client. A player in a running match sends generated events:
//! the host's events and unknown ones, with any JSON, or with the shape each event takes and
//! one field replaced by anything (the real room id among the values). Each request must be
//! answered (a refusal says its code), the process must stay up and never panic, and the match
//! must still answer for both players afterwards.

use crate::cluster_support::HostProcess;
use crate::fuzz_support::{cases, corpus, draw, json, tweak};
use crate::support::{Player, http, matched_pair};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A payload each event takes, `ROOM` standing for the match's room.
fn shape_of(event: &str) -> Value {
    match event {
        "joinMatchmaking" => {
            json!({ "level": 3, "game": "wizard-battle", "mode": "default", "vsBot": false })
        }
        "gameMessage" => json!({ "roomId": "ROOM", "message": { "text": "hi" } }),
        "updatePlayerState" => json!({ "roomId": "ROOM", "playerId": "ME", "state": { "x": 1 } }),
        "submitAction" => {
            json!({ "roomId": "ROOM", "action": { "spell": "fireball", "target": { "x": 1, "y": 2 } } })
        }
        _ => json!({ "roomId": "ROOM" }),
    }
}

/// The host's events, and one it does not know.
fn event(i: usize) -> &'static str {
    host::gateway::EVENTS
        .get(i)
        .copied()
        .unwrap_or("noSuchEvent")
}

/// One generated request: an event and its payload (`None`: sent with no argument).
fn request() -> impl Strategy<Value = (usize, Option<Value>)> {
    let payload = prop_oneof![
        1 => Just(None),
        3 => json().prop_map(Some),
        6 => (any::<usize>(), json()).prop_map(|(path, value)| Some(json!({ "tweak": path, "with": value }))),
    ];
    (0..host::gateway::EVENTS.len() + 1, payload)
}

/// The payload to send: a `{tweak, with}` marker becomes the event's shape with one field
/// replaced; `ROOM` and `ME` become the real room and player.
fn realise(event: &str, payload: Option<Value>, room: &str, me: &str) -> Option<Value> {
    let payload = payload?;
    let payload = match (
        payload.get("tweak").and_then(Value::as_u64),
        payload.get("with"),
    ) {
        (Some(path), Some(with)) => tweak(&shape_of(event), path as usize, with.clone()),
        _ => payload,
    };
    let text = payload
        .to_string()
        .replace("\"ROOM\"", &format!("{room:?}"))
        .replace("\"ME\"", &format!("{me:?}"));
    Some(serde_json::from_str(&text).expect("still JSON"))
}

/// Sends one request and checks its answer.
async fn send(player: &Player, event: &str, payload: Option<Value>) {
    let answer = match &payload {
        Some(data) => player.request(event, data.clone()).await,
        None => player.request_bare(event).await,
    };
    if answer.get("success") == Some(&Value::Bool(false)) {
        let code = answer["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty(),
            "{event} {payload:?}: a refusal without a code: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_never_crash_the_host_and_are_always_answered() {
    let mut host = HostProcess::standalone_logged(&[
        ("EVENTS_PER_SECOND", "100000"),
        ("EVENT_BURST", "100000"),
        ("BOT_THINK_MS", "50"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let (a, b, room) = matched_pair(&host, 1).await;

    // The corpus first: each file is `{"event", "payload"}` (payload absent: no argument).
    let kept = corpus("events");
    for (name, bytes) in &kept {
        let case: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let event = case["event"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no event"));
        send(
            &a,
            event,
            realise(event, case.get("payload").cloned(), &room, &a.id),
        )
        .await;
    }
    let generated = draw(request(), cases(), 0xE7E7);
    for (i, payload) in &generated {
        let event = event(*i);
        send(&a, event, realise(event, payload.clone(), &room, &a.id)).await;
    }

    assert!(host.is_running(), "the host died:\n{}", host.log());
    let log = host.log();
    assert!(!log.contains("panicked"), "the host panicked:\n{log}");
    let (status, _) = http(&host, "GET", "/health", None).await;
    assert_eq!(status, 200);
    for player in [&a, &b] {
        let state = player
            .request("getGameState", json!({ "roomId": room }))
            .await;
        assert_eq!(state["roomId"], room.as_str(), "{state}");
    }
    eprintln!(
        "events: {} corpus inputs and {} generated requests answered",
        kept.len(),
        generated.len()
    );
}
