//! A game made by `cargo xtask new-game` (which `cargo xtask test` generates, tests and builds
//! to `target/new-game/sample-game.wasm`) loads into a running host through its watched folder,
//! and a player plays it against its bot.

use crate::play;
use crate::support::{Player, http, install_file, module_bytes, rules_dir, server, target_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The sample game: on its turn, a player adds 1.
fn add_one(player: &Player, view: &Value, _: u64) -> Option<Value> {
    (view["toAct"] == player.id.as_str() && view.get("winner").is_none())
        .then(|| json!({ "add": 1 }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_made_by_new_game_loads_into_a_running_host_and_plays_against_its_bot() {
    let made = target_dir().join("new-game/sample-game.wasm");
    let bytes = std::fs::read(&made).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; `cargo xtask test` makes it with `new-game`",
            made.display()
        )
    });
    let dir = rules_dir(&[(
        "wizard-battle.wasm",
        &module_bytes("rules", "wizard-battle"),
    )]);
    let folder = dir.clone();
    let server = server(|c| {
        c.rules_dir = folder;
        c.bots.think = Duration::from_millis(5);
    })
    .await;
    install_file(&dir, "sample-game.wasm", &bytes);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, rules) = http(&server, "GET", "/rules", None).await;
        if rules["games"]["sample-game"]["active"].is_string() {
            let description = &rules["games"]["sample-game"]["description"];
            assert_eq!(description["players"], json!({ "min": 2, "max": 4 }));
            break;
        }
        assert!(Instant::now() < deadline, "never loaded: {rules}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let me = Player::connect(&server).await;
    let join =
        json!({ "level": 1, "game": "sample-game", "mode": "long", "vsBot": true, "seats": 3 });
    let room = me.request("joinMatchmaking", join).await;
    let room = room.as_str().expect("a match against two bots").to_string();
    let over = play::to_the_end(&[&me], &room, add_one).await;
    let last = me.received("view").last().unwrap()["view"].clone();
    assert_eq!(last["total"], 31, "the long mode's target: {last}");
    assert_eq!(over["winners"].as_array().unwrap().len(), 1);
}
