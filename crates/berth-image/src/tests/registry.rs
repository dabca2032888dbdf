//! Pulls from a real registry on loopback (Debian's `docker-registry`), with images pushed
//! by skopeo from layouts written here.

use std::path::Path;
use std::sync::{Arc, Barrier};

use base64::Engine as _;

use super::token_front::{TOKEN, TokenFront};
use super::{app_config, names};
use crate::testing::registry::LocalRegistry;
use crate::testing::{self, LayerEntry, layer};
use crate::{ImageError, ImageStore, RegistryOptions};

/// Writes a two-layer image whose upper layer deletes `/a/gone` and hides `/d`'s lower
/// content; returns its layout directory and the layer digests are checked by the pull.
fn two_layer_layout(dir: &Path) -> String {
    let lower = layer(&[
        LayerEntry::File("a/keep", b"kept", 0o644),
        LayerEntry::File("a/gone", b"deleted above", 0o644),
        LayerEntry::File("d/old", b"hidden above", 0o644),
    ])
    .unwrap();
    let upper = layer(&[
        LayerEntry::File("a/.wh.gone", b"", 0o644),
        LayerEntry::Dir("d", 0o755),
        LayerEntry::File("d/.wh..wh..opq", b"", 0o644),
        LayerEntry::File("d/new", b"new", 0o644),
    ])
    .unwrap();
    testing::write_layout_layers(dir, &[lower, upper], &app_config(), Some("v1")).unwrap()
}

fn store_at(dir: &Path) -> ImageStore {
    ImageStore::open(dir).unwrap()
}

fn store_in(layered: bool, dir: &Path) -> ImageStore {
    super::open_store(layered, dir)
}

fn a_pulled_image_has_its_layers_with_whiteouts_applied(layered: bool) {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let digest = two_layer_layout(&work.path().join("layout"));
    registry
        .push(&work.path().join("layout"), "v1", "app:v1", None)
        .unwrap();
    let store = store_in(layered, &work.path().join("store"));
    let reference = format!("{}/app:v1", registry.addr);
    let image = store.prepare(Some(&reference)).unwrap();
    assert_eq!(image.id, digest, "skopeo keeps OCI manifests as they are");
    assert_eq!(image.config, app_config());
    let root = &image.rootfs;
    assert_eq!(std::fs::read(root.join("a/keep")).unwrap(), b"kept");
    assert!(!root.join("a/gone").exists());
    assert!(!root.join("d/old").exists());
    assert_eq!(std::fs::read(root.join("d/new")).unwrap(), b"new");
    let held = store.held(10);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].reference.as_str(), held[0].digest.as_str()),
        (reference.as_str(), digest.as_str())
    );
    // Pinned by digest, the same image, found here: no second unpack, and not even the
    // registry asked (it is gone), in this store or the next one on its root.
    let pinned = format!("{}/app@{digest}", registry.addr);
    assert_eq!(held[0].pinned().as_deref(), Some(pinned.as_str()));
    drop(registry);
    assert_eq!(store.prepare(Some(&pinned)).unwrap().id, digest);
    assert_eq!(store.unpacked_count(), 1);
    drop(store);
    let root = work.path().join("store");
    let restarted = store_in(layered, &root).with_cache_limit(0);
    let found = restarted.prepare(Some(&pinned)).unwrap();
    assert_eq!(
        (found.id.as_str(), restarted.unpacked_count()),
        (digest.as_str(), 0)
    );
    let error = restarted.prepare(Some(&reference)).unwrap_err();
    assert!(error.is_pull_failure(), "a tag is asked for: {error}");
    // Found on disk, it counts with the blobs it was pulled from, which go with it.
    assert!(!names(&root.join("registry/blobs/sha256")).is_empty());
    drop(found);
    restarted.collect_garbage();
    assert_eq!(
        names(&root.join("registry/blobs/sha256")),
        Vec::<String>::new()
    );
}

