//! Stage 4, batch planning: many requests at once against one snapshot.
//!
//! Requests are taken in priority order (then oldest first); each placement is deducted from
//! a working copy of the workers' free capacity (a staged reservation), so a plan can never
//! overbook its own snapshot. The snapshot itself is never mutated.

use crate::index::{self, Bucket};
use crate::plan::{Placement, Plan, PlanOptions, Snapshot, Unplaced, UnplacedReason, WorkerPlan};
use crate::rules::{Candidate, Stage, check_through};
use crate::scoring::{GroupScore, affinity_with_seed, fit_score, request_seed, room, start_offset};
use crate::{ContainerRequest, Resources};
use std::cmp::Reverse;

/// Plans a batch with the default options. See [`plan_with`].
pub fn plan(snapshot: &Snapshot, requests: &[ContainerRequest]) -> Plan {
    plan_with(snapshot, requests, PlanOptions::default())
}

/// Plans a batch: places each request on its best feasible worker, in priority order, and
/// explains every request it could not place. In debug builds the plan's post-conditions are
/// checked with [`crate::verify_plan`].
pub fn plan_with(snapshot: &Snapshot, requests: &[ContainerRequest], options: PlanOptions) -> Plan {
    let mut planner = Planner::new(snapshot, options);
    for index in planning_order(requests) {
        planner.place(index, &requests[index]);
    }
    let plan = planner.finish();
    debug_assert_eq!(crate::verify_plan(snapshot, requests, &plan), Ok(()));
    plan
}

/// The order requests are planned in: highest priority first, then oldest, then by id.
pub fn planning_order(requests: &[ContainerRequest]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&requests[a], &requests[b]);
        (Reverse(ra.priority), ra.submitted_at_ms, &ra.id, a).cmp(&(
            Reverse(rb.priority),
            rb.submitted_at_ms,
            &rb.id,
            b,
        ))
    });
    order
}

/// The working state of one planning run.
struct Planner<'a> {
    snapshot: &'a Snapshot,
    options: PlanOptions,
    buckets: Vec<Bucket>,
    /// Free capacity of each worker after the placements made so far.
    free: Vec<Resources>,
    /// Placements made so far, by worker index.
    placements: Vec<Vec<Placement>>,
    unplaced: Vec<Unplaced>,
}

impl<'a> Planner<'a> {
    fn new(snapshot: &'a Snapshot, options: PlanOptions) -> Self {
        Planner {
            snapshot,
            options,
            buckets: index::build(&snapshot.workers),
            free: snapshot.workers.iter().map(|w| w.free).collect(),
            placements: vec![Vec::new(); snapshot.workers.len()],
            unplaced: Vec::new(),
        }
    }

    fn place(&mut self, index: usize, request: &ContainerRequest) {
        if let Err(error) = request.validate() {
            return self.reject(index, request, UnplacedReason::Invalid(error.to_string()));
        }
        match self.choose(request) {
            Some(worker) => self.reserve(worker, index, request),
            None => {
                let reason = self.classify(request);
                self.reject(index, request, reason);
            }
        }
    }

    fn reserve(&mut self, worker: usize, index: usize, request: &ContainerRequest) {
        // `choose` only returns workers whose free capacity holds the request.
        if let Some(left) = self.free[worker].checked_sub(request.resources) {
            self.free[worker] = left;
            self.placements[worker].push(Placement {
                request: index,
                container: request.id.clone(),
                resources: request.resources,
            });
        }
    }

    fn reject(&mut self, index: usize, request: &ContainerRequest, reason: UnplacedReason) {
        self.unplaced.push(Unplaced {
            request: index,
            container: request.id.clone(),
            reason,
        });
    }

    /// The best worker for the request, searching groups of buckets from the best group
    /// score down and stopping at the first group with a feasible worker.
    fn choose(&mut self, request: &ContainerRequest) -> Option<usize> {
        let mut candidates = self.candidate_buckets(request);
        candidates.sort_by_key(|&(score, bucket)| (Reverse(score), bucket));
        for group in candidates.chunk_by(|a, b| a.0 == b.0) {
            let buckets: Vec<usize> = group.iter().map(|&(_, bucket)| bucket).collect();
            if let Some(worker) = self.best_in(&buckets, request) {
                return Some(worker);
            }
            for &bucket in &buckets {
                self.buckets[bucket].remember_full_for(request.resources);
            }
        }
        None
    }

