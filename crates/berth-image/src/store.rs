//! [`ImageStore`]: prepared images on disk, each unpacked once and shared.
//!
//! On disk, under the store's root:
//! - `images/<id>/rootfs` and `images/<id>/config.json` (`:` in the id becomes `-`): a
//!   prepared image. The directory appears only by a rename of a finished one, so one that
//!   exists is complete. In layer mode (see below) it also holds `layers.json`, the
//!   image's layer digests bottom first, and `rootfs` is an empty directory on which the
//!   layers are mounted; without `layers.json`, `rootfs` is the flattened tree itself.
//! - `layers/<digest>/` (`:` becomes `-`), layer mode only: one layer unpacked alone,
//!   whiteouts kept as overlayfs whiteouts, shared read-only by every image that lists
//!   it. Renamed into place when complete, like an image. `layers/empty` is the empty
//!   lowest layer a one-layer image is mounted over (overlayfs wants two lowers).
//! - `registry/`: an OCI layout holding the blobs pulled from registries
//!   (`blobs/sha256/<hex>`), shared by every pulled image.
//! - `tmp/<pid>-<random>`: work in progress (an image being unpacked, an archive being
//!   extracted, a blob being fetched, an image being removed). Removed when done or
//!   failed; those of dead processes at the next `open`, after unmounting anything still
//!   mounted under them.
//!
//! # Layer mode
//!
//! When `open` can mount a read-only overlay (it tries one in `tmp/`: root, a kernel with
//! overlayfs), or when [`ImageStore::with_layer_sharing`] says so, OCI layout, archive and
//! registry images are stored as layers: each layer is unpacked once, named by its
//! verified blob digest, and an image's rootfs is a read-only, private overlay mount of
//! its layers (`lowerdir=<top>:...:<bottom>`). Otherwise (and always for the default
//! rootfs) the layers are applied into one directory per image, as before. Both kinds may
//! sit side by side on one root: `layers.json` says which an image is.
//!
//! A mount does not outlive the store that made it: `load` (on `prepare` and `lease`)
//! mounts an image found unmounted (after a reboot, or a restarted agent), and dropping
//! the store detaches what it mounted.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::UNIX_EPOCH;

use std::collections::HashSet;

use oci_spec::image::Descriptor;

use crate::cache::Cache;
use crate::config::ImageConfig;
use crate::error::{ImageError, IoContext};
use crate::reference::{self, Source};
use crate::registry::{self, BlobDir, RegistryOptions};
use crate::slots::{Slots, lock};
use crate::unpack::{self, Budget, LayerOptions};
use crate::{busybox, layout, metrics, overlay};

mod gc;

/// The default size limit of the store (20 GiB): see [`ImageStore::with_cache_limit`].
pub const DEFAULT_CACHE_LIMIT: u64 = 20 << 30;

/// A prepared image: its rootfs on disk and its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedImage {
    /// The manifest digest (`sha256:<hex>`), or `default-<sha256 of busybox>` for the
    /// default rootfs.
    pub id: String,
    /// The unpacked root filesystem. Shared by every container of the image: the runtime
    /// must mount it read-only and give containers their writes elsewhere. In
    /// [layer mode](crate#layer-mode) it is a read-only overlay mount of the image's
    /// layers, there while the store that prepared or leased it lives.
    pub rootfs: PathBuf,
    /// In layer mode, the image's layer directories, top layer first (with an empty one
    /// below a single layer): a runtime gives each container its own overlay of them with
    /// [`crate::mount_container_rootfs`], whose upper directory takes the mount points the
    /// runtime creates (the shared rootfs is read-only). Empty for a flattened image,
    /// whose `rootfs` is a plain directory.
    pub layers: Vec<PathBuf>,
    /// How the image says to run it.
    pub config: ImageConfig,
}

