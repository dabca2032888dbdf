//! One test (or a few) per placement rule, through the public API only.

#![allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.

use berth_core::request::MAX_CPU_MILLICORES;
use berth_core::scoring::affinity;
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, GpuType, Payload, PlacementPolicy, Plan,
    PlanOptions, Pool, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, UnplacedReason,
    Worker, WorkerId, WorkerStatus, plan, plan_with, verify_plan,
};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

const GIB: u64 = 1024;

/// Pool attributes: priority 0, not preemptible, no selector required, spread.
fn pool(name: &str) -> PoolAttributes {
    PoolAttributes::plain(PoolName::new(name).unwrap())
}

trait PoolExt {
    fn priority(self, priority: i32) -> Self;
    fn preemptible(self) -> Self;
    fn requires_selector(self) -> Self;
    fn pack(self) -> Self;
}

impl PoolExt for PoolAttributes {
    fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    fn preemptible(mut self) -> Self {
        self.preemptible = true;
        self
    }
    fn requires_selector(mut self) -> Self {
        self.requires_pool_selector = true;
        self
    }
    fn pack(mut self) -> Self {
        self.policy = PlacementPolicy::Pack;
        self
    }
}

/// An available CPU worker of 16 cores and 64 GiB, all free, in pool `default`.
fn worker(id: &str) -> Worker {
    let total = Resources::new(16_000, 64 * GIB, 0);
    Worker {
        images: Vec::new(),
        gpus: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool: pool("default"),
        status: WorkerStatus::Available,
        total,
        free: total,
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
        version: 7,
        epoch: 1,
    }
}

/// An available GPU worker with `count` GPUs of type `ty`, in pool `gpu`.
fn gpu_worker(id: &str, ty: GpuType, count: u32) -> Worker {
    worker(id)
        .in_pool(pool("gpu"))
        .gpus(ty, count)
        .total(Resources::new(32_000, 256 * GIB, count))
}

trait WorkerExt {
    fn in_pool(self, attributes: PoolAttributes) -> Self;
    fn gpus(self, ty: GpuType, count: u32) -> Self;
    /// Sets total and free.
    fn total(self, total: Resources) -> Self;
    fn free(self, free: Resources) -> Self;
    fn status(self, status: WorkerStatus) -> Self;
}

impl WorkerExt for Worker {
    fn in_pool(mut self, attributes: PoolAttributes) -> Self {
        self.pool = attributes;
        self
    }
    fn gpus(mut self, ty: GpuType, count: u32) -> Self {
        self.gpu_type = Some(ty);
        self.total.gpu_count = count;
        self.free.gpu_count = count;
        self
    }
    fn total(mut self, total: Resources) -> Self {
        self.total = total;
        self.free = total;
        self
    }
    fn free(mut self, free: Resources) -> Self {
        self.free = free;
        self
    }
    fn status(mut self, status: WorkerStatus) -> Self {
        self.status = status;
        self
    }
}

/// A CPU request of 1000m and 1 GiB, priority 0, submitted at 1000 ms.
fn req(id: &str) -> ContainerRequest {
    ContainerRequest {
        gpu_fraction_milli: None,
        id: ContainerId::new(id).unwrap(),
        tenant: "tenant".into(),
        resources: Resources::new(1000, GIB, 0),
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: 1000,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

trait RequestExt {
    fn res(self, cpu: u64, memory: u64, gpus: u32) -> Self;
    fn gpus(self, count: u32, types: &[GpuType]) -> Self;
    fn any_gpu(self, count: u32) -> Self;
    fn selector(self, pool: &str) -> Self;
    fn preemptible(self) -> Self;
    fn priority(self, priority: i32) -> Self;
    fn at(self, submitted_at_ms: u64) -> Self;
}

impl RequestExt for ContainerRequest {
    fn res(mut self, cpu: u64, memory: u64, gpus: u32) -> Self {
        self.resources = Resources::new(cpu, memory, gpus);
        self
    }
    fn gpus(mut self, count: u32, types: &[GpuType]) -> Self {
        self.resources.gpu_count = count;
        self.gpu = GpuPreference::Types(types.to_vec());
        self
    }
    fn any_gpu(mut self, count: u32) -> Self {
        self.resources.gpu_count = count;
        self.gpu = GpuPreference::Any;
        self
    }
    fn selector(mut self, pool: &str) -> Self {
        self.pool_selector = Some(PoolName::new(pool).unwrap());
        self
    }
    fn preemptible(mut self) -> Self {
        self.preemptible = true;
        self
    }
    fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    fn at(mut self, submitted_at_ms: u64) -> Self {
        self.submitted_at_ms = submitted_at_ms;
        self
    }
}

fn snap(workers: Vec<Worker>) -> Snapshot {
    Snapshot {
        workers,
        pools: Vec::new(),
    }
}

/// Plans and checks the post-conditions.
fn run(snapshot: &Snapshot, requests: &[ContainerRequest]) -> Plan {
    let plan = plan(snapshot, requests);
    verify_plan(snapshot, requests, &plan).unwrap();
    plan
}

/// The worker a container was placed on, if any.
fn placed_on(plan: &Plan, container: &str) -> Option<String> {
    plan.workers
        .iter()
        .find(|w| {
            w.placements
                .iter()
                .any(|p| p.container.as_str() == container)
        })
        .map(|w| w.worker.to_string())
}

/// Why a container was not placed, if it was not.
fn reason(plan: &Plan, container: &str) -> Option<UnplacedReason> {
    plan.unplaced
        .iter()
        .find(|u| u.container.as_str() == container)
        .map(|u| u.reason.clone())
}

/// Number of placements per worker id.
fn counts(plan: &Plan) -> BTreeMap<String, usize> {
    plan.workers
        .iter()
        .map(|w| (w.worker.to_string(), w.placements.len()))
        .collect()
}

/// The set of (container, worker) pairs of a plan.
fn pairs(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.workers
        .iter()
        .flat_map(|w| {
            w.placements
                .iter()
                .map(|p| (p.container.to_string(), w.worker.to_string()))
        })
        .collect()
}

/// A deterministic Fisher-Yates shuffle (xorshift64), so tests need no RNG crate.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
}

// ---------------------------------------------------------------------------------------
// GPU type rules
// ---------------------------------------------------------------------------------------

#[test]
fn gpu_fallback_prefers_the_first_type_with_room() {
    let request = req("c1").gpus(1, &[GpuType::H100, GpuType::A100_80]);
    // Listed A100 first in the snapshot so that snapshot order cannot be what decides.
    let fleet = vec![
        gpu_worker("a100", GpuType::A100_80, 1),
        gpu_worker("h100", GpuType::H100, 1),
    ];
    let plan = run(&snap(fleet.clone()), std::slice::from_ref(&request));
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("h100"));

    // The H100 is full: fall back to the A100-80.
    let mut full = fleet.clone();
    full[1].free.gpu_count = 0;
    let plan = run(&snap(full), std::slice::from_ref(&request));
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("a100"));

    // Within one batch: the first request takes the H100, the second falls back.
    let batch = [
        request.clone(),
        req("c2")
            .gpus(1, &[GpuType::H100, GpuType::A100_80])
            .at(2000),
    ];
    let plan = run(&snap(fleet), &batch);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("h100"));
    assert_eq!(placed_on(&plan, "c2").as_deref(), Some("a100"));
}

