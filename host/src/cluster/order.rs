//! One room's messages, put in version order for this instance.
//!
//! A stored change reaches the instance by several ways: its own actor hands over what it just
//! stored (or made in memory while Redis was away), the room's channel carries it, the room's
//! log holds it. Whichever copy comes first counts; each version is delivered once, and never
//! before the versions under it: a version past a gap waits for the gap to be filled (from the
//! log), or for the log to say that those versions are gone.

use std::collections::BTreeMap;

/// The versions of one room delivered here, and those that wait for a gap to close.
#[derive(Debug)]
pub struct Sequence<T> {
    /// The last version delivered.
    cursor: u64,
    /// Versions past the cursor, not delivered yet.
    waiting: BTreeMap<u64, T>,
}

impl<T> Sequence<T> {
    /// A sequence that has delivered every version up to `cursor`.
    pub fn after(cursor: u64) -> Self {
        Sequence {
            cursor,
            waiting: BTreeMap::new(),
        }
    }

    /// The last version delivered.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Takes a copy of `version`; one already delivered or already waiting is dropped.
    pub fn offer(&mut self, version: u64, item: T) {
        if version > self.cursor {
            self.waiting.entry(version).or_insert(item);
        }
    }

    /// The versions that can be delivered now, in order: those right after the cursor, which
    /// moves past them.
    pub fn ready(&mut self) -> Vec<(u64, T)> {
        let mut ready = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() != self.cursor + 1 {
                break;
            }
            self.cursor += 1;
            ready.push((self.cursor, entry.remove()));
        }
        ready
    }

    /// The highest version this sequence holds, delivered or waiting.
    pub fn highest(&self) -> u64 {
        self.waiting
            .last_key_value()
            .map_or(self.cursor, |(&version, _)| version)
    }

    /// Takes every version up to `cursor` as delivered elsewhere: those waiting at or below it
    /// are dropped, never delivered here.
    pub fn advance_to(&mut self, cursor: u64) {
        if cursor > self.cursor {
            self.cursor = cursor;
            self.waiting = self.waiting.split_off(&(cursor + 1));
        }
    }

    /// The versions missing before the first one that waits, if any waits.
    pub fn gap(&self) -> Option<(u64, u64)> {
        let (&first, _) = self.waiting.first_key_value()?;
        (first > self.cursor + 1).then_some((self.cursor + 1, first - 1))
    }

    /// Gives up the missing versions (the log no longer holds them): the next that waits can
    /// be delivered. Returns the versions given up.
    pub fn skip_gap(&mut self) -> Option<(u64, u64)> {
        let gap = self.gap()?;
        self.cursor = gap.1;
        Some(gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(ready: Vec<(u64, &str)>) -> Vec<u64> {
        ready.into_iter().map(|(version, _)| version).collect()
    }

    #[test]
    fn delivers_in_order_whatever_order_copies_come_in() {
        let mut sequence = Sequence::after(54);
        sequence.offer(60, "alone");
        assert!(sequence.ready().is_empty(), "60 must wait for 55 to 59");
        assert_eq!(sequence.gap(), Some((55, 59)));
        for version in [57, 55, 59, 56, 58] {
            sequence.offer(version, "log");
        }
        assert_eq!(versions(sequence.ready()), [55, 56, 57, 58, 59, 60]);
        assert_eq!(sequence.cursor(), 60);
        assert_eq!(sequence.gap(), None);
    }

    #[test]
    fn each_version_is_delivered_once() {
        let mut sequence = Sequence::after(0);
        sequence.offer(1, "actor");
        sequence.offer(1, "channel");
        assert_eq!(sequence.ready(), [(1, "actor")]);
        sequence.offer(1, "log");
        assert!(sequence.ready().is_empty());
    }

    #[test]
    fn a_sequence_moved_past_versions_drops_them_and_keeps_the_later_ones() {
        let mut sequence = Sequence::after(0);
        for version in [3, 4, 6] {
            sequence.offer(version, "channel");
        }
        assert_eq!(sequence.highest(), 6);
        sequence.advance_to(4);
        assert_eq!(sequence.cursor(), 4);
        assert_eq!(sequence.gap(), Some((5, 5)));
        sequence.offer(5, "log");
        assert_eq!(versions(sequence.ready()), [5, 6]);
        sequence.advance_to(2);
        assert_eq!(sequence.cursor(), 6, "never moved back");
        assert_eq!(sequence.highest(), 6);
    }

    #[test]
    fn a_gap_the_log_cannot_fill_is_given_up() {
        let mut sequence = Sequence::after(3);
        sequence.offer(7, "channel");
        sequence.offer(8, "channel");
        assert_eq!(sequence.skip_gap(), Some((4, 6)));
        assert_eq!(versions(sequence.ready()), [7, 8]);
        assert_eq!(sequence.skip_gap(), None);
        sequence.offer(5, "late");
        assert!(
            sequence.ready().is_empty(),
            "a version given up stays given up"
        );
    }
}
