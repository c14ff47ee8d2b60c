//! Wizard battle, the reference game.
//!
//! Two or more wizards stand on a square map, each knowing only its own position. Every round,
//! each living wizard casts one spell; when all have cast (or the round's time runs out) the round
//! resolves at once for everybody. A wizard whose health drops to 0 is out; when fewer than two
//! are left the game is over and the survivors (if any) win. Nobody left standing is a draw.
//!
//! # Rules
//!
//! * **Map**: `size`×`size` tiles (default 8), each valley or rock with equal odds, drawn from the
//!   match's seed (a configured `map` may also use water). Wizards start on distinct valley tiles
//!   and may only move onto valley. Distance is Manhattan distance.
//! * **Characters**: a Mage has 100 health; a Warrior 300 and needs level 2.
//! * **Mage spells**: `lightning` 100 damage to whoever stands on the target cell; `fireball` 50 /
//!   30 / 15 at distance 0 / 1 / 2 from the target cell, and a direct hit poisons; `teleport` to any
//!   valley cell; `heal` +30 (level 5); `laser` 35 to whoever is on the target cell's row or column
//!   (level 10).
//! * **Warrior spells**: `rockThrow` 35 to whoever stands on the line (row, column or diagonal)
//!   from the warrior through the target cell; `spin` the fireball table around the warrior;
//!   `food` +30; `dash` to a valley cell at most 3 away.
//! * **Poison**: 10 damage at the end of each of the next 3 rounds, then it wears off. A new
//!   direct hit restarts it.
//! * **Cooldowns**: a spell cast in a round cannot be cast in the next one.
//! * **Healing** never goes above the character's maximum health.
//! * **A spell never hits its caster.**
//!
//! A round resolves in this order: moves; heals; damage from every attack, computed from the
//! positions after the moves; poison already running ticks; new poison starts; cooldowns start.
//!
//! # Refusals
//!
//! Each refusal changes nothing and carries one of these codes: `game_over`, `dead`,
//! `already_submitted`, `unknown_spell`, `not_your_spell`, `level_too_low`, `on_cooldown`,
//! `missing_target`, `off_map`, `blocked_cell`, `out_of_range`, `not_in_line`; and from the SDK,
//! `not_in_match` and `invalid_action`. At setup: `not_enough_players`, `duplicate_player`,
//! `invalid_config`, `level_too_low`.

use sdk::rand::seq::SliceRandom;
use sdk::{Ctx, Game, Outcome, Rejection, Seat};
use std::collections::BTreeMap;

pub struct WizardBattle;

sdk::export_game!(WizardBattle, migrations, bot);

/// The layout of [`State`] this version writes. Revision 1 (the first release) had no
/// `revision` field; revision 2 added it. [`Game::migrate`] carries older matches over.
pub const REVISION: u32 = 2;

const DEFAULT_SIZE: usize = 8;
const MIN_SIZE: usize = 4;
const MAX_SIZE: usize = 32;
const POISON_DAMAGE: i64 = 10;
const POISON_ROUNDS: u32 = 3;
const HEAL_AMOUNT: i64 = 30;
const DASH_RANGE: i64 = 3;
/// Damage at distance 0, 1 and 2 from the centre, for fireball and spin.
const BLAST_TABLE: [i64; 3] = [50, 30, 15];

mod map;
mod model;
mod round;

pub use map::Cell;
use map::{Tile, cells, generate_map, tile_at, validate_map};
pub use model::*;
use round::{check_cast, finish, line_direction, on_ray, resolve_round};

impl Game for WizardBattle {
    type Config = Config;
    type State = State;
    type Action = Cast;
    type View = View;
    type Event = Event;

    fn setup(players: &[Seat], config: Config, ctx: &mut Ctx<Event>) -> Result<State, Rejection> {
        if players.len() < 2 {
            return Err(Rejection::new(
                "not_enough_players",
                "a wizard battle needs at least two players",
            ));
        }
        sdk::distinct_seats(players)?;
        if let Some(stranger) = config
            .characters
            .keys()
            .find(|id| !players.iter().any(|seat| &seat.id == *id))
        {
            return Err(Rejection::new(
                "invalid_config",
                format!("a character is chosen for {stranger:?}, who is not in this match"),
            ));
        }
        let map = match &config.map {
            Some(rows) => validate_map(rows)?,
            None => generate_map(config.size.unwrap_or(DEFAULT_SIZE), players.len(), ctx)?,
        };
        let mut valleys: Vec<Cell> = cells(map.len())
            .filter(|&cell| tile_at(&map, cell) == Tile::Valley)
            .collect();
        if valleys.len() < players.len() {
            return Err(Rejection::new(
                "invalid_config",
                "the map has fewer valley tiles than players",
            ));
        }
        valleys.shuffle(ctx.rng());

        let mut wizards = Vec::with_capacity(players.len());
        for (seat, position) in players.iter().zip(valleys) {
            let class = config
                .characters
                .get(&seat.id)
                .copied()
                .unwrap_or(Class::Mage);
            if seat.level < class.min_level() {
                return Err(Rejection::new(
                    "level_too_low",
                    format!(
                        "{:?} needs level {} to play a warrior, not {}",
                        seat.id,
                        class.min_level(),
                        seat.level
                    ),
                ));
            }
            wizards.push(Wizard {
                id: seat.id.clone(),
                level: seat.level,
                class,
                hp: class.max_hp(),
                max_hp: class.max_hp(),
                position,
                ready_at: BTreeMap::new(),
                poison: None,
                submitted: None,
                left: false,
            });
        }
        Ok(State {
            map,
            round: 1,
            wizards,
            winners: None,
            revision: REVISION,
        })
    }

