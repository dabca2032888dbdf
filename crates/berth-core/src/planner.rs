//! Stage 4, batch planning: many requests at once against one snapshot.
//!
//! Requests are taken in priority order (then oldest first); each placement is deducted from
//! a working copy of the workers' free capacity (a staged reservation), so a plan can never
//! overbook its own snapshot. The snapshot itself is never mutated.

use crate::fallback;
use crate::gpu_fit::{self, DemandShape, DeviceSlot, GpuAsk};
use crate::index::{self, Bucket};
use crate::plan::{Placement, Plan, PlanOptions, Snapshot, Unplaced, UnplacedReason, WorkerPlan};
use crate::rules::{Candidate, Stage, check_through, gpu_reserve, needed};
use crate::scoring::{
    GroupScore, WARM_BONUS, affinity_with_seed, fit_score, request_seed, room, start_offset,
};
use crate::{ContainerRequest, DeviceShare, GpuPreference, GpuType, PlacementPolicy, Resources};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// Plans a batch with the default options. See [`plan_with`].
pub fn plan(snapshot: &Snapshot, requests: &[ContainerRequest]) -> Plan {
    plan_with(snapshot, requests, PlanOptions::default())
}

/// Plans a batch: places each request on its best feasible worker, in priority order, and
/// explains every request it could not place. In debug builds the plan's post-conditions are
/// checked with [`crate::verify_plan`].
pub fn plan_with(snapshot: &Snapshot, requests: &[ContainerRequest], options: PlanOptions) -> Plan {
    plan_for_demand(snapshot, requests, options, &batch_demand(requests))
}

/// [`plan_with`], with the fragmentation-aware policy ([`PlacementPolicy::Fgd`]) weighing
/// fragmentation against `demand`, the GPU demand the caller expects of the pool (e.g.
/// from a workload's published statistics), where [`plan_with`] takes the batch's own
/// GPU requests as the demand.
pub fn plan_for_demand(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    options: PlanOptions,
    demand: &[DemandShape],
) -> Plan {
    plan_in_order(
        snapshot,
        requests,
        options,
        demand,
        planning_order(requests),
    )
}

/// [`plan_with`], taking the requests of several tenants in the fair order of
/// [`crate::fair::order`] instead of priority order (each tenant's own requests still by
/// priority, then age).
pub fn plan_fair(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    options: PlanOptions,
    shares: &crate::fair::Shares,
) -> Plan {
    let order = crate::fair::order(requests, snapshot, shares);
    plan_in_order(snapshot, requests, options, &batch_demand(requests), order)
}

/// The batch's own valid GPU requests, as the demand the fragmentation-aware policy weighs.
fn batch_demand(requests: &[ContainerRequest]) -> Vec<DemandShape> {
    gpu_fit::demand_of(
        requests
            .iter()
            .filter(|r| r.validate().is_ok())
            .map(|r| (&r.resources, r.gpu_ask(), &r.gpu)),
    )
}

/// Plans `requests` taking them in `order` (indices into `requests`, each once).
fn plan_in_order(
    snapshot: &Snapshot,
    requests: &[ContainerRequest],
    options: PlanOptions,
    demand: &[DemandShape],
    order: Vec<usize>,
) -> Plan {
    let mut planner = Planner::new(snapshot, options, demand);
    for index in order {
        planner.place(index, &requests[index]);
    }
    let plan = planner.finish();
    debug_assert_eq!(
        crate::verify_plan_at(snapshot, requests, &plan, options.now_ms),
        Ok(())
    );
    plan
}

