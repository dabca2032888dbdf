//! Property tests of the planner over random fleets and batches.
//!
//! Every property is checked against an independent oracle built from the public stage-1
//! and stage-2 functions (`feasibility::check`, `check_static`, `GroupScore`, `room`,
//! `fit_score`, `affinity`), replaying the plan in `planning_order`.

#![allow(clippy::unwrap_used)] // Tests unwrap freely: a panic is a failed test.

use berth_core::feasibility::{check, check_static, worker_gpu_type};
use berth_core::scoring::{GroupScore, WARM_BONUS, affinity, fit_score, room};
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, GpuType, Payload, PlacementPolicy, Plan,
    PlanOptions, Pool, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, UnplacedReason,
    Worker, WorkerId, WorkerStatus, plan_with, planning_order, verify_plan,
};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

const POOLS: usize = 3;

fn gpu_type(index: usize) -> Option<GpuType> {
    match index {
        0 => None,
        1 => Some(GpuType::T4),
        2 => Some(GpuType::A100_80),
        _ => Some(GpuType::H100),
    }
}

fn pool_name(index: usize) -> PoolName {
    PoolName::new(format!("p{index}")).unwrap()
}

fn pool_attributes() -> impl Strategy<Value = PoolAttributes> {
    (
        -2i32..3,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.25),
        any::<bool>(),
    )
        .prop_map(
            |(priority, preemptible, requires_pool_selector, pack)| PoolAttributes {
                // Named when the fleet is assembled.
                pool: pool_name(0),
                priority,
                preemptible,
                requires_pool_selector,
                policy: if pack {
                    PlacementPolicy::Pack
                } else {
                    PlacementPolicy::Spread
                },
                cpu_on_gpu: None,
            },
        )
}

fn status() -> impl Strategy<Value = WorkerStatus> {
    prop_oneof![
        6 => Just(WorkerStatus::Available),
        2 => Just(WorkerStatus::Pending),
        1 => Just(WorkerStatus::Draining),
        1 => Just(WorkerStatus::Disabled),
    ]
}

/// A worker without its pool attributes: (pool index, gpu index, status, total, free).
type WorkerSpec = (usize, usize, WorkerStatus, Resources, Resources);

fn worker_spec() -> impl Strategy<Value = WorkerSpec> {
    (
        0..POOLS,
        0usize..4,
        status(),
        (1u64..=32, 1u64..=128, 0u32..=8),
        // Free as quarters of the total, so exact fits and full workers are common.
        (0u64..=4, 0u64..=4, 0u32..=4),
    )
        .prop_map(|(pool, gpu, status, (cores, gib, gpus), (fc, fm, fg))| {
            // Workers without a GPU type have no GPUs; a GPU type with 0 GPUs is a kept edge
            // case (such a worker counts as a CPU worker).
            let gpus = if gpu == 0 { 0 } else { gpus };
            let total = Resources::new(cores * 1000, gib * 1024, gpus);
            let free = Resources::new(
                total.cpu_millicores * fc / 4,
                total.memory_mib * fm / 4,
                total.gpu_count * fg / 4,
            );
            (pool, gpu, status, total, free)
        })
}

/// A configured pool: (pool index, gpu index, worker size).
fn pool_spec() -> impl Strategy<Value = (usize, usize, Resources)> {
    (0..POOLS, 0usize..4, 1u64..=64, 1u64..=256, 0u32..=8).prop_map(
        |(pool, gpu, cores, gib, gpus)| {
            let gpus = if gpu == 0 { 0 } else { gpus };
            (pool, gpu, Resources::new(cores * 1000, gib * 1024, gpus))
        },
    )
}

fn fleet() -> impl Strategy<Value = Snapshot> {
    (
        prop::collection::vec(pool_attributes(), POOLS),
        prop::collection::vec(worker_spec(), 1..=60),
        prop::collection::vec(pool_spec(), 0..=3),
        prop::collection::vec(prop::sample::subsequence(IMAGES.to_vec(), 0..=2), 60),
    )
        .prop_map(|(mut attributes, specs, pools, held)| {
            for (index, a) in attributes.iter_mut().enumerate() {
                a.pool = pool_name(index);
            }
            let workers = specs
                .into_iter()
                .enumerate()
                .map(|(index, (pool, gpu, status, total, free))| Worker {
                    images: held[index].iter().map(|i| (*i).to_owned()).collect(),
                    gpus: Vec::new(),
                    id: WorkerId::new(format!("w{index}")).unwrap(),
                    pool: attributes[pool].clone(),
                    status,
                    total,
                    free,
                    gpu_type: gpu_type(gpu),
                    runtime: RuntimeName::PROCESS,
                    version: index as u64,
                    epoch: 1,
                })
                .collect();
            let pools = pools
                .into_iter()
                .map(|(pool, gpu, worker_size)| Pool {
                    attributes: attributes[pool].clone(),
                    gpu_type: gpu_type(gpu),
                    worker_size,
                    fallback: Vec::new(),
                })
                .collect();
            Snapshot { workers, pools }
        })
}

