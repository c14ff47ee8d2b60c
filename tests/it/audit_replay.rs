//! Every match keeps its log of inputs: fetched from `GET /matches/<room>/log`, it replays to
//! the same states and outcome, through the host (`host::replay`, `gamehost replay`) and
//! natively (`sdk::testing::replay`); an altered log is caught at the entry that was altered.

use crate::cluster_support::{
    PrivateRedis, Shared, cluster_server, gamehost_binary, unique_prefix,
};
use crate::play::{to_the_end, wizard};
use crate::support::{
    Endpoint, Player, bare_game, http, matched_pair, module_bytes, module_of, moves_to,
    play_a_round, rules_dir, server, settle, strike_each_other, unhurried_limits, upload, variant,
    version_of,
};
use abi::log::Input;
use host::model::MatchLog;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const GAME: &str = "wizard-battle";

async fn fetch_log(server: &impl Endpoint, room: &str, token: Option<&str>) -> (Value, MatchLog) {
    let (status, raw) = http(server, "GET", &format!("/matches/{room}/log"), token).await;
    assert_eq!(status, 200, "{raw}");
    let log = serde_json::from_value(raw.clone()).expect("the answer is a match log");
    (raw, log)
}

/// The modules of `dir`, by version, as `gamehost replay` finds them.
async fn modules_in(
    dir: &Path,
    log: &MatchLog,
) -> std::collections::HashMap<String, host::runtime::RulesModule> {
    host::replay::modules_for(log, &crate::support::engine(), Some(dir), None).await
}

/// Every match message `player` got carries the version of the change that made it: never
/// going back, each view a new version, and every view's version one the match log recorded.
fn assert_versions_in_order(player: &Player, log: &MatchLog) {
    let events = [
        "matchFound",
        "gameEvent",
        "view",
        "gameOver",
        "opponentDisconnected",
        "opponentReconnected",
    ];
    let mut last = 0;
    for (i, message) in player.received_of(&events).iter().enumerate() {
        let version = message["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("message {i} of {} has no version: {message}", player.id));
        assert!(
            version >= last,
            "{}: version {version} after {last}",
            player.id
        );
        last = version;
    }
    let views: Vec<u64> = player
        .received("view")
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] < w[1]),
        "{}: {views:?}",
        player.id
    );
    let logged: std::collections::HashSet<u64> = log.entries.iter().map(|e| e.version).collect();
    assert!(
        views.iter().all(|v| logged.contains(v)),
        "{}: views {views:?}, log {logged:?}",
        player.id
    );
}

