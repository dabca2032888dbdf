//! Garbage collection: the least recently used images go when the store is over its
//! limit, never one a caller still holds.

use std::path::Path;

use super::{app_config, names};
use crate::testing;

/// Writes layout `name` holding one 100,000-byte file; returns its reference and id.
fn big_image(dir: &Path, name: &str) -> (String, String) {
    let layout = dir.join(name);
    let content = name.repeat(100_000 / name.len());
    let id = testing::write_layout(
        &layout,
        &[("data", content.as_bytes(), 0o644)],
        &app_config(),
        None,
    )
    .unwrap();
    (format!("oci:{}", layout.display()), id)
}

fn dir_name(id: &str) -> String {
    id.replace(':', "-")
}

fn over_its_limit_the_store_evicts_the_least_recently_used_image_not_in_use(layered: bool) {
    let work = tempfile::tempdir().unwrap();
    let (x, x_id) = big_image(work.path(), "xx");
    let (y, y_id) = big_image(work.path(), "yy");
    let (z, z_id) = big_image(work.path(), "zz");
    let root = work.path().join("store");
    // Room for two images, not three.
    let store = super::open_store(layered, &root).with_cache_limit(250_000);

    let leased = store.prepare(Some(&x)).unwrap();
    drop(store.prepare(Some(&y)).unwrap());
    drop(store.prepare(Some(&z)).unwrap());
    // x is the oldest but in use: y goes.
    let mut expected = vec![dir_name(&x_id), dir_name(&z_id)];
    expected.sort();
    assert_eq!(names(&root.join("images")), expected);
    assert!(leased.rootfs.join("data").is_file());
    let held: Vec<String> = store.held(10).into_iter().map(|h| h.digest).collect();
    assert_eq!(held, [z_id.clone(), x_id.clone()]);
    assert!(store.cached_bytes() <= 250_000);

    // Released, x is now the least recently used: preparing y again evicts it.
    drop(leased);
    let again = store.prepare(Some(&y)).unwrap();
    assert_eq!(again.id, y_id);
    assert_eq!(store.unpacked_count(), 4, "y was unpacked again");
    let mut expected = vec![dir_name(&y_id), dir_name(&z_id)];
    expected.sort();
    assert_eq!(names(&root.join("images")), expected);
    assert!(
        names(&root.join("tmp")).is_empty(),
        "evicted images are removed"
    );
}

fn a_lease_taken_after_a_restart_keeps_the_image(layered: bool) {
    let work = tempfile::tempdir().unwrap();
    let (x, x_id) = big_image(work.path(), "xx");
    let (y, _) = big_image(work.path(), "yy");
    let root = work.path().join("store");
    drop(super::open_store(layered, &root).prepare(Some(&x)).unwrap());
    // A restarted agent: the image is on disk, its container adopted.
    let store = super::open_store(layered, &root).with_cache_limit(0);
    let leased = store.lease(&x_id).unwrap().expect("on disk");
    assert!(store.lease("sha256:0000").unwrap().is_none());
    drop(store.prepare(Some(&y)).unwrap());
    store.collect_garbage();
    assert_eq!(names(&root.join("images")), vec![dir_name(&x_id)]);
    assert!(leased.rootfs.join("data").is_file());
}

super::in_both_modes!(
    over_its_limit_the_store_evicts_the_least_recently_used_image_not_in_use,
    a_lease_taken_after_a_restart_keeps_the_image,
);