/// The images workers hold; requests also ask for one no worker holds.
const IMAGES: [&str; 4] = ["img0", "img1", "img2", "img3"];

fn image() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        5 => (0usize..=IMAGES.len()).prop_map(|i| Some(format!("img{i}"))),
    ]
}

fn gpu_preference() -> impl Strategy<Value = GpuPreference> {
    prop_oneof![
        4 => Just(GpuPreference::Any),
        10 => prop::sample::subsequence(vec![1usize, 2, 3], 1..=3)
            .prop_shuffle()
            .prop_map(|types| GpuPreference::Types(
                types.into_iter().filter_map(gpu_type).collect()
            )),
        // Invalid with a GPU count.
        1 => Just(GpuPreference::Types(Vec::new())),
    ]
}

/// A request without its id: the batch numbers them.
fn request() -> impl Strategy<Value = ContainerRequest> {
    // Mostly small (up to 4 cores, 8 GiB), some large, a few zero (Invalid).
    let cpu = prop_oneof![
        1 => Just(0u64),
        60 => (1u64..=16).prop_map(|q| q * 250),
        12 => (1u64..=40).prop_map(|q| q * 1000),
    ];
    let memory = prop_oneof![
        1 => Just(0u64),
        60 => (1u64..=16).prop_map(|q| q * 512),
        12 => (1u64..=160).prop_map(|q| q * 1024),
    ];
    let gpus = prop_oneof![6 => Just(0u32), 3 => 1u32..=2, 1 => 3u32..=9];
    let selector = prop_oneof![
        6 => Just(None),
        3 => (0..POOLS).prop_map(Some),
        1 => Just(Some(9)),
    ];
    (
        (cpu, memory, gpus),
        gpu_preference(),
        selector,
        any::<bool>(),
        -2i32..3,
        0u64..20,
        (prop::bool::weighted(0.05), image()),
    )
        .prop_map(
            |(
                (cpu, memory, gpus),
                gpu,
                selector,
                preemptible,
                priority,
                submitted_at_ms,
                (keep_types, image),
            )| {
                // Mostly keep the preference list consistent with the count; the rest are
                // Invalid (types listed without GPUs).
                let gpu = if gpus == 0 && !keep_types {
                    GpuPreference::Any
                } else {
                    gpu
                };
                ContainerRequest {
                    gpu_fraction_milli: None,
                    id: ContainerId::new("unnamed").unwrap(),
                    tenant: "t".into(),
                    resources: Resources::new(cpu, memory, gpus),
                    gpu,
                    pool_selector: selector.map(pool_name),
                    preemptible,
                    priority,
                    submitted_at_ms,
                    payload: Payload {
                        image,
                        ..Payload::default()
                    },
                    fallback: Vec::new(),
                    max_retries: 0,
                }
            },
        )
}

fn batch() -> impl Strategy<Value = Vec<ContainerRequest>> {
    prop::collection::vec(request(), 0..=200).prop_map(|mut requests| {
        for (index, r) in requests.iter_mut().enumerate() {
            r.id = ContainerId::new(format!("r{index}")).unwrap();
        }
        requests
    })
}

fn options() -> impl Strategy<Value = PlanOptions> {
    (
        prop_oneof![
            3 => Just(64usize),
            1 => 1usize..=8,
        ],
        any::<bool>(),
    )
        .prop_map(|(max_candidates, image_locality)| PlanOptions {
            max_candidates,
            image_locality,
            ..PlanOptions::default()
        })
}

// ---------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------

/// Where each request went: `Some(worker index)` if placed.
fn assignment(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    plan: &Plan,
) -> Vec<Option<usize>> {
    let by_id: HashMap<&str, usize> = snapshot
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.as_str(), i))
        .collect();
    let mut out = vec![None; requests.len()];
    for group in &plan.workers {
        let worker = by_id[group.worker.as_str()];
        for p in &group.placements {
            out[p.request] = Some(worker);
        }
    }
    out
}

/// The full lexicographic score of a worker for a request at the given free capacity, if the
/// worker accepts it: what the planner maximises when it scores every candidate.
/// With `locality`, a worker holding the request's image gets [`WARM_BONUS`] on its fit.
fn score(
    worker: &Worker,
    free: &Resources,
    request: &ContainerRequest,
    locality: bool,
) -> Option<(GroupScore, u64, u64)> {
    let rank = check(worker, free, request).ok()?;
    let left = free.checked_sub(request.resources)?;
    let warm = locality
        && request
            .payload
            .image
            .as_deref()
            .is_some_and(|image| worker.holds_image(image));
    Some((
        GroupScore::of(worker, request, rank),
        fit_score(worker.pool.policy, room(&left, &worker.total))
            + if warm { WARM_BONUS } else { 0 },
        affinity(&request.id, &worker.id),
    ))
}

