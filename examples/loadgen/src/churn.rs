//! `churn`: connections that open a websocket, send Socket.IO's connect and reset at once, as
//! flaky networks (and attackers) do. Reports what the servers kept of them: socket mappings and
//! sessions (`/health/stats`), and resident memory.

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

/// Opens a websocket to `url` (`http://host:port`), sends the connect packet, resets the TCP
/// connection.
async fn connect_and_drop(url: &str) -> Result<()> {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        url.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    ws.send(Message::text("40")).await?;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO))?;
    }
    Ok(())
}

/// `(socket mappings, sessions)` the fleet holds, as the first instance counts them (a host
/// too old to count sessions says nothing of them).
async fn held(url: &str) -> Result<(u64, Option<u64>)> {
    let stats: Value = reqwest::get(format!("{url}/health/stats"))
        .await?
        .json()
        .await?;
    Ok((
        stats["socketMappings"]["total"].as_u64().unwrap_or(0),
        stats["sessions"]["total"].as_u64(),
    ))
}

pub async fn churn(
    urls: Vec<String>,
    connections: usize,
    pids: Vec<u32>,
    settle: Duration,
) -> Result<()> {
    let first = urls.first().context("give --urls")?.clone();
    let rss = || -> Result<u64> { pids.iter().map(|pid| crate::idle::resident_kib(*pid)).sum() };
    let before = rss()?;
    let held_before = held(&first).await?;
    let started = std::time::Instant::now();
    let failed = futures_util::stream::iter(0..connections)
        .map(|n| {
            let url = urls[n % urls.len()].clone();
            async move { connect_and_drop(&url).await.is_err() }
        })
        .buffer_unordered(64)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let took = started.elapsed();
    tokio::time::sleep(settle).await;
    let after = rss()?;
    let held_after = held(&first).await?;
    println!(
        "{connections} connect-and-drop connections in {:.1} s, {failed} failed to open",
        took.as_secs_f64()
    );
    let sessions = |count: Option<u64>| count.map_or("?".to_string(), |c| c.to_string());
    println!(
        "socket mappings: {} before, {} after; sessions: {} before, {} after",
        held_before.0,
        held_after.0,
        sessions(held_before.1),
        sessions(held_after.1)
    );
    if !pids.is_empty() {
        println!("server resident memory: {before} KiB before, {after} KiB after");
    }
    Ok(())
}
