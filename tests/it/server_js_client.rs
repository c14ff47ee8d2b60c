//! The official JavaScript `socket.io-client` plays whole matches against the server.

use crate::support::server;
use std::path::PathBuf;

async fn run_scenario(scenario: &'static str) {
    let server = server(|_| {}).await;
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        folder.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed in {}; `cargo xtask test` installs it (npm ci)",
        folder.display()
    );
    let url = server.url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg("scenarios.mjs")
            .arg(url)
            .arg(scenario)
            .current_dir(folder)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{scenario} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(": ok"), "{stdout}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_plays_through_the_original_events() {
    run_scenario("original").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_plays_a_whole_authoritative_match() {
    run_scenario("authoritative").await;
}
