//! `joinMatchmaking` and `leaveMatchmaking`.

use super::requests::{ClientError, Request};
use super::{Gateway, Sock, unavailable};
use crate::matches::Seated;
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
        match self.store().leave_queue(&request.player).await {
            Ok(left) => request.answer(
                &socket,
                "matchmakingLeft",
                &json!({ "success": true, "left": left }),
            ),
            Err(error) => request.refuse(&socket, unavailable(error)),
        }
    }
}
