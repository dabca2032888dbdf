//! Leases, bookkeeping and eviction: the part of [`ImageStore`] that keeps the cache
//! under its limit without removing an image in use.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::{ImageStore, PreparedImage};
use crate::cache::HeldImage;
use crate::error::{ImageError, IoContext};
use crate::metrics;
use crate::slots::lock;

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
    /// [`PreparedImage`] alive outside the store) until the cache fits its limit, then the
    /// blobs no image uses. Runs after every `prepare`; call it after releasing images to
    /// reclaim space sooner. Failures are logged, not returned.
    pub fn collect_garbage(&self) {
        let mut cache = lock(&self.cache);
        for id in cache.victims(self.limit, |id| self.in_use(id)) {
            if self.evict(&id) {
                cache.remove(&id);
            }
        }
        let Ok(_exclusive) = self.blob_use.try_write() else {
            return; // A pull is in progress: its blobs stay; the next run removes them.
        };
        for digest in cache.unused_blobs() {
            let path = self.blobs.path(&digest);
            match fs::remove_file(&path) {
                Ok(()) => cache.remove_blob(&digest),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => cache.remove_blob(&digest),
                Err(e) => tracing::warn!(%digest, error = %e, "cannot remove an unused blob"),
            }
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
    /// is gone. The directory is renamed away first, so no half image stays in place.
    fn evict(&self, id: &str) -> bool {
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
        let gone = self.work_dir().and_then(|work| {
            let dir = self.image_dir(id);
            let trash = work.path().join("image");
            fs::rename(&dir, &trash).context(|| format!("removing {}", dir.display()))
        });
        match gone {
            Ok(()) => {
                *prepared = None;
                metrics::evicted();
                tracing::info!(image = %id, "image evicted from the cache");
                true
            }
            Err(e) => {
                tracing::warn!(image = %id, error = %e, "cannot evict an image");
                false
            }
        }
    }

    /// Records a pulled image with the blobs it was pulled from, for the cache's size.
    pub(super) fn record_blobs(
        &self,
        image: &PreparedImage,
        blobs: &[String],
    ) -> Result<(), ImageError> {
        let dir = self.image_dir(&image.id);
        let bytes = dir_size(&dir).context(|| format!("measuring {}", dir.display()))?;
        let sized = blobs
            .iter()
            .map(|digest| {
                let size = fs::metadata(self.blobs.path(digest)).map_or(0, |m| m.len());
                (digest.clone(), size)
            })
            .collect();
        lock(&self.cache).record(&image.id, bytes, sized);
        Ok(())
    }

    /// Records a use of `prepared` (measuring it on first sight) by `reference`.
    pub(super) fn note_use(
        &self,
        prepared: &PreparedImage,
        reference: Option<&str>,
    ) -> Result<(), ImageError> {
        if !lock(&self.cache).knows(&prepared.id) {
            let dir = self.image_dir(&prepared.id);
            let bytes = dir_size(&dir).context(|| format!("measuring {}", dir.display()))?;
            lock(&self.cache).record(&prepared.id, bytes, Vec::new());
        }
        lock(&self.cache).touch(&prepared.id, reference);
        Ok(())
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
