//! Targeted delivery: a match's messages and chat reach only the instances that hold its players.
//! Counted, not timed: each `gamehost` process tells in `/metrics` how many pub/sub messages of
//! rooms (and of anything else) reached it.

use crate::cluster::pair_across;
use crate::cluster_support::{HostProcess, PrivateRedis, Shared, cut_pub_sub, unique_prefix};
use crate::faces_metrics::{read, scrape};
use crate::support::{Player, act, position, settle, strike_each_other};
use serde_json::json;
use std::time::Duration;

async fn received(host: &HostProcess, feed: &str) -> f64 {
    read(
        &scrape(host).await,
        "gamehost_pubsub_messages_total",
        &[("feed", feed)],
    )
}

/// `a` queues, `b` joins: matched across their instances, and shown the board.
pub(crate) async fn pair(a: &Player, b: &Player, level: i64) -> String {
    let room = pair_across(a, b, level).await;
    a.next("view").await;
    b.next("view").await;
    room
}

/// Two `gamehost` processes on `redis` under `prefix`; `a` on the first and `b` on the second
/// play a match.
pub(crate) async fn two_processes_and_a_match(
    redis: &impl Shared,
    prefix: &str,
) -> ([HostProcess; 2], [Player; 2], String) {
    let one = HostProcess::spawn(redis, prefix, &[]).await;
    let two = HostProcess::spawn(redis, prefix, &[]).await;
    let a = Player::connect(&one).await;
    let b = Player::connect(&two).await;
    let room = pair(&a, &b, 1).await;
    ([one, two], [a, b], room)
}

/// Two rounds: both stay, then strike each other (a draw); then each saw every round once, in
/// order, and the match's start and end once.
pub(crate) async fn play_to_the_end(a: &Player, b: &Player, room: &str) {
    let (stay_a, stay_b) = (position(a), position(b));
    for (player, stay) in [(a, stay_a), (b, stay_b)] {
        let ack = act(player, room, json!({ "spell": "teleport", "target": stay })).await;
        assert_eq!(ack["success"], true, "{ack}");
    }
    for player in [a, b] {
        player.first_where("view", |v| v["turn"] == 2).await;
    }
    strike_each_other(a, b, room).await;
    for player in [a, b] {
        player.next("gameOver").await;
    }
    settle().await;
    for player in [a, b] {
        assert_eq!(player.count("matchFound"), 1);
        assert_eq!(player.count("gameOver"), 1);
        let rounds = player
            .received("gameEvent")
            .iter()
            .filter(|e| e["event"]["type"] == "roundResolved")
            .count();
        assert_eq!(rounds, 2, "{} saw each round once", player.id);
        let turns: Vec<u64> = player
            .received("view")
            .iter()
            .map(|v| v["turn"].as_u64().unwrap())
            .collect();
        assert!(turns.is_sorted(), "in order: {turns:?}");
    }
}

/// Four instances on `redis`; `a` on the first and `b` on the second play a match.
async fn four_instances_and_a_match<R: Shared>(
    redis: R,
) -> (R, Vec<HostProcess>, Player, Player, String) {
    let prefix = unique_prefix();
    let mut fleet = Vec::new();
    for _ in 0..4 {
        fleet.push(HostProcess::spawn(&redis, &prefix, &[]).await);
    }
    let a = Player::connect(&fleet[0]).await;
    let b = Player::connect(&fleet[1]).await;
    let room = pair(&a, &b, 1).await;
    (redis, fleet, a, b, room)
}

pub(crate) async fn chat(from: &Player, room: &str, text: &str) {
    let ack = from
        .request("gameMessage", json!({ "roomId": room, "message": text }))
        .await;
    assert_eq!(ack["success"], true, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_four_instances_the_two_without_players_receive_nothing_of_a_match_and_its_chat() {
    only_instances_with_players_hear_a_match(PrivateRedis::start()).await;
}

/// Also exactly once and in order (`play_to_the_end`).
pub(crate) async fn only_instances_with_players_hear_a_match(redis: impl Shared) {
    let (_redis, fleet, a, b, room) = four_instances_and_a_match(redis).await;

    chat(&a, &room, "hello").await;
    chat(&b, &room, "hi").await;
    play_to_the_end(&a, &b, &room).await;
    for player in [&a, &b] {
        assert_eq!(player.count("gameMessage"), 2);
    }
    for busy in &fleet[..2] {
        let heard = received(busy, "rooms").await;
        assert!(heard >= 4.0, "a match and its chat: {heard}");
    }
    for idle in &fleet[2..] {
        assert_eq!(received(idle, "rooms").await, 0.0, "{}", idle.instance_id);
        assert_eq!(received(idle, "other").await, 0.0, "{}", idle.instance_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_who_resumes_on_another_instance_is_reached_there_and_no_longer_where_it_was() {
    let (_redis, fleet, a, b, room) = four_instances_and_a_match(PrivateRedis::start()).await;

    // b moves from the second instance to the third.
    let auth = b.resume_auth();
    b.disconnect().await;
    a.next("opponentDisconnected").await;
    let b = Player::connect_with(&fleet[2], Some(auth)).await.unwrap();
    assert_eq!(b.next("resumed").await["roomId"], room.as_str());
    a.next("opponentReconnected").await;
    settle().await;
    let left_behind = received(&fleet[1], "rooms").await;

    chat(&a, &room, "still there?").await;
    assert_eq!(b.next("gameMessage").await["message"], "still there?");
    let stay = position(&a);
    act(&a, &room, json!({ "spell": "teleport", "target": stay })).await;
    let stay = b.received("resumed")[0]["view"]["you"]["position"].clone();
    act(&b, &room, json!({ "spell": "teleport", "target": stay })).await;
    for player in [&a, &b] {
        player.first_where("view", |v| v["turn"] == 2).await;
    }
    settle().await;
    assert_eq!(b.count("gameMessage"), 1);
    assert_eq!(
        received(&fleet[1], "rooms").await,
        left_behind,
        "the instance b left hears nothing more of the room"
    );
    assert!(received(&fleet[2], "rooms").await >= 3.0);
    assert_eq!(received(&fleet[3], "rooms").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pub_sub_connections_lose_and_double_nothing() {
    killed_pub_sub_connections(PrivateRedis::start()).await;
}

pub(crate) async fn killed_pub_sub_connections(redis: impl Shared) {
    let prefix = unique_prefix();
    let (_fleet, [a, b], room) = two_processes_and_a_match(&redis, &prefix).await;

    // Every instance's subscriber is cut again and again while the match is played: what is
    // published while one is down is missed, and read back from the room's log.
    // On a cluster, on every node: a room's channel is on its room's node.
    let cutting = cut_pub_sub(
        redis.every_node(),
        Duration::from_millis(800),
        Duration::from_millis(5),
    );
    play_to_the_end(&a, &b, &room).await;
    let cut = cutting.join().unwrap();
    assert!(cut >= 2, "each instance's subscriber was cut ({cut} cuts)");
}
