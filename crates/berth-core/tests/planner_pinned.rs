//! Candidate sampling in the planner, pinned: in a group of equally scored workers larger
//! than `max_candidates`, the planner scores that many feasible candidates, starting at the
//! request's hashed offset ([`start_offset`]) and wrapping around the group, and takes the
//! best of them by policy fit, then affinity; a group no larger is scored exactly.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::scoring::{affinity, fit_score, room, start_offset};
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, Payload, PlacementPolicy, Plan, PlanOptions,
    PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, Worker, WorkerId, WorkerStatus,
    plan_with, planning_order, verify_plan,
};
use std::collections::HashMap;

const WORKERS: usize = 12;

/// One pool of `WORKERS` alike workers (one group), with free capacity from full to empty
/// in a scattered order, so the best worker of a sample is rarely the best of all.
fn fleet(policy: PlacementPolicy) -> Snapshot {
    let mut attributes = PoolAttributes::plain(PoolName::new("p").unwrap());
    attributes.policy = policy;
    let total = Resources::new(16_000, 16 * 1024, 0);
    let workers = (0..WORKERS)
        .map(|i| {
            // 0 to 16 cores free: 0 (full) for every fifth worker.
            let cores = if i % 5 == 3 {
                0
            } else {
                (i as u64 * 7) % 16 + 1
            };
            Worker {
                images: Vec::new(),
                gpus: Vec::new(),
                id: WorkerId::new(format!("w{i:02}")).unwrap(),
                pool: attributes.clone(),
                status: WorkerStatus::Available,
                total,
                free: Resources::new(cores * 1000, cores * 1024, 0),
                gpu_type: None,
                runtime: RuntimeName::PROCESS,
                version: 3,
                epoch: 1,
            }
        })
        .collect();
    Snapshot {
        workers,
        pools: Vec::new(),
    }
}

/// Requests of one or two cores (and as many GiB), each submitted a millisecond later.
fn batch(count: usize) -> Vec<ContainerRequest> {
    (0..count)
        .map(|i| {
            let cores = 1 + (i as u64 % 2);
            ContainerRequest {
                gpu_fraction_milli: None,
                id: ContainerId::new(format!("c{i:03}")).unwrap(),
                tenant: "t".into(),
                resources: Resources::new(cores * 1000, cores * 1024, 0),
                gpu: GpuPreference::Any,
                pool_selector: None,
                preemptible: false,
                priority: 0,
                submitted_at_ms: i as u64,
                payload: Payload::default(),
                fallback: Vec::new(),
                max_retries: 0,
            }
        })
        .collect()
}

/// The worker the documented sampling picks for `request` given the free capacity left:
/// the best (policy fit, affinity) among the first `max_candidates` feasible workers from
/// the request's offset, wrapping around; every worker when the group is that small.
fn sampled_choice(
    snapshot: &Snapshot,
    free: &[Resources],
    request: &ContainerRequest,
    max_candidates: usize,
) -> Option<usize> {
    let len = snapshot.workers.len();
    let exact = len <= max_candidates;
    let start = if exact {
        0
    } else {
        start_offset(&request.id, len)
    };
    let scored = (0..len)
        .map(|step| (start + step) % len)
        .filter_map(|i| {
            let worker = &snapshot.workers[i];
            let left = free[i].checked_sub(request.resources)?;
            let fit = fit_score(worker.pool.policy, room(&left, &worker.total));
            Some(((fit, affinity(&request.id, &worker.id)), i))
        })
        .take(if exact { len } else { max_candidates });
    scored.max().map(|(_, i)| i)
}

/// Replays a batch in planning order with [`sampled_choice`]: each request's worker, if any.
fn expected(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    max_candidates: usize,
) -> Vec<Option<usize>> {
    let mut free: Vec<Resources> = snapshot.workers.iter().map(|w| w.free).collect();
    let mut out = vec![None; requests.len()];
    for index in planning_order(requests) {
        let request = &requests[index];
        if let Some(w) = sampled_choice(snapshot, &free, request, max_candidates) {
            free[w] = free[w].checked_sub(request.resources).unwrap();
            out[index] = Some(w);
        }
    }
    out
}

/// Where the plan put each request.
fn actual(snapshot: &Snapshot, requests: &[ContainerRequest], plan: &Plan) -> Vec<Option<usize>> {
    let by_id: HashMap<&WorkerId, usize> = snapshot
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (&w.id, i))
        .collect();
    let mut out = vec![None; requests.len()];
    for group in &plan.workers {
        for placement in &group.placements {
            out[placement.request] = Some(by_id[&group.worker]);
        }
    }
    out
}

