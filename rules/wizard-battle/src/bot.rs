//! The game's own bot, from a wizard's view alone.
//!
//! A wizard never sees where its opponents stand, so the bot reasons about where they may be:
//! any valley cell but its own, each as likely. It weighs each ready spell at each cell by the
//! damage it deals on average over those cells (counting the poison a direct fireball leaves),
//! and healing by how hurt it is, then picks at random (from the host's seed) among the casts
//! worth nearly as much as the best: the same cell every round could miss forever.

use crate::{Cast, Cell, DASH_RANGE, HEAL_AMOUNT, POISON_DAMAGE, POISON_ROUNDS};
use crate::{Spell, View, WizardBattle, line_direction, on_ray};
use sdk::{RandomExt, Rng};

impl sdk::Bot for WizardBattle {
    fn act(view: View, me: &str, rng: &mut Rng) -> Option<Cast> {
        let you = &view.you;
        if view.winners.is_some() || !you.alive || you.submitted.is_some() || you.id != me {
            return None;
        }
        let board = Board::of(&view);
        let rivals = view.opponents.iter().filter(|o| o.alive).count() as f64;
        let ready: Vec<Spell> = you
            .spells
            .iter()
            .filter(|(_, ready_in)| **ready_in == 0)
            .map(|(spell, _)| *spell)
            .collect();
        // Each ready spell's casts, each with its worth: the damage one can expect to deal.
        let mut attacks: Vec<(Spell, Vec<(f64, Cast)>)> = Vec::new();
        for &spell in &ready {
            let casts: Vec<(f64, Cast)> = match spell {
                Spell::Spin => vec![(rivals * board.spin(you.position), Cast::untargeted("spin"))],
                Spell::Lightning | Spell::Fireball | Spell::Laser | Spell::RockThrow => board
                    .cells()
                    .filter(|&t| {
                        spell != Spell::RockThrow || line_direction(you.position, t).is_some()
                    })
                    .map(|t| {
                        (
                            rivals * board.expected(spell, you.position, t),
                            Cast::at(spell.name(), t.x, t.y),
                        )
                    })
                    .filter(|(value, _)| *value > 0.0)
                    .collect(),
                _ => continue,
            };
            attacks.push((spell, casts));
        }
        let best_attack = attacks
            .iter()
            .flat_map(|(_, casts)| casts.iter().map(|(value, _)| *value))
            .fold(0.0, f64::max);
        let mut choices = attacks;
        for &spell in &ready {
            match spell {
                Spell::Heal | Spell::Food => {
                    let healed = HEAL_AMOUNT.min(you.max_hp - you.hp) as f64;
                    // Worth more the closer to death: at full health it is worth nothing.
                    let danger = 1.0 - you.hp as f64 / you.max_hp as f64;
                    choices.push((
                        spell,
                        vec![(healed * danger * 2.0, Cast::untargeted(spell.name()))],
                    ));
                }
                Spell::Teleport | Spell::Dash => {
                    // Where its attacks cannot reach, an opponent is safe from it for good unless
                    // one of them moves: moving is worth what the attacks leave out.
                    let reach = |c: Cell| {
                        spell == Spell::Teleport || you.position.distance(c) <= DASH_RANGE
                    };
                    let worth = best_attack * (1.0 - board.coverage(&ready, you.position))
                        + if you.poison.is_some() { 2.0 } else { 0.0 };
                    let casts = board
                        .valleys
                        .iter()
                        .filter(|&&c| reach(c))
                        .map(|c| (worth, Cast::at(spell.name(), c.x, c.y)))
                        .collect();
                    choices.push((spell, casts));
                }
                _ => {}
            }
        }
        // It cannot learn where its opponents hide, so the one best cast every round could miss
        // forever: it picks a spell, then a cast of it, among those worth nearly the best.
        let worth = |casts: &[(f64, Cast)]| casts.iter().map(|(v, _)| *v).fold(0.0, f64::max);
        let top = choices
            .iter()
            .map(|(_, casts)| worth(casts))
            .fold(0.0, f64::max);
        if top <= 0.0 {
            return None;
        }
        let spells: Vec<&Vec<(f64, Cast)>> = choices
            .iter()
            .map(|(_, casts)| casts)
            .filter(|casts| worth(casts) >= top * GOOD_ENOUGH)
            .collect();
        let casts = spells[rng.random_range(0..spells.len())];
        let best = worth(casts);
        let good: Vec<&Cast> = casts
            .iter()
            .filter(|(value, _)| *value >= best * GOOD_ENOUGH)
            .map(|(_, cast)| cast)
            .collect();
        Some(good[rng.random_range(0..good.len())].clone())
    }
}

