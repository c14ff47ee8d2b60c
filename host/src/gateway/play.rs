//! Authoritative play: `submitAction` and `getView`.

use super::requests::{Request, RoomRequest};
use super::{Gateway, Sock};
use crate::matches::payload;
use serde::Deserialize;
use serde_json::{Value, json};

impl Gateway {
    pub(super) async fn submit_action(&self, socket: Sock, request: Request) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Submit {
            room_id: String,
            action: Value,
        }
        let submit = match request
            .parse::<Submit>("{\"roomId\": <string>, \"action\": <the game's action>}")
        {
            Ok(submit) => submit,
            Err(error) => return request.refuse(&socket, error),
        };
        let action = payload(&submit.action);
        match self
            .inner
            .matches
            .act(&submit.room_id, &request.player, action)
            .await
        {
            Ok(turn) => request.answer(
                &socket,
                "actionResult",
                &json!({ "success": true, "turn": turn }),
            ),
            Err(error) => request.refuse(&socket, error.into()),
        }
    }

    pub(super) async fn get_view(&self, socket: Sock, request: Request) {
        let get = match request.parse::<RoomRequest>(RoomRequest::SHAPE) {
            Ok(get) => get,
            Err(error) => return request.refuse(&socket, error),
        };
        match self.inner.matches.view(&get.room_id, &request.player).await {
            Ok((game, view)) => {
                let body = json!({ "roomId": get.room_id, "turn": game.turn, "version": game.version, "view": view, "roundEndsAt": game.round_ends_at });
                request.answer(&socket, "view", &body)
            }
            Err(error) => request.refuse(&socket, error.into()),
        }
    }
}
