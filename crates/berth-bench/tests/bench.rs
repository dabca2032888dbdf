//! `berth bench` end to end on the embedded store: the seed scenario with one repetition
//! writes JSON with the required fields, and every strategy places all 100 requests; the
//! start scenario runs both runtimes on real workers. No timing is asserted.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIRED: [&str; 18] = [
    "scenario",
    "strategy",
    "rtt_ms",
    "workers",
    "containers",
    "repetitions",
    "p50_ms",
    "min_ms",
    "max_ms",
    "round_trips",
    "redis_reads",
    "lock_acquisitions",
    "lock_collisions",
    "version_conflicts",
    "cache_hit_rate",
    "per_worker_min",
    "per_worker_max",
    "placements_per_sec",
];

/// `berth bench` is the bench's front door, so these tests run the `berth` binary: the one
/// `cargo build -p berth` puts in this test's target directory, with this test's profile.
fn berth() -> Command {
    let exe = std::env::current_exe().unwrap();
    // TARGET/PROFILE/deps/bench-HASH
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "-p", "berth", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "cargo build -p berth failed"
    );
    let binary: PathBuf = profile_dir.join("berth");
    Command::new(binary)
}

#[test]
fn the_seed_scenario_on_the_memory_store_writes_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.json");
    let output = berth()
        .args([
            "bench",
            "--store",
            "memory",
            "--repetitions",
            "1",
            "--rtt-ms",
            "0",
        ])
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "berth bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Seed scenario"), "{stdout}");
    assert!(stdout.contains("seed before"), "{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["store"]["kind"], "memory");
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["machine"]["memory_bytes"].is_u64());
    let runs = json["runs"].as_array().unwrap();
    // 3 strategies x 3 fleet sizes x 1 rtt.
    assert_eq!(runs.len(), 9);
    for run in runs {
        for field in REQUIRED {
            assert!(!run[field].is_null(), "run misses {field}: {run}");
        }
        assert_eq!(run["scenario"], "seed");
        assert_eq!(run["containers"], 100);
        assert_eq!(run["repetitions"], 1);
        assert_eq!(run["placed"], 100.0, "{run}");
        assert_eq!(run["all_placed"], true, "{run}");
        assert!(run["per_worker_max"].as_f64().unwrap() >= run["per_worker_min"].as_f64().unwrap());
    }
    for strategy in ["serial", "batch-lock", "batch-script"] {
        let fleets: Vec<u64> = runs
            .iter()
            .filter(|r| r["strategy"] == strategy)
            .map(|r| r["workers"].as_u64().unwrap())
            .collect();
        assert_eq!(fleets, [10, 20, 40], "{strategy}");
    }
    let script = runs
        .iter()
        .find(|r| r["strategy"] == "batch-script")
        .unwrap();
    assert_eq!(script["lock_acquisitions"], 0.0);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    for (args, expected) in [
        (
            &["--rtt-ms", "-1"][..],
            "--rtt-ms must be between 0 and 1000",
        ),
        (
            &["--rtt-ms", "5000"][..],
            "--rtt-ms must be between 0 and 1000",
        ),
        (
            &["--repetitions", "0"][..],
            "--repetitions must be between 1 and 10000",
        ),
        (&["--scenario", "nope"][..], "invalid value 'nope'"),
        (
            &["--store", "memory", "--redis", "redis://127.0.0.1:1/"][..],
            "--redis cannot be combined",
        ),
    ] {
        let output = berth().arg("bench").args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The start scenario on real runc and process workers (root and runc needed: the test
/// script installs runc): both runtimes run every container to EXITED 0, and every figure
/// is in the JSON. Timing is judged by the bench, not asserted here.
#[test]
fn the_start_scenario_runs_both_runtimes_and_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("start.json");
    let output = berth()
        .args(["bench", "--scenario", "start", "--store", "memory"])
        .args(["--containers", "6", "--in-flight", "2", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "berth bench --scenario start failed (it needs root and runc): {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("submit -> RUNNING"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let start = json["start"].as_array().unwrap();
    let runtimes: Vec<&str> = start
        .iter()
        .map(|r| r["runtime"].as_str().unwrap())
        .collect();
    assert_eq!(runtimes, ["runc", "process"]);
    for result in start {
        assert_eq!(result["containers"], 6);
        assert_eq!(result["in_flight"], 2);
        for figure in [
            "submit_to_running_ms",
            "submit_to_exited_ms",
            "runtime_start_ms",
            "runtime_start_to_exit_ms",
        ] {
            let spread = &result[figure];
            let (p50, p99, max) = (
                spread["p50"].as_f64().unwrap(),
                spread["p99"].as_f64().unwrap(),
                spread["max"].as_f64().unwrap(),
            );
            assert!(p50 <= p99 && p99 <= max, "{figure}: {spread}");
        }
        let running = result["submit_to_running_ms"]["max"].as_f64().unwrap();
        let exited = result["submit_to_exited_ms"]["p50"].as_f64().unwrap();
        assert!(
            exited > 0.0,
            "a container cannot end the moment it was submitted: {result}"
        );
        assert!(running <= result["submit_to_exited_ms"]["max"].as_f64().unwrap());
    }
    let verdict = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["target"].as_str().unwrap().starts_with("start:"))
        .unwrap();
    assert!(["met", "partly", "missed"].contains(&verdict["verdict"].as_str().unwrap()));
}

/// Runs the gpu-sharing scenario with `args`; its output and its JSON report.
fn gpu_sharing(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.json");
    let output = berth()
        .args(["bench", "--scenario", "gpu-sharing"])
        .args(args)
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (stdout, json)
}

/// The policies a gpu-sharing run's report lists, in order.
fn policy_names(run: &serde_json::Value) -> Vec<&str> {
    run["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect()
}

/// The gpu-sharing verdicts of a report.
fn gpu_sharing_verdicts(json: &serde_json::Value) -> Vec<&serde_json::Value> {
    json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["target"].as_str().unwrap().starts_with("gpu-sharing"))
        .collect()
}

/// The gpu-sharing fill, small (40 nodes, 800 pods): every policy runs, the figures are in
/// the JSON and consistent, and the target has a verdict. Which policy wins is judged by
/// the bench, not here.
#[test]
fn the_gpu_sharing_scenario_fills_under_every_policy() {
    let (_, json) = gpu_sharing(&[
        "--workers",
        "40",
        "--requests",
        "800",
        "--stream-seeds",
        "7,8",
    ]);
    let runs = json["gpu_sharing"].as_array().unwrap();
    let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [7, 8], "one fill per seed, in order");
    assert_ne!(
        runs[0]["gpus"], runs[1]["gpus"],
        "each seed draws its own fleet"
    );
    let run = &runs[0];
    assert_eq!(run["nodes"], 40);
    assert_eq!(run["pods"], 800);
    let policies = policy_names(run);
    assert_eq!(policies, ["spread", "pack", "fgd"]);
    for policy in run["policies"].as_array().unwrap() {
        let fill = &policy[1];
        for point in ["first_refusal", "at_capacity", "end"] {
            let rate = fill[point]["gpu_allocation_rate"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&rate), "{point}: {fill}");
        }
        let placed = |point: &str| fill[point]["placed"].as_u64().unwrap();
        assert!(placed("at_capacity") <= placed("end"), "{fill}");
        assert!(placed("first_refusal") <= placed("end"), "{fill}");
        assert!(placed("end") <= 800);
    }
    let verdicts = gpu_sharing_verdicts(&json);
    assert_eq!(verdicts.len(), 2, "a verdict per seed");
    assert!(verdicts[0]["target"].as_str().unwrap().contains("seed 7"));
    for verdict in verdicts {
        assert!(["met", "missed"].contains(&verdict["verdict"].as_str().unwrap()));
    }
}

/// A typed gpu-sharing fill: its result says so, it adds fgd weighing a type-blind demand,
/// and its verdict names the typed stream.
#[test]
fn a_typed_gpu_sharing_fill_adds_the_type_blind_fgd_and_its_own_verdict() {
    let (stdout, json) = gpu_sharing(&["--workers", "20", "--requests", "400", "--typed-pods"]);
    assert!(stdout.contains("a type-blind demand"), "{stdout}");
    let run = &json["gpu_sharing"][0];
    assert_eq!(run["typed"], true);
    let policies = policy_names(run);
    assert_eq!(
        policies,
        ["spread", "pack", "fgd", "fgd, type-blind demand"]
    );
    let verdicts = gpu_sharing_verdicts(&json);
    assert_eq!(verdicts.len(), 1);
    let target = verdicts[0]["target"].as_str().unwrap();
    assert!(target.contains("typed pods"), "{target}");
}
