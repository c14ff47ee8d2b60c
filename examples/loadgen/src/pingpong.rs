//! `pingpong`: pairs of players on different instances send `gameMessage` back and forth as
//! fast as the answers come.

use crate::{Stats, progress, relay, report};
use anyhow::Result;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) async fn pingpong(urls: Vec<String>, pairs: usize, length: Duration) -> Result<()> {
    let ready = relay::matched_pairs(&urls, pairs).await?;
    println!("{} pairs matched; ping-pong for {length:?}", ready.len());
    let stats = Stats::new();
    let deadline = stats.started + length;
    let guard = progress(stats.clone(), "pairs", length);
    let mut tasks = Vec::new();
    for relay::Pair {
        a,
        mut a_in,
        b,
        mut b_in,
        b_id,
        room,
    } in ready
    {
        let stats = stats.clone();
        // b answers each of a's messages (the ones with a `seq`; the room relays b's own
        // replies back to b too).
        let answering = tokio::spawn({
            let room = room.clone();
            async move {
                while let Some((event, data)) = b_in.recv().await {
                    let seq = &data["message"]["seq"];
                    if event != "gameMessage" || seq.is_null() {
                        continue;
                    }
                    let reply = json!({ "roomId": room, "message": { "reply": seq } });
                    if b.emit("gameMessage", reply).await.is_err() {
                        break;
                    }
                }
                let _ = b.disconnect().await;
            }
        });
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let sent = Instant::now();
                let message = json!({ "roomId": room, "message": { "seq": seq } });
                if a.emit("gameMessage", message).await.is_err() {
                    stats.error("emit failed");
                    break;
                }
                let answer = async {
                    while let Some((event, data)) = a_in.recv().await {
                        if event == "gameMessage"
                            && data["sender"] == b_id
                            && data["message"]["reply"] == seq
                        {
                            return true;
                        }
                        if event == "__closed" {
                            return false;
                        }
                    }
                    false
                };
                match tokio::time::timeout(Duration::from_secs(5), answer).await {
                    Ok(true) => stats.round_trip(sent.elapsed()),
                    Ok(false) => {
                        stats.error("disconnected");
                        break;
                    }
                    Err(_) => stats.error("no answer within 5 s"),
                }
            }
            let _ = a.disconnect().await;
            answering.abort();
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(guard);
    let pairs = stats.round_trips.load(Ordering::Relaxed);
    report(&stats, "messages answered", pairs, length);
    Ok(())
}
