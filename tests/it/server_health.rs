//! The HTTP endpoints: shapes as the original's, counts that are true, admin protection.

use crate::support::{Player, http, matched_pair, server, settle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats_count_what_is_really_there() {
    let server = server(|_| {}).await;
    let (status, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(status, 200);
    for key in ["redis", "matchmaking", "gameStates", "socketMappings"] {
        assert!(health[key].is_boolean(), "{key} in {health}");
    }
    assert_eq!(health["mode"], "standalone");
    assert_eq!(health["redis"], false);
    assert_eq!(
        health["details"],
        json!({ "redisConnection": false, "matchmakingData": 0, "activeGameStates": 0, "activeSocketMappings": 0, "activeRooms": 0 })
    );

    let (a, b, room) = matched_pair(&server, 2).await;
    let waiting = Player::connect(&server).await;
    waiting
        .request("joinMatchmaking", json!({ "level": 5 }))
        .await;
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(
        health["details"],
        json!({ "redisConnection": false, "matchmakingData": 1, "activeGameStates": 1, "activeSocketMappings": 3, "activeRooms": 1 })
    );
    let (status, stats) = http(&server, "GET", "/health/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["matchmaking"], json!({ "level_5": 1 }));
    assert_eq!(stats["gameStates"], json!({ "total": 1, "rooms": [room] }));
    assert_eq!(stats["socketMappings"]["total"], 3);
    let by_instance = stats["socketMappings"]["byInstance"].as_object().unwrap();
    assert_eq!(by_instance.len(), 1);
    assert_eq!(by_instance.values().next().unwrap(), 3);
    assert_eq!(stats["rooms"], json!({ "total": 1, "active": [room] }));
    assert_eq!(stats["instances"][0]["sockets"], 3);

    // A finished match is no longer active, and a disconnected socket no longer mapped.
    let a_at = a.next("view").await["view"]["you"]["position"].clone();
    let b_at = b.next("view").await["view"]["you"]["position"].clone();
    a.request(
        "submitAction",
        json!({ "roomId": room, "action": { "spell": "lightning", "target": b_at } }),
    )
    .await;
    b.request(
        "submitAction",
        json!({ "roomId": room, "action": { "spell": "lightning", "target": a_at } }),
    )
    .await;
    a.next("gameOver").await;
    waiting.disconnect().await;
    settle().await;
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(
        health["details"],
        json!({ "redisConnection": false, "matchmakingData": 0, "activeGameStates": 0, "activeSocketMappings": 2, "activeRooms": 0 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness() {
    let server = server(|_| {}).await;
    assert_eq!(
        http(&server, "GET", "/health/live", None).await,
        (200, json!({ "status": "live" }))
    );
    assert_eq!(
        http(&server, "GET", "/health/ready", None).await,
        (200, json!({ "status": "ready" }))
    );
    let _player = Player::connect(&server).await;
    let stopped = tokio::time::timeout(crate::support::PATIENCE, server.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown closes open sockets and finishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_needs_the_admin_token_when_one_is_set() {
    let server = server(|c| c.admin_token = Some("s3cret".into())).await;
    let (status, body) = http(&server, "POST", "/health/cleanup", None).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
    assert_eq!(
        http(&server, "POST", "/health/cleanup", Some("wrong"))
            .await
            .0,
        401
    );
    let (status, body) = http(&server, "POST", "/health/cleanup", Some("s3cret")).await;
    assert_eq!(status, 200);
    assert_eq!(body["cleaned"], 0, "nothing stale: {body}");
    assert_eq!(body["errors"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_without_a_token_answers_local_clients() {
    let server = server(|_| {}).await;
    let player = Player::connect(&server).await;
    player
        .request("joinMatchmaking", json!({ "level": 1 }))
        .await;
    let (status, body) = http(&server, "POST", "/health/cleanup", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["cleaned"], 0, "a live, queued socket is not stale");
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["details"]["matchmakingData"], 1);
}
