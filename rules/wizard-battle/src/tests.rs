use super::*;
use crate::round::blast;
use sdk::testing::{Match, Step};
use serde_json::value::RawValue;

type Battle = Match<WizardBattle>;

fn all_valley(size: usize) -> Vec<String> {
    vec!["V".repeat(size); size]
}

fn config_with(characters: &[(&str, Class)]) -> Config {
    Config {
        map: Some(all_valley(8)),
        characters: characters
            .iter()
            .map(|(id, class)| (id.to_string(), *class))
            .collect(),
        ..Config::default()
    }
}

/// Two mages, "ann" and "bob", on an open 8x8 map.
fn duel(levels: (i64, i64)) -> Battle {
    Battle::start(7, &[("ann", levels.0), ("bob", levels.1)], config_with(&[])).unwrap()
}

fn wizard(game: &Battle, id: &str) -> Wizard {
    game.state().game.wizard(id).unwrap().clone()
}

fn position(game: &Battle, id: &str) -> Cell {
    wizard(game, id).position
}

/// A valley cell far (more than 2) from every wizard, to aim harmlessly at.
fn empty_cell(game: &Battle) -> Cell {
    let state = game.state().game;
    cells(state.map.len())
        .find(|&c| {
            state.tile(c) == Some(Tile::Valley)
                && state.wizards.iter().all(|w| w.position.distance(c) > 2)
                && state
                    .wizards
                    .iter()
                    .all(|w| w.position.x != c.x && w.position.y != c.y)
        })
        .expect("an 8x8 map has a far cell")
}

fn cast_at(spell: &str, cell: Cell) -> Cast {
    Cast::at(spell, cell.x, cell.y)
}

fn rejected(game: &mut Battle, player: &str, cast: &Cast) -> String {
    let before = game.state_json().to_string();
    let rejection = game
        .act(player, cast)
        .expect_err("the cast must be refused");
    assert_eq!(game.state_json(), before, "a refusal changes nothing");
    assert!(!rejection.reason.is_empty());
    rejection.code
}

fn round_events(step: &Step) -> Vec<&serde_json::Value> {
    step.events
        .iter()
        .filter(|e| e.event["type"] == "roundResolved")
        .map(|e| &e.event)
        .collect()
}

#[test]
fn the_map_comes_from_the_seed() {
    let players = [("ann", 1), ("bob", 1)];
    let map = |seed| {
        Battle::start(seed, &players, Config::default())
            .unwrap()
            .state()
            .game
            .map
    };
    assert_eq!(map(1), map(1));
    assert_ne!(map(1), map(2));
    let generated = map(3);
    assert_eq!(generated.len(), DEFAULT_SIZE);
    assert!(generated.iter().all(|row| row.len() == DEFAULT_SIZE));
    let tiles: String = generated.concat();
    assert!(
        tiles.contains('V') && tiles.contains('R'),
        "both kinds of tile appear: {tiles}"
    );

    let game = Battle::start(3, &players, Config::default()).unwrap();
    let state = game.state().game;
    let (a, b) = (position(&game, "ann"), position(&game, "bob"));
    assert_ne!(a, b);
    assert_eq!(state.tile(a), Some(Tile::Valley));
    assert_eq!(state.tile(b), Some(Tile::Valley));
}

#[test]
fn setup_refuses_what_it_cannot_play() {
    let code = |players: &[(&str, i64)], config: Config| {
        Battle::start(1, players, config).err().map(|r| r.code)
    };
    assert_eq!(
        code(&[("ann", 1)], Config::default()).as_deref(),
        Some("not_enough_players")
    );
    assert_eq!(
        code(&[("ann", 1), ("ann", 1)], Config::default()).as_deref(),
        Some("duplicate_player")
    );
    assert_eq!(
        code(
            &[("ann", 1), ("bob", 1)],
            config_with(&[("bob", Class::Warrior)])
        )
        .as_deref(),
        Some("level_too_low"),
        "a warrior needs level 2"
    );
    assert_eq!(
        code(
            &[("ann", 1), ("bob", 2)],
            config_with(&[("eve", Class::Warrior)])
        )
        .as_deref(),
        Some("invalid_config")
    );
    let tiny = Config {
        size: Some(2),
        ..Config::default()
    };
    assert_eq!(
        code(&[("ann", 1), ("bob", 1)], tiny).as_deref(),
        Some("invalid_config")
    );
    let ragged = Config {
        map: Some(vec![
            "VVVV".into(),
            "VV".into(),
            "VVVV".into(),
            "VVVV".into(),
        ]),
        ..Config::default()
    };
    assert_eq!(
        code(&[("ann", 1), ("bob", 1)], ragged).as_deref(),
        Some("invalid_config")
    );
    let rocky = Config {
        map: Some(vec!["RRRR".into(); 4]),
        ..Config::default()
    };
    assert_eq!(
        code(&[("ann", 1), ("bob", 1)], rocky).as_deref(),
        Some("invalid_config")
    );

    let warrior = Battle::start(
        1,
        &[("ann", 1), ("bob", 2)],
        config_with(&[("bob", Class::Warrior)]),
    )
    .unwrap();
    assert_eq!(wizard(&warrior, "bob").hp, 300);
    assert_eq!(wizard(&warrior, "ann").hp, 100);
}

