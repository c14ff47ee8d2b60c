//! `cargo xtask fuzz TARGET [SECONDS]`: a coverage-guided run (cargo-fuzz, libFuzzer with
//! AddressSanitizer) of one target in `fuzz/`, starting from the regression corpus the property
//! tests share (`tests/fuzz/corpus/<target>/`). What it learns stays in `fuzz/corpus/<target>/`
//! (not committed); a crash is written to `fuzz/artifacts/<target>/`, to be copied into the
//! regression corpus once fixed.

use crate::{cargo, output, run};
use anyhow::{Result, bail};
use std::path::Path;

const TARGETS: [&str; 2] = ["sdk_input", "host_reply"];

pub fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let (Some(target), seconds) = (args.first(), args.get(1)) else {
        bail!(
            "usage: cargo xtask fuzz <{}> [SECONDS]",
            TARGETS.join(" | ")
        );
    };
    if !TARGETS.contains(&target.as_str()) {
        bail!("no fuzz target {target:?}; the targets are {TARGETS:?}");
    }
    let seconds: u64 = seconds.map_or(Ok(60), |s| s.parse())?;
    if output(cargo().args(["fuzz", "--version"])).is_err() {
        eprintln!("    installing cargo-fuzz (crates.io)");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let learned = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&learned)?;
    let kept = root.join("tests/fuzz/corpus").join(target);
    // cargo-fuzz passes the sanitizer's `-Z` flags, which a stable compiler accepts only with
    // RUSTC_BOOTSTRAP; nothing else of the build depends on it.
    run(cargo()
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target])
        .arg(&learned)
        .arg(&kept)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1"))
}
