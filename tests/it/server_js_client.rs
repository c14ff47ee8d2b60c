//! The official JavaScript `socket.io-client` plays whole matches against the server.

use crate::support::{node, server};

async fn run_scenario(scenario: &'static str) {
    let server = server(|_| {}).await;
    let args = vec!["scenarios.mjs".into(), server.url(), scenario.into()];
    node("socket.io-client", args, ": ok").await;
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
