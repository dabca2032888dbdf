//! Layouts and archives: selection by tag, verification, whiteouts, sharing.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::{app_config, names};
use crate::testing::{self, LayerEntry, layer};
use crate::{ImageConfig, ImageError, ImageStore};

fn a_tagged_layout_is_unpacked_with_its_config(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let files: &[(&str, &[u8], u32)] = &[
        ("bin/app", b"#!/bin/sh\n", 0o755),
        ("etc/conf", b"x=1", 0o600),
    ];
    let digest = testing::write_layout(&layout, files, &app_config(), Some("v1")).unwrap();
    let store = super::open_store(layered, dir.path().join("store"));

    let image = store
        .prepare(Some(&format!("oci:{}:v1", layout.display())))
        .unwrap();

    assert_eq!(image.id, digest);
    assert!(image.id.starts_with("sha256:"));
    assert!(image.rootfs.starts_with(dir.path().join("store")));
    assert_eq!(image.config, app_config());
    assert_eq!(
        std::fs::read(image.rootfs.join("etc/conf")).unwrap(),
        b"x=1"
    );
    let mode = std::fs::metadata(image.rootfs.join("bin/app"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    // Without a tag the index's only manifest is taken: the same image.
    let untagged = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap();
    assert!(Arc::ptr_eq(&image, &untagged));
    assert_eq!(store.unpacked_count(), 1);
}

fn a_layout_with_two_tags_needs_one_named(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let config = ImageConfig::default();
    let v1 = testing::write_layout(&layout, &[("v", b"1", 0o644)], &config, Some("v1")).unwrap();
    let v2 = testing::write_layout(&layout, &[("v", b"2", 0o644)], &config, Some("v2")).unwrap();
    let store = super::open_store(layered, dir.path().join("store"));
    let reference = |tag: &str| format!("oci:{}{tag}", layout.display());

    let image = store.prepare(Some(&reference(":v2"))).unwrap();
    assert_eq!(image.id, v2);
    assert_eq!(std::fs::read(image.rootfs.join("v")).unwrap(), b"2");
    assert_eq!(store.prepare(Some(&reference(":v1"))).unwrap().id, v1);
    // A bare absolute path with a tag works as well.
    let bare = format!("{}:v1", layout.display());
    assert_eq!(store.prepare(Some(&bare)).unwrap().id, v1);

    let ambiguous = store.prepare(Some(&reference(""))).unwrap_err();
    assert!(
        matches!(ambiguous, ImageError::AmbiguousManifest { count: 2, .. }),
        "{ambiguous}"
    );
    let missing = store.prepare(Some(&reference(":v3"))).unwrap_err();
    assert!(
        matches!(missing, ImageError::TagNotFound { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("v1"), "{missing}");
}

fn an_archive_is_extracted_and_unpacked_once(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let digest = testing::write_archive(
        &archive,
        &[("hello", b"world", 0o644)],
        &app_config(),
        Some("latest"),
    )
    .unwrap();
    let store = super::open_store(layered, dir.path().join("store"));

    let image = store
        .prepare(Some(&format!("oci-archive:{}:latest", archive.display())))
        .unwrap();
    assert_eq!(image.id, digest);
    assert_eq!(std::fs::read(image.rootfs.join("hello")).unwrap(), b"world");
    assert_eq!(image.config, app_config());
    // A bare path to the file is an archive; the one manifest is taken without a tag.
    let again = store.prepare(Some(archive.to_str().unwrap())).unwrap();
    assert_eq!(again.id, digest);
    assert_eq!(store.unpacked_count(), 1);
    // The extracted layout was a work directory: nothing is left of it.
    assert!(names(&dir.path().join("store/tmp")).is_empty());
}

fn a_blob_that_does_not_match_its_digest_is_refused_and_leaves_nothing(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(
        &layout,
        &[("a", b"good", 0o644)],
        &ImageConfig::default(),
        None,
    )
    .unwrap();
    // Replace the layer blob (the only gzip blob) with another layer's bytes.
    let blobs = layout.join("blobs/sha256");
    let layer_blob = names(&blobs)
        .into_iter()
        .map(|name| blobs.join(name))
        .find(|path| std::fs::read(path).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    std::fs::write(
        &layer_blob,
        layer(&[LayerEntry::File("a", b"evil", 0o644)]).unwrap(),
    )
    .unwrap();
    let store = super::open_store(layered, dir.path().join("store"));

    let error = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap_err();

    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(names(&dir.path().join("store/images")).is_empty());
    assert!(names(&dir.path().join("store/tmp")).is_empty());
}

fn whiteouts_delete_and_opaque_directories_hide_the_lower_layers(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let lower = layer(&[
        LayerEntry::Dir("dir", 0o755),
        LayerEntry::File("dir/a", b"a", 0o644),
        LayerEntry::File("dir/b", b"b", 0o644),
        LayerEntry::Dir("dir/sub", 0o755),
        LayerEntry::File("dir/sub/deep", b"d", 0o644),
        LayerEntry::File("opq/x", b"x", 0o644),
        LayerEntry::File("opq/y", b"y", 0o644),
        LayerEntry::File("replaced", b"old", 0o644),
    ])
    .unwrap();
    let upper = layer(&[
        LayerEntry::File("dir/.wh.a", b"", 0o644),
        LayerEntry::File("dir/.wh.sub", b"", 0o644),
        // Written before the opaque marker in the same layer: it stays.
        LayerEntry::File("opq/new", b"n", 0o644),
        LayerEntry::File("opq/.wh..wh..opq", b"", 0o644),
        LayerEntry::File("replaced", b"new", 0o644),
    ])
    .unwrap();
    testing::write_layout_layers(&layout, &[lower, upper], &ImageConfig::default(), None).unwrap();
    let store = super::open_store(layered, dir.path().join("store"));

    let rootfs = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap()
        .rootfs
        .clone();

    assert_eq!(names(&rootfs.join("dir")), ["b"]);
    assert_eq!(names(&rootfs.join("opq")), ["new"]);
    assert_eq!(std::fs::read(rootfs.join("replaced")).unwrap(), b"new");
}

fn prepare_twice_unpacks_once_and_a_second_store_reuses_the_disk(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(&layout, &[("f", b"1", 0o644)], &app_config(), None).unwrap();
    let reference = format!("oci:{}", layout.display());
    let store = super::open_store(layered, dir.path().join("store"));

    let first = store.prepare(Some(&reference)).unwrap();
    let second = store.prepare(Some(&reference)).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(store.unpacked_count(), 1);

    let reopened = super::open_store(layered, dir.path().join("store"));
    let third = reopened.prepare(Some(&reference)).unwrap();
    assert_eq!(*third, *first);
    assert_eq!(reopened.unpacked_count(), 0);
}

fn eight_threads_preparing_one_image_unpack_it_once(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let archive = dir.path().join("image.tar");
    let files: &[(&str, &[u8], u32)] = &[("f", b"1", 0o644), ("g", b"2", 0o644)];
    testing::write_layout(&layout, files, &app_config(), None).unwrap();
    testing::write_archive(&archive, &[("h", b"3", 0o644)], &app_config(), None).unwrap();
    let store = Arc::new(super::open_store(layered, dir.path().join("store")));

    for reference in [
        format!("oci:{}", layout.display()),
        format!("oci-archive:{}", archive.display()),
    ] {
        let before = store.unpacked_count();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, reference) = (store.clone(), reference.clone());
                std::thread::spawn(move || store.prepare(Some(&reference)).unwrap())
            })
            .collect();
        let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(images.iter().all(|image| Arc::ptr_eq(image, &images[0])));
        assert_eq!(store.unpacked_count(), before + 1, "{reference}");
    }
}

#[test]
fn open_removes_work_left_by_dead_processes() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("tmp/4294967295-abc/rootfs");
    std::fs::create_dir_all(&stale).unwrap();
    ImageStore::open(dir.path()).unwrap();
    assert!(names(&dir.path().join("tmp")).is_empty());
}

#[test]
fn a_reference_of_no_known_form_is_refused_with_the_supported_forms() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let error = store.prepare(Some("oci:")).unwrap_err();
    assert!(matches!(error, ImageError::Unsupported { .. }));
    assert!(!error.is_pull_failure());
    let message = error.to_string();
    assert!(message.contains("oci:<layout dir>[:<tag>]"), "{message}");
    assert!(message.contains("registry reference"), "{message}");
}