#[test]
fn gpu_preference_outranks_policy_fit() {
    // The A100 has far more room, yet the H100 is preferred by the request.
    let fleet = vec![
        gpu_worker("a100", GpuType::A100_80, 8),
        gpu_worker("h100", GpuType::H100, 8).free(Resources::new(2000, 4 * GIB, 1)),
    ];
    let request = req("c1").gpus(1, &[GpuType::H100, GpuType::A100_80]);
    let plan = run(&snap(fleet), &[request]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("h100"));
}

#[test]
fn gpu_types_not_listed_are_never_used() {
    let fleet = vec![gpu_worker("t4", GpuType::T4, 4)];
    let request = req("c1").gpus(1, &[GpuType::H100, GpuType::A100_80]);
    let plan = run(&snap(fleet), &[request]);
    assert_eq!(placed_on(&plan, "c1"), None);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));
}

#[test]
fn any_gpu_takes_any_type() {
    for ty in [GpuType::T4, GpuType::H100, "mi300x".parse().unwrap()] {
        let fleet = vec![worker("cpu"), gpu_worker("gpu", ty, 2)];
        let plan = run(&snap(fleet), &[req("c1").any_gpu(2)]);
        assert_eq!(placed_on(&plan, "c1").as_deref(), Some("gpu"));
    }
}

#[test]
fn gpu_requests_need_enough_free_gpus_and_never_go_to_cpu_workers() {
    let fleet = vec![
        worker("cpu"),
        gpu_worker("gpu", GpuType::A10G, 4).free(Resources::new(32_000, 256 * GIB, 1)),
    ];
    let plan = run(&snap(fleet), &[req("c1").any_gpu(2)]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoRoomNow));

    let plan = run(&snap(vec![worker("cpu")]), &[req("c1").any_gpu(1)]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));
}

#[test]
fn cpu_requests_stay_off_gpu_workers() {
    // The GPU worker has a higher priority and more room; the CPU request still avoids it.
    let fleet = vec![
        gpu_worker("gpu", GpuType::T4, 4).in_pool(pool("gpu").priority(100)),
        worker("cpu").free(Resources::new(1000, GIB, 0)),
    ];
    let plan = run(&snap(fleet.clone()), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("cpu"));

    // With only GPU workers the request has nowhere to go.
    let plan = run(&snap(vec![fleet[0].clone()]), &[req("c1")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));
}

#[test]
fn a_gpu_type_with_zero_gpus_is_a_cpu_worker() {
    let odd = worker("odd").gpus(GpuType::T4, 0);
    let plan = run(&snap(vec![odd]), &[req("cpu"), req("gpu").any_gpu(1)]);
    assert_eq!(placed_on(&plan, "cpu").as_deref(), Some("odd"));
    assert_eq!(reason(&plan, "gpu"), Some(UnplacedReason::NoMatchingPool));
}

// ---------------------------------------------------------------------------------------
// Pool selector and preemptibility
// ---------------------------------------------------------------------------------------

