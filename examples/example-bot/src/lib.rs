//! What the example bot and the load generator share: a connection that hands over what it
//! receives, and how a wizard chooses its spell.

use anyhow::Context;
use futures_util::FutureExt;
use rand::Rng;
use rand::seq::IndexedRandom;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What a client receives, as `(event, first argument)`; a closed connection arrives as
/// `"__closed"`.
pub type Inbox = mpsc::UnboundedReceiver<(String, Value)>;
/// Where a client's events go; also for a bot to post itself reminders.
pub type Outbox = mpsc::UnboundedSender<(String, Value)>;

/// Connects a Socket.IO client (no automatic reconnection) whose events arrive in an [`Inbox`].
pub async fn connect(url: &str) -> anyhow::Result<(Client, Inbox, Outbox)> {
    connect_as(url, None).await
}

/// [`connect`] with a handshake `auth` (`{playerId, resumeToken}` to resume). The server's
/// refusal (`connect_error`), like any error the client reports, arrives as `"__error"` with
/// its message.
pub async fn connect_as(url: &str, auth: Option<Value>) -> anyhow::Result<(Client, Inbox, Outbox)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let events = tx.clone();
    let closed = tx.clone();
    let errors = tx.clone();
    let mut builder = ClientBuilder::new(url);
    if let Some(auth) = auth {
        builder = builder.auth(auth);
    }
    let client = builder
        .reconnect(false)
        .on_any(move |event, payload, _| {
            let tx = events.clone();
            async move {
                if let (Event::Custom(event), Payload::Text(mut values)) = (event, payload) {
                    let data = if values.is_empty() {
                        Value::Null
                    } else {
                        values.swap_remove(0)
                    };
                    let _ = tx.send((event, data));
                }
            }
            .boxed()
        })
        .on(Event::Close, move |_, _| {
            let _ = closed.send(("__closed".into(), Value::Null));
            async {}.boxed()
        })
        .on(Event::Error, move |payload, _| {
            let message = match payload {
                Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
                _ => Value::Null,
            };
            let _ = errors.send(("__error".into(), message));
            async {}.boxed()
        })
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok((client, rx, tx))
}

/// Refusals that only mean "that spell, there, not now": another random choice may do.
pub fn worth_another_try(code: &Value) -> bool {
    const RETRY: [&str; 5] = [
        "not_in_line",
        "blocked_cell",
        "out_of_range",
        "on_cooldown",
        "off_map",
    ];
    RETRY.iter().any(|retry| code == *retry)
}

/// A random spell this wizard may cast now, at a random cell that suits it.
pub fn choose(view: &Value) -> Value {
    let mut rng = rand::rng();
    let size = view["map"].as_array().map_or(8, Vec::len) as i64;
    let here = (
        view["you"]["position"]["x"].as_i64().unwrap_or(0),
        view["you"]["position"]["y"].as_i64().unwrap_or(0),
    );
    let valley = |x: i64, y: i64| {
        view["map"][y as usize]
            .as_str()
            .is_some_and(|row| row.as_bytes().get(x as usize) == Some(&b'V'))
    };
    let ready: Vec<&str> = view["you"]["spells"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, ready_in)| **ready_in == 0)
        .map(|(spell, _)| spell.as_str())
        .collect();
    let spell = *ready.choose(&mut rng).unwrap_or(&"teleport");
    let cells: Vec<(i64, i64)> = (0..size)
        .flat_map(|y| (0..size).map(move |x| (x, y)))
        .collect();
    let fits = |&(x, y): &(i64, i64)| match spell {
        "teleport" => valley(x, y),
        "dash" => valley(x, y) && (x - here.0).abs() + (y - here.1).abs() <= 3,
        "rockThrow" => {
            let (dx, dy) = (x - here.0, y - here.1);
            (dx, dy) != (0, 0) && (dx == 0 || dy == 0 || dx.abs() == dy.abs())
        }
        _ => (x, y) != here,
    };
    let candidates: Vec<(i64, i64)> = cells.into_iter().filter(fits).collect();
    let (x, y) = candidates
        .get(rng.random_range(0..candidates.len().max(1)))
        .copied()
        .unwrap_or(here);
    json!({ "spell": spell, "target": { "x": x, "y": y } })
}
