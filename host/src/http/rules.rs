//! The rules endpoints: `GET /rules`, and (admin) upload and activation of a version.

use super::{AppError, HttpState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

/// `GET /rules`: every game's versions, which is active, how many matches run each; and the
/// rules folder's files that were refused, with why.
pub(super) async fn list_rules(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
    rules_listing(&state).await.map(Json)
}

/// What `GET /rules` answers; the console shows it too.
pub(super) async fn rules_listing(state: &HttpState) -> Result<Value, AppError> {
    let games: serde_json::Map<String, Value> = state
        .modules
        .list()
        .await?
        .into_iter()
        .map(|(game, versions)| {
            let active = versions
                .iter()
                .find(|v| v.active)
                .map(|v| v.version.clone());
            let description = state.modules.description(&game);
            let bots = state
                .modules
                .rules()
                .active(&game)
                .is_some_and(|m| m.has_bot());
            let listed = json!({
                "active": active,
                "description": description,
                "bots": bots,
                "versions": versions,
            });
            (game, listed)
        })
        .collect();
    let refused = state.modules.rules().refused();
    Ok(json!({ "games": games, "refused": refused }))
}

/// `POST /rules/<game>` (admin), the module's bytes as the body: validated, then active on every
/// instance.
pub(super) async fn upload_rules(
    State(state): State<HttpState>,
    Path(game): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, AppError> {
    let limit = state.max_module_bytes;
    // Refused from its announced length, before any of it is read.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(AppError::TooLarge(limit));
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| AppError::TooLarge(limit))?;
    let version = state.modules.install(&game, body.to_vec()).await?;
    Ok(Json(
        json!({ "game": game, "version": version, "active": true }),
    ))
}

/// `PUT /rules/<game>/active` (admin), `{version}`: makes a known version active again.
pub(super) async fn activate_rules(
    State(state): State<HttpState>,
    Path(game): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<Json<Value>, AppError> {
    state.modules.activate(&game, &body.version).await?;
    Ok(Json(
        json!({ "game": game, "version": body.version, "active": true }),
    ))
}

#[derive(serde::Deserialize)]
pub(super) struct ActivateBody {
    version: String,
}
