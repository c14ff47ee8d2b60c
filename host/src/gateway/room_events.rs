//! The original backend's room events, with the checks it lacked: `gameMessage`,
//! `updatePlayerState` and `getGameState`.

use super::requests::{ClientError, Request, RoomRequest};
use super::{Gateway, Sock};
use crate::matches::{MatchError, Message, Outbox, To, payload};
use crate::model::PlayerId;
use serde::Deserialize;
use serde_json::{Value, json};

impl Gateway {
    /// Checks that `player` plays in `room`; returns the room's players.
    async fn check_member(&self, player: &str, room: &str) -> Result<Vec<PlayerId>, ClientError> {
        let members = self
            .inner
            .matches
            .members(room)
            .await
            .map_err(|error| match error {
                MatchError::NoSuchRoom => {
                    ClientError::new("unknown_room", format!("there is no room {room:?}"))
                }
                other => ClientError::from(other),
            })?;
        if !members.iter().any(|p| p == player) {
            return Err(ClientError::new(
                "not_in_room",
                "you are not a player in this room",
            ));
        }
        Ok(members)
    }

    pub(super) async fn game_message(&self, socket: Sock, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct GameMessage {
            room_id: String,
            #[serde(default)]
            message: Value,
        }
        let message =
            match request.parse::<GameMessage>("{\"roomId\": <string>, \"message\": <any>}") {
                Ok(message) => message,
                Err(error) => return request.refuse(&socket, error),
            };
        let members = match self.check_member(&request.player, &message.room_id).await {
            Ok(members) => members,
            Err(error) => return request.refuse(&socket, error),
        };
        let body = payload(&json!({
            "roomId": message.room_id,
            "sender": request.player,
            "message": message.message,
        }));
        self.inner
            .outbox
            .tell_room(
                &message.room_id,
                vec![Message::new(To::Players(members), "gameMessage", body)],
            )
            .await;
        if request.incoming.wants_ack {
            let _ = request.incoming.ack.send(&json!({ "success": true }));
        }
    }

    pub(super) async fn update_player_state(&self, socket: Sock, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Update {
            room_id: String,
            player_id: String,
            #[serde(default)]
            state: Value,
        }
        let update = match request.parse::<Update>("{\"roomId\", \"playerId\", \"state\"}") {
            Ok(update) => update,
            Err(error) => return request.refuse(&socket, error),
        };
        let result = if update.player_id != request.player {
            Err(ClientError::new(
                "not_your_player",
                "a socket may only update its own player's state",
            ))
        } else {
            self.inner
                .matches
                .set_player_state(&update.room_id, &request.player, update.state)
                .await
                .map_err(ClientError::from)
        };
        let answer = match result {
            Ok(()) => json!({ "success": true }),
            Err(error) => error.answer(),
        };
        request.answer_and_emit(&socket, "playerStateUpdated", &answer);
    }

    pub(super) async fn get_game_state(&self, socket: Sock, request: Request) {
        let get = match request.parse::<RoomRequest>(RoomRequest::SHAPE) {
            Ok(get) => get,
            Err(error) => return request.refuse(&socket, error),
        };
        let result = match self.check_member(&request.player, &get.room_id).await {
            Ok(_) => self
                .inner
                .matches
                .view(&get.room_id, &request.player)
                .await
                .map_err(ClientError::from),
            Err(error) => Err(error),
        };
        // As the original: `state: null` and an `error` on failure.
        let answer = match result {
            Ok((game, view)) => json!({ "roomId": get.room_id, "state": game.for_player(view) }),
            Err(error) => {
                json!({ "roomId": get.room_id, "state": null, "code": error.code, "error": error.message })
            }
        };
        request.answer_and_emit(&socket, "gameState", &answer);
    }
}
