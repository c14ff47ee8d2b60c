//! Play a match natively in a plain `cargo test`, through exactly the code path the wasm module
//! runs ([`crate::dispatch`]), with no wasm involved.
//!
//! ```
//! # use sdk::testing::Match;
//! # fn demo<G: sdk::Game<Config = ()>>() where G::Action: serde::Serialize {
//! let mut game = Match::<G>::start(42, &[("ann", 1), ("bob", 1)], ()).unwrap();
//! let view = game.view("ann");
//! # }
//! ```

#[cfg(not(target_arch = "wasm32"))]
mod replay;
#[cfg(not(target_arch = "wasm32"))]
pub use replay::{Log, replay};

use crate::dispatch::{self, Stored};
use crate::{Bot, Game};
use abi::{GuestError, Outcome, Rejection, Reply, Seat};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use std::marker::PhantomData;

/// What one accepted call produced, decoded loosely so tests can look into it.
#[derive(Debug, Clone)]
pub struct Step {
    pub turn: u64,
    pub events: Vec<abi::Event<Value>>,
    pub views: Vec<abi::PlayerView<Value>>,
    pub outcome: Option<Outcome>,
    /// The reply exactly as the module would return it, for byte-for-byte comparisons.
    pub reply: Vec<u8>,
}

impl Step {
    /// The events that `player` receives, in order (broadcasts and its own).
    pub fn events_for(&self, player: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e.to.as_deref().is_none_or(|to| to == player))
            .map(|e| &e.event)
            .collect()
    }

    /// `player`'s view after this step.
    pub fn view_of(&self, player: &str) -> &Value {
        &self
            .views
            .iter()
            .find(|v| v.player == player)
            .unwrap_or_else(|| panic!("no view for {player:?}"))
            .view
    }
}

/// A match in progress. Holds the state as the JSON bytes the host would store.
pub struct Match<G: Game> {
    state: Box<RawValue>,
    /// The bytes of the most recent reply, refusals included.
    last_reply: Vec<u8>,
    outcome: Option<Outcome>,
    turn: u64,
    game: PhantomData<G>,
}

impl<G: Game> Match<G>
where
    G::Config: Serialize,
{
    /// Starts a match with these `(id, level)` seats.
    pub fn start(seed: u64, players: &[(&str, i64)], config: G::Config) -> Result<Self, Rejection> {
        let players: Vec<Seat> = players.iter().copied().map(Seat::from).collect();
        let input = abi::SetupInput {
            seed,
            players,
            config,
        };
        let (state, step) =
            run(dispatch::setup::<G>, &input).map_err(|(_, rejection)| rejection)?;
        Ok(Match {
            state,
            last_reply: step.reply,
            outcome: step.outcome,
            turn: step.turn,
            game: PhantomData,
        })
    }
}

impl<G: Game> Match<G> {
    /// Submits an action. On a rejection the match is unchanged.
    pub fn act(&mut self, player: &str, action: &G::Action) -> Result<Step, Rejection>
    where
        G::Action: Serialize,
    {
        let action = serde_json::value::to_raw_value(action).expect("actions serialise");
        self.act_json(player, &action)
    }

    /// Submits an action given as raw JSON, the way a client might send anything at all.
    pub fn act_json(&mut self, player: &str, action: &RawValue) -> Result<Step, Rejection> {
        let input = abi::ActionInput {
            state: &*self.state,
            player: player.to_string(),
            action,
        };
        self.apply(run(dispatch::action::<G>, &input))
    }

    /// The round's time runs out.
    pub fn timeout(&mut self) -> Step {
        let input = abi::TimeoutInput {
            state: &*self.state,
        };
        self.apply(run(dispatch::timeout::<G>, &input))
            .expect("timeout is never refused")
    }

    /// `player` leaves for good.
    pub fn leave(&mut self, player: &str) -> Result<Step, Rejection> {
        let input = abi::LeaveInput {
            state: &*self.state,
            player: player.to_string(),
        };
        self.apply(run(dispatch::leave::<G>, &input))
    }

