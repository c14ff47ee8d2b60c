//! `joinMatchmaking` and `leaveMatchmaking`.

use super::requests::{ClientError, Request};
use super::{Gateway, Sock, unavailable};
use crate::matchmaking::Joined;
use crate::model::{QueueEntry, Session, Status};
use serde::Deserialize;
use serde_json::{Value, json};

impl Gateway {
    pub(super) async fn join_matchmaking(&self, socket: Sock, request: Request) {
        #[derive(Deserialize)]
        struct Join {
            level: i64,
            #[serde(default)]
            game: Option<String>,
            #[serde(default)]
            mode: Option<String>,
        }
        let join = match request.parse::<Join>("{\"level\": <integer>}") {
            Ok(join) => join,
            Err(_) => {
                let error = ClientError::new(
                    "invalid_level",
                    "level must be an integer number, e.g. {\"level\": 2}; game and mode, if given, are names",
                );
                return request.refuse(&socket, error);
            }
        };
        let level = join.level;
        let queue = match self
            .inner
            .matches
            .queue(join.game.as_deref(), join.mode.as_deref())
        {
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
        let me = QueueEntry {
            id: player.clone(),
            level,
        };
        let instance = self.inner.instance_id.clone();
        let opponent = loop {
            let joined = match self.store().join_queue(&queue.lane, &me, &instance).await {
                Ok(joined) => joined,
                Err(error) => return request.refuse(&socket, unavailable(error)),
            };
            let Joined::Paired { opponent } = joined else {
                break None;
            };
            match self.store().session(&opponent.id).await {
                Ok(Some(Session {
                    socket_id: Some(socket_id),
                    instance_id: Some(instance_id),
                    ..
                })) => break Some((opponent, socket_id, instance_id)),
                // The opponent left between queueing and now: look again.
                Ok(_) => continue,
                Err(error) => return request.refuse(&socket, unavailable(error)),
            }
        };
        let Some(opponent) = opponent else {
            let _ = socket.emit("waiting", &json!({ "message": "Waiting for a match..." }));
            return request.answer(&socket, "joinMatchmaking", &Value::Null);
        };
        let pair = [opponent, (me, socket.id.to_string(), instance)];
        match self.inner.matches.start(&queue, pair).await {
            Ok(game) => {
                socket.join(game.room_id.clone());
                request.answer(&socket, "joinMatchmaking", &game.room_id)
            }
            Err(error) => {
                tracing::error!(%error, "could not start a match");
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
