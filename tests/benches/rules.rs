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

use criterion::{Criterion, criterion_group, criterion_main};
use host::runtime::{Limits, RulesEngine, Transition, decode_reply};
use sdk::Game;
use sdk::testing::Match;
use serde_json::value::{RawValue, to_raw_value};
use std::hint::black_box;
use std::path::PathBuf;
use wizard_battle::{Cast, Config, WizardBattle};

fn module_bytes() -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("rules/wizard-battle.wasm");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask bench`", path.display()))
}

fn bench(c: &mut Criterion) {
    // A round where ann has cast and bob's fireball will resolve it.
    let mut game =
        Match::<WizardBattle>::start(42, &[("ann", 10), ("bob", 10)], Config::default()).unwrap();
    let ann = game.state().game.wizards[0].position;
    game.act("ann", &Cast::at("lightning", 0, 0)).unwrap();
    let state = RawValue::from_string(game.state_json().to_string()).unwrap();
    let action = to_raw_value(&Cast::at("fireball", ann.x, ann.y)).unwrap();

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

criterion_group!(benches, bench);
criterion_main!(benches);
