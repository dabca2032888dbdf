//! CPU-only requests on GPU workers (`PoolAttributes::cpu_on_gpu`): off by default, CPU
//! workers first when on, the reserve for GPU work never eaten, the switch and its reserve
//! in the bucket key, and the reasons given for requests that find no room.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::feasibility::{Infeasible, check, demand_target};
use berth_core::rules::bucket_key;
use berth_core::{
    ContainerId, ContainerRequest, CpuReserve, GpuPreference, GpuType, Payload, Plan, Pool,
    PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, UnplacedReason, Worker, WorkerId,
    WorkerStatus, plan as plan_batch,
};
use proptest::prelude::*;

const RESERVE: CpuReserve = CpuReserve {
    cpu_millicores: 4000,
    memory_mib: 8192,
};

fn pool(name: &str, cpu_on_gpu: Option<CpuReserve>) -> PoolAttributes {
    PoolAttributes {
        cpu_on_gpu,
        ..PoolAttributes::plain(PoolName::new(name).unwrap())
    }
}

/// A worker of 16 cores and 32 GiB, with `gpus` A10Gs (none: a CPU worker).
fn worker(id: &str, pool: PoolAttributes, gpus: u32) -> Worker {
    let total = Resources::new(16_000, 32_768, gpus);
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool,
        status: WorkerStatus::Available,
        total,
        free: total,
        gpu_type: (gpus > 0).then_some(GpuType::A10G),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(id: &str, cpu: u64, memory: u64, gpus: u32) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).unwrap(),
        tenant: "t".into(),
        resources: Resources::new(cpu, memory, gpus),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

fn cpu_requests(n: usize, cpu: u64, memory: u64) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| request(&format!("c{i}"), cpu, memory, 0))
        .collect()
}

fn snapshot(workers: Vec<Worker>) -> Snapshot {
    Snapshot {
        workers,
        pools: Vec::new(),
    }
}

/// The worker each request went to, by request index (`None`: unplaced).
fn placed_on(plan: &Plan, requests: usize) -> Vec<Option<String>> {
    let mut out = vec![None; requests];
    for worker in &plan.workers {
        for placement in &worker.placements {
            out[placement.request] = Some(worker.worker.to_string());
        }
    }
    out
}

fn reason(plan: &Plan) -> Option<&UnplacedReason> {
    plan.unplaced.first().map(|u| &u.reason)
}

#[test]
fn off_by_default_a_cpu_request_never_goes_to_a_gpu_worker() {
    assert_eq!(
        PoolAttributes::plain(PoolName::new("p").unwrap()).cpu_on_gpu,
        None
    );
    let gpu = worker("g", pool("gpu", None), 4);
    let cpu_request = request("c", 1000, 1024, 0);
    assert_eq!(
        check(&gpu, &gpu.free, &cpu_request),
        Err(Infeasible::GpuWorkerForCpuRequest)
    );
    let plan = plan_batch(&snapshot(vec![gpu]), &[cpu_request]);
    assert_eq!(plan.placed(), 0);
    assert_eq!(reason(&plan), Some(&UnplacedReason::NoMatchingPool));
}

#[test]
fn on_a_cpu_request_takes_a_gpu_worker_only_when_cpu_workers_are_full() {
    let workers = vec![
        worker("cpu", pool("cpu", None), 0),
        worker("gpu", pool("gpu", Some(RESERVE)), 4),
    ];
    // Four 4-core requests fill the CPU worker; the next three go to the GPU worker, which
    // then has its reserve of 4 cores left, so the eighth waits.
    let requests = cpu_requests(8, 4000, 1024);
    let plan = plan_batch(&snapshot(workers), &requests);
    let on = placed_on(&plan, requests.len());
    let expected: Vec<Option<String>> = ["cpu", "cpu", "cpu", "cpu", "gpu", "gpu", "gpu"]
        .iter()
        .map(|w| Some((*w).to_owned()))
        .chain([None])
        .collect();
    assert_eq!(on, expected);
    assert_eq!(reason(&plan), Some(&UnplacedReason::NoRoomNow));
}