/// Why a request that no worker takes is unplaced, from the static rules alone.
fn expected_reason(snapshot: &Snapshot, request: &ContainerRequest) -> UnplacedReason {
    let demand = &request.resources;
    let mut matched = false;
    let mut could_hold = false;
    for w in &snapshot.workers {
        if check_static(&w.pool, worker_gpu_type(w), request).is_ok() {
            matched = true;
            could_hold |= demand.fits_in(&w.total);
        }
    }
    for p in &snapshot.pools {
        let gpu = p.gpu_type.as_ref().filter(|_| p.worker_size.gpu_count > 0);
        if check_static(&p.attributes, gpu, request).is_ok() {
            matched = true;
            could_hold |= demand.fits_in(&p.worker_size);
        }
    }
    if could_hold {
        UnplacedReason::NoRoomNow
    } else if matched {
        UnplacedReason::NeverFits
    } else {
        UnplacedReason::NoMatchingPool
    }
}

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

fn unplaced(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.unplaced
        .iter()
        .map(|u| (u.container.to_string(), u.reason.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Image locality never overrides feasibility or priority: a request alone is placed
    /// with locality exactly when it is placed without, on a feasible worker whose group
    /// score (kind, pool priority, availability, GPU preference) is the same; locality
    /// moves it at most within that group, and only to a worker holding its image.
    #[test]
    fn locality_never_overrides_feasibility_or_priority(
        snapshot in fleet(),
        request in request(),
        max_candidates in prop_oneof![Just(64usize), 1usize..=8],
    ) {
        let requests = vec![request];
        let with = |image_locality| PlanOptions { max_candidates, image_locality, ..PlanOptions::default() };
        let on = assignment(&snapshot, &requests, &plan_with(&snapshot, &requests, with(true)))[0];
        let off = assignment(&snapshot, &requests, &plan_with(&snapshot, &requests, with(false)))[0];
        prop_assert_eq!(on.is_some(), off.is_some());
        let request = &requests[0];
        if let (Some(on), Some(off)) = (on, off) {
            let group = |w: usize| {
                let worker = &snapshot.workers[w];
                check(worker, &worker.free, request).map(|rank| GroupScore::of(worker, request, rank))
            };
            prop_assert!(group(on).is_ok(), "{} does not take it", snapshot.workers[on].id);
            prop_assert_eq!(group(on), group(off));
            if on != off && max_candidates >= snapshot.workers.len() {
                let image = request.payload.image.as_deref().unwrap_or("(none)");
                prop_assert!(snapshot.workers[on].holds_image(image));
                prop_assert!(!snapshot.workers[off].holds_image(image));
            }
        }
    }

    /// (a) never overbooked, and (b) `verify_plan` accepts the plan.
    #[test]
    fn never_overbooked_and_verified(snapshot in fleet(), requests in batch(), options in options()) {
        let plan = plan_with(&snapshot, &requests, options);
        prop_assert_eq!(verify_plan(&snapshot, &requests, &plan), Ok(()));
        let mut seen = BTreeSet::new();
        for group in &plan.workers {
            prop_assert!(seen.insert(group.worker.clone()), "worker {} twice", group.worker);
            prop_assert!(!group.placements.is_empty());
            let worker = snapshot.workers.iter().find(|w| w.id == group.worker).unwrap();
            let used = group.total().unwrap();
            prop_assert!(used.fits_in(&worker.free), "{} uses {} of {}", worker.id, used, worker.free);
            prop_assert_eq!(group.base_version, worker.version);
        }
        prop_assert_eq!(plan.placed() + plan.unplaced.len(), requests.len());
    }

    /// (c) a request is unplaced (for any reason but Invalid) only if no worker could take it
    /// after the placements ordered before it; (d) in particular no lower-priority request
    /// took room a higher-priority unplaced one would have fit in; every placement is
    /// feasible at its turn; and when every candidate is scored (no sampling) the chosen
    /// worker is the best one by (group score, policy fit, affinity).
    #[test]
    fn replay_in_planning_order(snapshot in fleet(), requests in batch(), options in options()) {
        let plan = plan_with(&snapshot, &requests, options);
        let placed = assignment(&snapshot, &requests, &plan);
        let reasons: HashMap<usize, UnplacedReason> =
            plan.unplaced.iter().map(|u| (u.request, u.reason.clone())).collect();
        let exact = options.max_candidates >= snapshot.workers.len();
        let mut free: Vec<Resources> = snapshot.workers.iter().map(|w| w.free).collect();
        // For each NoRoomNow request: its priority and the free capacity at its turn.
        let mut starved: Vec<(i32, usize, Vec<Resources>)> = Vec::new();
        // The order itself: a permutation, by priority (high first), then age, then id.
        let order = planning_order(&requests);
        prop_assert_eq!(order.iter().copied().collect::<BTreeSet<_>>().len(), requests.len());
        let key = |i: usize| {
            let r = &requests[i];
            (std::cmp::Reverse(r.priority), r.submitted_at_ms, r.id.clone())
        };
        prop_assert!(order.windows(2).all(|pair| key(pair[0]) < key(pair[1])));
        // Unplaced requests are reported in planning order.
        let unplaced_order: Vec<usize> = order.iter().copied().filter(|i| placed[*i].is_none()).collect();
        let reported: Vec<usize> = plan.unplaced.iter().map(|u| u.request).collect();
        prop_assert_eq!(reported, unplaced_order);

        for index in order {
            let request = &requests[index];
            let valid = request.validate().is_ok();
            match placed[index] {
                Some(w) => {
                    prop_assert!(valid);
                    let worker = &snapshot.workers[w];
                    prop_assert!(check(worker, &free[w], request).is_ok());
                    if exact {
                        let best = snapshot
                            .workers
                            .iter()
                            .enumerate()
                            .filter_map(|(i, candidate)| score(candidate, &free[i], request, options.image_locality).map(|s| (s, i)))
                            .max()
                            .map(|(_, i)| i);
                        prop_assert_eq!(best, Some(w), "request {} chose {}", request.id, worker.id);
                    }
                    free[w] = free[w].checked_sub(request.resources).unwrap();
                }
                None => {
                    let reason = &reasons[&index];
                    if !valid {
                        prop_assert!(matches!(reason, UnplacedReason::Invalid(_)), "{:?}", reason);
                        continue;
                    }
                    prop_assert!(!matches!(reason, UnplacedReason::Invalid(_)), "{:?}", reason);
                    for (i, worker) in snapshot.workers.iter().enumerate() {
                        prop_assert!(
                            check(worker, &free[i], request).is_err(),
                            "{} reported {:?} but {} (free {}) accepts it",
                            request.id, reason, worker.id, free[i]
                        );
                    }
                    if *reason == UnplacedReason::NoRoomNow {
                        starved.push((request.priority, index, free.clone()));
                    }
                }
            }
        }

        // (d) priority: a lower-priority placement never took room the higher one needed.
        for (priority, high, free_at_turn) in &starved {
            for (low, &target) in placed.iter().enumerate() {
                let Some(w) = target else { continue };
                if requests[low].priority < *priority {
                    prop_assert!(
                        check(&snapshot.workers[w], &free_at_turn[w], &requests[*high]).is_err(),
                        "{} (priority {}) unplaced, {} (priority {}) placed on {} where it fit",
                        requests[*high].id, priority, requests[low].id, requests[low].priority,
                        snapshot.workers[w].id
                    );
                }
            }
        }
    }

    /// (e) the same inputs give the same plan, and the input order does not matter (ids are
    /// distinct, so planning order is total).
    #[test]
    fn deterministic(snapshot in fleet(), requests in batch(), options in options()) {
        let first = plan_with(&snapshot, &requests, options);
        let second = plan_with(&snapshot, &requests, options);
        prop_assert_eq!(&first, &second);

        let mut reversed = requests.clone();
        reversed.reverse();
        let third = plan_with(&snapshot, &reversed, options);
        prop_assert_eq!(pairs(&third), pairs(&first));
        prop_assert_eq!(unplaced(&third), unplaced(&first));
    }

    /// (f) NoMatchingPool: no worker or pool passes the static rules; NeverFits: some do, but
    /// none's total (or pool worker size) holds the request; NoRoomNow: one could hold it.
    #[test]
    fn unplaced_reasons_are_consistent(snapshot in fleet(), requests in batch(), options in options()) {
        let plan = plan_with(&snapshot, &requests, options);
        for u in &plan.unplaced {
            let request = &requests[u.request];
            prop_assert_eq!(&u.container, &request.id);
            match request.validate() {
                Err(error) => prop_assert_eq!(&u.reason, &UnplacedReason::Invalid(error.to_string())),
                Ok(()) => prop_assert_eq!(&u.reason, &expected_reason(&snapshot, request), "{}", request.id),
            }
        }
    }

    /// The snapshot is never mutated, whatever the batch.
    #[test]
    fn snapshot_untouched(snapshot in fleet(), requests in batch()) {
        let before = snapshot.clone();
        let _ = berth_core::plan(&snapshot, &requests);
        prop_assert_eq!(snapshot, before);
    }
}
