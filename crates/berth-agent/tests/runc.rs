//! The runc runtime with real runc: limits from the booking, isolation, lifecycle, adoption
//! after a crash, and nothing left behind. These tests need root and runc (the test script
//! installs it); they fail, not skip, without them.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_agent::runtime::runc::{CgroupVersion, RuncConfig, RuncRuntime};
use berth_agent::{ContainerHandle, ContainerRuntime, ContainerSpec, Exit, StartError};
use berth_core::{
    AttemptId, ContainerId, DeviceShare, GpuDevice, GpuType, Payload, Resources, WorkerId,
};
use berth_image::ImageConfig;
use berth_image::testing::mount_points_under;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;

/// A fresh attempt id per container, as the store would draw.
fn attempt() -> AttemptId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let salt = u64::from(std::process::id()) << 32;
    AttemptId::from_bits(salt | NEXT.fetch_add(1, Ordering::Relaxed))
}

fn config(dir: &TempDir, worker: &str) -> RuncConfig {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the runc tests need root (runc creates cgroups and namespaces)"
    );
    let mut config = RuncConfig::new(dir.path().join("runc"), worker);
    config.images = dir.path().join("images");
    config.stop_grace = Duration::from_millis(500);
    config
}

async fn runtime(dir: &TempDir, worker: &str) -> RuncRuntime {
    RuncRuntime::new(config(dir, worker))
        .await
        .expect("runc must be installed for these tests (apt-get install runc busybox-static)")
}

fn spec(worker: &str, command: &[&str], cpu: u64, memory_mib: u64) -> ContainerSpec {
    ContainerSpec {
        container: ContainerId::new(format!("c-{}", attempt())).unwrap(),
        attempt: attempt(),
        worker: WorkerId::new(worker).unwrap(),
        resources: Resources::new(cpu, memory_mib, 0),
        payload: Payload {
            image: None,
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            secret_env: Default::default(),
        },
        devices: Vec::new(),
        timeout: None,
    }
}

async fn run(runtime: &RuncRuntime, spec: ContainerSpec) -> (Exit, Vec<String>) {
    let mut handle = runtime.start(spec).await.unwrap();
    let exit = handle.wait().await;
    (exit, handle.logs())
}

