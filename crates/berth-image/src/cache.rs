//! The cache's bookkeeping, with no I/O: the images this process prepared, their sizes,
//! their last use and the references that named them, the shared parts they use (registry
//! blobs, unpacked layers), each counted once however many images share it; and which
//! images to evict, least recently used first, to get under a size limit.

use std::collections::{HashMap, HashSet};

/// An image the store holds, as [`crate::ImageStore::held`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldImage {
    /// The reference as a request spelled it (`busybox:1.36`, `oci:/images/app:v1`).
    pub reference: String,
    /// The image id: its manifest digest (`sha256:<hex>`).
    pub digest: String,
}

impl HeldImage {
    /// The reference pinned to the image's digest, spelled as the request spelled its
    /// repository (`busybox:1.36` held as `sha256:ab...` is `busybox@sha256:ab...`): a
    /// request naming that finds the image here without asking the registry. `None` for
    /// an image that is not from a registry (a layout, an archive, a path).
    pub fn pinned(&self) -> Option<String> {
        let reference = self.reference.as_str();
        if reference.starts_with("oci:")
            || reference.starts_with("oci-archive:")
            || reference.starts_with('/')
        {
            return None;
        }
        let repository = match reference.split_once('@') {
            Some((repository, _)) => repository,
            // A tag follows the last `:` after the last `/` (a `:` before is a port).
            None => match reference.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') => repository,
                _ => reference,
            },
        };
        Some(format!("{repository}@{}", self.digest))
    }
}

/// Something on disk that images share and that is counted once: a registry blob, or a
/// layer unpacked into its own directory (layer mode), by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// `registry/blobs/sha256/<hex>`.
    Blob(String),
    /// `layers/<digest>/`.
    Layer(String),
}

/// What the store knows of its images. Guarded by the store's mutex.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// A logical clock: each use takes the next value.
    tick: u64,
    /// By image id.
    images: HashMap<String, Entry>,
    /// The size of every shared part on disk that this process knows of.
    parts: HashMap<Part, u64>,
}

/// One image.
#[derive(Debug, Default)]
struct Entry {
    /// The size of its directory (rootfs and config; a mounted rootfs counts nothing), not
    /// counting shared parts.
    bytes: u64,
    /// The registry blobs it was pulled from and the layers its rootfs is mounted from.
    parts: Vec<Part>,
    /// When it was last prepared.
    last_used: u64,
    /// The references that named it, with when each was last used.
    references: HashMap<String, u64>,
}

impl Cache {
    /// Whether image `id` is known (its size was measured).
    pub(crate) fn knows(&self, id: &str) -> bool {
        self.images.contains_key(id)
    }

    /// Records image `id`, `bytes` on disk, using `parts` (with their sizes).
    pub(crate) fn record(&mut self, id: &str, bytes: u64, parts: Vec<(Part, u64)>) {
        let entry = self.images.entry(id.to_owned()).or_default();
        entry.bytes = bytes;
        entry.parts = parts.iter().map(|(part, _)| part.clone()).collect();
        self.parts.extend(parts);
    }

    /// The size of `part` if it is known: a shared layer is measured once.
    pub(crate) fn part_size(&self, part: &Part) -> Option<u64> {
        self.parts.get(part).copied()
    }

    /// Notes a use of image `id`, by `reference` if there was one.
    pub(crate) fn touch(&mut self, id: &str, reference: Option<&str>) {
        self.tick += 1;
        let entry = self.images.entry(id.to_owned()).or_default();
        entry.last_used = self.tick;
        if let Some(reference) = reference {
            entry.references.insert(reference.to_owned(), self.tick);
        }
    }

