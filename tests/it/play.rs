//! Playing whole matches as a client would: whenever a player's latest view (from `view`, or
//! `resumed` after a reconnection) asks it to act, it acts, until the match is over.

use crate::support::{Player, act};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a whole match may take.
const MATCH_LIMIT: Duration = Duration::from_secs(120);

/// A game as a client plays it: what to do on a view, if anything.
pub type Strategy = fn(&Player, &Value, u64) -> Option<Value>;

/// Wizard battle: a living wizard that has not cast this round casts lightning or a fireball at
/// a cell of the map, whichever is ready.
pub fn wizard(_: &Player, view: &Value, step: u64) -> Option<Value> {
    let you = &view["you"];
    if view.get("winners").is_some() || you["alive"] != true || you.get("submitted").is_some() {
        return None;
    }
    let size = view["map"].as_array()?.len() as u64;
    let target = json!({ "x": step % size, "y": (step / size) % size });
    let spell = ["fireball", "lightning"]
        .into_iter()
        .find(|spell| you["spells"][spell] == 0)?;
    Some(json!({ "spell": spell, "target": target }))
}

/// Liar's dice: on its turn, the player does what the game's own bot would.
pub fn dice(player: &Player, view: &Value, step: u64) -> Option<Value> {
    let view: liars_dice::View = serde_json::from_value(view.clone()).ok()?;
    let playing = view.players.iter().filter(|p| p.dice > 0).count() > 1;
    if !playing || view.to_act != player.id || view.your_dice.is_empty() {
        return None;
    }
    let mut rng = sdk::Rng::from_seed(step);
    serde_json::to_value(liars_dice::bot_action(&view, &mut rng)).ok()
}

/// Plays `players` in `room` with `strategy` until each has been told the match is over;
/// returns the `gameOver` they got.
pub async fn to_the_end(players: &[&Player], room: &str, strategy: Strategy) -> Value {
    until(players, room, strategy, || {
        players.iter().all(|p| p.count("gameOver") > 0)
    })
    .await;
    players[0].next("gameOver").await
}

/// Plays `players` in `room` with `strategy` until `done` says so (or the match is over).
pub async fn until(players: &[&Player], room: &str, strategy: Strategy, done: impl Fn() -> bool) {
    let started = Instant::now();
    let mut seen = vec![0; players.len()];
    let mut step = 0;
    while !done() && players.iter().any(|p| p.count("gameOver") == 0) {
        assert!(started.elapsed() < MATCH_LIMIT, "the match in {room} ends");
        let mut acted = false;
        for (i, player) in players.iter().enumerate() {
            // A resumed player's first view comes with `resumed`.
            let views = player.received_of(&["view", "resumed"]);
            if views.len() == seen[i] || player.count("gameOver") > 0 {
                continue;
            }
            seen[i] = views.len();
            let latest = &views[views.len() - 1];
            if latest["roomId"] != room {
                continue;
            }
            step += 1;
            if let Some(action) = strategy(player, &latest["view"], step) {
                let ack = act(player, room, action).await;
                // A view overtaken by the next one may ask too late (with Redis, an action's
                // acknowledgement can arrive before the view that announces it, so a spell
                // chosen from the previous round's view may be cooling down); anything else is
                // a bug.
                let code = ack["code"].as_str().unwrap_or_default();
                let stale = [
                    "not_your_turn",
                    "already_submitted",
                    "game_over",
                    "on_cooldown",
                ];
                assert!(ack["success"] == true || stale.contains(&code), "{ack}");
                acted = true;
            }
        }
        if !acted {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
