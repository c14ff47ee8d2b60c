//! A match's log: every input the match received, in order, each with the module version that
//! computed its result and a digest of the state it produced. Not part of the module boundary:
//! it is the record format the host writes (`GET /matches/<room>/log`), `gamehost replay`
//! checks, and the SDK's harness replays natively (`sdk::testing::replay`), defined here so the
//! two sides read one shape.
//!
//! The host appends an entry in the same atomic step that stores the state the input produced,
//! so a stored state always has its entry and no entry outlives its state. Replaying the inputs
//! from the setup on, through the recorded module versions, must give every recorded digest
//! and the recorded outcome: rules are deterministic (their randomness is seeded at setup and
//! kept in the state), so any difference is a fault worth reporting.
//!
//! ```json
//! {"version": 4, "module": "9f2c…", "at": 1733472000123,
//!  "input": {"action": {"player": "p-1", "action": {"spell": "fireball", "target": {"x": 3, "y": 4}}}},
//!  "turn": 1, "state": "5d41…"}
//! ```
//!
//! `J` is the JSON type the reader wants for free-form values (actions, a mode's configuration):
//! the host keeps them as raw JSON, exactly as received.

use crate::Seat;
use serde::{Deserialize, Serialize};

/// What one stored change of a match was caused by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Input<J> {
    /// The match was set up with this seed, these seats (in seat order) and its mode's settings.
    Setup {
        seed: u64,
        seats: Vec<Seat>,
        config: J,
    },
    /// A player's action, as the host passed it to the rules; `bot` when the host's bot in that
    /// seat chose it.
    Action {
        player: String,
        action: J,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bot: bool,
    },
    /// The round's time ran out.
    Timeout,
    /// A player left for good (its reconnection grace ran out).
    Leave { player: String },
    /// The match moved from the module version `from` to the entry's version.
    Migrate { from: String },
    /// A player's connection went away (no rules call: the state is unchanged).
    Disconnected { player: String },
    /// A player came back (no rules call: the state is unchanged).
    Reconnected { player: String },
}

impl<J> Input<J> {
    /// Whether the rules were called for this input (connection changes are only recorded).
    pub fn calls_rules(&self) -> bool {
        !matches!(self, Input::Disconnected { .. } | Input::Reconnected { .. })
    }
}

/// One entry of a match's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<J> {
    /// The version of the game state this input produced.
    pub version: u64,
    /// The module version (SHA-256 hex) that computed it.
    pub module: String,
    /// When it was stored, in ms since the Unix epoch.
    pub at: u64,
    pub input: Input<J>,
    /// The turn after it.
    pub turn: u64,
    /// The rules state after it, as a digest: the SHA-256 of the state's JSON bytes exactly as
    /// the module returned them, lowercase hex.
    pub state: String,
    /// Set on the entry that ended the match: who won (empty is a draw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<String>>,
}

/// A match's whole log, with what the store holds of it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchLog<J> {
    pub room_id: String,
    /// The game's name.
    pub game: String,
    /// The stored state's version now.
    pub version: u64,
    /// The stored rules state's digest now (as [`Entry::state`]).
    pub state: String,
    /// Set when the match is over (empty is a draw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<String>>,
    pub entries: Vec<Entry<J>>,
}

/// What replaying one input gave: the state after it, and the turn and outcome the rules said.
#[derive(Debug, Clone)]
pub struct Step<S> {
    pub state: S,
    pub turn: u64,
    /// Set when this input ended the match (empty is a draw).
    pub winners: Option<Vec<String>>,
}

/// A log that replayed to its recorded states and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub entries: usize,
    /// How many of them called the rules.
    pub rules_calls: usize,
    /// The module versions the match ran on, in the order it ran on them.
    pub modules: Vec<String>,
    /// The outcome, if the match is over (empty is a draw).
    pub winners: Option<Vec<String>>,
}

/// Where and how a replay went another way than its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The entry's index in the log (from 0); `None`: the stored state after the last entry.
    pub entry: Option<usize>,
    /// The game-state version that entry (or the stored state) has.
    pub version: u64,
    /// The entry's input, in words.
    pub input: String,
    pub what: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.entry {
            Some(entry) => write!(
                f,
                "entry {entry} (version {}, {}): {}",
                self.version, self.input, self.what
            ),
            None => write!(
                f,
                "the stored state (version {}): {}",
                self.version, self.what
            ),
        }
    }
}

impl std::error::Error for Divergence {}

impl<J> Input<J> {
    /// The input in a few words, for reports.
    pub fn describe(&self) -> String {
        match self {
            Input::Setup { seed, seats, .. } => {
                format!("setup of {} seats, seed {seed}", seats.len())
            }
            Input::Action {
                player, bot: true, ..
            } => format!("action of bot {player}"),
            Input::Action { player, .. } => format!("action of {player}"),
            Input::Timeout => "round timeout".into(),
            Input::Leave { player } => format!("{player} left"),
            Input::Migrate { from } => format!("migration from {from}"),
            Input::Disconnected { player } => format!("{player} disconnected"),
            Input::Reconnected { player } => format!("{player} reconnected"),
        }
    }
}

