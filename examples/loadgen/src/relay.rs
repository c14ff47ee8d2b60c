//! `relay`: chat at a fixed rate, whatever the number of instances, and what it costs the hosts.
//!
//! Pairs of players are matched across instances (the pair `i` has one player on instance `i`
//! and the other on instance `i + 1`, round-robin), and the first of each pair sends
//! `gameMessage` at `rate / pairs` per second. Every message crosses instances. What the hosts
//! cost (their CPU time, or with `--callgrind-dumps` the instructions they ran: see
//! [`crate::meter`]) is read before and after, for the processes given in `--pids` (the
//! instances in `--urls`, in order) and `--idle-pids` (instances that share the fleet but hold
//! no player): the report gives each one's cost per message.

use crate::meter::Meter;
use crate::{Stats, report, wait_for};
use anyhow::{Result, bail};
use example_bot::{Inbox, connect};
use rust_socketio::asynchronous::Client;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Matched players: the sender, the receiver and the room.
pub struct Pair {
    pub a: Client,
    pub a_in: Inbox,
    pub b: Client,
    pub b_in: Inbox,
    pub b_id: Value,
    pub room: Value,
}

/// `pairs` pairs, each across two instances of `urls` when there are several.
pub async fn matched_pairs(urls: &[String], pairs: usize) -> Result<Vec<Pair>> {
    if urls.is_empty() {
        bail!("give at least one --urls");
    }
    let mut matched = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let here = &urls[pair % urls.len()];
        let there = &urls[(pair + 1) % urls.len()];
        let level = 1_000_000 + pair as i64;
        let (a, mut a_in, _) = connect(here).await?;
        let (b, mut b_in, _) = connect(there).await?;
        wait_for(&mut a_in, "session").await?;
        let b_id = wait_for(&mut b_in, "session").await?["playerId"].clone();
        a.emit("joinMatchmaking", json!({ "level": level })).await?;
        wait_for(&mut a_in, "waiting").await?;
        b.emit("joinMatchmaking", json!({ "level": level })).await?;
        let room = wait_for(&mut a_in, "matchFound").await?["roomId"].clone();
        wait_for(&mut b_in, "matchFound").await?;
        matched.push(Pair {
            a,
            a_in,
            b,
            b_in,
            b_id,
            room,
        });
    }
    Ok(matched)
}

pub struct Relay {
    pub urls: Vec<String>,
    pub pairs: usize,
    /// Messages per second, over all pairs.
    pub rate: f64,
    pub length: Duration,
    pub pids: Vec<u32>,
    pub idle_pids: Vec<u32>,
    pub meter: Meter,
}

pub async fn relay(relay: Relay) -> Result<()> {
    let matched = matched_pairs(&relay.urls, relay.pairs).await?;
    let period = Duration::from_secs_f64(relay.pairs as f64 / relay.rate);
    println!(
        "{} pairs over {} instances; {} messages/s for {:?}",
        matched.len(),
        relay.urls.len(),
        relay.rate,
        relay.length
    );
    let stats = Stats::new();
    let all_pids: Vec<u32> = relay.pids.iter().chain(&relay.idle_pids).copied().collect();
    let before = relay.meter.start(&all_pids).await?;
    let started = Instant::now();
    let deadline = started + relay.length;
    let mut tasks = Vec::new();
    for (index, pair) in matched.into_iter().enumerate() {
        let stats = stats.clone();
        // Spread the senders' ticks over one period, so the rate is even, not bursts.
        let offset = period.mul_f64(index as f64 / relay.pairs as f64);
        tasks.push(tokio::spawn(send_and_receive(
            pair, period, offset, started, deadline, stats,
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
    let took = started.elapsed();
    let cost = relay.meter.since(&all_pids, &before).await?;
    let delivered = stats.round_trips.load(std::sync::atomic::Ordering::Relaxed);
    report(&stats, "messages delivered", delivered, took);
    let (per, unit) = (delivered.max(1) as f64, relay.meter.unit());
    let (busy, idle) = cost.split_at(relay.pids.len());
    for (i, (pid, cost)) in relay.pids.iter().zip(busy).enumerate() {
        let cost = *cost as f64;
        println!(
            "instance {i} (pid {pid}): {cost:.0} {unit}, {:.1} {unit} per message",
            cost / per
        );
    }
    for (pid, cost) in relay.idle_pids.iter().zip(idle) {
        let cost = *cost as f64;
        println!(
            "idle instance (pid {pid}): {cost:.0} {unit}, {:.1} {unit} per message",
            cost / per
        );
    }
    if !relay.pids.is_empty() {
        let fleet = busy.iter().sum::<u64>() as f64;
        println!(
            "fleet: {:.1} {unit} per message, {:.1} {unit} per message per instance",
            fleet / per,
            fleet / per / relay.pids.len() as f64
        );
    }
    Ok(())
}

/// The pair's sender sends every `period` (first after `offset`) until `deadline`; its
/// receiver records how long each message took to arrive.
async fn send_and_receive(
    pair: Pair,
    period: Duration,
    offset: Duration,
    started: Instant,
    deadline: Instant,
    stats: std::sync::Arc<Stats>,
) {
    let Pair {
        a,
        a_in,
        b,
        mut b_in,
        room,
        ..
    } = pair;
    // The sender's own copies are not read: drop them as they come.
    drop(a_in);
    let receiving = {
        let stats = stats.clone();
        tokio::spawn(async move {
            while let Some((event, data)) = b_in.recv().await {
                if event != "gameMessage" {
                    continue;
                }
                if let Some(sent_us) = data["message"]["sentUs"].as_u64() {
                    let now_us = started.elapsed().as_micros() as u64;
                    stats.round_trip(Duration::from_micros(now_us.saturating_sub(sent_us)));
                }
            }
        })
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let sent_us = started.elapsed().as_micros() as u64;
        let message = json!({ "roomId": room, "message": { "sentUs": sent_us } });
        if a.emit("gameMessage", message).await.is_err() {
            stats.error("emit failed");
            break;
        }
    }
    // Let the last messages land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiving.abort();
    let _ = a.disconnect().await;
    let _ = b.disconnect().await;
}
