//! The candidate index: workers grouped into buckets of statically identical workers, so a
//! request is matched against a few buckets instead of every worker. A worker's bucket key
//! is derived from the rules ([`crate::rules::bucket_key`]: the facts every static rule
//! reads) and the group score ([`crate::scoring::GroupScore::bucket_key`]), as Nomad
//! computes a node class.

use crate::feasibility::Infeasible;
use crate::rules::{BucketKey, Candidate, Stage, check_through};
use crate::scoring::GroupScore;
use crate::{ContainerRequest, Resources, Worker};
use std::collections::HashMap;

/// Workers that every static rule and the group score treat alike.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Index of the bucket's first worker in the snapshot: its static facts stand for all.
    pub representative: usize,
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
    /// The static rules up to `last` (class, or class and status) against the bucket: the
    /// same verdict for each of its workers. On success, the GPU rank.
    pub fn check(
        &self,
        workers: &[Worker],
        last: Stage,
        request: &ContainerRequest,
    ) -> Result<usize, Infeasible> {
        let worker = &workers[self.representative];
        check_through(last, request, &Candidate::static_worker(worker))
    }

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

/// The key of a worker's bucket: the facts the static rules and the group score read.
fn key_of(worker: &Worker) -> BucketKey<'_> {
    let mut key = crate::rules::bucket_key(worker);
    GroupScore::bucket_key(worker, &mut key);
    key
}

/// Buckets in the order their first worker appears in the snapshot (deterministic).
pub(crate) fn build(workers: &[Worker]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut by_key: HashMap<BucketKey<'_>, usize> = HashMap::new();
    for (index, worker) in workers.iter().enumerate() {
        let key = key_of(worker);
        let fresh = |buckets: &mut Vec<Bucket>| {
            buckets.push(Bucket {
                representative: index,
                workers: Vec::new(),
                totals: Vec::new(),
                failed: Vec::new(),
            });
            buckets.len() - 1
        };
        let slot = if key.overflowed() {
            // More facts than a key holds: a bucket of its own is always correct.
            fresh(&mut buckets)
        } else {
            *by_key.entry(key).or_insert_with(|| fresh(&mut buckets))
        };
        let bucket = &mut buckets[slot];
        bucket.workers.push(index);
        if !bucket.totals.contains(&worker.total) {
            bucket.totals.push(worker.total);
        }
    }
    buckets
}