/// Replays `log`, checking each entry's state, turn and outcome, then the stored state's.
///
/// `apply` computes one entry's input on the state before it (`None` before the setup) with
/// the entry's module version, and answers `Err` with the reason when the rules refuse or fail;
/// it is only called for inputs that [call the rules](Input::calls_rules). A migration's
/// `turn` is ignored: a migration carries the state over and leaves the turn where it was.
/// `digest` names a state the way [`Entry::state`] does.
pub fn replay<J, S>(
    log: &MatchLog<J>,
    mut apply: impl FnMut(&Entry<J>, Option<&S>) -> Result<Step<S>, String>,
    digest: impl Fn(&S) -> String,
) -> Result<Replayed, Divergence> {
    let mut state: Option<S> = None;
    let mut turn = 0;
    let mut winners: Option<Vec<String>> = None;
    let mut ran: Vec<String> = Vec::new();
    let mut rules_calls = 0;
    for (index, entry) in log.entries.iter().enumerate() {
        let diverged = |what: String| Divergence {
            entry: Some(index),
            version: entry.version,
            input: entry.input.describe(),
            what,
        };
        match (&entry.input, &state) {
            (Input::Setup { .. }, Some(_)) => return Err(diverged("a second setup".into())),
            (Input::Setup { .. }, None) => {}
            (_, None) => {
                return Err(diverged(
                    "the log does not start with the match's setup (did the store lose it?)".into(),
                ));
            }
            (Input::Migrate { from }, Some(_)) if ran.last() != Some(from) => {
                return Err(diverged(format!(
                    "a migration from {from}, but the match ran {}",
                    ran.last().map_or("nothing", String::as_str)
                )));
            }
            _ => {}
        }
        if entry.input.calls_rules() {
            let step = apply(entry, state.as_ref()).map_err(&diverged)?;
            rules_calls += 1;
            if !matches!(entry.input, Input::Migrate { .. }) {
                turn = step.turn;
            }
            if step.winners.is_some() {
                winners = step.winners;
            }
            state = Some(step.state);
            if ran.last() != Some(&entry.module) {
                ran.push(entry.module.clone());
            }
        }
        let replayed = state.as_ref().map(&digest).unwrap_or_default();
        if replayed != entry.state {
            return Err(diverged(format!(
                "the state differs (replayed {replayed}, logged {})",
                entry.state
            )));
        }
        if turn != entry.turn {
            return Err(diverged(format!(
                "the turn differs (replayed {turn}, logged {})",
                entry.turn
            )));
        }
        if winners != entry.winners {
            return Err(diverged(format!(
                "the outcome differs (replayed {winners:?}, logged {:?})",
                entry.winners
            )));
        }
    }
    let stored = |what: String| Divergence {
        entry: None,
        version: log.version,
        input: String::new(),
        what,
    };
    let last = log.entries.last().map_or(0, |e| e.version);
    if log.version < last {
        return Err(stored(format!(
            "it is older than the log's last entry ({last})"
        )));
    }
    let replayed = state.as_ref().map(&digest).unwrap_or_default();
    if replayed != log.state {
        return Err(stored(format!(
            "it differs from the replayed state (stored {}, replayed {replayed}): \
             a change is missing from the log",
            log.state
        )));
    }
    if winners != log.winners {
        return Err(stored(format!(
            "its outcome differs (stored {:?}, replayed {winners:?})",
            log.winners
        )));
    }
    Ok(Replayed {
        entries: log.entries.len(),
        rules_calls,
        modules: ran,
        winners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counting game: the state is the sum of the actions, the turn the number of inputs,
    /// and reaching 10 wins it for whoever got there.
    fn apply(entry: &Entry<i64>, state: Option<&i64>) -> Result<Step<i64>, String> {
        let (sum, winner) = match (&entry.input, state) {
            (Input::Setup { seed, .. }, None) => (*seed as i64, None),
            (Input::Action { action, player, .. }, Some(sum)) if *action > 0 => {
                (sum + action, Some(player.clone()))
            }
            (Input::Action { .. }, Some(_)) => return Err("refused: not a positive number".into()),
            (Input::Timeout | Input::Migrate { .. }, Some(sum)) => (*sum, None),
            _ => return Err("unexpected".into()),
        };
        Ok(Step {
            state: sum,
            turn: entry.version,
            winners: (sum >= 10).then(|| winner.into_iter().collect()),
        })
    }

    fn digest(state: &i64) -> String {
        format!("sum={state}")
    }

    fn entry(version: u64, module: &str, input: Input<i64>, sum: i64, turn: u64) -> Entry<i64> {
        Entry {
            version,
            module: module.into(),
            at: 0,
            input,
            turn,
            state: digest(&sum),
            winners: None,
        }
    }

    fn action(player: &str, n: i64) -> Input<i64> {
        Input::Action {
            player: player.into(),
            action: n,
            bot: false,
        }
    }

    /// Setup at 1, +4 by ann, ann drops and comes back, the match moves to v2, +5 by bob wins.
    fn log() -> MatchLog<i64> {
        let setup = Input::Setup {
            seed: 1,
            seats: vec![Seat::from(("ann", 1)), Seat::from(("bob", 1))],
            config: 0,
        };
        let mut entries = vec![
            entry(1, "v1", setup, 1, 1),
            entry(2, "v1", action("ann", 4), 5, 2),
            entry(
                3,
                "v1",
                Input::Disconnected {
                    player: "ann".into(),
                },
                5,
                2,
            ),
            entry(
                4,
                "v1",
                Input::Reconnected {
                    player: "ann".into(),
                },
                5,
                2,
            ),
            entry(5, "v2", Input::Migrate { from: "v1".into() }, 5, 2),
            entry(6, "v2", action("bob", 5), 10, 6),
        ];
        entries[5].winners = Some(vec!["bob".into()]);
        MatchLog {
            room_id: "r".into(),
            game: "count".into(),
            // A later change the log does not record (a client's free-form state) moved the
            // version on, not the rules state.
            version: 7,
            state: digest(&10),
            winners: Some(vec!["bob".into()]),
            entries,
        }
    }

    #[test]
    fn a_faithful_log_replays_across_its_versions() {
        let replayed = replay(&log(), apply, digest).unwrap();
        assert_eq!(
            replayed,
            Replayed {
                entries: 6,
                rules_calls: 4,
                modules: vec!["v1".into(), "v2".into()],
                winners: Some(vec!["bob".into()]),
            }
        );
    }

    #[test]
    fn each_kind_of_difference_is_reported_at_its_entry() {
        let diverges = |log: MatchLog<i64>| replay(&log, apply, digest).unwrap_err();

        let mut altered = log();
        altered.entries[1].input = action("ann", 3);
        let d = diverges(altered);
        assert_eq!((d.entry, d.version), (Some(1), 2), "{d}");
        assert!(d.what.contains("state differs"), "{d}");

        let mut refused = log();
        refused.entries[1].input = action("ann", -1);
        let d = diverges(refused);
        assert_eq!(d.entry, Some(1));
        assert!(d.what.contains("refused"), "{d}");

        let mut turn = log();
        turn.entries[1].turn = 9;
        assert!(diverges(turn).what.contains("turn differs"));

        let mut outcome = log();
        outcome.entries[5].winners = Some(vec!["ann".into()]);
        assert_eq!(diverges(outcome).entry, Some(5));

        // A connection change that claims the rules state changed.
        let mut quiet = log();
        quiet.entries[2].state = digest(&6);
        assert_eq!(diverges(quiet).entry, Some(2));

        let mut headless = log();
        headless.entries.remove(0);
        let d = diverges(headless);
        assert_eq!(d.entry, Some(0));
        assert!(d.what.contains("does not start with"), "{d}");

        let mut twice = log();
        let setup = twice.entries[0].clone();
        twice.entries.insert(1, setup);
        assert!(diverges(twice).what.contains("second setup"));

        let mut elsewhere = log();
        elsewhere.entries[4].input = Input::Migrate { from: "v0".into() };
        let d = diverges(elsewhere);
        assert_eq!(d.entry, Some(4));
        assert!(d.what.contains("ran v1"), "{d}");

        // The stored state is past what the log explains: a change went unrecorded.
        let mut unrecorded = log();
        unrecorded.state = digest(&11);
        let d = diverges(unrecorded);
        assert_eq!(d.entry, None);
        assert!(
            d.to_string().starts_with("the stored state (version 7)"),
            "{d}"
        );

        let mut behind = log();
        behind.version = 5;
        assert!(diverges(behind).what.contains("older than"));
    }

    #[test]
    fn entries_read_as_they_are_written() {
        let entry = &log().entries[1];
        let text = serde_json::to_string(entry).unwrap();
        assert_eq!(
            text,
            r#"{"version":2,"module":"v1","at":0,"input":{"action":{"player":"ann","action":4}},"turn":2,"state":"sum=5"}"#
        );
        assert_eq!(&serde_json::from_str::<Entry<i64>>(&text).unwrap(), entry);
        let timeout: Input<i64> = serde_json::from_str(r#""timeout""#).unwrap();
        assert_eq!(timeout, Input::Timeout);
    }
}
