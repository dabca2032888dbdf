//! The placement rules behind one seam: each rule is one [`PlacementRule`], and [`RULES`]
//! lists them (as Nomad's stack lists its feasibility checkers). Feasibility
//! ([`crate::feasibility`]), the planner's buckets and its per-bucket checks all walk this one
//! list, so a new rule is one type and one line here.
//!
//! A rule reads facts of a [`Candidate`]: a worker, or the worker a pool would add. Rules of
//! the [`Stage::Class`] and [`Stage::Status`] stages read facts that do not change while a
//! batch is planned, and each names the facts it reads in [`PlacementRule::bucket_key`]: the
//! planner's buckets (Nomad's computed node class) are the workers with equal keys, so two
//! workers share a bucket exactly when every static rule (and the group score) treats them
//! alike.

use crate::feasibility::Infeasible;
use crate::{
    ContainerRequest, CpuReserve, GpuType, Pool, PoolAttributes, Resources, Worker, WorkerStatus,
};

/// When a rule's verdict can change, which decides where it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// On pool attributes and the GPU type: the same for a worker and for its pool's shape
    /// (used to find the pool that should grow).
    Class,
    /// On the worker's status: fixed while a batch is planned, unknown for a pool's shape.
    Status,
    /// On capacity: changes with every placement.
    Capacity,
}

/// What the rules see of a worker, or of the worker a pool would add. Facts a candidate
/// does not have (a pool's status, capacity not checked) are `None`, and rules on them pass.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Pool attributes.
    pub attributes: &'a PoolAttributes,
    /// The GPU type, `None` without GPUs (see [`crate::feasibility::worker_gpu_type`]).
    pub gpu_type: Option<&'a GpuType>,
    /// The status.
    pub status: Option<WorkerStatus>,
    /// Total capacity.
    pub total: Option<&'a Resources>,
    /// Free capacity (the worker's own, or a planner's working copy of it).
    pub free: Option<&'a Resources>,
}

impl<'a> Candidate<'a> {
    /// Only the class facts: pool attributes and GPU type.
    pub fn class(attributes: &'a PoolAttributes, gpu_type: Option<&'a GpuType>) -> Self {
        Candidate {
            attributes,
            gpu_type,
            status: None,
            total: None,
            free: None,
        }
    }

    /// A worker with every fact, its free capacity given as `free`.
    pub fn worker(worker: &'a Worker, free: &'a Resources) -> Self {
        Candidate {
            status: Some(worker.status),
            total: Some(&worker.total),
            free: Some(free),
            ..Self::of_worker_class(worker)
        }
    }

    /// A worker's static facts (class and status), without capacity.
    pub fn static_worker(worker: &'a Worker) -> Self {
        Candidate {
            status: Some(worker.status),
            ..Self::of_worker_class(worker)
        }
    }

    /// The class facts of the worker a pool would add.
    pub fn pool(pool: &'a Pool) -> Self {
        let gpu = pool
            .gpu_type
            .as_ref()
            .filter(|_| pool.worker_size.gpu_count > 0);
        Self::class(&pool.attributes, gpu)
    }

    fn of_worker_class(worker: &'a Worker) -> Self {
        Self::class(&worker.pool, crate::feasibility::worker_gpu_type(worker))
    }
}

/// One worker fact in a bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fact<'a> {
    /// Not set (a free slot, or an absent optional fact).
    #[default]
    Absent,
    /// A name.
    Text(&'a str),
    /// A number.
    Int(i64),
    /// A flag.
    Flag(bool),
}

/// How many facts a bucket key holds; a worker whose rules name more gets a bucket of its
/// own (correct, only slower).
pub const KEY_FACTS: usize = 12;

/// The facts the static rules read of one worker: workers with equal keys share a bucket.
/// Borrowed from the worker, so building one allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct BucketKey<'a> {
    facts: [Fact<'a>; KEY_FACTS],
    len: usize,
    overflow: bool,
}

impl PartialEq for BucketKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.facts() == other.facts() && self.overflow == other.overflow
    }
}

impl Eq for BucketKey<'_> {}

impl std::hash::Hash for BucketKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Only the facts pushed: the free slots are all alike.
        self.facts().hash(state);
    }
}

impl<'a> BucketKey<'a> {
    /// The facts pushed so far.
    pub fn facts(&self) -> &[Fact<'a>] {
        self.facts.get(..self.len).unwrap_or(&self.facts)
    }