#[test]
fn a_view_never_reveals_an_opponents_position() {
    let mut game = duel((1, 1));
    let far = empty_cell(&game);
    let step = game.act("ann", &cast_at("teleport", far)).unwrap();
    let bob_view = serde_json::to_value(game.view("bob")).unwrap();
    assert_eq!(bob_view["you"]["id"], "bob");
    assert_eq!(bob_view["opponents"][0]["id"], "ann");
    assert_eq!(bob_view["opponents"][0]["submitted"], true);
    assert!(bob_view["opponents"][0].get("position").is_none());
    // The views the transition carries, and every event bob receives, hold no trace of ann's cell.
    let ann_cell = serde_json::to_string(&position(&game, "ann")).unwrap();
    let pending = serde_json::to_string(&far).unwrap();
    for seen in std::iter::once(step.view_of("bob")).chain(step.events_for("bob")) {
        let text = seen.to_string();
        assert!(
            !text.contains(&ann_cell) && !text.contains(&pending),
            "leaked in {text}"
        );
    }
}

#[test]
fn every_invalid_action_is_refused_with_a_reason_and_changes_nothing() {
    let mut game = duel((1, 1));
    let far = empty_cell(&game);
    let bad = |game: &mut Battle, player: &str, json: &str| {
        let before = game.state_json().to_string();
        let action = RawValue::from_string(json.to_string()).unwrap();
        let code = game.act_json(player, &action).unwrap_err().code;
        assert_eq!(game.state_json(), before);
        code
    };

    assert_eq!(
        rejected(&mut game, "ann", &Cast::untargeted("meteor")),
        "unknown_spell"
    );
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("fireball", Cell { x: 8, y: 0 })),
        "off_map"
    );
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("fireball", Cell { x: -1, y: 3 })),
        "off_map"
    );
    assert_eq!(
        rejected(&mut game, "ann", &Cast::untargeted("heal")),
        "level_too_low"
    );
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("laser", far)),
        "level_too_low"
    );
    assert_eq!(
        rejected(&mut game, "ann", &Cast::untargeted("spin")),
        "not_your_spell"
    );
    assert_eq!(
        rejected(&mut game, "ann", &Cast::untargeted("fireball")),
        "missing_target"
    );
    assert_eq!(
        rejected(&mut game, "eve", &cast_at("fireball", far)),
        "not_in_match"
    );
    assert_eq!(bad(&mut game, "ann", r#"{"spell": 3}"#), "invalid_action");
    assert_eq!(
        bad(
            &mut game,
            "ann",
            r#"{"spell": "fireball", "target": "here"}"#
        ),
        "invalid_action"
    );
    assert_eq!(
        bad(&mut game, "ann", r#"{"spell": "fireball", "extra": 1}"#),
        "invalid_action"
    );
    assert_eq!(bad(&mut game, "ann", "null"), "invalid_action");

    game.act("ann", &cast_at("fireball", far)).unwrap();
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("lightning", far)),
        "already_submitted"
    );
    game.act("bob", &cast_at("fireball", far)).unwrap();

    assert_eq!(game.turn(), 2);
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("fireball", far)),
        "on_cooldown"
    );
}