/// Images unpacked under one directory, each once, shared by every container that uses
/// it. `Send + Sync`: share it in an `Arc`. Its calls block on the file system; call them
/// from `spawn_blocking` in async code.
///
/// In [layer mode](crate#layer-mode) the store mounts images' rootfs; dropping
/// it unmounts them with `MNT_DETACH`. That is safe for containers still running: they
/// run on their own overlays of the layer directories ([`crate::mount_container_rootfs`]),
/// not on these mounts. An image's rootfs is found unmounted by the next store and
/// mounted again when it is prepared or [leased](ImageStore::lease).
#[derive(Debug)]
pub struct ImageStore {
    /// The store's directory (see the [module docs](self) for its layout).
    root: PathBuf,
    /// The host busybox the default rootfs is built from.
    busybox: PathBuf,
    /// Whether layers keep their files' owners (only root can chown).
    preserve_owners: bool,
    /// One slot per image id. Its lock is held while the image is looked up or unpacked,
    /// so concurrent `prepare` calls for one image unpack it once; the others wait and
    /// share the result. Failures are not kept: the next call tries again.
    images: Slots<Arc<PreparedImage>>,
    /// Sources whose image id is known without reading them again: an archive or the
    /// busybox binary, by path, tag, size and mtime. Its lock is held while the source is
    /// read, and is always taken before an image slot's.
    sources: Slots<String>,
    /// How many images this store built (rather than found on disk).
    unpacked: AtomicU64,
    /// Whether OCI images are stored as shared layers mounted as overlays.
    layered: bool,
    /// One slot per layer digest, held while the layer is looked for or unpacked, so
    /// concurrent prepares of images sharing a layer unpack it once.
    layers: Slots<()>,
    /// How many layers this store unpacked (rather than found on disk; counted even if
    /// another store on the root renamed the same layer in first).
    unpacked_layers: AtomicU64,
    /// Read-held while an image is built (its layers unpacked or found, until its
    /// directory listing them is in place), write-held while unused layers are removed,
    /// so a layer is never removed between its check and its image's rename.
    layer_use: RwLock<()>,
    /// The rootfs mounts this store made, detached when it is dropped.
    mounted: Mutex<HashSet<PathBuf>>,
    /// How registries are reached.
    registry: RegistryOptions,
    /// The blobs pulled from registries.
    blobs: BlobDir,
    /// Read-held while a registry image is pulled and unpacked, write-held while unused
    /// blobs are removed, so that a blob is never removed between its check and its use.
    blob_use: RwLock<()>,
    /// Sizes, uses and references of the images prepared by this process. Its lock is
    /// never held while an image slot's is taken, except by the collector, which only
    /// tries them.
    cache: Mutex<Cache>,
    /// The size above which the least recently used images not in use are evicted.
    limit: u64,
}

