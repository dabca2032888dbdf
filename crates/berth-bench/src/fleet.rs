//! The bench's fleets and requests, and facts about this machine and process.

use anyhow::Context;
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, GpuType, Payload, PoolAttributes, PoolName,
    Resources, RuntimeName, Worker, WorkerId, WorkerStatus,
};
use berth_store::{Store, WorkerRegistration};
use futures::{StreamExt, TryStreamExt};

/// What every bench request asks for: 1 CPU, 1 GiB, no GPU (the seed's CPU-only requests).
pub const REQUEST: Resources = Resources::new(1_000, 1_024, 0);

/// The seed's workers: 32 cores and 128 GiB each, so even the 10-worker fleet has room for
/// 320 of the 100 requests (the seed's "room for all").
pub const SEED_WORKER: Resources = Resources::new(32_000, 131_072, 0);

/// Registrations in flight at once while a fleet is set up.
const REGISTER_CONCURRENCY: usize = 64;

/// The id of worker `index` of a fleet (`worker-00042`): sorts in index order.
pub fn worker_id(index: usize) -> anyhow::Result<WorkerId> {
    WorkerId::new(format!("worker-{index:05}")).context("a bench worker id")
}

/// A worker big enough for `per_worker` bench requests, with a margin of a quarter.
pub fn worker_for(per_worker: usize) -> Resources {
    let n = u64::try_from(per_worker.max(1)).unwrap_or(u64::MAX / 4_096);
    let room = n.saturating_add(n / 4).saturating_add(1);
    Resources::new(
        REQUEST.cpu_millicores.saturating_mul(room),
        REQUEST.memory_mib.saturating_mul(room),
        0,
    )
}

/// Registers `count` equal, available CPU workers of size `total` in one pool (spread
/// policy), several at a time; returns their ids in index order.
pub async fn register(
    store: &dyn Store,
    count: usize,
    total: Resources,
) -> anyhow::Result<Vec<WorkerId>> {
    register_with_gpus(store, count, total, None).await
}

/// [`register`], the workers having `total.gpu_count` devices of `gpu_type` when given.
pub async fn register_with_gpus(
    store: &dyn Store,
    count: usize,
    total: Resources,
    gpu_type: Option<GpuType>,
) -> anyhow::Result<Vec<WorkerId>> {
    let pool = PoolAttributes::plain(PoolName::new("bench").context("the bench pool name")?);
    let ids = (0..count)
        .map(worker_id)
        .collect::<anyhow::Result<Vec<_>>>()?;
    futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let registration = WorkerRegistration {
                devices: Vec::new(),
                id,
                pool: pool.clone(),
                status: WorkerStatus::Available,
                total,
                gpu_type: gpu_type.clone(),
                runtime: RuntimeName::PROCESS,
            };
            async move { store.register_worker(&registration).await }
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .context("registering the fleet")?;
    Ok(ids)
}

/// One bench request: 1 CPU, 1 GiB, accepted at `submitted_at_ms`.
pub fn request(id: String, submitted_at_ms: u64) -> anyhow::Result<ContainerRequest> {
    Ok(ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).context("a bench container id")?,
        tenant: "bench".to_owned(),
        resources: REQUEST,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    })
}

/// `request` asking a quarter of one GPU (250 milli-GPUs) of any type besides its CPU and
/// memory.
pub fn quarter_gpu(request: ContainerRequest) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: Some(250),
        ..request
    }
}

/// Containers per worker, from the workers' reserved CPU (every bench request reserves
/// the same), in worker order.
pub fn per_worker_from_capacity(workers: &[Worker]) -> Vec<usize> {
    let mut workers: Vec<&Worker> = workers.iter().collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    workers
        .iter()
        .map(|w| {
            let used = w.total.cpu_millicores.saturating_sub(w.free.cpu_millicores);
            usize::try_from(used / REQUEST.cpu_millicores).unwrap_or(usize::MAX)
        })
        .collect()
}

/// The machine the bench runs on.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Machine {
    /// CPU cores available to this process.
    pub cores: usize,
    /// Total memory, in bytes (0 if unknown).
    pub memory_bytes: u64,
    /// Total memory, in GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads the core count and `/proc/meminfo`'s MemTotal.
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let memory_bytes = proc_kib("/proc/meminfo", "MemTotal:").map_or(0, |kib| kib * 1024);
        Machine {
            cores,
            memory_bytes,
            memory_gib: memory_bytes as f64 / (1u64 << 30) as f64,
        }
    }
}

/// This process's peak resident memory (`VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_rss() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM:").map(|kib| kib * 1024)
}

/// The CPU time this process's threads have used, in nanoseconds of run time: the sum of
/// the first field of `/proc/self/task/*/schedstat` (threads that already ended are not
/// counted; the bench's long-lived threads are).
pub fn process_cpu() -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total = total.saturating_add(parse_schedstat(&text).unwrap_or(0));
    }
    Some(std::time::Duration::from_nanos(total))
}

/// The run time in ns of a `schedstat` line: `run_ns wait_ns slices`.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Resets the peak resident memory to the current one (writing 5 to
/// `/proc/self/clear_refs`), so a later [`peak_rss`] covers one run only. False if the
/// kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `Name:   123 kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_kib(&text, name)
}

fn parse_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse_in_kib() {
        let text = "Name:\tberth\nVmPeak:\t  2000 kB\nVmHWM:\t    1234 kB\n";
        assert_eq!(parse_kib(text, "VmHWM:"), Some(1234));
        assert_eq!(parse_kib(text, "VmRSS:"), None);
    }

    #[test]
    fn schedstat_starts_with_the_run_time() {
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
        assert_eq!(parse_schedstat(""), None);
        assert!(process_cpu().is_some());
    }

    #[test]
    fn workers_have_room_with_a_margin() {
        let w = worker_for(100);
        assert_eq!(w.cpu_millicores, 126_000);
        assert_eq!(w.memory_mib, 126 * 1_024);
        assert_eq!(worker_id(7).unwrap().as_str(), "worker-00007");
    }
}
