//! Every game's modules, side by side: a refused file never stops an instance, each game keeps
//! versions of its own through swaps, and a rollback reaches any recent version, used or not.

use crate::cluster_support::{PrivateRedis, cluster_server, unique_prefix};
use crate::support::{
    Player, activate, http, matched_pair, module_bytes, rules_dir, server, upload, variant,
    version_of,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Longer than the host's sweep, which unloads versions nothing uses (every second).
const SWEPT: Duration = Duration::from_millis(2_500);

async fn active(server: &impl crate::support::Endpoint, game: &str) -> Value {
    let (_, rules) = http(server, "GET", "/rules", None).await;
    rules["games"][game]["active"].clone()
}

/// The module version a match runs, from its stored document.
async fn module_of(player: &Player, room: &str) -> Value {
    let state = player
        .request("getGameState", json!({ "roomId": room }))
        .await;
    state["state"]["module"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_file_at_start_is_refused_and_the_other_games_are_served() {
    let wizard = module_bytes("rules", "wizard-battle");
    let dir = rules_dir(&[
        ("wizard-battle.wasm", &wizard),
        ("liars-dice.wasm", b"\0asm garbage, not a module"),
    ]);
    let server = server(|c| c.rules_dir = dir).await;
    let (_, rules) = http(&server, "GET", "/rules", None).await;
    let games: Vec<&String> = rules["games"].as_object().unwrap().keys().collect();
    assert_eq!(games, ["wizard-battle"], "{rules}");
    let why = rules["refused"]["liars-dice.wasm"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("liars-dice.wasm"),
        "says which file and why: {rules}"
    );
    let (a, _b, room) = matched_pair(&server, 1).await;
    assert!(module_of(&a, &room).await.is_string());
    let refused = a
        .request(
            "joinMatchmaking",
            json!({ "level": 1, "game": "liars-dice" }),
        )
        .await;
    assert_eq!(refused["code"], "unknown_game", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_file_leaves_the_fleets_last_good_version_of_its_game_served() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let good = cluster_server(&redis, &prefix, |_| {}).await;
    let dice = version_of(&module_bytes("rules", "liars-dice"));
    assert_eq!(active(&good, "liars-dice").await, dice.as_str());
    let dir = rules_dir(&[
        (
            "wizard-battle.wasm",
            &module_bytes("rules", "wizard-battle"),
        ),
        ("liars-dice.wasm", b"\0asm garbage"),
    ]);
    let broken = cluster_server(&redis, &prefix, |c| c.rules_dir = dir).await;
    assert_eq!(
        active(&broken, "liars-dice").await,
        dice.as_str(),
        "served from the store"
    );
    let (_, rules) = http(&broken, "GET", "/rules", None).await;
    assert!(rules["refused"]["liars-dice.wasm"].is_string(), "{rules}");
    let me = Player::connect(&broken).await;
    let room = me
        .request(
            "joinMatchmaking",
            json!({ "level": 1, "game": "liars-dice", "vsBot": true }),
        )
        .await;
    assert_eq!(module_of(&me, room.as_str().unwrap()).await, dice.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reaches_any_of_the_last_ten_versions_even_those_no_match_uses() {
    let server = server(|_| {}).await;
    let game = "liars-dice";
    let original = module_bytes("rules", game);
    let mut versions = vec![version_of(&original)];
    for tag in 1..10 {
        let (status, answer) =
            upload(&server, game, variant(&original, &tag.to_string()), None).await;
        assert_eq!(status, 200, "{answer}");
        versions.push(answer["version"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(SWEPT).await;
    // Back to each, oldest first: none of them has ever run a match.
    for version in &versions {
        let (status, answer) = activate(&server, game, version).await;
        assert_eq!(status, 200, "{version}: {answer}");
        assert_eq!(active(&server, game).await, version.as_str());
    }
    let me = Player::connect(&server).await;
    let room = me
        .request(
            "joinMatchmaking",
            json!({ "level": 1, "game": game, "vsBot": true }),
        )
        .await;
    let last = versions.last().unwrap();
    assert_eq!(module_of(&me, room.as_str().unwrap()).await, last.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_of_one_game_leaves_the_others_matches_and_versions_alone() {
    let server = server(|c| c.match_fill = Duration::ZERO).await;
    let wizard = version_of(&module_bytes("rules", "wizard-battle"));
    let dice_v1 = version_of(&module_bytes("rules", "liars-dice"));
    let (a, b, wizard_room) = matched_pair(&server, 1).await;
    a.next("view").await;
    b.next("view").await;
    let dice_player = Player::connect(&server).await;
    let dice_join = json!({ "level": 1, "game": "liars-dice", "vsBot": true });
    let old_dice_room = dice_player
        .request("joinMatchmaking", dice_join.clone())
        .await;

    let (status, answer) = upload(
        &server,
        "liars-dice",
        variant(&module_bytes("rules", "liars-dice"), "2"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let dice_v2 = answer["version"].as_str().unwrap().to_string();
    assert_eq!(active(&server, "liars-dice").await, dice_v2.as_str());
    assert_eq!(
        active(&server, "wizard-battle").await,
        wizard.as_str(),
        "untouched"
    );

    // The wizard match plays on, on its version; a round resolves for both.
    assert_eq!(module_of(&a, &wizard_room).await, wizard.as_str());
    crate::support::strike_each_other(&a, &b, &wizard_room).await;
    a.next("gameOver").await;
    assert_eq!(module_of(&b, &wizard_room).await, wizard.as_str());
    // The running dice match stays on v1 (liar's dice has no migration); a new one gets v2.
    let old_dice_room = old_dice_room.as_str().unwrap();
    assert_eq!(
        module_of(&dice_player, old_dice_room).await,
        dice_v1.as_str()
    );
    let newcomer = Player::connect(&server).await;
    let new_dice_room = newcomer.request("joinMatchmaking", dice_join).await;
    assert_eq!(
        module_of(&newcomer, new_dice_room.as_str().unwrap()).await,
        dice_v2.as_str()
    );
    let (_, rules) = http(&server, "GET", "/rules", None).await;
    let listed = |game: &str| -> Vec<String> {
        rules["games"][game]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("wizard-battle"), [wizard]);
    let mut dice = listed("liars-dice");
    dice.sort();
    let mut expected = vec![dice_v1, dice_v2];
    expected.sort();
    assert_eq!(dice, expected);
}
