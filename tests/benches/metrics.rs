//! What metrics cost per action: the calls the host makes for one action (`gamehost_actions_total`,
//! `gamehost_action_seconds`, `gamehost_rules_call_seconds`), first with no recorder (as with
//! `METRICS=false`), then with the Prometheus recorder installed, in one run. Run with
//! `cargo bench -p tests --bench metrics`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn one_action() {
    host::metrics::action(
        black_box("wizard-battle"),
        black_box("ok"),
        Duration::from_micros(900),
    );
    host::metrics::rules_call("action", "optimized", Duration::from_micros(30));
}

fn per_action(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics-per-action");
    group.bench_function("off", |b| b.iter(one_action));
    assert!(host::metrics::install().is_some(), "the recorder installs");
    group.bench_function("on", |b| b.iter(one_action));
    group.finish();
}

criterion_group!(benches, per_action);
criterion_main!(benches);
