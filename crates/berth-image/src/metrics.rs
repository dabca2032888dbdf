//! The store's metrics (the `metrics` crate; the agent's exporter publishes them).

/// Counter: images pulled from registries (manifests fetched and every blob present).
pub const PULLS: &str = "berth_image_pulls_total";
/// Counter: bytes of blobs fetched from registries.
pub const PULL_BYTES: &str = "berth_image_pull_bytes_total";
/// Counter: `prepare` calls served by an image already prepared (in memory or on disk).
pub const CACHE_HITS: &str = "berth_image_cache_hits_total";
/// Counter: images evicted by garbage collection.
pub const EVICTIONS: &str = "berth_image_evictions_total";

pub(crate) fn pulled() {
    metrics::counter!(PULLS).increment(1);
}

pub(crate) fn fetched(bytes: u64) {
    metrics::counter!(PULL_BYTES).increment(bytes);
}

pub(crate) fn hit() {
    metrics::counter!(CACHE_HITS).increment(1);
}

pub(crate) fn evicted() {
    metrics::counter!(EVICTIONS).increment(1);
}