fn a_docker_schema2_image_pulls_too(layered: bool) {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let oci_digest = two_layer_layout(&work.path().join("layout"));
    registry
        .push_docker_format(&work.path().join("layout"), "v1", "docker:v1")
        .unwrap();
    let store = store_in(layered, &work.path().join("store"));
    let image = store
        .prepare(Some(&format!("{}/docker:v1", registry.addr)))
        .unwrap();
    assert_ne!(image.id, oci_digest, "converted, so another manifest");
    assert_eq!(image.config, app_config());
    assert_eq!(std::fs::read(image.rootfs.join("d/new")).unwrap(), b"new");
    assert!(!image.rootfs.join("a/gone").exists());
}

#[test]
fn an_unknown_tag_or_registry_is_a_pull_failure_a_bad_reference_is_not() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let store = store_at(work.path());
    let error = store
        .prepare(Some(&format!("{}/nothing:here", registry.addr)))
        .unwrap_err();
    assert!(error.is_pull_failure(), "{error}");
    let error = store.prepare(Some("127.0.0.1:1/app:v1")).unwrap_err();
    assert!(error.is_pull_failure(), "{error}");
    let error = store.prepare(Some("Bad/Reference!")).unwrap_err();
    assert!(
        matches!(error, ImageError::InvalidReference { .. }),
        "{error}"
    );
    assert!(!error.is_pull_failure());
}

/// A docker `config.json` giving `user:password` for `registry`.
fn auth_file(dir: &Path, registry: &str, user_password: &str) -> std::path::PathBuf {
    let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
    let file = dir.join("config.json");
    let json = format!(r#"{{"auths": {{"{registry}": {{"auth": "{encoded}"}}}}}}"#);
    std::fs::write(&file, json).unwrap();
    file
}

/// Checks that `reference` (on registry `host`) is refused anonymously and to `ann` with a
/// wrong password (saying who asked, never the password), and returns a store under `work`
/// with `ann`'s right credentials for it, and the wrong password's message.
fn refused_unless_right(work: &Path, host: &str, reference: &str) -> (ImageStore, String) {
    let anonymous = store_at(&work.join("anonymous"));
    let error = anonymous.prepare(Some(reference)).unwrap_err();
    assert!(error.is_pull_failure(), "{error}");
    assert!(error.to_string().contains("anonymously"), "{error}");

    let creds = work.join("wrong");
    std::fs::create_dir(&creds).unwrap();
    let options = RegistryOptions {
        auth_file: Some(auth_file(&creds, host, "ann:wrong-pw")),
        insecure: Vec::new(),
    };
    let wrong = store_at(&work.join("wrong-store")).with_registry(options);
    let error = wrong.prepare(Some(reference)).unwrap_err();
    let message = error.to_string();
    assert!(error.is_pull_failure(), "{message}");
    assert!(message.contains("as `ann`"), "{message}");
    assert!(!message.contains("wrong-pw"), "{message}");

    let options = RegistryOptions {
        auth_file: Some(auth_file(work, host, "ann:right-pw")),
        insecure: Vec::new(),
    };
    (
        store_at(&work.join("store")).with_registry(options),
        message,
    )
}

#[test]
fn basic_auth_pulls_and_a_wrong_password_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    let hash = bcrypt::hash("right-pw", 4).unwrap();
    std::fs::write(&htpasswd, format!("ann:{hash}\n")).unwrap();
    let registry = LocalRegistry::start(Some(&htpasswd)).unwrap();
    let layout = work.path().join("layout");
    let digest = two_layer_layout(&layout);
    registry
        .push(&layout, "v1", "private:v1", Some("ann:right-pw"))
        .unwrap();
    let reference = format!("{}/private:v1", registry.addr);
    let (store, wrong) = refused_unless_right(work.path(), &registry.addr, &reference);
    assert!(wrong.contains("Not authorized"), "{wrong}");
    assert_eq!(store.prepare(Some(&reference)).unwrap().id, digest);
}

