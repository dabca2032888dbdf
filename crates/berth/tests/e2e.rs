//! End to end with real processes: `berth server` on Redis with two `berth worker`
//! processes, and `berth up` alone; `berth run --wait` completes and its output is visible
//! through `berth logs`; `berth logs --follow` prints a running container's lines once each,
//! in order, until it ends; a worker killed with SIGKILL has its containers given back once,
//! and when it comes back it kills what it left running; a container allowed a retry runs
//! again on another worker; a worker killed and restarted at
//! once adopts its runc containers and reports them to their end; GPU containers get their
//! own devices; a GPU that turns unhealthy (a fake `nvidia-smi`) takes no containers until
//! it recovers, and the containers on it are shown on it; `berth server` and `berth check`
//! on a Redis that serves TLS only and wants a password, given by file or environment, and
//! the message a wrong password gives (without the password in it).

#![allow(clippy::unwrap_used)]

mod common;

use common::{BERTH, Proc, eventually, free_port};

use berth_localredis::{LocalRedis, Security};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The config directory every berth process of this test shares (`BERTH_CONFIG_DIR`),
/// holding the admin token the servers accept and the clients call with. nextest runs each
/// test in a process of its own, so each test has its own.
fn config_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let token = berth_core::Token::from_random(rand::random(), rand::random());
        std::fs::write(dir.path().join("token"), token.expose()).unwrap();
        dir
    })
    .path()
}

