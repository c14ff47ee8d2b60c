//! Many games on a fleet: tables of several players across instances, a thousand players of two
//! games joining at once, bots that outlive the instance that seated them, and instances whose
//! folders hold different games.

use crate::cluster::eventually;
use crate::cluster_support::{HostProcess, PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::play;
use crate::support::{Player, http, module_bytes, rules_dir, seated, settle};
use futures_util::future::join_all;
use redis::Commands;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_players_of_liars_dice_on_three_instances_play_to_the_end() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let server = cluster_server(&redis, &prefix, |c| {
            // Long enough that all four join first, however slow the machine.
            c.match_fill = Duration::from_secs(3);
            crate::support::unhurried_limits(c);
        })
        .await;
        servers.push(server);
    }
    let mut players = Vec::new();
    for i in 0..4 {
        players.push(Player::connect(&servers[i % 3]).await);
    }
    let join = json!({ "level": 1, "game": "liars-dice" });
    for player in &players {
        assert_eq!(
            player.request("joinMatchmaking", join.clone()).await,
            Value::Null
        );
    }
    let found = players[0].next("matchFound").await;
    let room = found["roomId"].as_str().unwrap().to_string();
    let mut ids: Vec<&str> = seated(&found);
    ids.sort();
    let mut expected: Vec<&str> = players.iter().map(|p| p.id.as_str()).collect();
    expected.sort();
    assert_eq!(ids, expected, "the four, whichever instance each joined");
    for player in &players[1..] {
        assert_eq!(player.next("matchFound").await["roomId"], room.as_str());
    }
    let seats: Vec<&Player> = players.iter().collect();
    let over = play::to_the_end(&seats, &room, play::dice).await;
    let winners = over["winners"].as_array().unwrap();
    assert_eq!(winners.len(), 1, "{over}");
    for player in &players[1..] {
        assert_eq!(
            player.next("gameOver").await,
            over,
            "everyone hears the same end"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_players_of_two_games_at_once_are_each_matched_once_within_the_seats() {
    a_thousand_players_race(PrivateRedis::start()).await;
}

pub(crate) async fn a_thousand_players_race(redis: impl Shared) {
    let prefix = unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..3 {
        // Long enough that every join lands first, however slow the machine: the partial tables
        // are then the remainders.
        let fill = Duration::from_secs(8);
        let server = cluster_server(&redis, &prefix, |c| c.match_fill = fill).await;
        servers.push(server);
    }
    let mut players = Vec::new();
    for batch in 0..20 {
        let connects = (0..50).map(|i| Player::connect(&servers[(batch * 50 + i) % 3]));
        players.extend(join_all(connects).await);
    }
    // 500 of each game over three levels; no level leaves a lone player behind (dice tables
    // take 2 to 6, and 168, 166 and 166 leave remainders of 0, 4 and 4; wizards pair).
    let levels = [168, 166, 166];
    let mut asks = Vec::new();
    for game in ["wizard-battle", "liars-dice"] {
        for (level, &count) in levels.iter().enumerate() {
            for _ in 0..count {
                asks.push(json!({ "level": level + 1, "game": game }));
            }
        }
    }
    assert_eq!(asks.len(), players.len());
    let started = Instant::now();
    let joins = players
        .iter()
        .zip(&asks)
        .map(|(p, ask)| p.request_within("joinMatchmaking", ask.clone(), Duration::from_secs(60)));
    let acks = join_all(joins).await;
    let joined = started.elapsed();
    assert!(
        acks.iter().all(|a| a.is_null() || a.is_string()),
        "{acks:?}"
    );

    eventually(
        "every player told of its match",
        Duration::from_secs(60),
        || players.iter().all(|p| p.count("matchFound") >= 1),
    )
    .await;
    let last_matched = started.elapsed();
    settle().await;
    let mut rooms: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (player, ask) in players.iter().zip(&asks) {
        assert_eq!(player.count("matchFound"), 1, "{} told once", player.id);
        let found = player.next("matchFound").await;
        assert!(seated(&found).contains(&player.id.as_str()));
        rooms
            .entry(found["roomId"].as_str().unwrap().to_string())
            .or_default()
            .push((player.id.clone(), ask.clone()));
    }
    let everyone: HashSet<&String> = rooms.values().flatten().map(|(id, _)| id).collect();
    assert_eq!(everyone.len(), 1000, "nobody is in two rooms");
    let mut tables: BTreeMap<&str, usize> = BTreeMap::new();
    for seats in rooms.values() {
        let ask = &seats[0].1;
        assert!(
            seats.iter().all(|(_, a)| a == ask),
            "one game and level a room"
        );
        let game = ask["game"].as_str().unwrap();
        let (min, max) = if game == "wizard-battle" {
            (2, 2)
        } else {
            (2, 6)
        };
        assert!((min..=max).contains(&seats.len()), "{game}: {seats:?}");
        *tables.entry(game).or_default() += 1;
    }
    assert_eq!(tables["wizard-battle"], 250);
    // With every join in before any table's fill time: 28, 27 and 27 full tables of six, and
    // a table of four at levels 2 and 3.
    assert_eq!(tables["liars-dice"], 84, "joined in {joined:?}");
    let stored: usize = redis
        .conn()
        .hlen(format!("{}matches", redis.key_prefix(&prefix)))
        .unwrap();
    assert_eq!(stored, rooms.len(), "one match record a room");
    let waiting: Vec<String> = redis
        .conn()
        .keys(format!("{}waiting:*", redis.key_prefix(&prefix)))
        .unwrap();
    assert!(waiting.is_empty(), "no queue left: {waiting:?}");
    let (_, stats) = http(&servers[1], "GET", "/health/stats", None).await;
    assert_eq!(stats["queues"], json!({}), "nobody waits: {stats}");
    // Every instance counts the same fleet.
    let instances = stats["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    let sockets: u64 = instances
        .iter()
        .map(|i| i["sockets"].as_u64().unwrap())
        .sum();
    assert_eq!(sockets, 1000);
    eprintln!(
        "1000 players, 2 games, 3 instances: {} matches; joins acked after {joined:?}, the last matched after {last_matched:?} (8 s fill time)",
        rooms.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_match_survives_a_kill_9_of_the_instance_that_seated_it() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let quick = [
        ("BOT_THINK_MS", "5"),
        ("EVENTS_PER_SECOND", "1000"),
        ("EVENT_BURST", "1000"),
    ];
    let doomed = HostProcess::spawn(&redis, &prefix, &quick).await;
    let survivor = cluster_server(&redis, &prefix, |c| {
        c.bots.think = Duration::from_millis(5);
        crate::support::unhurried_limits(c);
    })
    .await;
    let me = Player::connect(&doomed).await;
    let join = json!({ "level": 1, "game": "liars-dice", "vsBot": true, "seats": 3 });
    let room = me.request("joinMatchmaking", join).await;
    let room = room.as_str().expect("a match at once").to_string();
    // A few moves on the doomed instance (the bots' among them), then it dies.
    play::until(&[&me], &room, play::dice, || me.count("gameEvent") >= 4).await;
    assert_eq!(me.count("gameOver"), 0, "still on when the instance dies");
    let auth = me.resume_auth();
    doomed.kill();
    let back = Player::connect_with(&survivor, Some(auth))
        .await
        .expect("the resume token works on another instance");
    let resumed = back.next("resumed").await;
    assert_eq!(resumed["roomId"], room.as_str());
    let before = back.count("gameEvent");
    let over = play::to_the_end(&[&back], &room, play::dice).await;
    assert!(
        back.count("gameEvent") > before + 1,
        "the bots played on, on the survivor"
    );
    assert_eq!(over["winners"].as_array().unwrap().len(), 1, "{over}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_different_games_on_disk_serve_each_player_the_game_it_asked_for() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let wizard = module_bytes("rules", "wizard-battle");
    let dice = module_bytes("rules", "liars-dice");
    let both = rules_dir(&[("wizard-battle.wasm", &wizard), ("liars-dice.wasm", &dice)]);
    let wizards_only = rules_dir(&[("wizard-battle.wasm", &wizard)]);
    let tweak = |dir: std::path::PathBuf| {
        move |c: &mut host::config::Config| {
            c.rules_dir = dir;
            c.match_fill = Duration::ZERO;
        }
    };
    let a = cluster_server(&redis, &prefix, tweak(both)).await;
    let b = cluster_server(&redis, &prefix, tweak(wizards_only)).await;
    // b never had liar's dice on disk: the fleet's copy serves it there too.
    let (_, rules) = http(&b, "GET", "/rules", None).await;
    assert!(
        rules["games"]["liars-dice"]["active"].is_string(),
        "{rules}"
    );

    let on_a = [Player::connect(&a).await, Player::connect(&a).await];
    let on_b = [Player::connect(&b).await, Player::connect(&b).await];
    let dice_ask = json!({ "level": 2, "game": "liars-dice" });
    let wizard_ask = json!({ "level": 2 });
    // Each game's first player is on one instance, its opponent on the other.
    assert_eq!(
        on_a[0].request("joinMatchmaking", dice_ask.clone()).await,
        Value::Null
    );
    assert_eq!(
        on_b[0].request("joinMatchmaking", wizard_ask.clone()).await,
        Value::Null
    );
    let dice_room = on_b[1].request("joinMatchmaking", dice_ask).await;
    let wizard_room = on_a[1].request("joinMatchmaking", wizard_ask).await;
    for (players, room, game) in [
        ([&on_a[0], &on_b[1]], &dice_room, "liars-dice"),
        ([&on_b[0], &on_a[1]], &wizard_room, "wizard-battle"),
    ] {
        let room = room.as_str().expect("matched across instances");
        for player in players {
            assert_eq!(player.next("matchFound").await["roomId"], room);
            let state = player
                .request("getGameState", json!({ "roomId": room }))
                .await;
            assert_eq!(state["state"]["game"], game, "{state}");
        }
    }
}
