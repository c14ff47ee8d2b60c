//! Matchmaking by game, mode and level, as plain data: one first-come-first-served queue per
//! lane and level, seating as many players as the game takes ([`Seating`], [`decide`]). The stores run these operations atomically (under a lock in memory, as one
//! script in Redis).
//!
//! A **lane** is a game and one of its modes. The default game's default mode is the lane `""`,
//! whose queues keep the original backend's keys (`waiting:level:<n>`); every other lane is
//! `<game>:<mode>:` (`waiting:<game>:<mode>:level:<n>`). Game and mode names are plain words, so a
//! lane never contains another's.

use crate::model::{PlayerId, QueueEntry};
use std::collections::{BTreeMap, VecDeque};

/// A game and one of its modes, as queues are keyed: `""` for the default game's default mode.
pub type Lane = String;

/// The lane of `game` in `mode`, given the default game and that game's default mode.
pub fn lane(game: &str, mode: &str, default_game: &str, default_mode: &str) -> Lane {
    if game == default_game && mode == default_mode {
        String::new()
    } else {
        format!("{game}:{mode}:")
    }
}

/// The game and mode of a lane other than the default one.
pub fn parse_lane(lane: &str) -> Option<(&str, &str)> {
    lane.strip_suffix(':')?.split_once(':')
}

/// How many players a match of a lane seats, and how long a partly full queue waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seating {
    /// The fewest players a match may start with (at least 1).
    pub min: usize,
    /// The most: a match starts at once when this many wait.
    pub max: usize,
    /// With at least `min` waiting, a match starts once the oldest has waited this long.
    pub fill_after_ms: u64,
}

impl Seating {
    /// Exactly `n` players: no waiting for more, no starting with fewer.
    pub fn exactly(n: usize) -> Seating {
        Seating {
            min: n,
            max: n,
            fill_after_ms: 0,
        }
    }
}

/// What joining a queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Not enough players wait in this lane at this level yet; the player waits.
    Waiting,
    /// A match can start: these waiting players (oldest first) leave the queue together with the
    /// one who joined.
    Matched { others: Vec<QueueEntry> },
    /// The player already plays in this running match: it does not queue.
    Playing { room: String },
}

/// The decision every store makes in one atomic step, given the live players waiting in one
/// queue (oldest first, with the time each joined), when `joiner` arrives at `now_ms` (`None`:
/// nobody arrives, the queue's clock is looked at). Returns how many of the waiting leave with
/// the joiner; `None` if nobody leaves.
pub fn decide(waiting_since: &[u64], joiner: bool, seating: Seating, now_ms: u64) -> Option<usize> {
    let seated = waiting_since.len() + usize::from(joiner);
    let oldest_waited = waiting_since
        .first()
        .map(|&since| now_ms.saturating_sub(since));
    let take = if seated >= seating.max {
        seating.max
    } else if seated >= seating.min.max(1)
        && oldest_waited.is_some_and(|waited| waited >= seating.fill_after_ms)
    {
        seated
    } else {
        return None;
    };
    Some(take - usize::from(joiner))
}

/// A waiting player and when it joined.
#[derive(Debug, Clone)]
struct Waiter {
    entry: QueueEntry,
    since: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Queues {
    queues: BTreeMap<(Lane, i64), VecDeque<Waiter>>,
}

impl Queues {
    /// Queues a player in a lane at its level at `now_ms`, or starts a match with it and those
    /// waiting there (see [`decide`]). A player already waiting in another queue moves; one
    /// already waiting in this one keeps its place.
    pub fn join(&mut self, lane: &str, entry: QueueEntry, seating: Seating, now_ms: u64) -> Joined {
        let key = (lane.to_string(), entry.level);
        if self.queue_of(&entry.id).as_ref() == Some(&key) {
            return Joined::Waiting;
        }
        self.leave(&entry.id);
        let queue = self.queues.entry(key.clone()).or_default();
        let since: Vec<u64> = queue.iter().map(|w| w.since).collect();
        match decide(&since, true, seating, now_ms) {
            Some(take) => {
                let others = queue.drain(..take).map(|w| w.entry).collect();
                if queue.is_empty() {
                    self.queues.remove(&key);
                }
                Joined::Matched { others }
            }
            None => {
                queue.push_back(Waiter {
                    entry,
                    since: now_ms,
                });
                Joined::Waiting
            }
        }
    }