/// `gamehost replay <args>` with `env`: exit code and standard output.
fn replay_command(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(gamehost_binary())
        .arg("replay")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("gamehost runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_match_replays_to_its_outcome_and_an_altered_action_is_caught_where_it_was_altered()
{
    let rules = rules_dir(&[("wizard-battle.wasm", &module_bytes("rules", GAME))]);
    let dir = rules.clone();
    let server = server(|c| {
        c.rules_dir = dir;
        unhurried_limits(c);
    })
    .await;
    let (a, b, room) = matched_pair(&server, 1).await;
    // A connection lost and resumed is part of the record, and changes no rules state.
    let b = {
        let auth = b.resume_auth();
        b.disconnect().await;
        settle().await;
        Player::connect_with(&server, Some(auth)).await.unwrap()
    };
    b.next("resumed").await;
    let over = to_the_end(&[&a, &b], &room, wizard).await;

    let (raw, log) = fetch_log(&server, &room, None).await;
    assert_eq!(log.room_id, room);
    assert_eq!(log.game, GAME);
    assert!(
        matches!(log.entries[0].input, Input::Setup { ref seats, .. } if seats.len() == 2),
        "{raw}"
    );
    let kinds = |f: fn(&Input<_>) -> bool| log.entries.iter().filter(|e| f(&e.input)).count();
    assert!(kinds(|i| matches!(i, Input::Action { .. })) >= 2, "{raw}");
    assert_eq!(
        kinds(|i| matches!(i, Input::Disconnected { .. })),
        1,
        "{raw}"
    );
    assert_eq!(
        kinds(|i| matches!(i, Input::Reconnected { .. })),
        1,
        "{raw}"
    );
    let winners: Vec<String> = serde_json::from_value(over["winners"].clone()).unwrap();
    assert_eq!(log.winners.as_ref(), Some(&winners));
    assert_eq!(log.entries.last().unwrap().winners.as_ref(), Some(&winners));
    for player in [&a, &b] {
        assert_versions_in_order(player, &log);
    }
    let versions: Vec<u64> = log.entries.iter().map(|e| e.version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "in order: {versions:?}"
    );
    let v1 = version_of(&module_bytes("rules", GAME));
    assert!(log.entries.iter().all(|e| e.module == v1), "{raw}");

    // Through the host's runtime, and natively with the game's own crate.
    let modules = modules_in(&rules, &log).await;
    let replayed = host::replay::replay(&log, &modules).expect("the log replays");
    assert_eq!(replayed.entries, log.entries.len());
    assert_eq!(replayed.modules, vec![v1.clone()]);
    assert_eq!(replayed.winners, Some(winners.clone()));
    let native = sdk::testing::replay::<wizard_battle::WizardBattle>(&log)
        .expect("the native rules replay it too");
    assert_eq!(native, replayed);

    // One action altered into one the rules refuse: caught at that entry, not before.
    let altered_at = log
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.input, Input::Action { .. }))
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    let mut refused = raw.clone();
    refused["entries"][altered_at]["input"]["action"]["action"] =
        json!({ "spell": "no such spell" });
    let refused: MatchLog = serde_json::from_value(refused).unwrap();
    let divergence = host::replay::replay(&refused, &modules).unwrap_err();
    assert_eq!(divergence.entry, Some(altered_at), "{divergence}");
    assert!(
        divergence.what.contains("refused") || divergence.what.contains("rules answered"),
        "{divergence}"
    );
    let native = sdk::testing::replay::<wizard_battle::WizardBattle>(&refused).unwrap_err();
    assert_eq!(native.entry, Some(altered_at), "{native}");

    // Another seed: the very first state differs.
    let mut reseeded = raw.clone();
    let seed = reseeded["entries"][0]["input"]["setup"]["seed"]
        .as_u64()
        .unwrap();
    reseeded["entries"][0]["input"]["setup"]["seed"] = json!(seed ^ 1);
    let reseeded: MatchLog = serde_json::from_value(reseeded).unwrap();
    let divergence = host::replay::replay(&reseeded, &modules).unwrap_err();
    assert_eq!(divergence.entry, Some(0), "{divergence}");
    assert!(divergence.what.contains("state differs"), "{divergence}");

    // An entry dropped from the log: the next one no longer follows.
    let mut gapped = log.clone();
    gapped.entries.remove(altered_at);
    let divergence = host::replay::replay(&gapped, &modules).unwrap_err();
    assert!(divergence.entry >= Some(altered_at), "{divergence}");

    // The command line, from saved files: 0 when identical, 1 with the entry where not.
    let folder = rules_dir(&[]);
    let (good, bad) = (folder.join("log.json"), folder.join("altered.json"));
    std::fs::write(&good, raw.to_string()).unwrap();
    std::fs::write(&bad, serde_json::to_string(&refused).unwrap()).unwrap();
    let rules_env = [("RULES_DIR", rules.to_str().unwrap())];
    let (code, said) = replay_command(&[good.to_str().unwrap()], &rules_env);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("identical"), "{said}");
    let (code, said) = replay_command(&[bad.to_str().unwrap()], &rules_env);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains(&format!("entry {altered_at} ")), "{said}");
    // Without the module the log names, it says so rather than guess.
    let empty = rules_dir(&[]);
    let (code, said) = replay_command(
        &[good.to_str().unwrap()],
        &[("RULES_DIR", empty.to_str().unwrap())],
    );
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("not available"), "{said}");
    let (code, said) = replay_command(&["/no/such/log.json"], &rules_env);
    assert_eq!(code, 2, "{said}");

    let (status, _) = http(&server, "GET", "/matches/nope/log", None).await;
    assert_eq!(status, 404, "an unknown room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_that_migrated_mid_game_replays_across_both_versions_from_redis() {
    a_migrated_match_replays_from(PrivateRedis::start()).await;
}

