//! Stage 1's public functions, pinned directly: the GPU type the static rules see, the rank
//! they return, and the pool that should grow.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::feasibility::{Infeasible, check, check_static, demand_target, worker_gpu_type};
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, GpuType, Payload, PoolAttributes, PoolName,
    Resources, RuntimeName, Snapshot, Worker, WorkerId, WorkerStatus,
};

fn attributes(pool: &str, priority: i32) -> PoolAttributes {
    let mut attributes = PoolAttributes::plain(PoolName::new(pool).unwrap());
    attributes.priority = priority;
    attributes
}

fn worker(id: &str, pool: PoolAttributes, gpu_type: Option<GpuType>, gpus: u32) -> Worker {
    let total = Resources::new(8000, 32 * 1024, gpus);
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool,
        status: WorkerStatus::Available,
        total,
        free: total,
        gpu_type,
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(gpus: u32, gpu: GpuPreference) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new("r").unwrap(),
        tenant: "t".into(),
        resources: Resources::new(1000, 1024, gpus),
        gpu,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

#[test]
fn a_worker_without_gpus_has_no_gpu_type_for_the_rules() {
    let p = attributes("p", 0);
    assert_eq!(
        worker_gpu_type(&worker("a", p.clone(), Some(GpuType::T4), 1)),
        Some(&GpuType::T4)
    );
    assert_eq!(
        worker_gpu_type(&worker("b", p.clone(), Some(GpuType::H100), 8)),
        Some(&GpuType::H100)
    );
    assert_eq!(
        worker_gpu_type(&worker("c", p.clone(), Some(GpuType::T4), 0)),
        None
    );
    assert_eq!(worker_gpu_type(&worker("d", p, None, 0)), None);
}

#[test]
fn the_static_rules_rank_a_gpu_type_by_its_place_in_the_preference() {
    let p = attributes("p", 0);
    let wanted = GpuPreference::Types(vec![GpuType::H100, GpuType::A100_80, GpuType::T4]);
    let ask = request(1, wanted);
    assert_eq!(check_static(&p, Some(&GpuType::H100), &ask), Ok(0));
    assert_eq!(check_static(&p, Some(&GpuType::T4), &ask), Ok(2));
    assert_eq!(
        check_static(&p, Some(&GpuType::L4), &ask),
        Err(Infeasible::GpuTypeNotAccepted(GpuType::L4))
    );
    assert_eq!(check_static(&p, None, &ask), Err(Infeasible::NoGpus));
}

#[test]
fn every_rule_checks_a_worker_against_the_given_free_capacity() {
    let ask = request(1, GpuPreference::Types(vec![GpuType::T4, GpuType::A10G]));
    let w = worker("g", attributes("p", 0), Some(GpuType::A10G), 2);
    assert_eq!(check(&w, &w.free, &ask), Ok(1));
    let full = Resources::new(8000, 32 * 1024, 0);
    assert_eq!(
        check(&w, &full, &ask),
        Err(Infeasible::NoRoom {
            needed: ask.resources,
            free: full
        })
    );
}

#[test]
fn demand_goes_to_the_pool_of_the_workers_with_the_best_gpu_rank() {
    let ask = request(1, GpuPreference::Types(vec![GpuType::H100, GpuType::A10G]));
    let snapshot = Snapshot {
        workers: vec![
            worker("a", attributes("a10g", 0), Some(GpuType::A10G), 4),
            worker("h", attributes("h100", 0), Some(GpuType::H100), 4),
            worker("t", attributes("t4", 9), Some(GpuType::T4), 4),
        ],
        pools: Vec::new(),
    };
    assert_eq!(
        demand_target(&snapshot, &ask),
        Some((PoolName::new("h100").unwrap(), Some(GpuType::H100)))
    );
}

#[test]
fn demand_for_a_request_no_worker_or_pool_takes_goes_nowhere() {
    let ask = request(1, GpuPreference::Any);
    let snapshot = Snapshot {
        workers: vec![worker("c", attributes("cpu", 0), None, 0)],
        pools: Vec::new(),
    };
    assert_eq!(demand_target(&snapshot, &ask), None);
}

#[test]
fn a_worker_is_checked_on_its_status_and_its_total() {
    let ask = request(0, GpuPreference::Any);
    let mut w = worker("c", attributes("p", 0), None, 0);
    w.status = WorkerStatus::Draining;
    assert_eq!(
        check(&w, &w.free, &ask),
        Err(Infeasible::NotAcceptingWork(WorkerStatus::Draining))
    );
    w.status = WorkerStatus::Pending;
    assert_eq!(check(&w, &w.free, &ask), Ok(0));
    // Larger than the worker: refused as such, whatever free capacity is given.
    let big = ContainerRequest {
        resources: Resources::new(9000, 1024, 0),
        ..ask
    };
    let plenty = Resources::new(16_000, 64 * 1024, 0);
    assert_eq!(
        check(&w, &plenty, &big),
        Err(Infeasible::LargerThanWorker {
            needed: big.resources,
            total: w.total
        })
    );
}

/// A pool's shape has a GPU type for the rules only when it has GPUs: a pool that names a
/// type but adds workers without GPUs grows for CPU requests, one with GPUs for GPU
/// requests of its type.
#[test]
fn a_pool_shape_without_gpus_has_no_gpu_type_for_the_rules() {
    let pool = |name: &str, gpus: u32| berth_core::Pool {
        attributes: attributes(name, 0),
        gpu_type: Some(GpuType::T4),
        worker_size: Resources::new(8000, 32 * 1024, gpus),
        fallback: Vec::new(),
    };
    let snapshot = Snapshot {
        workers: Vec::new(),
        pools: vec![pool("none", 0), pool("one", 1)],
    };
    assert_eq!(
        demand_target(&snapshot, &request(0, GpuPreference::Any)),
        Some((PoolName::new("none").unwrap(), None))
    );
    assert_eq!(
        demand_target(&snapshot, &request(1, GpuPreference::Any)),
        Some((PoolName::new("one").unwrap(), Some(GpuType::T4)))
    );
}
