//! Project automation. Run as `cargo xtask <command>`:
//!
//! * `build-rules [GAME]`: compile every rules crate under `rules/` to
//!   `target/rules/<name>.wasm`, and every test fixture under `tests/fixtures/` to
//!   `target/fixtures/<name>.wasm`; or only the rules crate `GAME`.
//! * `new-game NAME`: make `rules/NAME`, a game crate from the template in `xtask/template/`
//!   (a counting race with a bot, its native tests), and build it.
//! * `test`: `build-rules`, check the template (a game made by `new-game` passes its tests and
//!   builds, for the integration tests to load), install the npm packages of the pages (`web/`)
//!   and of the tests (`tests/js`: socket.io-client, puppeteer-core), `redis-server`, `redis-cli` and
//!   Debian's `chromium` if missing, build the `gamehost` binary (the multi-instance tests run it
//!   as processes) and `loadgen` (for the chaos run), then every test of the workspace. This
//!   is the README's test command.
//! * `run [ARGS...]`: `build-rules`, the pages' npm packages, then the server
//!   (`gamehost ARGS...`) with the bundled rules and pages.
//! * `bench [ARGS...]`: `build-rules`, then the criterion benchmarks.
//! * `fuzz TARGET [SECONDS]`: a coverage-guided run of a target in `fuzz/` (cargo-fuzz, which it
//!   installs from crates.io if missing), from the regression corpus in `tests/fuzz/corpus/`.
//!
//! Wasm needs the `wasm32-unknown-unknown` standard library. When the Rust toolchain has it
//! (`rustup target add wasm32-unknown-unknown`), it is used. When it does not and cannot download
//! it, the build falls back to Debian's `rustc-web`/`cargo-web`/`rust-web-src` packages, building
//! the standard library from source (`-Zbuild-std`) and linking with the toolchain's `rust-lld`.
//! On a Debian machine where we are root, the packages are installed on first use.

mod fuzz;
mod new_game;
mod setup;
mod wasm;

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use wasm::{Build, build_rules};

const USAGE: &str = "usage: cargo xtask <build-rules [GAME] | new-game NAME | test [ARGS] | run [SERVER ARGS] | bench [ARGS] | fuzz TARGET [SECONDS]>";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root()?;
    let everything = Build::default();
    match command.as_str() {
        "build-rules" => {
            let build = Build {
                only: rest.first().cloned(),
                ..Build::default()
            };
            build_rules(&root, &build).map(|_| ())
        }
        "new-game" => {
            let name = rest.first().context(USAGE)?;
            let folder = new_game::new_game(&root, name)?;
            build_rules(
                &root,
                &Build {
                    only: Some(name.clone()),
                    ..Build::default()
                },
            )?;
            eprintln!(
                "    made {}: `cargo test -p {name}` tests it natively; `cargo xtask run` serves it \
                 (and again after each `cargo xtask build-rules {name}`); players join it with \
                 joinMatchmaking {{level: 1, game: \"{name}\", vsBot: true}}",
                folder.display()
            );
            Ok(())
        }
        "test" => {
            build_rules(&root, &everything)?;
            new_game::check_template(&root, &target_dir(&root))?;
            setup::npm_ci(
                &root.join("web"),
                "the pages' Socket.IO client and Admin UI",
            )?;
            setup::npm_ci(
                &root.join("tests/js"),
                "socket.io-client and puppeteer-core for the tests",
            )?;
            setup::ensure_redis_server()?;
            setup::ensure_chromium()?;
            setup::ensure_haproxy()?;
            // The multi-instance tests start real `gamehost` processes (to kill -9 them); the
            // chaos run is `loadgen chaos`.
            run(cargo().current_dir(&root).args([
                "build",
                "--package",
                "host",
                "--bin",
                "gamehost",
                "--package",
                "loadgen",
                "--bin",
                "loadgen",
            ]))?;
            run(cargo()
                .current_dir(&root)
                .args(["test", "--workspace"])
                .args(&rest))
        }
        "run" => {
            build_rules(&root, &everything)?;
            setup::npm_ci(
                &root.join("web"),
                "the pages' Socket.IO client and Admin UI",
            )?;
            // A debug build: it shares the tests' artefacts, so a newcomer waits for one build.
            // `cargo xtask run -- --port 4000`: that `--` is already ours to add.
            let server_args = rest.iter().skip_while(|arg| *arg == "--");
            run(cargo()
                .current_dir(&root)
                .args(["run", "--package", "host", "--bin", "gamehost", "--"])
                .args(server_args))
        }
        "bench" => {
            build_rules(&root, &everything)?;
            run(cargo()
                .current_dir(&root)
                .args(["bench", "--package", "tests", "--bench", "rules"])
                .args(&rest))
        }
        "fuzz" => fuzz::fuzz(&root, &rest),
        _ => bail!(USAGE),
    }
}

/// The workspace's target folder.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest_dir
        .parent()
        .context("xtask lives one level below the workspace root")?
        .to_path_buf())
}

/// The cargo that runs us (the user's toolchain).
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub(crate) fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

pub(crate) fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("could not start {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
