//! Layer mode: layers unpacked once into `layers/`, shared by images whose rootfs are
//! read-only overlay mounts; overlayfs whiteouts; eviction of images and their layers;
//! mounting again after a restart; no mount left behind.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{app_config, names, open_store, require_root};
use crate::testing::{self, LayerEntry, layer};
use crate::{ImageStore, overlay};

/// The mount at `path` (canonical), if any, from `/proc/self/mountinfo`.
fn mount_at(path: &Path) -> Option<overlay::MountInfo> {
    // mountinfo has canonical paths; `path` may be gone (its image evicted).
    let existing = path.ancestors().find(|p| p.exists()).unwrap();
    let path = std::fs::canonicalize(existing)
        .unwrap()
        .join(path.strip_prefix(existing).unwrap());
    overlay::mounts()
        .unwrap()
        .into_iter()
        .rfind(|m| m.point == path)
}

/// Asserts that `rootfs` is a private, read-only overlay mount.
fn assert_overlay(rootfs: &Path) {
    let mount = mount_at(rootfs).unwrap_or_else(|| panic!("{} is not mounted", rootfs.display()));
    assert_eq!(mount.fs_type, "overlay");
    assert!(
        !mount.propagation.contains("shared:"),
        "private: {}",
        mount.propagation
    );
    let error = std::fs::write(rootfs.join("new-file"), b"x").unwrap_err();
    assert_eq!(error.raw_os_error(), Some(nix::libc::EROFS), "{error}");
}

/// The layer directories under the store's `layers/`, without `empty`.
fn layer_dirs(root: &Path) -> Vec<String> {
    names(&root.join("layers"))
        .into_iter()
        .filter(|n| n != "empty")
        .collect()
}

fn layer_name(blob: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256-{}", crate::layout::hex(&sha2::Sha256::digest(blob)))
}

/// A layout in `dir` with images `a` (base + its own layer, which deletes `etc/motd`),
/// `b` (base + its own layer) and `base` (the base alone). Returns the layer blobs.
fn sharing_layout(dir: &Path, size: usize) -> [Vec<u8>; 3] {
    let big = vec![b'x'; size];
    let base = layer(&[
        LayerEntry::Dir("etc", 0o755),
        LayerEntry::File("etc/motd", b"base", 0o644),
        LayerEntry::File("etc/os", b"base os", 0o644),
        LayerEntry::File("big-base", &big, 0o644),
    ])
    .unwrap();
    let own_a = layer(&[
        LayerEntry::Dir("etc", 0o755),
        LayerEntry::File("etc/.wh.motd", b"", 0o644),
        LayerEntry::File("a", b"from a", 0o644),
        LayerEntry::File("big-a", &big, 0o644),
    ])
    .unwrap();
    let own_b = layer(&[
        LayerEntry::File("b", b"from b", 0o644),
        LayerEntry::File("big-b", &big, 0o644),
    ])
    .unwrap();
    let config = app_config();
    testing::write_layout_layers(dir, &[base.clone(), own_a.clone()], &config, Some("a")).unwrap();
    testing::write_layout_layers(dir, &[base.clone(), own_b.clone()], &config, Some("b")).unwrap();
    testing::write_layout_layers(dir, std::slice::from_ref(&base), &config, Some("base")).unwrap();
    [base, own_a, own_b]
}