    /// Adds one fact.
    pub fn push(&mut self, fact: Fact<'a>) {
        match self.facts.get_mut(self.len) {
            Some(slot) => {
                *slot = fact;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// True when the rules named more than [`KEY_FACTS`] facts.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }
}

/// One placement rule.
pub trait PlacementRule: Sync {
    /// When its verdict can change.
    fn stage(&self) -> Stage;

    /// `Ok(rank)` when the request may go to the candidate, where `rank` is the candidate's
    /// position in a preference list of the request (0 when the rule ranks nothing), or why
    /// not. Facts the candidate does not have pass.
    fn feasible(
        &self,
        request: &ContainerRequest,
        candidate: &Candidate<'_>,
    ) -> Result<usize, Infeasible>;

    /// Adds the facts of `candidate` the rule reads to `key` (nothing for capacity rules).
    fn bucket_key<'a>(&self, candidate: &Candidate<'a>, key: &mut BucketKey<'a>);
}

/// The rules, in the order they are checked (which decides the reason given when several
/// refuse): stages in order, class rules first.
pub static RULES: [&dyn PlacementRule; 7] = [
    &PoolSelector,
    &Preemptible,
    &GpuTypeAccepted,
    &AcceptsWork,
    &FitsWorker,
    &FitsFree,
    &KeepsGpuReserve,
];

/// Runs every rule of a stage up to `last` against the candidate; on success, the GPU type's
/// rank in the request's preference list (the largest rank any rule gave).
pub fn check_through(
    last: Stage,
    request: &ContainerRequest,
    candidate: &Candidate<'_>,
) -> Result<usize, Infeasible> {
    let mut rank = 0;
    for rule in &RULES {
        if rule.stage() > last {
            break;
        }
        rank = rank.max(rule.feasible(request, candidate)?);
    }
    Ok(rank)
}

/// The bucket key of a worker: the facts every static rule reads.
pub fn bucket_key(worker: &Worker) -> BucketKey<'_> {
    let candidate = Candidate::static_worker(worker);
    let mut key = BucketKey::default();
    for rule in &RULES {
        if rule.stage() < Stage::Capacity {
            rule.bucket_key(&candidate, &mut key);
        }
    }
    key
}

/// The request's pool selector, required and forbidden.
pub struct PoolSelector;

impl PlacementRule for PoolSelector {
    fn stage(&self) -> Stage {
        Stage::Class
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        match &request.pool_selector {
            Some(wanted) if *wanted != c.attributes.pool => Err(Infeasible::OtherPool {
                wanted: wanted.to_string(),
                actual: c.attributes.pool.to_string(),
            }),
            None if c.attributes.requires_pool_selector => {
                Err(Infeasible::SelectorRequired(c.attributes.pool.to_string()))
            }
            _ => Ok(0),
        }
    }
    fn bucket_key<'a>(&self, c: &Candidate<'a>, key: &mut BucketKey<'a>) {
        key.push(Fact::Text(c.attributes.pool.as_str()));
        key.push(Fact::Flag(c.attributes.requires_pool_selector));
    }
}

/// Non-preemptible requests never go to preemptible workers.
pub struct Preemptible;

impl PlacementRule for Preemptible {
    fn stage(&self) -> Stage {
        Stage::Class
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        if c.attributes.preemptible && !request.preemptible {
            return Err(Infeasible::Preemptible);
        }
        Ok(0)
    }
    fn bucket_key<'a>(&self, c: &Candidate<'a>, key: &mut BucketKey<'a>) {
        key.push(Fact::Flag(c.attributes.preemptible));
    }
}

/// CPU-only requests on GPU workers only where the pool allows it
/// ([`PoolAttributes::cpu_on_gpu`]; the reserve it keeps is [`KeepsGpuReserve`]'s, a
/// capacity check); GPU requests on workers with a GPU type in their preference list (ranked
/// by its position there).
pub struct GpuTypeAccepted;

impl PlacementRule for GpuTypeAccepted {
    fn stage(&self) -> Stage {
        Stage::Class
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        match (c.gpu_type, request.wants_gpus()) {
            (None, false) => Ok(0),
            (Some(_), false) if c.attributes.cpu_on_gpu.is_some() => Ok(0),
            (Some(_), false) => Err(Infeasible::GpuWorkerForCpuRequest),
            (None, true) => Err(Infeasible::NoGpus),
            (Some(ty), true) => request
                .gpu
                .rank(ty)
                .ok_or_else(|| Infeasible::GpuTypeNotAccepted(ty.clone())),
        }
    }
    fn bucket_key<'a>(&self, c: &Candidate<'a>, key: &mut BucketKey<'a>) {
        key.push(c.gpu_type.map_or(Fact::Absent, |ty| Fact::Text(ty.name())));
        // The switch and its reserve: a bucket's workers then agree on whether a CPU-only
        // request may come and on what it must leave free (the planner's per-bucket
        // "never fits" and "known full" shortcuts rely on that).
        let reserve = c.attributes.cpu_on_gpu;
        key.push(Fact::Flag(reserve.is_some()));
        key.push(reserve.map_or(Fact::Absent, |r| Fact::Int(clamp(r.cpu_millicores))));
        key.push(reserve.map_or(Fact::Absent, |r| Fact::Int(clamp(r.memory_mib))));
    }
}

