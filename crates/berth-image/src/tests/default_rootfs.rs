//! The default rootfs from the host's busybox.

use std::sync::Arc;

use crate::{ImageConfig, ImageError, ImageStore, resolve_user};

#[test]
fn the_default_rootfs_has_busybox_its_applets_and_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();

    let image = store.prepare(None).unwrap();

    assert!(image.id.starts_with("default-"));
    assert_eq!(image.id.len(), "default-".len() + 64);
    assert_eq!(image.config, ImageConfig::default_rootfs());
    assert_eq!(image.config.env, ["PATH=/bin"]);
    let bin = image.rootfs.join("bin");
    assert!(bin.join("busybox").is_file());
    for applet in ["sh", "ps", "id", "sleep"] {
        let link = std::fs::read_link(bin.join(applet)).unwrap();
        assert_eq!(link.to_str(), Some("busybox"), "{applet}");
    }
    for empty in ["proc", "sys", "dev", "tmp", "work"] {
        assert!(
            super::names(&image.rootfs.join(empty)).is_empty(),
            "{empty}"
        );
    }
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");
    assert_eq!(
        resolve_user(&image.rootfs, "nobody").unwrap(),
        (65534, 65534)
    );
    assert_eq!(
        resolve_user(&image.rootfs, "root:nobody").unwrap(),
        (0, 65534)
    );
}

#[test]
fn the_default_rootfs_is_built_once_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.prepare(None).unwrap())
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(images.iter().all(|image| Arc::ptr_eq(image, &images[0])));
    assert_eq!(store.unpacked_count(), 1);
    // Its busybox is the host's static one: it runs without any library.
    let output = std::process::Command::new(images[0].rootfs.join("bin/sh"))
        .args(["-c", "echo ok"])
        .output()
        .unwrap();
    assert_eq!(output.stdout, b"ok\n");
}

#[test]
fn a_missing_busybox_says_to_install_busybox_static() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_busybox("/nonexistent/busybox");
    let error = store.prepare(None).unwrap_err();
    assert!(matches!(error, ImageError::Busybox { .. }), "{error}");
    assert!(
        error.to_string().contains("install busybox-static"),
        "{error}"
    );
}