fn check_sampling(policy: PlacementPolicy, max_candidates: usize) {
    let snapshot = fleet(policy);
    let requests = batch(60);
    let plan = plan_with(
        &snapshot,
        &requests,
        PlanOptions {
            max_candidates,
            ..PlanOptions::default()
        },
    );
    verify_plan(&snapshot, &requests, &plan).unwrap();
    assert_eq!(
        actual(&snapshot, &requests, &plan),
        expected(&snapshot, &requests, max_candidates),
        "{policy:?}, max_candidates {max_candidates}"
    );
}

#[test]
fn a_sample_takes_the_best_of_the_first_feasible_candidates_from_the_requests_offset() {
    for max_candidates in [1, 2, 3, 5, 8, WORKERS - 1] {
        check_sampling(PlacementPolicy::Spread, max_candidates);
        check_sampling(PlacementPolicy::Pack, max_candidates);
    }
}

#[test]
fn a_group_no_larger_than_max_candidates_is_scored_exactly() {
    for max_candidates in [WORKERS, WORKERS + 1, 64] {
        check_sampling(PlacementPolicy::Spread, max_candidates);
        check_sampling(PlacementPolicy::Pack, max_candidates);
    }
}

#[test]
fn sampling_changes_the_choice_for_some_requests() {
    // The fleet and batch above are such that a small sample and the exact search disagree,
    // so the sampling tests could tell the two apart.
    let snapshot = fleet(PlacementPolicy::Spread);
    let requests = batch(60);
    for max_candidates in [1, 2, 3] {
        assert_ne!(
            expected(&snapshot, &requests, max_candidates),
            expected(&snapshot, &requests, WORKERS),
            "max_candidates {max_candidates}"
        );
    }
}

#[test]
fn a_sample_of_one_takes_the_first_worker_with_room_from_the_requests_offset() {
    let snapshot = fleet(PlacementPolicy::Spread);
    for request in batch(40) {
        let requests = [request];
        let plan = plan_with(
            &snapshot,
            &requests,
            PlanOptions {
                max_candidates: 1,
                ..PlanOptions::default()
            },
        );
        let start = start_offset(&requests[0].id, WORKERS);
        let first_with_room = (0..WORKERS)
            .map(|step| (start + step) % WORKERS)
            .find(|&i| requests[0].resources.fits_in(&snapshot.workers[i].free));
        assert_eq!(
            actual(&snapshot, &requests, &plan)[0],
            first_with_room,
            "{} from offset {start}",
            requests[0].id
        );
    }
}

/// Buckets with equal group scores form one group: two pools of one priority are scored
/// together, so spread takes the emptier worker whichever pool comes first.
#[test]
fn buckets_with_equal_group_scores_are_scored_as_one_group() {
    let mut snapshot = fleet(PlacementPolicy::Spread);
    snapshot.workers.truncate(2);
    snapshot.workers[0].pool.pool = PoolName::new("a").unwrap();
    snapshot.workers[0].free = Resources::new(2000, 2048, 0);
    snapshot.workers[1].pool.pool = PoolName::new("b").unwrap();
    snapshot.workers[1].free = snapshot.workers[1].total;
    let requests = batch(1);
    let plan = plan_with(&snapshot, &requests, PlanOptions::default());
    assert_eq!(plan.workers.len(), 1);
    assert_eq!(plan.workers[0].worker.as_str(), "w01");
}

/// Image locality with sampling: every request names an image only the one worker
/// `w09` holds (the emptiest). With locality on, the sampled walk may miss it, yet every request that fits
/// there goes there (the warm workers are ranked besides the sample); with it off, the
/// sample decides as before.
#[test]
fn a_warm_worker_outside_the_sample_is_still_preferred() {
    let mut snapshot = fleet(PlacementPolicy::Spread);
    let warm = snapshot
        .workers
        .iter()
        .position(|w| w.id.as_str() == "w09")
        .unwrap();
    snapshot.workers[warm].images = vec!["app:v1".to_owned()];
    let requests: Vec<ContainerRequest> = batch(40)
        .into_iter()
        .map(|mut r| {
            r.resources = Resources::new(100, 100, 0);
            r.payload.image = Some("app:v1".to_owned());
            r
        })
        .collect();
    let sampled = |image_locality| PlanOptions {
        max_candidates: 2,
        image_locality,
        ..PlanOptions::default()
    };
    let on = plan_with(&snapshot, &requests, sampled(true));
    assert_eq!(verify_plan(&snapshot, &requests, &on), Ok(()));
    let on_warm = placed_on(&on, "w09");
    assert_eq!(on_warm, requests.len(), "all 40 small requests go to w09");
    let off = plan_with(&snapshot, &requests, sampled(false));
    assert!(placed_on(&off, "w09") < requests.len() / 2);
}

/// How many placements of the plan went to the worker.
fn placed_on(plan: &Plan, worker: &str) -> usize {
    plan.workers
        .iter()
        .filter(|g| g.worker.as_str() == worker)
        .map(|g| g.placements.len())
        .sum()
}
