//! Leases, bookkeeping and eviction: the part of [`ImageStore`] that keeps the cache
//! under its limit without removing an image in use, nor a layer or blob one uses.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::{ImageStore, PreparedImage, is_sha256};
use crate::cache::{HeldImage, Part};
use crate::error::{ImageError, IoContext};
use crate::slots::lock;
use crate::{metrics, overlay};

impl ImageStore {
    /// A lease on the prepared image `id` (a [`PreparedImage::id`]) if it is on disk, for a
    /// container that outlived the process that prepared its image (adopted after a
    /// restart): while the returned `Arc` lives, garbage collection keeps the image.
    pub fn lease(&self, id: &str) -> Result<Option<Arc<PreparedImage>>, ImageError> {
        let Some(image) = self.lookup(id)? else {
            return Ok(None);
        };
        self.note_use(&image, None)?;
        Ok(Some(image))
    }

    /// At most `max` images this store holds, most recently used first, each with the
    /// reference as the request spelled it (an image named two ways is listed twice).
    /// The default rootfs is not listed.
    pub fn held(&self, max: usize) -> Vec<HeldImage> {
        lock(&self.cache).held(max)
    }

    /// The bytes the images and blobs prepared by this process take on disk.
    pub fn cached_bytes(&self) -> u64 {
        lock(&self.cache).total_bytes()
    }