impl ImageStore {
    /// Opens (creating) the store under `root` (e.g. `<agent work dir>/images`), and
    /// removes the work directories that dead processes left there.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in ["images", "tmp", "registry", "layers/empty"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).context(|| format!("creating {}", path.display()))?;
        }
        remove_stale_work(&root.join("tmp"));
        let mut store = ImageStore {
            root: root.clone(),
            busybox: PathBuf::from(busybox::DEFAULT_BUSYBOX),
            preserve_owners: false,
            images: Slots::default(),
            sources: Slots::default(),
            unpacked: AtomicU64::new(0),
            layered: false,
            layers: Slots::default(),
            unpacked_layers: AtomicU64::new(0),
            layer_use: RwLock::new(()),
            mounted: Mutex::new(HashSet::new()),
            registry: RegistryOptions::default(),
            blobs: BlobDir::open(root.join("registry"))?,
            blob_use: RwLock::new(()),
            cache: Mutex::new(Cache::default()),
            limit: DEFAULT_CACHE_LIMIT,
        };
        // What we create is owned by our effective uid: root may keep the layers' owners.
        let probe = store.work_dir()?;
        store.preserve_owners = probe.path().metadata().is_ok_and(|m| m.uid() == 0);
        store.layered = overlay::probe(probe.path());
        Ok(store)
    }

    /// Stores OCI images as shared layers mounted as overlays (`true`), or flattens each
    /// into a directory of its own (`false`), whatever `open` found possible. Layer mode
    /// needs root and overlayfs: forced on without them, `prepare` fails.
    pub fn with_layer_sharing(mut self, layered: bool) -> ImageStore {
        self.layered = layered;
        self
    }

    /// Whether OCI images are stored as shared layers (see [`ImageStore::with_layer_sharing`]).
    pub fn layer_sharing(&self) -> bool {
        self.layered
    }

    /// How many layers this store has unpacked itself in layer mode, not counting those it
    /// found on disk: for tests and metrics.
    pub fn unpacked_layers(&self) -> u64 {
        self.unpacked_layers.load(Ordering::Relaxed)
    }

    /// Builds the default rootfs from this busybox instead of `/bin/busybox`.
    pub fn with_busybox(mut self, busybox: impl Into<PathBuf>) -> ImageStore {
        self.busybox = busybox.into();
        self
    }

    /// Reaches registries with these options (credentials, plain-HTTP registries).
    pub fn with_registry(mut self, options: RegistryOptions) -> ImageStore {
        self.registry = options;
        self
    }

    /// Keeps the images and blobs this process prepared under `bytes`
    /// ([`DEFAULT_CACHE_LIMIT`] if not set): after each `prepare`, the least recently used
    /// images not in use are removed until the total fits.
    pub fn with_cache_limit(mut self, bytes: u64) -> ImageStore {
        self.limit = bytes;
        self
    }

    /// The image for `image` (`None`: berth's default rootfs), pulled or unpacked on
    /// first use and shared after. See the [crate docs](crate) for the references
    /// accepted. The returned `Arc` is the lease: while a clone of it lives (hold it for
    /// the container's life), garbage collection keeps the image.
    pub fn prepare(&self, image: Option<&str>) -> Result<Arc<PreparedImage>, ImageError> {
        let prepared = self.prepare_uncounted(image)?;
        self.note_use(&prepared, image)?;
        self.collect_garbage();
        Ok(prepared)
    }

    /// [`ImageStore::prepare`] without the bookkeeping.
    fn prepare_uncounted(&self, image: Option<&str>) -> Result<Arc<PreparedImage>, ImageError> {
        let Some(image) = image else {
            return self.prepare_default();
        };
        match reference::parse(image)? {
            Source::Layout { dir, tag } => {
                let manifest = layout::select_manifest(&dir, tag.as_deref())?;
                self.prepare_id(manifest.digest().as_ref(), |image| {
                    self.unpack(&dir, &manifest, image)
                })
            }
            Source::Archive { file, tag } => self.prepare_archive(&file, tag.as_deref()),
            Source::Registry(reference) => self.prepare_registry(&reference),
        }
    }

    /// A registry image: found by what its reference was last resolved to in this
    /// process, or on disk by the digest it names, or pulled (blobs already here are not
    /// fetched again) and unpacked. The
    /// reference's slot is held throughout, so concurrent calls pull once.
    fn prepare_registry(
        &self,
        reference: &oci_client::Reference,
    ) -> Result<Arc<PreparedImage>, ImageError> {
        let slot = self
            .sources
            .slot(format!("registry\0{}", reference.whole()));
        let mut known = lock(&slot);
        if let Some(id) = known.as_ref()
            && let Some(image) = self.lookup(id)?
        {
            return Ok(image);
        }
        // A digest names one manifest for good: an image of that id here is the one asked
        // for, without asking the registry (an index's digest names no image id here).
        if let Some(digest) = reference.digest()
            && is_sha256(digest)
            && let Some(image) = self.lookup(digest)?
        {
            *known = Some(digest.to_owned());
            return Ok(image);
        }
        let _blobs_kept = self
            .blob_use
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tmp = self.work_dir()?;
        let started = std::time::Instant::now();
        let pulled = registry::pull(reference, &self.registry, &self.blobs, tmp.path())?;
        let id = known.insert(pulled.manifest.digest().to_string()).clone();
        tracing::info!(image = %reference, %id, seconds = started.elapsed().as_secs_f64(), "image pulled");
        let image = self.prepare_id(&id, |image| {
            self.unpack(&self.blobs.layout, &pulled.manifest, image)
        })?;
        self.record_blobs(&image, &pulled.blobs)?;
        Ok(image)
    }

    /// How many images this store has unpacked or built itself, not counting those it
    /// found ready on disk: for tests and metrics.
    pub fn unpacked_count(&self) -> u64 {
        self.unpacked.load(Ordering::Relaxed)
    }

    /// The default rootfs, built from busybox; its id is read from busybox once per
    /// version of the file.
    fn prepare_default(&self) -> Result<Arc<PreparedImage>, ImageError> {
        let key = fingerprint(&self.busybox, None).map_err(|e| ImageError::Busybox {
            path: self.busybox.clone(),
            reason: e.to_string(),
        })?;
        let slot = self.sources.slot(key);
        let mut known = lock(&slot);
        let id = match known.as_ref() {
            Some(id) => id.clone(),
            None => known.insert(busybox::default_id(&self.busybox)?).clone(),
        };
        self.prepare_id(&id, |image| {
            busybox::build(&self.busybox, &image.join("rootfs"))?;
            Ok(ImageConfig::default_rootfs())
        })
    }

    /// An archive's image: found by what the archive was last seen to hold, or extracted
    /// into a work directory and unpacked from there.
    fn prepare_archive(
        &self,
        file: &Path,
        tag: Option<&str>,
    ) -> Result<Arc<PreparedImage>, ImageError> {
        let key = fingerprint(file, tag).context(|| format!("reading {}", file.display()))?;
        let slot = self.sources.slot(key);
        let mut known = lock(&slot);
        if let Some(id) = known.as_ref()
            && let Some(image) = self.lookup(id)?
        {
            return Ok(image);
        }
        let work = self.work_dir()?;
        unpack::extract_layout_archive(file, work.path())?;
        let manifest = layout::select_manifest(work.path(), tag)?;
        let id = known.insert(manifest.digest().to_string()).clone();
        self.prepare_id(&id, |image| self.unpack(work.path(), &manifest, image))
    }

    /// Builds the image of `manifest` (in `layout`) into `image`, a work directory holding
    /// an empty `rootfs`: its layers applied into `rootfs`, or in layer mode its layers
    /// unpacked (those not on disk yet) and listed in `layers.json`.
    fn unpack(
        &self,
        layout: &Path,
        manifest: &Descriptor,
        image: &Path,
    ) -> Result<ImageConfig, ImageError> {
        if !self.layered {
            let options = self.layer_options(false);
            return layout::unpack_image(layout, manifest, &image.join("rootfs"), options);
        }
        let (manifest, config) = layout::read_image(layout, manifest)?;
        let mut budget = Budget::image();
        let mut digests = Vec::new();
        for layer in manifest.layers() {
            self.ensure_layer(layout, layer, &mut budget)?;
            digests.push(layer.digest().to_string());
        }
        let path = image.join(LAYERS_FILE);
        let json = serde_json::to_vec_pretty(&digests)
            .map_err(|e| ImageError::io("encoding layers.json", e.into()))?;
        fs::write(&path, json).context(|| format!("writing {}", path.display()))?;
        Ok(config)
    }

    /// Unpacks `layer` into `layers/<digest>` unless it is there. Only a layer this call
    /// unpacks takes from `budget`.
    fn ensure_layer(
        &self,
        layout: &Path,
        layer: &Descriptor,
        budget: &mut Budget,
    ) -> Result<(), ImageError> {
        // Refuses digests other than sha256 (64 hex digits), so the name is safe as a path.
        layout::blob_path(layout, layer)?;
        let digest = layer.digest().to_string();
        let slot = self.layers.slot(digest.clone());
        let _unpacking = lock(&slot);
        let dir = self.layer_dir(&digest);
        if dir.is_dir() {
            return Ok(()); // Renamed in only when complete.
        }
        let work = self.work_dir()?;
        let tree = work.path().join("layer");
        fs::create_dir(&tree).context(|| format!("creating {}", tree.display()))?;
        // Its mode is the merged root's when it is the top layer: that of any rootfs.
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))
            .context(|| format!("setting the mode of {}", tree.display()))?;
        layout::unpack_layer(layout, layer, &tree, self.layer_options(true), budget)?;
        self.unpacked_layers.fetch_add(1, Ordering::Relaxed);
        match fs::rename(&tree, &dir) {
            Ok(()) => Ok(()),
            // Another store on this root finished it first.
            Err(e) if dir.is_dir() => {
                drop(e);
                Ok(())
            }
            Err(e) => Err(ImageError::io(
                format!("renaming into {}", dir.display()),
                e,
            )),
        }
    }

    /// The image `id`: in memory, on disk, or built now by `build` (which fills a work
    /// directory holding an empty `rootfs` and returns the configuration).
    fn prepare_id(
        &self,
        id: &str,
        build: impl FnOnce(&Path) -> Result<ImageConfig, ImageError>,
    ) -> Result<Arc<PreparedImage>, ImageError> {
        let slot = self.images.slot(id.to_owned());
        let mut prepared = lock(&slot);
        if let Some(image) = prepared.as_ref() {
            metrics::hit();
            return Ok(image.clone());
        }
        let image = match self.load(id)? {
            Some(image) => {
                metrics::hit();
                image
            }
            None => self.build(id, build)?,
        };
        Ok(prepared.insert(Arc::new(image)).clone())
    }

    /// The image `id` if it is prepared (in memory or on disk), without building it.
    fn lookup(&self, id: &str) -> Result<Option<Arc<PreparedImage>>, ImageError> {
        let slot = self.images.slot(id.to_owned());
        let mut prepared = lock(&slot);
        if let Some(image) = prepared.as_ref() {
            metrics::hit();
            return Ok(Some(image.clone()));
        }
        Ok(self
            .load(id)?
            .map(|image| prepared.insert(Arc::new(image)).clone()))
    }

    /// Builds image `id` in a work directory and renames it into place. If another store
    /// on the same root finished it first, theirs is used.
    fn build(
        &self,
        id: &str,
        build: impl FnOnce(&Path) -> Result<ImageConfig, ImageError>,
    ) -> Result<PreparedImage, ImageError> {
        // Until the image is renamed in, its layers are listed nowhere on disk.
        let _layers_kept = self
            .layer_use
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let work = self.work_dir()?;
        let rootfs = work.path().join("rootfs");
        fs::create_dir(&rootfs).context(|| format!("creating {}", rootfs.display()))?;
        let config = build(work.path())?;
        let config_path = work.path().join("config.json");
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| ImageError::io("encoding config.json", e.into()))?;
        fs::write(&config_path, json).context(|| format!("writing {}", config_path.display()))?;
        // The work directory was made private (0700); the image is for every container.
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
            .context(|| format!("setting the mode of {}", work.path().display()))?;
        let dir = self.image_dir(id);
        match fs::rename(work.path(), &dir) {
            Ok(()) => {
                self.unpacked.fetch_add(1, Ordering::Relaxed);
            }
            // Renaming onto a non-empty directory fails: someone else finished first.
            Err(e) if dir.join("config.json").is_file() => drop(e),
            Err(e) => {
                return Err(ImageError::io(
                    format!("renaming into {}", dir.display()),
                    e,
                ));
            }
        }
        self.load(id)?.ok_or_else(|| {
            ImageError::io(
                format!("reading {}", dir.display()),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// Reads a prepared image from disk, mounting its rootfs if it is made of layers and
    /// not mounted; `None` if it is not there.
    fn load(&self, id: &str) -> Result<Option<PreparedImage>, ImageError> {
        let dir = self.image_dir(id);
        let config_path = dir.join("config.json");
        let bytes = match fs::read(&config_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                return Ok(None);
            }
            Err(e) => {
                return Err(ImageError::io(
                    format!("reading {}", config_path.display()),
                    e,
                ));
            }
        };
        let config = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::io(format!("parsing {}", config_path.display()), e.into()))?;
        let layers = self.ensure_mounted(&dir)?;
        Ok(Some(PreparedImage {
            id: id.to_owned(),
            rootfs: dir.join("rootfs"),
            config,
            layers,
        }))
    }

    /// Mounts the layers `dir/layers.json` lists on `dir/rootfs` unless it is mounted; an
    /// image without `layers.json` is a flattened one, nothing to mount. The layer
    /// directories, top first (none for a flattened image).
    fn ensure_mounted(&self, dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
        let Some(layers) = self.image_layers(dir)? else {
            return Ok(Vec::new());
        };
        let mut lowers: Vec<PathBuf> = layers.iter().rev().map(|d| self.layer_dir(d)).collect();
        while lowers.len() < 2 {
            lowers.push(self.root.join("layers/empty"));
        }
        let rootfs = dir.join("rootfs");
        if overlay::is_mounted(&rootfs, dir).context(|| format!("reading {}", rootfs.display()))? {
            return Ok(lowers);
        }
        overlay::mount_lowers(&lowers, &rootfs)
            .context(|| format!("mounting the layers of {} on its rootfs", dir.display()))?;
        lock(&self.mounted).insert(rootfs);
        Ok(lowers)
    }

    /// The layer digests (bottom first) of the image in `dir`; `None` for a flattened one.
    fn image_layers(&self, dir: &Path) -> Result<Option<Vec<String>>, ImageError> {
        let path = dir.join(LAYERS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()), e)),
        };
        let layers: Vec<String> = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::io(format!("parsing {}", path.display()), e.into()))?;
        // Written by us, but a name that is not a digest must not reach a path.
        if let Some(bad) = layers.iter().find(|d| !is_sha256(d)) {
            return Err(ImageError::io(
                format!("{}: `{bad}` is not a sha256 digest", path.display()),
                std::io::ErrorKind::InvalidData.into(),
            ));
        }
        Ok(Some(layers))
    }

    /// Where layer `digest` lives: `layers/<digest with ':' as '-'>`.
    fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers").join(digest.replace(':', "-"))
    }

    /// Where image `id` lives: `images/<id with ':' as '-'>`.
    fn image_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(id.replace(':', "-"))
    }

    /// A fresh work directory under `tmp/`, removed when dropped.
    fn work_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&tmp)
            .context(|| format!("creating a work directory in {}", tmp.display()))
    }

    fn layer_options(&self, overlay: bool) -> LayerOptions {
        LayerOptions {
            preserve_owners: self.preserve_owners,
            overlay,
        }
    }
}

