//! Matchmaking by game, mode and level, as plain data: one first-come-first-served queue per
//! lane and level. The stores run these operations atomically (under a lock in memory, as one
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

/// What joining a queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Nobody else is waiting in this lane at this level; the player waits.
    Waiting,
    /// Someone was waiting; both leave the queue together. The opponent joined first.
    Paired { opponent: QueueEntry },
}

#[derive(Debug, Default, Clone)]
pub struct Queues {
    queues: BTreeMap<(Lane, i64), VecDeque<QueueEntry>>,
}

impl Queues {
    /// Queues a player in a lane at its level, or pairs it with the longest-waiting player there.
    /// A player already waiting in another queue moves; one already waiting in this one keeps
    /// its place.
    pub fn join(&mut self, lane: &str, entry: QueueEntry) -> Joined {
        let key = (lane.to_string(), entry.level);
        if self.queue_of(&entry.id).as_ref() == Some(&key) {
            return Joined::Waiting;
        }
        self.leave(&entry.id);
        let queue = self.queues.entry(key.clone()).or_default();
        match queue.pop_front() {
            Some(opponent) => {
                if queue.is_empty() {
                    self.queues.remove(&key);
                }
                Joined::Paired { opponent }
            }
            None => {
                queue.push_back(entry);
                Joined::Waiting
            }
        }
    }

    /// Takes a player out of whichever queue holds it. Returns whether it was waiting.
    pub fn leave(&mut self, player: &str) -> bool {
        let Some(key) = self.queue_of(player) else {
            return false;
        };
        let queue = self.queues.get_mut(&key).expect("queue_of found it");
        queue.retain(|entry| entry.id != player);
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        true
    }

    /// The lane and level a player waits at.
    pub fn queue_of(&self, player: &str) -> Option<(Lane, i64)> {
        self.queues
            .iter()
            .find(|(_, queue)| queue.iter().any(|entry| entry.id == player))
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
        self.queues.values().flatten()
    }

    /// Removes every waiting player `keep` says no to; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&PlayerId) -> bool) -> usize {
        let before: usize = self.queues.values().map(VecDeque::len).sum();
        for queue in self.queues.values_mut() {
            queue.retain(|entry| keep(&entry.id));
        }
        self.queues.retain(|_, queue| !queue.is_empty());
        before - self.queues.values().map(VecDeque::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, level: i64) -> QueueEntry {
        QueueEntry {
            id: id.into(),
            level,
        }
    }

    #[test]
    fn players_pair_only_within_a_level_first_come_first_served() {
        let mut queues = Queues::default();
        assert_eq!(queues.join("", entry("a", 1)), Joined::Waiting);
        assert_eq!(queues.join("", entry("b", 2)), Joined::Waiting);
        assert_eq!(
            queues.join("", entry("c", 1)),
            Joined::Paired {
                opponent: entry("a", 1)
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 2), 1)]));
        assert_eq!(
            queues.join("", entry("d", -7)),
            Joined::Waiting,
            "any integer is a level"
        );
        assert_eq!(
            queues.join("", entry("e", 2)),
            Joined::Paired {
                opponent: entry("b", 2)
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), -7), 1)]));
    }

    #[test]
    fn joining_twice_never_pairs_a_player_with_itself() {
        let mut queues = Queues::default();
        assert_eq!(queues.join("", entry("a", 3)), Joined::Waiting);
        assert_eq!(queues.join("", entry("a", 3)), Joined::Waiting);
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 3), 1)]));
        assert_eq!(
            queues.join("", entry("a", 4)),
            Joined::Waiting,
            "moves to level 4"
        );
        assert_eq!(queues.counts(), BTreeMap::from([((String::new(), 4), 1)]));
    }

    #[test]
    fn leaving_removes_the_entry() {
        let mut queues = Queues::default();
        queues.join("", entry("a", 1));
        assert!(queues.leave("a"));
        assert!(!queues.leave("a"));
        assert_eq!(queues.join("", entry("b", 1)), Joined::Waiting, "a is gone");
        queues.join("", entry("c", 9));
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
        assert_eq!(queues.join("", entry("a", 1)), Joined::Waiting);
        assert_eq!(queues.join(&dice, entry("b", 1)), Joined::Waiting);
        assert_eq!(queues.join(&quick, entry("c", 1)), Joined::Waiting);
        assert_eq!(
            queues.join(&dice, entry("d", 1)),
            Joined::Paired {
                opponent: entry("b", 1)
            },
            "only with the same game and mode"
        );
        assert_eq!(
            queues.join(&dice, entry("c", 1)),
            Joined::Waiting,
            "c moves"
        );
        assert_eq!(
            queues.counts(),
            BTreeMap::from([((String::new(), 1), 1), ((dice.clone(), 1), 1)])
        );
    }
}