/// `demand` as the fragmentation-aware policy weighs it: each shape by the scarcity of the
/// GPU types it accepts among the healthy devices of the workers that policy places on and
/// that take work ([`gpu_fit::weighed_by_scarcity`]; a lost or draining worker's devices
/// are no supply). Borrowed as given, at no cost, when no shape names types or no worker
/// uses the policy.
fn weighed_demand<'a>(snapshot: &Snapshot, demand: &'a [DemandShape]) -> Cow<'a, [DemandShape]> {
    let typed = demand.iter().any(|shape| shape.types != GpuPreference::Any);
    let fgd_workers =
        || (snapshot.workers.iter()).filter(|worker| worker.pool.policy == PlacementPolicy::Fgd);
    if !typed || fgd_workers().next().is_none() {
        return Cow::Borrowed(demand);
    }
    let mut gpus_by_type: BTreeMap<GpuType, u64> = BTreeMap::new();
    for worker in fgd_workers() {
        if let (Some(ty), true) = (&worker.gpu_type, worker.status.accepts_work()) {
            let healthy = u64::try_from(worker.device_slots().len()).unwrap_or(u64::MAX);
            *gpus_by_type.entry(ty.clone()).or_insert(0) += healthy;
        }
    }
    Cow::Owned(gpu_fit::weighed_by_scarcity(demand, &gpus_by_type))
}

/// The workers holding each image that some worker holds.
fn warm_workers(workers: &[crate::Worker]) -> HashMap<&str, Vec<usize>> {
    let mut warm: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, worker) in workers.iter().enumerate() {
        for image in &worker.images {
            warm.entry(image.as_str()).or_default().push(index);
        }
    }
    warm
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
    /// Free capacity of each worker after the placements made so far. Its GPU count is the
    /// number of wholly free devices.
    free: Vec<Resources>,
    /// Free milli-GPUs of each worker's bookable devices after the placements made so far.
    slots: Vec<Vec<DeviceSlot>>,
    /// The GPU demand the fragmentation-aware policy weighs placements against, weighed by
    /// scarcity ([`weighed_demand`]).
    demand: Cow<'a, [DemandShape]>,
    /// Placements made so far, by worker index.
    placements: Vec<Vec<Placement>>,
    unplaced: Vec<Unplaced>,
    /// The workers holding each image, when image locality is on.
    warm: HashMap<&'a str, Vec<usize>>,
    /// The bucket of each worker; empty when no worker is warm.
    bucket_of: Vec<usize>,
}

/// A feasible worker's rank for a request (higher is better: fit, then affinity) and the
/// devices it would give the request.
type Ranked = ((u64, u64), Vec<DeviceShare>);

/// The fragmentation part of the fit of a placement that leaves the expected fragmentation
/// unchanged; each weighted milli-GPU of growth lowers it by one (a shrink raises it).
const FGD_NEUTRAL: i128 = 1 << 40;
/// The fragmentation part is scaled by this, so that among placements that fragment alike
/// the pack score (below [`crate::scoring::ROOM_SCALE`]) and the warm bonus
/// ([`WARM_BONUS`], half of that) decide: their sum stays below it.
const FGD_SCALE: i128 = 1 << 21;

impl<'a> Planner<'a> {
    fn new(snapshot: &'a Snapshot, options: PlanOptions, demand: &'a [DemandShape]) -> Self {
        let slots: Vec<Vec<DeviceSlot>> =
            snapshot.workers.iter().map(|w| w.device_slots()).collect();
        let free = snapshot
            .workers
            .iter()
            .zip(&slots)
            .map(|(w, slots)| Resources {
                // The device list and the count must both allow a booking.
                gpu_count: w.free.gpu_count.min(gpu_fit::whole_free(slots)),
                ..w.free
            })
            .collect();
        let buckets = index::build(&snapshot.workers);
        let warm = if options.image_locality {
            warm_workers(&snapshot.workers)
        } else {
            HashMap::new()
        };
        // Only read for warm workers: a fleet that holds no image pays nothing for it.
        let mut bucket_of = Vec::new();
        if !warm.is_empty() {
            bucket_of = vec![0; snapshot.workers.len()];
            for (position, bucket) in buckets.iter().enumerate() {
                for &worker in &bucket.workers {
                    bucket_of[worker] = position;
                }
            }
        }
        Planner {
            snapshot,
            options,
            warm,
            bucket_of,
            buckets,
            free,
            slots,
            demand: weighed_demand(snapshot, demand),
            placements: vec![Vec::new(); snapshot.workers.len()],
            unplaced: Vec::new(),
        }
    }

