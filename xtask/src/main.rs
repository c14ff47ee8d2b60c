//! Project automation. Run as `cargo xtask <command>`:
//!
//! * `build-rules`: compile every rules crate under `rules/` to `target/rules/<name>.wasm`, and
//!   every test fixture under `tests/fixtures/` to `target/fixtures/<name>.wasm`.
//! * `test`: `build-rules`, install the JavaScript Socket.IO client the tests use (`npm ci` in
//!   `tests/js`) and `redis-server` if missing, build the `gamehost` binary (the multi-instance
//!   tests run it as processes), then every test of the workspace. This is the README's test
//!   command.
//! * `run [ARGS...]`: `build-rules`, then the server (`gamehost ARGS...`) with the bundled rules.
//! * `bench [ARGS...]`: `build-rules`, then the criterion benchmarks.
//!
//! Wasm needs the `wasm32-unknown-unknown` standard library. When the Rust toolchain has it
//! (`rustup target add wasm32-unknown-unknown`), it is used. When it does not and cannot download
//! it, the build falls back to Debian's `rustc-web`/`cargo-web`/`rust-web-src` packages, building
//! the standard library from source (`-Zbuild-std`) and linking with the toolchain's `rust-lld`.
//! On a Debian machine where we are root, the packages are installed on first use.

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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root()?;
    match command.as_str() {
        "build-rules" => build_rules(&root).map(|_| ()),
        "test" => {
            build_rules(&root)?;
            install_js_client(&root)?;
            ensure_redis_server()?;
            // The multi-instance tests start real `gamehost` processes (to kill -9 them).
            run(cargo().current_dir(&root).args([
                "build",
                "--package",
                "host",
                "--bin",
                "gamehost",
            ]))?;
            run(cargo()
                .current_dir(&root)
                .args(["test", "--workspace"])
                .args(&rest))
        }
        "run" => {
            build_rules(&root)?;
            // A debug build: it shares the tests' artefacts, so a newcomer waits for one build.
            // `cargo xtask run -- --port 4000`: that `--` is already ours to add.
            let server_args = rest.iter().skip_while(|arg| *arg == "--");
            run(cargo()
                .current_dir(&root)
                .args(["run", "--package", "host", "--bin", "gamehost", "--"])
                .args(server_args))
        }
        "bench" => {
            build_rules(&root)?;
            run(cargo()
                .current_dir(&root)
                .args(["bench", "--package", "tests", "--bench", "rules"])
                .args(&rest))
        }
        _ => bail!(
            "usage: cargo xtask <build-rules | test [ARGS] | run [SERVER ARGS] | bench [ARGS]>"
        ),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest_dir
        .parent()
        .context("xtask lives one level below the workspace root")?
        .to_path_buf())
}

/// The multi-instance tests start private `redis-server`s (to restart them at will); install
/// Debian's when there is none and we may.
fn ensure_redis_server() -> Result<()> {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    eprintln!("    installing redis-server for the tests (apt-get)");
    run(Command::new("apt-get").args(["install", "-y", "-q", "redis-server"]))
        .context("the tests need redis-server on the PATH; install it (Debian: redis-server)")
}

/// The cargo that runs us (the user's toolchain).
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

fn output(command: &mut Command) -> Result<String> {
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

/// Installs the official JavaScript Socket.IO client the tests drive (`tests/js`), exactly as
/// `package-lock.json` pins it.
fn install_js_client(root: &Path) -> Result<()> {
    let folder = root.join("tests/js");
    // npm writes its own record of an install here; packaged files keep their 1985 dates.
    let installed = folder.join("node_modules/.package-lock.json");
    let lock = folder.join("package-lock.json");
    let fresh = match (installed.metadata(), lock.metadata()) {
        (Ok(installed), Ok(lock)) => installed.modified()? >= lock.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    eprintln!("    installing socket.io-client for the tests (npm ci)");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&folder))
    .context("the tests need Node.js and npm to install socket.io-client")
}

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

/// Builds every rules crate and test fixture; returns the modules written.
fn build_rules(root: &Path) -> Result<Vec<PathBuf>> {
    let metadata: Metadata = serde_json::from_str(&output(cargo().current_dir(root).args([
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
            let destination = if relative.starts_with("rules") {
                target_dir.join("rules")
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
    ensure!(
        !crates.is_empty(),
        "no cdylib crates under rules/ or tests/fixtures/"
    );

    let mut build = wasm_cargo()?;
    build.current_dir(root).args([
        "build",
        "--locked",
        "--target",
        WASM_TARGET,
        "--profile",
        WASM_PROFILE,
    ]);
    for krate in &crates {
        build.args(["--package", &krate.package]);
    }
    run(&mut build)?;

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
fn wasm_cargo() -> Result<Command> {
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
