//! Stage 1, feasibility: may this request run on this worker at all, and right now?
//!
//! The same rules serve the planner and every committer (the planner and the committer must
//! agree, or a plan is rejected forever). The rules themselves are [`crate::rules::RULES`]:
//! static rules look only at attributes that do not change while a batch is planned (pool,
//! GPU type, preemptibility); [`check`] runs them all, adding the worker's status and free
//! capacity.

use crate::fallback;
use crate::rules::{Candidate, Stage, check_through};
use crate::{ContainerRequest, GpuType, PoolAttributes, Resources, Worker, WorkerStatus};

/// Why a request may not go to a worker (or pool).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Infeasible {
    /// The request names a pool selector and this is another pool.
    #[error("the request selects pool {wanted}, the worker is in pool {actual}")]
    OtherPool {
        /// The pool the request selects.
        wanted: String,
        /// The worker's pool.
        actual: String,
    },
    /// The pool only takes requests that select it, and this request does not.
    #[error("pool {0} requires a pool selector")]
    SelectorRequired(String),
    /// A non-preemptible request and a preemptible worker.
    #[error("the worker is preemptible and the request is not")]
    Preemptible,
    /// A CPU-only request and a GPU worker whose pool does not let CPU-only requests on
    /// ([`crate::PoolAttributes::cpu_on_gpu`] unset).
    #[error("CPU-only requests do not go to this pool's GPU workers")]
    GpuWorkerForCpuRequest,
    /// A GPU request and a worker without GPUs.
    #[error("the request needs GPUs and the worker has none")]
    NoGpus,
    /// The worker's GPU type is not in the request's preference list.
    #[error("GPU type {0} is not one the request accepts")]
    GpuTypeNotAccepted(GpuType),
    /// The worker is draining or disabled.
    #[error("the worker is {0} and takes no new containers")]
    NotAcceptingWork(WorkerStatus),
    /// The request is larger than the worker's total capacity.
    #[error("the request needs {needed}, the worker has {total} in all")]
    LargerThanWorker {
        /// What the request needs.
        needed: Resources,
        /// The worker's total capacity.
        total: Resources,
    },
    /// A CPU-only request on a GPU worker would eat into what the worker keeps free for GPU
    /// work.
    #[error(
        "the request needs {needed}, the worker has {free} free and keeps {reserve} for GPU work"
    )]
    GpuReserve {
        /// What the request needs.
        needed: Resources,
        /// What the worker keeps free for GPU work.
        reserve: crate::CpuReserve,
        /// The worker's free capacity.
        free: Resources,
    },
    /// The worker's free capacity is too small right now.
    #[error("the request needs {needed}, the worker has {free} free")]
    NoRoom {
        /// What the request needs.
        needed: Resources,
        /// The worker's free capacity.
        free: Resources,
    },
}

/// The static rules ([`Stage::Class`]), on a pool's attributes and GPU type (so they serve
/// for workers and for pools an autoscaler could grow). On success, returns the GPU type's
/// rank in the request's preference list (0 for CPU-only requests).
pub fn check_static(
    attributes: &PoolAttributes,
    gpu_type: Option<&GpuType>,
    request: &ContainerRequest,
) -> Result<usize, Infeasible> {
    check_through(
        Stage::Class,
        request,
        &Candidate::class(attributes, gpu_type),
    )
}

/// The worker's GPU type as the static rules see it: `None` for a worker without GPUs.
pub fn worker_gpu_type(worker: &Worker) -> Option<&GpuType> {
    worker
        .gpu_type
        .as_ref()
        .filter(|_| worker.total.gpu_count > 0)
}

/// Every rule, against the given free capacity (the worker's own, or a working copy of it).
/// On success, returns the GPU type's rank in the request's preference list.
pub fn check(
    worker: &Worker,
    free: &Resources,
    request: &ContainerRequest,
) -> Result<usize, Infeasible> {
    check_through(Stage::Capacity, request, &Candidate::worker(worker, free))
}

/// [`check`] against every effective choice of the request after it has waited
/// `waited_ms` ([`crate::fallback::effective`]): passes when one of them does; otherwise
/// the reason the request's own choice gives.
pub fn check_at(
    worker: &Worker,
    free: &Resources,
    request: &ContainerRequest,
    pools: &[crate::Pool],
    waited_ms: u64,
) -> Result<usize, Infeasible> {
    let own = check(worker, free, request);
    if own.is_ok() || !fallback::has_chain(request, pools) {
        return own;
    }
    fallback::effective(request, pools, waited_ms)
        .iter()
        .skip(1)
        .find_map(|choice| check(worker, free, &choice.apply(request)).ok())
        .map_or(own, Ok)
}

/// [`demand_target`] for the request's most preferred effective choice (after it has
/// waited `waited_ms`) that names one: the pool of the best step currently acceptable.
pub fn demand_target_at(
    snapshot: &crate::Snapshot,
    request: &ContainerRequest,
    waited_ms: u64,
) -> Option<(crate::PoolName, Option<GpuType>)> {
    if !fallback::has_chain(request, &snapshot.pools) {
        return demand_target(snapshot, request);
    }
    fallback::effective(request, &snapshot.pools, waited_ms)
        .iter()
        .find_map(|choice| demand_target(snapshot, &choice.apply(request)))
}

/// The pool that should grow for a request that found no room: among the pools whose
/// workers (or configured shape) pass the static rules, one whose GPUs the request wants
/// (a CPU-only request grows a CPU pool before a GPU pool that lets it on: GPU machines are
/// not bought for CPU work while a CPU pool could grow), then the highest priority, then the
/// best GPU rank, then the name. Returns the pool and its GPU type.
pub fn demand_target(
    snapshot: &crate::Snapshot,
    request: &ContainerRequest,
) -> Option<(crate::PoolName, Option<GpuType>)> {
    let from_workers = snapshot
        .workers
        .iter()
        .map(|w| Candidate::class(&w.pool, worker_gpu_type(w)));
    let from_pools = snapshot.pools.iter().map(Candidate::pool);
    from_workers
        .chain(from_pools)
        .filter_map(|candidate| {
            let rank = check_through(Stage::Class, request, &candidate).ok()?;
            let attributes = candidate.attributes;
            let cpu_on_gpu = candidate.gpu_type.is_some() && !request.wants_gpus();
            Some((
                cpu_on_gpu,
                std::cmp::Reverse(attributes.priority),
                rank,
                &attributes.pool,
                candidate.gpu_type,
            ))
        })
        .min()
        .map(|(_, _, _, pool, gpu)| (pool.clone(), gpu.cloned()))
}
