//! Bad input of every kind: a clear error, never a panic, never a change to anyone's state.

use crate::support::{Player, http, matched_pair, server, settle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The stored game, as the given player sees it.
async fn game(player: &Player, room: &str) -> Value {
    player
        .request("getGameState", json!({ "roomId": room }))
        .await["state"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_missing_fields_are_refused_clearly() {
    let server = server(|_| {}).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let before = game(&a, &room).await;
    let cases = [
        ("submitAction", json!({ "roomId": room }), "invalid_payload"),
        (
            "submitAction",
            json!({ "action": { "spell": "fireball" } }),
            "invalid_payload",
        ),
        (
            "submitAction",
            json!({ "roomId": 7, "action": {} }),
            "invalid_payload",
        ),
        (
            "submitAction",
            json!({ "roomId": room, "action": "fireball" }),
            "invalid_action",
        ),
        (
            "submitAction",
            json!({ "roomId": room, "action": { "spell": "fireball", "target": { "x": "a" } } }),
            "invalid_action",
        ),
        (
            "submitAction",
            json!({ "roomId": "no-such-room", "action": {} }),
            "unknown_room",
        ),
        ("gameMessage", json!({ "message": "hi" }), "invalid_payload"),
        ("gameMessage", json!([1, 2, 3]), "invalid_payload"),
        ("getView", json!(null), "invalid_payload"),
        (
            "updatePlayerState",
            json!({ "roomId": room }),
            "invalid_payload",
        ),
        ("noSuchEvent", json!({}), "unknown_event"),
    ];
    for (event, data, code) in cases {
        let answer = a.request(event, data.clone()).await;
        assert_eq!(answer["success"], false, "{event} {data}");
        assert_eq!(answer["code"], code, "{event} {data}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty());
        // Words for players, not the decoder's.
        for phrase in [
            "invalid type",
            "missing field",
            "expected `",
            "at line",
            "Cast",
        ] {
            assert!(!error.contains(phrase), "{event} {data}: {error}");
        }
    }
    // The same without acknowledgements: a serverError event each.
    a.emit("noSuchEvent", json!(1)).await;
    a.emit("submitAction", json!({ "roomId": room })).await;
    let first = a.next("serverError").await;
    assert_eq!(
        (first["event"].as_str(), first["code"].as_str()),
        (Some("noSuchEvent"), Some("unknown_event"))
    );
    assert_eq!(a.nth("serverError", 2).await["code"], "invalid_payload");

    let after = game(&a, &room).await;
    assert_eq!(after["version"], before["version"], "nothing changed");
    assert_eq!(b.count("gameEvent"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_acts_for_another_player_or_in_another_room() {
    let server = server(|_| {}).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let (c, _d, other_room) = matched_pair(&server, 1).await;
    let before = game(&a, &room).await;

    let post = c
        .request("gameMessage", json!({ "roomId": room, "message": "boo" }))
        .await;
    assert_eq!(post["code"], "not_in_room");
    let act = c.request("submitAction", json!({ "roomId": room, "action": { "spell": "lightning", "target": { "x": 0, "y": 0 } } })).await;
    assert_eq!(act["code"], "not_in_room");
    let peek = c.request("getGameState", json!({ "roomId": room })).await;
    assert_eq!(peek["state"], Value::Null);
    assert_eq!(peek["code"], "not_in_room");
    let rewrite = c
        .request(
            "updatePlayerState",
            json!({ "roomId": room, "playerId": a.id, "state": {} }),
        )
        .await;
    assert_eq!(rewrite["success"], false);
    let own_room_other_player = b
        .request(
            "updatePlayerState",
            json!({ "roomId": room, "playerId": a.id, "state": {} }),
        )
        .await;
    assert_eq!(own_room_other_player["code"], "not_your_player");
    let in_wrong_room = a
        .request(
            "updatePlayerState",
            json!({ "roomId": other_room, "playerId": a.id, "state": {} }),
        )
        .await;
    assert_eq!(in_wrong_room["success"], false);

    settle().await;
    assert_eq!(a.count("gameMessage") + b.count("gameMessage"), 0);
    assert_eq!(game(&a, &room).await["version"], before["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_refused_and_the_socket_stays() {
    let server = server(|c| c.client_limits.max_event_bytes = 1024).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let big = "x".repeat(4096);
    let answer = a
        .request("gameMessage", json!({ "roomId": room, "message": big }))
        .await;
    assert_eq!(answer["code"], "payload_too_large");
    let small = a
        .request("gameMessage", json!({ "roomId": room, "message": "hi" }))
        .await;
    assert_eq!(small["success"], true, "the socket still works");
    assert_eq!(b.next("gameMessage").await["message"], "hi");
    settle().await;
    assert_eq!(b.count("gameMessage"), 1, "the oversized one went nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_socket_is_rate_limited_without_hurting_others() {
    let server = server(|c| {
        c.client_limits.events_per_second = 5;
        c.client_limits.burst = 10;
    })
    .await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let started = std::time::Instant::now();
    for i in 0..60 {
        a.emit("gameMessage", json!({ "roomId": room, "message": i }))
            .await;
    }
    settle().await;
    let elapsed = started.elapsed().as_secs_f64();
    let limited = a
        .received("serverError")
        .iter()
        .filter(|e| e["code"] == "rate_limited")
        .count();
    let relayed = b.count("gameMessage");
    assert_eq!(
        limited + relayed,
        60,
        "each event is either relayed or refused"
    );
    // A burst of 10, then 5 a second: however slow this machine, no more got through.
    let allowed = 10 + (5.0 * elapsed).ceil() as usize;
    assert!(
        relayed <= allowed,
        "{relayed} relayed in {elapsed:.2}s; at most {allowed} allowed"
    );
    assert!(limited > 0);
    // b is not limited by a's flood.
    let answer = b
        .request(
            "gameMessage",
            json!({ "roomId": room, "message": "still here" }),
        )
        .await;
    assert_eq!(answer["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_do_not_hurt_the_server() {
    let server = server(|_| {}).await;
    let (a, _b, room) = matched_pair(&server, 1).await;
    let before = game(&a, &room).await;

    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        server.addr()
    );
    let (mut raw, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = raw.next().await.unwrap().unwrap();
    assert!(
        open.to_text().unwrap().starts_with('0'),
        "engine.io open packet"
    );
    raw.send(Message::text("40")).await.unwrap();
    // Engine.IO may ping ("2") before Socket.IO acknowledges the connection ("40{sid}").
    loop {
        let frame = raw.next().await.unwrap().unwrap();
        let text = frame.to_text().unwrap().to_string();
        if text.starts_with("40") {
            break;
        }
        assert_eq!(text, "2", "only a ping may come first");
        raw.send(Message::text("3")).await.unwrap();
    }
    for garbage in [
        r#"42["joinMatchmaking",{"level":1"#,
        r#"42{"not":"an array"}"#,
        r#"42[]"#,
        r#"42[17,{"level":1}]"#,
        "4",
        "42",
        "\u{0}\u{1}binary-ish",
        r#"43999["ack for nothing"]"#,
    ] {
        let _ = raw.send(Message::text(garbage)).await;
    }
    // As Socket.IO's own servers do, a packet that does not parse closes its connection.
    let closed = tokio::time::timeout(crate::support::PATIENCE, async {
        loop {
            match raw.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was closed");

    // The server is still there and unchanged.
    let (status, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["details"]["matchmakingData"], 0);
    assert_eq!(game(&a, &room).await["version"], before["version"]);
    let fresh = Player::connect(&server).await;
    assert_eq!(
        fresh.request("leaveMatchmaking", json!({})).await["success"],
        true
    );
}
