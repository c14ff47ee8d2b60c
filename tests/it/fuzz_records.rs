//! Fuzz target `records`: the store's decoding of what Redis holds. Each stored record (a game
//! state, a match record, a match log entry, a session, a socket mapping, an instance's
//! heartbeat) is replaced by a damaged copy, and every reader of the store runs over it: a
//! damaged record is an error for that record (or is skipped by a scan), never a panic, and the
//! next compare-and-set of the game still lands. Then, with a live server: a running match whose
//! stored state is damaged still answers its players and plays to its end.

use crate::cluster_support::{PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::fuzz_support::{Mutation, cases, corpus, draw, json, mutate, mutations, tweak};
use crate::play::{to_the_end, wizard};
use crate::support::{Player, bare_game, http, matched_pair, unhurried_limits};
use host::model::{LogInput, Session, SocketMapping};
use host::store::{InstanceAbout, RedisStore};
use proptest::prelude::*;
use redis::Commands;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Where each kind of record lives, under `prefix`: `(key, hash field or None, or list index)`.
fn places(prefix: &str) -> Vec<(String, Place)> {
    vec![
        (format!("{prefix}game_states"), Place::Field("r".into())),
        (format!("{prefix}matches"), Place::Field("r".into())),
        (format!("{prefix}match_log:{{r}}"), Place::Item(0)),
        (format!("{prefix}session:p1"), Place::Whole),
        (
            format!("{prefix}socket_mappings"),
            Place::Field("s1".into()),
        ),
        (format!("{prefix}instance:i"), Place::Whole),
    ]
}

#[derive(Clone)]
enum Place {
    Field(String),
    Item(isize),
    Whole,
}

fn read(conn: &mut redis::Connection, key: &str, place: &Place) -> Vec<u8> {
    match place {
        Place::Field(field) => conn.hget(key, field),
        Place::Item(i) => conn.lindex(key, *i),
        Place::Whole => conn.get(key),
    }
    .unwrap()
}

fn write(conn: &mut redis::Connection, key: &str, place: &Place, value: &[u8]) {
    let _: () = match place {
        Place::Field(field) => conn.hset(key, field, value),
        Place::Item(i) => conn.lset(key, *i, value),
        // Keep the heartbeat's and session's lifetimes out of the picture: plain SET.
        Place::Whole => conn.set(key, value),
    }
    .unwrap();
}

/// Every reader of the store, over whatever is stored now. A damaged record may fail its own
/// read; nothing may panic, and the game's next compare-and-set must land.
async fn read_everything(store: &RedisStore, version: &mut u64) {
    let _ = store.game("r").await;
    let _ = store.match_log("r").await;
    let _ = store.session("p1").await;
    let _ = store.instance_sockets("i").await;
    let _ = store.sockets_by_instance().await;
    let _ = store.live_instances().await;
    let _ = store.match_count().await;
    let _ = store.game_rooms().await;
    let live: HashSet<String> = ["s1".to_string()].into();
    let _ = store.cleanup("i", &live).await;
    let (_, mut game) = bare_game("r");
    game.version = *version + 1;
    let entry = game.log_entry(LogInput::Timeout);
    store
        .replace_game(&game, *version, &[], &[entry])
        .await
        .expect("a damaged stored state does not stop the next write");
    *version += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_errors_for_themselves_never_panics() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let store = RedisStore::connect(&redis.target(), &prefix, Duration::from_secs(2))
        .await
        .unwrap();
    let (record, game) = bare_game("r");
    let first = game.log_entry(LogInput::Timeout);
    store
        .insert_match(&record, &game, &[], &[first])
        .await
        .unwrap();
    let mapping = SocketMapping {
        socket_id: "s1".into(),
        instance_id: "i".into(),
        room_id: Some("r".into()),
        player_id: "p1".into(),
    };
    store.put_socket(&mapping).await.unwrap();
    let session = Session {
        player_id: "p1".into(),
        token_sha256: "0".repeat(64),
        socket_id: None,
        instance_id: Some("i".into()),
        room_id: Some("r".into()),
        expires_at: None,
    };
    store.claim_session(&session, "s1").await.unwrap();
    store
        .heartbeat("i", 60_000, &InstanceAbout::default())
        .await
        .unwrap();

    let mut conn = redis.conn();
    let places = places(&prefix);
    let valid: Vec<Vec<u8>> = places
        .iter()
        .map(|(key, place)| read(&mut conn, key, place))
        .collect();
    assert!(
        valid.iter().all(|v| !v.is_empty()),
        "every record is stored"
    );
    let mut version = 1;
    let log_key = format!("{prefix}match_log:{{r}}");

    for (name, damaged) in corpus("records") {
        for (i, (key, place)) in places.iter().enumerate() {
            write(&mut conn, key, place, &damaged);
            read_everything(&store, &mut version).await;
            write(&mut conn, key, place, &valid[i]);
        }
        eprintln!("records: corpus {name} read in every place");
    }

    type Case = (usize, Vec<Mutation>, usize, Value, u8);
    let damage = (any::<usize>(), mutations(), any::<usize>(), json(), 0u8..2);
    let generated: Vec<Case> = draw(damage, cases(), 0x5EC0);
    for (which, mutation, path, replacement, how) in &generated {
        let i = which % places.len();
        let (key, place) = &places[i];
        let damaged = match how {
            0 => mutate(&valid[i], mutation),
            _ => {
                let document: Value = serde_json::from_slice(&valid[i]).unwrap();
                serde_json::to_vec(&tweak(&document, *path, replacement.clone())).unwrap()
            }
        };
        write(&mut conn, key, place, &damaged);
        read_everything(&store, &mut version).await;
        write(&mut conn, key, place, &valid[i]);
        // Each case's write logged an entry: keep the log at its first, so reads stay small.
        let _: () = conn.ltrim(&log_key, 0, 0).unwrap();
    }
    eprintln!("records: {} generated damages read", generated.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_whose_stored_state_is_damaged_still_answers_and_ends() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let one = cluster_server(&redis, &prefix, unhurried_limits).await;
    let two = cluster_server(&redis, &prefix, unhurried_limits).await;
    let (a, b, room) = matched_pair(&one, 1).await;
    for player in [&a, &b] {
        player.next("view").await;
    }
    let mut conn = redis.conn();
    let _: () = conn
        .hset(
            format!("{prefix}game_states"),
            &room,
            "{\"roomId\": 7, garbage",
        )
        .unwrap();

    // Another instance, which has no copy of the match, can only say it cannot read it.
    let watcher = Player::connect(&two).await;
    let answer = watcher
        .request("getGameState", json!({ "roomId": room }))
        .await;
    assert!(
        answer.get("error").is_some() || answer["success"] == false,
        "{answer}"
    );
    let (status, _) = http(&two, "GET", "/health/stats", None).await;
    assert_eq!(status, 200, "stats skip what they cannot read");

    // The instance playing it holds the last good state: the match goes on, and its next write
    // replaces the damaged record.
    to_the_end(&[&a, &b], &room, wizard).await;
    let stored: Value = serde_json::from_str(
        &conn
            .hget::<_, _, String>(format!("{prefix}game_states"), &room)
            .unwrap(),
    )
    .expect("the record is whole again");
    assert_eq!(stored["status"], "finished");
    let (status, log) = http(&one, "GET", &format!("/matches/{room}/log"), None).await;
    assert_eq!(status, 200, "{log}");
}
