//! How fast a round of wizard battle resolves through wasm, natively, and how fast an instance
//! starts. Run with `cargo xtask bench` (builds the modules first).
//!
//! * `round/wasm`: the state in, an instance (reused, as in the server), the action that
//!   resolves the round, the reply decoded back into state, events and views: everything the
//!   host does for one round.
//! * `round/wasm-fresh-instance`: the same call on an instance that has never run, i.e. what a
//!   call costs right after a module loads or after a failed call (creating the instance is not
//!   timed; dropping it is).
//! * `round/native-abi`: the same bytes through the same SDK code compiled natively, so the
//!   ratio of the two is the price of the sandbox.
//! * `round/native-typed`: the rules alone on a typed state, for scale.
//! * `instance/start`: a store and an instance from the pool, ready for a call.
//! * `install/validate`: what a swap waits for before the new version goes live: compiled by
//!   the baseline compiler (Winch), checked, and a trial match played.
//! * `install/optimize`: the optimised code that takes over in the background, compiled by
//!   Cranelift with its incremental cache warm (a new version whose functions are all known).
//! * `round/wasm-baseline`: `round/wasm` on baseline code, for what a match runs in between.
//! * `dice/{wasm,native-abi}-bid` and `dice/{wasm,native-abi}-challenge`: liar's dice, four
//!   players: a bid, and the challenge that ends a round (dice revealed, one lost, all rolled
//!   again), through wasm and through the same SDK code natively.

use criterion::{Criterion, criterion_group, criterion_main};
use host::runtime::{Limits, RulesEngine, Transition, decode_reply};
use sdk::Game;
use sdk::testing::Match;
use serde_json::value::{RawValue, to_raw_value};
use std::hint::black_box;
use std::path::PathBuf;
use wizard_battle::{Cast, Config, WizardBattle};

fn module_bytes() -> Vec<u8> {
    game_bytes("wizard-battle")
}

fn game_bytes(game: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("rules/{game}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask bench`", path.display()))
}

/// A round where ann has cast and bob's fireball will resolve it: the match (natively), its
/// state as JSON, and bob's action.
fn round() -> (Match<WizardBattle>, Box<RawValue>, Box<RawValue>) {
    let mut game =
        Match::<WizardBattle>::start(42, &[("ann", 10), ("bob", 10)], Config::default()).unwrap();
    let ann = game.state().game.wizards[0].position;
    game.act("ann", &Cast::at("lightning", 0, 0)).unwrap();
    let state = RawValue::from_string(game.state_json().to_string()).unwrap();
    let action = to_raw_value(&Cast::at("fireball", ann.x, ann.y)).unwrap();
    (game, state, action)
}