    /// Takes the players of a queue whose oldest has waited long enough for a match with fewer
    /// than the most (see [`decide`]), oldest first; `None` if none is due.
    pub fn fill(
        &mut self,
        lane: &str,
        level: i64,
        seating: Seating,
        now_ms: u64,
    ) -> Option<Vec<QueueEntry>> {
        let key = (lane.to_string(), level);
        let queue = self.queues.get_mut(&key)?;
        let since: Vec<u64> = queue.iter().map(|w| w.since).collect();
        let take = decide(&since, false, seating, now_ms)?;
        let taken = queue.drain(..take).map(|w| w.entry).collect();
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        Some(taken)
    }

    /// Takes a player out of whichever queue holds it. Returns whether it was waiting.
    pub fn leave(&mut self, player: &str) -> bool {
        let Some(key) = self.queue_of(player) else {
            return false;
        };
        let queue = self.queues.get_mut(&key).expect("queue_of found it");
        queue.retain(|w| w.entry.id != player);
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        true
    }

    /// The lane and level a player waits at.
    pub fn queue_of(&self, player: &str) -> Option<(Lane, i64)> {
        self.queues
            .iter()
            .find(|(_, queue)| queue.iter().any(|w| w.entry.id == player))
            .map(|(key, _)| key.clone())
    }

    /// How many wait in each lane at each level (queues with nobody are absent).
    pub fn counts(&self) -> BTreeMap<(Lane, i64), usize> {
        self.queues
            .iter()
            .map(|(k, q)| (k.clone(), q.len()))
            .collect()
    }

    pub fn waiting(&self) -> impl Iterator<Item = &QueueEntry> {
        self.queues.values().flatten().map(|w| &w.entry)
    }