    /// Buckets that take work, pass the static rules and are not known to be full for this
    /// demand, each with its group score.
    fn candidate_buckets(&self, request: &ContainerRequest) -> Vec<(GroupScore, usize)> {
        let mut out = Vec::new();
        for (position, bucket) in self.buckets.iter().enumerate() {
            if bucket.known_full_for(&request.resources) {
                continue;
            }
            let workers = &self.snapshot.workers;
            let Ok(rank) = bucket.check(workers, Stage::Status, request) else {
                continue;
            };
            out.push((
                GroupScore::of(&workers[bucket.representative], rank),
                position,
            ));
        }
        out
    }

    /// The best feasible worker among equally scored buckets: by the pool policy's fit,
    /// then rendezvous affinity. Large groups are sampled (see [`PlanOptions`]).
    fn best_in(&self, buckets: &[usize], request: &ContainerRequest) -> Option<usize> {
        let members: Vec<&[usize]> = buckets
            .iter()
            .map(|&b| self.buckets[b].workers.as_slice())
            .collect();
        let len: usize = members.iter().map(|m| m.len()).sum();
        let exact = len <= self.options.max_candidates;
        let start = if exact {
            0
        } else {
            start_offset(&request.id, len)
        };
        let mut best: Option<((u64, u64), usize)> = None;
        let mut feasible = 0;
        let seed = request_seed(&request.id);
        for step in 0..len {
            let position = if start + step < len {
                start + step
            } else {
                start + step - len
            };
            let worker = member_at(&members, position);
            let Some(key) = self.rank(worker, request, seed) else {
                continue;
            };
            feasible += 1;
            if best.is_none_or(|(best_key, _)| key > best_key) {
                best = Some((key, worker));
            }
            if !exact && feasible >= self.options.max_candidates {
                break;
            }
        }
        best.map(|(_, worker)| worker)
    }

    /// (policy fit, affinity) of a worker for the request, or `None` if it has no room.
    fn rank(&self, worker: usize, request: &ContainerRequest, seed: u64) -> Option<(u64, u64)> {
        let spec = &self.snapshot.workers[worker];
        let left = self.free[worker].checked_sub(request.resources)?;
        let fit = fit_score(spec.pool.policy, room(&left, &spec.total));
        Some((fit, affinity_with_seed(seed, &spec.id)))
    }

    /// Why no worker took the request: nothing matches, it never fits, or no room now.
    fn classify(&self, request: &ContainerRequest) -> UnplacedReason {
        let demand = &request.resources;
        let mut matched = false;
        for bucket in &self.buckets {
            if bucket
                .check(&self.snapshot.workers, Stage::Class, request)
                .is_ok()
            {
                matched = true;
                if bucket.could_ever_hold(demand) {
                    return UnplacedReason::NoRoomNow;
                }
            }
        }
        for pool in &self.snapshot.pools {
            if check_through(Stage::Class, request, &Candidate::pool(pool)).is_ok() {
                matched = true;
                if demand.fits_in(&pool.worker_size) {
                    return UnplacedReason::NoRoomNow;
                }
            }
        }
        if matched {
            UnplacedReason::NeverFits
        } else {
            UnplacedReason::NoMatchingPool
        }
    }

    fn finish(self) -> Plan {
        let workers = self
            .placements
            .into_iter()
            .enumerate()
            .filter(|(_, placements)| !placements.is_empty())
            .map(|(index, placements)| {
                let worker = &self.snapshot.workers[index];
                WorkerPlan {
                    worker: worker.id.clone(),
                    base_version: worker.version,
                    placements,
                }
            })
            .collect();
        Plan {
            workers,
            unplaced: self.unplaced,
        }
    }
}

/// The worker at `position` of the concatenation of `members`.
fn member_at(members: &[&[usize]], mut position: usize) -> usize {
    for member in members {
        if position < member.len() {
            return member[position];
        }
        position -= member.len();
    }
    unreachable!("position is below the total length")
}
