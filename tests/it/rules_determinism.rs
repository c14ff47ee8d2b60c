//! Whole matches played natively and through wasm, on optimised and on baseline code, give
//! byte-identical replies.

use crate::support::{engine, module_bytes, variant, wizard_battle};
use abi::Seat;
use host::runtime::{Operation, RulesModule, Tier, Transition, decode_reply};
use liars_dice::LiarsDice;
use sdk::Game;
use sdk::testing::Match;
use serde_json::value::{RawValue, to_raw_value};
use wizard_battle::{Class, Config, WizardBattle};

/// The same match, run natively by the SDK's harness and through the wasm module, side by side.
struct Twin<G: Game> {
    native: Match<G>,
    module: RulesModule,
    wasm_state: Box<RawValue>,
}

impl<G: Game> Twin<G>
where
    G::Config: Clone,
{
    fn start(module: RulesModule, seed: u64, players: &[(&str, i64)], config: G::Config) -> Self {
        let native = Match::<G>::start(seed, players, config.clone()).unwrap();
        let seats: Vec<Seat> = players.iter().copied().map(Seat::from).collect();
        let input = abi::SetupInput {
            seed,
            players: seats,
            config,
        };
        let reply = module
            .call_raw(Operation::Setup, &serde_json::to_vec(&input).unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(native.last_reply()),
            "setup differs"
        );
        let wasm_state = decode_reply::<Transition>(&reply).unwrap().state;
        Twin {
            native,
            module,
            wasm_state,
        }
    }

    /// Runs one operation on both sides and checks the replies are the same bytes.
    fn both(&mut self, operation: Operation, player: &str, action: &RawValue) -> bool {
        let state = &*self.wasm_state;
        let input = match operation {
            Operation::Action => serde_json::to_vec(&abi::ActionInput {
                state,
                player: player.to_string(),
                action,
            }),
            Operation::Timeout => serde_json::to_vec(&abi::TimeoutInput { state }),
            Operation::Leave => serde_json::to_vec(&abi::LeaveInput {
                state,
                player: player.to_string(),
            }),
            _ => unreachable!(),
        }
        .unwrap();
        let native_ok = match operation {
            Operation::Action => self.native.act_json(player, action).is_ok(),
            Operation::Timeout => {
                self.native.timeout();
                true
            }
            _ => self.native.leave(player).is_ok(),
        };
        let reply = self.module.call_raw(operation, &input).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(self.native.last_reply()),
            "{operation:?} by {player} differs"
        );
        if let Ok(transition) = decode_reply::<Transition>(&reply) {
            self.wasm_state = transition.state;
        }
        assert_eq!(self.wasm_state.get(), self.native.state_json());
        native_ok
    }

    /// Asks the game's bot in seat `player` on both sides, from that seat's view (each side's
    /// own), and checks the replies are the same bytes; returns its action.
    fn bot(&self, player: &str, seed: u64) -> Option<Box<RawValue>>
    where
        G: sdk::Bot,
        G::View: serde::de::DeserializeOwned,
        G::Action: serde::Serialize,
    {
        let native_view = self.native.view_reply(player).unwrap();
        let native_view = decode_reply::<Box<RawValue>>(&native_view).unwrap();
        let wasm_view = self.module.view(&self.wasm_state, player).unwrap();
        assert_eq!(
            native_view.get(),
            wasm_view.get(),
            "{player}'s view differs"
        );
        let input = serde_json::to_vec(&abi::BotInput {
            view: &*wasm_view,
            player: player.to_string(),
            seed,
        })
        .unwrap();
        let native = sdk::dispatch::bot::<G>(&input);
        let wasm = self.module.call_raw(Operation::Bot, &input).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&wasm),
            String::from_utf8_lossy(&native),
            "{player}'s bot differs"
        );
        let action: Box<RawValue> = decode_reply(&wasm).unwrap();
        (action.get() != "null").then_some(action)
    }
}

const MAGE_SPELLS: [&str; 5] = ["lightning", "fireball", "teleport", "heal", "laser"];
const WARRIOR_SPELLS: [&str; 4] = ["rockThrow", "spin", "food", "dash"];

