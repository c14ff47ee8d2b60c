//! Many instances on one Redis: shared matchmaking, matches across instances, instances dying or
//! leaving, Redis going away. Each test has its own `redis-server` (some restart it) and its own
//! key prefix.

use crate::cluster_support::{HostProcess, PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::support::{Player, act, http, position, server, settle, strike_each_other};
use redis::Commands;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// The socket mappings stored under `prefix`, by socket id.
pub(crate) fn mappings(redis: &impl Shared, prefix: &str) -> BTreeMap<String, Value> {
    redis
        .socket_mappings(prefix)
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect()
}

fn stored_game(redis: &impl Shared, prefix: &str, room: &str) -> Option<Value> {
    let raw = redis.stored_game(prefix, room);
    raw.map(|raw| serde_json::from_str(&raw).unwrap())
}

/// `a` on one instance queues, `b` on another joins: matched across instances.
pub(crate) async fn pair_across(a: &Player, b: &Player, level: i64) -> String {
    let first = a
        .request("joinMatchmaking", json!({ "level": level }))
        .await;
    assert_eq!(first, Value::Null, "a waits");
    let room = b
        .request("joinMatchmaking", json!({ "level": level }))
        .await;
    let room = room.as_str().expect("b is matched with a").to_string();
    for player in [a, b] {
        assert_eq!(player.next("matchFound").await["roomId"], room.as_str());
    }
    room
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_with_its_players_on_two_instances_plays_to_the_end() {
    a_match_across_two_instances(PrivateRedis::start()).await;
}

pub(crate) async fn a_match_across_two_instances(redis: impl Shared) {
    let prefix = unique_prefix();
    let one = cluster_server(&redis, &prefix, |_| {}).await;
    let two = cluster_server(&redis, &prefix, |_| {}).await;
    let a = Player::connect(&one).await;
    let b = Player::connect(&two).await;
    let room = pair_across(&a, &b, 1).await;
    a.next("view").await;
    b.next("view").await;
    eventually(
        "each socket's mapping names the match",
        Duration::from_secs(5),
        || {
            let mappings = mappings(&redis, &prefix);
            [&a, &b].iter().all(|player| {
                mappings
                    .get(player.socket_id())
                    .is_some_and(|m| m["roomId"] == room.as_str())
            })
        },
    )
    .await;

    // Chat crosses instances, once per client.
    let ack = a
        .request("gameMessage", json!({ "roomId": room, "message": "hi" }))
        .await;
    assert_eq!(ack["success"], true);
    for player in [&a, &b] {
        let message = player.next("gameMessage").await;
        assert_eq!(message["sender"], a.id.as_str());
    }

    // Round 1: both stay where they are, acting at the same time on different instances.
    let (stay_a, stay_b) = (position(&a), position(&b));
    let (ack_a, ack_b) = tokio::join!(
        act(&a, &room, json!({ "spell": "teleport", "target": stay_a })),
        act(&b, &room, json!({ "spell": "teleport", "target": stay_b })),
    );
    assert_eq!(ack_a["success"], true, "{ack_a}");
    assert_eq!(ack_b["success"], true, "{ack_b}");
    for player in [&a, &b] {
        player.first_where("view", |v| v["turn"] == 2).await;
    }

    // Round 2: lightning on each other: a draw, stored as version 5 (the setup, then one
    // version per action).
    strike_each_other(&a, &b, &room).await;
    for player in [&a, &b] {
        assert_eq!(
            player.next("gameOver").await,
            json!({ "roomId": room, "winners": [], "version": 5 })
        );
    }
    settle().await;
    for player in [&a, &b] {
        for (event, times) in [("matchFound", 1), ("gameMessage", 1), ("gameOver", 1)] {
            assert_eq!(
                player.count(event),
                times,
                "{} got {event} {times}x",
                player.id
            );
        }
        // Each of the two rounds resolved once.
        assert_eq!(
            player
                .received("gameEvent")
                .iter()
                .filter(|e| e["event"]["type"] == "roundResolved")
                .count(),
            2
        );
        let turns: Vec<u64> = player
            .received("view")
            .iter()
            .map(|v| v["turn"].as_u64().unwrap())
            .collect();
        assert!(turns.is_sorted(), "views arrive in order: {turns:?}");
    }
    let stored = stored_game(&redis, &prefix, &room).unwrap();
    assert_eq!(stored["status"], "finished");
    assert_eq!(stored["winners"], json!([]));

    // A disconnect on one instance reaches the other, once.
    let c = Player::connect(&one).await;
    let d = Player::connect(&two).await;
    pair_across(&c, &d, 2).await;
    d.disconnect().await;
    c.next("opponentDisconnected").await;
    settle().await;
    assert_eq!(c.count("opponentDisconnected"), 1);
}

/// Sets up an instance process `doomed` holding player `a` (in a match with `b` on `survivor`,
/// with one action submitted) and player `w` waiting at level 7.
async fn doomed_instance(
    redis: &impl Shared,
    prefix: &str,
    heartbeat_ttl_ms: &str,
) -> (
    HostProcess,
    host::server::RunningServer,
    Player,
    Player,
    String,
) {
    let doomed = HostProcess::spawn(redis, prefix, &[("HEARTBEAT_TTL_MS", heartbeat_ttl_ms)]).await;
    let survivor = cluster_server(redis, prefix, |_| {}).await;
    let a = Player::connect(&doomed).await;
    let b = Player::connect(&survivor).await;
    let room = pair_across(&a, &b, 1).await;
    a.next("view").await;
    b.next("view").await;
    let ack = act(
        &a,
        &room,
        json!({ "spell": "teleport", "target": position(&a) }),
    )
    .await;
    assert_eq!(ack["success"], true);
    b.next("gameEvent").await; // told that a submitted

    let w = Player::connect(&doomed).await;
    assert_eq!(
        w.request("joinMatchmaking", json!({ "level": 7 })).await,
        Value::Null
    );
    let on_doomed = mappings(redis, prefix)
        .values()
        .filter(|m| m["instanceId"] == doomed.instance_id.as_str())
        .count();
    assert_eq!(on_doomed, 2);
    (doomed, survivor, a, b, room)
}

/// After `doomed` is gone: `a` resumes on the survivor with its action kept, `b` was told, and
/// nothing of the doomed instance is left in Redis.
async fn resumes_elsewhere(
    redis: &impl Shared,
    prefix: &str,
    survivor: &host::server::RunningServer,
    doomed_id: &str,
    a: Player,
    b: Player,
    room: &str,
) {
    b.next("opponentDisconnected").await;
    let a_id = a.id.clone();
    let back = Player::connect_with(survivor, Some(a.resume_auth()))
        .await
        .expect("the resume token works on another instance");
    assert_eq!(back.id, a_id);
    let resumed = back.next("resumed").await;
    assert_eq!(resumed["roomId"], room);
    assert_eq!(resumed["turn"], 1);
    b.next("opponentReconnected").await;

    // b's action completes the round: a's action from before the death was kept.
    act(
        &b,
        room,
        json!({ "spell": "teleport", "target": position(&b) }),
    )
    .await;
    let resolved = back
        .first_where("gameEvent", |e| e["event"]["type"] == "roundResolved")
        .await;
    assert_eq!(resolved["event"]["casts"].as_array().unwrap().len(), 2);

    let left: Vec<Value> = mappings(redis, prefix)
        .into_values()
        .filter(|m| m["instanceId"] == doomed_id)
        .collect();
    assert!(left.is_empty(), "mappings of the dead instance: {left:?}");
    let waiting: usize = redis
        .conn()
        .llen(format!("{}waiting:level:7", redis.key_prefix(prefix)))
        .unwrap();
    assert_eq!(waiting, 0, "its queue entry is gone");
    let (_, stats) = http(survivor, "GET", "/health/stats", None).await;
    let instances: Vec<&str> = stats["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instanceId"].as_str().unwrap())
        .collect();
    assert!(!instances.contains(&doomed_id), "{instances:?}");
    drop(back);
}

/// A player's session as stored, if there is one.
fn stored_session(redis: &impl Shared, prefix: &str, player: &str) -> Option<Value> {
    let raw: Option<String> = redis
        .conn()
        .get(format!("{}session:{player}", redis.key_prefix(prefix)))
        .unwrap();
    raw.map(|raw| serde_json::from_str(&raw).unwrap())
}

/// Waits (up to 15 s) until `player`'s stored session is held by `socket` (`None`: released).
pub(crate) async fn session_held_by(
    redis: &impl Shared,
    prefix: &str,
    player: &str,
    socket: Option<&str>,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let session = stored_session(redis, prefix, player);
        let holder = session.as_ref().map(|s| s["socketId"].as_str());
        if holder == Some(socket) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{player}'s session is {session:?}, not held by {socket:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An instance frozen past its heartbeat's TTL (a long pause, or a Redis so slow its beats
/// came late) is reaped by the others though it lives: when it beats again it takes its
/// players back, before their grace runs out, and they play on over the same connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_taken_for_dead_while_alive_takes_its_players_back() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let grace = ("RECONNECT_GRACE_MS", "4000");
    let paused = HostProcess::spawn(&redis, &prefix, &[grace]).await;
    let survivor = cluster_server(&redis, &prefix, |c| {
        c.reconnect_grace = Duration::from_secs(4);
    })
    .await;
    let a = Player::connect(&paused).await;
    let b = Player::connect(&survivor).await;
    let room = pair_across(&a, &b, 1).await;
    a.next("view").await;
    b.next("view").await;

    paused.signal("STOP");
    // The survivor reaps it: a's session is released and b is told.
    session_held_by(&redis, &prefix, &a.id, None).await;
    b.next("opponentDisconnected").await;
    paused.signal("CONT");
    session_held_by(&redis, &prefix, &a.id, Some(a.socket_id())).await;
    b.next("opponentReconnected").await;
    assert_eq!(a.next("resumed").await["roomId"], room.as_str());

    // Past the grace a's reaping started, the match still has both players.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let expiring: Vec<String> = redis
        .conn()
        .zrange(
            format!("{}session_expiry", redis.key_prefix(&prefix)),
            0,
            -1,
        )
        .unwrap();
    assert!(!expiring.contains(&a.id), "{expiring:?}");
    strike_each_other(&a, &b, &room).await;
    let resolved = a
        .first_where("gameEvent", |e| e["event"]["type"] == "roundResolved")
        .await;
    assert_eq!(resolved["roomId"], room.as_str());
    let stored = stored_game(&redis, &prefix, &room).unwrap();
    let seats = stored["players"].as_array().unwrap();
    assert!(seats.iter().all(|p| p["connected"] == true), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_players_resume_on_another_instance_and_the_dead_one_is_reaped() {
    resume_after_a_kill_9(PrivateRedis::start()).await;
}

pub(crate) async fn resume_after_a_kill_9(redis: impl Shared) {
    let prefix = unique_prefix();
    let (doomed, survivor, a, b, room) = doomed_instance(&redis, &prefix, "1000").await;
    let doomed_id = doomed.instance_id.clone();
    let killed_at = Instant::now();
    doomed.kill();
    // The heartbeat lives 1 s; until it expires, nothing may be reaped.
    eventually("the dead instance reaped", Duration::from_secs(10), || {
        !mappings(&redis, &prefix)
            .values()
            .any(|m| m["instanceId"] == doomed_id.as_str())
    })
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(500),
        "reaped only once the heartbeat had expired"
    );
    resumes_elsewhere(&redis, &prefix, &survivor, &doomed_id, a, b, &room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigterm_players_resume_on_another_instance_at_once() {
    resume_after_a_sigterm(PrivateRedis::start()).await;
}

pub(crate) async fn resume_after_a_sigterm(redis: impl Shared) {
    let prefix = unique_prefix();
    // A heartbeat that would take a minute to expire: everything below must come from the
    // instance's own goodbye.
    let (doomed, survivor, a, b, room) = doomed_instance(&redis, &prefix, "60000").await;
    let doomed_id = doomed.instance_id.clone();
    let members: HashSet<String> = redis
        .conn()
        .smembers(format!("{}instances", redis.key_prefix(&prefix)))
        .unwrap();
    assert!(members.contains(&doomed_id));
    doomed.terminate().await;
    let members: HashSet<String> = redis
        .conn()
        .smembers(format!("{}instances", redis.key_prefix(&prefix)))
        .unwrap();
    assert!(!members.contains(&doomed_id), "it left the registry");
    let left = mappings(&redis, &prefix)
        .into_values()
        .filter(|m| m["instanceId"] == doomed_id.as_str())
        .count();
    assert_eq!(left, 0, "its mappings went with it");
    resumes_elsewhere(&redis, &prefix, &survivor, &doomed_id, a, b, &room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_goes_on_while_redis_restarts_and_the_stored_state_catches_up() {
    a_match_goes_on_while_redis_restarts(PrivateRedis::start()).await;
}

pub(crate) async fn a_match_goes_on_while_redis_restarts(mut redis: impl Shared) {
    let prefix = unique_prefix();
    let server = cluster_server(&redis, &prefix, |_| {}).await;
    let a = Player::connect(&server).await;
    let b = Player::connect(&server).await;
    let room = pair_across(&a, &b, 1).await;
    a.next("view").await;
    b.next("view").await;

    redis.stop();
    // Round 1 is played while Redis is away: both players are here, so the match goes on.
    for player in [&a, &b] {
        let ack = act(
            player,
            &room,
            json!({ "spell": "teleport", "target": position(player) }),
        )
        .await;
        assert_eq!(ack["success"], true, "{ack}");
    }
    for player in [&a, &b] {
        player.first_where("view", |v| v["turn"] == 2).await;
    }
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["redis"], false, "{health}");
    assert_eq!(health["status"], "degraded");

    // Redis comes back empty; the instance writes the match (and its sockets) back.
    redis.start_again();
    eventually("the match written back", Duration::from_secs(10), || {
        stored_game(&redis, &prefix, &room).is_some_and(|g| g["turn"] == 2)
    })
    .await;
    eventually("the sockets written back", Duration::from_secs(10), || {
        mappings(&redis, &prefix).len() == 2
    })
    .await;
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["redis"], true, "{health}");

    // And the match goes on through Redis.
    strike_each_other(&a, &b, &room).await;
    a.next("gameOver").await;
    let stored = stored_game(&redis, &prefix, &room).unwrap();
    assert_eq!(stored["status"], "finished");
    let seen = a.request("getGameState", json!({ "roomId": room })).await["state"].clone();
    assert_eq!(
        seen["version"], stored["version"],
        "the store has what players saw"
    );
}

/// An instance of a fleet must not go on alone because Redis was away when it started: it
/// would be an island, its players unknown to the others. It waits, serving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_before_redis_it_waits_for_it_and_then_joins_the_fleet() {
    let port = crate::cluster_support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = unique_prefix();
    let starting = tokio::spawn({
        let (url, prefix) = (url.clone(), prefix.clone());
        server(move |c| {
            c.redis = Some(host::config::RedisTarget::Server(url));
            c.redis_prefix = prefix;
        })
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !starting.is_finished(),
        "the server was ready before Redis answered"
    );
    let redis = PrivateRedis::start_on(port);
    let server = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("the server starts once Redis answers")
        .unwrap();
    let (status, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["mode"], "cluster", "{health}");
    assert_eq!(health["redis"], true, "{health}");
    // And its players are the fleet's: their sessions are in Redis.
    crate::support::matched_pair(&server, 1).await;
    let sessions: Vec<String> = redis
        .conn()
        .keys(format!("{}session:*", redis.key_prefix(&prefix)))
        .unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
}

/// Two instances' stores race to change one game 200 times each: every write is a
/// compare-and-set, so each version is written exactly once and no change is lost; and the
/// match log gets exactly the entries of the writes that landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_lose_an_update() {
    use host::model::{LogInput, Status};
    use host::store::{RedisStore, StoreError};

    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let target = redis.target();
    let connect = || RedisStore::connect(&target, &prefix, Duration::from_secs(2));
    let (one, two) = (connect().await.unwrap(), connect().await.unwrap());
    let (record, game) = crate::support::bare_game("r");
    let setup = game.log_entry(LogInput::Timeout);
    one.insert_match(&record, &game, &[], &[setup])
        .await
        .unwrap();

    // Each writer adds 1 to the count 200 times, re-reading after every conflict; each write
    // logs its input, which lands only with the state it produced.
    let writer = |store: RedisStore| async move {
        let mut conflicts = 0;
        for _ in 0..200 {
            loop {
                let mut game = store.game("r").await.unwrap().unwrap();
                let data: Value = serde_json::from_str(game.game_data.get()).unwrap();
                let count = data["count"].as_u64().unwrap() + 1;
                game.game_data =
                    serde_json::value::to_raw_value(&json!({ "count": count })).unwrap();
                let expected = game.version;
                game.version += 1;
                let entry = game.log_entry(LogInput::Timeout);
                match store.replace_game(&game, expected, &[], &[entry]).await {
                    Ok(()) => break,
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("{other}"),
                }
            }
        }
        conflicts
    };
    let (c1, c2) = tokio::join!(writer(one.clone()), writer(two));
    let stored = one.game("r").await.unwrap().unwrap();
    let data: Value = serde_json::from_str(stored.game_data.get()).unwrap();
    assert_eq!(
        data["count"], 400,
        "every increment landed ({c1} + {c2} conflicts retried)"
    );
    assert_eq!(stored.version, 401);
    assert_eq!(stored.status, Status::Active);
    let log = one.match_log("r").await.unwrap();
    let versions: Vec<u64> = log.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=401).collect::<Vec<_>>(),
        "one entry per stored state, in order: none from a write that lost its race"
    );
    assert_eq!(log[400].state, host::model::state_digest(&stored.game_data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_of_another_game_and_mode_are_paired_across_instances() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    // Liar's dice takes 2 to 6: with no time to wait for more, two make a table at once.
    let now = |c: &mut host::config::Config| c.match_fill = Duration::ZERO;
    let one = cluster_server(&redis, &prefix, now).await;
    let two = cluster_server(&redis, &prefix, now).await;
    let (a, b) = (Player::connect(&one).await, Player::connect(&two).await);
    let wizard = Player::connect(&two).await;
    let quick = json!({ "level": 2, "game": "liars-dice", "mode": "quick" });
    assert_eq!(
        a.request("joinMatchmaking", quick.clone()).await,
        Value::Null
    );
    let answer = wizard
        .request("joinMatchmaking", json!({ "level": 2 }))
        .await;
    assert_eq!(answer, Value::Null);
    let room = b.request("joinMatchmaking", quick).await;
    let room = room.as_str().expect("paired across instances").to_string();
    for player in [&a, &b] {
        assert_eq!(player.next("matchFound").await["roomId"], room.as_str());
        let view = player.next("view").await;
        assert_eq!(view["view"]["yourDice"].as_array().unwrap().len(), 3);
    }
    let queued: Vec<String> = redis
        .conn()
        .keys(format!("{}waiting:*", redis.key_prefix(&prefix)))
        .unwrap();
    assert_eq!(
        queued,
        [format!("{}waiting:level:2", redis.key_prefix(&prefix))],
        "the original's key"
    );
    assert_eq!(
        stored_game(&redis, &prefix, &room).unwrap()["game"],
        "liars-dice"
    );
}