fn bench(c: &mut Criterion) {
    let (game, state, action) = round();

    let engine = RulesEngine::new(Limits::default()).unwrap();
    let module = engine.load(&module_bytes()).unwrap();
    let check = module.action(&state, "bob", &action).unwrap();
    assert_eq!(check.turn, 2, "the benchmarked call resolves the round");

    let mut group = c.benchmark_group("round");
    group.bench_function("wasm", |b| {
        b.iter(|| {
            black_box(
                module
                    .action(black_box(&state), "bob", black_box(&action))
                    .unwrap(),
            )
        })
    });
    let input = serde_json::to_vec(&abi::ActionInput {
        state: &*state,
        player: "bob".to_string(),
        action: &*action,
    })
    .unwrap();
    group.bench_function("wasm-fresh-instance", |b| {
        b.iter_batched(
            || module.instantiate().unwrap(),
            |mut instance| {
                black_box(
                    instance
                        .call(host::runtime::Operation::Action, &input, engine.limits())
                        .unwrap(),
                )
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("native-abi", |b| {
        b.iter(|| {
            let input = serde_json::to_vec(&abi::ActionInput {
                state: black_box(&*state),
                player: "bob".to_string(),
                action: black_box(&*action),
            })
            .unwrap();
            let reply = sdk::dispatch::action::<WizardBattle>(&input);
            black_box(decode_reply::<Transition>(&reply).unwrap())
        })
    });
    let typed = game.state().game;
    let ann = typed.wizards[0].position;
    let cast = Cast::at("fireball", ann.x, ann.y);
    group.bench_function("native-typed", |b| {
        b.iter(|| {
            let mut state = typed.clone();
            let mut rng = sdk::Rng::from_seed(1);
            let mut ctx = sdk::Ctx::new(&mut rng);
            WizardBattle::action(&mut state, "bob", black_box(cast.clone()), &mut ctx).unwrap();
            black_box(state)
        })
    });
    group.finish();

    c.bench_function("instance/start", |b| {
        b.iter(|| black_box(module.instantiate().unwrap()))
    });
}

/// The module as a new version each time (a custom section with a counter appended), so that
/// nothing is reused from an earlier load of the same bytes.
fn new_version(bytes: &[u8], counter: &mut u64) -> Vec<u8> {
    use wasm_encoder::Section;
    *counter += 1;
    let mut out = bytes.to_vec();
    wasm_encoder::CustomSection {
        name: "bench-version".into(),
        data: counter.to_le_bytes().as_slice().into(),
    }
    .append_to(&mut out);
    out
}

fn install(c: &mut Criterion) {
    let bytes = module_bytes();
    let engine = RulesEngine::new(Limits::default()).unwrap();
    let rules = host::rules::Rules::new(engine.clone());
    // Warms the incremental cache, as the running version does on a server.
    engine.load(&bytes).unwrap();
    let mut counter = 0;
    let mut group = c.benchmark_group("install");
    group.sample_size(20);
    group.bench_function("validate", |b| {
        b.iter_batched(
            || new_version(&bytes, &mut counter),
            |version| black_box(rules.validate(&version).unwrap()),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("optimize", |b| {
        b.iter_batched(
            || {
                let version = new_version(&bytes, &mut counter);
                (engine.load_quickly(&version).unwrap(), version)
            },
            |(module, version)| module.optimize(&version).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();

    // One round on baseline code: what a match runs until the optimised code takes over.
    let module = engine
        .load_quickly(&new_version(&bytes, &mut counter))
        .unwrap();
    assert_eq!(module.tier(), host::runtime::Tier::Baseline);
    let (_, state, action) = round();
    c.bench_function("round/wasm-baseline", |b| {
        b.iter(|| {
            black_box(
                module
                    .action(black_box(&state), "bob", black_box(&action))
                    .unwrap(),
            )
        })
    });
}

/// Liar's dice, four players, a few bids into a round: the state, and the next player's bid and
/// challenge.
fn dice_round() -> (Box<RawValue>, String, Box<RawValue>, Box<RawValue>) {
    use liars_dice::{Action, LiarsDice};
    let seats = [("ann", 1), ("bob", 1), ("cy", 1), ("dee", 1)];
    let mut game = Match::<LiarsDice>::start(7, &seats, Default::default()).unwrap();
    let mut rng = sdk::Rng::from_seed(3);
    for _ in 0..3 {
        let state = game.state().game;
        let actor = state.players[state.to_act].id.clone();
        let action = match liars_dice::bot_action(&game.view(&actor), &mut rng) {
            Action::Challenge(_) => break,
            bid => bid,
        };
        game.act(&actor, &action).unwrap();
    }
    let state = game.state().game;
    let actor = state.players[state.to_act].id.clone();
    let bid = liars_dice::bot_action(&game.view(&actor), &mut rng);
    let bid = match bid {
        Action::Bid(_) => bid,
        Action::Challenge(_) => {
            let last = state.bid.clone().expect("a bid to beat").bid;
            Action::Bid(liars_dice::Bid {
                count: last.count + 1,
                face: last.face,
            })
        }
    };
    (
        RawValue::from_string(game.state_json().to_string()).unwrap(),
        actor,
        to_raw_value(&bid).unwrap(),
        to_raw_value(&Action::Challenge(true)).unwrap(),
    )
}

fn dice(c: &mut Criterion) {
    let (state, actor, bid, challenge) = dice_round();
    let engine = RulesEngine::new(Limits::default()).unwrap();
    let module = engine.load(&game_bytes("liars-dice")).unwrap();
    let ended = module.action(&state, &actor, &challenge).unwrap();
    assert!(ended.turn > 0, "the challenge is played");
    module.action(&state, &actor, &bid).unwrap();
    let mut group = c.benchmark_group("dice");
    for (name, action) in [("bid", &bid), ("challenge", &challenge)] {
        group.bench_function(format!("wasm-{name}"), |b| {
            b.iter(|| {
                black_box(
                    module
                        .action(black_box(&state), &actor, black_box(action))
                        .unwrap(),
                )
            })
        });
        group.bench_function(format!("native-abi-{name}"), |b| {
            b.iter(|| {
                let input = serde_json::to_vec(&abi::ActionInput {
                    state: black_box(&*state),
                    player: actor.clone(),
                    action: black_box(&**action),
                })
                .unwrap();
                let reply = sdk::dispatch::action::<liars_dice::LiarsDice>(&input);
                black_box(decode_reply::<Transition>(&reply).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, install, dice);
criterion_main!(benches);
