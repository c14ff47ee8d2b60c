//! Liar's dice: a game unlike wizard battle. Two to six players take turns in order; each
//! knows only its own dice.
//!
//! # Rules
//!
//! * **Dice**: every player starts with `dice` six-sided dice (5, or 3 in the `quick` mode),
//!   rolled from the match's seed, seen by their owner only.
//! * **Turns**: players act one at a time, in seat order; who opens the first round is drawn from
//!   the seed. On its turn a player either **bids** `{"bid": {"count": n, "face": f}}`, claiming
//!   that at least `n` dice on the table (everyone's) show `f`, or **challenges** the last bid
//!   `{"challenge": true}`. A bid must be higher than the last one: more dice, or as many dice of
//!   a higher face. There are no wild faces.
//! * **A challenge** reveals every die. If the table holds at least the bid, the challenger loses
//!   a die; otherwise the bidder does. The loser opens the next round (or, if it is out, the next
//!   player still in); every player still in rolls again.
//! * **Out**: a player without dice is out. The last player with dice wins.
//! * **Time**: a player who lets its turn's time run out loses a die, and a new round starts.
//! * **Leaving**: a player who leaves is out at once.
//!
//! What a player sees: its own dice, how many dice everyone else has, the bid to beat, whose turn
//! it is, and the dice revealed by the last challenge (public, since everyone saw them).
//!
//! The rules emit no game-over event of their own: the host tells every player with `gameOver`.
//!
//! # Refusals
//!
//! `game_over`, `out`, `not_your_turn`, `no_bid` (a challenge with nothing to challenge),
//! `bid_too_low`, `invalid_bid` (a face outside 1 to 6, or more dice than the table holds); and
//! from the SDK, `not_in_match` and `invalid_action`. At setup: `not_enough_players`,
//! `too_many_players`, `duplicate_player`, `invalid_config`.

use sdk::{Ctx, Game, Outcome, RandomExt, Rejection, Rng, Seat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

pub struct LiarsDice;

const MIN_PLAYERS: u32 = 2;
const MAX_PLAYERS: u32 = 6;
const FACES: u8 = 6;

/// Per-match settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Dice each player starts with, 1 to 10.
    pub dice: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config { dice: 5 }
    }
}

/// A claim: at least `count` dice on the table show `face`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub count: u32,
    pub face: u8,
}

impl Bid {
    fn beats(self, other: Bid) -> bool {
        self.count > other.count || (self.count == other.count && self.face > other.face)
    }
}

