//! Fuzz targets of the boundary with rules modules, both ways:
//!
//! * `sdk_input`: the SDK's decoding of what the host sends (every operation of both bundled
//!   games, natively): any bytes, any JSON, valid inputs with one field replaced by anything
//!   and valid inputs with damaged bytes. Each gets a reply that is a well-formed `Reply`
//!   (a refusal or `BadInput` for nonsense), never a panic.
//! * `wasm_input`: the same inputs through the built wasm module and the host's runtime: the
//!   call completes with a readable reply; the module never traps on its input.
//! * `host_reply`: the host's decoding of module replies (transitions, views, bot actions,
//!   descriptions): damaged real replies and any JSON are an error for that call, never a panic.

use crate::fuzz_support::{Mutation, config, corpus, json, mutate, mutations, tweak};
use abi::Reply;
use host::runtime::{CallError, Operation, RulesModule, decode_reply};
use proptest::prelude::*;
use sdk::testing::Match;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// One operation's export, called natively.
type Export = fn(&[u8]) -> Vec<u8>;

/// The operations of a game `G`, natively, by the host's name for them.
fn exports<G: sdk::Bot>() -> Vec<(Operation, Export)>
where
    G::Action: serde::Serialize,
    G::View: serde::de::DeserializeOwned,
{
    vec![
        (Operation::Setup, sdk::dispatch::setup::<G>),
        (Operation::Action, sdk::dispatch::action::<G>),
        (Operation::Timeout, sdk::dispatch::timeout::<G>),
        (Operation::Leave, sdk::dispatch::leave::<G>),
        (Operation::View, sdk::dispatch::view::<G>),
        (Operation::Migrate, sdk::dispatch::migrate::<G>),
        (Operation::Bot, sdk::dispatch::bot::<G>),
    ]
}

/// Valid inputs of every operation, from a match of `G` a few moves in, as `(operation, JSON)`.
fn valid_inputs<G: sdk::Game>(
    config: G::Config,
    actions: &[(&str, Value)],
) -> Vec<(Operation, Value)>
where
    G::Config: serde::Serialize,
    G::Action: serde::Serialize,
{
    let seats = [("ann", 3), ("bob", 12)];
    let config_json = serde_json::to_value(&config).unwrap();
    let mut game = Match::<G>::start(7, &seats, config).unwrap();
    for (player, action) in actions {
        let _ = game.act_json(player, &serde_json::value::to_raw_value(action).unwrap());
    }
    let state: Value = serde_json::from_str(game.state_json()).unwrap();
    let view: Value =
        serde_json::from_slice::<Value>(&game.view_reply("ann").unwrap()).unwrap()["Ok"].clone();
    let (player, action) = actions[0].clone();
    vec![
        (
            Operation::Setup,
            json!({ "seed": 7, "players": [{ "id": "ann", "level": 3 }, { "id": "bob", "level": 12 }], "config": config_json }),
        ),
        (
            Operation::Action,
            json!({ "state": state, "player": player, "action": action }),
        ),
        (Operation::Timeout, json!({ "state": state })),
        (Operation::Leave, json!({ "state": state, "player": "bob" })),
        (Operation::View, json!({ "state": state, "player": "ann" })),
        (Operation::Migrate, json!({ "state": state })),
        (
            Operation::Bot,
            json!({ "view": view, "player": "ann", "seed": 3 }),
        ),
    ]
}

fn wizard_inputs() -> &'static Vec<(Operation, Value)> {
    static INPUTS: OnceLock<Vec<(Operation, Value)>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let cast = |x, y| json!({ "spell": "fireball", "target": { "x": x, "y": y } });
        valid_inputs::<wizard_battle::WizardBattle>(
            Default::default(),
            &[("ann", cast(1, 1)), ("bob", cast(2, 2))],
        )
    })
}

fn dice_inputs() -> &'static Vec<(Operation, Value)> {
    static INPUTS: OnceLock<Vec<(Operation, Value)>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let bid = json!({ "bid": { "count": 2, "face": 3 } });
        valid_inputs::<liars_dice::LiarsDice>(
            Default::default(),
            &[("ann", bid.clone()), ("bob", bid)],
        )
    })
}

/// The reply of one native call must be a well-formed `Reply`.
fn check_reply(operation: Operation, input: &[u8], reply: &[u8]) -> Result<(), TestCaseError> {
    let decoded: Result<Reply<Value>, _> = serde_json::from_slice(reply);
    prop_assert!(
        decoded.is_ok(),
        "{operation:?} on {:?} answered something that is not a Reply: {:?}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(reply)
    );
    Ok(())
}

/// Calls every operation of both games natively on `input`.
fn every_native_operation(input: &[u8]) -> Result<(), TestCaseError> {
    for (operation, export) in exports::<wizard_battle::WizardBattle>()
        .into_iter()
        .chain(exports::<liars_dice::LiarsDice>())
    {
        check_reply(operation, input, &export(input))?;
    }
    Ok(())
}

/// How to make an input from a game's valid ones: which game (dice or not), which operation,
/// which field to replace and with what, which bytes to damage, and which of those to do.
type Shape = (bool, usize, usize, Value, Vec<Mutation>, u8);

fn shaped_input() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        any::<usize>(),
        any::<usize>(),
        json(),
        mutations(),
        0u8..3,
    )
}

