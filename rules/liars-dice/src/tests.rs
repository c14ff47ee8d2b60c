use super::*;
use sdk::testing::Match;

type Table = Match<LiarsDice>;

fn table(seed: u64, players: usize) -> Table {
    let seats: Vec<(String, i64)> = (0..players).map(|i| (format!("p{i}"), 1)).collect();
    let seats: Vec<(&str, i64)> = seats.iter().map(|(id, l)| (id.as_str(), *l)).collect();
    Table::start(seed, &seats, Config::default()).unwrap()
}

fn bid(count: u32, face: u8) -> Action {
    Action::Bid(Bid { count, face })
}

fn to_act(game: &Table) -> String {
    let state = game.state().game;
    state.players[state.to_act].id.clone()
}

fn dice_of(game: &Table, player: &str) -> Vec<u8> {
    let state = game.state().game;
    state.players[state.index_of(player).unwrap()].dice.clone()
}

#[test]
fn two_to_six_players_with_five_dice_each() {
    for players in 2..=6 {
        let game = table(1, players);
        let state = game.state().game;
        assert_eq!(state.players.len(), players);
        assert!(state.players.iter().all(|p| p.dice.len() == 5));
        assert!(
            state
                .players
                .iter()
                .flat_map(|p| &p.dice)
                .all(|d| (1..=6).contains(d))
        );
        assert_eq!(state.round, 1);
    }
    let refused =
        |seats: &[(&str, i64)], config| Table::start(1, seats, config).err().unwrap().code;
    assert_eq!(
        refused(&[("a", 1)], Config::default()),
        "not_enough_players"
    );
    let seven: Vec<(&str, i64)> = ["a", "b", "c", "d", "e", "f", "g"]
        .map(|id| (id, 1))
        .to_vec();
    assert_eq!(refused(&seven, Config::default()), "too_many_players");
    assert_eq!(
        refused(&[("a", 1), ("a", 1)], Config::default()),
        "duplicate_player"
    );
    assert_eq!(
        refused(&[("a", 1), ("b", 1)], Config { dice: 0 }),
        "invalid_config"
    );
}

#[test]
fn the_seed_decides_the_dice_and_who_opens() {
    let first = table(42, 4).state_json().to_string();
    assert_eq!(table(42, 4).state_json(), first, "same seed, same table");
    let others: Vec<String> = (0..8)
        .map(|seed| table(seed, 4).state_json().to_string())
        .collect();
    assert!(others.iter().any(|other| *other != first));
    let openers: std::collections::BTreeSet<String> =
        (0..20).map(|s| to_act(&table(s, 4))).collect();
    assert!(openers.len() > 1, "the opener is drawn: {openers:?}");
}

#[test]
fn players_take_turns_in_seat_order() {
    let mut game = table(3, 3);
    let first = to_act(&game);
    let seat = |id: &str| id[1..].parse::<usize>().unwrap();
    let second = format!("p{}", (seat(&first) + 1) % 3);
    let third = format!("p{}", (seat(&first) + 2) % 3);
    assert_eq!(
        game.act(&second, &bid(1, 2)).unwrap_err().code,
        "not_your_turn"
    );
    game.act(&first, &bid(1, 2)).unwrap();
    assert_eq!(to_act(&game), second);
    game.act(&second, &bid(2, 2)).unwrap();
    assert_eq!(to_act(&game), third);
}

#[test]
fn a_bid_must_beat_the_last_and_fit_the_table() {
    let mut game = table(5, 2);
    let first = to_act(&game);
    assert_eq!(
        game.act(&first, &bid(1, 7)).unwrap_err().code,
        "invalid_bid"
    );
    assert_eq!(
        game.act(&first, &bid(0, 3)).unwrap_err().code,
        "invalid_bid"
    );
    assert_eq!(
        game.act(&first, &bid(11, 3)).unwrap_err().code,
        "invalid_bid"
    );
    assert_eq!(
        game.act(&first, &Action::Challenge(true)).unwrap_err().code,
        "no_bid"
    );
    game.act(&first, &bid(3, 4)).unwrap();
    let second = to_act(&game);
    for low in [bid(2, 6), bid(3, 4), bid(3, 3)] {
        assert_eq!(
            game.act(&second, &low).unwrap_err().code,
            "bid_too_low",
            "{low:?}"
        );
    }
    game.act(&second, &bid(3, 5)).unwrap();
    game.act(&first, &bid(4, 1)).unwrap();
}

