//! A cast checked when it is submitted, and a round resolved once every living wizard has cast.

use crate::map::{Cell, Tile};
use crate::model::{Cast, CastReport, Effect, Event, Poison, Spell, State, Submitted, Wizard};
use crate::{BLAST_TABLE, DASH_RANGE, HEAL_AMOUNT, POISON_DAMAGE, POISON_ROUNDS};
use sdk::{Ctx, Rejection};

/// Every check an action must pass, in the order a player would want to hear about them.
pub(crate) fn check_cast(state: &State, player: &str, cast: &Cast) -> Result<Submitted, Rejection> {
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

pub(crate) fn check_target(
    me: &Wizard,
    spell: Spell,
    target: Cell,
    tile: Tile,
) -> Result<(), Rejection> {
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
pub(crate) fn line_direction(from: Cell, to: Cell) -> Option<(i64, i64)> {
    let (dx, dy) = (to.x - from.x, to.y - from.y);
    let straight = dx == 0 || dy == 0 || dx.abs() == dy.abs();
    (straight && (dx, dy) != (0, 0)).then(|| (dx.signum(), dy.signum()))
}

pub(crate) fn on_ray(from: Cell, direction: (i64, i64), cell: Cell) -> bool {
    let (dx, dy) = (cell.x - from.x, cell.y - from.y);
    let steps = dx.abs().max(dy.abs());
    steps > 0 && dx == direction.0 * steps && dy == direction.1 * steps
}

pub(crate) fn blast(centre: Cell, cell: Cell) -> i64 {
    BLAST_TABLE
        .get(centre.distance(cell) as usize)
        .copied()
        .unwrap_or(0)
}

/// Resolves the current round with whatever was submitted, all at once.
pub(crate) fn resolve_round(state: &mut State, ctx: &mut Ctx<Event>) {
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
pub(crate) fn finish(state: &mut State) {
    state.winners = Some(state.living().map(|w| w.id.clone()).collect());
}
