//! The game host: a Socket.IO server for turn-based multiplayer games whose rules are wasm
//! modules. See `ARCHITECTURE.md` at the repository root for the bird's-eye view.
//!
//! # Layout
//!
//! * [`server`]: builds everything from a [`config::Config`] and serves it on a listener.
//! * [`listener`]: the accept loop: connection limits, header deadline, the websocket gate.
//! * [`transport`]: in front of Engine.IO: secret session ids, connects before other packets.
//! * [`gateway`]: the Socket.IO events. The only module that touches socketioxide.
//! * [`http`]: health, stats and cleanup endpoints (axum).
//! * [`matches`](mod@matches): authoritative matches, one actor task each.
//! * [`matchmaking`]: queues by level, as plain data.
//! * [`store`]: socket mappings, queues, matches, game states, sessions and the instance
//!   registry, behind one interface: in memory, or shared through Redis.
//! * [`redis_store`]: the Redis backend and the adapter's pub/sub. The only module that talks to
//!   Redis.
//! * [`cluster`]: heartbeat, reaping dead instances, following other instances' changes,
//!   write-back after an outage, grace and retention sweeps.
//! * [`rules`]: which rules modules are loaded, by game and by version.
//! * [`modules`]: rules modules across the fleet: install (file watch, upload), validate,
//!   activate, roll back, fetch a version this instance never had.
//! * [`runtime`]: loads, validates and calls rules modules. The only module that touches wasmtime.
//! * [`model`]: the stored records, in the original backend's shapes, and the match log's.
//! * [`replay`]: re-runs a match's log through its module versions and checks every state.

pub mod cluster;
pub mod config;
pub mod gateway;
pub mod http;
pub mod listener;
pub mod matches;
pub mod matchmaking;
pub mod metrics;
pub mod model;
pub mod modules;
pub mod redis_store;
pub mod replay;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod store;
pub mod transport;
