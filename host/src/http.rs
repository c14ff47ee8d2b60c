//! HTTP endpoints (axum): health, stats and cleanup, with the original backend's shapes.
//!
//! * `GET /health`: the original's component booleans and counts, plus `mode` and `instanceId`.
//! * `GET /health/live`: the process answers (liveness).
//! * `GET /health/ready`: the instance takes players (readiness); 503 while shutting down.
//! * `GET /health/stats`: queues by level, games, socket mappings by instance, active rooms.
//! * `POST /health/cleanup` (admin): removes what no live socket or game backs.
//!
//! Admin endpoints need `Authorization: Bearer <ADMIN_TOKEN>` when a token is configured, and
//! answer only loopback clients when none is. That is checked before anything else, the body
//! included: a refused upload is answered without reading it.

use crate::gateway::Gateway;
use crate::matches::Matches;
use crate::modules::{ModuleError, Modules};
use crate::rules::RulesError;
use crate::store::{Store, StoreError};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub matches: Matches,
    pub modules: Modules,
    pub gateway: Gateway,
    pub admin_token: Option<String>,
    pub instance_id: String,
    /// False once the instance stops taking players.
    pub ready: Arc<AtomicBool>,
    /// Why Redis was not used although `REDIS_URL` asked for it.
    pub redis_error: Option<String>,
    /// The largest rules module an upload may carry.
    pub max_module_bytes: usize,
}

/// Errors an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    #[error("admin endpoints answer only local clients when no ADMIN_TOKEN is set")]
    Forbidden,
    #[error("a rules module may have at most {0} bytes (RULES_MAX_MODULE_BYTES)")]
    TooLarge(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Module(ModuleError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Module(ModuleError::Rules(RulesError::UnknownVersion(_))) => {
                StatusCode::NOT_FOUND
            }
            AppError::Module(ModuleError::Rules(RulesError::InvalidGameName(_))) => {
                StatusCode::BAD_REQUEST
            }
            AppError::Module(ModuleError::Rules(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if matches!(
            self,
            AppError::Unauthorized | AppError::Forbidden | AppError::TooLarge(_)
        ) {
            // The body may be unread: the connection cannot serve another request anyway.
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

pub fn router(state: HttpState) -> Router {
    let admin = Router::new()
        .route("/health/cleanup", post(cleanup))
        .route("/rules/{game}", post(upload_rules))
        .route("/rules/{game}/active", put(activate_rules))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/stats", get(stats))
        .route("/rules", get(list_rules))
        .merge(admin)
        .with_state(state)
}

/// In front of every admin endpoint: refuses a request without the right credentials before the
/// handler runs, so before its body is read.
async fn require_admin(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state.admin_token, request.headers(), peer) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /rules`: every game's versions, which is active, how many matches run each; and the
/// rules folder's files that were refused, with why.
async fn list_rules(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
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
            let listed =
                json!({ "active": active, "description": description, "versions": versions });
            (game, listed)
        })
        .collect();
    let refused = state.modules.rules().refused();
    Ok(Json(json!({ "games": games, "refused": refused })))
}

/// `POST /rules/<game>` (admin), the module's bytes as the body: validated, then active on every
/// instance.
async fn upload_rules(
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
async fn activate_rules(
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
struct ActivateBody {
    version: String,
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
            // Compared as digests, so the time taken says nothing about the token.
            let digest = |text: &str| sha2::Sha256::digest(text.as_bytes());
            if presented.is_some_and(|presented| digest(presented) == digest(token)) {
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
    let queued = store
        .queue_counts()
        .await
        .map(|c| c.values().sum::<usize>());
    let active = store.active_game_count().await;
    let sockets = store.socket_count().await;
    let shared = store.is_shared();
    let reachable = store.is_reachable();
    let mode = if shared { "cluster" } else { "standalone" };
    let mut body = json!({
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
    if let Some(error) = &state.redis_error {
        body["redisError"] = json!(error);
    }
    Json(body)
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

async fn stats(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
    let store = &state.store;
    let counts = store.queue_counts().await?;
    // The original's shape for the default game's default mode...
    let matchmaking: BTreeMap<String, usize> = counts
        .iter()
        .filter(|((lane, _), _)| lane.is_empty())
        .map(|((_, level), count)| (format!("level_{level}"), *count))
        .collect();
    // ...and every queue by game, mode and level.
    let default = state.matches.queue(None, None).ok();
    let mut queues: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> = BTreeMap::new();
    for ((lane, level), count) in &counts {
        let (game, mode) = match crate::matchmaking::parse_lane(lane) {
            Some((game, mode)) => (game.to_string(), mode.to_string()),
            None => match &default {
                Some(queue) => (queue.game.clone(), queue.mode.clone()),
                None => continue,
            },
        };
        let levels = queues.entry(game).or_default().entry(mode).or_default();
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
        "queues": queues,
        "gameStates": { "total": rooms.len(), "rooms": rooms },
        "socketMappings": { "total": store.socket_count().await?, "byInstance": by_instance },
        "sessions": { "total": store.session_count().await? },
        "rooms": { "total": running.len(), "active": running },
        "instances": instances,
    })))
}

async fn cleanup(State(state): State<HttpState>) -> Result<Json<Value>, AppError> {
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
