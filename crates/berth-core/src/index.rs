//! The candidate index: workers grouped into buckets of statically identical workers (same
//! pool attributes, GPU type and status), so a request is matched against a few buckets
//! instead of every worker.

use crate::feasibility::worker_gpu_type;
use crate::{GpuType, PoolAttributes, Resources, Worker, WorkerStatus};
use std::collections::HashMap;

/// Workers that every static rule treats alike.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// The pool attributes the bucket's workers share.
    pub attributes: PoolAttributes,
    /// Their GPU type (`None` for CPU workers).
    pub gpu_type: Option<GpuType>,
    /// Their status.
    pub status: WorkerStatus,
    /// Indices of the workers in the snapshot.
    pub workers: Vec<usize>,
    /// The distinct total capacities of the bucket's workers.
    pub totals: Vec<Resources>,
    /// Demands that found no room in this bucket during this plan. Free capacity only
    /// shrinks while a plan is made, so a demand at least as large cannot fit either.
    pub failed: Vec<Resources>,
}

/// How many failed demands a bucket remembers.
const FAILED_MEMORY: usize = 8;

impl Bucket {
    /// True when a demand at least as large as one that already failed here.
    pub fn known_full_for(&self, demand: &Resources) -> bool {
        self.failed.iter().any(|failed| failed.fits_in(demand))
    }

    /// Remembers that `demand` found no room in this bucket.
    pub fn remember_full_for(&mut self, demand: Resources) {
        if self.failed.len() == FAILED_MEMORY {
            self.failed.remove(0);
        }
        self.failed.push(demand);
    }

    /// True when some worker of the bucket could ever hold `demand`.
    pub fn could_ever_hold(&self, demand: &Resources) -> bool {
        self.totals.iter().any(|total| demand.fits_in(total))
    }
}

type BucketKey = (PoolAttributes, Option<GpuType>, WorkerStatus);

/// Buckets in the order their first worker appears in the snapshot (deterministic).
pub(crate) fn build(workers: &[Worker]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut by_key: HashMap<BucketKey, usize> = HashMap::new();
    for (index, worker) in workers.iter().enumerate() {
        let gpu_type = worker_gpu_type(worker).cloned();
        let key = (worker.pool.clone(), gpu_type.clone(), worker.status);
        let slot = *by_key.entry(key).or_insert_with(|| {
            buckets.push(Bucket {
                attributes: worker.pool.clone(),
                gpu_type,
                status: worker.status,
                workers: Vec::new(),
                totals: Vec::new(),
                failed: Vec::new(),
            });
            buckets.len() - 1
        });
        let bucket = &mut buckets[slot];
        bucket.workers.push(index);
        if !bucket.totals.contains(&worker.total) {
            bucket.totals.push(worker.total);
        }
    }
    buckets
}