/// From a valid input, one of: a field replaced, damaged bytes, or both.
fn build((dice, which, path, replacement, damage, how): &Shape) -> (Operation, Vec<u8>) {
    let inputs = if *dice {
        dice_inputs()
    } else {
        wizard_inputs()
    };
    let (operation, valid) = &inputs[which % inputs.len()];
    let bytes = match how {
        0 => serde_json::to_vec(&tweak(valid, *path, replacement.clone())).unwrap(),
        1 => mutate(&serde_json::to_vec(valid).unwrap(), damage),
        _ => mutate(
            &serde_json::to_vec(&tweak(valid, *path, replacement.clone())).unwrap(),
            damage,
        ),
    };
    (*operation, bytes)
}

#[test]
fn sdk_input_regression_corpus() {
    for (name, input) in corpus("sdk_input") {
        every_native_operation(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sdk_input_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        every_native_operation(&input)?;
    }

    #[test]
    fn sdk_input_any_json(input in json()) {
        every_native_operation(&serde_json::to_vec(&input).unwrap())?;
    }

    #[test]
    fn sdk_input_almost_valid(shape in shaped_input()) {
        let (operation, bytes) = build(&shape);
        let dice = shape.0;
        let exports = if dice { exports::<liars_dice::LiarsDice>() } else { exports::<wizard_battle::WizardBattle>() };
        let export = exports.iter().find(|(op, _)| *op == operation).unwrap().1;
        check_reply(operation, &bytes, &export(&bytes))?;
    }
}

// ---- Through wasm ----

fn wasm(game: &str) -> RulesModule {
    static MODULES: OnceLock<(RulesModule, RulesModule)> = OnceLock::new();
    let (wizard, dice) = MODULES.get_or_init(|| {
        let engine = crate::support::engine();
        let load = |name| {
            engine
                .load(&crate::support::module_bytes("rules", name))
                .unwrap()
        };
        (load("wizard-battle"), load("liars-dice"))
    });
    if game == "liars-dice" {
        dice.clone()
    } else {
        wizard.clone()
    }
}

/// A wasm call on any input completes, with a reply the host can read as a `Reply`.
fn wasm_call(
    module: &RulesModule,
    operation: Operation,
    input: &[u8],
) -> Result<(), TestCaseError> {
    match module.call_raw(operation, input) {
        Ok(reply) => check_reply(operation, input, &reply),
        // A refusal is an answer (the host gives one itself for an export a module lacks).
        Err(CallError::Rejected(_) | CallError::BadInput(_)) => Ok(()),
        Err(error) => Err(TestCaseError::fail(format!(
            "{operation:?} on {:?}: {error}",
            String::from_utf8_lossy(input)
        ))),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wasm_input_almost_valid(shape in shaped_input()) {
        let (operation, bytes) = build(&shape);
        let module = wasm(if shape.0 { "liars-dice" } else { "wizard-battle" });
        wasm_call(&module, operation, &bytes)?;
    }

    #[test]
    fn wasm_input_any_json(input in json(), op in 0usize..7) {
        let operation = [Operation::Setup, Operation::Action, Operation::Timeout, Operation::Leave,
            Operation::View, Operation::Migrate, Operation::Bot][op];
        wasm_call(&wasm("wizard-battle"), operation, &serde_json::to_vec(&input).unwrap())?;
    }
}

// ---- The host's decoding of replies ----

/// Real replies of every operation of wizard battle, through wasm.
fn real_replies() -> &'static Vec<Vec<u8>> {
    static REPLIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    REPLIES.get_or_init(|| {
        let module = wasm("wizard-battle");
        let mut replies: Vec<Vec<u8>> = wizard_inputs()
            .iter()
            .map(|(operation, input)| {
                module
                    .call_raw(*operation, &serde_json::to_vec(input).unwrap())
                    .unwrap()
            })
            .collect();
        replies.push(module.call_raw(Operation::Describe, b"null").unwrap());
        replies
    })
}

/// Every way the host decodes a reply: none may panic, whatever the bytes.
fn decode_every_way(reply: &[u8]) {
    let _ = decode_reply::<host::runtime::Transition>(reply);
    let _ = decode_reply::<Box<serde_json::value::RawValue>>(reply);
    let _ = decode_reply::<Option<Box<serde_json::value::RawValue>>>(reply);
    let _ = decode_reply::<host::runtime::Description>(reply);
}

#[test]
fn host_reply_regression_corpus() {
    for (_, reply) in corpus("host_reply") {
        decode_every_way(&reply);
    }
    // The real replies decode as what they are.
    let replies = real_replies();
    assert!(decode_reply::<host::runtime::Transition>(&replies[0]).is_ok());
    assert!(decode_reply::<host::runtime::Description>(replies.last().unwrap()).is_ok());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn host_reply_damaged(which in any::<usize>(), damage in mutations()) {
        let replies = real_replies();
        decode_every_way(&mutate(&replies[which % replies.len()], &damage));
    }

    #[test]
    fn host_reply_any_json(reply in json(), wrapped in any::<bool>()) {
        let reply = if wrapped { json!({ "Ok": reply }) } else { reply };
        decode_every_way(&serde_json::to_vec(&reply).unwrap());
    }
}

/// The valid inputs the targets start from are answered alike natively and through wasm, so
/// what the native targets find holds for the module too.
#[test]
fn a_valid_input_of_each_operation_is_answered_alike_natively_and_in_wasm() {
    let module = wasm("wizard-battle");
    for (operation, input) in wizard_inputs() {
        let bytes = serde_json::to_vec(input).unwrap();
        let export = exports::<wizard_battle::WizardBattle>()
            .into_iter()
            .find(|(op, _)| op == operation)
            .unwrap()
            .1;
        assert_eq!(
            module.call_raw(*operation, &bytes).unwrap(),
            export(&bytes),
            "{operation:?}"
        );
    }
}