    /// Places one request, or records why it cannot be placed.
    fn place(&mut self, index: usize, request: &ContainerRequest) {
        if let Err(error) = request.validate() {
            return self.reject(index, request, UnplacedReason::Invalid(error.to_string()));
        }
        match self.choose_in_chain(request) {
            Some((worker, devices)) => self.reserve(worker, index, request, devices),
            None => {
                let reason = self.classify_chain(request);
                self.reject(index, request, reason);
            }
        }
    }

    /// The best worker of the request's first effective choice that has one (its own
    /// choice, then each fallback step due by [`PlanOptions::now_ms`], in order): a worker
    /// of a later step is only used when no worker of an earlier one has room.
    fn choose_in_chain(&mut self, request: &ContainerRequest) -> Option<(usize, Vec<DeviceShare>)> {
        // The rules never read the chain, so the request itself stands for its own choice
        // (the first effective one), without a copy.
        if let Some(found) = self.choose(request) {
            return Some(found);
        }
        let pools = &self.snapshot.pools;
        if !fallback::has_chain(request, pools) {
            return None;
        }
        let waited = self.options.now_ms.saturating_sub(request.submitted_at_ms);
        fallback::effective(request, pools, waited)
            .iter()
            .skip(1)
            .find_map(|choice| self.choose(&choice.apply(request)))
    }

    /// Why no worker took the request, over every choice it may ever have (steps not yet
    /// due too): the most hopeful reason wins, so a request that a later step could place
    /// waits for it instead of failing.
    fn classify_chain(&self, request: &ContainerRequest) -> UnplacedReason {
        let pools = &self.snapshot.pools;
        if !fallback::has_chain(request, pools) {
            return self.classify(request);
        }
        fallback::ever(request, pools)
            .iter()
            .map(|choice| self.classify(&choice.apply(request)))
            .max_by_key(hope)
            .unwrap_or(UnplacedReason::NoMatchingPool)
    }

    /// Deducts the request and its devices from the worker's working copy and records the
    /// placement.
    fn reserve(
        &mut self,
        worker: usize,
        index: usize,
        request: &ContainerRequest,
        devices: Vec<DeviceShare>,
    ) {
        // `choose` only returns workers whose free capacity and devices hold the request.
        let Some(left) = self.after(worker, &request.resources, &devices) else {
            return;
        };
        if gpu_fit::take(&mut self.slots[worker], &devices) {
            self.free[worker] = left;
            self.placements[worker].push(Placement {
                request: index,
                container: request.id.clone(),
                resources: request.resources,
                devices,
            });
        }
    }

    /// The worker's free capacity once `resources` and `devices` are taken from it, its GPU
    /// count lowered by the wholly free devices a fraction breaks into; `None` when it does
    /// not hold them.
    fn after(
        &self,
        worker: usize,
        resources: &Resources,
        devices: &[DeviceShare],
    ) -> Option<Resources> {
        let mut left = self.free[worker].checked_sub(*resources)?;
        let broken = gpu_fit::wholes_broken(&self.slots[worker], devices);
        left.gpu_count = left.gpu_count.checked_sub(broken)?;
        Some(left)
    }

    fn reject(&mut self, index: usize, request: &ContainerRequest, reason: UnplacedReason) {
        self.unplaced.push(Unplaced {
            request: index,
            container: request.id.clone(),
            reason,
        });
    }

    /// The best worker for the request and the devices it gets there: the best group score
    /// first, then within the group the best fit, then rendezvous affinity.
    fn choose(&mut self, request: &ContainerRequest) -> Option<(usize, Vec<DeviceShare>)> {
        let mut candidates = self.candidate_buckets(request);
        candidates.sort_by_key(|&(score, bucket)| (Reverse(score), bucket));
        for group in candidates.chunk_by(|a, b| a.0 == b.0) {
            let buckets: Vec<usize> = group.iter().map(|&(_, bucket)| bucket).collect();
            if let Some(found) = self.best_in(&buckets, request) {
                return Some(found);
            }
            if remembers_failures(request) {
                for &bucket in &buckets {
                    self.buckets[bucket].remember_full_for(request.resources);
                }
            }
        }
        None
    }