/// The share of the best cast's value a cast needs to be a choice.
const GOOD_ENOUGH: f64 = 0.6;

/// The map as the bot sees it: where an opponent may stand.
struct Board {
    size: i64,
    /// Every valley cell but the bot's own.
    valleys: Vec<Cell>,
}

impl Board {
    fn of(view: &View) -> Board {
        let size = view.map.len() as i64;
        let valleys = (0..size)
            .flat_map(|y| (0..size).map(move |x| Cell { x, y }))
            .filter(|c| view.map[c.y as usize].as_bytes().get(c.x as usize) == Some(&b'V'))
            .filter(|&c| c != view.you.position)
            .collect();
        Board { size, valleys }
    }

    fn cells(&self) -> impl Iterator<Item = Cell> + '_ {
        (0..self.size).flat_map(move |y| (0..self.size).map(move |x| Cell { x, y }))
    }

    /// The damage one opponent takes on average from `spell` cast at `target` from `from`.
    fn expected(&self, spell: Spell, from: Cell, target: Cell) -> f64 {
        let poison = (POISON_DAMAGE * i64::from(POISON_ROUNDS)) as f64;
        self.average(|at| match spell {
            Spell::Lightning => f64::from(u8::from(at == target)) * 100.0,
            Spell::Fireball => {
                let direct = if at == target { poison } else { 0.0 };
                blast(target, at) + direct
            }
            Spell::Laser if at.x == target.x || at.y == target.y => 35.0,
            Spell::RockThrow => line_direction(from, target)
                .filter(|&d| on_ray(from, d, at))
                .map_or(0.0, |_| 35.0),
            _ => 0.0,
        })
    }

    /// The share of the cells an opponent may stand on that one of `ready` can hurt from `from`.
    fn coverage(&self, ready: &[Spell], from: Cell) -> f64 {
        if self.valleys.is_empty() {
            return 1.0;
        }
        let reached = |at: Cell| {
            ready.iter().any(|spell| match spell {
                Spell::Lightning | Spell::Fireball | Spell::Laser => true,
                Spell::RockThrow => line_direction(from, at).is_some(),
                Spell::Spin => blast(from, at) > 0.0,
                _ => false,
            })
        };
        self.valleys.iter().filter(|&&at| reached(at)).count() as f64 / self.valleys.len() as f64
    }

    fn spin(&self, from: Cell) -> f64 {
        self.average(|at| blast(from, at))
    }

    fn average(&self, damage: impl Fn(Cell) -> f64) -> f64 {
        if self.valleys.is_empty() {
            return 0.0;
        }
        self.valleys.iter().map(|&at| damage(at)).sum::<f64>() / self.valleys.len() as f64
    }
}

fn blast(centre: Cell, at: Cell) -> f64 {
    crate::round::blast(centre, at) as f64
}

#[cfg(test)]
mod tests {
    use crate::{Cast, Cell, Class, Config, Spell, WizardBattle};
    use sdk::testing::Match;
    use sdk::{RandomExt, Rng};

    type Battle = Match<WizardBattle>;

