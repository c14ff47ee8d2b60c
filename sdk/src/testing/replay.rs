//! Replays a real match's log natively ([`replay`]), through the same code path the wasm module
//! runs, so an author can step through a disputed or buggy match in a unit test.

use crate::Game;
use crate::dispatch;
use abi::log::{Divergence, MatchLog, Replayed, Step};
use abi::{GuestError, Reply};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The log a host serves (`GET /matches/<room>/log`, or a file saved from it).
pub type Log = MatchLog<Box<RawValue>>;

/// Replays a match's log with this crate's rules `G`, whatever module versions the log names
/// (a migration entry runs [`Game::migrate`]), and checks every state, turn and outcome it
/// records, byte for byte. `Err` says at which entry the rules went another way: the place to
/// start debugging.
///
/// ```no_run
/// # fn demo<G: sdk::Game>() {
/// let log: sdk::testing::Log =
///     serde_json::from_str(&std::fs::read_to_string("match.json").unwrap()).unwrap();
/// sdk::testing::replay::<G>(&log).expect("the rules still play this match the same way");
/// # }
/// ```
pub fn replay<G: Game>(log: &Log) -> Result<Replayed, Divergence> {
    abi::log::replay(
        log,
        |entry, state: Option<&Box<RawValue>>| step::<G>(&entry.input, state.map(|s| &**s)),
        |state| hex::encode(Sha256::digest(state.get().as_bytes())),
    )
}

fn step<G: Game>(
    input: &abi::log::Input<Box<RawValue>>,
    state: Option<&RawValue>,
) -> Result<Step<Box<RawValue>>, String> {
    use abi::log::Input;
    let no_state = || "no state to apply it to".to_string();
    let reply = match input {
        Input::Setup {
            seed,
            seats,
            config,
        } => call(
            dispatch::setup::<G>,
            &abi::SetupInput {
                seed: *seed,
                players: seats.clone(),
                config,
            },
        ),
        Input::Action { player, action, .. } => call(
            dispatch::action::<G>,
            &abi::ActionInput {
                state: state.ok_or_else(no_state)?,
                player: player.clone(),
                action,
            },
        ),
        Input::Timeout => call(
            dispatch::timeout::<G>,
            &abi::TimeoutInput {
                state: state.ok_or_else(no_state)?,
            },
        ),
        Input::Leave { player } => call(
            dispatch::leave::<G>,
            &abi::LeaveInput {
                state: state.ok_or_else(no_state)?,
                player: player.clone(),
            },
        ),
        Input::Migrate { .. } => call(
            dispatch::migrate::<G>,
            &abi::MigrateInput {
                state: state.ok_or_else(no_state)?,
            },
        ),
        Input::Disconnected { .. } | Input::Reconnected { .. } => {
            return Err("this input calls no rules".into());
        }
    };
    let decoded: Reply<abi::Transition<Box<RawValue>, Box<RawValue>, Box<RawValue>>> =
        serde_json::from_slice(&reply).map_err(|e| format!("an unreadable reply: {e}"))?;
    match decoded {
        Ok(transition) => Ok(Step {
            state: transition.state,
            turn: transition.turn,
            winners: transition.outcome.map(|o| o.winners),
        }),
        Err(GuestError::Rejected(rejection)) => Err(format!(
            "the rules refused it: {} ({})",
            rejection.code, rejection.reason
        )),
        Err(GuestError::BadInput { message }) => {
            Err(format!("the rules could not read it: {message}"))
        }
        Err(GuestError::Internal { message }) => Err(format!("the rules failed: {message}")),
    }
}

fn call<I: serde::Serialize>(operation: fn(&[u8]) -> Vec<u8>, input: &I) -> Vec<u8> {
    operation(&serde_json::to_vec(input).expect("inputs serialise"))
}
