//! Health, stats and cleanup, with the original backend's shapes.

use super::{AppError, HttpState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

pub(super) async fn health(State(state): State<HttpState>) -> Json<Value> {
    let store = &state.store;
    let queued = store
        .queue_counts()
        .await
        .map(|c| c.values().sum::<usize>());
    let active = store.active_game_count().await;
    let sockets = store.socket_count().await;
    let shared = store.is_shared();
    let reachable = store.is_reachable();
    let mode = if shared { "cluster" } else { "standalone" };
    let body = json!({
        "status": if reachable { "ok" } else { "degraded" },
        "mode": mode,
        "instanceId": state.instance_id,
        "redis": shared && reachable,
        "matchmaking": queued.is_ok(),
        "gameStates": active.is_ok(),
        "socketMappings": sockets.is_ok(),
        "details": {
            "redisConnection": shared && reachable,
            "matchmakingData": queued.unwrap_or_default(),
            "activeGameStates": active.unwrap_or_default(),
            "activeSocketMappings": sockets.unwrap_or_default(),
            "activeRooms": state.matches.running().len(),
        }
    });
    Json(body)
}

pub(super) async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

pub(super) async fn ready(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    }
}

pub(super) async fn stats(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
    let store = &state.store;
    let queues = Queues::read(&state).await?;
    // The original's shape for the default game's default mode...
    let matchmaking: BTreeMap<String, usize> = queues
        .original
        .iter()
        .map(|(level, count)| (format!("level_{level}"), *count))
        .collect();
    // ...and every queue by game, mode and level.
    let mut by_game: BTreeMap<&str, BTreeMap<&str, BTreeMap<String, usize>>> = BTreeMap::new();
    for ((game, mode, level), count) in &queues.lanes {
        let levels = by_game.entry(game).or_default().entry(mode).or_default();
        levels.insert(format!("level_{level}"), *count);
    }
    let rooms = store.game_rooms().await?;
    let by_instance = store.sockets_by_instance().await?;
    let running = state.matches.running();
    let instances: Vec<Value> = store
        .live_instances()
        .await?
        .iter()
        .map(|i| json!({ "instanceId": i.id, "sockets": i.sockets }))
        .collect();
    Ok(Json(json!({
        "matchmaking": matchmaking,
        "queues": by_game,
        "gameStates": { "total": rooms.len(), "rooms": rooms },
        "socketMappings": { "total": store.socket_count().await?, "byInstance": by_instance },
        "sessions": { "total": store.session_count().await? },
        "rooms": { "total": running.len(), "active": running },
        "instances": instances,
    })))
}

/// Every queue's waiting players, read from the store.
pub(super) struct Queues {
    /// (game, mode, level) → players.
    pub lanes: BTreeMap<(String, String, i64), usize>,
    /// The original's queues (the default game's default mode): level → players.
    pub original: BTreeMap<i64, usize>,
}

impl Queues {
    pub async fn read(state: &HttpState) -> Result<Queues, AppError> {
        let counts = state.store.queue_counts().await?;
        let default = state.matches.queue(None, None).ok();
        let mut queues = Queues {
            lanes: BTreeMap::new(),
            original: BTreeMap::new(),
        };
        for ((lane, level), count) in counts {
            let (game, mode) = match crate::matchmaking::parse_lane(&lane) {
                Some((game, mode)) => (game.to_string(), mode.to_string()),
                None => {
                    queues.original.insert(level, count);
                    match &default {
                        Some(queue) => (queue.game.clone(), queue.mode.clone()),
                        None => continue,
                    }
                }
            };
            queues.lanes.insert((game, mode, level), count);
        }
        Ok(queues)
    }
}

pub(super) async fn cleanup(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
    let live = state.gateway.live_sockets();
    let cleaned = state.store.cleanup(&state.instance_id, &live).await?;
    tracing::info!(?cleaned, "cleanup");
    Ok(Json(json!({
        "cleaned": cleaned.total(),
        "errors": 0,
        "details": {
            "socketMappings": cleaned.socket_mappings,
            "sessions": cleaned.sessions,
            "queueEntries": cleaned.queue_entries,
            "matches": cleaned.matches,
            "instances": cleaned.instances,
        }
    })))
}
