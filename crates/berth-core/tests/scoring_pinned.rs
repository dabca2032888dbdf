//! The scoring functions' promises, pinned at their edges: room at scales too large to scale
//! in 64 bits, resources a worker does not have, and the per-request starting offset.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::scoring::{ROOM_SCALE, room, start_offset};
use berth_core::{ContainerId, Resources};
use std::collections::BTreeSet;

/// Memory figures whose product with [`ROOM_SCALE`] does not fit in a `u64`.
const HUGE_MIB: u64 = 40_000_000_000_000;

#[test]
fn room_is_the_same_fraction_at_every_scale() {
    // Three quarters of the memory free, the CPU all free: 750,000 of ROOM_SCALE, whether
    // the memory is 4 GiB or 40 trillion MiB (where free * ROOM_SCALE overflows a u64).
    let small = room(
        &Resources::new(1000, 3 * 1024, 0),
        &Resources::new(1000, 4 * 1024, 0),
    );
    assert_eq!(small, 750_000);
    let huge = room(
        &Resources::new(1000, HUGE_MIB / 4 * 3, 0),
        &Resources::new(1000, HUGE_MIB, 0),
    );
    assert_eq!(huge, small);
}

#[test]
fn room_of_a_whole_free_worker_is_the_full_scale_even_at_the_largest_sizes() {
    let largest = Resources::new(u64::MAX, u64::MAX, u32::MAX);
    assert_eq!(room(&largest, &largest), ROOM_SCALE);
    let huge = Resources::new(HUGE_MIB, HUGE_MIB, 0);
    assert_eq!(room(&huge, &huge), ROOM_SCALE);
}

#[test]
fn room_rounds_a_huge_fraction_down() {
    // A third of a huge memory: 333,333.33... of ROOM_SCALE, rounded down.
    let total = Resources::new(1000, 3 * HUGE_MIB, 0);
    let free = Resources::new(1000, HUGE_MIB, 0);
    assert_eq!(room(&free, &total), 333_333);
}

#[test]
fn a_resource_the_worker_does_not_have_does_not_count_whatever_its_free_figure() {
    // No CPU at all on this "worker", and a free figure for it that would overflow when
    // scaled: only the memory counts, half free.
    let total = Resources::new(0, 2048, 0);
    let free = Resources::new(u64::MAX, 1024, 0);
    assert_eq!(room(&free, &total), ROOM_SCALE / 2);
    let no_gpus = Resources::new(1000, 1000, 0);
    assert_eq!(room(&no_gpus, &no_gpus), ROOM_SCALE);
}

fn ids(count: usize) -> Vec<ContainerId> {
    (0..count)
        .map(|i| ContainerId::new(format!("req-{i}")).unwrap())
        .collect()
}

#[test]
fn start_offset_is_inside_the_list() {
    for id in ids(200) {
        for len in [1, 2, 3, 7, 64, 1000] {
            let offset = start_offset(&id, len);
            assert!(offset < len, "{id}: offset {offset} of {len}");
        }
        assert_eq!(start_offset(&id, 1), 0);
    }
}

#[test]
fn start_offset_of_an_empty_list_is_zero() {
    for id in ids(10) {
        assert_eq!(start_offset(&id, 0), 0);
    }
}

#[test]
fn start_offset_is_stable_per_request_and_spreads_over_requests() {
    let id = ContainerId::new("req-stable").unwrap();
    assert_eq!(start_offset(&id, 97), start_offset(&id.clone(), 97));
    // 200 requests over 10 slots: every slot is some request's start.
    let offsets: BTreeSet<usize> = ids(200).iter().map(|id| start_offset(id, 10)).collect();
    assert_eq!(offsets, (0..10).collect());
}
