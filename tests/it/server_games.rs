//! The host never knows the game: liar's dice, a game of turns and hidden dice, played through
//! the server by real clients exactly as wizard battle is.

use crate::support::{Player, act, http, matched_pair, server};
use liars_dice::View;
use serde_json::{Value, json};

/// The last view a player got.
fn last_view(player: &Player) -> View {
    let views = player.received("view");
    let view = views.last().expect("a view arrived");
    serde_json::from_value(view["view"].clone()).expect("a liar's dice view")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liars_dice_match_plays_to_its_end_through_the_server() {
    let server = server(|c| {
        c.game = "liars-dice".into();
        // Two are enough for a table that takes up to six, when nobody waits for more.
        c.match_fill = std::time::Duration::ZERO;
        crate::support::unhurried_limits(c);
    })
    .await;
    let (a, b, room) = matched_pair(&server, 1).await;
    let players = [&a, &b];
    for player in players {
        player.next("view").await;
    }
    let mut rng = sdk::Rng::from_seed(7);
    let mut moves = 0;
    while a.count("gameOver") == 0 {
        moves += 1;
        assert!(moves < 500, "the match ends");
        let view = last_view(&a);
        let actor = players.into_iter().find(|p| p.id == view.to_act).unwrap();
        let waiting = players.into_iter().find(|p| p.id != view.to_act).unwrap();
        // Out of turn: refused with the game's own code, nothing changes.
        let early = act(waiting, &room, json!({ "bid": { "count": 1, "face": 1 } })).await;
        assert_eq!(early["code"], "not_your_turn", "{early}");
        let views_before = a.count("view");
        let action = liars_dice::bot_action(&last_view(actor), &mut rng);
        let answer = act(actor, &room, serde_json::to_value(&action).unwrap()).await;
        assert_eq!(answer["success"], true, "{answer}");
        // Both see the move before the next one is chosen.
        a.first_where("view", |_| a.count("view") > views_before)
            .await;
        b.first_where("view", |_| b.count("view") > views_before)
            .await;
    }
    let over = a.next("gameOver").await;
    assert_eq!(b.next("gameOver").await, over);
    let winners = over["winners"].as_array().unwrap();
    assert_eq!(winners.len(), 1, "{over}");
    // Each saw only its own dice: the other's are never in a view, only counted.
    for player in players {
        for view in player.received("view") {
            let seen: View = serde_json::from_value(view["view"].clone()).unwrap();
            assert_eq!(seen.you, player.id);
            assert!(
                view["view"]
                    .get("players")
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p.get("dice").is_some_and(Value::is_u64))
            );
        }
    }
}

