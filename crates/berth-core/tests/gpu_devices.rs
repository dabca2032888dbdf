//! Property tests of per-device GPU placement: over random GPU fleets (devices partly
//! booked, some unhealthy) and batches of whole-GPU and fractional requests, under every
//! policy, no device is booked beyond its whole, a whole booking never shares its device,
//! unhealthy devices are never booked, and a request left waiting for room had no worker
//! that could still hold it.

#![allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.

use berth_core::feasibility::check;
use berth_core::gpu_fit::{self, DemandShape, DeviceSlot};
use berth_core::{
    ContainerId, ContainerRequest, DeviceShare, GPU_MILLI, GpuAsk, GpuDevice, GpuPreference,
    GpuType, Payload, PlacementPolicy, Plan, PlanOptions, PoolAttributes, PoolName, Resources,
    RuntimeName, Snapshot, UnplacedReason, Worker, WorkerGpu, WorkerId, WorkerStatus, plan,
    plan_for_demand, verify_plan,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// A device's free milli-GPUs: often whole or empty, else a booked remainder.
fn device_free() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(GPU_MILLI),
        1 => Just(0u32),
        3 => 1u32..GPU_MILLI,
    ]
}

fn worker(index: usize, policy: PlacementPolicy) -> impl Strategy<Value = Worker> {
    (
        prop::collection::vec((device_free(), prop::bool::weighted(0.9)), 1..=8),
        1u64..=16,
        (0u64..=4, 0u64..=4),
    )
        .prop_map(move |(devices, cores, (fc, fm))| {
            let total = Resources::new(cores * 4000, cores * 16_384, devices.len() as u32);
            let gpus: Vec<WorkerGpu> = devices
                .iter()
                .zip(0..)
                .map(|(&(free_milli, healthy), device)| WorkerGpu {
                    device: GpuDevice {
                        index: device,
                        gpu_type: GpuType::A10G,
                        memory_mib: 24_576,
                        uuid: None,
                        healthy,
                    },
                    free_milli,
                })
                .collect();
            let whole = gpus
                .iter()
                .filter(|g| g.device.healthy && g.free_milli == GPU_MILLI)
                .count() as u32;
            Worker {
                images: Vec::new(),
                id: WorkerId::new(format!("w{index}")).unwrap(),
                pool: PoolAttributes {
                    policy,
                    ..PoolAttributes::plain(PoolName::new("gpu").unwrap())
                },
                status: WorkerStatus::Available,
                total,
                free: Resources::new(
                    total.cpu_millicores * fc / 4,
                    total.memory_mib * fm / 4,
                    whole,
                ),
                gpu_type: Some(GpuType::A10G),
                gpus,
                runtime: RuntimeName::PROCESS,
                version: 1,
                epoch: 1,
            }
        })
}

fn policy() -> impl Strategy<Value = PlacementPolicy> {
    prop_oneof![
        Just(PlacementPolicy::Spread),
        Just(PlacementPolicy::Pack),
        Just(PlacementPolicy::Fgd),
    ]
}

fn fleet() -> impl Strategy<Value = Snapshot> {
    (policy(), 1usize..=12)
        .prop_flat_map(|(policy, n)| (0..n).map(|i| worker(i, policy)).collect::<Vec<_>>())
        .prop_map(|workers| Snapshot {
            workers,
            pools: Vec::new(),
        })
}

/// GPU requests: fractions (about 40%), one whole GPU, or several.
fn ask() -> impl Strategy<Value = GpuAsk> {
    prop_oneof![
        4 => (1u32..GPU_MILLI).prop_map(GpuAsk::Fraction),
        4 => Just(GpuAsk::Whole(1)),
        2 => (2u32..=8).prop_map(GpuAsk::Whole),
    ]
}