#[test]
fn a_challenge_reveals_the_dice_and_the_wrong_side_loses_one() {
    for seed in 0..20 {
        let mut game = table(seed, 3);
        let bidder = to_act(&game);
        game.act(&bidder, &bid(4, 6)).unwrap();
        let challenger = to_act(&game);
        let before = game.state().game;
        let sixes = before
            .players
            .iter()
            .flat_map(|p| &p.dice)
            .filter(|&&d| d == 6)
            .count();
        let step = game.act(&challenger, &Action::Challenge(true)).unwrap();
        let loser = if sixes >= 4 { &challenger } else { &bidder };
        assert_eq!(
            dice_of(&game, loser).len(),
            4,
            "seed {seed}: {loser} loses a die"
        );
        let reveal = game.state().game.last_reveal.unwrap();
        assert_eq!(reveal.actual as usize, sixes);
        assert_eq!(&reveal.loser, loser);
        let shown: BTreeMap<String, Vec<u8>> = before
            .players
            .iter()
            .map(|p| (p.id.clone(), p.dice.clone()))
            .collect();
        assert_eq!(reveal.dice, shown, "every die as it was");
        // A new round: the loser opens it, every die rolled again.
        assert_eq!(&to_act(&game), loser);
        assert_eq!(game.state().game.round, 2);
        let kinds: Vec<&str> = step
            .events
            .iter()
            .map(|e| e.event["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["challenge", "roundStarted"]);
    }
}

#[test]
fn no_view_ever_holds_another_players_dice() {
    // At every step of whole matches, a player's view stays the same whatever the others hold.
    for players in 2..=6 {
        for seed in 0..5 {
            let mut game = table(seed * 7 + players as u64, players);
            let mut rng = Rng::from_seed(seed);
            while game.outcome().is_none() {
                let state = game.state().game;
                for (me, player) in state.players.iter().enumerate() {
                    let mut shuffled = state.clone();
                    for (i, other) in shuffled.players.iter_mut().enumerate() {
                        if i != me {
                            other.dice = other.dice.iter().map(|d| d % 6 + 1).collect();
                        }
                    }
                    assert_eq!(
                        LiarsDice::view(&state, &player.id),
                        LiarsDice::view(&shuffled, &player.id),
                        "{}'s view depends on the others' dice",
                        player.id
                    );
                    assert_eq!(LiarsDice::view(&state, &player.id).your_dice, player.dice);
                }
                let actor = to_act(&game);
                let action = bot_action(&game.view(&actor), &mut rng);
                game.act(&actor, &action).unwrap();
            }
        }
    }
}

#[test]
fn bots_play_whole_matches_to_a_single_winner() {
    for players in 2..=6 {
        for seed in 0..10 {
            let mut game = table(seed, players);
            let seats: Vec<String> = game.state().players.iter().map(|s| s.id.clone()).collect();
            let mut moves = 0;
            while game.outcome().is_none() {
                // As the host does: every bot is asked, only the one to act answers.
                let actor = to_act(&game);
                let seed = seed * 1_000 + moves;
                for seat in seats.iter().filter(|seat| **seat != actor) {
                    assert!(game.bot(seat, seed).is_none(), "{seat} acts out of turn");
                }
                let played = game.play_bot(&actor, seed).expect("the bot to act acts");
                played.unwrap_or_else(|e| panic!("the bot's action was refused: {e}"));
                moves += 1;
                assert!(moves < 2_000, "a match ends");
            }
            for seat in &seats {
                assert!(game.bot(seat, 1).is_none(), "nobody acts after the end");
            }
            let state = game.state().game;
            let winner = &game.outcome().unwrap().winners;
            assert_eq!(winner.len(), 1);
            let left: Vec<&str> = state.in_game().map(|p| p.id.as_str()).collect();
            assert_eq!(
                left,
                [winner[0].as_str()],
                "the winner is the last with dice"
            );
        }
    }
}

#[test]
fn a_late_player_loses_a_die_and_a_leaver_is_out() {
    let mut game = table(9, 3);
    let late = to_act(&game);
    let step = game.timeout();
    assert_eq!(dice_of(&game, &late).len(), 4);
    assert_eq!(step.events[0].event["type"], "timedOut");
    let gone = to_act(&game);
    game.leave(&gone).unwrap();
    assert!(dice_of(&game, &gone).is_empty());
    assert_ne!(to_act(&game), gone, "the turn moved on");
    let last_two: Vec<String> = game.state().game.in_game().map(|p| p.id.clone()).collect();
    game.leave(&last_two[0]).unwrap();
    assert_eq!(game.outcome().unwrap().winners, [last_two[1].clone()]);
    assert_eq!(
        game.act(&last_two[1], &bid(1, 1)).unwrap_err().code,
        "game_over"
    );
}

#[test]
fn liars_dice_describes_itself() {
    let description = sdk::dispatch::description::<LiarsDice>("liars-dice");
    assert_eq!((description.players.min, description.players.max), (2, 6));
    assert_eq!(description.round_timeout_ms, Some(20_000));
    let modes: Vec<(&str, u8)> = description
        .modes
        .iter()
        .map(|m| (m.name.as_str(), m.config.dice))
        .collect();
    assert_eq!(modes, [("classic", 5), ("quick", 3)]);
}

#[test]
fn actions_are_plain_json() {
    let parse = |json: &str| serde_json::from_str::<Action>(json).unwrap();
    assert_eq!(parse(r#"{"bid":{"count":3,"face":5}}"#), bid(3, 5));
    assert_eq!(parse(r#"{"challenge":true}"#), Action::Challenge(true));
    assert!(serde_json::from_str::<Action>(r#"{"fold":1}"#).is_err());
}
