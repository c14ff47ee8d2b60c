//! End-to-end tests: real wasm modules built from `rules/` and `tests/fixtures/` by
//! `cargo xtask build-rules`, run by the host's runtime.

mod support;

mod rules_determinism;
mod rules_hostile;
