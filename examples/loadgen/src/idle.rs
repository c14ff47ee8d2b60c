//! `idle`: the resident memory each idle socket costs the server processes.

use crate::{Stats, wait_for};
use anyhow::{Context, Result, bail};
use example_bot::connect;
use std::time::Duration;

pub(crate) async fn idle(
    urls: Vec<String>,
    sockets: usize,
    pids: Vec<u32>,
    settle: Duration,
) -> Result<()> {
    if urls.is_empty() || pids.is_empty() {
        bail!("give --urls and the --pids of the server processes");
    }
    let rss = || -> Result<u64> {
        pids.iter()
            .map(|pid| resident_kib(*pid))
            .sum::<Result<u64>>()
    };
    tokio::time::sleep(settle).await;
    let before = rss()?;
    let stats = Stats::new();
    let mut clients = Vec::new();
    for batch in (0..sockets).collect::<Vec<_>>().chunks(100) {
        let connects = batch.iter().map(|n| connect(&urls[n % urls.len()]));
        for connected in futures_util::future::join_all(connects).await {
            match connected {
                Ok((client, inbox, _)) => clients.push((client, inbox)),
                Err(error) => stats.error(format!("{error:#}")),
            }
        }
    }
    for (_, inbox) in &mut clients {
        wait_for(inbox, "session").await?;
    }
    tokio::time::sleep(settle).await;
    let after = rss()?;
    let connected = clients.len() as u64;
    println!(
        "idle sockets connected: {connected}, errors: {}",
        stats.error_count()
    );
    println!("server resident memory: {before} KiB before, {after} KiB after");
    println!(
        "per idle socket: {:.2} KiB",
        after.saturating_sub(before) as f64 / connected.max(1) as f64
    );
    for (client, _) in clients {
        let _ = client.disconnect().await;
    }
    Ok(())
}

/// `VmRSS` of a process, in KiB.
pub(crate) fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}
