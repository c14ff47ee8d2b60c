//! What the operators' console reads (admin), and `GET /metrics`.
//!
//! * `GET /console/overview`: the fleet's live instances, its queues, its running matches and
//!   every game's rule versions, in one answer the console polls;
//! * `GET /console/matches/<room>`: one match as stored, the full rules state included (which
//!   players never see);
//! * `GET /metrics`: Prometheus text (not admin: scrapers rarely carry tokens, and nothing in it
//!   is a player's).

use super::health::Queues;
use super::{AppError, HttpState};
use crate::model::{GameState, Status, now_ms};
use crate::store::InstanceInfo;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The most matches the overview lists; the count says how many there are in all.
const LISTED_MATCHES: usize = 100;
/// The most stored games read to find them: finished games stay stored a while, and the console
/// polls every 2 s, so its cost must not grow with them.
const SCANNED_GAMES: usize = 500;

pub(super) async fn overview(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
    let queues: Vec<Value> = Queues::read(&state)
        .await?
        .lanes
        .into_iter()
        .map(|((game, mode, level), players)| {
            json!({ "game": game, "mode": mode, "level": level, "players": players })
        })
        .collect();
    let rooms = state.store.game_rooms().await?;
    let mut matches = Vec::new();
    for room in rooms.iter().take(SCANNED_GAMES) {
        if matches.len() == LISTED_MATCHES {
            break;
        }
        match state.store.game(room).await? {
            Some(game) if game.status == Status::Active => matches.push(listed(&game)),
            _ => {}
        }
    }
    Ok(Json(json!({
        "instanceId": state.instance_id,
        "mode": if state.store.is_shared() { "cluster" } else { "standalone" },
        "instances": instances(&state).await?,
        "queues": queues,
        "matches": { "total": state.store.active_game_count().await?, "listed": matches },
        "rules": super::rules::rules_listing(&state).await?,
    })))
}

/// The live instances; in memory, only this one.
async fn instances(state: &HttpState) -> Result<Vec<Value>, AppError> {
    let now = now_ms();
    let about = |i: &InstanceInfo| {
        json!({
            "instanceId": i.id,
            "sockets": i.sockets,
            "startedAt": i.started_at,
            "uptimeSeconds": i.started_at.map(|at| now.saturating_sub(at) / 1000),
            "version": i.build,
            "code": i.code,
            "self": i.id == state.instance_id,
        })
    };
    if !state.store.is_shared() {
        return Ok(vec![about(&InstanceInfo {
            id: state.instance_id.clone(),
            sockets: state.gateway.socket_count(),
            started_at: Some(state.started_at),
            build: Some(env!("CARGO_PKG_VERSION").to_string()),
            code: state.modules.loaded_code(),
        })]);
    }
    Ok(state
        .store
        .live_instances()
        .await?
        .iter()
        .map(about)
        .collect())
}

fn listed(game: &GameState) -> Value {
    let players: Vec<Value> = game
        .players
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "level": p.level,
                "bot": p.bot,
                "connected": p.connected,
                "instanceId": p.instance_id,
            })
        })
        .collect();
    json!({
        "roomId": game.room_id,
        "game": game.game,
        "version": game.module,
        "turn": game.turn,
        "players": players,
        "createdAt": game.created_at,
        "roundEndsAt": game.round_ends_at,
    })
}

pub(super) async fn stored_match(
    State(state): State<HttpState>,
    Path(room): Path<String>,
) -> Result<Response, AppError> {
    Ok(match state.store.game(&room).await? {
        Some(game) => Json(game).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no match is stored under {room}") })),
        )
            .into_response(),
    })
}

pub(super) async fn metrics(State(state): State<HttpState>) -> Result<Response, AppError> {
    let Some(handle) = &state.metrics else {
        let off = json!({ "error": "metrics are off on this instance (METRICS=false)" });
        return Ok((StatusCode::NOT_FOUND, Json(off)).into_response());
    };
    // The queues are the store's; the rest is this instance's own and is reported while the
    // store is away too.
    let queues = match Queues::read(&state).await {
        Ok(queues) => {
            let mut by_level = std::collections::BTreeMap::new();
            for ((game, _mode, level), players) in queues.lanes {
                *by_level.entry((game, level)).or_default() += players;
            }
            Some(by_level)
        }
        Err(error) => {
            tracing::debug!(%error, "queue gauges left as they were");
            None
        }
    };
    let gauges = crate::metrics::Gauges {
        sockets: state.gateway.socket_count(),
        queues,
    };
    let text = crate::metrics::render(handle, gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
