//! `verify_plan`'s device post-conditions, pinned: each placement holds exactly the devices
//! its request asks for (none without GPUs, `n` distinct whole devices, or one share of the
//! fraction), on devices the worker has free, and a fraction that breaks into a wholly free
//! device takes it from the worker's free GPU count for the rest of the plan.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::gpu_fit::GpuAsk;
use berth_core::{
    ContainerId, ContainerRequest, CpuReserve, DeviceShare, GpuDevice, GpuPreference, GpuType,
    Payload, Placement, Plan, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, Worker,
    WorkerGpu, WorkerId, WorkerPlan, WorkerStatus, verify_plan,
};

/// A GPU worker whose devices have the given free milli-GPUs, its free GPU count `count`;
/// its pool lets CPU-only requests on (with no reserve).
fn gpu_worker(free: &[u32], count: u32) -> Worker {
    Worker {
        images: Vec::new(),
        id: WorkerId::new("g").unwrap(),
        pool: PoolAttributes {
            cpu_on_gpu: Some(CpuReserve::default()),
            ..PoolAttributes::plain(PoolName::new("gpu").unwrap())
        },
        status: WorkerStatus::Available,
        total: Resources::new(64_000, 65_536, free.len() as u32),
        free: Resources::new(64_000, 65_536, count),
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
        version: 4,
        epoch: 1,
    }
}