#[test]
fn pool_selector_required() {
    let private = worker("private").in_pool(pool("private").requires_selector().priority(50));
    let public = worker("public").in_pool(pool("public"));

    // Without a selector: never on the private pool, even if it is the better one.
    let plan = run(&snap(vec![private.clone(), public.clone()]), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("public"));
    let plan = run(&snap(vec![private.clone()]), &[req("c1")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));

    // With the selector it goes there.
    let plan = run(
        &snap(vec![public, private]),
        &[req("c1").selector("private")],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("private"));
}

#[test]
fn pool_selector_forbids_other_pools() {
    let a = worker("wa").in_pool(pool("a"));
    let b = worker("wb").in_pool(pool("b").priority(100));

    // Selector for A with pools A and B: A, even though B has a higher priority.
    let plan = run(
        &snap(vec![b.clone(), a.clone()]),
        &[req("c1").selector("a")],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("wa"));

    // Selector for A with only B: never placed.
    let plan = run(&snap(vec![b.clone()]), &[req("c1").selector("a")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));

    // Selector for A, A full, B empty: waits for A.
    let full_a = a.free(Resources::ZERO);
    let plan = run(&snap(vec![full_a, b]), &[req("c1").selector("a")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoRoomNow));
}

#[test]
fn preemptible_workers_only_take_preemptible_requests() {
    let spot = worker("spot").in_pool(pool("spot").preemptible().priority(10));
    let on_demand = worker("on-demand").in_pool(pool("on-demand"));

    // Non-preemptible: never on the preemptible worker.
    let plan = run(&snap(vec![spot.clone(), on_demand.clone()]), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("on-demand"));
    let plan = run(&snap(vec![spot.clone()]), &[req("c1")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));

    // Preemptible: may go there (here it is the higher-priority pool, so it does).
    let plan = run(
        &snap(vec![on_demand.clone(), spot]),
        &[req("c1").preemptible()],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("spot"));
    // And a preemptible request may still use non-preemptible workers.
    let plan = run(&snap(vec![on_demand]), &[req("c1").preemptible()]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("on-demand"));
}

// ---------------------------------------------------------------------------------------
// Ordering of requests
// ---------------------------------------------------------------------------------------

#[test]
fn higher_priority_wins_regardless_of_input_order() {
    let fleet = snap(vec![worker("w").free(Resources::new(1000, GIB, 0))]);
    // The low-priority request is older and has the smaller id: priority still wins.
    let low = req("a-low").priority(0).at(1);
    let high = req("z-high").priority(5).at(9_999);
    for batch in [[low.clone(), high.clone()], [high.clone(), low.clone()]] {
        let plan = run(&fleet, &batch);
        assert_eq!(placed_on(&plan, "z-high").as_deref(), Some("w"));
        assert_eq!(reason(&plan, "a-low"), Some(UnplacedReason::NoRoomNow));
    }
}

#[test]
fn equal_priority_older_wins() {
    let fleet = snap(vec![worker("w").free(Resources::new(1000, GIB, 0))]);
    let old = req("z-old").at(100);
    let new = req("a-new").at(200);
    for batch in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
        let plan = run(&fleet, &batch);
        assert_eq!(placed_on(&plan, "z-old").as_deref(), Some("w"));
        assert_eq!(reason(&plan, "a-new"), Some(UnplacedReason::NoRoomNow));
    }
}

#[test]
fn equal_priority_and_age_smaller_id_wins() {
    let fleet = snap(vec![worker("w").free(Resources::new(1000, GIB, 0))]);
    let batch = [req("b"), req("a")];
    let plan = run(&fleet, &batch);
    assert_eq!(placed_on(&plan, "a").as_deref(), Some("w"));
    assert_eq!(reason(&plan, "b"), Some(UnplacedReason::NoRoomNow));
}

#[test]
fn planning_order_is_priority_then_age_then_id() {
    let batch = [
        req("c").at(5),
        req("b").priority(1).at(9),
        req("a").at(5),
        req("d").at(1),
        req("e").priority(-1).at(0),
    ];
    let order: Vec<&str> = berth_core::planning_order(&batch)
        .into_iter()
        .map(|i| batch[i].id.as_str())
        .collect();
    assert_eq!(order, ["b", "d", "a", "c", "e"]);
}

// ---------------------------------------------------------------------------------------
// Scoring of workers
// ---------------------------------------------------------------------------------------

#[test]
fn higher_priority_pool_preferred() {
    // The high-priority worker is nearly full; spread alone would pick the empty one.
    let low = worker("low").in_pool(pool("low").priority(0));
    let high = worker("high")
        .in_pool(pool("high").priority(10))
        .free(Resources::new(1000, GIB, 0));
    let plan = run(
        &snap(vec![low.clone(), high.clone()]),
        &[req("c1"), req("c2").at(2000)],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("high"));
    // Once the high-priority pool is full, the next request goes to the low one.
    assert_eq!(placed_on(&plan, "c2").as_deref(), Some("low"));

    // Negative priorities are below zero.
    let neg = worker("neg").in_pool(pool("neg").priority(-5));
    let plan = run(&snap(vec![neg, low]), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("low"));
}

