//! Player identity across connections: disconnect notices, forfeits, resuming, wrong tokens.

use crate::support::{Player, matched_pair, server, settle};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_is_told_once_and_forfeits_after_the_grace_period() {
    let server = server(|c| c.reconnect_grace = Duration::from_millis(400)).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    b.disconnect().await;
    let notice = a.next("opponentDisconnected").await;
    assert_eq!(notice["roomId"], room.as_str());
    assert_eq!(notice["reconnectWithinMs"], 400);
    let over = a.next("gameOver").await;
    assert_eq!(over["winners"], json!([a.id]));
    settle().await;
    assert_eq!(a.count("opponentDisconnected"), 1);
    assert_eq!(a.count("gameOver"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_who_returns_within_the_grace_period_resumes_its_match() {
    let server = server(|c| c.reconnect_grace = Duration::from_secs(10)).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let b_id = b.id.clone();
    let auth = b.resume_auth();
    let before = b.next("view").await["view"].clone();
    b.disconnect().await;
    a.next("opponentDisconnected").await;

    let back = Player::connect_with(&server, Some(auth))
        .await
        .expect("resumed");
    assert_eq!(back.id, b_id, "the same player, on a new socket");
    let resumed = back.next("resumed").await;
    assert_eq!(resumed["roomId"], room.as_str());
    assert_eq!(resumed["view"], before, "the view it had");
    assert_eq!(resumed["state"]["gameData"]["you"]["id"], b_id.as_str());
    assert_eq!(
        a.next("opponentReconnected").await["playerId"],
        b_id.as_str()
    );

    // And play goes on, on the new socket.
    let here = resumed["view"]["you"]["position"].clone();
    let ack = back
        .request(
            "submitAction",
            json!({ "roomId": room, "action": { "spell": "teleport", "target": here } }),
        )
        .await;
    assert_eq!(ack["success"], true);
    assert_eq!(
        a.nth("gameEvent", 1).await["event"]["player"],
        b_id.as_str()
    );
    let state = a.request("getGameState", json!({ "roomId": room })).await["state"].clone();
    let slot = state["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == b_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(slot["connected"], true);
    assert_eq!(slot["socketId"], back.socket_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_resume_token_is_refused_and_takes_no_seat() {
    let server = server(|_| {}).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let forged = json!({ "playerId": b.id, "resumeToken": "0".repeat(64) });
    let refusal = Player::connect_with(&server, Some(forged))
        .await
        .err()
        .expect("refused");
    assert!(refusal.contains("wrong resume token"), "{refusal}");
    let half = json!({ "playerId": b.id });
    let refusal = Player::connect_with(&server, Some(half))
        .await
        .err()
        .expect("refused");
    assert!(refusal.contains("together"), "{refusal}");
    let stranger = json!({ "playerId": "nobody", "resumeToken": a.token });
    assert!(
        Player::connect_with(&server, Some(stranger)).await.is_err(),
        "a token is only good for its player"
    );

    settle().await;
    assert_eq!(a.count("opponentReconnected"), 0);
    assert_eq!(b.count("resumed"), 0);
    let here = b.next("view").await["view"]["you"]["position"].clone();
    let ack = b
        .request(
            "submitAction",
            json!({ "roomId": room, "action": { "spell": "teleport", "target": here } }),
        )
        .await;
    assert_eq!(ack["success"], true, "b still holds its own seat: {ack}");
}
