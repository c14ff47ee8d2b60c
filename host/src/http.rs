//! HTTP endpoints (axum): health, stats and cleanup, with the original backend's shapes.
//!
//! * `GET /health`: the original's component booleans and counts, plus `mode` and `instanceId`.
//! * `GET /health/live`: the process answers (liveness).
//! * `GET /health/ready`: the instance takes players (readiness); 503 while shutting down.
//! * `GET /health/stats`: queues by level, games, socket mappings by instance, active rooms.
//! * `POST /health/cleanup` (admin): removes what no live socket or game backs.
//!
//! Admin endpoints need `Authorization: Bearer <ADMIN_TOKEN>` when a token is configured, and
//! answer only loopback clients when none is.

use crate::gateway::Gateway;
use crate::matches::Matches;
use crate::model::Status;
use crate::store::Store;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub matches: Matches,
    pub gateway: Gateway,
    pub admin_token: Option<String>,
    pub instance_id: String,
    /// False once the instance stops taking players.
    pub ready: Arc<AtomicBool>,
}

/// Errors an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    #[error("admin endpoints answer only local clients when no ADMIN_TOKEN is set")]
    Forbidden,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden => StatusCode::FORBIDDEN,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/stats", get(stats))
        .route("/health/cleanup", post(cleanup))
        .with_state(state)
}

fn authorize(
    admin_token: &Option<String>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), AppError> {
    match admin_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented == Some(token.as_str()) {
                Ok(())
            } else {
                Err(AppError::Unauthorized)
            }
        }
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(AppError::Forbidden),
    }
}

async fn health(State(state): State<HttpState>) -> Json<Value> {
    let store = &state.store;
    let queued: usize = store.queue_counts().values().sum();
    let active = store
        .games()
        .iter()
        .filter(|(_, status)| *status == Status::Active)
        .count();
    Json(json!({
        "status": "ok",
        "mode": "standalone",
        "instanceId": state.instance_id,
        "redis": false,
        "matchmaking": true,
        "gameStates": true,
        "socketMappings": true,
        "details": {
            "redisConnection": false,
            "matchmakingData": queued,
            "activeGameStates": active,
            "activeSocketMappings": store.socket_count(),
            "activeRooms": state.matches.running().len(),
        }
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    }
}

async fn stats(State(state): State<HttpState>) -> Json<Value> {
    let store = &state.store;
    let matchmaking: BTreeMap<String, usize> = store
        .queue_counts()
        .into_iter()
        .map(|(level, count)| (format!("level_{level}"), count))
        .collect();
    let games = store.games();
    let rooms: Vec<&String> = games.iter().map(|(room, _)| room).collect();
    let by_instance = store.sockets_by_instance();
    let running = state.matches.running();
    let instances: Vec<Value> = by_instance
        .iter()
        .map(|(id, sockets)| json!({ "instanceId": id, "sockets": sockets }))
        .collect();
    Json(json!({
        "matchmaking": matchmaking,
        "gameStates": { "total": games.len(), "rooms": rooms },
        "socketMappings": { "total": store.socket_count(), "byInstance": by_instance },
        "rooms": { "total": running.len(), "active": running },
        "instances": instances,
    }))
}

async fn cleanup(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    authorize(&state.admin_token, &headers, peer)?;
    let live = state.gateway.live_sockets();
    let cleaned = state.store.cleanup(|socket| live.contains(socket));
    tracing::info!(?cleaned, "cleanup");
    Ok(Json(json!({
        "cleaned": cleaned.total(),
        "errors": 0,
        "details": {
            "socketMappings": cleaned.socket_mappings,
            "queueEntries": cleaned.queue_entries,
            "matches": cleaned.matches,
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn admin_needs_the_token_when_one_is_set_and_loopback_when_not() {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let remote: SocketAddr = "203.0.113.7:9".parse().unwrap();
        let token = Some("s3cret".to_string());

        assert!(authorize(&token, &headers(Some("Bearer s3cret")), remote).is_ok());
        assert!(matches!(
            authorize(&token, &headers(Some("Bearer nope")), local),
            Err(AppError::Unauthorized)
        ));
        assert!(matches!(
            authorize(&token, &headers(Some("s3cret")), local),
            Err(AppError::Unauthorized)
        ));
        assert!(matches!(
            authorize(&token, &headers(None), local),
            Err(AppError::Unauthorized)
        ));

        assert!(authorize(&None, &headers(None), local).is_ok());
        assert!(authorize(&None, &headers(None), "[::1]:9".parse().unwrap()).is_ok());
        assert!(matches!(
            authorize(&None, &headers(Some("Bearer x")), remote),
            Err(AppError::Forbidden)
        ));
    }
}
