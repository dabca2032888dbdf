//! Benchmarks of `plan()`: the batch planner against one snapshot.
//!
//! - `cpu_100/{10,20,40}`: 100 CPU requests (1000m, 1 GiB) on 10, 20 and 40 equal workers
//!   (16 cores, 64 GiB). The upstream comparison point is 100 containers on 40 workers.
//! - `mixed/10k_on_1k` and `mixed/100k_on_10k`: a fleet of 3 CPU pools and 2 GPU pools with
//!   mixed statuses, and a batch of mixed CPU and GPU requests with preference lists,
//!   selectors, priorities and preemptible flags, sized to fill most of the fleet.

#![allow(missing_docs)]

use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, GpuType, Payload, PlacementPolicy, Plan,
    PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, Worker, WorkerId, WorkerStatus,
    plan,
};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::time::Duration;

const GIB: u64 = 1024;

fn attributes(name: &str, priority: i32, policy: PlacementPolicy) -> PoolAttributes {
    PoolAttributes {
        pool: PoolName::new(name).expect("valid pool name"),
        priority,
        preemptible: false,
        requires_pool_selector: false,
        policy,
        cpu_on_gpu: None,
    }
}

fn worker(id: String, pool: PoolAttributes, total: Resources, gpu: Option<GpuType>) -> Worker {
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new(id).expect("valid worker id"),
        pool,
        status: WorkerStatus::Available,
        total,
        free: total,
        gpu_type: gpu,
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(id: String, resources: Resources) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).expect("valid container id"),
        tenant: "bench".into(),
        resources,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1_700_000_000_000,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

/// `workers` equal CPU workers of 16 cores and 64 GiB in one spread pool.
fn equal_fleet(workers: usize) -> Snapshot {
    let pool = attributes("default", 0, PlacementPolicy::Spread);
    let total = Resources::new(16_000, 64 * GIB, 0);
    Snapshot {
        workers: (0..workers)
            .map(|i| worker(format!("worker-{i:05}"), pool.clone(), total, None))
            .collect(),
        pools: Vec::new(),
    }
}

/// `n` CPU requests of 1000m and 1 GiB, submitted one millisecond apart.
fn cpu_batch(n: usize) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| {
            let mut r = request(format!("ctr-{i:07}"), Resources::new(1000, GIB, 0));
            r.submitted_at_ms += i as u64;
            r
        })
        .collect()
}

/// A fleet of `workers` workers over five pools:
/// - `cpu-std` (priority 0, spread): 40%, 32 cores, 128 GiB;
/// - `cpu-pack` (priority 1, pack): 20%, 16 cores, 64 GiB;
/// - `cpu-spot` (priority 2, preemptible, spread): 10%, 64 cores, 256 GiB;
/// - `gpu-h100` (priority 0, pack, selector required): 10%, 8 x H100;
/// - `gpu-a100` (priority 0, spread): 20%, 8 x A100-80.
///
/// One worker in 20 is pending, one in 50 is draining and one in 100 disabled; a fifth of
/// the workers start a quarter used.
fn mixed_fleet(workers: usize) -> Snapshot {
    let std_pool = attributes("cpu-std", 0, PlacementPolicy::Spread);
    let pack_pool = attributes("cpu-pack", 1, PlacementPolicy::Pack);
    let spot_pool = PoolAttributes {
        preemptible: true,
        ..attributes("cpu-spot", 2, PlacementPolicy::Spread)
    };
    let h100_pool = PoolAttributes {
        requires_pool_selector: true,
        ..attributes("gpu-h100", 0, PlacementPolicy::Pack)
    };
    let a100_pool = attributes("gpu-a100", 0, PlacementPolicy::Spread);
    let fleet = (0..workers)
        .map(|i| {
            let id = format!("worker-{i:06}");
            let mut w = match i % 10 {
                0..=3 => worker(
                    id,
                    std_pool.clone(),
                    Resources::new(32_000, 128 * GIB, 0),
                    None,
                ),
                4 | 5 => worker(
                    id,
                    pack_pool.clone(),
                    Resources::new(16_000, 64 * GIB, 0),
                    None,
                ),
                6 => worker(
                    id,
                    spot_pool.clone(),
                    Resources::new(64_000, 256 * GIB, 0),
                    None,
                ),
                7 => worker(
                    id,
                    h100_pool.clone(),
                    Resources::new(96_000, 1024 * GIB, 8),
                    Some(GpuType::H100),
                ),
                _ => worker(
                    id,
                    a100_pool.clone(),
                    Resources::new(64_000, 512 * GIB, 8),
                    Some(GpuType::A100_80),
                ),
            };
            if i % 20 == 19 {
                w.status = WorkerStatus::Pending;
            } else if i % 50 == 13 {
                w.status = WorkerStatus::Draining;
            } else if i % 100 == 31 {
                w.status = WorkerStatus::Disabled;
            }
            if i % 5 == 2 {
                let used = Resources::new(
                    w.total.cpu_millicores / 4,
                    w.total.memory_mib / 4,
                    w.total.gpu_count / 4,
                );
                w.free = w.total.checked_sub(used).expect("used below total");
            }
            w
        })
        .collect();
    Snapshot {
        workers: fleet,
        pools: Vec::new(),
    }
}

