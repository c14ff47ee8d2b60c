//! A module goes live on baseline code (Winch) and moves to optimised code (Cranelift) while it
//! serves calls; both tiers give the same bytes and enforce the same limits.

use crate::support::{engine, module_bytes, variant, wat_bytes};
use abi::Seat;
use host::runtime::{CallError, RulesEngine, RulesModule, Tier, Transition};
use serde_json::value::RawValue;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.into()).unwrap()
}

fn seats() -> Vec<Seat> {
    vec![Seat::from(("ann", 10)), Seat::from(("bob", 3))]
}

/// A few rounds of wizard battle: every reply, as bytes.
fn play(module: &RulesModule) -> Vec<String> {
    let setup = module.setup(7, &seats(), &raw("null")).unwrap();
    let mut replies = vec![setup.state.get().to_string()];
    let mut state = setup.state;
    for round in 0..4 {
        for (player, spell) in [("ann", "fireball"), ("bob", "lightning")] {
            let action = raw(&format!(
                r#"{{"spell":"{spell}","target":{{"x":{round},"y":{}}}}}"#,
                round + 1
            ));
            // Refusals count too: both tiers must refuse alike.
            match module.action(&state, player, &action) {
                Ok(next) => {
                    replies.push(transition_json(&next));
                    state = next.state;
                }
                Err(refused) => replies.push(refused.to_string()),
            }
        }
        replies.push(module.view(&state, "bob").unwrap().get().to_string());
    }
    replies
}

fn transition_json(transition: &Transition) -> String {
    serde_json::to_string(transition).unwrap()
}

/// Bytes no other test loads, so this test's module starts fresh in the shared engine.
fn fresh_wizard_battle(tag: &str) -> Vec<u8> {
    variant(&module_bytes("rules", "wizard-battle"), tag)
}

#[test]
fn a_quick_load_runs_baseline_code_then_optimised_code_with_the_same_results() {
    let engine = engine();
    let bytes = fresh_wizard_battle("tiers-1");
    let module = engine.load_quickly(&bytes).unwrap();
    assert_eq!(module.tier(), Tier::Baseline);
    let on_baseline = play(&module);

    let held_by_a_match = module.clone();
    module.optimize(&bytes).unwrap();
    assert_eq!(
        held_by_a_match.tier(),
        Tier::Optimized,
        "every handle moves"
    );
    assert_eq!(play(&held_by_a_match), on_baseline);

    // Loading the same bytes again gives the same module, on its optimised code.
    let again = engine.load_quickly(&bytes).unwrap();
    assert!(again.same_code_as(&module));
    assert_eq!(again.tier(), Tier::Optimized);
}

#[test]
fn a_full_load_of_a_quickly_loaded_module_optimises_it() {
    let engine = engine();
    let bytes = fresh_wizard_battle("tiers-2");
    let quick = engine.load_quickly(&bytes).unwrap();
    let full = engine.load(&bytes).unwrap();
    assert!(full.same_code_as(&quick));
    assert_eq!(quick.tier(), Tier::Optimized);
}

#[test]
fn optimised_code_compiled_by_another_engine_is_adopted() {
    let bytes = fresh_wizard_battle("tiers-3");
    let installer = RulesEngine::new(Default::default()).unwrap();
    let (tier, artifact) = installer.load(&bytes).unwrap().artifact().unwrap();
    assert_eq!(tier, Tier::Optimized);

    let follower = engine();
    let module = follower.load_quickly(&bytes).unwrap();
    let on_baseline = play(&module);
    module.adopt_artifact(&artifact).unwrap();
    assert_eq!(module.tier(), Tier::Optimized);
    assert_eq!(play(&module), on_baseline);

    // Baseline code is shared as such, under a build name of its own.
    let other = follower
        .load_quickly(&fresh_wizard_battle("tiers-3b"))
        .unwrap();
    let (tier, artifact) = other.artifact().unwrap();
    assert_eq!(tier, Tier::Baseline);
    assert_ne!(
        follower.artifact_compatibility(Tier::Baseline),
        follower.artifact_compatibility(Tier::Optimized)
    );
    let elsewhere = installer
        .load_artifact(other.sha256(), Tier::Baseline, &artifact)
        .unwrap();
    assert_eq!(elsewhere.tier(), Tier::Baseline);
    assert_eq!(play(&elsewhere), play(&other));
}

#[test]
fn optimising_with_other_bytes_is_refused_and_the_baseline_code_serves_on() {
    let engine = engine();
    let bytes = fresh_wizard_battle("tiers-4");
    let module = engine.load_quickly(&bytes).unwrap();
    let error = module
        .optimize(&fresh_wizard_battle("tiers-4-other"))
        .unwrap_err();
    assert!(
        error.to_string().contains("not the module's own"),
        "{error}"
    );
    assert!(module.adopt_artifact(b"not an artifact").is_err());
    assert_eq!(module.tier(), Tier::Baseline);
    assert_eq!(play(&module).len(), 13);
}

#[test]
fn baseline_code_is_held_to_the_same_time_and_memory_limits() {
    let engine = engine();
    let bytes = variant(&module_bytes("fixtures", "hostile-rules"), "tiers-5");
    let module = engine.load_quickly(&bytes).unwrap();
    assert_eq!(module.tier(), Tier::Baseline);
    let state = module.setup(1, &seats(), &raw("null")).unwrap().state;
    let misdeed = |what: &str| {
        module
            .action(&state, "ann", &raw(&format!("\"{what}\"")))
            .unwrap_err()
    };
    assert!(matches!(misdeed("loop"), CallError::Timeout(_)));
    assert!(matches!(misdeed("bomb"), CallError::MemoryLimit(_)));
    assert!(matches!(misdeed("panic"), CallError::Panicked(_)));
    let next = module.action(&state, "ann", &raw("\"count\"")).unwrap();
    assert_eq!(next.turn, 1, "the module plays on after each failure");
}

#[test]
fn a_module_the_baseline_compiler_cannot_take_loads_on_optimised_code() {
    let module = engine().load_quickly(&wat_bytes("tail_calls")).unwrap();
    assert_eq!(module.tier(), Tier::Optimized);
    let error = module.setup(1, &seats(), &raw("null")).unwrap_err();
    assert!(
        matches!(error, CallError::BadReply(_)),
        "it runs: {error:?}"
    );
}