    /// What `player` sees now, typed.
    pub fn view(&self, player: &str) -> G::View {
        G::view(&self.state().game, player)
    }

    /// The view export's reply for `player`, as the host would get it.
    pub fn view_reply(&self, player: &str) -> Result<Vec<u8>, Rejection> {
        let input = abi::ViewInput {
            state: &*self.state,
            player: player.to_string(),
        };
        let reply = dispatch::view::<G>(&serde_json::to_vec(&input).expect("inputs serialise"));
        let decoded: Reply<&RawValue> = serde_json::from_slice(&reply).expect("replies decode");
        unwrap_guest(decoded)?;
        Ok(reply)
    }

    /// The whole stored state, typed.
    pub fn state(&self) -> Stored<G::State> {
        serde_json::from_str(self.state.get()).expect("the stored state decodes")
    }

    /// The stored state exactly as the host would store it.
    pub fn state_json(&self) -> &str {
        self.state.get()
    }

    /// The bytes of the most recent reply (setup, action, timeout or leave), refusals included.
    pub fn last_reply(&self) -> &[u8] {
        &self.last_reply
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn turn(&self) -> u64 {
        self.turn
    }

    fn apply(
        &mut self,
        result: Result<(Box<RawValue>, Step), (Vec<u8>, Rejection)>,
    ) -> Result<Step, Rejection> {
        let (state, step) = result.map_err(|(reply, rejection)| {
            self.last_reply = reply;
            rejection
        })?;
        self.last_reply = step.reply.clone();
        self.state = state;
        self.outcome = step.outcome.clone();
        self.turn = step.turn;
        Ok(step)
    }
}

impl<G: Bot> Match<G>
where
    G::View: DeserializeOwned,
    G::Action: Serialize,
{
    /// What the game's bot in seat `player` does now, asked the way the host asks it: with that
    /// seat's view as the view export gives it, through the bot export's code path.
    pub fn bot(&self, player: &str, seed: u64) -> Option<G::Action> {
        let view = self.view_reply(player).ok()?;
        let view: Reply<Box<RawValue>> = serde_json::from_slice(&view).expect("views decode");
        let input = abi::BotInput {
            view: view.ok()?,
            player: player.to_string(),
            seed,
        };
        let reply = dispatch::bot::<G>(&serde_json::to_vec(&input).expect("inputs serialise"));
        let decoded: Reply<Option<G::Action>> =
            serde_json::from_slice(&reply).expect("bot replies decode");
        unwrap_guest(decoded).expect("a bot never refuses")
    }

    /// Lets the bot in seat `player` act, as the host would: `None` if it has nothing to do,
    /// else the outcome of its action (a refusal included).
    pub fn play_bot(&mut self, player: &str, seed: u64) -> Option<Result<Step, Rejection>> {
        let action = self.bot(player, seed)?;
        Some(self.act(player, &action))
    }
}

/// Calls one operation with a serialised input and decodes its reply.
fn run<I: Serialize>(
    operation: fn(&[u8]) -> Vec<u8>,
    input: &I,
) -> Result<(Box<RawValue>, Step), (Vec<u8>, Rejection)> {
    let reply = operation(&serde_json::to_vec(input).expect("inputs serialise"));
    let decoded: Reply<abi::Transition<Box<RawValue>, Value, Value>> =
        serde_json::from_slice(&reply).expect("replies decode");
    let transition = match unwrap_guest(decoded) {
        Ok(transition) => transition,
        Err(rejection) => return Err((reply, rejection)),
    };
    Ok((
        transition.state,
        Step {
            turn: transition.turn,
            events: transition.events,
            views: transition.views,
            outcome: transition.outcome,
            reply,
        },
    ))
}

fn unwrap_guest<T>(reply: Reply<T>) -> Result<T, Rejection> {
    match reply {
        Ok(value) => Ok(value),
        Err(GuestError::Rejected(rejection)) => Err(rejection),
        Err(other) => panic!("the harness built an input the rules could not use: {other:?}"),
    }
}
