//! Layers that try to write outside the rootfs.

use super::names;
use crate::testing::{self, LayerEntry, layer};
use crate::{ImageConfig, ImageError, ImageStore};

/// A prepared image's rootfs, with the store that keeps it mounted in layer mode.
#[derive(Debug)]
struct Prepared {
    rootfs: std::path::PathBuf,
    _store: ImageStore,
}

/// Prepares a one-layer image of `entries` in a fresh store under `dir`.
fn prepare(
    dir: &std::path::Path,
    entries: &[LayerEntry<'_>],
    layered: bool,
) -> Result<Prepared, ImageError> {
    let layout = dir.join("layout");
    let blob = layer(entries).unwrap();
    testing::write_layout_layers(&layout, &[blob], &ImageConfig::default(), None).unwrap();
    let store = super::open_store(layered, dir.join("store"));
    let rootfs = store
        .prepare(Some(&format!("oci:{}", layout.display())))?
        .rootfs
        .clone();
    Ok(Prepared {
        rootfs,
        _store: store,
    })
}

fn assert_escape(result: Result<Prepared, ImageError>, path: &str) {
    match result {
        Err(ImageError::PathEscape { path: refused, .. }) => assert_eq!(refused, path),
        other => panic!("expected a path escape for {path}, got {other:?}"),
    }
}

fn dotdot_entries_are_refused(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(
        dir.path(),
        &[LayerEntry::File("../../x", b"evil", 0o644)],
        layered,
    );
    assert_escape(result, "../../x");
    assert!(!dir.path().join("x").exists());
    assert!(names(&dir.path().join("store/images")).is_empty());
}

fn absolute_entries_are_refused(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("abs-target");
    let path = target.to_str().unwrap().to_owned();
    let result = prepare(
        dir.path(),
        &[LayerEntry::File(&path, b"evil", 0o644)],
        layered,
    );
    assert_escape(result, &path);
    assert!(!target.exists());
}

fn an_entry_under_a_symlink_climbing_out_is_refused(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(
        dir.path(),
        &[
            LayerEntry::Symlink("up", "../../../.."),
            LayerEntry::File("up/escaped", b"evil", 0o644),
        ],
        layered,
    );
    assert_escape(result, "up/escaped");
    assert!(!dir.path().join("escaped").exists());
}

fn an_absolute_symlink_parent_resolves_inside_the_rootfs(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let host_str = host.to_str().unwrap().to_owned();
    let prepared = prepare(
        dir.path(),
        &[
            LayerEntry::Symlink("link", &host_str),
            LayerEntry::File("link/x", b"inside", 0o644),
        ],
        layered,
    )
    .unwrap();
    let rootfs = &prepared.rootfs;
    // The container sees `link` -> `<host path>` inside its own root: that is where x went.
    assert!(names(&host).is_empty());
    assert_eq!(
        std::fs::read(rootfs.join(host.strip_prefix("/").unwrap()).join("x")).unwrap(),
        b"inside"
    );
}

fn a_hard_link_out_of_the_rootfs_is_refused(layered: bool) {
    for target in ["../../../etc/passwd", "/etc/passwd"] {
        let dir = tempfile::tempdir().unwrap();
        let result = prepare(
            dir.path(),
            &[LayerEntry::HardLink("passwd", target)],
            layered,
        );
        assert_escape(result, "passwd");
    }
}

fn a_hard_link_inside_the_rootfs_shares_the_file(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(
        dir.path(),
        &[
            LayerEntry::File("a", b"data", 0o644),
            LayerEntry::HardLink("b", "a"),
        ],
        layered,
    )
    .unwrap();
    let rootfs = &prepared.rootfs;
    assert_eq!(std::fs::read(rootfs.join("b")).unwrap(), b"data");
}

fn a_whiteout_of_dotdot_is_refused(layered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let result = prepare(
        dir.path(),
        &[LayerEntry::File(".wh...", b"", 0o644)],
        layered,
    );
    assert_escape(result, ".wh...");
    assert!(names(&dir.path().join("store/images")).is_empty());
}

super::in_both_modes!(
    dotdot_entries_are_refused,
    absolute_entries_are_refused,
    an_entry_under_a_symlink_climbing_out_is_refused,
    an_absolute_symlink_parent_resolves_inside_the_rootfs,
    a_hard_link_out_of_the_rootfs_is_refused,
    a_hard_link_inside_the_rootfs_shares_the_file,
    a_whiteout_of_dotdot_is_refused,
);