fn reference(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

#[test]
fn images_sharing_a_base_layer_unpack_it_once_and_mount_their_layers() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let [base, own_a, own_b] = sharing_layout(&layout, 10);
    let root = dir.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    assert!(
        store.layer_sharing(),
        "root with overlayfs: layer mode by default"
    );

    let a = store.prepare(Some(&reference(&layout, "a"))).unwrap();
    let b = store.prepare(Some(&reference(&layout, "b"))).unwrap();
    let only_base = store.prepare(Some(&reference(&layout, "base"))).unwrap();

    assert_eq!(store.unpacked_layers(), 3, "the base layer once");
    let mut expected = vec![layer_name(&base), layer_name(&own_a), layer_name(&own_b)];
    expected.sort();
    assert_eq!(layer_dirs(&root), expected);
    assert_eq!(names(&a.rootfs), ["a", "big-a", "big-base", "etc"]);
    assert_eq!(
        names(&a.rootfs.join("etc")),
        ["os"],
        "a's layer deleted motd"
    );
    assert_eq!(names(&b.rootfs), ["b", "big-b", "big-base", "etc"]);
    assert_eq!(std::fs::read(b.rootfs.join("etc/motd")).unwrap(), b"base");
    // One layer, mounted over the empty one.
    assert_eq!(names(&only_base.rootfs), ["big-base", "etc"]);
    for image in [&a, &b, &only_base] {
        assert_overlay(&image.rootfs);
        let listed: Vec<String> = serde_json::from_slice(
            &std::fs::read(image.rootfs.parent().unwrap().join("layers.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(listed[0].replace(':', "-"), layer_name(&base));
    }
    // The image directories hold no copy of the layers.
    assert!(store.cached_bytes() < 4 * 1024 + 3 * 10 + 3 * 4096 * 8);
}

#[test]
fn concurrent_prepares_of_images_sharing_a_layer_unpack_it_once() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 100_000);
    let store = Arc::new(open_store(true, dir.path().join("store")));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let reference = reference(&layout, ["a", "b", "base"][i % 3]);
            std::thread::spawn(move || store.prepare(Some(&reference)).unwrap())
        })
        .collect();
    for thread in threads {
        let image = thread.join().unwrap();
        assert!(image.rootfs.join("big-base").is_file());
    }
    assert_eq!(store.unpacked_layers(), 3);
    assert_eq!(store.unpacked_count(), 3);
}

#[test]
fn whiteouts_are_overlayfs_whiteouts_in_the_layer() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let lower = layer(&[
        LayerEntry::File("dir/gone", b"g", 0o644),
        LayerEntry::File("opq/hidden", b"h", 0o644),
    ])
    .unwrap();
    let upper = layer(&[
        LayerEntry::Dir("dir", 0o755),
        LayerEntry::File("dir/.wh.gone", b"", 0o644),
        LayerEntry::Dir("opq", 0o755),
        LayerEntry::File("opq/.wh..wh..opq", b"", 0o644),
        LayerEntry::File("opq/mine", b"m", 0o644),
    ])
    .unwrap();
    testing::write_layout_layers(&layout, &[lower, upper.clone()], &app_config(), None).unwrap();
    let root = dir.path().join("store");
    let store = open_store(true, &root);
    let image = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap();

    let tree = root.join("layers").join(layer_name(&upper));
    let whiteout = std::fs::symlink_metadata(tree.join("dir/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(
        xattr::get(tree.join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!tree.join(".wh.gone").exists() && !tree.join("dir/.wh.gone").exists());
    // Through the overlay: deleted, and hidden under the opaque directory.
    assert!(names(&image.rootfs.join("dir")).is_empty());
    assert_eq!(names(&image.rootfs.join("opq")), ["mine"]);
}

#[test]
fn eviction_unmounts_the_image_and_removes_the_layers_no_image_uses() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let [base, own_a, own_b] = sharing_layout(&layout, 100_000);
    let own_c = layer(&[LayerEntry::File("big-c", &[b'c'; 100_000], 0o644)]).unwrap();
    testing::write_layout_layers(
        &layout,
        std::slice::from_ref(&own_c),
        &app_config(),
        Some("c"),
    )
    .unwrap();
    let root = dir.path().join("store");
    // Room for three 100 kB layers and the images' own few bytes, not four.
    let store = open_store(true, &root).with_cache_limit(350_000);

    let a = store.prepare(Some(&reference(&layout, "a"))).unwrap();
    let b = store.prepare(Some(&reference(&layout, "b"))).unwrap();
    let b_rootfs = b.rootfs.clone();
    let b_dir = b_rootfs.parent().unwrap().to_owned();
    drop(b);
    assert!(mount_at(&b_rootfs).is_some());
    let c = store.prepare(Some(&reference(&layout, "c"))).unwrap();

    // b is the least recently used not in use (a is held): it goes, with its own layer;
    // the base stays for a.
    assert!(!b_dir.exists());
    assert!(mount_at(&b_rootfs).is_none(), "b's rootfs is unmounted");
    let mut expected = vec![layer_name(&base), layer_name(&own_a), layer_name(&own_c)];
    expected.sort();
    assert_eq!(layer_dirs(&root), expected);
    assert!(!layer_dirs(&root).contains(&layer_name(&own_b)));
    assert_overlay(&a.rootfs);
    assert_eq!(std::fs::read(a.rootfs.join("a")).unwrap(), b"from a");
    assert!(store.cached_bytes() <= 350_000, "{}", store.cached_bytes());
    assert!(names(&root.join("tmp")).is_empty());

    // Released, a is the least recently used: b again evicts it and its own layer, and
    // the base, now b's, stays.
    let a_rootfs = a.rootfs.clone();
    drop((a, c));
    let b = store.prepare(Some(&reference(&layout, "b"))).unwrap();
    assert!(mount_at(&a_rootfs).is_none());
    let mut expected = vec![layer_name(&base), layer_name(&own_b), layer_name(&own_c)];
    expected.sort();
    assert_eq!(layer_dirs(&root), expected);
    assert_eq!(
        std::fs::read(b.rootfs.join("big-base")).unwrap().len(),
        100_000
    );
    assert_eq!(store.unpacked_layers(), 5, "b's own layer twice");
}