#[test]
fn cpu_workers_come_first_even_in_a_lower_priority_pool() {
    let mut high = pool("gpu", Some(RESERVE));
    high.priority = 10;
    let workers = vec![worker("gpu", high, 4), worker("cpu", pool("cpu", None), 0)];
    let requests = cpu_requests(1, 1000, 1024);
    let plan = plan_batch(&snapshot(workers), &requests);
    assert_eq!(placed_on(&plan, 1), [Some("cpu".to_owned())]);
}

#[test]
fn gpu_requests_may_use_the_reserve() {
    let gpu = worker("gpu", pool("gpu", Some(RESERVE)), 4);
    let mut free = gpu.free;
    free.cpu_millicores = 1000;
    let gpu_request = request("g", 1000, 1024, 1);
    assert_eq!(check(&gpu, &free, &gpu_request), Ok(0));
    let cpu_request = request("c", 1000, 1024, 0);
    assert_eq!(
        check(&gpu, &free, &cpu_request),
        Err(Infeasible::GpuReserve {
            needed: cpu_request.resources,
            reserve: RESERVE,
            free,
        })
    );
}

#[test]
fn the_reserve_is_kept_exactly() {
    let gpu = worker("gpu", pool("gpu", Some(RESERVE)), 2);
    // Free less the request at the reserve: fits; one millicore or MiB more: does not.
    let cpu = gpu.total.cpu_millicores - RESERVE.cpu_millicores;
    let memory = gpu.total.memory_mib - RESERVE.memory_mib;
    assert_eq!(check(&gpu, &gpu.free, &request("a", cpu, memory, 0)), Ok(0));
    for (cpu, memory) in [(cpu + 1, memory), (cpu, memory + 1)] {
        assert!(matches!(
            check(&gpu, &gpu.free, &request("b", cpu, memory, 0)),
            Err(Infeasible::GpuReserve { .. })
        ));
    }
}

proptest! {
    /// Whatever CPU-only requests come, every GPU worker with the switch keeps its reserve
    /// free, and every plan passes verification (planner and rules agree).
    #[test]
    fn cpu_work_never_eats_the_reserve(
        sizes in prop::collection::vec((1u64..=16, 1u64..=32), 1..40),
        reserve_cpu in 0u64..=16,
        reserve_memory in 0u64..=32,
        cpu_workers in 0usize..3,
    ) {
        let reserve = CpuReserve {
            cpu_millicores: reserve_cpu * 1000,
            memory_mib: reserve_memory * 1024,
        };
        let mut workers: Vec<Worker> = (0..cpu_workers)
            .map(|i| worker(&format!("cpu{i}"), pool("cpu", None), 0))
            .collect();
        workers.extend((0..3).map(|i| worker(&format!("gpu{i}"), pool("gpu", Some(reserve)), 2)));
        let requests: Vec<ContainerRequest> = sizes
            .iter()
            .enumerate()
            .map(|(i, (cpu, memory))| request(&format!("r{i}"), cpu * 1000, memory * 1024, 0))
            .collect();
        let snapshot = snapshot(workers);
        let plan = plan_batch(&snapshot, &requests);
        prop_assert_eq!(berth_core::verify_plan(&snapshot, &requests, &plan), Ok(()));
        for worker_plan in &plan.workers {
            let Some(worker) = snapshot.workers.iter().find(|w| w.id == worker_plan.worker) else {
                continue;
            };
            if !worker.has_gpus() {
                continue;
            }
            let used = worker_plan.total().unwrap();
            let left = worker.free.checked_sub(used).unwrap();
            prop_assert!(reserve.as_resources().fits_in(&left), "{} left {left}", worker.id);
        }
    }
}

#[test]
fn the_switch_and_its_reserve_are_in_the_bucket_key() {
    let off = worker("a", pool("gpu", None), 4);
    let on = worker("b", pool("gpu", Some(RESERVE)), 4);
    let other = CpuReserve {
        cpu_millicores: 1000,
        ..RESERVE
    };
    let on_other = worker("c", pool("gpu", Some(other)), 4);
    let on_again = worker("d", pool("gpu", Some(RESERVE)), 4);
    assert_ne!(bucket_key(&off), bucket_key(&on));
    assert_ne!(bucket_key(&on), bucket_key(&on_other));
    assert_eq!(bucket_key(&on), bucket_key(&on_again));
}

