//! `play`: bots play whole wizard-battle matches, queueing again after each, until time is up.

use crate::{Stats, ack_value, progress, report};
use anyhow::{Result, bail};
use example_bot::connect;
use futures_util::FutureExt;
use rust_socketio::asynchronous::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(crate) async fn play(
    urls: Vec<String>,
    players: usize,
    length: Duration,
    level: i64,
    ramp: Duration,
) -> Result<()> {
    if urls.is_empty() {
        bail!("give at least one --urls");
    }
    let stats = Stats::new();
    let deadline = Instant::now() + length;
    let guard = progress(stats.clone(), "matches", length);
    let bots: Vec<_> = (0..players)
        .map(|n| {
            let (url, stats) = (urls[n % urls.len()].clone(), stats.clone());
            let start_after = ramp.mul_f64(n as f64 / players as f64);
            tokio::spawn(async move {
                tokio::time::sleep(start_after).await;
                if let Err(error) = play_bot(&url, level, deadline, &stats).await {
                    stats.error(format!("bot failed: {error:#}"));
                }
            })
        })
        .collect();
    for bot in bots {
        let _ = bot.await;
    }
    drop(guard);
    // Both players of a match see its end.
    let matches = stats.completed.load(Ordering::Relaxed) / 2;
    report(
        &stats,
        "matches completed",
        matches,
        stats.started.elapsed(),
    );
    Ok(())
}

/// One bot: queues, plays each match to its end, queues again, until `deadline`. The action
/// round trip is from `submitAction` to its acknowledgement (the state is stored by then).
async fn play_bot(url: &str, level: i64, deadline: Instant, stats: &Arc<Stats>) -> Result<()> {
    // As a real client would, try again when a connection attempt fails; each retry is counted.
    let mut attempt = 1;
    let (client, mut events, tx) = loop {
        match connect(url).await {
            Ok(connected) => break connected,
            Err(error) if attempt < 3 => {
                stats.retried_connects.fetch_add(1, Ordering::Relaxed);
                tracing_error(&error);
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error),
        }
    };
    let mut room = String::new();
    let mut last_view = Value::Null;
    let mut cast_in_round = None;
    let mut in_match = false;
    // One action awaits its answer at a time, and the next waits for it: rust_socketio 0.6 picks
    // acknowledgement ids at random below 999, and two outstanding ones that share an id crash
    // its event loop.
    let mut awaiting_answer = false;
    let mut next_action: Option<Value> = None;
    let wait = deadline + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(wait.into(), events.recv()).await;
        let Ok(Some((event, data))) = next else {
            if in_match {
                stats.error("a match did not end in time");
            }
            break;
        };
        match event.as_str() {
            "session" => {
                client
                    .emit("joinMatchmaking", json!({ "level": level }))
                    .await?;
            }
            "matchFound" => {
                room = data["roomId"].as_str().unwrap_or_default().to_string();
                in_match = true;
                cast_in_round = None;
            }
            "view" => {
                last_view = data["view"].clone();
                let view = &data["view"];
                let you = &view["you"];
                let open =
                    you["alive"] == true && you["submitted"].is_null() && view["winners"].is_null();
                if open && cast_in_round != view["round"].as_u64() {
                    cast_in_round = view["round"].as_u64();
                    let action = example_bot::choose(view);
                    if awaiting_answer {
                        next_action = Some(action);
                    } else {
                        awaiting_answer = true;
                        submit(&client, &room, action, stats, &tx).await?;
                    }
                }
            }
            "__answered" => {
                awaiting_answer = false;
                if data["success"] == true {
                    if let Some(action) = next_action.take() {
                        awaiting_answer = true;
                        submit(&client, &room, action, stats, &tx).await?;
                    }
                    continue;
                }
                next_action = None;
                if data["code"] == "rate_limited" {
                    // Too many refused tries too fast: wait, then try again.
                    let retry = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        let _ = retry.send(("__retry".into(), Value::Null));
                    });
                } else if example_bot::worth_another_try(&data["code"]) {
                    awaiting_answer = true;
                    submit(&client, &room, example_bot::choose(&last_view), stats, &tx).await?;
                } else {
                    stats.error(format!("refused: {}", data["code"]));
                }
            }
            "__retry" if in_match && !awaiting_answer => {
                awaiting_answer = true;
                submit(&client, &room, example_bot::choose(&last_view), stats, &tx).await?;
            }
            "serverError" => stats.error(format!("serverError: {}", data["code"])),
            "gameOver" => {
                stats.completed.fetch_add(1, Ordering::Relaxed);
                let at = stats.started.elapsed().as_millis() as u64;
                stats.last_completed_ms.fetch_max(at, Ordering::Relaxed);
                in_match = false;
                next_action = None;
                if Instant::now() >= deadline {
                    break;
                }
                client
                    .emit("joinMatchmaking", json!({ "level": level }))
                    .await?;
            }
            "__closed" => {
                if Instant::now() < deadline || in_match {
                    stats.error("disconnected");
                }
                return Ok(());
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}

fn tracing_error(error: &anyhow::Error) {
    if std::env::var_os("LOADGEN_VERBOSE").is_some() {
        eprintln!("connect failed, retrying: {error:#}");
    }
}

async fn submit(
    client: &Client,
    room: &str,
    action: Value,
    stats: &Arc<Stats>,
    inbox: &mpsc::UnboundedSender<(String, Value)>,
) -> Result<()> {
    let sent = Instant::now();
    let (stats, inbox) = (stats.clone(), inbox.clone());
    client
        .emit_with_ack(
            "submitAction",
            json!({ "roomId": room, "action": action }),
            Duration::from_secs(10),
            move |payload, _| {
                stats.round_trip(sent.elapsed());
                let _ = inbox.send(("__answered".into(), ack_value(payload)));
                async {}.boxed()
            },
        )
        .await?;
    Ok(())
}
