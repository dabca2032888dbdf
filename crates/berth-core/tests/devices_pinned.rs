//! The planner's device choice on non-fragmentation-aware pools, pinned: what a request gets
//! of a worker's GPU devices, and what a request that found no room says about the next.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::gpu_fit::GpuAsk;
use berth_core::{
    ContainerId, ContainerRequest, DeviceShare, GpuDevice, GpuPreference, GpuType, Payload,
    PlacementPolicy, Plan, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot,
    UnplacedReason, Worker, WorkerGpu, WorkerId, WorkerStatus, plan,
};

/// A GPU worker of a `policy` pool whose devices have the given free milli-GPUs.
fn gpu_worker(id: &str, policy: PlacementPolicy, free: &[u32]) -> Worker {
    let whole = free.iter().filter(|&&f| f == 1000).count() as u32;
    Worker {
        images: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool: PoolAttributes {
            policy,
            ..PoolAttributes::plain(PoolName::new("gpu").unwrap())
        },
        status: WorkerStatus::Available,
        total: Resources::new(64_000, 65_536, free.len() as u32),
        free: Resources::new(64_000, 65_536, whole),
        gpu_type: Some(GpuType::A10G),
        gpus: free
            .iter()
            .zip(0..)
            .map(|(&free_milli, index)| WorkerGpu {
                device: GpuDevice {
                    index,
                    gpu_type: GpuType::A10G,
                    memory_mib: 0,
                    uuid: None,
                    healthy: true,
                },
                free_milli,
            })
            .collect(),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(index: usize, ask: GpuAsk, priority: i32) -> ContainerRequest {
    let (count, fraction) = match ask {
        GpuAsk::Whole(n) => (n, None),
        GpuAsk::Fraction(milli) => (0, Some(milli)),
        GpuAsk::None => (0, None),
    };
    ContainerRequest {
        id: ContainerId::new(format!("r{index}")).unwrap(),
        tenant: "t".into(),
        resources: Resources::new(1000, 1024, count),
        gpu_fraction_milli: fraction,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority,
        submitted_at_ms: index as u64,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

fn snapshot(workers: Vec<Worker>) -> Snapshot {
    Snapshot {
        workers,
        pools: Vec::new(),
    }
}

/// The devices each request got, by request index (`None` when unplaced).
fn devices_of(plan: &Plan, requests: usize) -> Vec<Option<(String, Vec<DeviceShare>)>> {
    let mut out = vec![None; requests];
    for group in &plan.workers {
        for p in &group.placements {
            out[p.request] = Some((group.worker.to_string(), p.devices.clone()));
        }
    }
    out
}

/// A fraction that finds no device with room says nothing of a smaller fraction with the
/// same CPU and memory: the smaller one is still placed.
#[test]
fn a_fraction_that_found_no_room_does_not_turn_away_a_smaller_one() {
    let snapshot = snapshot(vec![gpu_worker("g", PlacementPolicy::Spread, &[500])]);
    let requests = [
        request(0, GpuAsk::Fraction(900), 1),
        request(1, GpuAsk::Fraction(100), 0),
    ];
    let plan = plan(&snapshot, &requests);
    assert_eq!(
        devices_of(&plan, 2),
        [
            None,
            Some((
                "g".to_owned(),
                vec![DeviceShare {
                    index: 0,
                    milli: 100
                }]
            ))
        ]
    );
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.unplaced[0].reason, UnplacedReason::NoRoomNow);
}

/// On a fragmentation-aware GPU pool that lets CPU-only requests on, a CPU-only request gets
/// no devices and leaves the pool's reserve for GPU work free, as on any other pool.
#[test]
fn a_cpu_request_on_an_fgd_gpu_worker_gets_no_devices_and_keeps_the_reserve() {
    let mut gpu = gpu_worker("g", PlacementPolicy::Fgd, &[1000, 1000]);
    gpu.pool.cpu_on_gpu = Some(berth_core::CpuReserve {
        cpu_millicores: 60_000,
        memory_mib: 1024,
    });
    let snapshot = snapshot(vec![gpu]);
    let mut fits = request(0, GpuAsk::None, 0);
    fits.resources.cpu_millicores = 4000;
    let mut eats_reserve = request(1, GpuAsk::None, 0);
    eats_reserve.resources.cpu_millicores = 1000;
    let plan = plan(&snapshot, &[fits, eats_reserve]);
    assert_eq!(
        devices_of(&plan, 2),
        [Some(("g".to_owned(), Vec::new())), None]
    );
    assert_eq!(plan.unplaced[0].reason, UnplacedReason::NoRoomNow);
}