    /// Removes the least recently used images not in use (no clone of their
    /// [`PreparedImage`] alive outside the store) until the cache fits its limit (in layer
    /// mode unmounting their rootfs first), then the blobs and layers no image uses.
    /// Runs after every `prepare`; call it after releasing images to reclaim space sooner.
    /// Failures are logged, not returned.
    ///
    /// Images and layers are unmounted and renamed into the trash under the cache's lock
    /// (with the unused blobs' unlinks and the reading of every image's layer list), and
    /// their files deleted after it is released, so that [`ImageStore::held`] (asked for by
    /// every heartbeat) never waits for a large eviction's deletes.
    pub fn collect_garbage(&self) {
        let mut trash = Vec::new();
        self.collect_into(&mut trash);
        for dir in trash {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(trash = %path.display(), error = %e, "cannot delete evicted files");
            }
        }
    }

    /// [`ImageStore::collect_garbage`] up to the deletes: what it evicts is moved into
    /// work directories added to `trash`.
    fn collect_into(&self, trash: &mut Vec<tempfile::TempDir>) {
        let mut cache = lock(&self.cache);
        for id in cache.victims(self.limit, |id| self.in_use(id)) {
            if self.evict(&id, trash) {
                cache.remove(&id);
            }
        }
        let unused = cache.unused_parts();
        // A pull in progress keeps the blobs (a build the layers): the next run removes them.
        if let Ok(_exclusive) = self.blob_use.try_write() {
            for part in unused.iter().filter(|p| matches!(p, Part::Blob(_))) {
                let Part::Blob(digest) = part else { continue };
                let path = self.blobs.path(digest);
                match fs::remove_file(&path) {
                    Ok(()) => cache.remove_part(part),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => cache.remove_part(part),
                    Err(e) => tracing::warn!(%digest, error = %e, "cannot remove an unused blob"),
                }
            }
        }
        let layers: Vec<&String> = unused
            .iter()
            .filter_map(|p| match p {
                Part::Layer(digest) => Some(digest),
                Part::Blob(_) => None,
            })
            .collect();
        if layers.is_empty() {
            return;
        }
        let Ok(_exclusive) = self.layer_use.try_write() else {
            return;
        };
        // Every image on disk keeps its layers, counted here or not (one left by an earlier
        // process may back a container that outlived it).
        let Some(listed) = self.layers_on_disk() else {
            // Kept for an image that cannot be read, like those this process does not count:
            // counted, they would hold the cache over its limit and evict everything else.
            for digest in layers {
                cache.remove_part(&Part::Layer(digest.clone()));
            }
            return;
        };
        for digest in layers {
            let part = Part::Layer(digest.clone());
            if listed.contains(digest) {
                cache.remove_part(&part); // Stays, for an image this process does not count.
                continue;
            }
            match self.remove_layer(digest, trash) {
                Ok(()) => cache.remove_part(&part),
                Err(e) => tracing::warn!(%digest, error = %e, "cannot remove an unused layer"),
            }
        }
    }

    /// The layers listed by the images on disk; `None` (remove no layer) if any image's
    /// list, or the listing of the images, cannot be read: a layer is removed only when
    /// every image is known not to use it.
    fn layers_on_disk(&self) -> Option<HashSet<String>> {
        let images = self.root.join("images");
        let keep_all = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, images = %images.display(), "keeping every layer");
        };
        let entries = fs::read_dir(&images).map_err(|e| keep_all(&e)).ok()?;
        let mut listed = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| keep_all(&e)).ok()?;
            let layers = self
                .image_layers(&entry.path())
                .map_err(|e| keep_all(&e))
                .ok()?;
            listed.extend(layers.unwrap_or_default());
        }
        Some(listed)
    }

    /// Removes layer `digest`'s directory: renamed into a work directory added to `trash`
    /// (deleted once the cache's lock is released), so no half layer stays in place looking
    /// complete.
    fn remove_layer(
        &self,
        digest: &str,
        trash: &mut Vec<tempfile::TempDir>,
    ) -> Result<(), ImageError> {
        let dir = self.layer_dir(digest);
        let work = self.work_dir()?;
        match fs::rename(&dir, work.path().join("layer")) {
            Ok(()) => {
                trash.push(work);
                tracing::info!(layer = %digest, "unused layer removed");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// Whether image `id` is leased (or being prepared right now).
    fn in_use(&self, id: &str) -> bool {
        let Some(slot) = self.images.get(id) else {
            return false;
        };
        let Ok(prepared) = slot.try_lock() else {
            return true;
        };
        prepared
            .as_ref()
            .is_some_and(|image| Arc::strong_count(image) > 1)
    }

    /// Removes image `id` from memory and disk unless it got leased meanwhile; whether it
    /// is gone. The directory is renamed into a work directory added to `trash` (deleted
    /// once the cache's lock is released), so no half image stays in place.
    fn evict(&self, id: &str, trash: &mut Vec<tempfile::TempDir>) -> bool {
        let Some(slot) = self.images.get(id) else {
            return true;
        };
        let Ok(mut prepared) = slot.try_lock() else {
            return false;
        };
        if prepared
            .as_ref()
            .is_some_and(|image| Arc::strong_count(image) > 1)
        {
            return false;
        }
        let gone = self
            .unmount_rootfs(id)
            .and_then(|()| self.work_dir())
            .and_then(|work| {
                let dir = self.image_dir(id);
                fs::rename(&dir, work.path().join("image"))
                    .context(|| format!("removing {}", dir.display()))?;
                trash.push(work);
                Ok(())
            });
        match gone {
            Ok(()) => {
                *prepared = None;
                metrics::evicted();
                tracing::info!(image = %id, "image evicted from the cache");
                true
            }
            Err(e) => {
                // Its rootfs may be unmounted by now: forget it here, so the next prepare
                // loads it again (mounting it) instead of handing out an empty rootfs.
                *prepared = None;
                tracing::warn!(image = %id, error = %e, "cannot evict an image");
                false
            }
        }
    }

    /// Unmounts image `id`'s rootfs if it is mounted (every mount stacked there: two
    /// stores on one root may each have mounted it). Not detached: a rootfs something
    /// still uses fails to unmount, and the image stays.
    fn unmount_rootfs(&self, id: &str) -> Result<(), ImageError> {
        let dir = self.image_dir(id);
        let rootfs = dir.join("rootfs");
        while overlay::is_mounted(&rootfs, &dir)
            .context(|| format!("reading {}", rootfs.display()))?
        {
            overlay::unmount(&rootfs, false)
                .context(|| format!("unmounting {}", rootfs.display()))?;
        }
        lock(&self.mounted).remove(&rootfs);
        Ok(())
    }

    /// Records a pulled image with the blobs it was pulled from, for the cache's size.
    pub(super) fn record_blobs(
        &self,
        image: &PreparedImage,
        blobs: &[String],
    ) -> Result<(), ImageError> {
        let (bytes, mut parts) = self.measure(&image.id)?;
        parts.extend(blobs.iter().map(|digest| {
            let size = fs::metadata(self.blobs.path(digest)).map_or(0, |m| m.len());
            (Part::Blob(digest.clone()), size)
        }));
        lock(&self.cache).record(&image.id, bytes, parts);
        Ok(())
    }

    /// Records a use of `prepared` (measuring it on first sight, with the registry blobs
    /// it was pulled from when it was found on disk) by `reference`.
    pub(super) fn note_use(
        &self,
        prepared: &PreparedImage,
        reference: Option<&str>,
    ) -> Result<(), ImageError> {
        if !lock(&self.cache).knows(&prepared.id) {
            let blobs = if is_sha256(&prepared.id) {
                self.blobs.pulled_from(&prepared.id)
            } else {
                Vec::new()
            };
            self.record_blobs(prepared, &blobs)?;
        }
        lock(&self.cache).touch(&prepared.id, reference);
        Ok(())
    }

    /// The bytes of image `id`'s own directory (not its mounted rootfs), and its layers
    /// with their sizes (a layer already known is not measured again).
    fn measure(&self, id: &str) -> Result<(u64, Vec<(Part, u64)>), ImageError> {
        let dir = self.image_dir(id);
        let bytes = dir_size(&dir).context(|| format!("measuring {}", dir.display()))?;
        let mut parts = Vec::new();
        for digest in self.image_layers(&dir)?.unwrap_or_default() {
            let layer = self.layer_dir(&digest);
            let part = Part::Layer(digest);
            let known = lock(&self.cache).part_size(&part);
            let size = match known {
                Some(size) => size,
                None => dir_size(&layer).context(|| format!("measuring {}", layer.display()))?,
            };
            parts.push((part, size));
        }
        Ok((bytes, parts))
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed), not descending
/// into mount points (a mounted rootfs is its layers, counted once as such).
fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let dev = fs::symlink_metadata(dir)?.dev();
    dir_size_on(dir, dev)
}

/// [`dir_size`] of what is on device `dev` under `dir`.
fn dir_size_on(dir: &Path, dev: u64) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        total += if meta.is_dir() {
            if meta.dev() == dev {
                dir_size_on(&entry.path(), dev)?
            } else {
                0
            }
        } else {
            meta.len()
        };
    }
    Ok(total)
}
