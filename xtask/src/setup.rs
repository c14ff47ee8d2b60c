//! What the tests and the pages need beyond Rust: npm packages (pinned by each folder's
//! `package-lock.json`), and Debian's `redis-server`, `chromium` and `haproxy`, installed with apt when
//! missing and we are root. Nothing here downloads a browser or a toolchain of its own.

use crate::run;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// `npm ci` in `folder`, unless its `node_modules` already matches its lock file.
pub fn npm_ci(folder: &Path, what: &str) -> Result<()> {
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
    eprintln!("    installing {what} (npm ci in {})", folder.display());
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(folder))
    .with_context(|| {
        format!(
            "{what} need Node.js and npm (npm ci in {})",
            folder.display()
        )
    })
}

/// The multi-instance tests start private `redis-server`s (to restart them at will), and join
/// some into a Redis Cluster with `redis-cli --cluster create`.
pub fn ensure_redis_server() -> Result<()> {
    apt_if_missing("redis-server", &["--version"], "redis-server")?;
    apt_if_missing("redis-cli", &["--version"], "redis-tools")
}

/// The browser tests drive Debian's Chromium (`/usr/bin/chromium`) through puppeteer-core.
pub fn ensure_chromium() -> Result<()> {
    apt_if_missing("chromium", &["--version"], "chromium")
}

/// The load-balancer test runs Debian's HAProxy (in the foreground, on a free port, with
/// `deploy/haproxy/haproxy.cfg`). The package also starts a service of its own, whose stock
/// configuration listens nowhere.
pub fn ensure_haproxy() -> Result<()> {
    apt_if_missing("haproxy", &["-v"], "haproxy")
}

fn apt_if_missing(program: &str, probe: &[&str], package: &str) -> Result<()> {
    let found = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(());
    }
    eprintln!("    installing {package} for the tests (apt-get)");
    let install = || run(Command::new("apt-get").args(["install", "-y", "-q", package]));
    // A fresh machine may not have read the package lists yet.
    install()
        .or_else(|_| {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            install()
        })
        .with_context(|| {
            format!("the tests need {program} on the PATH; install it (Debian: {package})")
        })
}