#[test]
fn moves_are_checked_against_the_map() {
    let mut rows = all_valley(8);
    rows[0] = "RWVVVVVV".into();
    let config = Config {
        map: Some(rows),
        ..config_with(&[("bob", Class::Warrior)])
    };
    let mut game = Battle::start(11, &[("ann", 1), ("bob", 2)], config).unwrap();
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("teleport", Cell { x: 0, y: 0 })),
        "blocked_cell"
    );
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("teleport", Cell { x: 1, y: 0 })),
        "blocked_cell"
    );

    let bob = position(&game, "bob");
    let too_far = cells(8)
        .find(|c| {
            c.distance(bob) == DASH_RANGE + 1 && game.state().game.tile(*c) == Some(Tile::Valley)
        })
        .unwrap();
    assert_eq!(
        rejected(&mut game, "bob", &cast_at("dash", too_far)),
        "out_of_range"
    );
    let off_line = cells(8)
        .find(|c| line_direction(bob, *c).is_none())
        .unwrap();
    assert_eq!(
        rejected(&mut game, "bob", &cast_at("rockThrow", off_line)),
        "not_in_line"
    );
    assert_eq!(
        rejected(&mut game, "bob", &cast_at("rockThrow", bob)),
        "not_in_line"
    );
    assert_eq!(
        rejected(&mut game, "bob", &Cast::untargeted("heal")),
        "not_your_spell"
    );
}

#[test]
fn cooldowns_are_enforced_and_wear_off() {
    let mut game = duel((1, 1));
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", far)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    let view = game.view("ann");
    assert_eq!(view.you.spells[&Spell::Fireball], 1);
    assert_eq!(view.you.spells[&Spell::Lightning], 0);
    assert!(
        !view.you.spells.contains_key(&Spell::Heal),
        "level 1 does not allow heal"
    );
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("fireball", far)),
        "on_cooldown"
    );
    game.act("ann", &cast_at("lightning", far)).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(game.turn(), 3);
    game.act("ann", &cast_at("fireball", far))
        .expect("ready again two rounds later");
}

#[test]
fn a_spell_hits_its_target_and_never_its_caster() {
    let mut game = duel((1, 1));
    let ann = position(&game, "ann");
    let bob = position(&game, "bob");
    // ann throws a fireball at her own feet; bob strikes lightning where ann stands.
    game.act("ann", &cast_at("fireball", ann)).unwrap();
    let step = game.act("bob", &cast_at("lightning", ann)).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 0, "lightning hits exactly");
    let expected_bob = 100 - blast(ann, bob);
    assert_eq!(
        wizard(&game, "bob").hp,
        expected_bob,
        "only the blast's distance counts"
    );
    let effects = &round_events(&step)[0]["effects"];
    assert!(
        effects
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["target"] != e["caster"])
    );
    assert_eq!(step.outcome.as_ref().unwrap().winners, ["bob"]);
}

#[test]
fn damage_follows_the_tables() {
    let mut game = duel((1, 1));
    let bob = position(&game, "bob");
    let near = cells(8).find(|c| c.distance(bob) == 1).unwrap();
    let further = cells(8).find(|c| c.distance(bob) == 2).unwrap();
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", near)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    assert_eq!(wizard(&game, "bob").hp, 70);
    game.act("ann", &cast_at("lightning", near)).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(
        wizard(&game, "bob").hp,
        70,
        "lightning only hits the exact cell"
    );
    game.act("ann", &cast_at("fireball", further)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    assert_eq!(wizard(&game, "bob").hp, 55);
    assert!(
        wizard(&game, "bob").poison.is_none(),
        "only a direct hit poisons"
    );
}

#[test]
fn poison_ticks_three_rounds_then_wears_off() {
    let mut game = duel((1, 1));
    let bob = position(&game, "bob");
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", bob)).unwrap();
    game.act("bob", &cast_at("teleport", far)).unwrap();
    // bob moved away before the blast landed: moves resolve first.
    assert_eq!(wizard(&game, "bob").hp, 100);

    let bob = position(&game, "bob");
    game.act("ann", &cast_at("lightning", empty_cell(&game)))
        .unwrap();
    game.act("bob", &cast_at("fireball", empty_cell(&game)))
        .unwrap();
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", bob)).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(wizard(&game, "bob").hp, 50);
    assert_eq!(
        wizard(&game, "bob").poison,
        Some(Poison {
            damage: 10,
            rounds_left: 3
        })
    );
    let mut hp = 50;
    for round in 0..4 {
        // Harmless rounds: stay put, or strike an empty cell.
        for player in ["ann", "bob"] {
            let cast = if round % 2 == 0 {
                cast_at("teleport", position(&game, player))
            } else {
                cast_at("lightning", empty_cell(&game))
            };
            game.act(player, &cast).unwrap();
        }
        if round < 3 {
            hp -= 10;
        }
        assert_eq!(wizard(&game, "bob").hp, hp, "after poison round {round}");
    }
    assert_eq!(wizard(&game, "bob").poison, None);
    assert_eq!(hp, 20);
}

#[test]
fn healing_never_passes_the_maximum() {
    let mut game = duel((5, 1));
    let ann = position(&game, "ann");
    let near = cells(8).find(|c| c.distance(ann) == 2).unwrap();
    let far = empty_cell(&game);
    game.act("ann", &Cast::untargeted("heal")).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 100, "a full wizard stays at 100");
    game.act("ann", &cast_at("teleport", ann)).unwrap();
    game.act("bob", &cast_at("fireball", near)).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 85);
    game.act("ann", &Cast::untargeted("heal")).unwrap();
    let step = game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 100, "85 + 30 is capped at 100");
    let heal = round_events(&step)[0]["effects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["spell"] == "heal")
        .unwrap()
        .clone();
    assert_eq!(heal["change"], 15, "the report says what was really healed");
}

