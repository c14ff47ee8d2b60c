//! A chaos run's player: plays wizard battles like `play`'s bots, but as a real client would
//! when servers fail. When its connection drops (or cannot be made) it connects again to any
//! instance, presenting its resume token, and carries on with its match. It records every
//! match message it gets (with its version), every action the server acknowledged, and anything
//! a client could not explain, for [`super::check`].

use super::check::{Acked, Seen};
use anyhow::Result;
use example_bot::{Inbox, Outbox, connect_as};
use futures_util::FutureExt;
use rand::Rng;
use rust_socketio::asynchronous::Client;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The events that carry a match's version.
const MATCH_EVENTS: [&str; 7] = [
    "matchFound",
    "gameEvent",
    "view",
    "gameOver",
    "opponentDisconnected",
    "opponentReconnected",
    "resumed",
];

/// How long after the server said a player's match runs on its `resumed` may still come.
const RESUME_PATIENCE: Duration = Duration::from_secs(12);

/// How long a connection may stay silent before the player takes it for dead and connects
/// again. In a match something comes at least every round (the fleet's rounds last 3 s); in
/// the queue a player connects again too, and queues again. rust_socketio 0.6 does not always
/// report a connection the server closed or that died with its server.
pub const SILENCE: Duration = Duration::from_secs(8);

/// What a player recorded.
#[derive(Default)]
pub struct Journal {
    pub player: Option<String>,
    /// Its resume token.
    pub token: Option<String>,
    pub seen: Vec<Seen>,
    pub acked: Vec<Acked>,
    /// The match it is in now (set by `matchFound` or `resumed`, cleared by `gameOver`).
    pub room: Option<String>,
    pub connections: u64,
    pub failed_connects: u64,
    /// Connections given up after a silence no live one has (see [`SILENCE`]).
    pub silent_connections: u64,
    pub resumes: u64,
    /// Sessions the server no longer knew (the player started over as a new one).
    pub lost_sessions: u64,
    pub matches_finished: u64,
    /// Things a correct server never makes a client see.
    pub anomalies: Vec<String>,
    /// Refusals and errors by code.
    pub refusals: std::collections::BTreeMap<String, u64>,
}

/// What all players share: the instances, and whether to stop queueing for new matches.
pub struct Table {
    pub urls: Vec<String>,
    pub level: i64,
    /// The instances' `RECONNECT_GRACE_MS`: a session forgotten sooner is an anomaly.
    pub grace: Duration,
    pub stop_queueing: AtomicBool,
}

/// Plays until told to stop queueing and its last match is over.
pub async fn play(table: Arc<Table>, journal: Arc<Mutex<Journal>>) {
    let mut identity: Option<(String, String)> = None;
    let mut away_since = Instant::now();
    loop {
        let (done, room) = {
            let journal = journal.lock().unwrap();
            (
                table.stop_queueing.load(Ordering::Relaxed),
                journal.room.clone(),
            )
        };
        if done && room.is_none() {
            return;
        }
        let url = table.urls[rand::rng().random_range(0..table.urls.len())].clone();
        let auth = identity
            .as_ref()
            .map(|(id, token)| json!({ "playerId": id, "resumeToken": token }));
        let Ok((client, inbox, outbox)) = connect_as(&url, auth).await else {
            journal.lock().unwrap().failed_connects += 1;
            pause().await;
            continue;
        };
        let connection = {
            let mut journal = journal.lock().unwrap();
            journal.connections += 1;
            journal.connections
        };
        let mut session = Session {
            client,
            outbox,
            table: table.clone(),
            journal: journal.clone(),
            connection,
            identity: identity.clone(),
            presented_token: false,
            runs_on_since: None,
            awaiting_answer: None,
            cast_in_round: None,
            last_view: Value::Null,
        };
        let ended = session.run(inbox, away_since).await;
        let _ = session.client.disconnect().await;
        identity = session.identity;
        away_since = Instant::now();
        if matches!(ended, Ended::Done) {
            continue;
        }
        if let Ended::Forgotten(message, away) = ended {
            let mut journal = journal.lock().unwrap();
            journal.lost_sessions += 1;
            if let Some(room) = journal.room.take()
                && away < table.grace
            {
                let player = journal.player.clone().unwrap_or_default();
                journal.anomalies.push(format!(
                    "{player} lost its session while in {room}: {message}"
                ));
            }
            identity = None;
        }
        pause().await;
    }
}