/// The view a `view` event carries, as JSON.
async fn next_view(player: &Player) -> Value {
    player.next("view").await["view"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_game_is_served_at_once_each_with_queues_of_its_own() {
    let server = server(|c| c.match_fill = std::time::Duration::ZERO).await;
    let dice_a = Player::connect(&server).await;
    let wizard = Player::connect(&server).await;
    let dice_b = Player::connect(&server).await;
    let dice = json!({ "level": 1, "game": "liars-dice" });
    assert_eq!(
        dice_a.request("joinMatchmaking", dice.clone()).await,
        Value::Null
    );
    // The original's clients send no game: they get wizard battle, and never a dice player.
    let answer = wizard
        .request("joinMatchmaking", json!({ "level": 1 }))
        .await;
    assert_eq!(answer, Value::Null, "no wizard battle opponent yet");
    let room = dice_b.request("joinMatchmaking", dice).await;
    let room = room.as_str().expect("paired with the other dice player");
    assert_eq!(dice_a.next("matchFound").await["roomId"], room);
    let view = next_view(&dice_a).await;
    assert_eq!(
        view["yourDice"].as_array().unwrap().len(),
        5,
        "classic: {view}"
    );

    let (_, stats) = http(&server, "GET", "/health/stats", None).await;
    assert_eq!(
        stats["matchmaking"],
        json!({ "level_1": 1 }),
        "the original's shape"
    );
    assert_eq!(
        stats["queues"],
        json!({ "wizard-battle": { "default": { "level_1": 1 } } })
    );
    assert_eq!(wizard.count("matchFound"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_sets_up_its_matches_and_unknown_games_and_modes_are_refused() {
    let server = server(|c| c.match_fill = std::time::Duration::ZERO).await;
    let a = Player::connect(&server).await;
    let b = Player::connect(&server).await;
    let refused = a
        .request("joinMatchmaking", json!({ "level": 1, "game": "chess" }))
        .await;
    assert_eq!(refused["code"], "unknown_game", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("liars-dice"),
        "{refused}"
    );
    let refused = a
        .request(
            "joinMatchmaking",
            json!({ "level": 1, "game": "liars-dice", "mode": "blitz" }),
        )
        .await;
    assert_eq!(refused["code"], "unknown_mode", "{refused}");
    let refused = a
        .request("joinMatchmaking", json!({ "level": 1, "mode": "quick" }))
        .await;
    assert_eq!(
        refused["code"], "unknown_mode",
        "wizard battle has no quick mode"
    );

    let quick = json!({ "level": 1, "game": "liars-dice", "mode": "quick" });
    assert_eq!(
        a.request("joinMatchmaking", quick.clone()).await,
        Value::Null
    );
    let classic = Player::connect(&server).await;
    let answer = classic
        .request(
            "joinMatchmaking",
            json!({ "level": 1, "game": "liars-dice", "mode": "classic" }),
        )
        .await;
    assert_eq!(answer, Value::Null, "classic players wait for classic ones");
    assert!(b.request("joinMatchmaking", quick).await.is_string());
    let view = next_view(&a).await;
    assert_eq!(
        view["yourDice"].as_array().unwrap().len(),
        3,
        "quick: {view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_starts_when_full_or_once_its_oldest_has_waited_the_fill_time() {
    // Long enough that six joins in a row never take it, however slow the machine.
    let fill = std::time::Duration::from_millis(2_000);
    let server = server(|c| c.match_fill = fill).await;
    let join = json!({ "level": 4, "game": "liars-dice" });
    let mut six = Vec::new();
    for _ in 0..6 {
        six.push(Player::connect(&server).await);
    }
    for player in &six[..5] {
        assert_eq!(
            player.request("joinMatchmaking", join.clone()).await,
            Value::Null
        );
    }
    let asked = std::time::Instant::now();
    let room = six[5].request("joinMatchmaking", join.clone()).await;
    let room = room
        .as_str()
        .expect("the sixth completes the table")
        .to_string();
    assert!(asked.elapsed() < fill, "a full table does not wait");
    for player in &six {
        let found = player.next("matchFound").await;
        assert_eq!(found["roomId"], room.as_str());
        assert_eq!(crate::support::seated(&found).len(), 6);
    }

    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(Player::connect(&server).await);
    }
    let first = std::time::Instant::now();
    for player in &three {
        assert_eq!(
            player.request("joinMatchmaking", join.clone()).await,
            Value::Null
        );
    }
    let found = three[0].next("matchFound").await;
    assert!(first.elapsed() >= fill, "three wait the fill time for more");
    assert_eq!(crate::support::seated(&found).len(), 3);
    for player in &three[1..] {
        assert_eq!(player.next("matchFound").await["roomId"], found["roomId"]);
    }
    let (_, stats) = http(&server, "GET", "/health/stats", None).await;
    assert_eq!(
        stats["queues"],
        json!({}),
        "nobody is left waiting: {stats}"
    );

    // A lone player of a game that needs two waits on, past the fill time.
    let alone = Player::connect(&server).await;
    assert_eq!(alone.request("joinMatchmaking", join).await, Value::Null);
    tokio::time::sleep(fill * 2).await;
    assert_eq!(alone.count("matchFound"), 0);
}