/// What runc, the cgroups, the mounts and the process table still hold of the runtime in
/// `dir` for `worker`: empty when nothing leaked.
fn leftovers(dir: &TempDir, worker: &str) -> Vec<String> {
    let mut left = Vec::new();
    let runc_dir = dir.path().join("runc");
    for sub in ["bundles", "state"] {
        for entry in std::fs::read_dir(runc_dir.join(sub)).unwrap().flatten() {
            left.push(format!("{sub}: {}", entry.path().display()));
        }
    }
    let parent = RuncConfig::new(&runc_dir, worker).cgroup_parent;
    for cgroup in CgroupVersion::detect().dirs(&parent) {
        if let Ok(entries) = std::fs::read_dir(&cgroup) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                left.push(format!("cgroup: {}", entry.path().display()));
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    for line in mountinfo.lines().filter(|l| l.contains(&root)) {
        left.push(format!("mount: {line}"));
    }
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&root) {
            left.push(format!(
                "process {}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    left
}

#[tokio::test]
async fn output_and_exit_code_come_back_and_nothing_is_left() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-out").await;
    let command = ["sh", "-c", "echo out; echo err >&2; exit 7"];
    let (exit, logs) = run(&rt, spec("w-out", &command, 100, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 7 });
    let mut sorted = logs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["err", "out"],
        "stdout and stderr both kept: {logs:?}"
    );
    assert_eq!(leftovers(&dir, "w-out"), Vec::<String>::new());
}

#[tokio::test]
async fn memory_beyond_the_booking_is_oom_killed() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-oom").await;
    // 256 MiB through sort, which holds its whole input: 4x the 64 MiB booked.
    let hog = ["sh", "-c", "head -c 268435456 /dev/zero | sort > /dev/null"];
    let (exit, _) = run(&rt, spec("w-oom", &hog, 500, 64)).await;
    assert_eq!(exit, Exit::OomKilled);
    // Within the booking the same command succeeds.
    let fits = ["sh", "-c", "head -c 1048576 /dev/zero | sort > /dev/null"];
    let (exit, _) = run(&rt, spec("w-oom", &fits, 500, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    assert_eq!(leftovers(&dir, "w-oom"), Vec::<String>::new());
}

#[tokio::test]
async fn the_container_sees_its_limits() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-lim").await;
    let script = match CgroupVersion::detect() {
        CgroupVersion::V2 => {
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max"
        }
        _ => {
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"
        }
    };
    let (exit, logs) = run(&rt, spec("w-lim", &["sh", "-c", script], 250, 96)).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    let expected: Vec<&str> = match CgroupVersion::detect() {
        CgroupVersion::V2 => vec!["100663296", "25000 100000", "4096"],
        _ => vec!["100663296", "100663296", "25000", "4096"],
    };
    assert_eq!(logs, expected);
}

#[tokio::test]
async fn a_busy_loop_gets_a_quarter_core_under_250m() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-cpu").await;
    let usage = match CgroupVersion::detect() {
        CgroupVersion::V2 => "grep usage_usec /sys/fs/cgroup/cpu.stat | cut -d' ' -f2",
        _ => "echo $(( $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage) / 1000 ))",
    };
    let script = format!("while :; do :; done & sleep 3; kill $!; {usage}");
    let (exit, logs) = run(&rt, spec("w-cpu", &["sh", "-c", &script], 250, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    let used_us: f64 = logs.last().unwrap().trim().parse().unwrap();
    let cores = used_us / 3_000_000.0;
    assert!(
        (0.15..=0.35).contains(&cores),
        "a busy loop under 250m used {cores:.3} cores over 3 s"
    );
}

#[tokio::test]
async fn own_pid_namespace_and_not_root() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-iso").await;
    let (exit, logs) = run(
        &rt,
        spec(
            "w-iso",
            &[
                "sh",
                "-c",
                "id -u; id -g; ps -o pid= | wc -l; hostname; cat /proc/net/dev | wc -l",
            ],
            100,
            64,
        ),
    )
    .await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(logs[0], "65534", "runs as nobody");
    assert_eq!(logs[1], "65534");
    let processes: u32 = logs[2].trim().parse().unwrap();
    assert!(
        processes <= 4,
        "ps saw {processes} processes: not only its own"
    );
    assert!(logs[3].starts_with("c-"), "its own hostname: {}", logs[3]);
    // An own network namespace has only loopback: two header lines and lo.
    assert_eq!(
        logs[4].trim(),
        "3",
        "only loopback in its network namespace"
    );
}

#[tokio::test]
async fn the_root_filesystem_is_read_only_and_work_is_writable() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-fs").await;
    let script = "touch /bin/x 2>/dev/null && echo rootfs-writable; echo hi > /work/f && cat /work/f; echo t > /tmp/t && cat /tmp/t; pwd";
    let (exit, logs) = run(&rt, spec("w-fs", &["sh", "-c", script], 100, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(logs, vec!["hi", "t", "/work"]);
}

/// Two GPUs of the worker: device 0 with a UUID, device 1 without.
fn two_gpus() -> Vec<GpuDevice> {
    (0..2)
        .map(|index| GpuDevice {
            index,
            gpu_type: GpuType::A10G,
            memory_mib: 23_028,
            uuid: (index == 0).then(|| "GPU-aaa".to_owned()),
            healthy: true,
        })
        .collect()
}

/// Fake NVIDIA character nodes (major 195) in `dir`, world-readable as the driver's are.
fn fake_nvidia_nodes(dir: &Path, nodes: &[(&str, u64)]) {
    for (name, minor) in nodes {
        let path = dir.join(name);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(195, *minor),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
    }
}

#[tokio::test]
async fn a_container_sees_only_its_gpu() {
    let dir = TempDir::new().unwrap();
    let dev = dir.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    fake_nvidia_nodes(&dev, &[("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)]);
    let mut config = config(&dir, "w-gpu");
    config.device_dir = dev;
    config.gpus = two_gpus();
    let rt = RuncRuntime::new(config).await.unwrap();
    // Opening a fake node finds no driver behind it (ENXIO), which the device cgroup lets
    // through only for an allowed node; a denied one fails with EPERM first.
    let script = "ls /dev | grep nvidia; \
        echo cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES; \
        cat /dev/nvidia1 2>&1 | grep -q 'not permitted' && echo nvidia1-denied; true";
    let mut job = spec("w-gpu", &["sh", "-c", script], 100, 64);
    job.devices = vec![DeviceShare::whole(1)];
    job.payload
        .env
        .insert("CUDA_VISIBLE_DEVICES".into(), "0,1".into());
    let (exit, logs) = run(&rt, job).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(logs, ["nvidia1", "nvidiactl", "cuda=1 nvidia=1"]);

    // Without a share: no node, and CUDA sees nothing.
    let script = "ls /dev | grep -c nvidia; echo cuda=[$CUDA_VISIBLE_DEVICES] nvidia=$NVIDIA_VISIBLE_DEVICES";
    let (exit, logs) = run(&rt, spec("w-gpu", &["sh", "-c", script], 100, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(logs, ["0", "cuda=[] nvidia=void"]);
    assert_eq!(leftovers(&dir, "w-gpu"), Vec::<String>::new());
}

#[tokio::test]
async fn a_device_the_worker_lacks_is_refused() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-nogpu").await;
    let mut job = spec("w-nogpu", &["true"], 100, 64);
    job.devices = vec![DeviceShare::whole(0)];
    let err = rt.start(job).await.err().unwrap();
    assert!(matches!(err, StartError::Gpus { .. }), "{err:?}");
    assert_eq!(leftovers(&dir, "w-nogpu"), Vec::<String>::new());
}

#[tokio::test]
async fn operator_mounts_reach_the_host_even_under_tmp() {
    let dir = TempDir::new().unwrap();
    let shared = dir.path().join("shared.log");
    std::fs::write(&shared, "").unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut config = config(&dir, "w-mnt");
    let inside = "/tmp/chaos/shared.log";
    config.mounts = vec![format!("{}:{inside}", shared.display()).parse().unwrap()];
    let rt = RuncRuntime::new(config).await.unwrap();
    let script = format!("echo $BERTH_ATTEMPT_ID >> {inside}");
    let job = spec("w-mnt", &["sh", "-c", &script], 100, 64);
    let attempt = job.attempt.to_string();
    let (exit, logs) = run(&rt, job).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(std::fs::read_to_string(&shared).unwrap().trim(), attempt);
}

#[tokio::test]
async fn an_image_from_an_oci_layout_runs_as_its_user() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-img").await;
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layout = dir.path().join("layout");
    let image_config = ImageConfig {
        user: Some("1000:1001".into()),
        env: vec!["PATH=/bin".into(), "GREETING=from-image".into()],
        working_dir: None,
        entrypoint: vec!["/bin/busybox".into()],
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "cat /hello.txt; echo $GREETING; /bin/busybox id -u; /bin/busybox id -g".into(),
        ],
    };
    berth_image::testing::write_layout(
        &layout,
        &[
            ("bin/busybox", &busybox, 0o755),
            ("hello.txt", b"hello from the layer\n", 0o644),
        ],
        &image_config,
        Some("v1"),
    )
    .unwrap();
    let mut image_spec = spec("w-img", &[], 100, 64);
    image_spec.payload.image = Some(format!("oci:{}:v1", layout.display()));
    let (exit, logs) = run(&rt, image_spec).await;
    assert_eq!(exit, Exit::Exited { code: 0 }, "{logs:?}");
    assert_eq!(
        logs,
        vec!["hello from the layer", "from-image", "1000", "1001"]
    );

    let mut root_spec = spec("w-img", &[], 100, 64);
    let root_layout = dir.path().join("root-layout");
    berth_image::testing::write_layout(
        &root_layout,
        &[("bin/busybox", &busybox, 0o755)],
        &ImageConfig {
            user: Some("0".into()),
            cmd: vec!["/bin/busybox".into(), "id".into(), "-u".into()],
            ..image_config
        },
        None,
    )
    .unwrap();
    root_spec.payload.image = Some(format!("oci:{}", root_layout.display()));
    let (exit, logs) = run(&rt, root_spec).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    assert_eq!(logs, vec!["0"], "root only when the image asks for it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_image_runs_and_its_lease_keeps_it_until_the_container_ends() {
    let dir = TempDir::new().unwrap();
    let registry = berth_image::testing::registry::LocalRegistry::start(None)
        .expect("docker-registry must be installed (apt-get install docker-registry skopeo)");
    let hello: &[u8] = b"hello from the registry\n";
    let reference = registry
        .push_busybox_image(
            &dir.path().join("layout"),
            &[("hello.txt", hello, 0o644)],
            "app:v1",
        )
        .unwrap();
    let mut config = config(&dir, "w-pull");
    // Nothing is kept that no container uses: only the lease keeps an image.
    config.image_cache_limit = 0;
    let rt = RuncRuntime::new(config).await.unwrap();
    let command = [
        "/bin/busybox",
        "sh",
        "-c",
        "sleep 1; busybox cat /hello.txt",
    ];
    let mut pulled = spec("w-pull", &command, 100, 64);
    pulled.payload.image = Some(reference.clone());
    let mut handle = rt.start(pulled).await.unwrap();
    // Another container's prepare collects garbage while the first runs.
    let (exit, _) = run(&rt, spec("w-pull", &["true"], 100, 64)).await;
    assert_eq!(exit, Exit::Exited { code: 0 });
    let held = rt.images().held(10);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].reference, reference);
    let pinned = held[0].pinned().unwrap();
    let repository = reference.strip_suffix(":v1").unwrap();
    assert_eq!(pinned, format!("{repository}@{}", held[0].digest));
    assert_eq!(
        rt.held_images(),
        vec![reference.clone(), pinned.clone()],
        "what heartbeats report"
    );
    let lease = rt.lease_held(&pinned).await;
    assert!(lease.is_some(), "a request pinning it finds it here");
    drop(lease);
    assert_eq!(handle.wait().await, Exit::Exited { code: 0 });
    assert_eq!(handle.logs(), vec!["hello from the registry"]);
    // Ended, the container released its image, and the release collected it.
    assert!(rt.images().held(10).is_empty());
    assert_eq!(leftovers(&dir, "w-pull"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_layered_image_each_get_their_own_overlay_and_leave_the_layers_alone() {
    let dir = TempDir::new().unwrap();
    let layout = dir.path().join("layout");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    berth_image::testing::write_layout(
        &layout,
        &[("bin/busybox", &busybox, 0o755)],
        &ImageConfig {
            env: vec!["PATH=/bin".into()],
            ..ImageConfig::default()
        },
        Some("v1"),
    )
    .unwrap();
    let host_data = dir.path().join("data");
    std::fs::create_dir(&host_data).unwrap();
    let mut config = config(&dir, "w-ovl");
    // A mount point the image lacks: runc creates it in each container's own upper layer.
    config.mounts = vec![
        format!("{}:/srv/data:ro", host_data.display())
            .parse()
            .unwrap(),
    ];
    let rt = RuncRuntime::new(config).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let mut job = spec(
            "w-ovl",
            &[
                "/bin/busybox",
                "sh",
                "-c",
                "busybox test -d /srv/data && busybox sleep 1",
            ],
            100,
            64,
        );
        job.payload.image = Some(format!("oci:{}:v1", layout.display()));
        let bundle = dir.path().join("runc/bundles").join(job.attempt.as_str());
        jobs.push((rt.start(job).await.unwrap(), bundle));
    }
    let mounted = mount_points_under(dir.path());
    for (_, bundle) in &jobs {
        let rootfs = std::fs::canonicalize(bundle.join("rootfs")).unwrap();
        assert!(
            mounted.contains(&rootfs),
            "each container's own rootfs is a mount: {mounted:?}"
        );
        assert!(
            bundle.join("upper/srv/data").is_dir(),
            "its mount point is its own"
        );
    }
    for (mut handle, _) in jobs {
        assert_eq!(
            handle.wait().await,
            Exit::Exited { code: 0 },
            "{:?}",
            handle.logs()
        );
    }
    let layers = dir.path().join("images/layers");
    for layer in std::fs::read_dir(&layers).unwrap() {
        let layer = layer.unwrap().path();
        assert!(
            !layer.join("srv").exists(),
            "{} was written",
            layer.display()
        );
    }
    let images = dir.path().join("images/images");
    for image in std::fs::read_dir(&images).unwrap() {
        let rootfs = image.unwrap().path().join("rootfs");
        assert!(
            !rootfs.join("srv").exists(),
            "{} was written",
            rootfs.display()
        );
    }
    let bundles = std::fs::canonicalize(dir.path().join("runc/bundles")).unwrap();
    let left = mount_points_under(&bundles);
    assert!(
        left.is_empty(),
        "the containers' rootfs mounts are gone: {left:?}"
    );
    // The image stays cached (and mounted) while the runtime's store lives.
    drop(rt);
    assert_eq!(leftovers(&dir, "w-ovl"), Vec::<String>::new());
}

#[tokio::test]
async fn start_errors_say_what_is_wrong() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-err").await;
    let err = rt
        .start(spec("w-err", &["no-such-program"], 100, 64))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StartError::CommandNotFound { ref program } if program == "no-such-program"),
        "{err}"
    );
    let mut registry = spec("w-err", &["true"], 100, 64);
    // Nothing listens on port 1: the pull fails at once, without the network.
    registry.payload.image = Some("127.0.0.1:1/python:3.11".into());
    let err = rt.start(registry).await.err().unwrap();
    // A registry that cannot be reached is a pull failure (the agent tries again), said as
    // `image_pull: ...` with the reference.
    assert!(matches!(err, StartError::ImagePull(_)), "{err}");
    assert!(err.to_string().starts_with("image_pull: "), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1/python:3.11"), "{err}");
    let mut bad = spec("w-err", &["true"], 100, 64);
    bad.payload.image = Some("Not A Reference".into());
    let err = rt.start(bad).await.err().unwrap();
    assert!(
        matches!(err, StartError::Image(_)),
        "not a pull failure: {err}"
    );
    let err = rt
        .start(spec("w-err", &["true"], 100, 0))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StartError::Unenforceable { .. }), "{err}");
    assert_eq!(leftovers(&dir, "w-err"), Vec::<String>::new());
}

#[tokio::test]
async fn kill_and_timeout_stop_the_container_and_its_children() {
    let dir = TempDir::new().unwrap();
    let rt = runtime(&dir, "w-stop").await;
    let tree = [
        "sh",
        "-c",
        "trap '' TERM; sleep 60 & sleep 60 & echo up; wait",
    ];
    let mut handle = rt.start(spec("w-stop", &tree, 100, 64)).await.unwrap();
    wait_for_line(handle.as_ref(), "up").await;
    assert_eq!(handle.kill().await, Exit::Killed);
    assert_eq!(leftovers(&dir, "w-stop"), Vec::<String>::new());

    let mut slow = spec("w-stop", &["sleep", "60"], 100, 64);
    slow.timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let (exit, _) = run(&rt, slow).await;
    assert_eq!(
        exit,
        Exit::TimedOut {
            after: Duration::from_secs(1)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(leftovers(&dir, "w-stop"), Vec::<String>::new());
}

async fn wait_for_line(handle: &dyn ContainerHandle, line: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !handle.logs().iter().any(|l| l == line) {
        assert!(
            std::time::Instant::now() < deadline,
            "never printed {line}: {:?}",
            handle.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_restarted_runtime_adopts_or_discards_what_it_left() {
    let dir = TempDir::new().unwrap();
    let first = runtime(&dir, "w-adopt").await;
    let keep = spec(
        "w-adopt",
        &["sh", "-c", "echo before; sleep 2; echo after; exit 4"],
        100,
        64,
    );
    let drop_it = spec("w-adopt", &["sleep", "60"], 100, 64);
    let kept_attempt = keep.attempt.clone();
    let handle = first.start(keep).await.unwrap();
    let orphan = first.start(drop_it).await.unwrap();
    // The agent dies: its handles are never dropped, nothing is cleaned up.
    std::mem::forget(handle);
    std::mem::forget(orphan);
    drop(first);

    let second = runtime(&dir, "w-adopt").await;
    let mut found = second.leftovers().await;
    found.sort_by(|a, b| a.attempt.cmp(&b.attempt));
    assert_eq!(found.len(), 2, "{found:?}");
    for leftover in found {
        if leftover.attempt == kept_attempt {
            let mut adopted = second.adopt(&leftover).await.unwrap();
            assert_eq!(adopted.wait().await, Exit::Exited { code: 4 });
            assert_eq!(adopted.logs(), vec!["before", "after"]);
        } else {
            second.discard(&leftover).await;
        }
    }
    assert_eq!(leftovers(&dir, "w-adopt"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_containers_leave_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let rt = std::sync::Arc::new(runtime(&dir, "w-leak").await);
    let mut tasks = tokio::task::JoinSet::new();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..500u32 {
        let rt = rt.clone();
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let _permit = permit;
            // Every tenth is killed while it runs, every tenth times out; the rest exit.
            let command: &[&str] = match i % 10 {
                0 => &["sleep", "30"],
                1 => &["sh", "-c", "sleep 30 & wait"],
                _ => &["sh", "-c", "echo $BERTH_CONTAINER_ID"],
            };
            let mut spec = spec("w-leak", command, 50, 32);
            if i % 10 == 1 {
                spec.timeout = Some(Duration::from_millis(300));
            }
            let mut handle = rt.start(spec).await.unwrap();
            let exit = if i % 10 == 0 {
                handle.kill().await
            } else {
                handle.wait().await
            };
            (i, exit)
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (i, exit) = result.unwrap();
        let expected_kind = match i % 10 {
            0 => matches!(exit, Exit::Killed),
            1 => matches!(exit, Exit::TimedOut { .. }),
            _ => exit == Exit::Exited { code: 0 },
        };
        assert!(expected_kind, "container {i} ended {exit:?}");
    }
    assert_eq!(leftovers(&dir, "w-leak"), Vec::<String>::new());
}
