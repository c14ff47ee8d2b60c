//! A match's record for auditors (admin): `GET /matches/<room>/log`, every input the match
//! received with the module version and the state digest it produced ([`abi::log`]), which
//! `gamehost replay` checks.

use super::{AppError, HttpState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(super) async fn log(
    State(state): State<HttpState>,
    Path(room): Path<String>,
) -> Result<Response, AppError> {
    let Some(game) = state.store.game(&room).await? else {
        return Ok((
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no match is stored under {room}") })),
        )
            .into_response());
    };
    let entries = state.store.match_log(&room).await?;
    Ok(Json(game.log(entries)).into_response())
}
