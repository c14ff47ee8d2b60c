//! The fleet on a Redis Cluster (`REDIS_CLUSTER_NODES`): the cluster suite again, each test on a
//! local three-master cluster of its own, and what only a cluster does: a slot moving to
//! another node mid-match, and its pub/sub connections cut.

use crate::cluster_support::{HostProcess, LocalCluster, Shared, unique_prefix};
use crate::scale_targeted::{pair, play_to_the_end};
use crate::support::Player;
use redis::Commands;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_with_its_players_on_two_instances_plays_to_the_end() {
    crate::cluster::a_match_across_two_instances(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_players_resume_on_another_instance_and_the_dead_one_is_reaped() {
    crate::cluster::resume_after_a_kill_9(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigterm_players_resume_on_another_instance_at_once() {
    crate::cluster::resume_after_a_sigterm(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_players_of_two_games_at_once_are_each_matched_once_within_the_seats() {
    crate::cluster_games::a_thousand_players_race(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_four_instances_the_two_without_players_receive_nothing_and_the_others_everything_once()
{
    crate::scale_targeted::only_instances_with_players_hear_a_match(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pub_sub_connections_lose_and_double_nothing() {
    crate::scale_targeted::killed_pub_sub_connections(LocalCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_pins_matches_unless_the_new_version_migrates_them_at_a_round_boundary() {
    crate::hot_reload::a_swap_across_instances(LocalCluster::start()).await;
}

/// The slot that holds the match (and, for now, the whole fleet) moves to another node while
/// the match is played on two instances: every key goes with it, the instances follow the
/// redirections, and their sharded subscriptions, which the old node drops, are made again on
/// the new one. Each player sees every message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_holding_a_running_match_moves_to_another_node_mid_match() {
    let cluster = LocalCluster::start();
    let prefix = unique_prefix();
    let one = HostProcess::spawn(&cluster, &prefix, &[]).await;
    let two = HostProcess::spawn(&cluster, &prefix, &[]).await;
    let a = Player::connect(&one).await;
    let b = Player::connect(&two).await;
    let room = pair(&a, &b, 1).await;

    let slot = cluster.fleet_slot();
    let before = cluster.owner_of(slot);
    let moving = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(30));
        let after = cluster.migrate_slot(slot);
        (cluster, after)
    });
    play_to_the_end(&a, &b, &room).await;
    let (cluster, after) = moving.join().unwrap();
    assert_ne!(after, before, "the slot moved");
    assert_eq!(cluster.owner_of(slot), after);

    // The finished match is stored on the new node, and play goes on there.
    let stored: Option<String> = cluster
        .node_conn(after)
        .hget(format!("{}game_states", cluster.key_prefix(&prefix)), &room)
        .unwrap();
    let stored: Value = serde_json::from_str(&stored.expect("stored on the new node")).unwrap();
    assert_eq!(stored["status"], "finished");
    let c = Player::connect(&one).await;
    let d = Player::connect(&two).await;
    let next = pair(&c, &d, 2).await;
    play_to_the_end(&c, &d, &next).await;
}
