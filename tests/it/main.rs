//! End-to-end tests: real wasm modules built from `rules/` and `tests/fixtures/` by
//! `cargo xtask build-rules`, the real server started in-process on port 0, and real Socket.IO
//! clients (`rust_socketio`, and the official JavaScript `socket.io-client` run by node).

mod cluster_support;
mod fuzz_support;
mod host_process;
mod local_cluster;
mod play;
mod raw;
mod support;

mod audit_chaos;
mod audit_replay;
mod authoring;
mod cluster;
mod cluster_games;
mod cluster_waiting;
mod faces_browser;
mod faces_metrics;
mod faces_pages;
mod fuzz_events;
mod fuzz_records;
mod fuzz_rules;
mod hardening_identity;
mod hardening_leaks;
mod hardening_limits;
mod hot_reload;
mod many_games;

mod rules_description;
mod rules_determinism;
mod rules_hostile;
mod rules_tiers;
mod scale_haproxy;
mod scale_redis_cluster;
mod scale_targeted;
mod server_bad_input;
mod server_bots;
mod server_games;
mod server_health;
mod server_js_client;
mod server_matchmaking;
mod server_sessions;
