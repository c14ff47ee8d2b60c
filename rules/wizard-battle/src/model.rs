//! What a match holds and what players see: settings, wizards, spells, the state, the events and
//! the views. Plain data with the small helpers that read it; the rules that change it are in
//! `round` and in the `Game` implementation.

use crate::map::{Cell, Tile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub(crate) fn max_hp(self) -> i64 {
        match self {
            Class::Mage => 100,
            Class::Warrior => 300,
        }
    }

    pub(crate) fn min_level(self) -> i64 {
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
pub(crate) struct SpellSpec {
    pub(crate) class: Class,
    pub(crate) min_level: Option<i64>,
    pub(crate) needs_target: bool,
    /// Rounds after the casting round during which the spell cannot be cast again.
    pub(crate) cooldown: u64,
}

impl Spell {
    pub(crate) const ALL: [Spell; 9] = [
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

    pub(crate) fn parse(name: &str) -> Option<Spell> {
        Spell::ALL.into_iter().find(|spell| spell.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
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

    pub(crate) fn spec(self) -> SpellSpec {
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
    pub(crate) fn alive(&self) -> bool {
        self.hp > 0 && !self.left
    }

    pub(crate) fn ready_in(&self, spell: Spell, round: u64) -> u64 {
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

pub(crate) fn first_revision() -> u32 {
    1
}

impl State {
    pub(crate) fn size(&self) -> i64 {
        self.map.len() as i64
    }

    pub(crate) fn tile(&self, cell: Cell) -> Option<Tile> {
        if cell.x < 0 || cell.y < 0 || cell.x >= self.size() || cell.y >= self.size() {
            return None;
        }
        let row = self.map[cell.y as usize].as_bytes();
        Tile::from_char(row[cell.x as usize] as char)
    }

    pub(crate) fn wizard(&self, id: &str) -> Option<&Wizard> {
        self.wizards.iter().find(|w| w.id == id)
    }

    pub(crate) fn living(&self) -> impl Iterator<Item = &Wizard> {
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
