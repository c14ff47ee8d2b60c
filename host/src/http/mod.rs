//! HTTP endpoints (axum), one concern per module:
//!
//! * `health`: `GET /health`, `/health/live`, `/health/ready`, `/health/stats` and (admin)
//!   `POST /health/cleanup`, with the original backend's shapes;
//! * `rules`: `GET /rules`, and (admin) upload and activation of a version;
//! * `console`: what the operators' console reads (admin: the fleet, queues, matches, one
//!   match's stored state) and `GET /metrics`;
//! * `matches`: (admin) a match's log, `GET /matches/<room>/log`;
//! * `pages`: the pages people open (`/`, `/play`, `/console`, the Socket.IO Admin UI) and the
//!   npm packages they load, from `WEB_DIR`.
//!
//! Admin endpoints need `Authorization: Bearer <ADMIN_TOKEN>` when a token is configured, and
//! answer only loopback clients when none is. That is checked before anything else, the body
//! included: a refused upload is answered without reading it.

mod console;
mod health;
mod matches;
mod pages;
mod rules;

use crate::gateway::Gateway;
use crate::matches::Matches;
use crate::modules::{ModuleError, Modules};
use crate::rules::RulesError;
use crate::store::{Store, StoreError};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sha2::Digest;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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
    /// The largest rules module an upload may carry.
    pub max_module_bytes: usize,
    /// When this instance started (ms since the epoch).
    pub started_at: u64,
    /// What `/metrics` renders; `None` when metrics are off.
    pub metrics: Option<PrometheusHandle>,
    /// The pages and the npm packages they load; `None` serves no pages.
    pub web_dir: Option<PathBuf>,
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
            AppError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
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
        .route("/health/cleanup", post(health::cleanup))
        .route("/rules/{game}", post(rules::upload_rules))
        .route("/rules/{game}/active", put(rules::activate_rules))
        .route("/console/overview", get(console::overview))
        .route("/console/matches/{room}", get(console::stored_match))
        .route("/matches/{room}/log", get(matches::log))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/stats", get(health::stats))
        .route("/rules", get(rules::list_rules))
        .route("/metrics", get(console::metrics))
        .merge(admin)
        .merge(pages::router(state.web_dir.as_deref()))
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