fn request(index: usize, ask: GpuAsk) -> ContainerRequest {
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
        priority: 0,
        submitted_at_ms: index as u64,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

/// A plan placing every request on worker `g` with the given devices.
fn on_g(requests: &[ContainerRequest], devices: &[Vec<DeviceShare>]) -> Plan {
    Plan {
        workers: vec![WorkerPlan {
            worker: WorkerId::new("g").unwrap(),
            base_version: 4,
            placements: requests
                .iter()
                .zip(devices)
                .enumerate()
                .map(|(i, (r, d))| Placement {
                    request: i,
                    container: r.id.clone(),
                    resources: r.resources,
                    devices: d.clone(),
                })
                .collect(),
        }],
        unplaced: Vec::new(),
    }
}

fn share(index: u32, milli: u32) -> DeviceShare {
    DeviceShare { index, milli }
}

fn verdict(worker: Worker, asks: &[GpuAsk], devices: &[Vec<DeviceShare>]) -> Result<(), String> {
    let snapshot = Snapshot {
        workers: vec![worker],
        pools: Vec::new(),
    };
    let requests: Vec<ContainerRequest> = asks
        .iter()
        .enumerate()
        .map(|(i, &a)| request(i, a))
        .collect();
    verify_plan(&snapshot, &requests, &on_g(&requests, devices))
}

#[test]
fn a_placement_holds_exactly_the_devices_its_request_asks_for() {
    let w = || gpu_worker(&[1000, 1000, 1000], 3);
    let ok = |asks: &[GpuAsk], devices: &[Vec<DeviceShare>]| verdict(w(), asks, devices);
    // What each ask holds.
    assert_eq!(ok(&[GpuAsk::None], &[vec![]]), Ok(()));
    assert_eq!(
        ok(
            &[GpuAsk::Whole(2)],
            &[vec![DeviceShare::whole(0), DeviceShare::whole(2)]]
        ),
        Ok(())
    );
    assert_eq!(ok(&[GpuAsk::Fraction(250)], &[vec![share(1, 250)]]), Ok(()));
    // And what it does not.
    let broken: [(GpuAsk, Vec<DeviceShare>); 9] = [
        (GpuAsk::None, vec![DeviceShare::whole(0)]),
        (GpuAsk::None, vec![share(0, 250)]),
        (GpuAsk::Whole(1), vec![]),
        (
            GpuAsk::Whole(1),
            vec![DeviceShare::whole(0), DeviceShare::whole(1)],
        ),
        (GpuAsk::Whole(2), vec![DeviceShare::whole(0)]),
        (
            GpuAsk::Whole(2),
            vec![DeviceShare::whole(0), DeviceShare::whole(0)],
        ),
        (GpuAsk::Whole(1), vec![share(0, 999)]),
        (GpuAsk::Fraction(250), vec![share(0, 500)]),
        (GpuAsk::Fraction(250), vec![share(0, 250), share(1, 250)]),
    ];
    for (ask, devices) in broken {
        let found = ok(&[ask], std::slice::from_ref(&devices));
        assert!(
            found.as_ref().is_err_and(|e| e.contains("do not match")),
            "{ask:?} with {devices:?}: {found:?}"
        );
    }
    assert!(ok(&[GpuAsk::Fraction(250)], &[vec![]]).is_err());
}

#[test]
fn devices_must_be_free_on_the_worker() {
    // Device 1 has 300 milli-GPUs free, device 2 is not listed.
    let w = || gpu_worker(&[1000, 300], 1);
    assert_eq!(
        verdict(w(), &[GpuAsk::Fraction(300)], &[vec![share(1, 300)]]),
        Ok(())
    );
    for devices in [
        vec![share(1, 301)],
        vec![share(2, 100)],
        vec![DeviceShare::whole(1)],
    ] {
        let ask = if devices[0].is_whole() {
            GpuAsk::Whole(1)
        } else {
            GpuAsk::Fraction(devices[0].milli)
        };
        let found = verdict(w(), &[ask], std::slice::from_ref(&devices));
        assert!(
            found.as_ref().is_err_and(|e| e.contains("are not free")),
            "{devices:?}: {found:?}"
        );
    }
    // Two placements may not book one device beyond its whole.
    assert!(
        verdict(
            w(),
            &[GpuAsk::Fraction(200), GpuAsk::Fraction(200)],
            &[vec![share(1, 200)], vec![share(1, 200)]]
        )
        .is_err()
    );
    assert_eq!(
        verdict(
            w(),
            &[GpuAsk::Fraction(200), GpuAsk::Fraction(100)],
            &[vec![share(1, 200)], vec![share(1, 100)]]
        ),
        Ok(())
    );
}

/// A fraction on a wholly free device takes it from the free GPU count: with a count of one
/// (below the two whole devices listed: the lower of the two is what may be booked), a half
/// GPU on device 0 leaves no whole GPU for a whole-GPU request on device 1.
#[test]
fn a_fraction_breaking_a_whole_device_lowers_the_free_gpu_count() {
    let asks = [GpuAsk::Fraction(500), GpuAsk::Whole(1)];
    let devices = [vec![share(0, 500)], vec![DeviceShare::whole(1)]];
    assert_eq!(
        verdict(gpu_worker(&[1000, 1000, 1000], 2), &asks, &devices),
        Ok(())
    );
    let found = verdict(gpu_worker(&[1000, 1000, 1000], 1), &asks, &devices);
    assert!(found.is_err(), "{found:?}");
    // A fraction on a partly booked device breaks no whole one.
    let devices = [vec![share(2, 500)], vec![DeviceShare::whole(1)]];
    assert_eq!(
        verdict(gpu_worker(&[1000, 1000, 500], 1), &asks, &devices),
        Ok(())
    );
}

/// The free GPU count verify starts from is the lower of the worker's count and its wholly
/// free devices.
#[test]
fn the_free_gpu_count_is_the_lower_of_count_and_wholly_free_devices() {
    // Two whole devices listed, a count of one: one whole GPU at most.
    let found = verdict(
        gpu_worker(&[1000, 1000], 1),
        &[GpuAsk::Whole(2)],
        &[vec![DeviceShare::whole(0), DeviceShare::whole(1)]],
    );
    assert!(found.is_err(), "{found:?}");
    assert_eq!(
        verdict(
            gpu_worker(&[1000, 1000], 2),
            &[GpuAsk::Whole(2)],
            &[vec![DeviceShare::whole(0), DeviceShare::whole(1)]],
        ),
        Ok(())
    );
    // A count of two with one wholly free device: the first broken post-condition is that
    // the request does not fit the free capacity (one GPU), before any device is looked at.
    let found = verdict(
        gpu_worker(&[1000, 500], 2),
        &[GpuAsk::Whole(2)],
        &[vec![DeviceShare::whole(0), DeviceShare::whole(1)]],
    );
    assert!(
        found.as_ref().is_err_and(|e| e.contains("gpu=1 free")),
        "{found:?}"
    );
}

#[test]
fn each_request_is_placed_or_explained_exactly_once() {
    let requests = [request(0, GpuAsk::None)];
    let snapshot = Snapshot {
        workers: vec![gpu_worker(&[1000], 1)],
        pools: Vec::new(),
    };
    let mut plan = on_g(&requests, &[vec![]]);
    assert_eq!(verify_plan(&snapshot, &requests, &plan), Ok(()));
    plan.workers.clear();
    for _ in 0..2 {
        plan.unplaced.push(berth_core::Unplaced {
            request: 0,
            container: requests[0].id.clone(),
            reason: berth_core::UnplacedReason::NoRoomNow,
        });
    }
    let found = verify_plan(&snapshot, &requests, &plan);
    assert!(
        found.as_ref().is_err_and(|e| e.contains("appears twice")),
        "{found:?}"
    );
    plan.unplaced.pop();
    assert_eq!(verify_plan(&snapshot, &requests, &plan), Ok(()));
    plan.unplaced[0].request = 1;
    let found = verify_plan(&snapshot, &requests, &plan);
    assert!(
        found
            .as_ref()
            .is_err_and(|e| e.contains("unknown request index")),
        "{found:?}"
    );
}
