//! The host never knows the game: liar's dice, a game of turns and hidden dice, played through
//! the server by real clients exactly as wizard battle is.

use crate::support::{Player, act, matched_pair, server};
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
        // The bots move as fast as the answers come: more than a person's events per second.
        c.client_limits.events_per_second = 1_000;
        c.client_limits.burst = 1_000;
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