    /// The bytes the known images and their parts take, each part once.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.images.values().map(|e| e.bytes).sum::<u64>() + self.parts.values().sum::<u64>()
    }

    /// Images to evict, least recently used first, until the total is at most `limit`;
    /// images for which `in_use` is true are skipped. Evicting one frees its own bytes and
    /// the parts no other image uses.
    pub(crate) fn victims(&self, limit: u64, in_use: impl Fn(&str) -> bool) -> Vec<String> {
        let mut total = self.total_bytes();
        let mut order: Vec<(&String, &Entry)> = self.images.iter().collect();
        order.sort_by_key(|(_, entry)| entry.last_used);
        let mut chosen: HashSet<&str> = HashSet::new();
        for (id, entry) in order {
            if total <= limit {
                break;
            }
            if in_use(id) {
                continue;
            }
            chosen.insert(id);
            total = total.saturating_sub(entry.bytes + self.freed_parts(entry, &chosen));
        }
        chosen.into_iter().map(str::to_owned).collect()
    }

    /// The bytes of `entry`'s parts that no image outside `gone` uses.
    fn freed_parts(&self, entry: &Entry, gone: &HashSet<&str>) -> u64 {
        entry
            .parts
            .iter()
            .filter(|part| !self.part_used_outside(part, gone))
            .filter_map(|part| self.parts.get(part))
            .sum()
    }

    fn part_used_outside(&self, part: &Part, gone: &HashSet<&str>) -> bool {
        self.images
            .iter()
            .any(|(id, e)| !gone.contains(id.as_str()) && e.parts.contains(part))
    }

    /// Forgets image `id`.
    pub(crate) fn remove(&mut self, id: &str) {
        self.images.remove(id);
    }

    /// The parts no known image uses any more.
    pub(crate) fn unused_parts(&self) -> Vec<Part> {
        let none = HashSet::new();
        self.parts
            .keys()
            .filter(|part| !self.part_used_outside(part, &none))
            .cloned()
            .collect()
    }

    /// Forgets a part (removed from disk, or kept for an image this process does not
    /// count).
    pub(crate) fn remove_part(&mut self, part: &Part) {
        self.parts.remove(part);
    }

    /// At most `max` (reference, image) pairs, most recently used first.
    pub(crate) fn held(&self, max: usize) -> Vec<HeldImage> {
        let mut all: Vec<(u64, HeldImage)> = self
            .images
            .iter()
            .flat_map(|(id, entry)| {
                entry.references.iter().map(|(reference, used)| {
                    let held = HeldImage {
                        reference: reference.clone(),
                        digest: id.clone(),
                    };
                    (*used, held)
                })
            })
            .collect();
        all.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        all.into_iter().take(max).map(|(_, held)| held).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn cache() -> Cache {
        let mut cache = Cache::default();
        for (id, reference) in [("a", "img:a"), ("b", "img:b"), ("c", "img:c")] {
            let blobs = vec![
                (Part::Blob("shared".to_owned()), 10),
                (Part::Layer(format!("own-{id}")), 5),
            ];
            cache.record(id, 100, blobs);
            cache.touch(id, Some(reference));
        }
        cache
    }

    #[test]
    fn evicts_least_recently_used_first_skipping_those_in_use() {
        let mut cache = cache();
        assert_eq!(cache.total_bytes(), 300 + 10 + 15);
        cache.touch("a", None);
        // b is the oldest; it is in use, so c goes, then a would be next.
        assert_eq!(cache.victims(250, |id| id == "b"), vec!["c".to_owned()]);
        assert!(cache.victims(1000, |_| false).is_empty());
        let mut all = cache.victims(0, |_| false);
        all.sort();
        assert_eq!(all, ["a", "b", "c"]);
    }

    #[test]
    fn a_shared_blob_outlives_one_of_its_images() {
        let mut cache = cache();
        cache.remove("a");
        assert_eq!(cache.unused_parts(), vec![Part::Layer("own-a".to_owned())]);
    }

    #[test]
    fn a_registry_reference_is_pinned_to_its_digest_as_spelled() {
        let held = |reference: &str| HeldImage {
            reference: reference.to_owned(),
            digest: "sha256:ab".to_owned(),
        };
        let pinned = |reference: &str| held(reference).pinned();
        assert_eq!(pinned("busybox:1.36").as_deref(), Some("busybox@sha256:ab"));
        assert_eq!(pinned("busybox").as_deref(), Some("busybox@sha256:ab"));
        assert_eq!(
            pinned("127.0.0.1:5000/team/app:v1").as_deref(),
            Some("127.0.0.1:5000/team/app@sha256:ab"),
            "the port stays"
        );
        assert_eq!(
            pinned("127.0.0.1:5000/app").as_deref(),
            Some("127.0.0.1:5000/app@sha256:ab")
        );
        assert_eq!(
            pinned("ghcr.io/o/app:v2@sha256:cd").as_deref(),
            Some("ghcr.io/o/app:v2@sha256:ab"),
            "a tag before the digest is the reference's own business"
        );
        for local in ["oci:/images/app:v1", "oci-archive:/x.tar", "/images/app"] {
            assert_eq!(pinned(local), None, "{local}");
        }
    }

    #[test]
    fn held_lists_references_most_recent_first() {
        let mut cache = cache();
        cache.touch("a", Some("other:a"));
        let held = cache.held(2);
        assert_eq!(held[0].reference, "other:a");
        assert_eq!(held[1].reference, "img:c");
        assert_eq!(held.len(), 2);
    }
}
