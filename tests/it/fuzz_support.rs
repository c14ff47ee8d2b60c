//! What the fuzz targets share: input generators (any JSON, JSON shaped like what the host and
//! games speak, byte-level mutations of valid inputs), how many inputs a run tries, and the
//! regression corpus.
//!
//! The targets are property tests: seeded generation (proptest) rather than coverage-guided
//! fuzzing, whose sanitizer builds need a nightly compiler this toolchain does not have. Each
//! target runs `FUZZ_CASES` inputs (256 by default, so the test command stays quick; set it
//! higher for a long run). An input that ever broke a target is kept as a file under
//! `tests/fuzz/corpus/<target>/` and runs first, every time.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use std::path::PathBuf;

/// Inputs each target tries in this run.
pub fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// A runner with `cases()` cases whose seed is fixed unless `FUZZ_SEED` says otherwise, so a run
/// can be repeated exactly; failures are kept in proptest's regression files.
pub fn config() -> Config {
    Config {
        cases: cases(),
        ..Config::default()
    }
}

/// Every file of a target's regression corpus: `(name, bytes)`.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|f| {
            let path = f.path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// `n` values of `strategy`, drawn from a seeded generator: for targets that run inside an
/// async test (a server, Redis), where proptest's own loop cannot await.
pub fn draw<S: Strategy>(strategy: S, n: u32, seed: u64) -> Vec<S::Value> {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config(), rng);
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("values").current())
        .collect()
}

/// Field names the host's events and the bundled games use, so that generated objects often
/// look almost right, which is where decoders go wrong.
const KEYS: &[&str] = &[
    "roomId",
    "action",
    "level",
    "game",
    "mode",
    "vsBot",
    "seats",
    "spell",
    "target",
    "x",
    "y",
    "playerId",
    "state",
    "message",
    "resumeToken",
    "bid",
    "quantity",
    "face",
    "call",
    "players",
    "rng",
    "turn",
    "winners",
    "id",
    "seed",
    "config",
    "view",
    "player",
    "events",
    "outcome",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

/// Numbers at the edges (0, -1, huge, fractional, out of `i64`), where arithmetic breaks.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-3i64..40).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

/// Any JSON value, up to a few levels deep.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        "\\PC{0,12}".prop_map(Value::from),
        proptest::sample::select(KEYS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One way of damaging bytes.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    /// A piece of JSON text dropped in somewhere.
    Splice(usize, &'static str),
}

const SPLICES: &[&str] = &[
    "null",
    "-1",
    "1e309",
    "18446744073709551616",
    "\"\"",
    "[]",
    "{}",
    "\"\\ud800\"",
    ",",
    "]",
    "}",
    "\"",
    "0.5",
    "true",
];

/// A few mutations to apply to valid bytes.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::sample::select(SPLICES))
            .prop_map(|(at, s)| Mutation::Splice(at, s)),
    ];
    vec(one, 1..6)
}

/// `bytes` with `mutations` applied (positions wrap around the length).
pub fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for mutation in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *mutation {
            Mutation::Flip(i, b) if !out.is_empty() => {
                let i = at(i, out.len());
                out[i] ^= b | 1;
            }
            Mutation::Insert(i, b) => {
                let i = at(i, out.len() + 1);
                out.insert(i, b);
            }
            Mutation::Remove(i) if !out.is_empty() => {
                let i = at(i, out.len());
                out.remove(i);
            }
            Mutation::Truncate(i) => out.truncate(at(i, out.len() + 1)),
            Mutation::Splice(i, text) => {
                let i = at(i, out.len() + 1);
                out.splice(i..i, text.bytes());
            }
            _ => {}
        }
    }
    out
}

/// `document` with one node replaced by `replacement`: the same shape, one field wrong. Which
/// node: `path_seed` picks a child at each level and when to stop.
pub fn tweak(document: &Value, path_seed: usize, replacement: Value) -> Value {
    let mut out = document.clone();
    replace_in(&mut out, path_seed, replacement);
    out
}

fn replace_in(node: &mut Value, seed: usize, replacement: Value) {
    let child = match node {
        Value::Object(map) if !map.is_empty() && seed > 0 => {
            let key = map.keys().nth(seed % map.len()).unwrap().clone();
            map.get_mut(&key)
        }
        Value::Array(items) if !items.is_empty() && seed > 0 => {
            let len = items.len();
            items.get_mut(seed % len)
        }
        _ => None,
    };
    match child {
        Some(child) => replace_in(child, seed / 7, replacement),
        None => *node = replacement,
    }
}