/// A reserve as a key fact; values beyond `i64` (never configured in practice) share one.
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The reserve a candidate keeps free for GPU work against `request`: set exactly when the
/// request is CPU-only and the candidate a GPU worker whose pool lets CPU-only requests on.
pub fn gpu_reserve(request: &ContainerRequest, candidate: &Candidate<'_>) -> Option<CpuReserve> {
    match (candidate.gpu_type, request.wants_gpus()) {
        (Some(_), false) => candidate.attributes.cpu_on_gpu,
        _ => None,
    }
}

/// What a candidate must have free (or in all) to take `request`: the request, plus the
/// reserve it keeps for GPU work when [`gpu_reserve`] has one. `None` when that sum
/// overflows: no worker could ever hold it.
pub fn needed(request: &ContainerRequest, candidate: &Candidate<'_>) -> Option<Resources> {
    match gpu_reserve(request, candidate) {
        Some(reserve) => request.resources.checked_add(reserve.as_resources()),
        None => Some(request.resources),
    }
}

/// The worker's status accepts new work.
pub struct AcceptsWork;

impl PlacementRule for AcceptsWork {
    fn stage(&self) -> Stage {
        Stage::Status
    }
    fn feasible(&self, _: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        match c.status {
            Some(status) if !status.accepts_work() => Err(Infeasible::NotAcceptingWork(status)),
            _ => Ok(0),
        }
    }
    fn bucket_key<'a>(&self, c: &Candidate<'a>, key: &mut BucketKey<'a>) {
        key.push(c.status.map_or(Fact::Absent, |s| Fact::Text(s.as_str())));
    }
}

/// The request fits the worker's total capacity.
pub struct FitsWorker;

impl PlacementRule for FitsWorker {
    fn stage(&self) -> Stage {
        Stage::Capacity
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        match c.total {
            Some(total) if !request.resources.fits_in(total) => Err(Infeasible::LargerThanWorker {
                needed: request.resources,
                total: *total,
            }),
            _ => Ok(0),
        }
    }
    fn bucket_key<'a>(&self, _: &Candidate<'a>, _: &mut BucketKey<'a>) {}
}

/// The request fits the worker's free capacity.
pub struct FitsFree;

impl PlacementRule for FitsFree {
    fn stage(&self) -> Stage {
        Stage::Capacity
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        match c.free {
            Some(free) if !request.resources.fits_in(free) => Err(Infeasible::NoRoom {
                needed: request.resources,
                free: *free,
            }),
            _ => Ok(0),
        }
    }
    fn bucket_key<'a>(&self, _: &Candidate<'a>, _: &mut BucketKey<'a>) {}
}

/// A CPU-only request on a GPU worker leaves the worker's reserve for GPU work free:
/// free less the request stays at or above [`PoolAttributes::cpu_on_gpu`] in CPU and memory.
/// A capacity check, since free changes with every placement; it passes for every other
/// pairing (the reserve is only against CPU work, so GPU requests may use it).
pub struct KeepsGpuReserve;

impl PlacementRule for KeepsGpuReserve {
    fn stage(&self) -> Stage {
        Stage::Capacity
    }
    fn feasible(&self, request: &ContainerRequest, c: &Candidate<'_>) -> Result<usize, Infeasible> {
        let (Some(reserve), Some(free)) = (gpu_reserve(request, c), c.free) else {
            return Ok(0);
        };
        match needed(request, c) {
            Some(needed) if needed.fits_in(free) => Ok(0),
            _ => Err(Infeasible::GpuReserve {
                needed: request.resources,
                reserve,
                free: *free,
            }),
        }
    }
    fn bucket_key<'a>(&self, _: &Candidate<'a>, _: &mut BucketKey<'a>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_listed_stage_by_stage() {
        assert!(RULES.windows(2).all(|w| w[0].stage() <= w[1].stage()));
    }

    #[test]
    fn a_key_that_overflows_says_so() {
        let mut key = BucketKey::default();
        for i in 0..KEY_FACTS {
            key.push(Fact::Int(i as i64));
        }
        assert!(!key.overflowed());
        key.push(Fact::Absent);
        assert!(key.overflowed());
    }
}