#[test]
fn a_registry_asking_for_bearer_tokens_gives_one_for_the_basic_credentials() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = two_layer_layout(&layout);
    registry.push(&layout, "v1", "team/app:v1", None).unwrap();
    let front = TokenFront::start(&registry.addr, "ann:right-pw");
    let reference = format!("{}/team/app:v1", front.addr);
    let (store, _) = refused_unless_right(work.path(), &front.addr, &reference);
    assert!(
        front.granted.lock().unwrap().is_empty(),
        "no token for anonymous or wrong credentials"
    );
    let image = store.prepare(Some(&reference)).unwrap();
    assert_eq!(image.id, digest);
    assert_eq!(std::fs::read(image.rootfs.join("d/new")).unwrap(), b"new");
    let granted = front.granted.lock().unwrap().clone();
    assert!(
        !granted.is_empty() && granted.iter().all(|s| s == "repository:team/app:pull"),
        "a pull-only token for the repository: {granted:?}"
    );
}

#[test]
fn a_registry_token_in_the_auth_file_is_sent_as_the_bearer_token() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = two_layer_layout(&layout);
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let front = TokenFront::start(&registry.addr, "ann:right-pw");
    let reference = format!("{}/app:v1", front.addr);
    let with_token = |token: &str, dir: &str| {
        let file = work.path().join(format!("{dir}.json"));
        let json = format!(
            r#"{{"auths": {{"{}": {{"registrytoken": "{token}"}}}}}}"#,
            front.addr
        );
        std::fs::write(&file, json).unwrap();
        let options = RegistryOptions {
            auth_file: Some(file),
            insecure: Vec::new(),
        };
        store_at(&work.path().join(dir)).with_registry(options)
    };

    let error = with_token("stale-token", "stale")
        .prepare(Some(&reference))
        .unwrap_err();
    let message = error.to_string();
    assert!(error.is_pull_failure(), "{message}");
    assert!(message.contains("with a bearer token"), "{message}");
    assert!(!message.contains("stale-token"), "{message}");

    let image = with_token(TOKEN, "store")
        .prepare(Some(&reference))
        .unwrap();
    assert_eq!(image.id, digest);
    assert_eq!(
        front.asked.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "sent as it is, not traded"
    );
}

#[test]
fn an_unused_blob_that_cannot_be_removed_stays_counted_and_one_already_gone_is_forgotten() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    two_layer_layout(&layout);
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let root = work.path().join("store");
    let store = store_in(false, &root).with_cache_limit(0);
    let image = store
        .prepare(Some(&format!("{}/app:v1", registry.addr)))
        .unwrap();

    let blobs = root.join("registry/blobs/sha256");
    let files = names(&blobs);
    assert!(files.len() >= 2, "{files:?}");
    let stuck = blobs.join(&files[0]);
    let stuck_size = std::fs::metadata(&stuck).unwrap().len();
    // A directory where the blob was: removing it as a file fails.
    std::fs::remove_file(&stuck).unwrap();
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("x"), b"x").unwrap();
    std::fs::remove_file(blobs.join(&files[1])).unwrap();

    drop(image);
    store.collect_garbage();
    assert!(store.held(10).is_empty(), "the image was evicted");
    assert_eq!(
        store.cached_bytes(),
        stuck_size,
        "the blob that stayed is still counted; the one already gone is not"
    );
    assert_eq!(
        names(&blobs),
        [files[0].clone()],
        "every other blob removed"
    );
}

fn a_tampered_blob_is_refused_and_leaves_nothing(layered: bool) {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    testing::write_layout(
        &layout,
        &[("bin/app", b"original", 0o755)],
        &app_config(),
        Some("v1"),
    )
    .unwrap();
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let manifest = crate::layout::select_manifest(&layout, Some("v1")).unwrap();
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(manifest.digest().digest())).unwrap(),
    )
    .unwrap();
    let blob = registry.blob_file(manifest.layers()[0].digest().as_ref());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // Same size, other content.
    std::fs::write(&blob, bytes).unwrap();

    let store_dir = work.path().join("store");
    let store = store_in(layered, &store_dir);
    let error = store
        .prepare(Some(&format!("{}/app:v1", registry.addr)))
        .unwrap_err();
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.is_pull_failure());
    assert!(super::names(&store_dir.join("images")).is_empty());
    assert!(
        super::names(&store_dir.join("registry/blobs/sha256")).len() <= 2,
        "the bad layer is not kept"
    );
    let layer_hex = manifest.layers()[0].digest().digest().to_owned();
    assert!(!super::names(&store_dir.join("registry/blobs/sha256")).contains(&layer_hex));
    assert_eq!(
        super::names(&store_dir.join("layers")),
        ["empty"],
        "no layer is unpacked from it"
    );
}

