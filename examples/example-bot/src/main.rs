//! A wizard-battle bot. Run a server (`cargo xtask run`), then:
//!
//! ```text
//! cargo run -p example-bot -- --bots 2            # two bots play each other
//! cargo run -p example-bot -- --level 3           # one bot waits at level 3 for you
//! ```
//!
//! Each bot connects, queues at its level, and every round casts a random spell it may cast, at
//! a random cell (it never knows where its opponent is), until the game is over. It prints what
//! happens and exits with the result.

use anyhow::{Context, Result, bail};
use clap::Parser;
use rust_socketio::asynchronous::Client;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "A wizard-battle bot for gamehost")]
struct Args {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    url: String,
    /// The level to queue at.
    #[arg(long, default_value_t = 1)]
    level: i64,
    /// How many bots to run (2 play each other).
    #[arg(long, default_value_t = 1)]
    bots: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut bots = Vec::new();
    for n in 0..args.bots {
        let (url, level) = (args.url.clone(), args.level);
        bots.push(tokio::spawn(async move {
            play(format!("bot{n}"), url, level).await
        }));
    }
    let deadline = Duration::from_secs(args.timeout_secs);
    for bot in bots {
        let finished = tokio::time::timeout(deadline, bot)
            .await
            .context("the game took too long")?;
        let outcome = finished.context("a bot crashed")??;
        println!("{outcome}");
    }
    Ok(())
}

/// Plays one game to its end; returns a line saying how it went.
async fn play(name: String, url: String, level: i64) -> Result<String> {
    let (client, mut events, _) = example_bot::connect(&url).await?;

    let mut me = String::new();
    let mut room = String::new();
    let mut last_view = Value::Null;
    // The round this bot has cast in: views also arrive when the opponent casts, and one cast a
    // round is all the rules take.
    let mut cast_in_round = None;
    while let Some((event, data)) = events.recv().await {
        match event.as_str() {
            "session" => {
                me = data["playerId"].as_str().unwrap_or_default().to_string();
                println!("{name}: I am {me}; queueing at level {level}");
                client
                    .emit("joinMatchmaking", json!({ "level": level }))
                    .await?;
            }
            "waiting" => println!("{name}: waiting for an opponent"),
            "matchFound" => {
                room = data["roomId"].as_str().unwrap_or_default().to_string();
                println!("{name}: matched in room {room}");
            }
            "view" => {
                last_view = data["view"].clone();
                let view = &data["view"];
                let you = &view["you"];
                let round = view["round"].as_u64();
                let open =
                    you["alive"] == true && you["submitted"].is_null() && view["winners"].is_null();
                if open && cast_in_round != round {
                    cast_in_round = round;
                    let action = example_bot::choose(view);
                    println!(
                        "{name}: round {} at {} with {} hp, casting {action}",
                        view["round"], you["position"], you["hp"]
                    );
                    submit(&client, &room, action).await?;
                }
            }
            "gameEvent" if data["event"]["type"] == "roundResolved" => {
                for effect in data["event"]["effects"].as_array().into_iter().flatten() {
                    let source = effect["spell"].as_str().unwrap_or("poison");
                    println!(
                        "{name}:   {} {:+} ({source})",
                        effect["target"], effect["change"]
                    );
                }
            }
            "serverError" => {
                println!("{name}: server says {data}");
                // A refused spell (a rock that would not fly, say): try another one this round.
                if data["event"] == "submitAction" && example_bot::worth_another_try(&data["code"])
                {
                    submit(&client, &room, example_bot::choose(&last_view)).await?;
                }
            }
            "gameOver" => {
                let winners: Vec<&str> = data["winners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                client.disconnect().await?;
                return Ok(match winners.as_slice() {
                    [] => format!("{name}: a draw"),
                    w if w.contains(&me.as_str()) => format!("{name}: I won"),
                    w => format!("{name}: {} won", w.join(", ")),
                });
            }
            "__closed" => break,
            _ => {}
        }
    }
    bail!("{name}: the server went away")
}

async fn submit(client: &Client, room: &str, action: Value) -> Result<()> {
    client
        .emit("submitAction", json!({ "roomId": room, "action": action }))
        .await?;
    Ok(())
}
