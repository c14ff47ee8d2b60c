//! Matchmaking by level, as plain data: one first-come-first-served queue per level. The stores
//! run these operations atomically (under a lock in memory, as one script in Redis).

use crate::model::{PlayerId, QueueEntry};
use std::collections::{BTreeMap, VecDeque};

/// What joining a queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Nobody else is waiting at this level; the player waits.
    Waiting,
    /// Someone was waiting; both leave the queue together. The opponent joined first.
    Paired { opponent: QueueEntry },
}

#[derive(Debug, Default, Clone)]
pub struct Queues {
    levels: BTreeMap<i64, VecDeque<QueueEntry>>,
}

impl Queues {
    /// Queues a player at its level, or pairs it with the longest-waiting player there. A player
    /// already waiting at another level moves; one already waiting at this level keeps its place.
    pub fn join(&mut self, entry: QueueEntry) -> Joined {
        if self.level_of(&entry.id) == Some(entry.level) {
            return Joined::Waiting;
        }
        self.leave(&entry.id);
        let queue = self.levels.entry(entry.level).or_default();
        match queue.pop_front() {
            Some(opponent) => {
                if queue.is_empty() {
                    self.levels.remove(&entry.level);
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
        let Some(level) = self.level_of(player) else {
            return false;
        };
        let queue = self.levels.get_mut(&level).expect("level_of found it");
        queue.retain(|entry| entry.id != player);
        if queue.is_empty() {
            self.levels.remove(&level);
        }
        true
    }

    pub fn level_of(&self, player: &str) -> Option<i64> {
        self.levels
            .iter()
            .find(|(_, queue)| queue.iter().any(|entry| entry.id == player))
            .map(|(level, _)| *level)
    }

    /// How many wait at each level (levels with nobody are absent).
    pub fn counts(&self) -> BTreeMap<i64, usize> {
        self.levels.iter().map(|(l, q)| (*l, q.len())).collect()
    }

    pub fn waiting(&self) -> impl Iterator<Item = &QueueEntry> {
        self.levels.values().flatten()
    }

    /// Removes every waiting player `keep` says no to; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&PlayerId) -> bool) -> usize {
        let before: usize = self.levels.values().map(VecDeque::len).sum();
        for queue in self.levels.values_mut() {
            queue.retain(|entry| keep(&entry.id));
        }
        self.levels.retain(|_, queue| !queue.is_empty());
        before - self.levels.values().map(VecDeque::len).sum::<usize>()
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
        assert_eq!(queues.join(entry("a", 1)), Joined::Waiting);
        assert_eq!(queues.join(entry("b", 2)), Joined::Waiting);
        assert_eq!(
            queues.join(entry("c", 1)),
            Joined::Paired {
                opponent: entry("a", 1)
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([(2, 1)]));
        assert_eq!(
            queues.join(entry("d", -7)),
            Joined::Waiting,
            "any integer is a level"
        );
        assert_eq!(
            queues.join(entry("e", 2)),
            Joined::Paired {
                opponent: entry("b", 2)
            }
        );
        assert_eq!(queues.counts(), BTreeMap::from([(-7, 1)]));
    }

    #[test]
    fn joining_twice_never_pairs_a_player_with_itself() {
        let mut queues = Queues::default();
        assert_eq!(queues.join(entry("a", 3)), Joined::Waiting);
        assert_eq!(queues.join(entry("a", 3)), Joined::Waiting);
        assert_eq!(queues.counts(), BTreeMap::from([(3, 1)]));
        assert_eq!(
            queues.join(entry("a", 4)),
            Joined::Waiting,
            "moves to level 4"
        );
        assert_eq!(queues.counts(), BTreeMap::from([(4, 1)]));
    }

    #[test]
    fn leaving_removes_the_entry() {
        let mut queues = Queues::default();
        queues.join(entry("a", 1));
        assert!(queues.leave("a"));
        assert!(!queues.leave("a"));
        assert_eq!(queues.join(entry("b", 1)), Joined::Waiting, "a is gone");
        queues.join(entry("c", 9));
        assert_eq!(queues.retain(|id| id != "b"), 1);
        assert_eq!(
            queues.waiting().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }
}