    /// The buckets whose workers may take the request (static rules and status), with
    /// their group scores.
    fn candidate_buckets(&self, request: &ContainerRequest) -> Vec<(GroupScore, usize)> {
        let mut out = Vec::new();
        for (position, bucket) in self.buckets.iter().enumerate() {
            if remembers_failures(request) && bucket.known_full_for(&request.resources) {
                continue;
            }
            let workers = &self.snapshot.workers;
            let Ok(rank) = bucket.check(workers, Stage::Status, request) else {
                continue;
            };
            out.push((
                GroupScore::of(&workers[bucket.representative], request, rank),
                position,
            ));
        }
        out
    }

    /// The best feasible worker among the buckets' members and its devices. Groups larger
    /// than [`PlanOptions::max_candidates`] are sampled: the walk starts at an offset drawn
    /// from the request id and stops after that many feasible workers.
    fn best_in(
        &self,
        buckets: &[usize],
        request: &ContainerRequest,
    ) -> Option<(usize, Vec<DeviceShare>)> {
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
        let mut best: Option<(Ranked, usize)> = None;
        let mut feasible = 0;
        let seed = request_seed(&request.id);
        for step in 0..len {
            let position = if start + step < len {
                start + step
            } else {
                start + step - len
            };
            let worker = member_at(&members, position);
            let Some(ranked) = self.rank(worker, request, seed) else {
                continue;
            };
            feasible += 1;
            if best
                .as_ref()
                .is_none_or(|((best_key, _), _)| ranked.0 > *best_key)
            {
                best = Some((ranked, worker));
            }
            if !exact && feasible >= self.options.max_candidates {
                break;
            }
        }
        if !exact {
            // A sample may miss the few workers that hold the image: rank those as well.
            for worker in self.warm_members(buckets, request) {
                if let Some(ranked) = self.rank(worker, request, seed)
                    && best
                        .as_ref()
                        .is_none_or(|((best_key, _), _)| ranked.0 > *best_key)
                {
                    best = Some((ranked, worker));
                }
            }
        }
        best.map(|((_, devices), worker)| (worker, devices))
    }