impl Drop for ImageStore {
    /// Detaches the rootfs mounts this store made (see [`ImageStore`] for why that is
    /// safe), so that a store's directory can be removed once the store is gone.
    fn drop(&mut self) {
        for rootfs in lock(&self.mounted).drain() {
            if let Err(e) = overlay::unmount(&rootfs, true) {
                tracing::warn!(rootfs = %rootfs.display(), error = %e, "cannot unmount");
            }
        }
    }
}

/// The file of an image directory that lists its layers (layer mode).
pub(crate) const LAYERS_FILE: &str = "layers.json";

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Removes the work directories of processes that are gone (`<pid>-...` with no
/// `/proc/<pid>`), unmounting first whatever is still mounted under them (never removing
/// through a mount). Best effort: what cannot be removed stays.
fn remove_stale_work(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .map(|(pid, _)| pid);
        if let Some(pid) = pid.filter(|pid| pid.parse::<u32>().is_ok())
            && !Path::new("/proc").join(pid).exists()
            && overlay::unmount_under(&entry.path())
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// What identifies a version of a source file: its path, the tag asked for, its size and
/// its modification time.
fn fingerprint(file: &Path, tag: Option<&str>) -> std::io::Result<String> {
    let meta = fs::metadata(file)?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(format!(
        "{}\0{}\0{}\0{}\0{}",
        file.display(),
        tag.unwrap_or(""),
        meta.len(),
        meta.ino(),
        mtime.as_nanos()
    ))
}