#[test]
fn workers_with_and_without_the_switch_are_planned_apart() {
    // Same pool name, so only the switch tells them apart: the request must go to the one
    // that lets it on, whichever comes first in the snapshot.
    for order in [["off", "on"], ["on", "off"]] {
        let workers = order
            .iter()
            .map(|id| {
                let reserve = (*id == "on").then_some(RESERVE);
                worker(id, pool("gpu", reserve), 4)
            })
            .collect();
        let requests = cpu_requests(2, 6000, 1024);
        let plan = plan_batch(&snapshot(workers), &requests);
        assert_eq!(
            placed_on(&plan, 2),
            [Some("on".to_owned()), Some("on".to_owned())],
            "{order:?}"
        );
    }
}

#[test]
fn a_request_larger_than_total_less_reserve_never_fits() {
    let gpu = worker("gpu", pool("gpu", Some(RESERVE)), 4);
    // 13 cores: fits the 16-core worker, not its 12 cores left after the reserve.
    let plan = plan_batch(&snapshot(vec![gpu.clone()]), &cpu_requests(1, 13_000, 1024));
    assert_eq!(reason(&plan), Some(&UnplacedReason::NeverFits));
    let plan = plan_batch(&snapshot(vec![gpu.clone()]), &cpu_requests(1, 1024, 30_000));
    assert_eq!(reason(&plan), Some(&UnplacedReason::NeverFits));
    // 12 cores twice: the first fits, the second could once the first ends.
    let plan = plan_batch(&snapshot(vec![gpu]), &cpu_requests(2, 12_000, 1024));
    assert_eq!(plan.placed(), 1);
    assert_eq!(reason(&plan), Some(&UnplacedReason::NoRoomNow));
}

#[test]
fn a_pool_shape_with_the_switch_counts_its_reserve() {
    let gpu_pool = |size: Resources| Pool {
        attributes: pool("gpu", Some(RESERVE)),
        gpu_type: Some(GpuType::A10G),
        worker_size: size,
        fallback: Vec::new(),
    };
    let request = request("c", 13_000, 1024, 0);
    let small = Snapshot {
        workers: Vec::new(),
        pools: vec![gpu_pool(Resources::new(16_000, 32_768, 4))],
    };
    assert_eq!(
        reason(&plan_batch(&small, std::slice::from_ref(&request))),
        Some(&UnplacedReason::NeverFits)
    );
    let large = Snapshot {
        workers: Vec::new(),
        pools: vec![gpu_pool(Resources::new(32_000, 32_768, 4))],
    };
    assert_eq!(
        reason(&plan_batch(&large, std::slice::from_ref(&request))),
        Some(&UnplacedReason::NoRoomNow)
    );
}

#[test]
fn cpu_demand_grows_a_cpu_pool_before_a_gpu_pool() {
    let mut gpu = pool("gpu", Some(RESERVE));
    gpu.priority = 10;
    let snapshot = Snapshot {
        workers: Vec::new(),
        pools: vec![
            Pool {
                attributes: gpu.clone(),
                gpu_type: Some(GpuType::A10G),
                worker_size: Resources::new(16_000, 32_768, 4),
                fallback: Vec::new(),
            },
            Pool {
                attributes: pool("cpu", None),
                gpu_type: None,
                worker_size: Resources::new(16_000, 32_768, 0),
                fallback: Vec::new(),
            },
        ],
    };
    let cpu_request = request("c", 1000, 1024, 0);
    assert_eq!(
        demand_target(&snapshot, &cpu_request),
        Some((PoolName::new("cpu").unwrap(), None))
    );
    let only_gpu = Snapshot {
        pools: snapshot.pools[..1].to_vec(),
        ..snapshot
    };
    assert_eq!(
        demand_target(&only_gpu, &cpu_request),
        Some((PoolName::new("gpu").unwrap(), Some(GpuType::A10G)))
    );
}