    /// The workers of `buckets` that hold the request's image.
    fn warm_members<'b>(
        &'b self,
        buckets: &'b [usize],
        request: &ContainerRequest,
    ) -> impl Iterator<Item = usize> + 'b {
        let image = request.payload.image.as_deref();
        image
            .and_then(|image| self.warm.get(image))
            .into_iter()
            .flatten()
            .copied()
            .filter(|&worker| buckets.contains(&self.bucket_of[worker]))
    }

    /// True when image locality is on and the worker holds the request's image. (`warm`
    /// is empty with locality off or when no worker holds an image: one check then.)
    fn is_warm(&self, worker: usize, request: &ContainerRequest) -> bool {
        !self.warm.is_empty()
            && request
                .payload
                .image
                .as_deref()
                .is_some_and(|image| self.snapshot.workers[worker].holds_image(image))
    }

    /// The worker's rank for the request and the devices it would give, or `None` when its
    /// free capacity or devices do not hold the request.
    fn rank(&self, worker: usize, request: &ContainerRequest, seed: u64) -> Option<Ranked> {
        let spec = &self.snapshot.workers[worker];
        let ask = request.gpu_ask();
        let (fit, devices) = match spec.pool.policy {
            // Every request, CPU-only ones too: taking a GPU worker's CPU or memory can
            // strand its free GPUs, which FGD weighs like any other fragment.
            PlacementPolicy::Fgd => self.least_fragmenting(worker, request, ask)?,
            policy => {
                let (left, devices) = if ask == GpuAsk::None {
                    // A CPU-only request (most, on the hot path) takes no device: nothing
                    // to choose, no whole device to break.
                    (
                        self.free[worker].checked_sub(request.resources)?,
                        Vec::new(),
                    )
                } else {
                    let devices = gpu_fit::choose(&self.slots[worker], ask)?;
                    (self.after(worker, &request.resources, &devices)?, devices)
                };
                if !keeps_gpu_reserve(spec, request, &left) {
                    return None;
                }
                (fit_score(policy, room(&left, &spec.total)), devices)
            }
        };
        let warm = if self.is_warm(worker, request) {
            WARM_BONUS
        } else {
            0
        };
        let fit = fit.saturating_add(warm);
        Some(((fit, affinity_with_seed(seed, &spec.id)), devices))
    }

    /// Among the ways the worker's devices could hold the request, the one that grows the
    /// worker's expected fragmentation of [`Planner::demand`] least, and its fit: a
    /// CPU-only request has one way (no devices), and its growth is the GPU it strands by
    /// taking CPU or memory the demand needs; on a GPU worker it must also leave the
    /// reserve the pool keeps for GPU work, as under the other policies.
    fn least_fragmenting(
        &self,
        worker: usize,
        request: &ContainerRequest,
        ask: GpuAsk,
    ) -> Option<(u64, Vec<DeviceShare>)> {
        let slots = &self.slots[worker];
        let gpu_type = self.snapshot.workers[worker].gpu_type.as_ref();
        let before = gpu_fit::fragmentation(slots, &self.free[worker], gpu_type, &self.demand);
        let mut best: Option<(i128, Vec<DeviceShare>)> = None;
        for devices in gpu_fit::alternatives(slots, ask) {
            let Some(left) = self.after(worker, &request.resources, &devices) else {
                continue;
            };
            let mut next = slots.clone();
            if !gpu_fit::take(&mut next, &devices) {
                continue;
            }
            let after = gpu_fit::fragmentation(&next, &left, gpu_type, &self.demand);
            let growth = i128::try_from(after).ok()? - i128::try_from(before).ok()?;
            if best.as_ref().is_none_or(|(least, _)| growth < *least) {
                best = Some((growth, devices));
            }
        }
        let (growth, devices) = best?;
        let left = self.after(worker, &request.resources, &devices)?;
        let spec = &self.snapshot.workers[worker];
        if !keeps_gpu_reserve(spec, request, &left) {
            return None;
        }
        let pack = i128::from(fit_score(PlacementPolicy::Pack, room(&left, &spec.total)));
        let fit = (FGD_NEUTRAL - growth).max(0) * FGD_SCALE + pack;
        Some((u64::try_from(fit).unwrap_or(u64::MAX), devices))
    }

    /// Why no worker took the request: nothing matches, it never fits, or no room now. A
    /// GPU worker that lets a CPU-only request on could ever hold it only with its reserve
    /// for GPU work left free ([`crate::rules::needed`]).
    fn classify(&self, request: &ContainerRequest) -> UnplacedReason {
        let mut matched = false;
        for bucket in &self.buckets {
            let worker = &self.snapshot.workers[bucket.representative];
            let candidate = Candidate::static_worker(worker);
            if check_through(Stage::Class, request, &candidate).is_ok() {
                matched = true;
                if needed(request, &candidate).is_some_and(|n| bucket.could_ever_hold(&n)) {
                    return UnplacedReason::NoRoomNow;
                }
            }
        }
        for pool in &self.snapshot.pools {
            let candidate = Candidate::pool(pool);
            if check_through(Stage::Class, request, &candidate).is_ok() {
                matched = true;
                if needed(request, &candidate).is_some_and(|n| n.fits_in(&pool.worker_size)) {
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

/// True unless the request is CPU-only and `left`, the worker's free capacity after placing
/// it, would fall below the reserve the worker keeps for GPU work (the planner's side of
/// [`crate::rules::KeepsGpuReserve`], which the plan's verification checks against).
fn keeps_gpu_reserve(worker: &crate::Worker, request: &ContainerRequest, left: &Resources) -> bool {
    gpu_reserve(request, &Candidate::static_worker(worker))
        .is_none_or(|reserve| reserve.as_resources().fits_in(left))
}

/// How much waiting could help a request not placed for `reason`: room may come for
/// [`UnplacedReason::NoRoomNow`]; nothing helps the others, but "never fits" says more
/// than "nothing matches".
fn hope(reason: &UnplacedReason) -> u8 {
    match reason {
        UnplacedReason::NoRoomNow | UnplacedReason::OverQuota(_) => 2,
        UnplacedReason::NeverFits => 1,
        UnplacedReason::NoMatchingPool
        | UnplacedReason::Invalid(_)
        | UnplacedReason::NeverWithinQuota(_) => 0,
    }
}

/// True when a failed request may mark its buckets full for larger requests: not for a GPU
/// fraction, whose failure says nothing of a smaller fraction with the same CPU and memory.
fn remembers_failures(request: &ContainerRequest) -> bool {
    request.gpu_fraction_milli.is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::{
        CpuReserve, GpuPreference, GpuType, Payload, PoolAttributes, PoolName, RuntimeName, Worker,
        WorkerId, WorkerRegistration, WorkerStatus,
    };

    /// An 8-GPU, 96-core worker of an fgd (or other) pool that lets CPU-only requests on
    /// with `reserve` cores kept for GPU work, all GPUs free and `free_cores` cores free.
    fn gpu_worker(id: &str, policy: PlacementPolicy, free_cores: u64, reserve: u64) -> Worker {
        let total = Resources::new(96_000, 393_216, 8);
        let registration = WorkerRegistration {
            id: WorkerId::new(id).unwrap(),
            pool: PoolAttributes {
                policy,
                cpu_on_gpu: Some(CpuReserve {
                    cpu_millicores: reserve * 1000,
                    memory_mib: 0,
                }),
                ..PoolAttributes::plain(PoolName::new("gpu").unwrap())
            },
            status: WorkerStatus::Available,
            total,
            gpu_type: Some(GpuType::A10G),
            devices: Vec::new(),
            runtime: RuntimeName::PROCESS,
        };
        let free = Resources::new(free_cores * 1000, 393_216, 8);
        registration.with_devices().unwrap().into_worker(free, 1, 1)
    }

    /// A request for one whole GPU of any type and `cores` cores.
    fn one_gpu(cores: u64) -> ContainerRequest {
        let mut request = cpu_only(cores);
        request.resources.gpu_count = 1;
        request
    }

    fn cpu_only(cores: u64) -> ContainerRequest {
        ContainerRequest {
            id: crate::ContainerId::new("cpu-0").unwrap(),
            tenant: "t".into(),
            resources: Resources::new(cores * 1000, 1024, 0),
            gpu_fraction_milli: None,
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: 0,
            payload: Payload::default(),
            fallback: Vec::new(),
            max_retries: 0,
        }
    }

    /// Whole-GPU requests of 16 cores: what the GPU workers are expected to serve.
    fn demand() -> Vec<DemandShape> {
        vec![DemandShape {
            resources: Resources::new(16_000, 1024, 0),
            gpus: GpuAsk::Whole(1),
            types: GpuPreference::Any,
            weight: 1,
        }]
    }

    /// Under fgd a CPU-only request goes where taking its cores strands no GPU: 10 of the
    /// 20 free cores would leave too few for a 16-core GPU request, so all eight free GPUs
    /// there would be lost to the demand; the worker with 60 free cores loses none. Pack
    /// takes the fuller worker.
    #[test]
    fn fgd_puts_a_cpu_only_request_where_it_strands_no_gpu() {
        let place = |policy| {
            let snapshot = Snapshot {
                workers: vec![
                    gpu_worker("w0", policy, 20, 0),
                    gpu_worker("w1", policy, 60, 0),
                ],
                pools: Vec::new(),
            };
            let plan = plan_for_demand(
                &snapshot,
                &[cpu_only(10)],
                PlanOptions::default(),
                &demand(),
            );
            assert_eq!(plan.workers.len(), 1);
            plan.workers[0].worker.as_str().to_owned()
        };
        assert_eq!(place(PlacementPolicy::Fgd), "w1");
        assert_eq!(place(PlacementPolicy::Pack), "w0");
    }

    /// Under fgd, a GPU request that takes any type goes to the worker whose type the demand
    /// does not ask for, keeping the asked-for type's devices for the requests that need
    /// them; pack, blind to the demand, takes the fuller worker.
    #[test]
    fn fgd_keeps_the_gpu_type_the_demand_asks_for() {
        let place = |policy| {
            let mut h100 = gpu_worker("w0", policy, 90, 0);
            h100.gpu_type = Some(GpuType::H100);
            let a10g = gpu_worker("w1", policy, 96, 0);
            let snapshot = Snapshot {
                workers: vec![h100, a10g],
                pools: Vec::new(),
            };
            let request = one_gpu(8);
            let demand = [DemandShape {
                types: GpuPreference::Types(vec![GpuType::H100]),
                ..demand()[0].clone()
            }];
            let plan = plan_for_demand(&snapshot, &[request], PlanOptions::default(), &demand);
            assert_eq!(plan.workers.len(), 1, "{plan:?}");
            plan.workers[0].worker.as_str().to_owned()
        };
        assert_eq!(place(PlacementPolicy::Fgd), "w1");
        assert_eq!(place(PlacementPolicy::Pack), "w0");
    }

    /// A request that takes any type goes to the common type, not to the rare one that a
    /// typed shape needs: weighed by popularity alone (the paper), the rare G3 worker would
    /// win, since more weight rejects it (A10G-only, 3) than rejects A10G (G3-only, 2);
    /// weighed by scarcity, G3-only counts 2 * 32 / 8 = 8 and A10G-only 3 * 32 / 24 = 4.
    #[test]
    fn fgd_keeps_a_rare_type_for_the_requests_that_need_it() {
        let g3 = GpuType::Other("G3".to_owned());
        let mut workers: Vec<Worker> = (0..12)
            .map(|i| gpu_worker(&format!("w{i}"), PlacementPolicy::Fgd, 96, 0))
            .collect();
        workers[0].gpu_type = Some(g3.clone());
        // Devices that are no supply, with no room: two draining G3 workers, two whose G3
        // devices are all unhealthy, three G3 workers and one A10G worker of another
        // policy. Counted (any one kind), they would make G3 as common as A10G, or rarer
        // only among the other policy's workers, and the request would go to w0.
        for worker in workers.iter_mut().skip(4) {
            worker.gpu_type = Some(g3.clone());
            worker.free = Resources::new(0, 0, 0);
        }
        for worker in &mut workers[4..6] {
            worker.status = WorkerStatus::Draining;
        }
        for worker in &mut workers[6..8] {
            for device in &mut worker.gpus {
                device.device.healthy = false;
            }
        }
        for worker in &mut workers[8..12] {
            worker.pool.policy = PlacementPolicy::Pack;
        }
        workers[11].gpu_type = Some(GpuType::A10G);
        let snapshot = Snapshot {
            workers,
            pools: Vec::new(),
        };
        let typed = |ty: GpuType, weight| DemandShape {
            types: GpuPreference::Types(vec![ty]),
            weight,
            ..demand()[0].clone()
        };
        let demand = [typed(g3, 2), typed(GpuType::A10G, 3)];
        let request = one_gpu(8);
        let plan = plan_for_demand(&snapshot, &[request], PlanOptions::default(), &demand);
        assert_eq!(plan.workers.len(), 1, "{plan:?}");
        assert_ne!(plan.workers[0].worker.as_str(), "w0", "{plan:?}");
    }

    /// Scored by fragmentation, a CPU-only request still leaves a GPU worker's reserve for
    /// GPU work free.
    #[test]
    fn fgd_keeps_the_reserve_for_gpu_work() {
        let snapshot = Snapshot {
            workers: vec![gpu_worker("w0", PlacementPolicy::Fgd, 20, 16)],
            pools: Vec::new(),
        };
        let plan = plan_for_demand(
            &snapshot,
            &[cpu_only(10)],
            PlanOptions::default(),
            &demand(),
        );
        assert!(plan.workers.is_empty());
        assert_eq!(plan.unplaced.len(), 1);
    }
}
