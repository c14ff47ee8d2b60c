//! A module says what game it is (`gamehost_describe`): the same natively and in wasm, assumed
//! for modules built before the export, checked at load, and binding at install.

use crate::support::{engine, http, module_bytes, server, upload, wat_bytes, wizard_battle};
use host::runtime::{LoadError, Operation};
use serde_json::{Value, json};
use wizard_battle::WizardBattle;

#[test]
fn the_wasm_description_is_the_native_one_byte_for_byte() {
    let module = wizard_battle(&engine());
    let in_wasm = module.call_raw(Operation::Describe, b"null").unwrap();
    let native = sdk::dispatch::describe::<WizardBattle>("wizard-battle", b"null");
    assert_eq!(
        String::from_utf8(in_wasm).unwrap(),
        String::from_utf8(native).unwrap()
    );
    let description = module.description().expect("it describes itself");
    assert_eq!(description.name, "wizard-battle");
    assert_eq!((description.players.min, description.players.max), (2, 2));
    assert_eq!(description.round_timeout_ms, None);
    assert_eq!(description.modes.len(), 1);
    assert_eq!(description.modes[0].name, "default");
}

#[test]
fn a_module_built_before_the_export_is_a_two_player_game_named_as_installed() {
    // Any module without the export will do: this one answers garbage, but loads.
    let module = engine().load(&wat_bytes("garbage_reply")).unwrap();
    assert!(module.description().is_none());
    let assumed = host::rules::description_of(&module, "old-game");
    assert_eq!(
        serde_json::to_value(&assumed).unwrap(),
        json!({
            "name": "old-game",
            "players": {"min": 2, "max": 2},
            "modes": [{"name": "default", "config": null}],
        })
    );
}

#[test]
fn a_description_that_cannot_be_is_refused_at_load() {
    let error = engine()
        .load(&wat_bytes("describes_no_players"))
        .err()
        .expect("refused");
    assert!(matches!(error, LoadError::Describe(_)), "{error:?}");
    assert!(error.to_string().contains("min: 0"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_is_installed_only_under_its_own_name_and_listed_with_its_description() {
    let server = server(|_| {}).await;
    let bytes = crate::support::variant(&module_bytes("rules", "wizard-battle"), "renamed");
    let (status, answer) = upload(&server, "tictactoe", bytes, None).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains(r#"plays "wizard-battle", not "tictactoe""#),
        "{error}"
    );

    let (_, rules) = http(&server, "GET", "/rules", None).await;
    let games: Vec<&String> = rules["games"].as_object().unwrap().keys().collect();
    assert_eq!(
        games,
        ["liars-dice", "wizard-battle"],
        "the bundled games, and no tictactoe"
    );
    let description = &rules["games"]["wizard-battle"]["description"];
    assert_eq!(description["name"], "wizard-battle");
    assert_eq!(description["players"], json!({"min": 2, "max": 2}));
    assert_eq!(description["modes"][0]["name"], "default");
    assert_eq!(description.get("roundTimeoutMs"), None::<&Value>);
    let dice = &rules["games"]["liars-dice"]["description"];
    assert_eq!(dice["players"], json!({"min": 2, "max": 6}));
    assert_eq!(dice["roundTimeoutMs"], 20_000);
    assert_eq!(
        dice["modes"][1],
        json!({"name": "quick", "config": {"dice": 3}})
    );
}
