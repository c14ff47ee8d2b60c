//! Modules that misbehave: each is a clear error for that one call or load, the state passed in
//! stays usable, and the host goes on serving everything else.

use crate::support::{engine, module_bytes, wat_bytes, wizard_battle};
use abi::Seat;
use host::runtime::{CallError, LoadError, RulesEngine, RulesModule, Transition};
use serde_json::value::RawValue;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap()
}

fn seats() -> Vec<Seat> {
    ["ann", "bob"]
        .map(|id| Seat {
            id: id.into(),
            level: 1,
        })
        .to_vec()
}

fn hostile(engine: &RulesEngine) -> (RulesModule, Box<RawValue>) {
    let module = engine
        .load(&module_bytes("fixtures", "hostile-rules"))
        .expect("the hostile fixture is a valid module");
    let state = module.setup(1, &seats(), &raw("null")).unwrap().state;
    (module, state)
}

fn count(transition: &Transition) -> u64 {
    transition.turn
}

/// The call fails as expected, and the state from before it still plays on, unchanged.
fn survives(misdeed: &str, check: impl Fn(&CallError) -> bool) {
    let engine = engine();
    let (module, state) = hostile(&engine);
    let before = state.get().to_string();
    let error = module
        .action(&state, "ann", &raw(&format!("\"{misdeed}\"")))
        .expect_err("the misdeed fails");
    assert!(check(&error), "{misdeed}: unexpected error {error:?}");
    assert!(!error.to_string().is_empty());
    assert_eq!(state.get(), before, "the state passed in is untouched");
    let next = module.action(&state, "ann", &raw("\"count\"")).unwrap();
    assert_eq!(
        count(&next),
        1,
        "the next call starts from the state before the failure"
    );
    // And the host's other modules are unaffected.
    let battle = wizard_battle(&engine);
    battle.setup(3, &seats(), &raw("null")).unwrap();
}

#[test]
fn an_infinite_loop_is_stopped_at_its_budget() {
    survives("loop", |e| matches!(e, CallError::Timeout(_)));
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    survives("bomb", |e| matches!(e, CallError::MemoryLimit(_)));
}

#[test]
fn a_panic_in_the_middle_of_a_call_is_reported_with_its_message() {
    survives(
        "panic",
        |e| matches!(e, CallError::Panicked(message) if message.contains("panicked on purpose at count 1000")),
    );
}

#[test]
fn a_reply_the_rules_cannot_encode_is_an_error() {
    survives("garbage", |e| matches!(e, CallError::Guest(_)));
}

#[test]
fn other_matches_keep_playing_while_a_module_runs_away() {
    let engine = engine();
    let (module, state) = hostile(&engine);
    let battle = wizard_battle(&engine);
    std::thread::scope(|scope| {
        let runaways: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| module.action(&state, "ann", &raw("\"loop\""))))
            .collect();
        for seed in 0..20 {
            let game = battle.setup(seed, &seats(), &raw("null")).unwrap();
            battle.view(&game.state, "bob").unwrap();
        }
        for runaway in runaways {
            assert!(matches!(
                runaway.join().unwrap(),
                Err(CallError::Timeout(_))
            ));
        }
    });
}

#[test]
fn a_module_for_another_abi_version_is_refused_saying_so() {
    let error = engine().load(&wat_bytes("wrong_version")).err().unwrap();
    assert!(
        matches!(
            error,
            LoadError::AbiVersion {
                found: 2,
                expected: 1
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("version 2"), "{error}");
}

#[test]
fn a_module_missing_an_export_is_refused_naming_it() {
    let error = engine().load(&wat_bytes("missing_export")).err().unwrap();
    assert!(
        matches!(error, LoadError::MissingExport("gamehost_view")),
        "{error:?}"
    );
    assert!(error.to_string().contains("gamehost_view"));

    let error = engine().load(&wat_bytes("wrong_signature")).err().unwrap();
    assert!(
        matches!(
            error,
            LoadError::WrongExport {
                name: "gamehost_view",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_module_that_asks_for_wasi_is_refused() {
    let error = engine().load(&wat_bytes("imports_wasi")).err().unwrap();
    assert!(
        matches!(error, LoadError::ForbiddenImport { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("clock_time_get"));
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let error = engine().load(b"\0asm but not really").err().unwrap();
    assert!(matches!(error, LoadError::Invalid(_)), "{error:?}");
}

#[test]
fn replies_that_are_garbage_are_errors_not_states() {
    let engine = engine();
    let state = raw(r#"{"anything":1}"#);
    for (fixture, needle) in [
        ("garbage_reply", "expected"),
        ("out_of_bounds_reply", "outside"),
        ("huge_reply", "limit"),
    ] {
        let module = engine.load(&wat_bytes(fixture)).expect(fixture);
        let error = module.timeout(&state).expect_err(fixture);
        assert!(
            matches!(&error, CallError::BadReply(m) if m.contains(needle)),
            "{fixture}: {error:?}"
        );
    }
}

#[test]
fn a_state_from_another_game_is_bad_input() {
    let engine = engine();
    let battle = wizard_battle(&engine);
    let (_, hostile_state) = hostile(&engine);
    let error = battle
        .timeout(&hostile_state)
        .expect_err("not a wizard battle");
    assert!(matches!(error, CallError::BadInput(_)), "{error:?}");
}

#[test]
fn loading_the_same_bytes_twice_reuses_the_compiled_module() {
    let engine = engine();
    let first = wizard_battle(&engine);
    let second = wizard_battle(&engine);
    assert_eq!(first.sha256(), second.sha256());
    assert_eq!(first.sha256_hex().len(), 64);
    assert!(first.same_code_as(&second));
}
