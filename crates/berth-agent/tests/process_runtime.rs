//! The process runtime with real processes.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_agent::runtime::{ENV_TIMEOUT_SECS, ProcessRuntime, ProcessRuntimeConfig};
use berth_agent::{ContainerRuntime, ContainerSpec, Exit, StartError};
use berth_core::AttemptId;
use berth_core::{
    ContainerId, DeviceShare, GpuDevice, GpuType, Payload, Resources, RuntimeName, WorkerId,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

fn runtime(dir: &TempDir) -> ProcessRuntime {
    let mut config = ProcessRuntimeConfig::new(dir.path());
    config.stop_grace = Duration::from_millis(500);
    ProcessRuntime::new(config)
}

fn spec(command: &[&str], env: &[(&str, &str)]) -> ContainerSpec {
    ContainerSpec {
        container: ContainerId::new("c-1").unwrap(),
        attempt: AttemptId("a1".into()),
        worker: WorkerId::new("w-1").unwrap(),
        resources: Resources::new(100, 64, 0),
        payload: Payload {
            image: Some("busybox".into()),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            secret_env: Default::default(),
        },
        devices: Vec::new(),
        timeout: None,
    }
}

#[test]
fn its_name_is_process() {
    let dir = TempDir::new().unwrap();
    assert_eq!(runtime(&dir).name(), RuntimeName::PROCESS);
}

async fn run(runtime: &ProcessRuntime, spec: ContainerSpec) -> (Exit, Vec<String>) {
    let mut handle = runtime.start(spec).await.unwrap();
    let exit = handle.wait().await;
    (exit, handle.logs())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// True once `pid` is gone or a zombie (init may be slow to reap, or not reap at all).
async fn process_gone(pid: u32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

#[tokio::test]
async fn echo_exits_zero_and_its_output_is_captured() {
    let dir = TempDir::new().unwrap();
    let (exit, logs) = run(&runtime(&dir), spec(&["echo", "hello"], &[])).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    assert_eq!(logs, vec!["hello"]);
    assert!(is_empty_dir(dir.path()), "the working directory is removed");
}

#[tokio::test]
async fn the_exit_code_is_kept() {
    let dir = TempDir::new().unwrap();
    let (exit, _) = run(&runtime(&dir), spec(&["sh", "-c", "exit 3"], &[])).await;
    assert_eq!(exit, Exit::Exited { code: 3 });
}

#[tokio::test]
async fn stdout_and_stderr_are_both_captured() {
    let dir = TempDir::new().unwrap();
    let (_, mut logs) = run(
        &runtime(&dir),
        spec(&["sh", "-c", "echo out; echo err >&2"], &[]),
    )
    .await;
    logs.sort();
    assert_eq!(logs, vec!["err", "out"]);
}

#[tokio::test]
async fn a_missing_command_fails_with_a_clear_reason() {
    let dir = TempDir::new().unwrap();
    let err = runtime(&dir)
        .start(spec(&["no-such-command-berth"], &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StartError::CommandNotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "command not found: no-such-command-berth");
    assert!(is_empty_dir(dir.path()), "the working directory is removed");
}

#[tokio::test]
async fn no_command_and_a_bad_timeout_are_refused() {
    let dir = TempDir::new().unwrap();
    let runtime = runtime(&dir);
    let err = runtime.start(spec(&[], &[])).await.err().unwrap();
    assert!(matches!(err, StartError::NoCommand));
    let bad = spec(&["true"], &[(ENV_TIMEOUT_SECS, "soon")]);
    let err = runtime.start(bad).await.err().unwrap();
    assert!(matches!(err, StartError::BadTimeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_timeout_kills_the_process_and_its_children() {
    let dir = TempDir::new().unwrap();
    let script = "sleep 30 & echo $!; wait";
    let timed = spec(&["sh", "-c", script], &[(ENV_TIMEOUT_SECS, "1")]);
    let (exit, logs) = run(&runtime(&dir), timed).await;
    assert_eq!(
        exit,
        Exit::TimedOut {
            after: Duration::from_secs(1)
        }
    );
    let child: u32 = logs[0].parse().unwrap();
    assert!(
        process_gone(child).await,
        "the child {child} was killed too"
    );
    assert!(is_empty_dir(dir.path()));
}

#[tokio::test]
async fn the_default_timeout_applies_without_the_variable() {
    let dir = TempDir::new().unwrap();
    let mut config = ProcessRuntimeConfig::new(dir.path());
    config.default_timeout = Duration::from_secs(1);
    let (exit, _) = run(&ProcessRuntime::new(config), spec(&["sleep", "30"], &[])).await;
    assert!(matches!(exit, Exit::TimedOut { .. }), "{exit:?}");
}

#[tokio::test]
async fn the_spec_timeout_wins_over_the_variable() {
    let dir = TempDir::new().unwrap();
    let mut timed = spec(&["sleep", "30"], &[(ENV_TIMEOUT_SECS, "3600")]);
    timed.timeout = Some(Duration::from_secs(1));
    let (exit, _) = run(&runtime(&dir), timed).await;
    assert_eq!(
        exit,
        Exit::TimedOut {
            after: Duration::from_secs(1)
        }
    );
}

#[tokio::test]
async fn kill_stops_the_group_even_when_it_ignores_sigterm() {
    let dir = TempDir::new().unwrap();
    let script = "trap '' TERM; sleep 30 & echo $!; wait";
    let mut handle = runtime(&dir)
        .start(spec(&["sh", "-c", script], &[]))
        .await
        .unwrap();
    let child = loop {
        if let Some(line) = handle.logs().first() {
            break line.parse::<u32>().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(handle.kill().await, Exit::Killed);
    assert_eq!(handle.wait().await, Exit::Killed, "the exit is kept");
    assert!(process_gone(child).await);
}

#[tokio::test]
async fn children_left_behind_are_killed_when_the_main_process_exits() {
    let dir = TempDir::new().unwrap();
    let script = "sleep 30 & echo $!";
    let (exit, logs) = run(&runtime(&dir), spec(&["sh", "-c", script], &[])).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    let child: u32 = logs[0].parse().unwrap();
    assert!(process_gone(child).await);
}

#[tokio::test]
async fn the_ring_keeps_only_the_last_lines() {
    let dir = TempDir::new().unwrap();
    let mut config = ProcessRuntimeConfig::new(dir.path());
    config.log_lines = 10;
    let script = "i=1; while [ $i -le 50 ]; do echo line $i; i=$((i+1)); done";
    let (_, logs) = run(
        &ProcessRuntime::new(config),
        spec(&["sh", "-c", script], &[]),
    )
    .await;
    let expected: Vec<String> = (41..=50).map(|i| format!("line {i}")).collect();
    assert_eq!(logs, expected);
}

#[tokio::test]
async fn env_vars_and_the_working_directory_are_set() {
    let dir = TempDir::new().unwrap();
    // Cargo sets CARGO_MANIFEST_DIR for the test process: the container must not see it.
    let script =
        "echo $FOO $BERTH_CONTAINER_ID $BERTH_WORKER_ID; pwd; echo ${CARGO_MANIFEST_DIR:-unset}";
    let (exit, logs) = run(
        &runtime(&dir),
        spec(&["sh", "-c", script], &[("FOO", "bar")]),
    )
    .await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    assert_eq!(logs[0], "bar c-1 w-1");
    let workdir = dir.path().join("c-1.a1");
    let canonical = dir.path().canonicalize().unwrap().join("c-1.a1");
    assert!(
        Path::new(&logs[1]) == workdir || Path::new(&logs[1]) == canonical,
        "{}",
        logs[1]
    );
    assert_eq!(logs[2], "unset", "the agent's environment is not inherited");
    assert!(!workdir.exists(), "the working directory is removed");
}

fn gpu(index: u32, uuid: Option<&str>) -> GpuDevice {
    GpuDevice {
        index,
        gpu_type: GpuType::L4,
        memory_mib: 22_000,
        uuid: uuid.map(str::to_owned),
        healthy: true,
    }
}

#[tokio::test]
async fn the_environment_names_the_assigned_gpus_only() {
    let dir = TempDir::new().unwrap();
    let mut config = ProcessRuntimeConfig::new(dir.path());
    config.gpus = vec![gpu(0, Some("GPU-aaa")), gpu(1, Some("GPU-bbb"))];
    let runtime = ProcessRuntime::new(config);
    let print = "echo $CUDA_VISIBLE_DEVICES/$NVIDIA_VISIBLE_DEVICES/$BERTH_GPU_MILLI/$CUDA_MPS_ACTIVE_THREAD_PERCENTAGE/$CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";
    // The request's own values for these names are overridden.
    let mut job = spec(&["sh", "-c", print], &[("CUDA_VISIBLE_DEVICES", "0,1")]);
    job.devices = vec![DeviceShare {
        index: 1,
        milli: 250,
    }];
    let (exit, logs) = run(&runtime, job).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    assert_eq!(logs, ["GPU-bbb/GPU-bbb/250/25/GPU-bbb=5500M"]);

    let mut job = spec(&["sh", "-c", print], &[]);
    job.devices = vec![DeviceShare::whole(0), DeviceShare::whole(1)];
    let (_, logs) = run(&runtime, job).await;
    assert_eq!(logs, ["GPU-aaa,GPU-bbb/GPU-aaa,GPU-bbb///"]);

    let job = spec(&["sh", "-c", print], &[("NVIDIA_VISIBLE_DEVICES", "all")]);
    let (_, logs) = run(&runtime, job).await;
    assert_eq!(logs, ["/void///"]);

    let mut job = spec(&["true"], &[]);
    job.devices = vec![DeviceShare::whole(2)];
    let err = runtime.start(job).await.err().unwrap();
    assert!(matches!(err, StartError::Gpus { .. }), "{err:?}");
    assert!(is_empty_dir(dir.path()), "nothing was created");
}
