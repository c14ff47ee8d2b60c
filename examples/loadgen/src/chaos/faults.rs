//! The faults a chaos run injects, and their order: every kind once, in a random order, then
//! kinds at random. A rollback always comes after a swap (it goes back to the version before
//! the last one).

use rand::Rng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `kill -9` of an instance, started again a moment later.
    Kill,
    /// SIGTERM: the instance drains and stops, then starts again.
    Terminate,
    /// `kill -9` of Redis, started again from its append-only file.
    RedisRestart,
    /// Every byte to and from Redis delayed.
    RedisSlow,
    /// Redis unreachable: connections cut, new ones refused.
    RedisDown,
    /// A new version of the rules uploaded: running matches move to it.
    Swap,
    /// The version before the last one made active again.
    Rollback,
    /// On a cluster: a slot moved to another node with its keys.
    SlotMove,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Kill,
        Fault::Terminate,
        Fault::RedisRestart,
        Fault::RedisSlow,
        Fault::RedisDown,
        Fault::Swap,
        Fault::Rollback,
        Fault::SlotMove,
    ];

    /// The kinds a run injects: a slot moves only on a cluster.
    pub fn kinds(cluster: bool) -> Vec<Fault> {
        Fault::ALL
            .into_iter()
            .filter(|fault| cluster || *fault != Fault::SlotMove)
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 of an instance",
            Fault::Terminate => "SIGTERM of an instance",
            Fault::RedisRestart => "Redis restart",
            Fault::RedisSlow => "Redis slow",
            Fault::RedisDown => "Redis unreachable",
            Fault::Swap => "module swap",
            Fault::Rollback => "module rollback",
            Fault::SlotMove => "slot migration",
        }
    }
}

/// The order of faults: the first `ALL.len()` are each kind once, shuffled (a swap before the
/// first rollback); after that, each is any kind (a rollback only once a swap happened, which
/// the first round guarantees).
pub struct Schedule {
    kinds: Vec<Fault>,
    first_round: Vec<Fault>,
}

impl Schedule {
    /// `kinds` holds a swap and a rollback.
    pub fn new(rng: &mut impl Rng, kinds: Vec<Fault>) -> Schedule {
        let mut first_round = kinds.clone();
        first_round.shuffle(rng);
        let swap = first_round.iter().position(|f| *f == Fault::Swap).unwrap();
        let rollback = first_round
            .iter()
            .position(|f| *f == Fault::Rollback)
            .unwrap();
        if rollback < swap {
            first_round.swap(swap, rollback);
        }
        first_round.reverse();
        Schedule { kinds, first_round }
    }

    /// How many faults make the first round.
    pub fn kinds(&self) -> usize {
        self.kinds.len()
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Fault {
        self.first_round
            .pop()
            .unwrap_or_else(|| self.kinds[rng.random_range(0..self.kinds.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    #[test]
    fn every_kind_of_the_run_comes_in_the_first_round_and_a_swap_precedes_the_first_rollback() {
        for (seed, cluster) in (0..200).zip([false, true].into_iter().cycle()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let kinds = Fault::kinds(cluster);
            let mut schedule = Schedule::new(&mut rng, kinds.clone());
            let first: Vec<Fault> = (0..schedule.kinds())
                .map(|_| schedule.next(&mut rng))
                .collect();
            assert_eq!(
                first.iter().copied().collect::<BTreeSet<_>>(),
                kinds.iter().copied().collect::<BTreeSet<_>>()
            );
            assert_eq!(first.contains(&Fault::SlotMove), cluster);
            let swap = first.iter().position(|f| *f == Fault::Swap).unwrap();
            let rollback = first.iter().position(|f| *f == Fault::Rollback).unwrap();
            assert!(swap < rollback, "seed {seed}: {first:?}");
            // After the first round, any kind of the run's may come, and only those.
            for _ in 0..20 {
                assert!(kinds.contains(&schedule.next(&mut rng)));
            }
        }
    }
}
