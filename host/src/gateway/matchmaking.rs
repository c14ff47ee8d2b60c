//! `joinMatchmaking` and `leaveMatchmaking`, and queueing again after a write-back the players
//! who waited.

use super::identity::state_of;
use super::requests::{ClientError, Request};
use super::waiting::Wait;
use super::{Gateway, Sock, unavailable};
use crate::matches::{MatchError, Seated};
use crate::model::{QueueEntry, Status};
use serde::Deserialize;
use serde_json::{Value, json};

/// What `joinMatchmaking` takes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    level: i64,
    #[serde(default)]
    game: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    /// Start at once, with the game's bots in the other seats.
    #[serde(default)]
    vs_bot: bool,
    /// With `vsBot`: how many seats the match has, the player's included (default: the fewest
    /// the game plays with, and at least two).
    #[serde(default)]
    seats: Option<usize>,
}

impl Gateway {
    pub(super) async fn join_matchmaking(&self, socket: Sock, request: Request) {
        let Ok(join) = request.parse::<Join>("{\"level\": <integer>}") else {
            let error = ClientError::new(
                "invalid_level",
                "level must be an integer number, e.g. {\"level\": 2}; game and mode, if given, are names, vsBot true or false, seats a number",
            );
            return request.refuse(&socket, error);
        };
        // Whatever it waited for before, it asks for this now.
        let waiting = self.inner.outbox.waiting();
        waiting.stops(&socket.id.to_string());
        let matches = &self.inner.matches;
        let queue = match matches.queue(join.game.as_deref(), join.mode.as_deref()) {
            Ok(queue) => queue,
            Err(error) => return request.refuse(&socket, error.into()),
        };
        let player = request.player.clone();
        match self.playing(&player).await {
            Ok(None) => {}
            Ok(Some(room)) => {
                let error = ClientError::new(
                    "already_in_match",
                    format!("you are playing in room {room}"),
                );
                return request.refuse(&socket, error);
            }
            Err(error) => return request.refuse(&socket, error),
        }
        let me = Seated {
            entry: QueueEntry {
                id: player,
                level: join.level,
            },
            socket: socket.id.to_string(),
            instance: self.inner.instance_id.clone(),
        };
        let started = if join.vs_bot {
            let seats = join.seats.unwrap_or(queue.seating.min.max(2));
            matches.against_bots(&queue, me, seats).await.map(Some)
        } else {
            matches.join(&queue, me).await
        };
        match started {
            Ok(Some(game)) => {
                self.join_room(&socket, game.room_id.clone());
                request.answer(&socket, "joinMatchmaking", &game.room_id)
            }
            Ok(None) => {
                let wait = Wait {
                    game: join.game,
                    mode: join.mode,
                    level: join.level,
                };
                waiting.waits(&socket.id.to_string(), wait);
                let _ = socket.emit("waiting", &json!({ "message": "Waiting for a match..." }));
                request.answer(&socket, "joinMatchmaking", &Value::Null)
            }
            Err(error) => {
                tracing::debug!(%error, "no match started");
                request.refuse(&socket, error.into())
            }
        }
    }

    /// The room of the match `player` plays now, if any.
    async fn playing(&self, player: &str) -> Result<Option<String>, ClientError> {
        let session = self.store().session(player).await.map_err(unavailable)?;
        let Some(room) = session.and_then(|s| s.room_id) else {
            return Ok(None);
        };
        let game = self.store().game(&room).await.map_err(unavailable)?;
        Ok(game
            .filter(|game| game.status != Status::Finished)
            .map(|game| game.room_id))
    }

    pub(super) async fn leave_matchmaking(&self, socket: Sock, request: Request) {
        self.inner.outbox.waiting().stops(&socket.id.to_string());
        match self.store().leave_queue(&request.player).await {
            Ok(left) => request.answer(
                &socket,
                "matchmakingLeft",
                &json!({ "success": true, "left": left }),
            ),
            Err(error) => request.refuse(&socket, unavailable(error)),
        }
    }

    /// Another instance seated `socket` (of this instance) in a match: it waits no more.
    pub fn seated_by_another(&self, socket: &str) {
        self.inner.outbox.waiting().stops(socket);
    }

    /// Queues again every player of this instance that waits for a match, once its state is
    /// written back: its entry may be gone (Redis came back empty, or this instance was taken
    /// for dead and its players' entries removed). A player still queued keeps its place; one
    /// that lost its entry waits again from the back of its queue, on the same connection,
    /// and is not told anything (it was waiting all along).
    pub(super) async fn requeue_waiting(&self) {
        let waiting = self.inner.outbox.waiting();
        for (socket_id, wait) in waiting.all() {
            let Some(socket) = self.socket_in("/", &socket_id) else {
                waiting.stops(&socket_id);
                continue;
            };
            let Some(state) = state_of(&socket) else {
                continue;
            };
            let matches = &self.inner.matches;
            let Ok(queue) = matches.queue(wait.game.as_deref(), wait.mode.as_deref()) else {
                waiting.stops(&socket_id); // Its game is gone from this host.
                continue;
            };
            let me = Seated {
                entry: QueueEntry {
                    id: state.identity.player.clone(),
                    level: wait.level,
                },
                socket: socket_id.clone(),
                instance: self.inner.instance_id.clone(),
            };
            match matches.join(&queue, me).await {
                Ok(None) => tracing::debug!(socket = socket_id, "waits in its queue again"),
                Ok(Some(game)) => {
                    waiting.stops(&socket_id);
                    self.join_room(&socket, game.room_id);
                }
                Err(MatchError::AlreadyInMatch(room)) => {
                    tracing::debug!(socket = socket_id, room, "seated meanwhile: waits no more");
                    waiting.stops(&socket_id);
                }
                Err(error) => {
                    tracing::warn!(socket = socket_id, %error, "a waiting player not queued again")
                }
            }
        }
    }
}
