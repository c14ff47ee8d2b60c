//! The short chaos runs (`loadgen chaos`): their own Redis (one server, or a Redis Cluster) and
//! three `gamehost` processes, players that reconnect and resume, at least one fault of every
//! kind, and every invariant checked at the end. The run decides (it exits non-zero with the
//! evidence); these tests hold it to that and to having injected each kind of fault.

use crate::cluster_support::gamehost_binary;
use crate::support::target_dir;
use std::process::Command;

#[test]
fn a_short_chaos_run_with_every_kind_of_fault_breaks_no_invariant() {
    chaos_run("one-redis", &[], &[]);
}

/// The same on a three-master Redis Cluster the run starts, each node behind its proxy, with
/// slots (a running match's room, or the fleet's) moved to other nodes among the faults.
#[test]
fn a_short_chaos_run_on_a_redis_cluster_breaks_no_invariant() {
    chaos_run("cluster", &["--cluster"], &["slot migration"]);
}

/// Runs `loadgen chaos` for 100 s of faults and holds it to its verdicts, and to having
/// injected every kind of fault (`more_kinds` besides those of every run).
fn chaos_run(name: &str, args: &[&str], more_kinds: &[&str]) {
    let loadgen = target_dir().join("debug/loadgen");
    assert!(
        loadgen.is_file(),
        "{} is missing: `cargo xtask test` builds it (or `cargo build -p loadgen`)",
        loadgen.display()
    );
    let dir =
        std::env::temp_dir().join(format!("gamehost-chaos-test-{name}-{}", std::process::id()));
    let output = Command::new(&loadgen)
        .args([
            "chaos",
            "--instances",
            "3",
            "--players",
            "12",
            "--secs",
            "100",
        ])
        .args(["--drain-secs", "40"])
        .args(args)
        .arg("--gamehost")
        .arg(gamehost_binary())
        .arg("--rules-dir")
        .arg(target_dir().join("rules"))
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("loadgen runs");
    let said = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the chaos run failed ({}); its files are in {}:\n{said}\n{errors}",
        output.status,
        dir.display()
    );
    let faults = said
        .lines()
        .find(|line| line.starts_with("faults: "))
        .unwrap_or_else(|| panic!("no faults line:\n{said}"));
    let every_run = [
        "kill -9 of an instance",
        "SIGTERM of an instance",
        "Redis restart",
        "Redis slow",
        "Redis unreachable",
        "module swap",
        "module rollback",
    ];
    for kind in every_run.iter().chain(more_kinds) {
        assert!(faults.contains(kind), "no {kind}: {faults}");
    }
    assert_eq!(
        faults.contains("slot migration"),
        more_kinds.contains(&"slot migration"),
        "slots move on a cluster only: {faults}"
    );
    let verdicts: Vec<&str> = said
        .lines()
        .skip_while(|line| *line != "invariants:")
        .skip(1)
        .collect();
    assert_eq!(verdicts.len(), 8, "every invariant is reported:\n{said}");
    assert!(
        verdicts
            .iter()
            .all(|line| line.trim_start().starts_with("held")),
        "{said}"
    );
    // Matches were played and ended: the checks had something to check.
    assert!(said.contains(" finished, "), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