#[test]
fn a_leased_image_is_not_unmounted_and_its_layers_stay() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 100_000);
    let root = dir.path().join("store");
    let store = open_store(true, &root).with_cache_limit(0);
    let a = store.prepare(Some(&reference(&layout, "a"))).unwrap();
    let b = store.prepare(Some(&reference(&layout, "b"))).unwrap();
    store.collect_garbage();
    assert_eq!(layer_dirs(&root).len(), 3);
    assert_overlay(&a.rootfs);
    assert_overlay(&b.rootfs);
    drop(b);
    store.collect_garbage();
    assert_eq!(
        layer_dirs(&root).len(),
        2,
        "b's own layer went, a's two stay"
    );
    assert_eq!(names(&root.join("images")).len(), 1);
    assert_overlay(&a.rootfs);
}

#[test]
fn a_restarted_store_mounts_again_without_unpacking() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 10);
    let root = dir.path().join("store");
    let first = open_store(true, &root);
    let a = first.prepare(Some(&reference(&layout, "a"))).unwrap();
    let (id, rootfs) = (a.id.clone(), a.rootfs.clone());
    drop(a);
    drop(first);
    assert!(
        mount_at(&rootfs).is_none(),
        "a dropped store leaves no mount"
    );
    assert!(names(&rootfs).is_empty());

    // An adopted container's image: leased by id.
    let second = open_store(true, &root);
    let leased = second.lease(&id).unwrap().expect("on disk");
    assert_overlay(&leased.rootfs);
    assert_eq!(std::fs::read(leased.rootfs.join("a")).unwrap(), b"from a");
    drop((leased, second));
    assert!(mount_at(&rootfs).is_none());

    // Prepared by reference.
    let third = open_store(true, &root);
    let again = third.prepare(Some(&reference(&layout, "a"))).unwrap();
    assert_overlay(&again.rootfs);
    assert_eq!(third.unpacked_count(), 0);
    assert_eq!(third.unpacked_layers(), 0);
}