    fn action(
        state: &mut State,
        player: &str,
        cast: Cast,
        ctx: &mut Ctx<Event>,
    ) -> Result<(), Rejection> {
        let submitted = check_cast(state, player, &cast)?;
        let round = state.round;
        let wizard = state
            .wizards
            .iter_mut()
            .find(|w| w.id == player)
            .expect("check_cast found the wizard");
        wizard.submitted = Some(submitted);
        ctx.broadcast(Event::Submitted {
            player: player.to_string(),
            round,
        });
        if state.living().all(|wizard| wizard.submitted.is_some()) {
            resolve_round(state, ctx);
        }
        Ok(())
    }

    fn timeout(state: &mut State, ctx: &mut Ctx<Event>) {
        if state.winners.is_none() {
            resolve_round(state, ctx);
        }
    }

    /// Carries a match over from an earlier revision of these rules: every field it had keeps
    /// its meaning, and the state is stamped with this revision. A state from a later revision
    /// (a rollback) is not read: that match finishes on the version it started with.
    fn migrate(old: sdk::serde_json::Value) -> Option<State> {
        let mut state: State = sdk::serde_json::from_value(old).ok()?;
        if state.revision > REVISION {
            return None;
        }
        state.revision = REVISION;
        Some(state)
    }

    fn leave(state: &mut State, player: &str, ctx: &mut Ctx<Event>) {
        if state.winners.is_some() {
            return;
        }
        let Some(wizard) = state.wizards.iter_mut().find(|w| w.id == player) else {
            return;
        };
        if wizard.left {
            return;
        }
        wizard.left = true;
        wizard.submitted = None;
        ctx.broadcast(Event::PlayerLeft {
            player: player.to_string(),
        });
        if state.living().count() < 2 {
            finish(state);
        } else if state.living().all(|w| w.submitted.is_some()) {
            resolve_round(state, ctx);
        }
    }

    fn check(state: &State, seats: &[Seat]) -> Result<(), String> {
        let size = state.map.len();
        if size == 0 {
            return Err("the map is empty".into());
        }
        if let Some(row) = state
            .map
            .iter()
            .find(|row| row.len() != size || row.chars().any(|c| Tile::from_char(c).is_none()))
        {
            return Err(format!("the map row {row:?} is not {size} tiles"));
        }
        let seated = |id: &str| seats.iter().any(|seat| seat.id == id);
        if state.wizards.len() != seats.len()
            || !state.wizards.iter().all(|w| seated(&w.id))
            || !seats.iter().all(|seat| state.wizard(&seat.id).is_some())
        {
            return Err("its wizards are not the match's seats".into());
        }
        if let Some(w) = state
            .wizards
            .iter()
            .find(|w| state.tile(w.position).is_none())
        {
            return Err(format!("{} stands off the map", w.id));
        }
        Ok(())
    }

    fn view(state: &State, player: &str) -> View {
        let me = state
            .wizard(player)
            .expect("the SDK only asks for seated players");
        View {
            round: state.round,
            map: state.map.clone(),
            you: OwnView {
                id: me.id.clone(),
                class: me.class,
                level: me.level,
                hp: me.hp,
                max_hp: me.max_hp,
                alive: me.alive(),
                position: me.position,
                poison: me.poison,
                submitted: me.submitted,
                spells: Spell::ALL
                    .into_iter()
                    .filter(|spell| {
                        let spec = spell.spec();
                        spec.class == me.class && spec.min_level.is_none_or(|min| me.level >= min)
                    })
                    .map(|spell| (spell, me.ready_in(spell, state.round)))
                    .collect(),
            },
            opponents: state
                .wizards
                .iter()
                .filter(|w| w.id != player)
                .map(|w| OpponentView {
                    id: w.id.clone(),
                    class: w.class,
                    hp: w.hp,
                    max_hp: w.max_hp,
                    alive: w.alive(),
                    submitted: w.submitted.is_some(),
                })
                .collect(),
            winners: state.winners.clone(),
        }
    }

    fn turn(state: &State) -> u64 {
        state.round
    }

    fn outcome(state: &State) -> Option<Outcome> {
        state.winners.clone().map(|winners| Outcome { winners })
    }
}

mod bot;

#[cfg(test)]
mod tests;
