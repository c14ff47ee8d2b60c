//! The pages in a real browser: Debian's Chromium, headless, driven by puppeteer-core from the
//! scenarios in `tests/js/browser/` (each fails on any page error). They leave screenshots in
//! `target/screenshots/`, which the README shows.

use crate::cluster_support::{HostProcess, PrivateRedis, unique_prefix};
use crate::support::{Endpoint, node, server, target_dir, variant};
use std::path::PathBuf;

const TOKEN: &str = "browser-test-token";

/// `web/` of this checkout: the pages and the npm packages they load.
pub fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

fn screenshots() -> PathBuf {
    let folder = target_dir().join("screenshots");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// Runs `tests/js/browser/<script>` with `args` (and the screenshot folder last); it must say ok.
async fn scenario(script: &str, mut args: Vec<String>) {
    assert!(
        web_dir().join("node_modules/socket.io-client").is_dir(),
        "the pages' npm packages are not installed; `cargo xtask test` installs them (npm ci in web/)"
    );
    args.insert(0, format!("browser/{script}"));
    args.push(screenshots().display().to_string());
    node("puppeteer-core", args, "browser scenario: ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_play_a_whole_wizard_battle_and_a_reloaded_page_resumes_its_match() {
    let server = server(|config| config.web_dir = Some(web_dir())).await;
    scenario("game.mjs", vec![server.url()]).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_plays_a_match_by_typed_json_and_shows_refusals_with_their_codes() {
    let server = server(|config| config.web_dir = Some(web_dir())).await;
    scenario("playground.mjs", vec![server.url()]).await;
    server.shutdown().await.unwrap();
}

/// Two `gamehost` processes sharing a private Redis, with an admin token.
async fn fleet_of_two() -> (PrivateRedis, HostProcess, HostProcess) {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let env = [("ADMIN_TOKEN", TOKEN)];
    let first = HostProcess::spawn(&redis, &prefix, &env).await;
    let second = HostProcess::spawn(&redis, &prefix, &env).await;
    (redis, first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_running_match_and_a_swap_made_from_it_reaches_the_other_instance() {
    let (_redis, first, second) = fleet_of_two().await;
    let bytes = std::fs::read(target_dir().join("rules/wizard-battle.wasm")).unwrap();
    let module = std::env::temp_dir().join(format!("console-upload-{}.wasm", first.port));
    std::fs::write(&module, variant(&bytes, "uploaded from the console")).unwrap();
    let args = vec![
        first.url(),
        second.url(),
        TOKEN.to_string(),
        module.display().to_string(),
    ];
    scenario("console.mjs", args).await;
    let _ = std::fs::remove_file(module);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_admin_ui_lists_both_instances_and_their_sockets_and_disconnects_a_player() {
    let (_redis, first, second) = fleet_of_two().await;
    let args = vec![first.url(), second.url(), TOKEN.to_string()];
    scenario("admin-ui.mjs", args).await;
}
