//! The pages people open, served from `WEB_DIR` (`web/` of the checkout):
//!
//! * `/`: wizard battle, playable; `/play`: a playground for any game; `/console`: the
//!   operators' console. Our own files, in `web/pages/`.
//! * `/vendor/socket.io.min.js`: the official Socket.IO client the pages use, and
//!   `/vendor/mdi/`: the icon font the Admin UI needs, from `web/node_modules` (`npm ci` in
//!   `web/`, which `cargo xtask run` and `cargo xtask test` do).
//! * `/admin-ui/`: the stock Socket.IO Admin UI's static build, from its npm package. Its
//!   `index.html` loads its fonts from CDNs; it is served with those links pointing here instead,
//!   so that it works offline (Roboto falls back to the system's sans-serif).
//!
//! Nothing here needs the admin token: the pages are public, and what they read or change goes
//! through the endpoints, which check it.

use super::HttpState;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use std::path::{Path, PathBuf};
use tower_http::services::{ServeDir, ServeFile};

const ADMIN_UI: &str = "node_modules/@socket.io/admin-ui/ui/dist";
const MDI_CDN: &str =
    "https://cdn.jsdelivr.net/npm/@mdi/font@latest/css/materialdesignicons.min.css";
const ROBOTO_CDN: &str = r#"<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto:100,300,400,500,700,900">"#;

pub(super) fn router(web_dir: Option<&Path>) -> Router<HttpState> {
    let Some(web) = web_dir else {
        return Router::new();
    };
    let pages = web.join("pages");
    let page = |name: &str| ServeFile::new(pages.join(name));
    let modules = web.join("node_modules");
    let admin_ui = web.join(ADMIN_UI);
    let admin_index = admin_ui.join("index.html");
    Router::new()
        .route_service("/", page("index.html"))
        .route_service("/play", page("play.html"))
        .route_service("/console", page("console.html"))
        .nest_service("/assets", ServeDir::new(pages.join("assets")))
        .route_service(
            "/vendor/socket.io.min.js",
            ServeFile::new(modules.join("socket.io-client/dist/socket.io.min.js")),
        )
        .route_service(
            "/vendor/socket.io.min.js.map",
            ServeFile::new(modules.join("socket.io-client/dist/socket.io.min.js.map")),
        )
        .nest_service("/vendor/mdi", ServeDir::new(modules.join("@mdi/font")))
        .route(
            "/admin-ui",
            get(|| async { Redirect::permanent("/admin-ui/") }),
        )
        .route(
            "/admin-ui/",
            get(move || admin_ui_index(admin_index.clone())),
        )
        // Its page is rewritten (above); the rest is served as built.
        .nest_service("/admin-ui/js", ServeDir::new(admin_ui.join("js")))
        .nest_service("/admin-ui/css", ServeDir::new(admin_ui.join("css")))
        .nest_service("/admin-ui/img", ServeDir::new(admin_ui.join("img")))
        .route_service(
            "/admin-ui/favicon.png",
            ServeFile::new(admin_ui.join("favicon.png")),
        )
        .fallback(not_found)
}

/// The Admin UI's page, its font links pointing at this host.
async fn admin_ui_index(path: PathBuf) -> Response {
    match tokio::fs::read_to_string(&path).await {
        Ok(page) => Html(
            page.replace(MDI_CDN, "/vendor/mdi/css/materialdesignicons.min.css")
                .replace(ROBOTO_CDN, ""),
        )
        .into_response(),
        Err(error) => not_installed(&path, error),
    }
}

fn not_installed(path: &Path, error: std::io::Error) -> Response {
    tracing::warn!(path = %path.display(), %error, "a page's files are missing");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "{} is missing ({error}): run `npm ci` in the web folder (cargo xtask run does)\n",
            path.display()
        ),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "nothing here: the game is at /, the playground at /play, the console at /console\n",
    )
        .into_response()
}
