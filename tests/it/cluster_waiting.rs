//! A player waiting for a match keeps waiting when the fleet loses its queue entry: Redis comes
//! back empty from an outage, or the instance that holds the player is taken for dead and
//! the others remove its players' entries. Its instance queues it again when it writes its state
//! back, and the next player of its level is matched with it.

use crate::cluster::{eventually, mappings, session_held_by};
use crate::cluster_support::{HostProcess, PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::support::Player;
use redis::Commands;
use serde_json::{Value, json};
use std::time::Duration;

/// The players with an entry in a queue.
fn queued(redis: &impl Shared, prefix: &str) -> Vec<String> {
    redis
        .conn()
        .hkeys(format!("{}queued", redis.key_prefix(prefix)))
        .unwrap()
}

async fn joins_and_waits(waiter: &Player) {
    let joined = waiter
        .request("joinMatchmaking", json!({ "level": 3 }))
        .await;
    assert_eq!(joined, Value::Null, "it waits");
    waiter.next("waiting").await;
}

/// `waiter` (whose entry the fleet lost and got back) is matched with a newcomer on `there`.
async fn matched_with_a_newcomer(waiter: &Player, there: &impl crate::support::Endpoint) {
    let newcomer = Player::connect(there).await;
    let room = newcomer
        .request("joinMatchmaking", json!({ "level": 3 }))
        .await;
    let room = room
        .as_str()
        .unwrap_or_else(|| panic!("the newcomer waits instead of meeting the waiter: {room}"));
    assert_eq!(waiter.next("matchFound").await["roomId"], room);
    assert_eq!(newcomer.next("matchFound").await["roomId"], room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_player_waits_on_after_redis_comes_back_empty() {
    a_waiting_player_waits_on_after_an_outage(PrivateRedis::start()).await;
}

pub(crate) async fn a_waiting_player_waits_on_after_an_outage(mut redis: impl Shared) {
    let prefix = unique_prefix();
    let one = cluster_server(&redis, &prefix, |_| {}).await;
    let two = cluster_server(&redis, &prefix, |_| {}).await;
    let waiter = Player::connect(&one).await;
    joins_and_waits(&waiter).await;
    assert_eq!(queued(&redis, &prefix), vec![waiter.id.clone()]);

    redis.stop();
    redis.start_again();
    eventually("its socket written back", Duration::from_secs(15), || {
        mappings(&redis, &prefix).contains_key(waiter.socket_id())
    })
    .await;
    eventually("it queued again", Duration::from_secs(15), || {
        queued(&redis, &prefix) == vec![waiter.id.clone()]
    })
    .await;
    matched_with_a_newcomer(&waiter, &two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_player_of_an_instance_taken_for_dead_waits_on() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let paused = HostProcess::spawn(&redis, &prefix, &[]).await;
    let survivor = cluster_server(&redis, &prefix, |_| {}).await;
    let waiter = Player::connect(&paused).await;
    joins_and_waits(&waiter).await;

    paused.signal("STOP");
    // The survivor reaps it: the waiter's session is released, its entry removed.
    session_held_by(&redis, &prefix, &waiter.id, None).await;
    assert!(queued(&redis, &prefix).is_empty(), "the entry was removed");
    paused.signal("CONT");
    session_held_by(&redis, &prefix, &waiter.id, Some(waiter.socket_id())).await;
    eventually("it queued again", Duration::from_secs(15), || {
        queued(&redis, &prefix) == vec![waiter.id.clone()]
    })
    .await;
    matched_with_a_newcomer(&waiter, &survivor).await;
}