/// A deterministic, varied player: aims at the opponent's true cell on some rounds, at a cell
/// derived from the round on others, and now and then sends nonsense.
fn choose(game: &Match<WizardBattle>, me: &str, round: u64, seed: u64) -> Box<RawValue> {
    let state = game.state().game;
    let size = state.map.len() as u64;
    let index = state.wizards.iter().position(|w| w.id == me).unwrap() as u64;
    let wizard = &state.wizards[index as usize];
    let mix = round * 31 + index * 17 + seed;
    if mix.is_multiple_of(13) {
        return RawValue::from_string(r#"{"spell":"meteor","target":{"x":1,"y":1}}"#.into())
            .unwrap();
    }
    let spells: &[&str] = match wizard.class {
        Class::Mage => &MAGE_SPELLS,
        Class::Warrior => &WARRIOR_SPELLS,
    };
    let spell = spells[(mix % spells.len() as u64) as usize];
    let opponent = state
        .wizards
        .iter()
        .find(|w| w.id != me && w.hp > 0 && !w.left);
    let target = match opponent {
        Some(o) if !mix.is_multiple_of(3) => o.position,
        _ => wizard_battle::Cell {
            x: ((round * 3 + index * 5 + seed) % size) as i64,
            y: ((round * 7 + index) % size) as i64,
        },
    };
    to_raw_value(&serde_json::json!({ "spell": spell, "target": target })).unwrap()
}

#[test]
fn whole_matches_through_wasm_match_the_native_run_byte_for_byte() {
    let module = wizard_battle(&engine());
    assert_eq!(module.tier(), Tier::Optimized);
    plays_like_native(&module);
}

/// What a match runs in the moments after a swap, before the optimised code takes over.
#[test]
fn whole_matches_on_baseline_code_match_the_native_run_byte_for_byte() {
    let bytes = variant(
        &module_bytes("rules", "wizard-battle"),
        "determinism-baseline",
    );
    let module = engine().load_quickly(&bytes).unwrap();
    assert_eq!(module.tier(), Tier::Baseline);
    plays_like_native(&module);
}

fn plays_like_native(module: &RulesModule) {
    let nothing = RawValue::from_string("null".into()).unwrap();
    let (mut finished, mut refusals) = (0, 0);
    for seed in 0..12u64 {
        let three = seed % 3 == 0;
        let players: Vec<(&str, i64)> = if three {
            vec![("p0", 10), ("p1", 5), ("p2", 3)]
        } else {
            vec![("p0", 10), ("p1", 2 + seed as i64)]
        };
        let mut config = Config::default();
        if seed % 2 == 1 {
            config.characters.insert("p1".into(), Class::Warrior);
        }
        let mut twin = Twin::<WizardBattle>::start(module.clone(), seed, &players, config);
        let mut round = 0;
        while twin.native.outcome().is_none() && round < 100 {
            round += 1;
            if seed % 4 == 2 && round == 8 {
                let last = players.last().unwrap().0;
                assert!(twin.both(Operation::Leave, last, &nothing));
                continue;
            }
            for &(player, _) in &players {
                if round % 5 == 0 && player != "p0" {
                    continue; // let the timeout resolve this round
                }
                let action = choose(&twin.native, player, round, seed);
                if !twin.both(Operation::Action, player, &action) {
                    refusals += 1;
                }
                if twin.native.outcome().is_some() {
                    break;
                }
            }
            if round % 5 == 0 && twin.native.outcome().is_none() {
                twin.both(Operation::Timeout, "", &nothing);
            }
        }
        assert!(twin.native.outcome().is_some(), "seed {seed} never ended");
        for &(player, _) in &players {
            let input = abi::ViewInput {
                state: &*twin.wasm_state,
                player: player.to_string(),
            };
            let reply = module
                .call_raw(Operation::View, &serde_json::to_vec(&input).unwrap())
                .unwrap();
            assert_eq!(
                reply,
                twin.native.view_reply(player).unwrap(),
                "{player}'s final view"
            );
        }
        finished += 1;
    }
    assert_eq!(finished, 12, "every match was played to its end");
    assert!(refusals > 0, "refusals were compared too");
}

/// Liar's dice, a game of turns and hidden dice: whole matches of 2 to 6 players, its bot
/// playing every seat, with timeouts, departures and refused moves along the way.
#[test]
fn whole_liars_dice_matches_through_wasm_match_the_native_run_byte_for_byte() {
    let module = engine()
        .load(&module_bytes("rules", "liars-dice"))
        .expect("liars-dice loads");
    let nothing = RawValue::from_string("null".into()).unwrap();
    let seats: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    let mut refusals = 0;
    for seed in 0..10u64 {
        let players: Vec<(&str, i64)> = seats[..2 + (seed % 5) as usize]
            .iter()
            .map(|id| (id.as_str(), 1))
            .collect();
        let mut twin = Twin::<LiarsDice>::start(module.clone(), seed, &players, Default::default());
        let mut moves = 0;
        while twin.native.outcome().is_none() {
            moves += 1;
            assert!(moves < 2_000, "seed {seed} never ended");
            let state = twin.native.state().game;
            let actor = state.players[state.to_act].id.clone();
            if moves % 17 == 0 {
                twin.both(Operation::Timeout, "", &nothing);
                continue;
            }
            if seed % 3 == 1 && moves == 25 && players.len() > 2 {
                assert!(twin.both(Operation::Leave, &actor, &nothing));
                continue;
            }
            // Out of turn, now and then: refused alike on both sides.
            if moves % 7 == 0 {
                let other = players.iter().find(|(id, _)| *id != actor).unwrap().0;
                let bid =
                    to_raw_value(&serde_json::json!({"bid": {"count": 1, "face": 1}})).unwrap();
                if !twin.both(Operation::Action, other, &bid) {
                    refusals += 1;
                }
                continue;
            }
            // Every seat's bot is asked; only the one to act answers.
            let seed = seed * 10_000 + moves;
            for (seat, _) in players.iter().filter(|(id, _)| *id != actor) {
                assert!(twin.bot(seat, seed).is_none(), "{seat} out of turn");
            }
            let action = twin.bot(&actor, seed).expect("the bot to act acts");
            assert!(
                twin.both(Operation::Action, &actor, &action),
                "the bot's move"
            );
        }
    }
    assert!(refusals > 0, "refusals were compared too");
}

/// Wizard battle's bot in every seat, asked and answered alike on both sides, round after round
/// to the end of each match.
#[test]
fn wizard_battles_between_bots_through_wasm_match_the_native_run_byte_for_byte() {
    let module = wizard_battle(&engine());
    for seed in 0..6u64 {
        let players = [("p0", 10), ("p1", 5), ("p2", 1)];
        let mut twin =
            Twin::<WizardBattle>::start(module.clone(), seed, &players, Config::default());
        let mut round = 0;
        while twin.native.outcome().is_none() {
            round += 1;
            assert!(round < 500, "seed {seed} never ended");
            for (seat, _) in players {
                if twin.native.outcome().is_some() {
                    break;
                }
                if let Some(action) = twin.bot(seat, seed * 1_000 + round) {
                    assert!(twin.both(Operation::Action, seat, &action), "{seat}'s cast");
                }
            }
        }
        for (seat, _) in players {
            assert!(twin.bot(seat, 0).is_none(), "{seat} acts after the end");
        }
    }
}