    /// Removes every waiting player `keep` says no to; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&PlayerId) -> bool) -> usize {
        let before: usize = self.queues.values().map(VecDeque::len).sum();
        for queue in self.queues.values_mut() {
            queue.retain(|w| keep(&w.entry.id));
        }
        self.queues.retain(|_, queue| !queue.is_empty());
        before - self.queues.values().map(VecDeque::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: Seating = Seating {
        min: 2,
        max: 2,
        fill_after_ms: 0,
    };

    fn entry(id: &str, level: i64) -> QueueEntry {
        QueueEntry {
            id: id.into(),
            level,
        }
    }

    #[test]
    fn players_pair_only_within_a_level_first_come_first_served() {
        let mut queues = Queues::default();
        assert_eq!(queues.join("", entry("a", 1), TWO, 0), Joined::Waiting);
        assert_eq!(queues.join("", entry("b", 2), TWO, 0), Joined::Waiting);
        assert_eq!(
            queues.join("", entry("c", 1), TWO, 0),
            Joined::Matched {
                others: vec![entry("a", 1)]
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 2), 1)]));
        assert_eq!(
            queues.join("", entry("d", -7), TWO, 0),
            Joined::Waiting,
            "any integer is a level"
        );
        assert_eq!(
            queues.join("", entry("e", 2), TWO, 0),
            Joined::Matched {
                others: vec![entry("b", 2)]
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), -7), 1)]));
    }

    #[test]
    fn joining_twice_never_pairs_a_player_with_itself() {
        let mut queues = Queues::default();
        assert_eq!(queues.join("", entry("a", 3), TWO, 0), Joined::Waiting);
        assert_eq!(queues.join("", entry("a", 3), TWO, 0), Joined::Waiting);
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 3), 1)]));
        assert_eq!(
            queues.join("", entry("a", 4), TWO, 0),
            Joined::Waiting,
            "moves to level 4"
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 4), 1)]));
    }

    #[test]
    fn leaving_removes_the_entry() {
        let mut queues = Queues::default();
        queues.join("", entry("a", 1), TWO, 0);
        assert!(queues.leave("a"));
        assert!(!queues.leave("a"));
        assert_eq!(
            queues.join("", entry("b", 1), TWO, 0),
            Joined::Waiting,
            "a is gone"
        );
        queues.join("", entry("c", 9), TWO, 0);
        assert_eq!(queues.retain(|id| id != "b"), 1);
        assert_eq!(
            queues.waiting().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn each_game_and_mode_has_queues_of_its_own() {
        let mut queues = Queues::default();
        let dice = lane("liars-dice", "classic", "wizard-battle", "default");
        assert_eq!(dice, "liars-dice:classic:");
        assert_eq!(
            lane("wizard-battle", "default", "wizard-battle", "default"),
            ""
        );
        assert_eq!(parse_lane(&dice), Some(("liars-dice", "classic")));
        assert_eq!(parse_lane(""), None);
        let quick = lane("liars-dice", "quick", "wizard-battle", "default");
        assert_eq!(queues.join("", entry("a", 1), TWO, 0), Joined::Waiting);
        assert_eq!(queues.join(&dice, entry("b", 1), TWO, 0), Joined::Waiting);
        assert_eq!(queues.join(&quick, entry("c", 1), TWO, 0), Joined::Waiting);
        assert_eq!(
            queues.join(&dice, entry("d", 1), TWO, 0),
            Joined::Matched {
                others: vec![entry("b", 1)]
            },
            "only with the same game and mode"
        );
        assert_eq!(
            queues.join(&dice, entry("c", 1), TWO, 0),
            Joined::Waiting,
            "c moves"
        );
        assert_eq!(
            queues.counts(),
            BTreeMap::from([((String::new(), 1), 1), ((dice.clone(), 1), 1)])
        );
    }

    fn ids(joined: Joined) -> Vec<String> {
        match joined {
            Joined::Matched { others } => others.into_iter().map(|e| e.id).collect(),
            other => panic!("nobody was matched: {other:?}"),
        }
    }

    #[test]
    fn a_full_table_starts_at_once_and_a_partial_one_after_the_fill_time() {
        let four = Seating {
            min: 2,
            max: 4,
            fill_after_ms: 1_000,
        };
        let mut queues = Queues::default();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let joined = queues.join("x:", entry(id, 1), four, 100 * i as u64);
            assert_eq!(joined, Joined::Waiting, "{id} waits for more");
        }
        assert_eq!(
            ids(queues.join("x:", entry("d", 1), four, 300)),
            ["a", "b", "c"]
        );
        assert!(queues.counts().is_empty());

        queues.join("x:", entry("e", 1), four, 1_000);
        assert_eq!(
            queues.fill("x:", 1, four, 1_999),
            None,
            "e alone is too few"
        );
        queues.join("x:", entry("f", 1), four, 1_500);
        assert_eq!(queues.fill("x:", 1, four, 1_999), None, "not yet");
        assert_eq!(
            queues.fill("x:", 1, four, 2_000).unwrap(),
            [entry("e", 1), entry("f", 1)],
            "the oldest waited the fill time"
        );
        queues.join("x:", entry("g", 1), four, 3_000);
        assert_eq!(
            ids(queues.join("x:", entry("h", 1), four, 4_000)),
            ["g"],
            "a late joiner completes a due table"
        );
    }

    #[test]
    fn the_decision_counts_seats_and_the_oldest_wait() {
        let seating = |min, max| Seating {
            min,
            max,
            fill_after_ms: 50,
        };
        assert_eq!(
            decide(&[], true, seating(1, 1), 0),
            Some(0),
            "a solo game starts"
        );
        assert_eq!(
            decide(&[], true, seating(1, 3), 0),
            None,
            "waits for company first"
        );
        assert_eq!(
            decide(&[0], false, seating(1, 3), 50),
            Some(1),
            "then plays alone"
        );
        assert_eq!(decide(&[0, 10], true, seating(2, 3), 20), Some(2), "full");
        assert_eq!(decide(&[0, 10, 20], false, seating(2, 3), 20), Some(3));
        assert_eq!(decide(&[0], true, seating(3, 6), 1_000), None, "below min");
        assert_eq!(decide(&[0, 1], true, seating(3, 6), 49), None, "not due");
        assert_eq!(decide(&[0, 1], true, seating(3, 6), 50), Some(2));
    }
}
