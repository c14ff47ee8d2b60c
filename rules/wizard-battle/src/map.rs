//! The square map: cells, tiles, and a match's map drawn from its seed or checked from its
//! settings.

use crate::{Event, MAX_SIZE, MIN_SIZE};
use sdk::{Ctx, RandomExt, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub x: i64,
    pub y: i64,
}

impl Cell {
    pub(crate) fn distance(self, other: Cell) -> i64 {
        (self.x - other.x).abs() + (self.y - other.y).abs()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    Valley,
    Rock,
    Water,
}

impl Tile {
    pub(crate) fn from_char(c: char) -> Option<Tile> {
        match c {
            'V' => Some(Tile::Valley),
            'R' => Some(Tile::Rock),
            'W' => Some(Tile::Water),
            _ => None,
        }
    }

    pub(crate) fn to_char(self) -> char {
        match self {
            Tile::Valley => 'V',
            Tile::Rock => 'R',
            Tile::Water => 'W',
        }
    }
}

pub(crate) fn cells(size: usize) -> impl Iterator<Item = Cell> {
    let size = size as i64;
    (0..size).flat_map(move |y| (0..size).map(move |x| Cell { x, y }))
}

pub(crate) fn tile_at(map: &[String], cell: Cell) -> Tile {
    Tile::from_char(map[cell.y as usize].as_bytes()[cell.x as usize] as char)
        .expect("maps are validated")
}

pub(crate) fn validate_map(rows: &[String]) -> Result<Vec<String>, Rejection> {
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

pub(crate) fn generate_map(
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
