//! `matchmaking`: many players connect (round-robin over the instances), then all join a game's
//! queues at once. Reports how many matches formed, how fast, and when the last player was
//! matched, with the seat counts of the tables.

use anyhow::{Context, Result, bail};
use example_bot::connect;
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

pub async fn matchmaking(
    urls: Vec<String>,
    players: usize,
    game: String,
    levels: i64,
    limit: Duration,
) -> Result<()> {
    let mut clients = Vec::with_capacity(players);
    for batch in (0..players).collect::<Vec<_>>().chunks(100) {
        let connects = batch.iter().map(|&i| connect(&urls[i % urls.len()]));
        for connected in join_all(connects).await {
            clients.push(connected?);
        }
    }
    // Each client learns its id from `session` before it asks anything.
    let mut ids = Vec::with_capacity(players);
    for (_, inbox, _) in &mut clients {
        let session = wait(inbox, "session", Duration::from_secs(10)).await?;
        ids.push(
            session["playerId"]
                .as_str()
                .context("a player id")?
                .to_string(),
        );
    }
    println!(
        "{players} players connected over {} instance(s); joining {game} over {levels} level(s) at once",
        urls.len()
    );
    let started = Instant::now();
    let joins = clients.iter().enumerate().map(|(i, (client, _, _))| {
        let ask = json!({ "level": 1 + (i as i64 % levels), "game": game });
        client.emit("joinMatchmaking", ask)
    });
    for sent in join_all(joins).await {
        sent.context("joinMatchmaking not sent")?;
    }
    let waits = clients.iter_mut().map(|(_, inbox, _)| async {
        let found = wait(inbox, "matchFound", limit).await?;
        Ok::<_, anyhow::Error>((started.elapsed(), found))
    });
    let mut rooms: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = Duration::ZERO;
    let mut times = Vec::with_capacity(players);
    let mut seated: HashSet<String> = HashSet::new();
    for (i, outcome) in join_all(waits).await.into_iter().enumerate() {
        let (at, found) =
            outcome.with_context(|| format!("player {} was never matched", ids[i]))?;
        last = last.max(at);
        times.push(at);
        let room = found["roomId"].as_str().context("a room")?.to_string();
        let seats = found["players"].as_array().map_or(0, Vec::len);
        rooms.insert(room, seats);
        if !seated.insert(ids[i].clone()) {
            bail!("{} was matched twice", ids[i]);
        }
    }
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for seats in rooms.values() {
        *sizes.entry(*seats).or_default() += 1;
    }
    times.sort();
    let at = |share: f64| times[((times.len() as f64 * share) as usize).min(times.len() - 1)];
    println!(
        "players matched by: half {:.0} ms, 99% {:.0} ms, all {:.0} ms",
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        last.as_secs_f64() * 1000.0
    );
    let secs = last.as_secs_f64();
    println!(
        "{} matches ({}) for {players} players; the last matched after {:.0} ms: {:.0} matches/s, {:.0} players/s",
        rooms.len(),
        sizes
            .iter()
            .map(|(seats, n)| format!("{n} of {seats}"))
            .collect::<Vec<_>>()
            .join(", "),
        secs * 1000.0,
        rooms.len() as f64 / secs,
        players as f64 / secs
    );
    Ok(())
}

async fn wait(inbox: &mut example_bot::Inbox, wanted: &str, limit: Duration) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some((event, data))) if event == wanted => return Ok(data),
            Ok(Some((event, _))) if event == "__closed" => bail!("closed before {wanted}"),
            Ok(Some(_)) => {}
            Ok(None) => bail!("closed before {wanted}"),
            Err(_) => bail!("no {wanted} within {limit:?}"),
        }
    }
}