/// One move, as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    Bid(Bid),
    /// `{"challenge": true}`.
    Challenge(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Player {
    pub id: String,
    /// Its dice this round; empty once it is out.
    pub dice: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBid {
    pub by: String,
    #[serde(flatten)]
    pub bid: Bid,
}

/// What a challenge showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reveal {
    pub challenger: String,
    pub bid: LastBid,
    /// How many dice showed the bid's face.
    pub actual: u32,
    pub loser: String,
    /// Every player's dice as they were.
    pub dice: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// In seat order.
    pub players: Vec<Player>,
    /// Whose turn it is (an index into `players`).
    pub to_act: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<LastBid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reveal: Option<Reveal>,
    pub round: u32,
    /// Moves so far, timeouts included: the host's turn number.
    pub moves: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

/// What one player sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub you: String,
    pub your_dice: Vec<u8>,
    /// Every player in seat order, with how many dice it holds.
    pub players: Vec<Seen>,
    pub to_act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<LastBid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reveal: Option<Reveal>,
    pub round: u32,
    /// Dice on the table, everyone's.
    pub total_dice: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    pub id: String,
    pub dice: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    Bid {
        player: String,
        count: u32,
        face: u8,
    },
    Challenge(Reveal),
    #[serde(rename_all = "camelCase")]
    TimedOut {
        player: String,
    },
    #[serde(rename_all = "camelCase")]
    Out {
        player: String,
    },
    #[serde(rename_all = "camelCase")]
    RoundStarted {
        round: u32,
        opens: String,
    },
}

impl State {
    fn index_of(&self, player: &str) -> Option<usize> {
        self.players.iter().position(|p| p.id == player)
    }

    fn in_game(&self) -> impl Iterator<Item = &Player> {
        self.players.iter().filter(|p| !p.dice.is_empty())
    }

    /// The only player still in, once there is one.
    fn last_in(&self) -> Option<String> {
        let mut left = self.in_game();
        let last = left.next().map(|p| p.id.clone());
        if left.next().is_some() { None } else { last }
    }

    fn total_dice(&self) -> u32 {
        self.players.iter().map(|p| p.dice.len() as u32).sum()
    }

    /// The first player still in at or after seat `from`.
    fn next_in(&self, from: usize) -> usize {
        (0..self.players.len())
            .map(|step| (from + step) % self.players.len())
            .find(|&i| !self.players[i].dice.is_empty())
            .unwrap_or(from)
    }

    /// `player` loses a die; the game ends, or a new round starts with every die rolled again,
    /// opened by the loser (or the next player still in).
    fn lose_die(&mut self, loser: usize, ctx: &mut Ctx<Event>) {
        self.players[loser].dice.pop();
        if self.players[loser].dice.is_empty() {
            ctx.broadcast(Event::Out {
                player: self.players[loser].id.clone(),
            });
        }
        self.start_round(loser, ctx);
    }

    fn start_round(&mut self, opener: usize, ctx: &mut Ctx<Event>) {
        self.bid = None;
        if self.in_game().count() <= 1 {
            self.winner = self.last_in();
            return;
        }
        self.round += 1;
        for player in &mut self.players {
            let dice = player.dice.len();
            player.dice = roll(dice, ctx.rng());
        }
        self.to_act = self.next_in(opener);
        ctx.broadcast(Event::RoundStarted {
            round: self.round,
            opens: self.players[self.to_act].id.clone(),
        });
    }
}

fn roll(dice: usize, rng: &mut Rng) -> Vec<u8> {
    (0..dice).map(|_| rng.random_range(1..=FACES)).collect()
}

impl Game for LiarsDice {
    type Config = Config;
    type State = State;
    type Action = Action;
    type View = View;
    type Event = Event;

    fn players() -> std::ops::RangeInclusive<u32> {
        MIN_PLAYERS..=MAX_PLAYERS
    }

    fn round_timeout() -> Option<std::time::Duration> {
        // One player's turn, not a whole round of simultaneous moves.
        Some(std::time::Duration::from_secs(20))
    }

    fn modes() -> Vec<(String, Config)> {
        vec![
            ("classic".to_string(), Config::default()),
            ("quick".to_string(), Config { dice: 3 }),
        ]
    }

    fn setup(players: &[Seat], config: Config, ctx: &mut Ctx<Event>) -> Result<State, Rejection> {
        let seated = players.len() as u32;
        if seated < MIN_PLAYERS {
            return Err(Rejection::new(
                "not_enough_players",
                "liar's dice needs at least two players",
            ));
        }
        if seated > MAX_PLAYERS {
            return Err(Rejection::new(
                "too_many_players",
                "liar's dice seats six players at most",
            ));
        }
        sdk::distinct_seats(players)?;
        if !(1..=10).contains(&config.dice) {
            return Err(Rejection::new(
                "invalid_config",
                "each player holds 1 to 10 dice",
            ));
        }
        let mut state = State {
            players: players
                .iter()
                .map(|seat| Player {
                    id: seat.id.clone(),
                    dice: vec![0; usize::from(config.dice)],
                })
                .collect(),
            to_act: 0,
            bid: None,
            last_reveal: None,
            round: 0,
            moves: 0,
            winner: None,
        };
        let opener = ctx.rng().random_range(0..players.len());
        state.start_round(opener, ctx);
        Ok(state)
    }

    fn action(
        state: &mut State,
        player: &str,
        action: Action,
        ctx: &mut Ctx<Event>,
    ) -> Result<(), Rejection> {
        if state.winner.is_some() {
            return Err(Rejection::new("game_over", "the game is over"));
        }
        let me = state
            .index_of(player)
            .ok_or_else(|| Rejection::new("not_in_match", "you are not in this match"))?;
        if state.players[me].dice.is_empty() {
            return Err(Rejection::new("out", "you have no dice left"));
        }
        if me != state.to_act {
            return Err(Rejection::new(
                "not_your_turn",
                format!("it is {}'s turn", state.players[state.to_act].id),
            ));
        }
        match action {
            Action::Bid(bid) => {
                if !(1..=FACES).contains(&bid.face) || bid.count == 0 {
                    return Err(Rejection::new(
                        "invalid_bid",
                        "a bid is a count of at least 1 and a face from 1 to 6",
                    ));
                }
                if bid.count > state.total_dice() {
                    return Err(Rejection::new(
                        "invalid_bid",
                        format!("there are only {} dice on the table", state.total_dice()),
                    ));
                }
                if let Some(last) = &state.bid
                    && !bid.beats(last.bid)
                {
                    return Err(Rejection::new(
                        "bid_too_low",
                        format!(
                            "bid more than {} of face {}, or as many of a higher face",
                            last.bid.count, last.bid.face
                        ),
                    ));
                }
                state.bid = Some(LastBid {
                    by: player.to_string(),
                    bid,
                });
                ctx.broadcast(Event::Bid {
                    player: player.to_string(),
                    count: bid.count,
                    face: bid.face,
                });
                state.to_act = state.next_in(me + 1);
            }
            Action::Challenge(_) => {
                let Some(last) = state.bid.clone() else {
                    return Err(Rejection::new("no_bid", "there is no bid to challenge yet"));
                };
                let actual = state
                    .players
                    .iter()
                    .flat_map(|p| &p.dice)
                    .filter(|&&die| die == last.bid.face)
                    .count() as u32;
                let loser_id = if actual >= last.bid.count {
                    player.to_string()
                } else {
                    last.by.clone()
                };
                let reveal = Reveal {
                    challenger: player.to_string(),
                    bid: last,
                    actual,
                    loser: loser_id.clone(),
                    dice: state
                        .in_game()
                        .map(|p| (p.id.clone(), p.dice.clone()))
                        .collect(),
                };
                ctx.broadcast(Event::Challenge(reveal.clone()));
                state.last_reveal = Some(reveal);
                let loser = state.index_of(&loser_id).expect("a seated player lost");
                state.lose_die(loser, ctx);
            }
        }
        state.moves += 1;
        Ok(())
    }

    fn timeout(state: &mut State, ctx: &mut Ctx<Event>) {
        if state.winner.is_some() {
            return;
        }
        let late = state.to_act;
        ctx.broadcast(Event::TimedOut {
            player: state.players[late].id.clone(),
        });
        state.lose_die(late, ctx);
        state.moves += 1;
    }

    fn leave(state: &mut State, player: &str, ctx: &mut Ctx<Event>) {
        let Some(gone) = state.index_of(player) else {
            return;
        };
        if state.winner.is_some() || state.players[gone].dice.is_empty() {
            return;
        }
        state.players[gone].dice.clear();
        ctx.broadcast(Event::Out {
            player: player.to_string(),
        });
        if state.in_game().count() <= 1 {
            state.winner = state.last_in();
        } else if state.to_act == gone {
            state.to_act = state.next_in(gone + 1);
        }
        state.moves += 1;
    }

    fn check(state: &State, seats: &[Seat]) -> Result<(), String> {
        let ids: Vec<&str> = state.players.iter().map(|p| p.id.as_str()).collect();
        let seated: Vec<&str> = seats.iter().map(|s| s.id.as_str()).collect();
        if ids != seated {
            return Err("its players are not the match's seats".into());
        }
        if state.to_act >= state.players.len() {
            return Err(format!(
                "player {} is to act, of {}",
                state.to_act,
                ids.len()
            ));
        }
        if let Some(bid) = &state.bid
            && !ids.contains(&bid.by.as_str())
        {
            return Err(format!("the bid is by {:?}, who is not playing", bid.by));
        }
        if state
            .players
            .iter()
            .any(|p| p.dice.iter().any(|d| !(1..=6).contains(d)))
        {
            return Err("a die shows something other than 1 to 6".into());
        }
        Ok(())
    }

    fn view(state: &State, player: &str) -> View {
        let yours = state.index_of(player).map(|i| &state.players[i]);
        View {
            you: player.to_string(),
            your_dice: yours.map(|p| p.dice.clone()).unwrap_or_default(),
            players: state
                .players
                .iter()
                .map(|p| Seen {
                    id: p.id.clone(),
                    dice: p.dice.len() as u32,
                })
                .collect(),
            to_act: state.players[state.to_act].id.clone(),
            bid: state.bid.clone(),
            last_reveal: state.last_reveal.clone(),
            round: state.round,
            total_dice: state.total_dice(),
        }
    }

    fn turn(state: &State) -> u64 {
        state.moves + 1
    }

    fn outcome(state: &State) -> Option<Outcome> {
        state.winner.as_ref().map(|winner| Outcome {
            winners: vec![winner.clone()],
        })
    }
}

/// A bot's move from its own view: it counts its own dice of each face, expects a sixth of the
/// others' dice to show any face, and bids its best face while the bid is believable, else
/// challenges. Deterministic for a given view and `rng`.
pub fn bot_action(view: &View, rng: &mut Rng) -> Action {
    let mine = |face: u8| view.your_dice.iter().filter(|&&d| d == face).count() as u32;
    let others = view.total_dice - view.your_dice.len() as u32;
    let expected = |face: u8| mine(face) + others / u32::from(FACES);
    if let Some(last) = &view.bid
        && last.bid.count > expected(last.bid.face) + 1
    {
        return Action::Challenge(true);
    }
    let best = (1..=FACES).max_by_key(|&f| (mine(f), f)).unwrap_or(FACES);
    let floor = view.bid.as_ref().map(|last| last.bid);
    let candidate = |count: u32, face: u8| Bid { count, face };
    let mut bid = match floor {
        None => candidate(expected(best).max(1), best),
        Some(last) if face_beats(best, last) => candidate(last.count, best),
        Some(last) => candidate(last.count + 1, best),
    };
    // Now and then it pushes one further, so that it cannot be read.
    if rng.random_range(0..4) == 0 && bid.count < view.total_dice {
        bid.count += 1;
    }
    if bid.count > view.total_dice {
        return Action::Challenge(true);
    }
    Action::Bid(bid)
}

fn face_beats(face: u8, last: Bid) -> bool {
    face > last.face
}

/// The host's bot plays [`bot_action`] when it is its turn and the game is still on.
impl sdk::Bot for LiarsDice {
    fn act(view: View, me: &str, rng: &mut Rng) -> Option<Action> {
        let still_playing = view.players.iter().filter(|p| p.dice > 0).count() > 1;
        (still_playing && view.to_act == me && !view.your_dice.is_empty())
            .then(|| bot_action(&view, rng))
    }
}

sdk::export_game!(LiarsDice, bot);
