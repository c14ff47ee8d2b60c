//! Matchmaking by level, leaving the queue, and a whole match from Rust clients.

use crate::support::{Player, http, matched_pair, server, settle};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_paired_only_with_their_own_level() {
    let server = server(|_| {}).await;
    let one = Player::connect(&server).await;
    let two = Player::connect(&server).await;
    let other_two = Player::connect(&server).await;
    assert_eq!(
        one.request("joinMatchmaking", json!({ "level": 1 })).await,
        Value::Null
    );
    assert_eq!(
        two.request("joinMatchmaking", json!({ "level": 2 })).await,
        Value::Null
    );
    assert_eq!(
        one.next("waiting").await["message"],
        "Waiting for a match..."
    );
    let room = other_two
        .request("joinMatchmaking", json!({ "level": 2 }))
        .await;
    assert!(room.is_string());
    let found = two.next("matchFound").await;
    let mut ids = [two.id.clone(), other_two.id.clone()];
    ids.sort();
    assert_eq!(
        found["players"],
        json!([{ "id": ids[0], "level": 2 }, { "id": ids[1], "level": 2 }])
    );
    settle().await;
    assert_eq!(one.count("matchFound"), 0, "level 1 still waits");
    let (_, stats) = http(&server, "GET", "/health/stats", None).await;
    assert_eq!(stats["matchmaking"], json!({ "level_1": 1 }));

    // Any integer is a level, negative ones included.
    let low = Player::connect(&server).await;
    let lower = Player::connect(&server).await;
    low.request("joinMatchmaking", json!({ "level": -3 })).await;
    assert!(
        lower
            .request("joinMatchmaking", json!({ "level": -3 }))
            .await
            .is_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_that_is_not_an_integer_is_refused() {
    let server = server(|_| {}).await;
    let player = Player::connect(&server).await;
    for bad in [
        json!({ "level": "2" }),
        json!({ "level": 2.5 }),
        json!({}),
        json!("2"),
        json!({ "level": null }),
    ] {
        let answer = player.request("joinMatchmaking", bad.clone()).await;
        assert_eq!(answer["success"], false, "{bad}");
        assert_eq!(answer["code"], "invalid_level", "{bad}");
        assert!(answer["error"].as_str().unwrap().contains("integer"));
    }
    // Without an acknowledgement the refusal comes as an event.
    player
        .emit("joinMatchmaking", json!({ "level": "3" }))
        .await;
    let error = player.next("serverError").await;
    assert_eq!(error["event"], "joinMatchmaking");
    assert_eq!(error["code"], "invalid_level");
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(
        health["details"]["matchmakingData"], 0,
        "nothing was queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_or_disconnecting_takes_a_player_out_of_the_queue() {
    let server = server(|_| {}).await;
    let quitter = Player::connect(&server).await;
    quitter
        .request("joinMatchmaking", json!({ "level": 4 }))
        .await;
    let left = quitter.request("leaveMatchmaking", json!({})).await;
    assert_eq!(left, json!({ "success": true, "left": true }));
    assert_eq!(
        quitter.request("leaveMatchmaking", json!({})).await["left"],
        false
    );

    let leaver = Player::connect(&server).await;
    leaver
        .request("joinMatchmaking", json!({ "level": 4 }))
        .await;
    leaver.disconnect().await;
    settle().await;
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["details"]["matchmakingData"], 0);

    // Neither of them is matched with the next player: the next one waits.
    let next = Player::connect(&server).await;
    assert_eq!(
        next.request("joinMatchmaking", json!({ "level": 4 })).await,
        Value::Null
    );
    settle().await;
    assert_eq!(quitter.count("matchFound"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_in_a_match_cannot_queue_again() {
    let server = server(|_| {}).await;
    let (a, _b, room) = matched_pair(&server, 1).await;
    let answer = a.request("joinMatchmaking", json!({ "level": 1 })).await;
    assert_eq!(answer["code"], "already_in_match");
    assert!(answer["error"].as_str().unwrap().contains(&room));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_players_joining_at_once_each_land_in_exactly_one_match() {
    let server = server(|_| {}).await;
    let mut players = Vec::new();
    for _ in 0..20 {
        players.push(Player::connect(&server).await);
    }
    let joins = players
        .iter()
        .map(|p| p.request("joinMatchmaking", json!({ "level": 9 })));
    let acks = futures_util::future::join_all(joins).await;
    assert_eq!(
        acks.iter().filter(|a| a.is_string()).count(),
        10,
        "10 matches, each acked once"
    );
    settle().await;
    for player in &players {
        assert_eq!(
            player.count("matchFound"),
            1,
            "{} matched exactly once",
            player.id
        );
    }
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["details"]["activeGameStates"], 10);
    assert_eq!(health["details"]["matchmakingData"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_match_plays_to_its_end_with_each_player_seeing_only_itself() {
    let server = server(|_| {}).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let view_a = a.next("view").await["view"].clone();
    let view_b = b.next("view").await["view"].clone();
    assert_eq!(view_a["you"]["id"], a.id.as_str());
    assert!(view_a["opponents"][0].get("position").is_none());

    let a_at = view_a["you"]["position"].clone();
    let b_at = view_b["you"]["position"].clone();
    // Both strike where the other stands: a draw.
    let ack = a
        .request(
            "submitAction",
            json!({ "roomId": room, "action": { "spell": "lightning", "target": b_at } }),
        )
        .await;
    assert_eq!(ack, json!({ "success": true, "turn": 1 }));
    assert_eq!(b.next("gameEvent").await["event"]["type"], "submitted");
    b.request(
        "submitAction",
        json!({ "roomId": room, "action": { "spell": "lightning", "target": a_at } }),
    )
    .await;
    // The setup was version 1, each action one more.
    for player in [&a, &b] {
        assert_eq!(
            player.next("gameOver").await,
            json!({ "roomId": room, "winners": [], "version": 3 })
        );
    }
    let state = a.request("getGameState", json!({ "roomId": room })).await["state"].clone();
    assert_eq!(state["status"], "finished");
    assert_eq!(state["winners"], json!([]));
    assert_eq!(state["turn"], 1, "the last round does not advance the turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_runs_out_of_time_resolves_with_what_was_submitted() {
    let server = server(|c| c.round_timeout = std::time::Duration::from_millis(300)).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let first = a.next("view").await;
    assert!(first["roundEndsAt"].as_u64().is_some());
    a.request("submitAction", json!({ "roomId": room, "action": { "spell": "teleport", "target": a.next("view").await["view"]["you"]["position"] } })).await;
    // b never casts: the timeout resolves the round.
    let resolved = b.nth("gameEvent", 2).await;
    assert_eq!(resolved["event"]["type"], "roundResolved");
    assert_eq!(resolved["event"]["casts"].as_array().unwrap().len(), 1);
    let view = b.nth("view", 3).await;
    assert_eq!(view["turn"], 2);
}

/// Both stores: memory, and Redis (the shared server, under a prefix of their own).
async fn both_stores() -> [host::store::Store; 2] {
    use host::store::{MemoryStore, RedisStore, Store};
    let redis = RedisStore::connect(
        &host::config::RedisTarget::Server("redis://127.0.0.1:6379".into()),
        &crate::cluster_support::unique_prefix(),
        std::time::Duration::from_secs(2),
    )
    .await
    .expect("the shared Redis");
    [Store::Memory(MemoryStore::default()), Store::Redis(redis)]
}

/// Matches of exactly two.
const PAIRS: host::matchmaking::Seating = host::matchmaking::Seating {
    min: 2,
    max: 2,
    fill_after_ms: 60_000,
};

/// `player`'s session, held by its socket `s-<player>` on instance `i`.
async fn hold_session(store: &host::store::Store, player: &str) {
    let socket = format!("s-{player}");
    let session = host::model::Session {
        player_id: player.into(),
        token_sha256: "0".repeat(64),
        socket_id: Some(socket.clone()),
        instance_id: Some("i".into()),
        room_id: None,
        expires_at: None,
    };
    store.claim_session(&session, &socket).await.unwrap();
}

/// A match `room` of these players (on their `s-<player>` sockets), as stored.
fn game_of(room: &str, players: &[&str]) -> (host::model::MatchRecord, host::model::GameState) {
    let (record, mut game) = crate::support::bare_game(room);
    let seats: Vec<Value> = players
        .iter()
        .map(|id| {
            json!({ "id": id, "socketId": format!("s-{id}"), "instanceId": "i", "state": null,
                "level": 1, "connected": true })
        })
        .collect();
    game.players = serde_json::from_value(Value::Array(seats)).unwrap();
    (record, game)
}

/// A player seated in a match while its request to join a queue was still on its way is refused
/// by the store itself, in the step that would queue it: the chaos run caught such a late join
/// queueing a seated player again, who was then seated in a second match. Both stores, Redis a
/// real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_arrives_after_the_player_was_seated_is_refused_by_the_store() {
    use host::matchmaking::Joined;
    use host::model::QueueEntry;

    let entry = QueueEntry {
        id: "p1".into(),
        level: 1,
    };
    for store in both_stores().await {
        hold_session(&store, "p1").await;
        let (record, mut game) = game_of("r", &["p1"]);
        store.insert_match(&record, &game, &[], &[]).await.unwrap();

        let stored = store.session("p1").await.unwrap().unwrap();
        assert_eq!(stored.room_id.as_deref(), Some("r"), "seated in one step");
        let late = store.join_queue("", &entry, "i", PAIRS).await.unwrap();
        assert!(
            matches!(&late, Joined::Playing { room } if room == "r"),
            "{late:?}"
        );
        assert!(store.queue_counts().await.unwrap().is_empty(), "not queued");

        // Once the match is over, the player queues again.
        game.status = host::model::Status::Finished;
        game.version = 2;
        store.replace_game(&game, 1, &[], &[]).await.unwrap();
        let again = store.join_queue("", &entry, "i", PAIRS).await.unwrap();
        assert!(matches!(again, Joined::Waiting), "{again:?}");
    }
}

/// A match being made takes its players out of any queue they joined again meanwhile (on another
/// connection, before their session named it), and is not stored at all if one of them was
/// seated in another running match meanwhile: found by the chaos run, where a player who
/// reconnected while being matched was seated in three matches within 40 ms. Both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_match_takes_its_players_out_of_queues_and_never_seats_one_twice() {
    use host::matchmaking::Joined;
    use host::model::{QueueEntry, Status};
    use host::store::StoreError;

    for store in both_stores().await {
        for player in ["p1", "p2", "p3"] {
            hold_session(&store, player).await;
        }
        let p1 = QueueEntry {
            id: "p1".into(),
            level: 1,
        };
        let queued = store.join_queue("", &p1, "i", PAIRS).await.unwrap();
        assert!(matches!(queued, Joined::Waiting), "{queued:?}");

        let (record, mut first) = game_of("r1", &["p1", "p2"]);
        store.insert_match(&record, &first, &[], &[]).await.unwrap();
        assert!(
            store.queue_counts().await.unwrap().is_empty(),
            "p1 waits no more"
        );

        let (record, second) = game_of("r2", &["p2", "p3"]);
        let refused = store.insert_match(&record, &second, &[], &[]).await;
        assert_eq!(
            refused,
            Err(StoreError::Seated {
                player: "p2".into(),
                room: "r1".into()
            })
        );
        assert!(store.game("r2").await.unwrap().is_none(), "nothing stored");
        let p3 = store.session("p3").await.unwrap().unwrap();
        assert_eq!(p3.room_id, None, "p3's session names no match");

        // Once the first is over, p2 may play the second.
        first.status = Status::Finished;
        first.version = 2;
        store.replace_game(&first, 1, &[], &[]).await.unwrap();
        store
            .insert_match(&record, &second, &[], &[])
            .await
            .unwrap();
        assert_eq!(store.game("r2").await.unwrap().unwrap().room_id, "r2");
    }
}