#[test]
fn a_layer_an_image_left_on_disk_uses_is_not_removed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let [base, own_a, _] = sharing_layout(&layout, 10);
    let root = dir.path().join("store");
    let a_id = {
        let earlier = open_store(true, &root);
        let a = earlier.prepare(Some(&reference(&layout, "a"))).unwrap();
        a.id.clone()
    };
    // A restarted store that has not seen a (its container not adopted yet).
    let store = open_store(true, &root).with_cache_limit(0);
    drop(store.prepare(Some(&reference(&layout, "b"))).unwrap());
    store.collect_garbage();

    let mut expected = vec![layer_name(&base), layer_name(&own_a)];
    expected.sort();
    assert_eq!(layer_dirs(&root), expected, "b's own layer went, a's stay");
    let a = store.lease(&a_id).unwrap().expect("on disk");
    assert_eq!(std::fs::read(a.rootfs.join("etc/os")).unwrap(), b"base os");
}

#[test]
fn no_layer_is_removed_while_an_image_on_disk_cannot_be_read() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 10);
    let root = dir.path().join("store");
    let a_dir = {
        let earlier = open_store(true, &root);
        let a = earlier.prepare(Some(&reference(&layout, "a"))).unwrap();
        a.rootfs.parent().unwrap().to_owned()
    };
    // An image left on disk whose layer list is unreadable: it may use any layer.
    std::fs::write(a_dir.join("layers.json"), b"{not json").unwrap();
    let store = open_store(true, &root).with_cache_limit(0);
    drop(store.prepare(Some(&reference(&layout, "b"))).unwrap());
    store.collect_garbage();
    assert_eq!(layer_dirs(&root).len(), 3, "every layer stays");
    assert_eq!(
        store.cached_bytes(),
        0,
        "kept, they no longer count: the cache is not held over its limit"
    );
}

#[test]
fn open_unmounts_and_removes_mounts_a_dead_process_left_in_tmp() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let lowers: Vec<PathBuf> = ["upper", "lower"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    for lower in &lowers {
        std::fs::create_dir(lower).unwrap();
        std::fs::write(lower.join("kept"), b"k").unwrap();
    }
    let stale = dir.path().join("store/tmp/4294967295-abc/image/rootfs");
    std::fs::create_dir_all(&stale).unwrap();
    overlay::mount_lowers(&lowers, &stale).unwrap();
    assert!(mount_at(&stale).is_some());

    ImageStore::open(dir.path().join("store")).unwrap();

    assert!(names(&dir.path().join("store/tmp")).is_empty());
    assert!(
        overlay::mount_points()
            .unwrap()
            .iter()
            .all(|m| !m.starts_with(dir.path()))
    );
    for lower in &lowers {
        assert_eq!(std::fs::read(lower.join("kept")).unwrap(), b"k");
    }
}

#[test]
fn flattening_stores_no_layers_and_mounts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 10);
    let root = dir.path().join("store");
    let store = open_store(false, &root);
    let a = store.prepare(Some(&reference(&layout, "a"))).unwrap();
    assert_eq!(names(&a.rootfs.join("etc")), ["os"]);
    assert!(layer_dirs(&root).is_empty());
    assert_eq!(store.unpacked_layers(), 0);
    assert!(mount_at(&a.rootfs).is_none());
}

#[test]
fn a_rootfs_under_a_shared_mount_is_private() {
    use nix::mount::{MsFlags, mount};
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    sharing_layout(&layout, 10);
    // The store's directory is a shared mount, as `/` is on systemd hosts.
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let none = None::<&str>;
    mount(Some(&root), &root, none, MsFlags::MS_BIND, none).unwrap();
    // Unmounted even if an assertion fails, so the temporary directory can go.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = overlay::unmount(self.0, true);
        }
    }
    let _bound = Unmount(&root);
    mount(none, &root, none, MsFlags::MS_SHARED, none).unwrap();
    assert!(mount_at(&root).unwrap().propagation.contains("shared:"));

    let store = open_store(true, &root);
    let image = store.prepare(Some(&reference(&layout, "a"))).unwrap();
    assert_overlay(&image.rootfs);
    drop((image, store));
}
