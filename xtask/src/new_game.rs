//! `cargo xtask new-game <name>`: a game crate under `rules/` from the template in
//! `xtask/template/`, ready to build, test and load; and the check `cargo xtask test` runs on it.

use crate::wasm::{Build, build_rules};
use crate::{cargo, run};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

const TEMPLATE: [(&str, &str); 3] = [
    ("Cargo.toml", include_str!("../template/Cargo.toml.in")),
    ("src/lib.rs", include_str!("../template/src/lib.rs.in")),
    ("src/tests.rs", include_str!("../template/src/tests.rs.in")),
];

/// The game the template check generates.
const CHECKED_NAME: &str = "sample-game";

/// Writes a new game crate `rules/<name>` in the workspace at `root`; returns its folder.
pub fn new_game(root: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let folder = root.join("rules").join(name);
    ensure!(!folder.exists(), "{} exists already", folder.display());
    let type_name = type_name(name);
    for (file, text) in TEMPLATE {
        let path = folder.join(file);
        std::fs::create_dir_all(path.parent().context("a file has a folder")?)?;
        let text = text
            .replace("{{name}}", name)
            .replace("{{Type}}", &type_name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(folder)
}

/// The names the host accepts for a game (it checks them the same way): a key, a file name
/// and part of URLs.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !(first && rest && name.len() <= 64) {
        bail!(
            "{name:?} cannot name a game: use up to 64 lowercase letters, digits, `-` or `_`, \
             starting with a letter"
        );
    }
    Ok(())
}

/// `liars-dice` -> `LiarsDice`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// Generates a game from the template in a scratch workspace shaped like ours (under
/// `target/`, sharing our target folder so dependencies build once), runs its native tests and
/// builds its wasm module to `target/new-game/sample-game.wasm`, where the integration tests
/// load it into a running host.
pub fn check_template(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let scratch = target_dir.join("new-game-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    std::fs::write(scratch.join("Cargo.toml"), scratch_manifest(root)?)?;
    std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))?;
    new_game(&scratch, CHECKED_NAME)?;
    eprintln!("    testing a game made by `cargo xtask new-game`");
    run(cargo()
        .current_dir(&scratch)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["test", "--quiet", "--package", CHECKED_NAME]))?;
    let out = target_dir.join("new-game");
    let build = Build {
        only: Some(CHECKED_NAME.into()),
        rules_out: Some(out.clone()),
        target_dir: Some(target_dir.to_path_buf()),
    };
    build_rules(&scratch, &build)?;
    Ok(out.join(format!("{CHECKED_NAME}.wasm")))
}

/// Our workspace's manifest, cut to what a game crate uses: the shared package fields, the SDK
/// (by absolute path) and serde, and the wasm profile.
fn scratch_manifest(root: &Path) -> Result<String> {
    let ours: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))?.parse()?;
    let workspace = ours["workspace"].as_table().context("[workspace]")?;
    let dependencies = workspace["dependencies"]
        .as_table()
        .context("[workspace.dependencies]")?;
    let mut shared = toml::Table::new();
    for name in ["abi", "sdk"] {
        let path = root.join(name).to_string_lossy().into_owned();
        let mut dependency = toml::Table::new();
        dependency.insert("path".into(), path.into());
        shared.insert(name.into(), dependency.into());
    }
    for name in ["serde", "serde_json"] {
        shared.insert(name.into(), dependencies[name].clone());
    }
    let mut scratch_workspace = toml::Table::new();
    scratch_workspace.insert("resolver".into(), workspace["resolver"].clone());
    scratch_workspace.insert("members".into(), vec!["rules/*"].into());
    scratch_workspace.insert("package".into(), workspace["package"].clone());
    scratch_workspace.insert("dependencies".into(), shared.into());
    let mut profiles = toml::Table::new();
    profiles.insert("rules-wasm".into(), ours["profile"]["rules-wasm"].clone());
    let mut manifest = toml::Table::new();
    manifest.insert("workspace".into(), scratch_workspace.into());
    manifest.insert("profile".into(), profiles.into());
    Ok(toml::to_string(&manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("liars-dice"), "LiarsDice");
        assert_eq!(type_name("tic_tac_toe2"), "TicTacToe2");
        for bad in ["", "Chess", "9lives", "a b", "../up", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("go").is_ok());
    }
}