#[test]
fn warriors_have_their_own_spells() {
    let config = config_with(&[("bob", Class::Warrior)]);
    let mut game = Battle::start(5, &[("ann", 1), ("bob", 3)], config).unwrap();
    let bob = position(&game, "bob");
    // Stand ann on bob's row, then throw a rock along it.
    let beside = Cell {
        x: if bob.x > 0 { bob.x - 1 } else { bob.x + 1 },
        y: bob.y,
    };
    let far = empty_cell(&game);
    game.act("ann", &cast_at("teleport", beside)).unwrap();
    game.act("bob", &Cast::untargeted("food")).unwrap();
    assert_eq!(wizard(&game, "bob").hp, 300);
    let beyond = Cell {
        x: beside.x + (beside.x - bob.x),
        y: beside.y,
    };
    let target = if game.state().game.tile(beyond).is_some() {
        beyond
    } else {
        beside
    };
    game.act("ann", &cast_at("lightning", far)).unwrap();
    game.act("bob", &cast_at("rockThrow", target)).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 65);
    game.act("ann", &cast_at("fireball", far)).unwrap();
    game.act("bob", &Cast::untargeted("spin")).unwrap();
    assert_eq!(wizard(&game, "ann").hp, 35, "spin: 30 at distance 1");
    assert_eq!(wizard(&game, "bob").hp, 300, "spin spares the warrior");
}

