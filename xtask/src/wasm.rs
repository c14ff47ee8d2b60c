//! Compiling rules crates to wasm modules, with the toolchain this machine has.

use crate::{cargo, output, run};
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile rules modules are built with (see the workspace `Cargo.toml`).
const WASM_PROFILE: &str = "rules-wasm";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SOURCE: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "rust-web-src"];

/// A crate to compile to wasm, and the folder its module goes to.
struct WasmCrate {
    package: String,
    artifact: String,
    destination: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// What to build and where the modules go.
#[derive(Default)]
pub struct Build {
    /// Only this rules crate (`build-rules <name>`); otherwise every rules crate and fixture.
    pub only: Option<String>,
    /// Where rules modules go instead of `target/rules`.
    pub rules_out: Option<PathBuf>,
    /// The target folder, if not the workspace's own.
    pub target_dir: Option<PathBuf>,
}

impl Build {
    /// Runs `command` with this build's target folder.
    fn on<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        if let Some(dir) = &self.target_dir {
            command.env("CARGO_TARGET_DIR", dir);
        }
        command
    }
}

/// Builds the rules crates and test fixtures of the workspace at `root`; returns the modules
/// written.
pub fn build_rules(root: &Path, build: &Build) -> Result<Vec<PathBuf>> {
    let metadata: Metadata =
        serde_json::from_str(&output(build.on(&mut cargo()).current_dir(root).args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
        ]))?)?;
    let target_dir = metadata.target_directory;
    let crates: Vec<WasmCrate> = metadata
        .packages
        .into_iter()
        .filter_map(|package| {
            let relative = package.manifest_path.strip_prefix(root).ok()?.to_path_buf();
            if build
                .only
                .as_ref()
                .is_some_and(|only| *only != package.name)
            {
                return None;
            }
            let destination = if relative.starts_with("rules") {
                build
                    .rules_out
                    .clone()
                    .unwrap_or_else(|| target_dir.join("rules"))
            } else if relative.starts_with("tests/fixtures") {
                target_dir.join("fixtures")
            } else {
                return None;
            };
            let library = package
                .targets
                .iter()
                .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))?;
            Some(WasmCrate {
                artifact: library.name.replace('-', "_"),
                package: package.name,
                destination,
            })
        })
        .collect();
    match &build.only {
        Some(only) => ensure!(!crates.is_empty(), "no rules crate {only:?} under rules/"),
        None => ensure!(
            !crates.is_empty(),
            "no cdylib crates under rules/ or tests/fixtures/"
        ),
    }
    lock_new_members(root, &crates)?;

    let mut command = wasm_cargo()?;
    build.on(&mut command).current_dir(root).args([
        "build",
        "--locked",
        "--target",
        WASM_TARGET,
        "--profile",
        WASM_PROFILE,
    ]);
    for krate in &crates {
        command.args(["--package", &krate.package]);
    }
    run(&mut command)?;

    let built = target_dir.join(WASM_TARGET).join(WASM_PROFILE);
    let mut written = Vec::new();
    for krate in &crates {
        let module = built.join(format!("{}.wasm", krate.artifact));
        let landing = krate.destination.join(format!("{}.wasm", krate.package));
        install_if_changed(&module, &landing)?;
        written.push(landing);
    }
    for module in &written {
        eprintln!("    rules module {}", module.display());
    }
    Ok(written)
}

/// A crate just dropped under `rules/` is a workspace member (`rules/*`) that the lock file does
/// not know yet; the build runs `--locked`, so the lock learns it first (its dependencies are the
/// workspace's, already locked).
fn lock_new_members(root: &Path, crates: &[WasmCrate]) -> Result<()> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let unknown: Vec<&str> = crates
        .iter()
        .map(|krate| krate.package.as_str())
        .filter(|package| !lock.contains(&format!("name = \"{package}\"\n")))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    eprintln!("    adding {} to Cargo.lock", unknown.join(", "));
    run(cargo().current_dir(root).args(["update", "--workspace"]))
}

/// Copies `from` to `to` unless `to` already holds the same bytes. Writes to a temporary file
/// first and renames it, so a server watching the folder never reads half a module.
fn install_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let folder = to.parent().context("a module path has a folder")?;
    std::fs::create_dir_all(folder)?;
    let temporary = folder.join(format!(
        ".{}.partial",
        to.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&temporary, &bytes)?;
    std::fs::rename(&temporary, to)?;
    Ok(())
}

/// A cargo command able to build for wasm32 on this machine.
pub fn wasm_cargo() -> Result<Command> {
    let sysroot = PathBuf::from(output(Command::new(rustc()).args(["--print", "sysroot"]))?);
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(cargo());
    }
    eprintln!(
        "    the toolchain has no {WASM_TARGET} standard library; \
         building it from source with Debian's rustc-web"
    );
    ensure_debian_toolchain()?;
    let host = output(Command::new(rustc()).arg("-vV"))?
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names its host")?;
    let lld = sysroot.join("lib/rustlib").join(host).join("bin/rust-lld");
    ensure!(
        lld.is_file(),
        "no rust-lld at {} to link wasm with; install the {WASM_TARGET} target instead \
         (`rustup target add {WASM_TARGET}`)",
        lld.display()
    );
    let mut command = Command::new(DEBIAN_CARGO);
    command
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", lld)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC_WRAPPER")
        .arg("-Zbuild-std=std,panic_abort");
    Ok(command)
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string())
}

fn ensure_debian_toolchain() -> Result<()> {
    let present = [DEBIAN_CARGO, DEBIAN_RUSTC, DEBIAN_STD_SOURCE]
        .iter()
        .all(|path| Path::new(path).exists());
    if present {
        return Ok(());
    }
    let root = output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0");
    if !root || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "cannot build wasm: install the {WASM_TARGET} target (`rustup target add {WASM_TARGET}`) \
             or, on Debian, the packages {}",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    eprintln!("    installing {}", DEBIAN_PACKAGES.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(DEBIAN_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