fn a_corrupt_layer_is_reported_as_a_digest_mismatch(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(
        &layout,
        &[("a", b"a", 0o644)],
        &ImageConfig::default(),
        None,
    )
    .unwrap();
    let blobs = layout.join("blobs/sha256");
    for name in names(&blobs) {
        let path = blobs.join(name);
        if std::fs::read(&path).unwrap().starts_with(&[0x1f, 0x8b]) {
            std::fs::write(&path, b"\x1f\x8bnot gzip at all").unwrap();
        }
    }
    let store = super::open_store(layered, dir.path().join("store"));
    let error = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap_err();
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
}

fn a_zstd_layer_is_refused_naming_the_supported_types(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(
        &layout,
        &[("a", b"a", 0o644)],
        &ImageConfig::default(),
        None,
    )
    .unwrap();
    retype_layers(&layout, "application/vnd.oci.image.layer.v1.tar+zstd");
    let store = super::open_store(layered, dir.path().join("store"));
    let error = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap_err();
    assert!(
        matches!(error, ImageError::UnsupportedLayer { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("tar+zstd"), "{error}");
    assert!(
        error
            .to_string()
            .contains("application/vnd.oci.image.layer.v1.tar"),
        "{error}"
    );
}

#[test]
fn an_absurd_index_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(
        &layout,
        &[("a", b"a", 0o644)],
        &ImageConfig::default(),
        None,
    )
    .unwrap();
    let padding = " ".repeat(crate::MAX_METADATA_BYTES as usize);
    std::fs::write(layout.join("index.json"), format!("{{{padding}}}")).unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let error = store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .unwrap_err();
    assert!(matches!(error, ImageError::TooLarge { .. }), "{error}");
}

/// Rewrites the layout's only manifest so its layers have `media_type`, and points
/// `index.json` at the new manifest.
fn retype_layers(layout: &std::path::Path, media_type: &str) {
    use sha2::Digest as _;
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let old_path = layout
        .join("blobs/sha256")
        .join(old.trim_start_matches("sha256:"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(old_path).unwrap()).unwrap();
    for layer in manifest["layers"].as_array_mut().unwrap() {
        layer["mediaType"] = media_type.into();
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let hex = crate::layout::hex(&sha2::Sha256::digest(&bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn two_stores_on_one_root_racing_end_with_one_image(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    testing::write_layout(&layout, &[("f", b"1", 0o644)], &app_config(), None).unwrap();
    let reference = format!("oci:{}", layout.display());
    let stores: Vec<Arc<ImageStore>> = (0..2)
        .map(|_| Arc::new(super::open_store(layered, dir.path().join("store"))))
        .collect();

    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (store, reference) = (stores[i % 2].clone(), reference.clone());
            std::thread::spawn(move || store.prepare(Some(&reference)).unwrap())
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // Each store unpacks at most once; whichever rename lost uses the winner's directory.
    assert!(images.iter().all(|image| **image == *images[0]));
    let unpacked: u64 = stores.iter().map(|s| s.unpacked_count()).sum();
    assert!((1..=2).contains(&unpacked), "{unpacked}");
    assert_eq!(names(&dir.path().join("store/images")).len(), 1);
    assert!(names(&dir.path().join("store/tmp")).is_empty());
}

#[test]
fn the_store_and_its_answers_can_cross_threads() {
    fn check<T: Send + Sync>() {}
    check::<ImageStore>();
    check::<crate::PreparedImage>();
    check::<ImageError>();
}

super::in_both_modes!(
    a_tagged_layout_is_unpacked_with_its_config,
    a_layout_with_two_tags_needs_one_named,
    an_archive_is_extracted_and_unpacked_once,
    a_blob_that_does_not_match_its_digest_is_refused_and_leaves_nothing,
    whiteouts_delete_and_opaque_directories_hide_the_lower_layers,
    prepare_twice_unpacks_once_and_a_second_store_reuses_the_disk,
    eight_threads_preparing_one_image_unpack_it_once,
    a_corrupt_layer_is_reported_as_a_digest_mismatch,
    a_zstd_layer_is_refused_naming_the_supported_types,
    two_stores_on_one_root_racing_end_with_one_image,
);
