//! Fallback chains in the planner: pinned cases, and properties over random fleets,
//! chains and plan times, judged against an oracle that builds each due step's request by
//! hand from the step's wait (not through `berth_core::fallback`).

#![allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.

use berth_core::feasibility::{check, demand_target_at};
use berth_core::{
    ContainerId, ContainerRequest, FallbackStep, GpuPreference, GpuType, Payload, PlacementPolicy,
    Plan, PlanOptions, Pool, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot,
    UnplacedReason, Worker, WorkerId, WorkerStatus, plan_with, verify_plan_at,
};
use proptest::prelude::*;

const POOLS: usize = 3;

fn pool_name(index: usize) -> PoolName {
    PoolName::new(format!("p{index}")).unwrap()
}

fn gpu_type(index: usize) -> GpuType {
    [GpuType::T4, GpuType::A100_80, GpuType::H100][index % 3].clone()
}

fn attributes(pool: usize) -> PoolAttributes {
    PoolAttributes {
        policy: PlacementPolicy::Spread,
        ..PoolAttributes::plain(pool_name(pool))
    }
}

fn worker(index: usize, pool: usize, gpu: usize, free_gpus: u32) -> Worker {
    let total = Resources::new(8000, 16 * 1024, 4);
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new(format!("w{index}")).unwrap(),
        pool: attributes(pool),
        status: WorkerStatus::Available,
        total,
        free: Resources::new(8000, 16 * 1024, free_gpus),
        gpu_type: Some(gpu_type(gpu)),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(gpu: GpuType, selector: Option<usize>, fallback: Vec<FallbackStep>) -> ContainerRequest {
    ContainerRequest {
        id: ContainerId::new("r").unwrap(),
        tenant: "t".into(),
        resources: Resources::new(1000, 1024, 1),
        gpu_fraction_milli: None,
        gpu: GpuPreference::Types(vec![gpu]),
        pool_selector: selector.map(pool_name),
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1_000,
        payload: Payload::default(),
        fallback,
        max_retries: 0,
    }
}

fn gpu_step(after_ms: u64, gpu: GpuType) -> FallbackStep {
    FallbackStep {
        after_ms,
        pool: None,
        gpu: vec![gpu],
    }
}

fn placed_on(plan: &Plan) -> Option<&str> {
    let group = plan.workers.first()?;
    Some(group.worker.as_str())
}

/// The issue's example: A100-80, then H100 after a wait, on a fleet with only H100 free.
#[test]
fn an_h100_is_taken_only_once_its_step_is_due() {
    let snapshot = Snapshot {
        workers: vec![worker(0, 0, 1, 0), worker(1, 0, 2, 4)],
        pools: Vec::new(),
    };
    let r = request(GpuType::A100_80, None, vec![gpu_step(300, GpuType::H100)]);
    let early = plan_with(&snapshot, std::slice::from_ref(&r), PlanOptions::at(1_299));
    assert_eq!(placed_on(&early), None);
    assert_eq!(early.unplaced[0].reason, UnplacedReason::NoRoomNow);
    let due = plan_with(&snapshot, std::slice::from_ref(&r), PlanOptions::at(1_300));
    assert_eq!(placed_on(&due), Some("w1"));
}

/// Once the step is due the first choice still wins where it has room.
#[test]
fn the_first_choice_wins_when_it_has_room() {
    let snapshot = Snapshot {
        workers: vec![worker(0, 0, 2, 4), worker(1, 0, 1, 4)],
        pools: Vec::new(),
    };
    let r = request(GpuType::A100_80, None, vec![gpu_step(300, GpuType::H100)]);
    let plan = plan_with(&snapshot, &[r], PlanOptions::at(10_000));
    assert_eq!(placed_on(&plan), Some("w1"));
}

/// A request whose only hope is a later step waits (no room now) instead of failing, so
/// admission accepts it and the engine defers it.
#[test]
fn a_step_not_yet_due_makes_the_request_wait_not_fail() {
    let snapshot = Snapshot {
        workers: vec![worker(0, 0, 2, 0)],
        pools: Vec::new(),
    };
    let without = request(GpuType::A100_80, None, Vec::new());
    let plan = plan_with(&snapshot, &[without], PlanOptions::at(0));
    assert_eq!(plan.unplaced[0].reason, UnplacedReason::NoMatchingPool);
    let with = request(
        GpuType::A100_80,
        None,
        vec![gpu_step(60_000, GpuType::H100)],
    );
    let plan = plan_with(&snapshot, &[with], PlanOptions::at(0));
    assert_eq!(plan.unplaced[0].reason, UnplacedReason::NoRoomNow);
}

/// A pool's own chain applies to requests that select it, after its wait.
#[test]
fn a_selected_pools_chain_moves_the_request_to_another_pool() {
    let mut snapshot = Snapshot {
        workers: vec![worker(0, 0, 1, 0), worker(1, 1, 1, 4)],
        pools: Vec::new(),
    };
    let r = request(GpuType::A100_80, Some(0), Vec::new());
    let plan = plan_with(&snapshot, std::slice::from_ref(&r), PlanOptions::at(60_000));
    assert_eq!(placed_on(&plan), None);
    snapshot.pools.push(Pool {
        attributes: attributes(0),
        gpu_type: Some(GpuType::A100_80),
        worker_size: Resources::new(8000, 16 * 1024, 4),
        fallback: vec![FallbackStep {
            after_ms: 30_000,
            pool: Some(pool_name(1)),
            gpu: Vec::new(),
        }],
    });
    let early = plan_with(&snapshot, std::slice::from_ref(&r), PlanOptions::at(30_999));
    assert_eq!(placed_on(&early), None);
    let due = plan_with(&snapshot, &[r], PlanOptions::at(31_000));
    assert_eq!(placed_on(&due), Some("w1"));
}

/// Unmet demand names the pool of the most preferred choice accepted by now: a step's
/// pool only once the step is due, and the request's own pool first when it could grow.
#[test]
fn demand_names_the_best_pool_accepted_by_now() {
    let grows = |pool: usize| Pool {
        attributes: attributes(pool),
        gpu_type: Some(GpuType::A100_80),
        worker_size: Resources::new(8000, 16 * 1024, 4),
        fallback: Vec::new(),
    };
    let mut snapshot = Snapshot {
        workers: Vec::new(),
        pools: vec![grows(1)],
    };
    let step = FallbackStep {
        after_ms: 300,
        pool: Some(pool_name(1)),
        gpu: Vec::new(),
    };
    let r = request(GpuType::A100_80, Some(0), vec![step]);
    assert_eq!(demand_target_at(&snapshot, &r, 299), None);
    let due = demand_target_at(&snapshot, &r, 300).map(|(pool, _)| pool);
    assert_eq!(due, Some(pool_name(1)));
    snapshot.pools.push(grows(0));
    let own = demand_target_at(&snapshot, &r, 300).map(|(pool, _)| pool);
    assert_eq!(own, Some(pool_name(0)));
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn fleet() -> impl Strategy<Value = Snapshot> {
    let worker_spec = (0..POOLS, 0usize..3, 0u32..=4);
    let pool_chain = prop::collection::vec(prop::option::of(step()), POOLS);
    (prop::collection::vec(worker_spec, 1..=12), pool_chain).prop_map(|(specs, chains)| {
        let workers = specs
            .into_iter()
            .enumerate()
            .map(|(i, (pool, gpu, free))| worker(i, pool, gpu, free))
            .collect();
        let pools = chains
            .into_iter()
            .enumerate()
            .map(|(index, step)| Pool {
                attributes: attributes(index),
                gpu_type: None,
                // Too small for any request: pools here only carry chains.
                worker_size: Resources::new(1, 1, 0),
                fallback: step.into_iter().collect(),
            })
            .collect();
        Snapshot { workers, pools }
    })
}

fn step() -> impl Strategy<Value = FallbackStep> {
    (
        0u64..2_000,
        prop::option::of(0..POOLS),
        prop::collection::vec(0usize..3, 0..=2),
    )
        .prop_map(|(after_ms, pool, types)| FallbackStep {
            after_ms,
            pool: pool.map(pool_name),
            gpu: types.into_iter().map(gpu_type).collect(),
        })
        .prop_filter("a step names something", |s| {
            s.pool.is_some() || !s.gpu.is_empty()
        })
}

fn chained_request() -> impl Strategy<Value = ContainerRequest> {
    (
        0usize..3,
        prop::option::of(0..POOLS),
        prop::collection::vec(step(), 0..=3),
    )
        .prop_map(|(gpu, selector, mut steps)| {
            // Waits strictly increasing, as validation requires.
            steps.sort_by_key(|s| s.after_ms);
            steps.dedup_by_key(|s| s.after_ms);
            request(gpu_type(gpu), selector, steps)
        })
}

/// The request as each choice due at `now_ms` has it, in preference order, built by hand.
fn due_requests(snapshot: &Snapshot, r: &ContainerRequest, now_ms: u64) -> Vec<ContainerRequest> {
    let waited = now_ms.saturating_sub(r.submitted_at_ms);
    let pool_steps = snapshot
        .pools
        .iter()
        .filter(|p| Some(&p.attributes.pool) == r.pool_selector.as_ref())
        .flat_map(|p| p.fallback.iter());
    let mut steps: Vec<&FallbackStep> = r.fallback.iter().chain(pool_steps).collect();
    steps.sort_by_key(|s| s.after_ms);
    let mut out = vec![ContainerRequest {
        fallback: Vec::new(),
        ..r.clone()
    }];
    for s in steps.into_iter().filter(|s| s.after_ms <= waited) {
        out.push(ContainerRequest {
            pool_selector: s.pool.clone().or_else(|| r.pool_selector.clone()),
            gpu: if s.gpu.is_empty() {
                r.gpu.clone()
            } else {
                GpuPreference::Types(s.gpu.clone())
            },
            fallback: Vec::new(),
            ..r.clone()
        });
    }
    out
}

fn accepts(snapshot: &Snapshot, r: &ContainerRequest, worker: &str) -> bool {
    snapshot
        .workers
        .iter()
        .any(|w| w.id.as_str() == worker && check(w, &w.free, r).is_ok())
}

fn anyone_accepts(snapshot: &Snapshot, r: &ContainerRequest) -> bool {
    snapshot
        .workers
        .iter()
        .any(|w| check(w, &w.free, r).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A placement is on a worker of the first due choice that has a worker with room:
    /// so never by a step before its wait, never by a later step while an earlier choice
    /// has room, and never on a worker no listed pool or type allows.
    #[test]
    fn placements_use_the_first_due_choice_with_room(
        snapshot in fleet(),
        r in chained_request(),
        now_ms in 0u64..4_000,
    ) {
        let plan = plan_with(&snapshot, std::slice::from_ref(&r), PlanOptions::at(now_ms));
        prop_assert_eq!(verify_plan_at(&snapshot, std::slice::from_ref(&r), &plan, now_ms), Ok(()));
        let due = due_requests(&snapshot, &r, now_ms);
        let first_with_room = due.iter().find(|d| anyone_accepts(&snapshot, d));
        match (placed_on(&plan), first_with_room) {
            (Some(worker), Some(choice)) => prop_assert!(accepts(&snapshot, choice, worker)),
            (None, None) => {}
            (placed, expected) => prop_assert!(false, "placed {placed:?}, a choice with room: {}", expected.is_some()),
        }
    }

    /// Where the request's own choice has room, a chain changes nothing: the same worker.
    #[test]
    fn a_chain_never_moves_a_request_its_own_choice_places(
        snapshot in fleet(),
        r in chained_request(),
        now_ms in 0u64..4_000,
    ) {
        let bare = ContainerRequest { fallback: Vec::new(), ..r.clone() };
        let mut no_pool_chains = snapshot.clone();
        for pool in &mut no_pool_chains.pools {
            pool.fallback.clear();
        }
        let without = plan_with(&no_pool_chains, &[bare], PlanOptions::at(now_ms));
        let with = plan_with(&snapshot, &[r], PlanOptions::at(now_ms));
        if let Some(worker) = placed_on(&without) {
            prop_assert_eq!(placed_on(&with), Some(worker));
        }
    }
}
