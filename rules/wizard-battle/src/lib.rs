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
use sdk::{Ctx, Game, Outcome, RandomExt, Rejection, Seat};
use serde::{Deserialize, Serialize};
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

/// Per-match settings; every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The map's side, 4 to 32. Ignored when `map` is given.
    pub size: Option<usize>,
    /// A fixed map instead of a generated one: equal-length rows of `V` (valley), `R` (rock) and
    /// `W` (water), as many rows as columns.
    pub map: Option<Vec<String>>,
    /// Each player's character; Mage when absent.
    pub characters: BTreeMap<String, Class>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    Mage,
    Warrior,
}

impl Class {
    fn max_hp(self) -> i64 {
        match self {
            Class::Mage => 100,
            Class::Warrior => 300,
        }
    }

    fn min_level(self) -> i64 {
        match self {
            Class::Mage => i64::MIN,
            Class::Warrior => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Spell {
    Lightning,
    Fireball,
    Teleport,
    Heal,
    Laser,
    RockThrow,
    Spin,
    Food,
    Dash,
}

/// What a spell needs and who may cast it.
struct SpellSpec {
    class: Class,
    min_level: Option<i64>,
    needs_target: bool,
    /// Rounds after the casting round during which the spell cannot be cast again.
    cooldown: u64,
}

impl Spell {
    const ALL: [Spell; 9] = [
        Spell::Lightning,
        Spell::Fireball,
        Spell::Teleport,
        Spell::Heal,
        Spell::Laser,
        Spell::RockThrow,
        Spell::Spin,
        Spell::Food,
        Spell::Dash,
    ];

    fn parse(name: &str) -> Option<Spell> {
        Spell::ALL.into_iter().find(|spell| spell.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Spell::Lightning => "lightning",
            Spell::Fireball => "fireball",
            Spell::Teleport => "teleport",
            Spell::Heal => "heal",
            Spell::Laser => "laser",
            Spell::RockThrow => "rockThrow",
            Spell::Spin => "spin",
            Spell::Food => "food",
            Spell::Dash => "dash",
        }
    }

    fn spec(self) -> SpellSpec {
        let (class, min_level, needs_target) = match self {
            Spell::Lightning | Spell::Fireball | Spell::Teleport => (Class::Mage, None, true),
            Spell::Heal => (Class::Mage, Some(5), false),
            Spell::Laser => (Class::Mage, Some(10), true),
            Spell::RockThrow | Spell::Dash => (Class::Warrior, None, true),
            Spell::Spin | Spell::Food => (Class::Warrior, None, false),
        };
        SpellSpec {
            class,
            min_level,
            needs_target,
            cooldown: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub x: i64,
    pub y: i64,
}

impl Cell {
    fn distance(self, other: Cell) -> i64 {
        (self.x - other.x).abs() + (self.y - other.y).abs()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tile {
    Valley,
    Rock,
    Water,
}

impl Tile {
    fn from_char(c: char) -> Option<Tile> {
        match c {
            'V' => Some(Tile::Valley),
            'R' => Some(Tile::Rock),
            'W' => Some(Tile::Water),
            _ => None,
        }
    }

    fn to_char(self) -> char {
        match self {
            Tile::Valley => 'V',
            Tile::Rock => 'R',
            Tile::Water => 'W',
        }
    }
}

/// A player's action: cast one spell this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cast {
    pub spell: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Cell>,
}

impl Cast {
    pub fn at(spell: &str, x: i64, y: i64) -> Cast {
        Cast {
            spell: spell.to_string(),
            target: Some(Cell { x, y }),
        }
    }

    pub fn untargeted(spell: &str) -> Cast {
        Cast {
            spell: spell.to_string(),
            target: None,
        }
    }
}

/// A cast that passed every check, waiting for the round to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub spell: Spell,
    pub target: Option<Cell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poison {
    pub damage: i64,
    pub rounds_left: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wizard {
    pub id: String,
    pub level: i64,
    pub class: Class,
    pub hp: i64,
    pub max_hp: i64,
    pub position: Cell,
    /// The first round in which each spell may be cast again.
    pub ready_at: BTreeMap<Spell, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<Poison>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<Submitted>,
    pub left: bool,
}

impl Wizard {
    fn alive(&self) -> bool {
        self.hp > 0 && !self.left
    }

    fn ready_in(&self, spell: Spell, round: u64) -> u64 {
        self.ready_at
            .get(&spell)
            .map_or(0, |ready| ready.saturating_sub(round))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Rows of `V`, `R` and `W`.
    pub map: Vec<String>,
    pub round: u64,
    pub wizards: Vec<Wizard>,
    /// Set when the game is over; empty is a draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<String>>,
    /// The [`REVISION`] this match was set up or migrated under; states of revision 1 lack it.
    #[serde(default = "first_revision")]
    pub revision: u32,
}

fn first_revision() -> u32 {
    1
}

impl State {
    fn size(&self) -> i64 {
        self.map.len() as i64
    }

    fn tile(&self, cell: Cell) -> Option<Tile> {
        if cell.x < 0 || cell.y < 0 || cell.x >= self.size() || cell.y >= self.size() {
            return None;
        }
        let row = self.map[cell.y as usize].as_bytes();
        Tile::from_char(row[cell.x as usize] as char)
    }

    fn wizard(&self, id: &str) -> Option<&Wizard> {
        self.wizards.iter().find(|w| w.id == id)
    }

    fn living(&self) -> impl Iterator<Item = &Wizard> {
        self.wizards.iter().filter(|w| w.alive())
    }
}

/// One change of health in a round. Positions are never reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    pub target: String,
    /// `None` for poison.
    pub caster: Option<String>,
    pub spell: Option<Spell>,
    /// Negative for damage.
    pub change: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A player has cast its spell for the round (which spell stays secret until it resolves).
    Submitted {
        player: String,
        round: u64,
    },
    /// A round resolved.
    RoundResolved {
        round: u64,
        casts: Vec<CastReport>,
        effects: Vec<Effect>,
        fallen: Vec<String>,
    },
    PlayerLeft {
        player: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastReport {
    pub caster: String,
    pub spell: Spell,
}

/// What one wizard knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub round: u64,
    pub map: Vec<String>,
    pub you: OwnView,
    pub opponents: Vec<OpponentView>,
    /// Present once the game is over; empty is a draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winners: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnView {
    pub id: String,
    pub class: Class,
    pub level: i64,
    pub hp: i64,
    pub max_hp: i64,
    pub alive: bool,
    pub position: Cell,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<Poison>,
    /// The spell cast this round, until the round resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<Submitted>,
    /// The spells this wizard's character and level allow, each with the rounds until it can be
    /// cast again (0 = now).
    pub spells: BTreeMap<Spell, u64>,
}

/// What a wizard knows of an opponent: never its position, poison or spell choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpponentView {
    pub id: String,
    pub class: Class,
    pub hp: i64,
    pub max_hp: i64,
    pub alive: bool,
    pub submitted: bool,
}

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

/// Every check an action must pass, in the order a player would want to hear about them.
fn check_cast(state: &State, player: &str, cast: &Cast) -> Result<Submitted, Rejection> {
    if state.winners.is_some() {
        return Err(Rejection::new("game_over", "the game is over"));
    }
    let me = state.wizard(player).ok_or_else(|| {
        Rejection::new("not_in_match", format!("{player:?} is not in this match"))
    })?;
    if !me.alive() {
        return Err(Rejection::new("dead", "you are out of this battle"));
    }
    if me.submitted.is_some() {
        return Err(Rejection::new(
            "already_submitted",
            format!("you have already cast a spell in round {}", state.round),
        ));
    }
    let spell = Spell::parse(&cast.spell).ok_or_else(|| {
        Rejection::new(
            "unknown_spell",
            format!("there is no spell called {:?}", cast.spell),
        )
    })?;
    let spec = spell.spec();
    if spec.class != me.class {
        return Err(Rejection::new(
            "not_your_spell",
            format!("a {:?} cannot cast {}", me.class, spell.name()),
        ));
    }
    if let Some(min) = spec.min_level
        && me.level < min
    {
        return Err(Rejection::new(
            "level_too_low",
            format!(
                "{} needs level {min}; you are level {}",
                spell.name(),
                me.level
            ),
        ));
    }
    let ready_in = me.ready_in(spell, state.round);
    if ready_in > 0 {
        return Err(Rejection::new(
            "on_cooldown",
            format!("{} is ready again in {ready_in} round(s)", spell.name()),
        ));
    }
    let target = if spec.needs_target {
        let target = cast.target.ok_or_else(|| {
            Rejection::new(
                "missing_target",
                format!("{} needs a target cell", spell.name()),
            )
        })?;
        let tile = state.tile(target).ok_or_else(|| {
            Rejection::new(
                "off_map",
                format!("({}, {}) is not on the map", target.x, target.y),
            )
        })?;
        check_target(me, spell, target, tile)?;
        Some(target)
    } else {
        None
    };
    Ok(Submitted { spell, target })
}

fn check_target(me: &Wizard, spell: Spell, target: Cell, tile: Tile) -> Result<(), Rejection> {
    let moves = matches!(spell, Spell::Teleport | Spell::Dash);
    if moves && tile != Tile::Valley {
        return Err(Rejection::new(
            "blocked_cell",
            format!("you cannot stand on {:?}", tile),
        ));
    }
    if spell == Spell::Dash && me.position.distance(target) > DASH_RANGE {
        return Err(Rejection::new(
            "out_of_range",
            format!("dash reaches {DASH_RANGE} cells at most"),
        ));
    }
    if spell == Spell::RockThrow && line_direction(me.position, target).is_none() {
        return Err(Rejection::new(
            "not_in_line",
            "a rock flies along a row, a column or a diagonal from you",
        ));
    }
    Ok(())
}

/// The unit step from `from` towards `to` when they share a row, column or diagonal.
fn line_direction(from: Cell, to: Cell) -> Option<(i64, i64)> {
    let (dx, dy) = (to.x - from.x, to.y - from.y);
    let straight = dx == 0 || dy == 0 || dx.abs() == dy.abs();
    (straight && (dx, dy) != (0, 0)).then(|| (dx.signum(), dy.signum()))
}

fn on_ray(from: Cell, direction: (i64, i64), cell: Cell) -> bool {
    let (dx, dy) = (cell.x - from.x, cell.y - from.y);
    let steps = dx.abs().max(dy.abs());
    steps > 0 && dx == direction.0 * steps && dy == direction.1 * steps
}

fn blast(centre: Cell, cell: Cell) -> i64 {
    BLAST_TABLE
        .get(centre.distance(cell) as usize)
        .copied()
        .unwrap_or(0)
}

/// Resolves the current round with whatever was submitted, all at once.
fn resolve_round(state: &mut State, ctx: &mut Ctx<Event>) {
    let round = state.round;
    let standing: Vec<bool> = state.wizards.iter().map(Wizard::alive).collect();
    let casts: Vec<(usize, Submitted)> = state
        .wizards
        .iter()
        .enumerate()
        .filter(|(i, _)| standing[*i])
        .filter_map(|(i, w)| w.submitted.map(|s| (i, s)))
        .collect();
    let mut effects = Vec::new();

    for &(i, cast) in &casts {
        if let (Spell::Teleport | Spell::Dash, Some(target)) = (cast.spell, cast.target) {
            state.wizards[i].position = target;
        }
    }

    for &(i, cast) in &casts {
        if matches!(cast.spell, Spell::Heal | Spell::Food) {
            let wizard = &mut state.wizards[i];
            let healed = HEAL_AMOUNT.min(wizard.max_hp - wizard.hp).max(0);
            wizard.hp += healed;
            effects.push(Effect {
                target: wizard.id.clone(),
                caster: Some(wizard.id.clone()),
                spell: Some(cast.spell),
                change: healed,
            });
        }
    }

    let mut damage = vec![0i64; state.wizards.len()];
    let mut newly_poisoned = vec![false; state.wizards.len()];
    for &(i, cast) in &casts {
        let caster = state.wizards[i].position;
        for (j, victim) in state.wizards.iter().enumerate() {
            if j == i || !standing[j] {
                continue;
            }
            let at = victim.position;
            let hit = match (cast.spell, cast.target) {
                (Spell::Lightning, Some(t)) if t == at => 100,
                (Spell::Fireball, Some(t)) => blast(t, at),
                (Spell::Laser, Some(t)) if t.x == at.x || t.y == at.y => 35,
                (Spell::RockThrow, Some(t)) => line_direction(caster, t)
                    .filter(|&direction| on_ray(caster, direction, at))
                    .map_or(0, |_| 35),
                (Spell::Spin, _) => blast(caster, at),
                _ => 0,
            };
            if hit > 0 {
                damage[j] += hit;
                newly_poisoned[j] |= cast.spell == Spell::Fireball && cast.target == Some(at);
                effects.push(Effect {
                    target: victim.id.clone(),
                    caster: Some(state.wizards[i].id.clone()),
                    spell: Some(cast.spell),
                    change: -hit,
                });
            }
        }
    }

    for (j, wizard) in state.wizards.iter_mut().enumerate() {
        wizard.hp -= damage[j];
        if let Some(poison) = wizard.poison.as_mut().filter(|_| standing[j]) {
            wizard.hp -= poison.damage;
            effects.push(Effect {
                target: wizard.id.clone(),
                caster: None,
                spell: None,
                change: -poison.damage,
            });
            poison.rounds_left -= 1;
            if poison.rounds_left == 0 {
                wizard.poison = None;
            }
        }
        if newly_poisoned[j] {
            wizard.poison = Some(Poison {
                damage: POISON_DAMAGE,
                rounds_left: POISON_ROUNDS,
            });
        }
    }

    for &(i, cast) in &casts {
        state.wizards[i]
            .ready_at
            .insert(cast.spell, round + 1 + cast.spell.spec().cooldown);
    }
    for wizard in &mut state.wizards {
        wizard.submitted = None;
    }

    let fallen = state
        .wizards
        .iter()
        .enumerate()
        .filter(|(j, w)| standing[*j] && !w.alive())
        .map(|(_, w)| w.id.clone())
        .collect();
    ctx.broadcast(Event::RoundResolved {
        round,
        casts: casts
            .iter()
            .map(|&(i, cast)| CastReport {
                caster: state.wizards[i].id.clone(),
                spell: cast.spell,
            })
            .collect(),
        effects,
        fallen,
    });

    if state.living().count() < 2 {
        finish(state);
    } else {
        state.round += 1;
    }
}

/// Ends the game. No event of its own: the host tells every player `gameOver` from the outcome,
/// so an event here would reach them twice.
fn finish(state: &mut State) {
    state.winners = Some(state.living().map(|w| w.id.clone()).collect());
}

fn cells(size: usize) -> impl Iterator<Item = Cell> {
    let size = size as i64;
    (0..size).flat_map(move |y| (0..size).map(move |x| Cell { x, y }))
}

fn tile_at(map: &[String], cell: Cell) -> Tile {
    Tile::from_char(map[cell.y as usize].as_bytes()[cell.x as usize] as char)
        .expect("maps are validated")
}

fn validate_map(rows: &[String]) -> Result<Vec<String>, Rejection> {
    let size = rows.len();
    let square = rows.iter().all(|row| row.len() == size);
    let known = rows
        .iter()
        .all(|row| row.chars().all(|c| Tile::from_char(c).is_some()));
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) || !square || !known {
        return Err(Rejection::new(
            "invalid_config",
            format!(
                "a map is {MIN_SIZE} to {MAX_SIZE} rows of as many V, R or W characters as rows"
            ),
        ));
    }
    Ok(rows.to_vec())
}

fn generate_map(
    size: usize,
    players: usize,
    ctx: &mut Ctx<Event>,
) -> Result<Vec<String>, Rejection> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(Rejection::new(
            "invalid_config",
            format!("the map size must be {MIN_SIZE} to {MAX_SIZE}, not {size}"),
        ));
    }
    if players > size * size / 4 {
        return Err(Rejection::new(
            "invalid_config",
            format!("{players} players do not fit on a {size}x{size} map"),
        ));
    }
    // Redraw until there is room for everybody; with half the tiles valley and at most a quarter
    // of the cells needed, a redraw is rare and the loop ends quickly.
    loop {
        let map: Vec<String> = (0..size)
            .map(|_| {
                (0..size)
                    .map(|_| {
                        let tile = if ctx.rng().random_bool(0.5) {
                            Tile::Valley
                        } else {
                            Tile::Rock
                        };
                        tile.to_char()
                    })
                    .collect()
            })
            .collect();
        let valleys = map
            .iter()
            .flat_map(|row| row.chars())
            .filter(|&c| c == 'V')
            .count();
        if valleys >= players {
            return Ok(map);
        }
    }
}

mod bot;

#[cfg(test)]
mod tests;
