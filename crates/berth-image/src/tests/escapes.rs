//! Layers that try to write outside the rootfs.

use super::names;
use crate::testing::{self, LayerEntry, layer};
use crate::{ImageConfig, ImageError, ImageStore};

/// Prepares a one-layer image of `entries` in a fresh store under `dir`.
fn prepare(
    dir: &std::path::Path,
    entries: &[LayerEntry<'_>],
) -> Result<std::path::PathBuf, ImageError> {
    let layout = dir.join("layout");
    let blob = layer(entries).unwrap();
    testing::write_layout_layers(&layout, &[blob], &ImageConfig::default(), None).unwrap();
    let store = ImageStore::open(dir.join("store")).unwrap();
    store
        .prepare(Some(&format!("oci:{}", layout.display())))
        .map(|image| image.rootfs.clone())
}

fn assert_escape(result: Result<std::path::PathBuf, ImageError>, path: &str) {
    match result {
        Err(ImageError::PathEscape { path: refused, .. }) => assert_eq!(refused, path),
        other => panic!("expected a path escape for {path}, got {other:?}"),
    }
}

#[test]
fn dotdot_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(dir.path(), &[LayerEntry::File("../../x", b"evil", 0o644)]);
    assert_escape(result, "../../x");
    assert!(!dir.path().join("x").exists());
    assert!(names(&dir.path().join("store/images")).is_empty());
}

#[test]
fn absolute_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("abs-target");
    let path = target.to_str().unwrap().to_owned();
    let result = prepare(dir.path(), &[LayerEntry::File(&path, b"evil", 0o644)]);
    assert_escape(result, &path);
    assert!(!target.exists());
}

#[test]
fn an_entry_under_a_symlink_climbing_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(
        dir.path(),
        &[
            LayerEntry::Symlink("up", "../../../.."),
            LayerEntry::File("up/escaped", b"evil", 0o644),
        ],
    );
    assert_escape(result, "up/escaped");
    assert!(!dir.path().join("escaped").exists());
}

#[test]
fn an_absolute_symlink_parent_resolves_inside_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let host_str = host.to_str().unwrap().to_owned();
    let rootfs = prepare(
        dir.path(),
        &[
            LayerEntry::Symlink("link", &host_str),
            LayerEntry::File("link/x", b"inside", 0o644),
        ],
    )
    .unwrap();
    // The container sees `link` -> `<host path>` inside its own root: that is where x went.
    assert!(names(&host).is_empty());
    assert_eq!(
        std::fs::read(rootfs.join(host.strip_prefix("/").unwrap()).join("x")).unwrap(),
        b"inside"
    );
}

#[test]
fn a_hard_link_out_of_the_rootfs_is_refused() {
    for target in ["../../../etc/passwd", "/etc/passwd"] {
        let dir = tempfile::tempdir().unwrap();
        let result = prepare(dir.path(), &[LayerEntry::HardLink("passwd", target)]);
        assert_escape(result, "passwd");
    }
}

#[test]
fn a_hard_link_inside_the_rootfs_shares_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = prepare(
        dir.path(),
        &[
            LayerEntry::File("a", b"data", 0o644),
            LayerEntry::HardLink("b", "a"),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(rootfs.join("b")).unwrap(), b"data");
}

#[test]
fn a_whiteout_of_dotdot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(dir.path(), &[LayerEntry::File(".wh...", b"", 0o644)]);
    assert_escape(result, ".wh...");
    assert!(names(&dir.path().join("store/images")).is_empty());
}
