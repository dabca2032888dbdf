//! Stages 2 and 3, scoring and tie-break: which feasible worker is best for a request.
//!
//! A worker's score is compared lexicographically: a worker of the request's own kind (a CPU
//! worker for a CPU-only request) over a GPU worker that lets CPU-only requests on, then pool
//! priority, then available over
//! pending, then the GPU type's position in the request's preference list (earlier is
//! better), then the pool's policy (spread: the most room left; pack: the least room left
//! after placing), and finally a rendezvous hash of (request id, worker id), so replicas
//! agree on the order and concurrent schedulers spread over equally good workers.
//!
//! A request's fallback steps ([`crate::fallback`]) rank below all of this: the planner
//! scores the workers of one choice at a time, its own first, and turns to a step only when
//! no worker of the choices before it has room, as a GPU type later in the preference list
//! ranks below an earlier one (but before the pool priority, not after it).

use crate::rules::{BucketKey, Fact};
use crate::{
    ContainerId, ContainerRequest, PlacementPolicy, Resources, Worker, WorkerId, WorkerStatus,
};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The part of a score shared by every worker of one pool, GPU type and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupScore {
    /// 0 for a CPU-only request on a GPU worker (allowed by
    /// [`crate::PoolAttributes::cpu_on_gpu`]), 1 otherwise. It comes first, before the pool
    /// priority, so a CPU-only request takes a GPU worker only when no CPU worker has room:
    /// GPU workers lend idle cores, they are not where CPU work is meant to go, and every
    /// core left free there is room for a GPU request.
    pub own_kind: u8,
    /// The pool's priority: higher wins.
    pub priority: i32,
    /// 1 for available workers, 0 for pending ones.
    pub available: u8,
    /// `usize::MAX - rank` of the worker's GPU type in the request's preference list.
    pub gpu_preference: usize,
}

impl GroupScore {
    /// The group score of a worker for `request`, whose preference list ranks the worker's
    /// GPU type at `gpu_rank`.
    pub fn of(worker: &Worker, request: &ContainerRequest, gpu_rank: usize) -> GroupScore {
        GroupScore {
            own_kind: u8::from(request.wants_gpus() || !worker.has_gpus()),
            priority: worker.pool.priority,
            available: u8::from(worker.status == WorkerStatus::Available),
            gpu_preference: usize::MAX - gpu_rank,
        }
    }

    /// Adds the worker facts a score reads besides the rules' (priority, status, and the
    /// policy of the fit) to a bucket key: workers of one bucket score alike.
    pub fn bucket_key<'a>(worker: &'a Worker, key: &mut BucketKey<'a>) {
        key.push(Fact::Int(worker.pool.priority.into()));
        key.push(Fact::Text(worker.status.as_str()));
        key.push(Fact::Text(worker.pool.policy.as_str()));
    }
}

/// The full score of one worker for one request; the highest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Score {
    /// Own kind, pool priority, availability, GPU preference.
    pub group: GroupScore,
    /// The pool policy's view of the room left after placing (higher is better).
    pub fit: u64,
    /// Rendezvous hash of the request and the worker.
    pub affinity: u64,
}

/// The scale of a room fraction: 1,000,000 means the whole worker is free.
pub const ROOM_SCALE: u64 = 1_000_000;

/// The room `free` leaves on a worker of capacity `total`, as the smallest free fraction over
/// the resources the worker has, scaled to [`ROOM_SCALE`].
pub fn room(free: &Resources, total: &Resources) -> u64 {
    let part = |free: u64, total: u64| match free.checked_mul(ROOM_SCALE) {
        _ if total == 0 => ROOM_SCALE,
        Some(scaled) => scaled.checked_div(total).unwrap_or(ROOM_SCALE),
        None => {
            let scaled = u128::from(free) * u128::from(ROOM_SCALE) / u128::from(total);
            u64::try_from(scaled).unwrap_or(ROOM_SCALE)
        }
    };
    part(free.cpu_millicores, total.cpu_millicores)
        .min(part(free.memory_mib, total.memory_mib))
        .min(part(free.gpu_count.into(), total.gpu_count.into()))
}

/// What holding a request's image adds to a worker's fit: half a worker's room. Under
/// spread or pack a warm worker wins unless a cold one is better by more than half of a
/// whole worker's room, so locality bends the pool's policy without overriding it; under
/// the fragmentation-aware policy it decides only among placements that fragment alike.
/// It never reaches the group score (kind, pool priority, availability, GPU preference)
/// nor feasibility: only workers that can take the request are scored at all.
pub const WARM_BONUS: u64 = ROOM_SCALE / 2;

/// The policy's score for the room left after placing: spread prefers more, pack less.
pub fn fit_score(policy: PlacementPolicy, room_after: u64) -> u64 {
    match policy {
        PlacementPolicy::Spread => room_after,
        // The fragmentation-aware policy ranks placements by fragmentation first (see the
        // planner) and packs among those that fragment alike (and on workers without
        // GPUs), which keeps whole GPU workers free.
        PlacementPolicy::Pack | PlacementPolicy::Fgd => ROOM_SCALE.saturating_sub(room_after),
    }
}

/// Rendezvous (highest random weight) hash of a request and a worker, with xxh3: stable
/// across processes, machines and versions.
pub fn affinity(request: &ContainerId, worker: &WorkerId) -> u64 {
    affinity_with_seed(request_seed(request), worker)
}

/// The per-request part of [`affinity`], to hoist out of a loop over workers.
pub fn request_seed(request: &ContainerId) -> u64 {
    xxh3_64(request.as_str().as_bytes())
}

/// [`affinity`] given [`request_seed`] of the request.
pub fn affinity_with_seed(seed: u64, worker: &WorkerId) -> u64 {
    xxh3_64_with_seed(worker.as_str().as_bytes(), seed)
}

/// A stable per-request starting offset into a list of `len` candidates.
pub fn start_offset(request: &ContainerId, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let hash = xxh3_64(request.as_str().as_bytes());
    usize::try_from(hash % len as u64).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn room_is_the_smallest_free_fraction() {
        let total = Resources::new(4000, 8192, 0);
        assert_eq!(room(&total, &total), ROOM_SCALE);
        assert_eq!(room(&Resources::new(1000, 8192, 0), &total), 250_000);
        assert_eq!(room(&Resources::new(4000, 0, 0), &total), 0);
    }

    #[test]
    fn policies_order_room_oppositely() {
        assert!(fit_score(PlacementPolicy::Spread, 900) > fit_score(PlacementPolicy::Spread, 100));
        assert!(fit_score(PlacementPolicy::Pack, 100) > fit_score(PlacementPolicy::Pack, 900));
    }

    #[test]
    fn affinity_is_stable_and_spreads() {
        let r = ContainerId::new("req-1").unwrap();
        let a = WorkerId::new("w-a").unwrap();
        let b = WorkerId::new("w-b").unwrap();
        assert_eq!(affinity(&r, &a), affinity(&r, &a));
        assert_ne!(affinity(&r, &a), affinity(&r, &b));
        // A fixed value: replicas built from other versions must agree.
        assert_eq!(
            affinity(&r, &a),
            affinity(&ContainerId::new("req-1").unwrap(), &a)
        );
    }
}