fn request(index: usize, ask: GpuAsk, cores: u64) -> ContainerRequest {
    let (count, fraction) = match ask {
        GpuAsk::Whole(n) => (n, None),
        GpuAsk::Fraction(milli) => (0, Some(milli)),
        GpuAsk::None => (0, None),
    };
    ContainerRequest {
        id: ContainerId::new(format!("r{index}")).unwrap(),
        tenant: "t".into(),
        resources: Resources::new(cores * 500, cores * 1024, count),
        gpu_fraction_milli: fraction,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: index as u64,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

fn batch() -> impl Strategy<Value = Vec<ContainerRequest>> {
    prop::collection::vec((ask(), 1u64..=8), 0..=60).prop_map(|asks| {
        asks.into_iter()
            .enumerate()
            .map(|(i, (ask, cores))| request(i, ask, cores))
            .collect()
    })
}

/// What each device has free after the plan, checked share by share against the rules.
fn replay(snapshot: &Snapshot, plan: &Plan) -> Result<HashMap<String, Vec<DeviceSlot>>, String> {
    let mut left: HashMap<String, Vec<DeviceSlot>> = HashMap::new();
    for worker in &snapshot.workers {
        left.insert(worker.id.to_string(), worker.device_slots());
    }
    for group in &plan.workers {
        let worker = snapshot
            .workers
            .iter()
            .find(|w| w.id == group.worker)
            .unwrap();
        let slots = left.get_mut(worker.id.as_str()).unwrap();
        for placement in &group.placements {
            for share in &placement.devices {
                let device = worker
                    .gpus
                    .iter()
                    .find(|g| g.device.index == share.index)
                    .ok_or_else(|| {
                        format!("{} got unknown device {}", placement.container, share.index)
                    })?;
                if !device.device.healthy {
                    return Err(format!(
                        "{} got unhealthy device {}",
                        placement.container, share.index
                    ));
                }
                let slot = slots.iter_mut().find(|s| s.index == share.index).unwrap();
                if share.is_whole() && slot.free != GPU_MILLI {
                    return Err(format!(
                        "{} got device {} whole with {} of it free",
                        placement.container, share.index, slot.free
                    ));
                }
                slot.free = slot.free.checked_sub(share.milli).ok_or_else(|| {
                    format!(
                        "device {} of {} booked beyond its whole",
                        share.index, worker.id
                    )
                })?;
            }
        }
    }
    Ok(left)
}

/// The free CPU and memory left on each worker by the plan.
fn resources_left(snapshot: &Snapshot, plan: &Plan) -> HashMap<String, Resources> {
    let mut left: HashMap<String, Resources> = snapshot
        .workers
        .iter()
        .map(|w| (w.id.to_string(), w.free))
        .collect();
    for group in &plan.workers {
        let free = left.get_mut(group.worker.as_str()).unwrap();
        for placement in &group.placements {
            free.cpu_millicores -= placement.resources.cpu_millicores;
            free.memory_mib -= placement.resources.memory_mib;
        }
    }
    left
}

/// Whether devices with these free shares could hold `ask` (independent of the planner's
/// own choice).
fn could_hold(slots: &[DeviceSlot], ask: GpuAsk) -> bool {
    match ask {
        GpuAsk::None => true,
        GpuAsk::Whole(n) => slots.iter().filter(|s| s.free == GPU_MILLI).count() >= n as usize,
        GpuAsk::Fraction(milli) => slots.iter().any(|s| s.free >= milli),
    }
}

fn check_plan(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    plan: &Plan,
) -> Result<(), TestCaseError> {
    verify_plan(snapshot, requests, plan).map_err(TestCaseError::fail)?;
    let devices = replay(snapshot, plan).map_err(TestCaseError::fail)?;
    let resources = resources_left(snapshot, plan);
    for unplaced in &plan.unplaced {
        if unplaced.reason != UnplacedReason::NoRoomNow {
            continue;
        }
        let request = &requests[unplaced.request];
        for worker in &snapshot.workers {
            let slots = &devices[worker.id.as_str()];
            let mut free = resources[worker.id.as_str()];
            free.gpu_count = gpu_fit::whole_free(slots);
            let fits =
                check(worker, &free, request).is_ok() && could_hold(slots, request.gpu_ask());
            prop_assert!(
                !fits,
                "{} waits for room, but {} could still hold it",
                request.id,
                worker.id
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn devices_are_never_overbooked_and_waiting_requests_had_no_room(
        snapshot in fleet(),
        requests in batch(),
    ) {
        let plan = plan(&snapshot, &requests);
        check_plan(&snapshot, &requests, &plan)?;
    }

    #[test]
    fn the_same_holds_against_a_given_demand(
        snapshot in fleet(),
        requests in batch(),
        demand in prop::collection::vec((ask(), 1u64..=8, 1u64..=20), 1..=5),
    ) {
        let demand: Vec<DemandShape> = demand
            .into_iter()
            .map(|(gpus, cores, weight)| DemandShape {
                resources: Resources::new(cores * 500, cores * 1024, 0),
                gpus,
                types: GpuPreference::Any,
                weight,
            })
            .collect();
        let plan = plan_for_demand(&snapshot, &requests, PlanOptions::default(), &demand);
        check_plan(&snapshot, &requests, &plan)?;
    }
}

fn fgd_worker(index: usize, free: &[u32]) -> Worker {
    let mut worker = Worker {
        images: Vec::new(),
        id: WorkerId::new(format!("w{index}")).unwrap(),
        pool: PoolAttributes {
            policy: PlacementPolicy::Fgd,
            ..PoolAttributes::plain(PoolName::new("gpu").unwrap())
        },
        status: WorkerStatus::Available,
        total: Resources::ZERO,
        free: Resources::ZERO,
        gpu_type: Some(GpuType::A10G),
        gpus: Vec::new(),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    };
    worker.total = Resources::new(64_000, 262_144, free.len() as u32);
    worker.gpus = free
        .iter()
        .zip(0..)
        .map(|(&free_milli, index)| WorkerGpu {
            device: GpuDevice {
                index,
                gpu_type: GpuType::A10G,
                memory_mib: 24_576,
                uuid: None,
                healthy: true,
            },
            free_milli,
        })
        .collect();
    let whole = free.iter().filter(|&&f| f == GPU_MILLI).count() as u32;
    worker.free = Resources::new(64_000, 262_144, whole);
    worker
}

/// Against a demand of half GPUs and whole GPUs, a quarter GPU goes where it fragments
/// least: onto the device with a quarter left, not onto the one with half (which a half GPU
/// could still use) nor a whole one; pack would take the fullest worker regardless.
#[test]
fn fgd_puts_a_fraction_where_it_wastes_least() {
    let snapshot = Snapshot {
        workers: vec![fgd_worker(0, &[1000, 500]), fgd_worker(1, &[1000, 250])],
        pools: Vec::new(),
    };
    let demand = [
        DemandShape {
            resources: Resources::new(500, 1024, 0),
            gpus: GpuAsk::Fraction(500),
            types: GpuPreference::Any,
            weight: 1,
        },
        DemandShape {
            resources: Resources::new(500, 1024, 0),
            gpus: GpuAsk::Whole(1),
            types: GpuPreference::Any,
            weight: 1,
        },
    ];
    let requests = [request(0, GpuAsk::Fraction(250), 1)];
    let plan = plan_for_demand(&snapshot, &requests, PlanOptions::default(), &demand);
    assert_eq!(plan.workers.len(), 1);
    assert_eq!(plan.workers[0].worker.as_str(), "w1");
    assert_eq!(
        plan.workers[0].placements[0].devices,
        [DeviceShare {
            index: 1,
            milli: 250
        }]
    );
}

/// Whole GPUs never land on a partly booked device, and a fraction breaks into a whole
/// device only when no partly booked one has room.
#[test]
fn fractions_fill_partly_booked_devices_first() {
    let snapshot = Snapshot {
        workers: vec![fgd_worker(0, &[1000, 600])],
        pools: Vec::new(),
    };
    let requests = [
        request(0, GpuAsk::Fraction(500), 1),
        request(1, GpuAsk::Fraction(500), 1),
        request(2, GpuAsk::Whole(1), 1),
    ];
    let plan = plan(&snapshot, &requests);
    let devices: Vec<Vec<DeviceShare>> = plan.workers[0]
        .placements
        .iter()
        .map(|p| p.devices.clone())
        .collect();
    assert_eq!(
        devices,
        [
            vec![DeviceShare {
                index: 1,
                milli: 500
            }],
            vec![DeviceShare {
                index: 0,
                milli: 500
            }]
        ]
    );
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.unplaced[0].container.as_str(), "r2");
}

/// A fraction that breaks into a whole device lowers the worker's free GPU count for the
/// rest of the batch: spread then sends a whole GPU to the worker with more whole devices
/// left (w1: 1 of 2 after) rather than to the one the fraction broke (w0: 1 of 3 after).
#[test]
fn a_fraction_on_a_whole_device_counts_against_whole_gpus() {
    let mut w0 = fgd_worker(0, &[1000, 1000, 1000]);
    let mut w1 = fgd_worker(1, &[1000, 1000]);
    for (worker, pool) in [(&mut w0, "a"), (&mut w1, "b")] {
        worker.pool = PoolAttributes::plain(PoolName::new(pool).unwrap());
    }
    let snapshot = Snapshot {
        workers: vec![w0, w1],
        pools: Vec::new(),
    };
    let mut fraction = request(0, GpuAsk::Fraction(500), 1);
    fraction.pool_selector = Some(PoolName::new("a").unwrap());
    let requests = [fraction, request(1, GpuAsk::Whole(1), 1)];
    let plan = plan(&snapshot, &requests);
    let whole_on: Vec<&str> = plan
        .workers
        .iter()
        .filter(|g| g.placements.iter().any(|p| p.container.as_str() == "r1"))
        .map(|g| g.worker.as_str())
        .collect();
    assert_eq!(whole_on, ["w1"]);
}

/// Fgd ranks workers by how much a placement grows their fragmentation, not by how
/// fragmented they end up: a worker already fragmented that the request tidies (two
/// devices with half free: whole GPUs can use neither) beats a pristine one it would break.
#[test]
fn fgd_ranks_by_the_growth_of_fragmentation_not_its_level() {
    let snapshot = Snapshot {
        workers: vec![fgd_worker(0, &[500, 500]), fgd_worker(1, &[1000])],
        pools: Vec::new(),
    };
    let demand = [
        DemandShape {
            resources: Resources::new(500, 1024, 0),
            gpus: GpuAsk::Fraction(500),
            types: GpuPreference::Any,
            weight: 1,
        },
        DemandShape {
            resources: Resources::new(500, 1024, 0),
            gpus: GpuAsk::Whole(1),
            types: GpuPreference::Any,
            weight: 1,
        },
    ];
    let requests = [request(0, GpuAsk::Fraction(500), 1)];
    let plan = plan_for_demand(&snapshot, &requests, PlanOptions::default(), &demand);
    assert_eq!(plan.workers.len(), 1);
    assert_eq!(plan.workers[0].worker.as_str(), "w0", "{plan:?}");
}

/// Among placements that fragment alike (here: no demand to fragment), fgd keeps the first
/// way the devices could hold a fraction (the device with least room that fits, as every
/// policy chooses) and packs: the fuller worker wins.
#[test]
fn fgd_ties_keep_the_first_device_choice_and_pack() {
    let mut fuller = fgd_worker(1, &[1000, 700]);
    fuller.free.cpu_millicores -= 32_000;
    let snapshot = Snapshot {
        workers: vec![fgd_worker(0, &[1000, 700]), fuller],
        pools: Vec::new(),
    };
    let requests = [request(0, GpuAsk::Fraction(500), 1)];
    let plan = plan_for_demand(&snapshot, &requests, PlanOptions::default(), &[]);
    assert_eq!(plan.workers.len(), 1);
    assert_eq!(
        plan.workers[0].worker.as_str(),
        "w1",
        "pack among equals: {plan:?}"
    );
    assert_eq!(
        plan.workers[0].placements[0].devices,
        [DeviceShare {
            index: 1,
            milli: 500
        }],
        "the fullest device with room"
    );
}
