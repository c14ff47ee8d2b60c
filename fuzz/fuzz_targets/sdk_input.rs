//! The SDK's decoding of what the host sends: any bytes, to every operation of both bundled
//! games. Each answers a well-formed `Reply` (a refusal or `BadInput` for nonsense); a panic
//! is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

type Export = fn(&[u8]) -> Vec<u8>;

fn exports<G: sdk::Bot>() -> [Export; 7]
where
    G::Action: serde::Serialize,
    G::View: serde::de::DeserializeOwned,
{
    [
        sdk::dispatch::setup::<G>,
        sdk::dispatch::action::<G>,
        sdk::dispatch::timeout::<G>,
        sdk::dispatch::leave::<G>,
        sdk::dispatch::view::<G>,
        sdk::dispatch::migrate::<G>,
        sdk::dispatch::bot::<G>,
    ]
}

fuzz_target!(|input: &[u8]| {
    let games = exports::<wizard_battle::WizardBattle>()
        .into_iter()
        .chain(exports::<liars_dice::LiarsDice>());
    for export in games {
        let reply = export(input);
        let decoded: Result<abi::Reply<serde_json::Value>, _> = serde_json::from_slice(&reply);
        assert!(decoded.is_ok(), "not a Reply: {:?}", String::from_utf8_lossy(&reply));
    }
});