#[test]
fn a_round_waits_for_every_living_player_and_a_timeout_resolves_it() {
    let players = [("ann", 1), ("bob", 1), ("cat", 1)];
    let mut game = Battle::start(9, &players, config_with(&[])).unwrap();
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", far)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    assert_eq!(game.turn(), 1, "cat has not cast yet");

    let step = game.timeout();
    assert_eq!(game.turn(), 2);
    let casts = &round_events(&step)[0]["casts"];
    assert_eq!(
        casts.as_array().unwrap().len(),
        2,
        "resolved with what was submitted"
    );

    // Kill cat; the next round then needs only ann and bob.
    let cat = position(&game, "cat");
    game.act("ann", &cast_at("lightning", cat)).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    game.act("cat", &cast_at("lightning", far)).unwrap();
    assert!(!wizard(&game, "cat").alive());
    assert_eq!(
        rejected(&mut game, "cat", &cast_at("fireball", far)),
        "dead"
    );
    assert!(game.outcome().is_none());
    game.act("ann", &cast_at("fireball", far)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    assert_eq!(game.turn(), 4, "the dead are not waited for");
}

#[test]
fn a_whole_game_to_a_win() {
    let mut game = duel((1, 1));
    // A direct fireball (50 and poison), then lightning on the same cell: bob stays put.
    let bob = position(&game, "bob");
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", bob)).unwrap();
    game.act("bob", &cast_at("lightning", far)).unwrap();
    assert_eq!(wizard(&game, "bob").hp, 50);
    assert!(game.outcome().is_none());
    game.act("ann", &cast_at("lightning", bob)).unwrap();
    let step = game.act("bob", &cast_at("teleport", bob)).unwrap();
    assert_eq!(step.outcome.as_ref().unwrap().winners, ["ann"]);
    assert_eq!(
        step.events.last().unwrap().event["type"],
        "roundResolved",
        "no game-over event of its own: the host's gameOver tells it"
    );
    assert_eq!(game.outcome().unwrap().winners, ["ann"]);
    assert_eq!(game.view("bob").winners, Some(vec!["ann".to_string()]));
    assert_eq!(
        rejected(&mut game, "ann", &cast_at("fireball", Cell { x: 0, y: 0 })),
        "game_over"
    );
    let before = game.state_json().to_string();
    game.timeout();
    assert_eq!(
        game.state_json(),
        before,
        "a finished game ignores timeouts"
    );
}

#[test]
fn a_whole_game_to_a_draw() {
    let mut game = duel((1, 1));
    let ann = position(&game, "ann");
    let bob = position(&game, "bob");
    game.act("ann", &cast_at("lightning", bob)).unwrap();
    let step = game.act("bob", &cast_at("lightning", ann)).unwrap();
    assert_eq!(step.outcome.clone().unwrap().winners, Vec::<String>::new());
    assert!(step.events.iter().all(|e| e.event["type"] != "gameOver"));
    assert_eq!(
        round_events(&step)[0]["fallen"],
        serde_json::json!(["ann", "bob"])
    );
}

#[test]
fn leaving_hands_the_win_to_the_last_one_standing() {
    let mut game = duel((1, 1));
    let step = game.leave("bob").unwrap();
    assert_eq!(step.outcome.unwrap().winners, ["ann"]);
    assert_eq!(game.leave("eve").unwrap_err().code, "not_in_match");

    let players = [("ann", 1), ("bob", 1), ("cat", 1)];
    let mut game = Battle::start(9, &players, config_with(&[])).unwrap();
    let far = empty_cell(&game);
    game.act("ann", &cast_at("fireball", far)).unwrap();
    game.act("bob", &cast_at("fireball", far)).unwrap();
    game.leave("cat").unwrap();
    assert_eq!(game.turn(), 2, "the leaver was the one being waited for");
    assert!(game.outcome().is_none());
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let play = || {
        let mut game = Battle::start(99, &[("ann", 10), ("bob", 10)], Config::default()).unwrap();
        let mut replies = Vec::new();
        for round in 0..6 {
            let target = Cast::at(
                if round % 2 == 0 { "fireball" } else { "laser" },
                round,
                round,
            );
            for player in ["ann", "bob"] {
                replies.push(
                    game.act(player, &target)
                        .map(|s| s.reply)
                        .map_err(|r| r.code),
                );
            }
        }
        (replies, game.state_json().to_string())
    };
    assert_eq!(play(), play());
}

#[test]
fn a_match_of_the_first_revision_carries_over_and_a_later_one_does_not() {
    let game = duel((1, 1));
    let mut old = serde_json::to_value(game.state().game).unwrap();
    // Revision 1 wrote no `revision` field.
    old.as_object_mut().unwrap().remove("revision");
    let migrated = WizardBattle::migrate(old.clone()).expect("revision 1 carries over");
    assert_eq!(migrated.revision, REVISION);
    assert_eq!(
        migrated.wizards,
        game.state().game.wizards,
        "nothing else changes"
    );
    assert_eq!(migrated.map, game.state().game.map);

    // Through the ABI, with the players and RNG around it, as the host calls it.
    let stored = serde_json::json!({ "players": game.state().players, "rng": game.state().rng, "game": old });
    let input = serde_json::to_vec(&sdk::abi::MigrateInput { state: stored }).unwrap();
    let reply: sdk::abi::Reply<
        sdk::abi::Transition<serde_json::Value, serde_json::Value, serde_json::Value>,
    > = serde_json::from_slice(&sdk::dispatch::migrate::<WizardBattle>(&input)).unwrap();
    let transition = reply.expect("migrated");
    assert_eq!(transition.state["game"]["revision"], REVISION);
    assert_eq!(
        transition.views.len(),
        2,
        "each player gets its view of the carried-over match"
    );
    assert!(transition.events.is_empty());

    // A state written by a later revision (after a rollback) is not guessed at.
    let mut newer = serde_json::to_value(game.state().game).unwrap();
    newer["revision"] = serde_json::json!(REVISION + 1);
    assert!(WizardBattle::migrate(newer).is_none());
    assert!(WizardBattle::migrate(serde_json::json!({ "not": "a wizard battle" })).is_none());
}

#[test]
fn wizard_battle_describes_itself_with_the_defaults() {
    let description = sdk::dispatch::description::<WizardBattle>("wizard-battle");
    assert_eq!(
        serde_json::to_value(&description).unwrap(),
        serde_json::json!({
            "name": "wizard-battle",
            "players": {"min": 2, "max": 2},
            "modes": [{"name": "default", "config": {"size": null, "map": null, "characters": {}}}],
        })
    );
}