pub(crate) async fn a_migrated_match_replays_from(redis: impl Shared) {
    let prefix = unique_prefix();
    let v1_bytes = module_bytes("rules", GAME);
    let v1 = version_of(&v1_bytes);
    let dir = rules_dir(&[("wizard-battle.wasm", &v1_bytes)]);
    let server = cluster_server(&redis, &prefix, |c| c.rules_dir = dir).await;
    let (a, b, room) = matched_pair(&server, 1).await;
    for player in [&a, &b] {
        player.next("view").await;
    }

    // v2 carries matches over: the match plays its round on v1 and moves at its end.
    let v2_bytes = variant(&v1_bytes, "replayed");
    let v2 = version_of(&v2_bytes);
    assert_eq!(upload(&server, GAME, v2_bytes.clone(), None).await.0, 200);
    assert_eq!(
        module_of(&a, &room).await,
        v1,
        "not in the middle of a round"
    );
    play_a_round(&a, &b, &room).await;
    moves_to(&a, &room, &v2).await;
    strike_each_other(&a, &b, &room).await;
    a.next("gameOver").await;

    let (raw, log) = fetch_log(&server, &room, None).await;
    let migration = log
        .entries
        .iter()
        .position(|e| matches!(&e.input, Input::Migrate { from } if *from == v1))
        .unwrap_or_else(|| panic!("a migration from v1 is logged: {raw}"));
    for player in [&a, &b] {
        assert_versions_in_order(player, &log);
    }
    assert!(
        log.entries[..migration].iter().all(|e| e.module == v1),
        "{raw}"
    );
    assert!(
        log.entries[migration..].iter().all(|e| e.module == v2),
        "{raw}"
    );

    // Replayed across both versions, with each version's own code.
    let both = rules_dir(&[("v1.wasm", &v1_bytes), ("v2.wasm", &v2_bytes)]);
    let modules = modules_in(&both, &log).await;
    let replayed = host::replay::replay(&log, &modules).expect("the log replays");
    assert_eq!(replayed.modules, vec![v1.clone(), v2.clone()]);
    assert_eq!(replayed.winners, log.winners);
    // Natively, the game's crate carries the match over with its own migration.
    sdk::testing::replay::<wizard_battle::WizardBattle>(&log).expect("replays natively");

    // `gamehost replay --room` reads the log, and every version the fleet shared, from Redis.
    let empty = rules_dir(&[]);
    let (variable, value) = redis.env();
    let env = [
        (variable, value.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("RULES_DIR", empty.to_str().unwrap()),
    ];
    let (code, said) = replay_command(&["--room", &room], &env);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(&v1) && said.contains(&v2), "{said}");
    let (code, said) = replay_command(&["--room", "no-such-room"], &env);
    assert_eq!(code, 2, "{said}");
    // Several rooms in one run: a line each, and the worst exit code.
    let (code, said) = replay_command(&["--room", &room, "--room", "no-such-room"], &env);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains(&format!("{room}: identical")), "{said}");
    assert!(said.contains("no-such-room: no match is stored"), "{said}");
    let (code, said) = replay_command(
        &["--room", &room],
        &[("RULES_DIR", empty.to_str().unwrap())],
    );
    assert_eq!(code, 2, "without Redis, --room cannot read a log: {said}");
    assert!(said.contains("REDIS_URL"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_read_logs_and_without_the_match_log_nothing_is_recorded() {
    let server = server(|c| {
        c.match_log = false;
        c.admin_token = Some("s3cret".into());
    })
    .await;
    let (a, b, room) = matched_pair(&server, 1).await;
    for player in [&a, &b] {
        player.next("view").await;
    }
    strike_each_other(&a, &b, &room).await;
    a.next("gameOver").await;
    let (status, _) = http(&server, "GET", &format!("/matches/{room}/log"), None).await;
    assert_eq!(status, 401);
    let (_, log) = fetch_log(&server, &room, Some("s3cret")).await;
    assert!(log.entries.is_empty(), "{log:?}");
    assert!(log.winners.is_some());
}

/// On Redis, a match's log lives in one list beside its room's keys, is written only with the
/// states it explains, and goes when the finished game is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_finished_games_log_is_kept_with_it_and_pruned_with_it() {
    a_finished_games_log_is_kept_with_it_and_pruned_with_it(PrivateRedis::start()).await;
}

pub(crate) async fn a_finished_games_log_is_kept_with_it_and_pruned_with_it(redis: impl Shared) {
    use host::model::{LogInput, Status};
    use host::store::RedisStore;
    use redis::Commands;
    let prefix = unique_prefix();
    let store = RedisStore::connect(&redis.target(), &prefix, Duration::from_secs(2))
        .await
        .unwrap();
    let (record, mut game) = bare_game("r");
    let first = game.log_entry(LogInput::Timeout);
    store
        .insert_match(&record, &game, &[], &[first])
        .await
        .unwrap();
    game.version = 2;
    game.status = Status::Finished;
    game.winners = Some(vec!["a".into()]);
    game.updated_at = 1_000;
    let last = game.log_entry(LogInput::Leave { player: "b".into() });
    store
        .replace_game(&game, 1, &[], std::slice::from_ref(&last))
        .await
        .unwrap();
    let log = store.match_log("r").await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[1].version, &log[1].state), (2, &last.state));
    assert_eq!(log[1].winners, Some(vec!["a".to_string()]));

    let key = format!("{prefix}match_log:{{r}}");
    let mut conn = redis.holding(&key);
    // The room's delivery log (every player's views) is kept a minute after the end, not an
    // hour: late instances catch up within seconds.
    let delivery: i64 = conn.pttl(format!("{prefix}room:{{r}}:log")).unwrap();
    assert!((1..=60_000).contains(&delivery), "{delivery} ms");
    assert!(conn.exists::<_, bool>(&key).unwrap());
    assert_eq!(store.prune_finished(1_001).await.unwrap(), 1);
    assert!(
        !conn.exists::<_, bool>(&key).unwrap(),
        "pruned with its game"
    );
    assert!(store.match_log("r").await.unwrap().is_empty());
}
