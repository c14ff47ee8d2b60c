//! Rules modules swapped while the servers run: uploads, the watched folder, rollbacks, versions
//! shared through Redis, matches pinned to the version they started with, broken modules refused.

use crate::cluster_support::{PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::support::{
    Endpoint, Player, activate, http, install_file, matched_pair, module_bytes, module_of,
    moves_to, play_a_round, rules_dir, server, settle, strike_each_other, upload, variant,
    version_of, wat_bytes,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const GAME: &str = "wizard-battle";

/// Three instances on one Redis, each with a rules folder of its own holding `rules`.
async fn three_instances(
    redis: &impl Shared,
    prefix: &str,
    rules: &[u8],
) -> Vec<host::server::RunningServer> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        let dir = rules_dir(&[("wizard-battle.wasm", rules)]);
        servers.push(cluster_server(redis, prefix, |c| c.rules_dir = dir).await);
    }
    servers
}

async fn active_version(server: &impl Endpoint) -> Value {
    let (status, rules) = http(server, "GET", "/rules", None).await;
    assert_eq!(status, 200, "{rules}");
    rules["games"][GAME]["active"].clone()
}

/// Waits until every server has `version` active.
async fn everywhere_active(servers: &[&dyn Endpointish], version: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = true;
        for server in servers {
            if server.active().await != version {
                all = false;
            }
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{version} not active everywhere within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every server runs `version` on optimised code: a swap goes live on baseline
/// code, and the installer's optimised code follows.
async fn everywhere_optimized(servers: &[&host::server::RunningServer], version: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut codes = Vec::new();
        for server in servers {
            let (status, rules) = http(*server, "GET", "/rules", None).await;
            assert_eq!(status, 200, "{rules}");
            let info = rules["games"][GAME]["versions"]
                .as_array()
                .and_then(|versions| versions.iter().find(|v| v["version"] == version))
                .cloned()
                .unwrap_or(Value::Null);
            codes.push(info["code"].clone());
        }
        if codes.iter().all(|code| code == "optimized") {
            return;
        }
        for code in &codes {
            assert!(
                code == "baseline" || code == "optimized",
                "{version} is not loaded everywhere: {codes:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "{version} not optimised everywhere within 20 s: {codes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the tests ask of any server.
trait Endpointish: Sync {
    fn active(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send + '_>>;
}

impl Endpointish for host::server::RunningServer {
    fn active(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send + '_>> {
        Box::pin(active_version(self))
    }
}

/// Both players strike where the other stands: the match ends, a draw.
async fn finish(a: &Player, b: &Player, room: &str) {
    strike_each_other(a, b, room).await;
    a.next("gameOver").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reaches_every_instance_pins_running_matches_and_rolls_back() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let v1_bytes = module_bytes("rules", GAME);
    let v1 = version_of(&v1_bytes);
    let servers = three_instances(&redis, &prefix, &v1_bytes).await;
    let all: Vec<&dyn Endpointish> = servers.iter().map(|s| s as &dyn Endpointish).collect();
    everywhere_active(&all, &v1).await;

    // A match starts on v1, then v2 is uploaded to another instance.
    let (a, b, old_room) = matched_pair(&servers[0], 1).await;
    a.next("view").await;
    b.next("view").await;
    let v2_bytes = variant(&v1_bytes, "2");
    let v2 = version_of(&v2_bytes);
    let (status, answer) = upload(&servers[1], GAME, v2_bytes, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "game": GAME, "version": v2, "active": true })
    );
    everywhere_active(&all, &v2).await;
    everywhere_optimized(&servers.iter().collect::<Vec<_>>(), &v2).await;

    // The running match stays on v1 to its end; a new one, on a third instance, gets v2.
    assert_eq!(module_of(&a, &old_room).await, v1);
    finish(&a, &b, &old_room).await;
    assert_eq!(module_of(&b, &old_room).await, v1, "pinned to the end");
    let (c, _d, new_room) = matched_pair(&servers[2], 1).await;
    assert_eq!(module_of(&c, &new_room).await, v2);

    let (_, rules) = http(&servers[0], "GET", "/rules", None).await;
    let versions = rules["games"][GAME]["versions"].as_array().unwrap().clone();
    let running = |v: &str| {
        versions
            .iter()
            .find(|info| info["version"] == v)
            .map(|info| info["matches"].clone())
    };
    assert_eq!(running(&v2), Some(json!(1)), "{rules}");
    assert_eq!(running(&v1), Some(json!(0)), "{rules}");

    // Rollback, asked of yet another instance, reaches all; new matches get v1 again.
    let (status, answer) = activate(&servers[2], GAME, &v1).await;
    assert_eq!(status, 200, "{answer}");
    everywhere_active(&all, &v1).await;
    let (e, _f, third_room) = matched_pair(&servers[0], 1).await;
    assert_eq!(module_of(&e, &third_room).await, v1);
    assert_eq!(
        module_of(&c, &new_room).await,
        v2,
        "still pinned after the rollback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_written_to_the_folder_runs_everywhere_even_where_the_file_never_was() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let v1_bytes = module_bytes("rules", GAME);
    let (dir_a, dir_b) = (
        rules_dir(&[("wizard-battle.wasm", &v1_bytes)]),
        rules_dir(&[("wizard-battle.wasm", &v1_bytes)]),
    );
    let watched = dir_a.clone();
    let a = cluster_server(&redis, &prefix, |c| c.rules_dir = dir_a).await;
    let b = cluster_server(&redis, &prefix, |c| c.rules_dir = dir_b).await;
    let both: [&dyn Endpointish; 2] = [&a, &b];

    let v2_bytes = variant(&v1_bytes, "file-2");
    let v2 = version_of(&v2_bytes);
    install_file(&watched, "wizard-battle.wasm", &v2_bytes);
    everywhere_active(&both, &v2).await;
    everywhere_optimized(&[&a, &b], &v2).await;
    // b never had v2 on disk: it came from Redis.
    let (p, _q, room) = matched_pair(&b, 1).await;
    assert_eq!(module_of(&p, &room).await, v2);

    // Garbage in the folder is refused; the watcher goes on, and the active version stays.
    install_file(&watched, "wizard-battle.wasm", b"not wasm at all");
    settle().await;
    settle().await;
    assert_eq!(active_version(&a).await, v2);
    let v3_bytes = variant(&v1_bytes, "file-3");
    install_file(&watched, "wizard-battle.wasm", &v3_bytes);
    everywhere_active(&both, &version_of(&v3_bytes)).await;

    // An upload or a rollback wins over a file that did not change since: the watcher does not
    // put the file's version back when it is merely read or touched.
    let v4_bytes = variant(&v1_bytes, "upload-4");
    let v4 = version_of(&v4_bytes);
    assert_eq!(upload(&b, GAME, v4_bytes, None).await.0, 200);
    everywhere_active(&both, &v4).await;
    let _ = std::fs::read(watched.join("wizard-battle.wasm")).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(watched.join("wizard-battle.wasm"))
        .unwrap();
    settle().await;
    settle().await;
    assert_eq!(active_version(&a).await, v4.as_str());
    assert_eq!(active_version(&b).await, v4.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_modules_are_refused_and_the_active_version_stays() {
    let v1 = version_of(&module_bytes("rules", GAME));
    let server = server(|c| c.admin_token = Some("s3cret".into())).await;
    let token = Some("s3cret");
    for (bytes, says) in [
        (b"\0asm but not really".to_vec(), "wasm"),
        (wat_bytes("wrong_version"), "version"),
        (wat_bytes("missing_export"), "export"),
        (wat_bytes("traps_in_setup"), "trial"),
    ] {
        let (status, answer) = upload(&server, GAME, bytes, token).await;
        assert_eq!(status, 422, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{error:?} should mention {says:?}");
        assert_eq!(active_version(&server).await, v1.as_str());
    }
    // Only admins upload or roll back.
    let (status, _) = upload(&server, GAME, module_bytes("rules", GAME), None).await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .put(format!("{}/rules/{GAME}/active", server.url()))
        .bearer_auth("s3cret")
        .json(&json!({ "version": "0".repeat(64) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404, "an unknown version");
    // A match still starts, on the version that was active all along.
    let (a, _b, room) = matched_pair(&server, 1).await;
    assert_eq!(module_of(&a, &room).await, v1);
}

/// The same rules without the migration export (its name garbled, same length): a version that
/// cannot carry running matches over.
fn without_migrations(bytes: &[u8]) -> Vec<u8> {
    let (from, to) = (b"gamehost_migrate", b"gamehost_migrat_");
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    assert_ne!(out, bytes, "the module had a migration export");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_pins_matches_unless_the_new_version_migrates_them_at_a_round_boundary() {
    a_swap_across_instances(PrivateRedis::start()).await;
}

pub(crate) async fn a_swap_across_instances(redis: impl Shared) {
    let prefix = unique_prefix();
    let v1_bytes = module_bytes("rules", GAME);
    let v1 = version_of(&v1_bytes);
    let servers = three_instances(&redis, &prefix, &v1_bytes).await;
    let all: Vec<&dyn Endpointish> = servers.iter().map(|s| s as &dyn Endpointish).collect();

    // Two matches on v1: one on instance 0, one across instances 1 and 2.
    let (a1, a2, pinned_room) = matched_pair(&servers[0], 1).await;
    let b1 = Player::connect(&servers[1]).await;
    let b2 = Player::connect(&servers[2]).await;
    assert_eq!(
        b1.request("joinMatchmaking", json!({ "level": 2 })).await,
        Value::Null
    );
    let moving_room = b2.request("joinMatchmaking", json!({ "level": 2 })).await;
    let moving_room = moving_room.as_str().unwrap().to_string();
    for player in [&a1, &a2, &b1, &b2] {
        player.next("view").await;
    }

    // v2 cannot migrate: a round boundary leaves the match on v1, which it finishes on.
    let v2_bytes = without_migrations(&variant(&v1_bytes, "pinned"));
    let v2 = version_of(&v2_bytes);
    assert_eq!(upload(&servers[1], GAME, v2_bytes, None).await.0, 200);
    everywhere_active(&all, &v2).await;
    play_a_round(&a1, &a2, &pinned_room).await;
    settle().await;
    assert_eq!(
        module_of(&a1, &pinned_room).await,
        v1,
        "pinned past a round boundary"
    );
    finish(&a1, &a2, &pinned_room).await;
    assert_eq!(
        module_of(&a2, &pinned_room).await,
        v1,
        "finished on its version"
    );
    let (c1, _c2, v2_room) = matched_pair(&servers[0], 3).await;
    assert_eq!(
        module_of(&c1, &v2_room).await,
        v2,
        "new matches get the active version"
    );

    // v3 migrates: the other v1 match stays on v1 until its round ends, then moves to v3.
    let v3_bytes = variant(&v1_bytes, "migrating");
    let v3 = version_of(&v3_bytes);
    assert_eq!(upload(&servers[2], GAME, v3_bytes, None).await.0, 200);
    everywhere_active(&all, &v3).await;
    assert_eq!(
        module_of(&b1, &moving_room).await,
        v1,
        "not in the middle of a round"
    );
    play_a_round(&b1, &b2, &moving_room).await;
    moves_to(&b1, &moving_room, &v3).await;
    // It plays on, on v3, to its end.
    finish(&b1, &b2, &moving_room).await;
    assert_eq!(module_of(&b2, &moving_room).await, v3);

    let (_, rules) = http(&servers[0], "GET", "/rules", None).await;
    let count = |v: &str| {
        rules["games"][GAME]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|info| info["version"] == v)
            .map(|info| info["matches"].as_u64().unwrap())
    };
    assert_eq!(count(&v1).unwrap_or(0), 0, "{rules}");
    assert_eq!(count(&v2), Some(1), "the v2 match still runs: {rules}");
}
