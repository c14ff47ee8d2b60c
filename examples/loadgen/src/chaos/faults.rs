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
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Kill,
        Fault::Terminate,
        Fault::RedisRestart,
        Fault::RedisSlow,
        Fault::RedisDown,
        Fault::Swap,
        Fault::Rollback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 of an instance",
            Fault::Terminate => "SIGTERM of an instance",
            Fault::RedisRestart => "Redis restart",
            Fault::RedisSlow => "Redis slow",
            Fault::RedisDown => "Redis unreachable",
            Fault::Swap => "module swap",
            Fault::Rollback => "module rollback",
        }
    }
}

/// The order of faults: the first `ALL.len()` are each kind once, shuffled (a swap before the
/// first rollback); after that, each is any kind (a rollback only once a swap happened, which
/// the first round guarantees).
pub struct Schedule {
    first_round: Vec<Fault>,
}

impl Schedule {
    pub fn new(rng: &mut impl Rng) -> Schedule {
        let mut first_round = Fault::ALL.to_vec();
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
        Schedule { first_round }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Fault {
        self.first_round
            .pop()
            .unwrap_or_else(|| Fault::ALL[rng.random_range(0..Fault::ALL.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    #[test]
    fn every_kind_comes_in_the_first_round_and_a_swap_precedes_the_first_rollback() {
        for seed in 0..200 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut schedule = Schedule::new(&mut rng);
            let first: Vec<Fault> = (0..Fault::ALL.len())
                .map(|_| schedule.next(&mut rng))
                .collect();
            assert_eq!(
                first.iter().copied().collect::<BTreeSet<_>>().len(),
                Fault::ALL.len()
            );
            let swap = first.iter().position(|f| *f == Fault::Swap).unwrap();
            let rollback = first.iter().position(|f| *f == Fault::Rollback).unwrap();
            assert!(swap < rollback, "seed {seed}: {first:?}");
            // After the first round, any kind may come.
            let _ = schedule.next(&mut rng);
        }
    }
}
