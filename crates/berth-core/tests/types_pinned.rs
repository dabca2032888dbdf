//! The domain types' promises, pinned at their edges: which workers have GPUs, the text forms
//! of statuses, policies, GPU types and resources, the length limits of identifiers and GPU
//! names, and a worker plan's total.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::ids::MAX_ID_LEN;
use berth_core::{
    ContainerId, GpuType, GpuTypeError, IdError, Placement, PlacementPolicy, PoolAttributes,
    PoolName, Resources, RuntimeName, Worker, WorkerId, WorkerPlan, WorkerStatus,
};

fn worker(gpu_type: Option<GpuType>, gpu_count: u32) -> Worker {
    let total = Resources::new(8000, 32 * 1024, gpu_count);
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new("w").unwrap(),
        pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
        status: WorkerStatus::Available,
        total,
        free: total,
        gpu_type,
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

#[test]
fn a_worker_has_gpus_only_with_a_gpu_type_and_at_least_one_gpu() {
    assert!(worker(Some(GpuType::A10G), 1).has_gpus());
    assert!(worker(Some(GpuType::H100), 8).has_gpus());
    assert!(!worker(Some(GpuType::A10G), 0).has_gpus());
    assert!(!worker(None, 0).has_gpus());
    assert!(!worker(None, 4).has_gpus());
}

#[test]
fn a_workers_free_gpus_do_not_decide_whether_it_has_gpus() {
    let mut busy = worker(Some(GpuType::T4), 2);
    busy.free.gpu_count = 0;
    assert!(busy.has_gpus());
}

const STATUSES: [(WorkerStatus, &str); 5] = [
    (WorkerStatus::Available, "available"),
    (WorkerStatus::Pending, "pending"),
    (WorkerStatus::Draining, "draining"),
    (WorkerStatus::Disabled, "disabled"),
    (WorkerStatus::Lost, "lost"),
];

#[test]
fn worker_statuses_are_stored_and_shown_by_their_names() {
    for (status, name) in STATUSES {
        assert_eq!(status.as_str(), name);
        assert_eq!(status.to_string(), name);
        assert_eq!(name.parse::<WorkerStatus>(), Ok(status));
    }
    assert!("busy".parse::<WorkerStatus>().is_err());
}

#[test]
fn only_available_and_pending_workers_accept_work() {
    for (status, _) in STATUSES {
        let expected = matches!(status, WorkerStatus::Available | WorkerStatus::Pending);
        assert_eq!(status.accepts_work(), expected, "{status}");
    }
}

#[test]
fn placement_policies_are_stored_by_their_names() {
    for (policy, name) in [
        (PlacementPolicy::Spread, "spread"),
        (PlacementPolicy::Pack, "pack"),
    ] {
        assert_eq!(policy.as_str(), name);
        assert_eq!(name.parse::<PlacementPolicy>(), Ok(policy));
    }
    assert!("fill".parse::<PlacementPolicy>().is_err());
}

#[test]
fn an_identifier_of_exactly_the_longest_length_is_accepted() {
    let longest = "x".repeat(MAX_ID_LEN);
    assert_eq!(ContainerId::new(longest.clone()).unwrap().as_str(), longest);
    assert_eq!(WorkerId::new(longest.clone()).unwrap().as_str(), longest);
    assert_eq!(PoolName::new(longest.clone()).unwrap().as_str(), longest);
    let one_more = "x".repeat(MAX_ID_LEN + 1);
    assert_eq!(
        WorkerId::new(one_more),
        Err(IdError::TooLong {
            kind: "worker id",
            len: MAX_ID_LEN + 1
        })
    );
}

#[test]
fn short_identifiers_are_accepted() {
    for id in ["a", "w-1", &"y".repeat(MAX_ID_LEN - 1)] {
        assert_eq!(WorkerId::new(id).unwrap().as_str(), id);
    }
}

#[test]
fn a_gpu_type_name_of_exactly_32_characters_is_accepted() {
    let longest = "m".repeat(32);
    assert_eq!(
        longest.parse::<GpuType>(),
        Ok(GpuType::Other(longest.to_ascii_uppercase()))
    );
    // Surrounding spaces are trimmed before the length is checked.
    assert!(format!("  {longest}  ").parse::<GpuType>().is_ok());
    let too_long = "m".repeat(33);
    assert_eq!(
        too_long.parse::<GpuType>(),
        Err(GpuTypeError::TooLong(too_long.clone()))
    );
}

#[test]
fn a_gpu_type_becomes_its_canonical_name_as_a_string() {
    assert_eq!(String::from(GpuType::A100_40), "A100-40");
    assert_eq!(String::from(GpuType::Other("MI300X".into())), "MI300X");
    assert_eq!(
        serde_json::to_string(&GpuType::Rtx4090).unwrap(),
        "\"RTX4090\""
    );
    let back: GpuType = serde_json::from_str("\"a10g\"").unwrap();
    assert_eq!(back, GpuType::A10G);
}

#[test]
fn only_no_resources_at_all_is_zero() {
    assert!(Resources::ZERO.is_zero());
    assert!(Resources::new(0, 0, 0).is_zero());
    assert!(!Resources::new(1, 0, 0).is_zero());
    assert!(!Resources::new(0, 1, 0).is_zero());
    assert!(!Resources::new(0, 0, 1).is_zero());
}

#[test]
fn resources_are_shown_with_their_units() {
    assert_eq!(
        Resources::new(1500, 2048, 1).to_string(),
        "cpu=1500m memory=2048Mi gpu=1"
    );
}

fn placement(container: &str, resources: Resources) -> Placement {
    Placement {
        devices: Vec::new(),
        request: 0,
        container: ContainerId::new(container).unwrap(),
        resources,
    }
}

#[test]
fn a_worker_plans_total_is_the_sum_of_its_placements() {
    let group = WorkerPlan {
        worker: WorkerId::new("w").unwrap(),
        base_version: 1,
        placements: vec![
            placement("a", Resources::new(1000, 512, 0)),
            placement("b", Resources::new(250, 1024, 2)),
        ],
    };
    assert_eq!(group.total(), Some(Resources::new(1250, 1536, 2)));
    let empty = WorkerPlan {
        placements: Vec::new(),
        ..group
    };
    assert_eq!(empty.total(), Some(Resources::ZERO));
}

#[test]
fn a_worker_plans_total_is_none_when_it_overflows() {
    let group = WorkerPlan {
        worker: WorkerId::new("w").unwrap(),
        base_version: 1,
        placements: vec![
            placement("a", Resources::new(u64::MAX, 1, 0)),
            placement("b", Resources::new(1, 1, 0)),
        ],
    };
    assert_eq!(group.total(), None);
}