/// A short random wait before connecting again, as clients back off.
async fn pause() {
    let ms = rand::rng().random_range(100..600);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

enum Ended {
    /// The connection closed or failed: connect again.
    Closed,
    /// The server no longer knows this player (after this long away): start over as a new one.
    Forgotten(String, Duration),
    /// Nothing left to play.
    Done,
}

/// One connection.
struct Session {
    client: Client,
    outbox: Outbox,
    table: Arc<Table>,
    journal: Arc<Mutex<Journal>>,
    connection: u64,
    identity: Option<(String, String)>,
    /// Whether this connection presented a resume token (a new player has nothing to resume).
    presented_token: bool,
    /// When the server said the match runs on, though this connection got no `resumed` yet.
    runs_on_since: Option<Instant>,
    /// When the action now in flight was sent (one at a time: rust_socketio 0.6 picks ack ids
    /// at random, and two outstanding ones sharing an id break its event loop).
    awaiting_answer: Option<Instant>,
    cast_in_round: Option<u64>,
    last_view: Value,
}

impl Session {
    async fn run(&mut self, mut inbox: Inbox, away_since: Instant) -> Ended {
        // A resumed player in a match hears `resumed` soon; without it, its match may have
        // ended while it was away, which the server confirms when asked. If it runs on, the
        // `resumed` may only be slow (Redis slowed down): it is missing only after a while.
        let resume_deadline = Instant::now() + Duration::from_secs(3);
        let mut resumed = false;
        let mut asked = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_heard = Instant::now();
        loop {
            let next = tokio::select! {
                next = inbox.recv() => next,
                _ = tick.tick() => Some(("__tick".into(), Value::Null)),
            };
            let Some((event, data)) = next else {
                return Ended::Closed;
            };
            if !event.starts_with("__") {
                last_heard = Instant::now();
            } else if last_heard.elapsed() > SILENCE {
                self.journal.lock().unwrap().silent_connections += 1;
                return Ended::Closed;
            }
            match event.as_str() {
                "__closed" => return Ended::Closed,
                "__error" => {
                    let message = data.as_str().unwrap_or_default().to_string();
                    if message.contains("unknown player or wrong resume token") {
                        let away = away_since.elapsed();
                        return Ended::Forgotten(format!("{message} (away {away:?})"), away);
                    }
                    self.refused(format!("connect error: {}", short(&message)));
                    return Ended::Closed;
                }
                "session" => {
                    let id = data["playerId"].as_str().unwrap_or_default().to_string();
                    let token = data["resumeToken"].as_str().unwrap_or_default().to_string();
                    let was = self.identity.replace((id.clone(), token.clone()));
                    self.presented_token = was.is_some();
                    let in_match = {
                        let mut journal = self.journal.lock().unwrap();
                        journal.player = Some(id);
                        journal.token = Some(token);
                        if self.presented_token {
                            journal.resumes += 1;
                        }
                        journal.room.is_some()
                    };
                    if !in_match && !self.queue().await {
                        return Ended::Done;
                    }
                }
                "__tick" => {
                    let room = self.journal.lock().unwrap().room.clone();
                    if let Some(room) = room
                        && !resumed
                        && self.presented_token
                    {
                        if !asked && Instant::now() > resume_deadline {
                            asked = true;
                            self.confirm_over(&room).await;
                        }
                        if self
                            .runs_on_since
                            .is_some_and(|since| since.elapsed() > RESUME_PATIENCE)
                        {
                            resumed = true;
                            let mut journal = self.journal.lock().unwrap();
                            let player = journal.player.clone().unwrap_or_default();
                            journal.anomalies.push(format!(
                                "{player}: no `resumed` on connection {} though {room} ran on \
                                 {RESUME_PATIENCE:?} later",
                                self.connection
                            ));
                        }
                    }
                    if self
                        .awaiting_answer
                        .is_some_and(|sent| sent.elapsed() > Duration::from_secs(10))
                    {
                        self.awaiting_answer = None;
                        self.refused("no answer to an action within 10 s".into());
                    }
                }
                "__answered" => self.answered(data).await,
                "__act" if self.awaiting_answer.is_none() => self.act().await,
                "__state" => self.state_answered(data).await,
                "__recheck" => {
                    let room = self.journal.lock().unwrap().room.clone();
                    if let Some(room) = room {
                        self.confirm_over(&room).await;
                    }
                }
                "serverError" => {
                    self.refused(format!("{} {}", data["event"], data["code"]));
                    if data["event"] == "joinMatchmaking" {
                        self.later("__requeue", Duration::from_millis(500));
                    }
                }
                "__requeue" if self.journal.lock().unwrap().room.is_none() => {
                    let queued = self.queue().await;
                    if !queued {
                        return Ended::Done;
                    }
                }
                _ if MATCH_EVENTS.contains(&event.as_str()) => {
                    // A `matchFound` on this connection seats it afresh: whatever it reconnected
                    // from had ended (a match left running is caught as a `matchFound` while
                    // another had not ended), so no `resumed` is owed any more.
                    if event == "resumed" || event == "matchFound" {
                        resumed = true;
                    }
                    if !self.heard(&event, &data).await {
                        return Ended::Done;
                    }
                }
                _ => {}
            }
        }
    }

    /// A match message: recorded, then played on. `false` when there is nothing left to play.
    async fn heard(&mut self, event: &str, data: &Value) -> bool {
        let room = data["roomId"].as_str().unwrap_or_default().to_string();
        let mut ended_while_away = false;
        {
            let mut journal = self.journal.lock().unwrap();
            let player = journal.player.clone().unwrap_or_default();
            let Some(version) = data["version"].as_u64() else {
                journal
                    .anomalies
                    .push(format!("{player}: {event} without a version: {data}"));
                return true;
            };
            journal.seen.push(Seen {
                player: player.clone(),
                room: room.clone(),
                connection: self.connection,
                event: event.to_string(),
                version,
                body: data.to_string(),
            });
            match event {
                "matchFound" | "resumed" => {
                    if let Some(other) = journal.room.clone().filter(|r| *r != room) {
                        let last = journal.seen.iter().rev().find(|s| s.room == other);
                        let last = last.map_or("nothing".into(), |s| {
                            format!(
                                "{} of version {} on connection {}",
                                s.event, s.version, s.connection
                            )
                        });
                        journal.anomalies.push(format!(
                            "{player}: {event} for {room} on connection {} while {other} had not \
                             ended (it last saw {last})",
                            self.connection
                        ));
                    }
                    journal.room = Some(room.clone());
                    self.cast_in_round = None;
                }
                "gameOver" if journal.room.as_deref() == Some(&room) => {
                    journal.room = None;
                    journal.matches_finished += 1;
                }
                _ => {}
            }
            // A match that ended while the player was away resumes as its final state.
            if event == "resumed" && data["state"]["status"] == "finished" {
                journal.room = None;
                journal.matches_finished += 1;
                ended_while_away = true;
            }
        }
        if ended_while_away {
            return self.queue().await;
        }
        match event {
            "view" | "resumed" => {
                self.last_view = data["view"].clone();
                let view = &self.last_view;
                let open = view["you"]["alive"] == true
                    && view["you"]["submitted"].is_null()
                    && view["winners"].is_null();
                if open && self.cast_in_round != view["round"].as_u64() {
                    self.cast_in_round = view["round"].as_u64();
                    // A player thinks a little: faults land mid-match, not between matches.
                    let think = rand::rng().random_range(20..200);
                    self.later("__act", Duration::from_millis(think));
                }
                true
            }
            "gameOver" => self.queue().await,
            _ => true,
        }
    }

    /// Joins the queue, unless the run is winding down (`false` then).
    async fn queue(&mut self) -> bool {
        if self.table.stop_queueing.load(Ordering::Relaxed) {
            return false;
        }
        let ask = json!({ "level": self.table.level });
        if self.client.emit("joinMatchmaking", ask).await.is_err() {
            self.refused("joinMatchmaking not sent".into());
        }
        true
    }

    /// Casts a random spell in the current match, answered through `__answered`.
    async fn act(&mut self) {
        let Some(room) = self.journal.lock().unwrap().room.clone() else {
            return;
        };
        if !self.last_view["winners"].is_null() {
            return;
        }
        let action = example_bot::choose(&self.last_view);
        let outbox = self.outbox.clone();
        let sent = json!({ "roomId": room, "action": action });
        let asked = self
            .client
            .emit_with_ack(
                "submitAction",
                sent.clone(),
                Duration::from_secs(10),
                move |payload, _| {
                    let answer = crate::ack_value(payload);
                    let _ = outbox.send((
                        "__answered".into(),
                        json!({ "answer": answer, "sent": sent }),
                    ));
                    async {}.boxed()
                },
            )
            .await;
        if asked.is_ok() {
            self.awaiting_answer = Some(Instant::now());
        }
    }

    async fn answered(&mut self, data: Value) {
        self.awaiting_answer = None;
        let answer = &data["answer"];
        let room = data["sent"]["roomId"].as_str().unwrap_or_default();
        if answer["success"] == true {
            let mut journal = self.journal.lock().unwrap();
            let player = journal.player.clone().unwrap_or_default();
            journal.acked.push(Acked {
                player,
                room: room.to_string(),
                action: data["sent"]["action"].clone(),
            });
            return;
        }
        let code = &answer["code"];
        if example_bot::worth_another_try(code) {
            self.act().await;
            return;
        }
        self.refused(format!("submitAction {code}"));
        let over = ["game_over", "unknown_room", "not_in_room"]
            .iter()
            .any(|c| code == *c);
        if over {
            self.confirm_over(room).await;
        } else if code != "already_submitted" && code != "dead" {
            // The store away, a rate limit, a module swapping: try again in a moment.
            self.cast_in_round = None;
            self.later("__act", Duration::from_millis(500));
        }
    }

    /// Asks the server whether `room` is over (the answer comes as `__state`).
    async fn confirm_over(&mut self, room: &str) {
        let outbox = self.outbox.clone();
        let _ = self
            .client
            .emit_with_ack(
                "getGameState",
                json!({ "roomId": room }),
                Duration::from_secs(10),
                move |payload, _| {
                    let _ = outbox.send(("__state".into(), crate::ack_value(payload)));
                    async {}.boxed()
                },
            )
            .await;
    }

    async fn state_answered(&mut self, data: Value) {
        let room = data["roomId"].as_str().unwrap_or_default().to_string();
        let status = &data["state"]["status"];
        let mut journal = self.journal.lock().unwrap();
        if journal.room.as_deref() != Some(&room) {
            return;
        }
        if status == "finished" || data["code"] == "unknown_room" {
            // It ended while this player was away: it missed the `gameOver`, not an error.
            journal.room = None;
            drop(journal);
            self.later("__requeue", Duration::ZERO);
        } else if status == "active" {
            self.runs_on_since.get_or_insert_with(Instant::now);
        } else {
            // The store away: ask again in a moment.
            *journal
                .refusals
                .entry(format!("getGameState {}", data["code"]))
                .or_default() += 1;
            drop(journal);
            self.later("__recheck", Duration::from_millis(500));
        }
    }

    /// Posts `event` to itself after `delay`.
    fn later(&self, event: &'static str, delay: Duration) {
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = outbox.send((event.into(), Value::Null));
        });
    }

    fn refused(&self, what: String) {
        *self
            .journal
            .lock()
            .unwrap()
            .refusals
            .entry(what)
            .or_default() += 1;
    }
}

/// The first line of a message, at most 80 characters (refusal texts name hosts and ports).
fn short(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect()
}

/// Connects once more as each player still in a match and checks the server resumes it there:
/// `Ok` with a note of what it found, `Err` with the evidence.
pub async fn check_resumable(
    url: &str,
    player: &str,
    token: &str,
    room: &str,
) -> Result<(), String> {
    let auth = json!({ "playerId": player, "resumeToken": token });
    let (client, mut inbox, _) = connect_as(url, Some(auth))
        .await
        .map_err(|e| format!("{player} cannot connect to resume {room}: {e:#}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some((event, data))) if event == "resumed" => {
                break if data["roomId"] == room {
                    Ok(())
                } else {
                    Err(format!(
                        "{player} resumed into {} instead of {room}",
                        data["roomId"]
                    ))
                };
            }
            Ok(Some((event, data))) if event == "__error" || event == "__closed" => {
                break Err(format!("{player} could not resume {room}: {event} {data}"));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break Err(format!("{player} got no `resumed` for {room}")),
        }
    };
    let _ = client.disconnect().await;
    outcome
}