#[test]
fn available_preferred_over_pending() {
    // The pending worker has far more room; available still wins.
    let pending = worker("pending").status(WorkerStatus::Pending);
    let available = worker("available").free(Resources::new(1000, GIB, 0));
    let plan = run(
        &snap(vec![pending, available]),
        &[req("c1"), req("c2").at(2000)],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("available"));
    // Pending workers still take work once the available ones are full.
    assert_eq!(placed_on(&plan, "c2").as_deref(), Some("pending"));
}

#[test]
fn pool_priority_outranks_availability() {
    let pending_high = worker("pending-high")
        .in_pool(pool("high").priority(1))
        .status(WorkerStatus::Pending);
    let available_low = worker("available-low");
    let plan = run(&snap(vec![available_low, pending_high]), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("pending-high"));
}

#[test]
fn disabled_and_draining_workers_are_skipped() {
    let disabled = worker("disabled").status(WorkerStatus::Disabled);
    let draining = worker("draining")
        .in_pool(pool("big").priority(100))
        .status(WorkerStatus::Draining);
    let small = worker("small").free(Resources::new(2000, 2 * GIB, 0));
    let batch = [req("c1"), req("c2").at(2000), req("c3").at(3000)];
    let plan = run(
        &snap(vec![disabled.clone(), draining.clone(), small]),
        &batch,
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("small"));
    assert_eq!(placed_on(&plan, "c2").as_deref(), Some("small"));
    // They match the request, so waiting may help (they may come back).
    assert_eq!(reason(&plan, "c3"), Some(UnplacedReason::NoRoomNow));
    assert!(counts(&plan).keys().all(|w| w == "small"));

    let plan = run(&snap(vec![disabled, draining]), &[req("c1")]);
    assert_eq!(plan.placed(), 0);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoRoomNow));
}

#[test]
fn exact_fit_is_placed() {
    let free = Resources::new(1500, 3 * GIB, 2);
    let fleet = vec![gpu_worker("w", GpuType::L4, 4).free(free)];
    let request = req("c1").res(1500, 3 * GIB, 0).any_gpu(2);
    let plan = run(&snap(fleet.clone()), std::slice::from_ref(&request));
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("w"));
    assert_eq!(plan.workers[0].total(), Some(free));

    // One more of anything does not fit.
    for bigger in [
        req("c1").res(1501, 3 * GIB, 0).any_gpu(2),
        req("c1").res(1500, 3 * GIB + 1, 0).any_gpu(2),
        req("c1").res(1500, 3 * GIB, 0).any_gpu(3),
    ] {
        let plan = run(&snap(fleet.clone()), &[bigger]);
        assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoRoomNow));
    }

    // A whole empty worker for one request.
    let plan = run(
        &snap(vec![worker("w")]),
        &[req("c1").res(16_000, 64 * GIB, 0)],
    );
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("w"));
}

#[test]
fn spread_distributes_evenly() {
    let fleet: Vec<Worker> = (0..20).map(|i| worker(&format!("w{i:02}"))).collect();
    let batch: Vec<ContainerRequest> = (0..100).map(|i| req(&format!("c{i:03}"))).collect();
    let plan = run(&snap(fleet), &batch);
    assert_eq!(plan.placed(), 100);
    let counts = counts(&plan);
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&n| n == 5), "{counts:?}");
}

#[test]
fn pack_fills_one_worker_before_the_next() {
    // Each worker holds exactly 4 requests of 4 cores.
    let packed = pool("packed").pack();
    let fleet: Vec<Worker> = (0..5)
        .map(|i| worker(&format!("w{i}")).in_pool(packed.clone()))
        .collect();
    let batch: Vec<ContainerRequest> = (0..10)
        .map(|i| req(&format!("c{i:02}")).res(4000, 4 * GIB, 0).at(i))
        .collect();
    let plan = run(&snap(fleet.clone()), &batch);
    assert_eq!(plan.placed(), 10);
    let mut sizes: Vec<usize> = counts(&plan).into_values().collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 4, 4]);
    // In planning order, the first four share a worker, and so do the next four.
    let first = placed_on(&plan, "c00").unwrap();
    assert!((1..4).all(|i| placed_on(&plan, &format!("c{i:02}")).unwrap() == first));
    let second = placed_on(&plan, "c04").unwrap();
    assert_ne!(first, second);
    assert!((5..8).all(|i| placed_on(&plan, &format!("c{i:02}")).unwrap() == second));

    // Pack prefers an already busy worker over an empty one.
    let mut fleet = fleet;
    fleet[3].free = Resources::new(8000, 32 * GIB, 0);
    let plan = run(&snap(fleet), &[req("c1").res(4000, 4 * GIB, 0)]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("w3"));
}

#[test]
fn spread_prefers_the_emptiest_worker() {
    let fleet = vec![
        worker("half").free(Resources::new(8000, 32 * GIB, 0)),
        worker("empty"),
        worker("quarter").free(Resources::new(4000, 64 * GIB, 0)),
    ];
    let plan = run(&snap(fleet), &[req("c1")]);
    assert_eq!(placed_on(&plan, "c1").as_deref(), Some("empty"));
}