/// The admin token of this test's servers.
fn admin_token() -> String {
    std::fs::read_to_string(config_dir().join("token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `berth` with `args`, in this test's config directory.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BERTH);
    command
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("BERTH_CONFIG_DIR", config_dir());
    command
}

fn spawn(args: &[&str]) -> Proc {
    spawn_with(args, &[])
}

/// Like [`spawn`], with these environment variables set too.
fn spawn_with(args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut command = command(args);
    for (name, value) in env {
        command.env(name, value);
    }
    Proc(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn berth(server: &str, args: &[&str]) -> Output {
    command(args).env("BERTH_SERVER", server).output().unwrap()
}

fn json(server: &str, args: &[&str]) -> serde_json::Value {
    let out = berth(server, args);
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn workers_up(server: &str, n: usize) {
    eventually("the workers to register", || {
        let out = berth(server, &["workers", "--json"]);
        out.status.success()
            && serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
                .is_ok_and(|w| w.len() >= n)
    });
}

fn run_hello(server: &str) {
    let out = berth(
        server,
        &[
            "run", "--wait", "--cpu", "100m", "--memory", "64Mi", "--id", "hello-1", "--", "echo",
            "hello",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    let logs = berth(server, &["logs", "hello-1"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "hello");
    let failed = berth(server, &["run", "--wait", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7), "the exit code comes back");
}

/// A `berth server` on a Redis of its own, and its URL.
fn server_on_redis() -> (LocalRedis, Proc, String) {
    let redis = LocalRedis::start().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = spawn(&["server", "--listen", &listen, "--redis", &redis.url()]);
    (redis, server, format!("http://{listen}"))
}

fn check_clean(server: &str) {
    let check = reqwest_free_get(server, "/v1/check");
    assert!(check.contains("\"violations\":[]"), "{check}");
}

/// A GET without an HTTP client crate: the server speaks plain HTTP/1.1.
fn reqwest_free_get(server: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = server.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        admin_token()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn server_on_redis_with_two_worker_processes_runs_a_container() {
    let redis = LocalRedis::start().unwrap();
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let _server = spawn(&[
        "server",
        "--listen",
        &listen,
        "--redis",
        &redis.url(),
        "--prefix",
        "e2e",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut workers = Vec::new();
    for id in ["w-a", "w-b"] {
        let work = dir.path().join(id);
        workers.push(spawn(&[
            "worker",
            "--server",
            &server,
            "--id",
            id,
            "--cpu",
            "1",
            "--memory",
            "1Gi",
            "--work-dir",
            work.to_str().unwrap(),
        ]));
    }
    workers_up(&server, 2);
    run_hello(&server);
    check_clean(&server);
    let direct = berth(
        &server,
        &[
            "check",
            "--redis",
            &redis.url(),
            "--prefix",
            "e2e",
            "--dead-after",
            "90",
        ],
    );
    assert_eq!(
        direct.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&direct.stdout)
    );
    let wrong = berth(&server, &["check", "--redis", "redis://127.0.0.1:1/"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "an unreachable Redis is an error, not a pass"
    );
    for (args, says) in [
        (&["--dead-after", "0"][..], "at least 1 second"),
        (
            &["--dead-after", "soon"][..],
            "not a whole number of seconds",
        ),
    ] {
        let refused = berth(
            &server,
            &[&["check", "--redis", &redis.url()][..], args].concat(),
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    let without_redis = berth(&server, &["check", "--dead-after", "30"]);
    assert_eq!(
        without_redis.status.code(),
        Some(2),
        "--dead-after goes with --redis"
    );
}

#[test]
fn berth_up_alone_runs_a_container() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let _up = spawn(&[
        "up",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "2",
        "--work-dir",
        dir.path().to_str().unwrap(),
    ]);
    workers_up(&server, 2);
    run_hello(&server);
    check_clean(&server);
}

#[test]
fn a_killed_workers_containers_are_lost_and_its_capacity_reclaimed_once() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&[
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--heartbeat-timeout",
        "2",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = spawn(&worker_args(&server, "doomed", dir.path()));
    workers_up(&server, 1);
    for i in 0..2 {
        let id = format!("long-{i}");
        let out = berth(
            &server,
            &[
                "run", "--id", &id, "--cpu", "500m", "--memory", "256Mi", "--", "sleep", "600",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually("both containers running", || {
        ["long-0", "long-1"].iter().all(|id| {
            json(&server, &["ps", "--json", "--state", "running"])
                .to_string()
                .contains(id)
        })
    });
    // RUNNING is reported before runc starts a container: wait until runc has both.
    eventually("both containers under runc", || {
        runc_containers(dir.path()).len() == 2
    });
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    eventually("the containers to be declared lost", || {
        let lost = json(&server, &["ps", "--json", "--state", "lost"]).to_string();
        lost.contains("long-0") && lost.contains("long-1")
    });
    let workers = json(&server, &["workers", "--json"]);
    let worker = &workers[0];
    assert_eq!(worker["status"], "lost");
    assert_eq!(
        worker["free"], worker["total"],
        "capacity reclaimed, exactly once: {worker}"
    );
    check_clean(&server);
    // The runc containers outlived their agent; the worker, back, owns none of them and
    // kills them all.
    assert_eq!(
        runc_containers(dir.path()).len(),
        2,
        "runc containers survive the agent"
    );
    let _back = spawn(&worker_args(&server, "doomed", dir.path()));
    eventually("the leftovers to be killed", || {
        runc_containers(dir.path()).is_empty()
    });
    check_clean(&server);
}

#[test]
fn a_killed_workers_container_with_retries_runs_again_on_another_worker() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&[
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--heartbeat-timeout",
        "2",
    ]);
    let (doomed_dir, spare_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut doomed = spawn(&worker_args(&server, "doomed", doomed_dir.path()));
    workers_up(&server, 1);
    // The retried one waits for ever on the doomed worker and ends at once anywhere else,
    // so the test does not race the kill.
    let waits_on_doomed = r#"[ "$BERTH_WORKER_ID" = doomed ] && exec sleep 600; exit 0"#;
    let runs: [&[&str]; 2] = [
        &[
            "--id",
            "retried",
            "--max-retries",
            "1",
            "--",
            "sh",
            "-c",
            waits_on_doomed,
        ],
        &["--id", "plain", "--", "sleep", "600"],
    ];
    for run in runs {
        let args = [&["run", "--cpu", "500m", "--memory", "256Mi"][..], run].concat();
        let out = berth(&server, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually("both containers under runc on the doomed worker", || {
        ["retried", "plain"]
            .iter()
            .all(|id| state_of(&server, id) == "running")
            && runc_containers(doomed_dir.path()).len() == 2
    });
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let _spare = spawn(&worker_args(&server, "spare", spare_dir.path()));
    eventually(
        "the retried one to run to its end on the spare worker",
        || state_of(&server, "retried") == "exited",
    );
    let retried = view_of(&server, "retried");
    assert_eq!(
        (
            &retried["worker"],
            &retried["exit_code"],
            &retried["retries"]
        ),
        (&"spare".into(), &0.into(), &1.into()),
        "{retried}"
    );
    eventually("the one without retries to be lost", || {
        state_of(&server, "plain") == "lost"
    });
    let plain = view_of(&server, "plain");
    assert_eq!(plain["retries"], 0, "{plain}");
    assert_eq!(
        plain["reason"], "worker doomed missed its heartbeats",
        "{plain}"
    );
    check_clean(&server);
    // Back, the doomed worker owns neither of its leftovers and kills them.
    let _back = spawn(&worker_args(&server, "doomed", doomed_dir.path()));
    eventually("the leftovers to be killed", || {
        runc_containers(doomed_dir.path()).is_empty()
    });
    check_clean(&server);
}

/// Container `id` as `berth ps --json` shows it.
fn view_of(server: &str, id: &str) -> serde_json::Value {
    json(server, &["ps", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_default()
}

/// `berth worker` arguments for `id` with its work in `dir`, under runc.
fn worker_args<'a>(server: &'a str, id: &'a str, dir: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        "worker",
        "--server",
        server,
        "--id",
        id,
        "--cpu",
        "2",
        "--memory",
        "2Gi",
        "--runtime",
        "runc",
        "--work-dir",
        dir.to_str().unwrap(),
    ]
}

/// The ids of the runc containers in the state root of the worker whose work is in `dir`.
fn runc_containers(dir: &std::path::Path) -> Vec<String> {
    let state = dir.join("runc").join("state");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["list", "-q"])
        .output()
        .expect("runc must be installed (the test script installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_worker_restarted_after_sigkill_adopts_its_runc_containers() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&["server", "--listen", &format!("127.0.0.1:{port}")]);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn(&worker_args(&server, "phoenix", dir.path()));
    workers_up(&server, 1);
    for i in 0..3 {
        let id = format!("kept-{i}");
        let script = format!("echo start-{i}; sleep 4; echo end-{i}; exit {}", 10 + i);
        let out = berth(
            &server,
            &[
                "run", "--id", &id, "--cpu", "100m", "--memory", "64Mi", "--", "sh", "-c", &script,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually("three containers running under runc", || {
        runc_containers(dir.path()).len() == 3
    });
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let _agent = spawn(&worker_args(&server, "phoenix", dir.path()));
    for i in 0..3 {
        let id = format!("kept-{i}");
        eventually("the adopted container to end", || {
            json(&server, &["ps", "--json", "--state", "exited"])
                .to_string()
                .contains(&id)
        });
        let view = json(&server, &["ps", "--json", "--state", "exited"]);
        let view = view
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id.as_str())
            .unwrap()
            .clone();
        assert_eq!(view["exit_code"], 10 + i, "{view}");
        let logs = String::from_utf8_lossy(&berth(&server, &["logs", &id]).stdout).into_owned();
        assert!(
            logs.contains(&format!("end-{i}")),
            "output after the restart is kept: {logs}"
        );
    }
    assert!(runc_containers(dir.path()).is_empty());
    let workers = json(&server, &["workers", "--json"]);
    assert_eq!(workers[0]["free"], workers[0]["total"], "{workers}");
    check_clean(&server);
}

/// Starts `berth logs ID --follow` (with `extra` flags) with its output piped.
fn follower(server: &str, id: &str, extra: &[&str]) -> Child {
    command(&["logs", id, "--follow"])
        .args(extra)
        .env("BERTH_SERVER", server)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit (at most 60 s: bounds a hang, times nothing).
fn finished(mut child: Child) -> Output {
    eventually("the follower to exit", || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}

#[test]
fn logs_follow_prints_every_line_once_in_order_until_the_container_ends() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let _up = spawn(&[
        "up",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "1",
        "--work-dir",
        dir.path().to_str().unwrap(),
    ]);
    workers_up(&server, 1);
    // About 7 s of output: the worker sends what it has every 5 s while the container
    // runs, and the rest when it ends, so both reach the followers.
    let script = "for i in $(seq 1 35); do echo line $i; sleep 0.2; done; exit 3";
    let submitted = json(
        &server,
        &[
            "run", "--json", "--cpu", "100m", "--memory", "64Mi", "--id", "tail-1", "--", "sh",
            "-c", script,
        ],
    );
    assert_eq!(submitted["id"], "tail-1");
    let plain = follower(&server, "tail-1", &[]);
    let json_follower = follower(&server, "tail-1", &["--json"]);
    let expected: Vec<String> = (1..=35).map(|i| format!("line {i}")).collect();

    let plain = finished(plain);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(3), "its exit code: {stderr}");
    let printed: Vec<&str> = std::str::from_utf8(&plain.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(
        printed, expected,
        "every line once, in order; stderr: {stderr}"
    );
    assert!(stderr.contains("tail-1 exited"), "{stderr}");

    let json_out = finished(json_follower);
    assert_eq!(json_out.status.code(), Some(3));
    let events: Vec<serde_json::Value> = std::str::from_utf8(&json_out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (last, lines) = events.split_last().unwrap();
    assert_eq!(last["event"], "ended");
    assert_eq!(last["container"]["state"], "exited");
    assert_eq!(last["container"]["exit_code"], 3);
    let texts: Vec<&str> = lines.iter().map(|e| e["line"].as_str().unwrap()).collect();
    assert_eq!(texts, expected);
    let positions: Vec<u64> = lines
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..35).collect::<Vec<u64>>());

    // Following an ended container prints what is kept and ends at once.
    let again = berth(&server, &["logs", "tail-1", "-f"]);
    assert_eq!(again.status.code(), Some(3));
    let printed: Vec<&str> = std::str::from_utf8(&again.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(printed, expected);
    // An unknown container is an error, not a wait.
    let unknown = berth(&server, &["logs", "nobody", "--follow"]);
    assert_eq!(unknown.status.code(), Some(2));
    check_clean(&server);
}

/// The README's GPU example, on Redis with a runc worker of two A10G: two 1-GPU containers
/// that run at once get different devices (CUDA_VISIBLE_DEVICES 0 and 1); two halves of a
/// GPU share one device and are told their share. The worker's devices show in `berth
/// workers --json`, and the check is clean after.
#[test]
fn gpu_containers_get_their_own_devices() {
    let (_redis, _server, server) = server_on_redis();
    let dir = tempfile::tempdir().unwrap();
    let mut args = worker_args(&server, "gpu-w", dir.path());
    args.extend(["--gpu", "A10G:2"]);
    let _worker = spawn(&args);
    workers_up(&server, 1);
    let workers = json(&server, &["workers", "--json"]);
    let gpus = workers[0]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{workers}");

    let show = "sleep 1; echo devices=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES milli=$BERTH_GPU_MILLI";
    let runs = [
        ("g-1", "A10G:1"),
        ("g-2", "A10G:1"),
        ("h-1", "A10G:0.5"),
        ("h-2", "A10G:0.5"),
    ];
    for pair in runs.chunks(2) {
        for (id, gpu) in pair {
            let out = berth(
                &server,
                &[
                    "run", "--id", id, "--gpu", gpu, "--cpu", "100m", "--memory", "64Mi", "--",
                    "sh", "-c", show,
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (id, _) in pair {
            eventually("the GPU container to exit", || {
                let view = json(&server, &["ps", "--json"]);
                view.as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["id"] == *id && c["state"] == "exited")
            });
        }
    }
    let line = |id: &str| {
        let logs = berth(&server, &["logs", id]);
        String::from_utf8_lossy(&logs.stdout).trim().to_owned()
    };
    let whole: Vec<String> = ["g-1", "g-2"].iter().map(|id| line(id)).collect();
    let mut devices: Vec<&str> = whole
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, ["devices=0", "devices=1"], "{whole:?}");
    assert!(whole.iter().all(|l| l.ends_with("milli=")), "{whole:?}");
    let halves: Vec<String> = ["h-1", "h-2"].iter().map(|id| line(id)).collect();
    assert_eq!(halves[0], halves[1], "two halves share one device");
    assert!(halves[0].ends_with("milli=500"), "{halves:?}");
    check_clean(&server);
}

/// Writes what the fake `nvidia-smi` prints: two A10G, device 1 broken when `broken`.
fn nvidia_smi_says(file: &std::path::Path, broken: bool) {
    let second = if broken {
        "1, GPU-bbbb, NVIDIA A10G, [GPU requires reset]"
    } else {
        "1, GPU-bbbb, NVIDIA A10G, 23028 MiB"
    };
    let csv = format!(
        "index, uuid, name, memory.total [MiB]\n0, GPU-aaaa, NVIDIA A10G, 23028 MiB\n{second}\n"
    );
    let partial = file.with_extension("partial");
    std::fs::write(&partial, csv).unwrap();
    std::fs::rename(&partial, file).unwrap();
}

/// The state of container `id` as `berth ps` shows it.
fn state_of(server: &str, id: &str) -> String {
    let view = json(server, &["ps", "--json"]);
    view.as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The device indices container `id` holds on worker `worker`, from `berth workers ID`.
fn devices_of(server: &str, worker: &str, id: &str) -> Vec<u64> {
    let detail = json(server, &["workers", worker, "--json"]);
    detail["owned"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["container"] == id)
        .flat_map(|o| o["devices"].as_array().unwrap().clone())
        .map(|d| d["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_gpu_turning_unhealthy_takes_no_more_containers_until_it_recovers() {
    let (_redis, _server, server) = server_on_redis();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let csv = dir.path().join("gpus.csv");
    nvidia_smi_says(&csv, false);
    let smi = bin.join("nvidia-smi");
    std::fs::write(&smi, format!("#!/bin/sh\ncat '{}'\n", csv.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    let mut args = worker_args(&server, "gpu-h", &work);
    args.extend(["--gpu", "auto", "--gpu-check-secs", "1"]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _worker = spawn_with(&args, &[("PATH", path)]);
    workers_up(&server, 1);
    let run = |id: &str| {
        let out = berth(
            &server,
            &[
                "run", "--id", id, "--gpu", "A10G:1", "--cpu", "100m", "--memory", "64Mi", "--",
                "sleep", "300",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let device_health = || -> Vec<bool> {
        let workers = json(&server, &["workers", "--json"]);
        workers[0]["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["healthy"].as_bool().unwrap())
            .collect()
    };

    // Device 1 breaks under a container: it is reported on the device, not stopped.
    run("on-1");
    eventually("on-1 to run", || state_of(&server, "on-1") == "running");
    assert_eq!(
        devices_of(&server, "gpu-h", "on-1"),
        [0],
        "lowest device first"
    );
    run("on-2");
    eventually("on-2 to run", || state_of(&server, "on-2") == "running");
    assert_eq!(devices_of(&server, "gpu-h", "on-2"), [1]);
    nvidia_smi_says(&csv, true);
    eventually("device 1 to read unhealthy", || {
        device_health() == [true, false]
    });
    let table = berth(&server, &["workers", "gpu-h"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("1:1 (unhealthy)"), "{table}");
    assert_eq!(
        state_of(&server, "on-2"),
        "running",
        "reported, not stopped"
    );

    // Freed, the broken device still takes nothing.
    assert!(berth(&server, &["cancel", "on-2"]).status.success());
    eventually("on-2 to end", || state_of(&server, "on-2") == "failed");
    run("waits");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        state_of(&server, "waits"),
        "pending",
        "device 1 is unhealthy"
    );

    // Recovered, it takes the waiting container.
    nvidia_smi_says(&csv, false);
    eventually("waits to run", || state_of(&server, "waits") == "running");
    assert_eq!(devices_of(&server, "gpu-h", "waits"), [1]);
    for id in ["on-1", "waits"] {
        assert!(berth(&server, &["cancel", id]).status.success());
    }
    eventually("everything to end", || {
        ["on-1", "waits"]
            .iter()
            .all(|id| state_of(&server, id) == "failed")
    });
    check_clean(&server);
}

/// `berth check --redis` with these extra arguments and environment.
fn check_direct(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BERTH);
    command.arg("check").args(args).env("RUST_BACKTRACE", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn server_and_check_on_a_tls_redis_with_a_password() {
    const PASSWORD: &str = "e2e-s3cret";
    let redis = LocalRedis::start_with(Security {
        password: Some(PASSWORD.into()),
        users: Vec::new(),
        tls: true,
        require_client_cert: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = redis.ca_file().unwrap().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let password_file = password_file.to_str().unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let _server = spawn(&[
        "server",
        "--listen",
        &listen,
        "--redis",
        &url,
        "--redis-ca-file",
        &ca,
        "--redis-password-file",
        password_file,
    ]);
    let server = format!("http://{listen}");
    eventually("the server on the TLS Redis to answer", || {
        berth(&server, &["workers", "--json"]).status.success()
    });
    check_clean(&server);

    // `berth check` straight on Redis, the password from the environment.
    let direct = check_direct(
        &["--redis", &url, "--redis-ca-file", &ca],
        &[("BERTH_REDIS_PASSWORD", PASSWORD)],
    );
    let stdout = String::from_utf8_lossy(&direct.stdout);
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert_eq!(direct.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("every invariant holds"), "{stdout}");

    // A wrong password in the URL: a clear refusal that does not show it.
    let wrong_url = url.replacen("rediss://", "rediss://:wrong-pw@", 1);
    let wrong = check_direct(&["--redis", &wrong_url, "--redis-ca-file", &ca], &[]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused the credentials (WRONGPASS)"),
        "{stderr}"
    );
    assert!(stderr.contains(":***@"), "{stderr}");
    assert!(
        !stderr.contains("wrong-pw"),
        "the password is shown: {stderr}"
    );

    // No password at all: says one is needed and how to give it.
    let missing = check_direct(&["--redis", &url, "--redis-ca-file", &ca], &[]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NOAUTH"), "{stderr}");

    // An empty password file is an error naming it.
    let empty = dir.path().join("empty-password");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let refused = check_direct(
        &[
            "--redis",
            &url,
            "--redis-ca-file",
            &ca,
            "--redis-password-file",
            empty,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(empty) && stderr.contains("empty"),
        "{stderr}"
    );
}

/// Tenants from the configuration file and the CLI: `berth server --config` stores the
/// file's policy, `berth tenant set` replaces it, `berth run --tenant` is refused (exit 2,
/// the reason on stderr) when the quota could never hold the container, and `berth tenant
/// list` shows what each tenant holds.
#[test]
fn tenants_are_configured_by_file_and_cli() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[[pools]]\nname = \"cpu\"\nworker_size = { cpu = \"8\", memory = \"16Gi\" }\n[[tenants]]\nname = \"acme\"\nweight = 2\ncontainers = 5\ncpu = \"2\"\ngpus_by_type = { H100 = \"1\" }\n",
    )
    .unwrap();
    let _server = spawn(&[
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--config",
        config.to_str().unwrap(),
    ]);
    eventually("the server to answer", || {
        berth(&server, &["tenant", "list"]).status.success()
    });
    let acme = json(&server, &["tenant", "--json", "show", "acme"]);
    assert_eq!(acme["weight"], 2);
    assert_eq!(acme["quota"]["cpu_millicores"], 2000);
    assert_eq!(acme["quota"]["gpu_milli_by_type"]["H100"], 1000);
    let set = json(
        &server,
        &[
            "tenant",
            "--json",
            "set",
            "acme",
            "--containers",
            "1",
            "--cpu",
            "1",
            "--weight",
            "3",
        ],
    );
    assert_eq!(set["quota"]["containers"], 1);
    assert_eq!(set["quota"]["cpu_millicores"], 1000);
    let refused = berth(
        &server,
        &[
            "run", "--tenant", "acme", "--cpu", "2", "--memory", "64Mi", "--", "true",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "refused as never runnable");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("quota") && stderr.contains("cpu_millicores"),
        "{stderr}"
    );
    let listed = json(&server, &["tenant", "--json", "list"]);
    assert_eq!(listed[0]["name"], "acme");
    let bad = berth(&server, &["tenant", "set", "acme", "--weight", "0"]);
    assert!(!bad.status.success());
    let removed = berth(&server, &["tenant", "remove", "acme"]);
    assert!(removed.status.success());
}

#[test]
fn a_bad_tenant_in_the_configuration_file_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[[tenants]]\nname = \"acme\"\ncpu = \"lots\"\n").unwrap();
    let out = command(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants[0].cpu"), "{stderr}");
}

#[test]
fn a_higher_priority_container_preempts_lower_ones_on_a_real_worker() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&["server", "--listen", &format!("127.0.0.1:{port}")]);
    let dir = tempfile::tempdir().unwrap();
    let worker = [
        &worker_args(&server, "w1", dir.path())[..],
        &["--stop-grace", "2"],
    ]
    .concat();
    let _worker = spawn(&worker);
    workers_up(&server, 1);
    // PID 1 of a container ignores SIGTERM unless it handles it: low-a does and ends at
    // once; low-b does not, so it runs out its stop grace (2 s) and gets SIGKILL.
    let on_term = "trap 'exit 143' TERM; while :; do sleep 0.2; done";
    let lows: [&[&str]; 2] = [
        &[
            "--id",
            "low-a",
            "--max-retries",
            "1",
            "--",
            "sh",
            "-c",
            on_term,
        ],
        &["--id", "low-b", "--", "sleep", "600"],
    ];
    for low in lows {
        let args = [
            &["run", "--cpu", "1", "--memory", "256Mi", "--preemptible"][..],
            low,
        ]
        .concat();
        let out = berth(&server, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually("both low-priority containers running under runc", || {
        ["low-a", "low-b"]
            .iter()
            .all(|id| state_of(&server, id) == "running")
            && runc_containers(dir.path()).len() == 2
    });
    let high = [
        "run",
        "--id",
        "high",
        "--cpu",
        "2",
        "--memory",
        "256Mi",
        "--priority",
        "10",
        "--",
        "sh",
        "-c",
        on_term,
    ];
    let out = berth(&server, &high);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the preemptor running alone on the worker", || {
        state_of(&server, "high") == "running" && runc_containers(dir.path()).len() == 1
    });
    let why = "by high (priority 10) on worker w1";
    let ended = view_of(&server, "low-b");
    assert_eq!(
        (&ended["state"], &ended["reason"]),
        (&"preempted".into(), &why.into()),
        "{ended}"
    );
    // The preemptor started only once its victims had stopped: after low-b's stop grace.
    let started = view_of(&server, "high")["started_at_ms"].as_u64().unwrap();
    let preempted = ended["finished_at_ms"].as_u64().unwrap();
    assert!(
        started >= preempted + 1500,
        "high started {} ms after the preemption, within its victim's stop grace",
        started.saturating_sub(preempted)
    );
    let requeued = view_of(&server, "low-a");
    assert_eq!(requeued["state"], "pending", "{requeued}");
    assert_eq!(requeued["retries"], 1, "{requeued}");
    assert!(requeued["preempted_at_ms"].is_u64(), "{requeued}");
    check_clean(&server);
    // Once the preemptor is gone, the victim with a retry left runs again.
    let out = berth(&server, &["cancel", "high"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the requeued victim running again", || {
        state_of(&server, "low-a") == "running"
    });
    check_clean(&server);
    // Nothing outlives the test: the worker's runc containers are not its children.
    let out = berth(&server, &["cancel", "low-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("no runc container left", || {
        runc_containers(dir.path()).is_empty()
    });
}

/// `berth ps | head -1`: the reader goes away before berth writes; berth ends quietly with
/// 0, as `ls | head` does, instead of panicking on the broken pipe.
#[test]
fn a_client_command_whose_reader_has_gone_ends_quietly() {
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&["server", "--listen", &format!("127.0.0.1:{port}")]);
    eventually("the server to answer", || {
        berth(&server, &["ps"]).status.success()
    });
    for args in [&["ps"][..], &["ps", "--json"], &["workers"], &["demand"]] {
        let mut child = command(args)
            .env("BERTH_SERVER", &server)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before berth has even reached the server, so its first write fails.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "berth {args:?}: {stderr}");
        assert!(stderr.is_empty(), "berth {args:?} said: {stderr}");
    }
}

/// Unmounts, when dropped, whatever is mounted under its directories: the image mounts of
/// workers that were killed rather than stopped.
struct UnmountUnder(Vec<std::path::PathBuf>);

impl Drop for UnmountUnder {
    fn drop(&mut self) {
        for dir in &self.0 {
            berth_image::testing::unmount_under(dir);
        }
    }
}

/// A registry on loopback that accepts connections and never answers them; dropping it
/// closes them all, so the pulls waiting on it fail at once.
struct StalledRegistry {
    address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl StalledRegistry {
    fn start() -> StalledRegistry {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        StalledRegistry {
            address,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for StalledRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Images from a registry, end to end: a real registry on loopback, a server and two runc
/// workers. A container of a registry image runs; its worker reports the image; the next
/// containers of that image go to that worker (warm), not to the other one (equal, and
/// emptier); a container whose registry cannot be reached ends FAILED with an
/// `image_pull:` reason after its bounded tries; one whose registry does not answer is
/// shown pulling by `berth ps` until it is cancelled.
#[test]
fn registry_images_run_and_placement_prefers_the_worker_that_holds_them() {
    let registry = berth_image::testing::registry::LocalRegistry::start(None)
        .expect("docker-registry must be installed (the test script installs it)");
    let dir = tempfile::tempdir().unwrap();
    let hello: &[u8] = b"hello from the registry\n";
    let image = registry
        .push_busybox_image(
            &dir.path().join("layout"),
            &[("hello.txt", hello, 0o644)],
            "app:v1",
        )
        .unwrap();

    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _server = spawn(&["server", "--listen", &format!("127.0.0.1:{port}")]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Dropped after the workers (killed, so their image stores cannot unmount) and before
    // their directories.
    let _unmounts = UnmountUnder(vec![dir_a.path().to_owned(), dir_b.path().to_owned()]);
    let _a = spawn(&worker_args(&server, "wa", dir_a.path()));
    let _b = spawn(&worker_args(&server, "wb", dir_b.path()));
    workers_up(&server, 2);

    let run = |id: &str, image: &str| {
        let args = [
            "run",
            "--wait",
            "--id",
            id,
            "--cpu",
            "100m",
            "--memory",
            "64Mi",
            "--image",
            image,
            "--",
            "busybox",
            "cat",
            "/hello.txt",
        ];
        berth(&server, &args)
    };
    let first = run("img-0", &image);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(stdout.trim(), "hello from the registry");
    let warm = view_of(&server, "img-0")["worker"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the worker to report the image", || {
        json(&server, &["workers", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == warm.as_str() && w["images"][0] == image.as_str())
    });
    for i in 1..=4 {
        let id = format!("img-{i}");
        assert!(run(&id, &image).status.success());
        assert_eq!(
            view_of(&server, &id)["worker"],
            warm.as_str(),
            "{id} went cold"
        );
    }

    let gone = berth(
        &server,
        &[
            "run",
            "--wait",
            "--id",
            "img-gone",
            "--cpu",
            "100m",
            "--memory",
            "64Mi",
            "--image",
            "127.0.0.1:1/nothing:v1",
            "--",
            "true",
        ],
    );
    assert!(!gone.status.success());
    let failed = view_of(&server, "img-gone");
    assert_eq!(failed["state"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("image_pull: ") && reason.contains("tried 3 times"),
        "{reason}"
    );

    // A registry that accepts connections and never answers: the container is PULLING
    // (`berth ps` says so) until it is cancelled and the registry goes away.
    let stalled = StalledRegistry::start();
    let slow_image = format!("{}/slow:v1", stalled.address);
    let submitted = berth(
        &server,
        &[
            "run",
            "--id",
            "img-slow",
            "--cpu",
            "100m",
            "--memory",
            "64Mi",
            "--image",
            &slow_image,
            "--",
            "true",
        ],
    );
    assert!(submitted.status.success());
    eventually("berth ps to show the pull", || {
        let out = berth(&server, &["ps", "--state", "pulling"]);
        String::from_utf8_lossy(&out.stdout).contains("img-slow")
    });
    let listed = String::from_utf8_lossy(&berth(&server, &["ps"]).stdout).into_owned();
    let line = listed.lines().find(|l| l.contains("img-slow")).unwrap();
    assert!(line.contains("pulling"), "{listed}");
    assert!(berth(&server, &["cancel", "img-slow"]).status.success());
    drop(stalled);
    eventually("the cancelled pull to end", || {
        view_of(&server, "img-slow")["state"] == "failed"
    });
    assert_eq!(view_of(&server, "img-slow")["reason"], "cancelled");
    check_clean(&server);
    for dir in [&dir_a, &dir_b] {
        eventually("no runc container left", || {
            runc_containers(dir.path()).is_empty()
        });
    }
}
