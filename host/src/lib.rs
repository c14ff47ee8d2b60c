//! The game host: runs turn-based matches whose rules are wasm modules.
//!
//! # Layout
//!
//! * [`runtime`]: loads, validates and calls rules modules. The only module that touches
//!   wasmtime.
pub mod runtime;
