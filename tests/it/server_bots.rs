//! The games' own bots, seated by the host: a lone player asks for them (`vsBot`) or gets them
//! after a wait (`BOT_AFTER_MS`), and plays whole matches against them.

use crate::play::{self, Strategy};
use crate::support::{Player, server};
use host::server::RunningServer;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn quick_bots(bot_after: Option<Duration>) -> RunningServer {
    server(|c| {
        c.bots.think = Duration::from_millis(5);
        c.bots.after = bot_after;
        crate::support::unhurried_limits(c);
    })
    .await
}

/// The bots a `matchFound` seats, after checking that `me` is seated too.
fn bots_of(found: &Value, me: &Player) -> Vec<String> {
    let players = found["players"].as_array().expect("matchFound lists seats");
    assert!(
        players
            .iter()
            .any(|p| p["id"] == me.id.as_str() && p.get("bot").is_none())
    );
    players
        .iter()
        .filter(|p| p["bot"] == true)
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// Plays `me` to the end of its match against bots; checks it saw only its own views and that
/// every bot acted. Returns the winners.
async fn against_bots(me: &Player, room: &str, strategy: Strategy, acted: &str) -> Vec<String> {
    let found = me.next("matchFound").await;
    assert_eq!(found["roomId"], room);
    let bots = bots_of(&found, me);
    assert!(!bots.is_empty());
    let over = play::to_the_end(&[me], room, strategy).await;
    for view in me.received("view") {
        let own = view["view"]["you"]
            .as_str()
            .or(view["view"]["you"]["id"].as_str());
        assert_eq!(own, Some(me.id.as_str()), "only its own view: {view}");
    }
    for bot in &bots {
        let moves = me
            .received("gameEvent")
            .into_iter()
            .filter(|e| e["event"]["type"] == acted && e["event"]["player"] == bot.as_str())
            .count();
        assert!(moves > 0, "{bot} played: {:?}", me.received("gameEvent"));
    }
    let winners: Vec<String> = serde_json::from_value(over["winners"].clone()).unwrap();
    let seats: Vec<&str> = found["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        winners.iter().all(|w| seats.contains(&w.as_str())),
        "{over}"
    );
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_player_plays_wizard_battle_against_the_bot() {
    let server = quick_bots(None).await;
    let me = Player::connect(&server).await;
    let room = me
        .request("joinMatchmaking", json!({ "level": 1, "vsBot": true }))
        .await;
    let room = room.as_str().expect("a match at once").to_string();
    against_bots(&me, &room, play::wizard, "submitted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_casts_in_the_first_round_without_waiting_for_the_player() {
    let server = quick_bots(None).await;
    let me = Player::connect(&server).await;
    let room = me
        .request("joinMatchmaking", json!({ "level": 1, "vsBot": true }))
        .await;
    let found = me.next("matchFound").await;
    assert_eq!(found["roomId"], room);
    let bot = bots_of(&found, &me).remove(0);
    // The player does nothing at all; the round's timeout (30 s) is far away.
    let cast = me
        .first_where("gameEvent", |e| e["event"]["type"] == "submitted")
        .await;
    assert_eq!(cast["event"]["player"], bot.as_str());
    assert_eq!(cast["event"]["round"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_player_plays_liars_dice_against_three_bots() {
    let server = quick_bots(None).await;
    let me = Player::connect(&server).await;
    let join = json!({ "level": 2, "game": "liars-dice", "vsBot": true, "seats": 4 });
    let room = me.request("joinMatchmaking", join).await;
    let room = room.as_str().expect("a match at once").to_string();
    let found = me.next("matchFound").await;
    assert_eq!(bots_of(&found, &me).len(), 3);
    against_bots(&me, &room, play::dice, "bid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_who_waited_bot_after_ms_gets_bots_in_both_games() {
    let server = quick_bots(Some(Duration::from_millis(300))).await;
    for (game, strategy, acted) in [
        ("wizard-battle", play::wizard as Strategy, "submitted"),
        ("liars-dice", play::dice as Strategy, "bid"),
    ] {
        let me = Player::connect(&server).await;
        let asked = Instant::now();
        let answer = me
            .request("joinMatchmaking", json!({ "level": 5, "game": game }))
            .await;
        assert_eq!(answer, Value::Null, "{game}: it waits first");
        let found = me.next("matchFound").await;
        assert!(
            asked.elapsed() >= Duration::from_millis(300),
            "{game}: bots only after the wait"
        );
        assert_eq!(
            bots_of(&found, &me).len(),
            1,
            "{game}: up to the fewest seats"
        );
        let room = found["roomId"].as_str().unwrap().to_string();
        against_bots(&me, &room, strategy, acted).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_refused_where_they_cannot_sit() {
    let server = quick_bots(None).await;
    let me = Player::connect(&server).await;
    for (join, code) in [
        (
            json!({ "level": 1, "vsBot": true, "seats": 3 }),
            "invalid_seats",
        ),
        (
            json!({ "level": 1, "game": "liars-dice", "vsBot": true, "seats": 7 }),
            "invalid_seats",
        ),
        (
            json!({ "level": 1, "game": "liars-dice", "vsBot": true, "seats": 1 }),
            "invalid_seats",
        ),
        (json!({ "level": 1, "vsBot": "yes" }), "invalid_level"),
    ] {
        let refused = me.request("joinMatchmaking", join.clone()).await;
        assert_eq!(refused["code"], code, "{join}: {refused}");
    }
    let room = me
        .request("joinMatchmaking", json!({ "level": 1, "vsBot": true }))
        .await;
    assert!(room.is_string());
    let again = me
        .request("joinMatchmaking", json!({ "level": 1, "vsBot": true }))
        .await;
    assert_eq!(again["code"], "already_in_match", "{again}");
}