#[test]
fn policy_is_per_pool() {
    // Two workers of one pool, one empty and one half full: spread sends everything to the
    // empty one (it still has the most room after four), pack to the half-full one.
    let spread_a = worker("spread-a").in_pool(pool("s"));
    let spread_b = worker("spread-b")
        .in_pool(pool("s"))
        .free(Resources::new(8000, 32 * GIB, 0));
    let batch: Vec<ContainerRequest> = (0..4).map(|i| req(&format!("c{i}")).at(i)).collect();
    let plan = run(&snap(vec![spread_a, spread_b]), &batch);
    assert_eq!(counts(&plan).get("spread-a"), Some(&4));

    let pack_a = worker("pack-a").in_pool(pool("p").pack());
    let pack_b = worker("pack-b")
        .in_pool(pool("p").pack())
        .free(Resources::new(8000, 32 * GIB, 0));
    let plan = run(&snap(vec![pack_a, pack_b]), &batch);
    assert_eq!(counts(&plan).get("pack-b"), Some(&4));
}

// ---------------------------------------------------------------------------------------
// Invalid, absurd and unplaceable requests
// ---------------------------------------------------------------------------------------

#[test]
fn zero_sized_requests_are_invalid() {
    let fleet = snap(vec![worker("w")]);
    let plan = run(
        &fleet,
        &[req("no-cpu").res(0, GIB, 0), req("no-mem").res(1000, 0, 0)],
    );
    assert_eq!(plan.placed(), 0);
    for (id, word) in [("no-cpu", "cpu"), ("no-mem", "memory")] {
        match reason(&plan, id) {
            Some(UnplacedReason::Invalid(message)) => {
                let lower = message.to_lowercase();
                assert!(lower.contains(word), "{message}");
                assert!(
                    lower.contains("cpu") && lower.contains("memory"),
                    "{message}"
                );
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(!UnplacedReason::Invalid(String::new()).is_retryable());
}

#[test]
fn malformed_gpu_preferences_are_invalid() {
    let fleet = snap(vec![gpu_worker("g", GpuType::T4, 1)]);
    let types_without_count = req("a").gpus(0, &[GpuType::T4]);
    let empty_list = req("b").gpus(1, &[]);
    let plan = run(&fleet, &[types_without_count, empty_list]);
    assert!(matches!(
        reason(&plan, "a"),
        Some(UnplacedReason::Invalid(_))
    ));
    assert!(matches!(
        reason(&plan, "b"),
        Some(UnplacedReason::Invalid(_))
    ));
}

#[test]
fn absurd_requests() {
    let gpu_pool = Pool {
        attributes: pool("gpu"),
        gpu_type: Some(GpuType::H100),
        worker_size: Resources::new(96_000, 1024 * GIB, 8),
        fallback: Vec::new(),
    };
    let fleet = Snapshot {
        workers: vec![worker("cpu"), gpu_worker("gpu", GpuType::H100, 8)],
        pools: vec![gpu_pool],
    };
    let batch = [
        req("many-gpus").any_gpu(10_000),
        req("huge-cpu").res(MAX_CPU_MILLICORES + 1, GIB, 0),
        req("huge-but-valid").res(MAX_CPU_MILLICORES, GIB, 0),
    ];
    let plan = run(&fleet, &batch);
    assert_eq!(plan.placed(), 0);
    assert_eq!(reason(&plan, "many-gpus"), Some(UnplacedReason::NeverFits));
    match reason(&plan, "huge-cpu") {
        Some(UnplacedReason::Invalid(message)) => assert!(message.contains("cpu"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reason(&plan, "huge-but-valid"),
        Some(UnplacedReason::NeverFits)
    );
    assert!(!UnplacedReason::NeverFits.is_retryable());
}

#[test]
fn unplaced_classification() {
    let cpu_pool = Pool {
        attributes: pool("default"),
        gpu_type: None,
        worker_size: Resources::new(64_000, 256 * GIB, 0),
        fallback: Vec::new(),
    };
    let gpu_pool_without_workers = Pool {
        attributes: pool("a100s"),
        gpu_type: Some(GpuType::A100_80),
        worker_size: Resources::new(32_000, 256 * GIB, 8),
        fallback: Vec::new(),
    };
    let busy = worker("busy").free(Resources::new(500, GIB, 0));
    let no_pools = snap(vec![busy.clone()]);
    let with_pools = Snapshot {
        workers: vec![busy],
        pools: vec![cpu_pool, gpu_pool_without_workers],
    };

    let batch = [
        // Fits the worker's total, not its free capacity.
        req("no-room").res(2000, GIB, 0),
        // Larger than any worker, but a new worker of the pool would hold it.
        req("grow").res(32_000, 128 * GIB, 0),
        // Larger than every worker and every pool's worker size.
        req("never").res(128_000, GIB, 0),
        // Nothing has an H100.
        req("no-match").gpus(1, &[GpuType::H100]),
        // No A100 worker yet, but the A100 pool could add one.
        req("pool-only").gpus(4, &[GpuType::H100, GpuType::A100_80]),
        // The A100 pool's workers have 8 GPUs.
        req("pool-too-small").gpus(9, &[GpuType::A100_80]),
        // A selector for a pool that does not exist.
        req("no-pool").selector("nowhere"),
    ];
    let plan = run(&no_pools, &batch);
    assert_eq!(reason(&plan, "no-room"), Some(UnplacedReason::NoRoomNow));
    assert_eq!(reason(&plan, "grow"), Some(UnplacedReason::NeverFits));
    assert_eq!(reason(&plan, "never"), Some(UnplacedReason::NeverFits));
    assert_eq!(
        reason(&plan, "no-match"),
        Some(UnplacedReason::NoMatchingPool)
    );
    assert_eq!(
        reason(&plan, "pool-only"),
        Some(UnplacedReason::NoMatchingPool)
    );
    assert_eq!(
        reason(&plan, "pool-too-small"),
        Some(UnplacedReason::NoMatchingPool)
    );
    assert_eq!(
        reason(&plan, "no-pool"),
        Some(UnplacedReason::NoMatchingPool)
    );

    let plan = run(&with_pools, &batch);
    assert_eq!(reason(&plan, "no-room"), Some(UnplacedReason::NoRoomNow));
    assert_eq!(reason(&plan, "grow"), Some(UnplacedReason::NoRoomNow));
    assert_eq!(reason(&plan, "never"), Some(UnplacedReason::NeverFits));
    assert_eq!(
        reason(&plan, "no-match"),
        Some(UnplacedReason::NoMatchingPool)
    );
    assert_eq!(reason(&plan, "pool-only"), Some(UnplacedReason::NoRoomNow));
    assert_eq!(
        reason(&plan, "pool-too-small"),
        Some(UnplacedReason::NeverFits)
    );
    assert_eq!(
        reason(&plan, "no-pool"),
        Some(UnplacedReason::NoMatchingPool)
    );
    assert!(UnplacedReason::NoRoomNow.is_retryable());
    assert!(!UnplacedReason::NoMatchingPool.is_retryable());
}

#[test]
fn empty_inputs() {
    let plan = run(&Snapshot::default(), &[]);
    assert_eq!(plan, Plan::default());
    let plan = run(&Snapshot::default(), &[req("c1")]);
    assert_eq!(reason(&plan, "c1"), Some(UnplacedReason::NoMatchingPool));
    let plan = run(&snap(vec![worker("w")]), &[]);
    assert_eq!(plan, Plan::default());
}

// ---------------------------------------------------------------------------------------
// Plan shape, purity and determinism
// ---------------------------------------------------------------------------------------

#[test]
fn plan_shape() {
    let fleet = snap(vec![
        worker("w0").free(Resources::new(1000, GIB, 0)),
        worker("w1").free(Resources::new(2000, 2 * GIB, 0)),
        worker("w2").free(Resources::ZERO),
    ]);
    let batch = [
        req("c3").at(3),
        req("c0").at(0),
        req("c2").at(2),
        req("c1").at(1),
    ];
    let plan = run(&fleet, &batch);
    // Groups follow the snapshot's worker order and carry its version.
    let ids: Vec<&str> = plan.workers.iter().map(|w| w.worker.as_str()).collect();
    assert_eq!(ids, ["w0", "w1"]);
    assert!(plan.workers.iter().all(|w| w.base_version == 7));
    // Placements carry the request's index and resources, in planning order.
    for group in &plan.workers {
        let mut last = 0;
        for p in &group.placements {
            assert_eq!(batch[p.request].id, p.container);
            assert_eq!(batch[p.request].resources, p.resources);
            assert!(batch[p.request].submitted_at_ms >= last);
            last = batch[p.request].submitted_at_ms;
        }
    }
    assert_eq!(plan.placed(), 3);
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.unplaced[0].container.as_str(), "c3");
    assert_eq!(plan.unplaced[0].request, 0);
}

#[test]
fn snapshot_is_not_mutated() {
    let fleet = Snapshot {
        workers: vec![
            worker("w0").in_pool(pool("low").priority(-1)),
            worker("w1").in_pool(pool("high").priority(3).pack()),
            gpu_worker("g0", GpuType::H100, 4),
        ],
        pools: vec![Pool {
            attributes: pool("default"),
            gpu_type: None,
            worker_size: Resources::new(16_000, 64 * GIB, 0),
            fallback: Vec::new(),
        }],
    };
    let before = fleet.clone();
    let batch: Vec<ContainerRequest> = (0..40)
        .map(|i| {
            let r = req(&format!("c{i}")).at(i);
            if i % 4 == 0 { r.any_gpu(1) } else { r }
        })
        .collect();
    let plan = run(&fleet, &batch);
    assert!(plan.placed() > 0);
    assert_eq!(fleet, before);
}

fn mixed_fleet() -> Snapshot {
    let mut workers = Vec::new();
    for i in 0..30 {
        let w = match i % 5 {
            0 => worker(&format!("a{i}")).in_pool(pool("a")),
            1 => worker(&format!("b{i}")).in_pool(pool("b").pack().priority(1)),
            2 => worker(&format!("s{i}")).in_pool(pool("spot").preemptible().priority(2)),
            3 => gpu_worker(&format!("h{i}"), GpuType::H100, 4),
            _ => gpu_worker(&format!("t{i}"), GpuType::T4, 2).status(WorkerStatus::Pending),
        };
        workers.push(w);
    }
    snap(workers)
}

fn mixed_batch(n: u64) -> Vec<ContainerRequest> {
    (0..n)
        .map(|i| {
            let r = req(&format!("c{i:04}"))
                .res(500 + (i * 731) % 4000, GIB + (i * 37) % (8 * GIB), 0)
                .priority(i32::try_from(i % 3).unwrap())
                .at(i % 17);
            match i % 7 {
                0 => r.gpus(
                    1 + u32::try_from(i % 2).unwrap(),
                    &[GpuType::H100, GpuType::T4],
                ),
                1 => r.any_gpu(1),
                2 => r.preemptible(),
                3 => r.selector("b"),
                _ => r,
            }
        })
        .collect()
}

#[test]
fn same_inputs_same_plan() {
    let fleet = mixed_fleet();
    let batch = mixed_batch(300);
    let first = run(&fleet, &batch);
    let second = run(&fleet, &batch);
    assert_eq!(first, second);
    assert!(first.placed() > 0 && !first.unplaced.is_empty());
}

#[test]
fn shuffled_input_gives_the_same_placements() {
    let fleet = mixed_fleet();
    let batch = mixed_batch(300);
    let reference = run(&fleet, &batch);
    let reference_unplaced: BTreeSet<(String, String)> = reference
        .unplaced
        .iter()
        .map(|u| (u.container.to_string(), u.reason.to_string()))
        .collect();
    for seed in [1, 2, 3, 0x9e37_79b9_7f4a_7c15] {
        let mut shuffled = batch.clone();
        shuffle(&mut shuffled, seed);
        assert_ne!(shuffled, batch);
        let plan = run(&fleet, &shuffled);
        assert_eq!(pairs(&plan), pairs(&reference));
        let unplaced: BTreeSet<(String, String)> = plan
            .unplaced
            .iter()
            .map(|u| (u.container.to_string(), u.reason.to_string()))
            .collect();
        assert_eq!(unplaced, reference_unplaced);
    }
}

#[test]
fn rendezvous_tie_break_spreads_requests_over_equal_workers() {
    let fleet: Vec<Worker> = (0..10).map(|i| worker(&format!("w{i}"))).collect();
    let ids: Vec<WorkerId> = fleet.iter().map(|w| w.id.clone()).collect();
    let snapshot = snap(fleet);
    let mut chosen = BTreeSet::new();
    for i in 0..50 {
        // One request per plan, so only the tie-break separates the workers.
        let request = req(&format!("req-{i}"));
        let plan = run(&snapshot, std::slice::from_ref(&request));
        let worker = placed_on(&plan, request.id.as_str()).unwrap();
        // It is the rendezvous winner.
        let expected = ids.iter().max_by_key(|w| affinity(&request.id, w)).unwrap();
        assert_eq!(worker, expected.as_str());
        // And stable across plans.
        assert_eq!(run(&snapshot, std::slice::from_ref(&request)), plan);
        chosen.insert(worker);
    }
    // 50 requests over 10 equal workers: many distinct winners.
    assert!(chosen.len() >= 6, "{chosen:?}");
}

#[test]
fn rendezvous_does_not_depend_on_snapshot_order() {
    let mut fleet: Vec<Worker> = (0..10).map(|i| worker(&format!("w{i}"))).collect();
    let batch: Vec<ContainerRequest> = (0..8).map(|i| req(&format!("r{i}")).at(i)).collect();
    let reference = run(&snap(fleet.clone()), &batch);
    fleet.reverse();
    let reversed = run(&snap(fleet), &batch);
    assert_eq!(pairs(&reversed), pairs(&reference));
}

// ---------------------------------------------------------------------------------------
// The sampled path
// ---------------------------------------------------------------------------------------

#[test]
fn many_equal_workers_use_the_sampled_path_without_overbooking() {
    let fleet: Vec<Worker> = (0..500).map(|i| worker(&format!("w{i:03}"))).collect();
    let snapshot = snap(fleet);
    assert!(snapshot.workers.len() > PlanOptions::default().max_candidates);
    // 16 per worker fit; ask for exactly the fleet's capacity, plus some too many.
    let batch: Vec<ContainerRequest> = (0..8_100).map(|i| req(&format!("c{i:05}")).at(i)).collect();
    let plan = run(&snapshot, &batch);
    assert_eq!(plan.placed(), 8_000);
    assert_eq!(plan.unplaced.len(), 100);
    assert!(
        plan.unplaced
            .iter()
            .all(|u| u.reason == UnplacedReason::NoRoomNow)
    );
    for group in &plan.workers {
        let used = group.total().unwrap();
        assert!(used.fits_in(&Resources::new(16_000, 64 * GIB, 0)), "{used}");
    }
}

#[test]
fn sampled_path_finds_the_few_workers_with_room() {
    // 500 equal workers, all full but three (scattered); the sample must still find them.
    let fleet: Vec<Worker> = (0..500)
        .map(|i| {
            let w = worker(&format!("w{i:03}"));
            if [7, 250, 499].contains(&i) {
                w
            } else {
                w.free(Resources::ZERO)
            }
        })
        .collect();
    let snapshot = snap(fleet);
    let batch: Vec<ContainerRequest> = (0..50).map(|i| req(&format!("c{i:02}")).at(i)).collect();
    for max_candidates in [1, 2, 64] {
        let plan = plan_with(
            &snapshot,
            &batch,
            PlanOptions {
                max_candidates,
                ..PlanOptions::default()
            },
        );
        verify_plan(&snapshot, &batch, &plan).unwrap();
        assert_eq!(plan.placed(), 48);
        let used: BTreeSet<&str> = plan.workers.iter().map(|w| w.worker.as_str()).collect();
        assert_eq!(used, BTreeSet::from(["w007", "w250", "w499"]));
    }
}

#[test]
fn sampled_spread_stays_roughly_even() {
    let fleet: Vec<Worker> = (0..200).map(|i| worker(&format!("w{i:03}"))).collect();
    let batch: Vec<ContainerRequest> = (0..1_000).map(|i| req(&format!("c{i:04}")).at(i)).collect();
    let plan = run(&snap(fleet), &batch);
    assert_eq!(plan.placed(), 1_000);
    let counts = counts(&plan);
    // Exact spread would give 5 each; sampling 64 candidates keeps it close.
    assert!(counts.values().all(|&n| n <= 8), "{counts:?}");
}

// ---------------------------------------------------------------------------------------
// verify_plan rejects broken plans
// ---------------------------------------------------------------------------------------

#[test]
fn verify_plan_rejects_broken_plans() {
    let snapshot = snap(vec![
        worker("w0").free(Resources::new(1000, GIB, 0)),
        worker("w1"),
        gpu_worker("g", GpuType::T4, 1),
    ]);
    let batch = [req("a"), req("b").at(2000)];
    let good = run(&snapshot, &batch);
    assert_eq!(good.placed(), 2);
    let group = |worker: &str, requests: &[usize]| berth_core::WorkerPlan {
        worker: WorkerId::new(worker).unwrap(),
        base_version: 7,
        placements: requests
            .iter()
            .map(|&i| berth_core::Placement {
                devices: Vec::new(),
                request: i,
                // An out-of-range index borrows the last request's id and size.
                container: batch[i.min(1)].id.clone(),
                resources: batch[i.min(1)].resources,
            })
            .collect(),
    };
    let forged = |workers| Plan {
        workers,
        unplaced: Vec::new(),
    };
    assert_eq!(
        verify_plan(
            &snapshot,
            &batch,
            &forged(vec![group("w0", &[0]), group("w1", &[1])])
        ),
        Ok(())
    );

    let broken = [
        // Overbooked within one group.
        forged(vec![group("w0", &[0, 1])]),
        // Overbooked across two groups naming the same worker.
        forged(vec![group("w0", &[0]), group("w0", &[1])]),
        // Unknown worker.
        forged(vec![group("nope", &[0]), group("w1", &[1])]),
        // A request placed twice, and one never mentioned.
        forged(vec![group("w1", &[0, 0])]),
        forged(vec![group("w1", &[0])]),
        // Out-of-range request index.
        forged(vec![group("w1", &[0, 1, 2])]),
        // Infeasible: a CPU request on a GPU worker.
        forged(vec![group("g", &[0]), group("w1", &[1])]),
    ];
    for plan in &broken {
        assert!(verify_plan(&snapshot, &batch, plan).is_err(), "{plan:?}");
    }

    let mut stale = forged(vec![group("w0", &[0]), group("w1", &[1])]);
    stale.workers[0].base_version = 6;
    assert!(verify_plan(&snapshot, &batch, &stale).is_err());
    let mut mismatched = forged(vec![group("w0", &[0]), group("w1", &[1])]);
    mismatched.workers[1].placements[0].resources = Resources::new(1, 1, 0);
    assert!(verify_plan(&snapshot, &batch, &mismatched).is_err());
    let mut explained_twice = good.clone();
    explained_twice.unplaced.push(berth_core::Unplaced {
        request: 0,
        container: batch[0].id.clone(),
        reason: UnplacedReason::NoRoomNow,
    });
    assert!(verify_plan(&snapshot, &batch, &explained_twice).is_err());
}

#[test]
fn demand_goes_to_the_best_matching_pool() {
    use berth_core::feasibility::demand_target;
    let mut low = PoolAttributes {
        pool: PoolName::new("low").unwrap(),
        priority: 1,
        preemptible: false,
        requires_pool_selector: false,
        policy: PlacementPolicy::Spread,
        cpu_on_gpu: None,
    };
    let high = PoolAttributes {
        pool: PoolName::new("high").unwrap(),
        priority: 5,
        ..low.clone()
    };
    let snapshot = Snapshot {
        workers: Vec::new(),
        pools: vec![
            Pool {
                attributes: low.clone(),
                gpu_type: None,
                worker_size: Resources::new(4000, 4096, 0),
                fallback: Vec::new(),
            },
            Pool {
                attributes: high.clone(),
                gpu_type: None,
                worker_size: Resources::new(4000, 4096, 0),
                fallback: Vec::new(),
            },
        ],
    };
    let request: ContainerRequest = serde_json::from_value(serde_json::json!({
        "id": "r1", "tenant": "t", "submitted_at_ms": 1,
        "resources": {"cpu_millicores": 100, "memory_mib": 100, "gpu_count": 0}
    }))
    .unwrap();
    assert_eq!(
        demand_target(&snapshot, &request),
        Some((high.pool.clone(), None))
    );
    low.requires_pool_selector = true;
    let mut selective = request.clone();
    selective.pool_selector = Some(PoolName::new("nowhere").unwrap());
    assert_eq!(demand_target(&snapshot, &selective), None);
}