#[test]
fn a_manifest_that_does_not_match_its_pinned_digest_is_refused() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = testing::write_layout(
        &layout,
        &[("bin/app", b"x", 0o755)],
        &app_config(),
        Some("v1"),
    )
    .unwrap();
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let stored = registry.blob_file(&digest);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes.push(b' '); // Still a valid manifest, no longer the one pinned.
    std::fs::write(&stored, bytes).unwrap();
    let store = store_at(work.path().join("store").as_path());
    let error = store
        .prepare(Some(&format!("{}/app@{digest}", registry.addr)))
        .unwrap_err();
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.is_pull_failure());
}

fn twenty_concurrent_prepares_of_one_image_fetch_each_blob_once(layered: bool) {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = two_layer_layout(&layout);
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let blobs_before = registry.gets("blobs").unwrap();
    let manifests_before = registry.gets("manifests").unwrap();
    let store = Arc::new(store_in(layered, &work.path().join("store")));
    let barrier = Arc::new(Barrier::new(20));
    let reference = format!("{}/app:v1", registry.addr);
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (store, barrier, reference) = (store.clone(), barrier.clone(), reference.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .prepare(Some(&reference))
                    .map(|image| image.id.clone())
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().unwrap(), digest);
    }
    // The manifest, the config and two layers, once each.
    assert_eq!(registry.gets("manifests").unwrap() - manifests_before, 1);
    assert_eq!(registry.gets("blobs").unwrap() - blobs_before, 3);
    assert_eq!(store.unpacked_count(), 1);
}

#[test]
fn a_blob_longer_than_its_descriptor_is_cut_off() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest =
        testing::write_layout(&layout, &[("f", b"x", 0o644)], &app_config(), Some("v1")).unwrap();
    registry.push(&layout, "v1", "app:v1", None).unwrap();
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    let blob = registry.blob_file(manifest.layers()[0].digest().as_ref());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
    std::fs::write(&blob, bytes).unwrap();
    let store = store_at(&work.path().join("store"));
    let error = store
        .prepare(Some(&format!("{}/app:v1", registry.addr)))
        .unwrap_err();
    assert!(error.is_pull_failure(), "{error}");
    assert!(error.to_string().contains("more bytes than"), "{error}");
}

/// Wraps the manifest tagged `v1` of `layout` in an image index listing it for linux on
/// this machine's architecture (and a second image for another one), tagged `multi`.
fn wrap_in_index(layout: &Path, manifest_digest: &str, other_digest: &str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let blob = |digest: &str| {
        std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
    };
    let entry = |digest: &str, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": blob(digest).len(),
            "platform": { "os": "linux", "architecture": arch },
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(other_digest, "s390x"), entry(manifest_digest, arch)],
    }))
    .unwrap();
    let hex = crate::layout::hex(&<sha2::Sha256 as sha2::Digest>::digest(&index));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
    let outer = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": index.len(),
            "annotations": { "org.opencontainers.image.ref.name": "multi" },
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&outer).unwrap(),
    )
    .unwrap();
}

#[test]
fn from_a_multi_platform_index_this_platform_s_image_is_pulled() {
    let registry = LocalRegistry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let other =
        testing::write_layout(&layout, &[("other", b"", 0o644)], &app_config(), None).unwrap();
    let ours = two_layer_layout(&layout);
    wrap_in_index(&layout, &ours, &other);
    registry.push_all(&layout, "multi", "multi:v1").unwrap();
    let store = store_at(&work.path().join("store"));
    let image = store
        .prepare(Some(&format!("{}/multi:v1", registry.addr)))
        .unwrap();
    assert_eq!(image.id, ours);
    assert!(image.rootfs.join("d/new").is_file());
    assert!(!image.rootfs.join("other").exists());
}

super::in_both_modes!(
    a_pulled_image_has_its_layers_with_whiteouts_applied,
    a_docker_schema2_image_pulls_too,
    twenty_concurrent_prepares_of_one_image_fetch_each_blob_once,
    a_tampered_blob_is_refused_and_leaves_nothing,
);