/// `n` mixed requests (a cheap deterministic mix, no RNG): 80% CPU of 250m to 4 cores and
/// 512 MiB to 16 GiB (a third preemptible, some selecting `cpu-pack`); 20% GPU, asking 1 or 2
/// of [H100, A100-80] (half of them selecting `gpu-h100`, the others falling back to the
/// A100s), [A100-80] or any. Priorities 0-3, submitted over 10 seconds.
fn mixed_batch(n: usize) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| {
            let k = i as u64;
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            let cpu = 250 * (1 + h % 16);
            let memory = 512 * (1 + (h >> 4) % 32);
            let mut r = request(format!("ctr-{i:07}"), Resources::new(cpu, memory, 0));
            r.priority = i32::try_from((h >> 9) % 4).expect("small");
            r.submitted_at_ms += (h >> 11) % 10_000;
            match i % 10 {
                0 => {
                    r.resources.gpu_count = 1 + u32::try_from((h >> 13) % 2).expect("small");
                    r.gpu = GpuPreference::Types(vec![GpuType::H100, GpuType::A100_80]);
                    if i % 20 == 0 {
                        r.pool_selector = Some(PoolName::new("gpu-h100").expect("valid"));
                    }
                }
                1 => {
                    r.resources.gpu_count = 1;
                    r.gpu = if h.is_multiple_of(2) {
                        GpuPreference::Types(vec![GpuType::A100_80])
                    } else {
                        GpuPreference::Any
                    };
                }
                2 | 5 | 8 => r.preemptible = true,
                3 => r.pool_selector = Some(PoolName::new("cpu-pack").expect("valid")),
                _ => {}
            }
            r
        })
        .collect()
}

fn summary(snapshot: &Snapshot, requests: &[ContainerRequest]) -> String {
    let p: Plan = plan(snapshot, requests);
    format!(
        "{} requests on {} workers: {} placed, {} unplaced, {} workers used",
        requests.len(),
        snapshot.workers.len(),
        p.placed(),
        p.unplaced.len(),
        p.workers.len()
    )
}

fn bench_cpu_100(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_100");
    group.throughput(Throughput::Elements(100));
    let requests = cpu_batch(100);
    for workers in [10, 20, 40] {
        let snapshot = equal_fleet(workers);
        let check = plan(&snapshot, &requests);
        assert_eq!(check.placed(), 100);
        group.bench_function(format!("{workers}_workers"), |b| {
            b.iter(|| plan(black_box(&snapshot), black_box(&requests)));
        });
    }
    group.finish();
}

fn bench_mixed(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixed");
    group.sample_size(10);
    for (requests, workers, name) in [
        (10_000, 1_000, "10k_on_1k"),
        (100_000, 10_000, "100k_on_10k"),
    ] {
        let snapshot = mixed_fleet(workers);
        let batch = mixed_batch(requests);
        eprintln!("mixed/{name}: {}", summary(&snapshot, &batch));
        group.throughput(Throughput::Elements(requests as u64));
        group.bench_function(name, |b| {
            b.iter(|| plan(black_box(&snapshot), black_box(&batch)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench_cpu_100, bench_mixed
}
criterion_main!(benches);