    /// What `examples/example-bot` does: a random spell that is ready, at a random cell that
    /// suits it (a valley for a move, on a line for a rock), from its own view.
    fn random_cast(game: &Battle, me: &str, rng: &mut Rng) -> Cast {
        let view = game.view(me);
        let ready: Vec<Spell> = view
            .you
            .spells
            .iter()
            .filter(|(_, r)| **r == 0)
            .map(|(s, _)| *s)
            .collect();
        let spell = ready[rng.random_range(0..ready.len())];
        let size = view.map.len() as i64;
        let cells: Vec<Cell> = (0..size)
            .flat_map(|y| (0..size).map(move |x| Cell { x, y }))
            .collect();
        let valley = |c: &Cell| view.map[c.y as usize].as_bytes()[c.x as usize] == b'V';
        let fits = |c: &Cell| match spell {
            Spell::Teleport => valley(c),
            Spell::Dash => valley(c) && view.you.position.distance(*c) <= crate::DASH_RANGE,
            Spell::RockThrow => crate::line_direction(view.you.position, *c).is_some(),
            _ => true,
        };
        let spots: Vec<&Cell> = cells.iter().filter(|c| fits(c)).collect();
        match (spell.spec().needs_target, spots.is_empty()) {
            (false, _) | (true, true) => Cast::untargeted(spell.name()),
            (true, false) => {
                let at = spots[rng.random_range(0..spots.len())];
                Cast::at(spell.name(), at.x, at.y)
            }
        }
    }

    fn battle(seed: u64, class: Class, level: i64) -> Battle {
        let characters = [("bot", class), ("rnd", class)];
        let config = Config {
            characters: characters
                .iter()
                .map(|(id, c)| (id.to_string(), *c))
                .collect(),
            ..Config::default()
        };
        Battle::start(seed, &[("bot", level), ("rnd", level)], config).unwrap()
    }

    #[test]
    fn the_bot_beats_the_example_bots_random_play() {
        let (mut won, mut lost) = (0, 0);
        // Mages at each level that unlocks a spell. (Two warriors that heal as often as they may can
        // outlast any aim: their duel proves nothing about either.)
        for (class, level) in [(Class::Mage, 1), (Class::Mage, 5), (Class::Mage, 10)] {
            for seed in 0..40 {
                let mut game = battle(seed, class, level);
                let mut rng = Rng::from_seed(seed);
                while game.outcome().is_none() {
                    assert!(game.turn() < 500, "a battle of {class:?}s ends ({seed})");
                    let turn = game.turn();
                    if let Some(played) = game.play_bot("bot", seed ^ turn) {
                        played.unwrap_or_else(|e| panic!("the bot was refused: {e}"));
                    }
                    if game.outcome().is_some() || game.turn() != turn {
                        continue;
                    }
                    let cast = random_cast(&game, "rnd", &mut rng);
                    if game.act("rnd", &cast).is_err() {
                        game.timeout();
                    }
                }
                match game.outcome().unwrap().winners.as_slice() {
                    [w] if w == "bot" => won += 1,
                    [w] if w == "rnd" => lost += 1,
                    _ => {}
                }
            }
        }
        assert!(won > 2 * lost, "the bot won {won} and lost {lost} of 120");
    }

    #[test]
    fn bots_play_whole_battles_and_wait_once_they_have_cast() {
        for seed in 0..20 {
            let seats = [("a", 10), ("b", 5), ("c", 1)];
            let mut game = Battle::start(seed, &seats, Config::default()).unwrap();
            while game.outcome().is_none() {
                assert!(game.turn() < 500, "a battle ends");
                let turn = game.turn();
                for (seat, _) in seats {
                    if game.turn() != turn || game.outcome().is_some() {
                        break;
                    }
                    let alive = game.view(seat).you.alive;
                    match game.play_bot(seat, seed + turn) {
                        Some(played) => {
                            played.unwrap_or_else(|e| panic!("{seat} was refused: {e}"));
                        }
                        None => assert!(!alive, "a living bot always casts"),
                    }
                    if game.turn() == turn {
                        assert!(game.bot(seat, 0).is_none(), "{seat} casts twice in a round");
                    }
                }
            }
            for (seat, _) in seats {
                assert!(game.bot(seat, 0).is_none(), "nobody casts after the end");
            }
        }
    }
}
