//! Tar streams to disk: a layer applied onto a rootfs (whiteouts included) or unpacked
//! into a directory of its own (whiteouts kept as overlayfs whiteouts), and an OCI layout
//! archive extracted into a directory. All refuse to write outside their root and stop at
//! the [limits](crate#limits).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::confined::{self, Escape};
use crate::error::{ImageError, IoContext};

/// Most entries one layer (or one layout archive) may have.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Most bytes of file content one image may unpack, all layers together (64 GiB).
pub const MAX_IMAGE_BYTES: u64 = 64 << 30;

/// The whiteout marker that hides everything the lower layers put in its directory.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The prefix of a whiteout: `.wh.<name>` deletes `<name>` of the lower layers.
const WHITEOUT_PREFIX: &str = ".wh.";

/// What is left of an image's byte allowance while its layers are unpacked.
#[derive(Debug)]
pub(crate) struct Budget {
    bytes_left: u64,
}

impl Budget {
    /// The allowance of one image: [`MAX_IMAGE_BYTES`].
    pub(crate) fn image() -> Budget {
        Budget {
            bytes_left: MAX_IMAGE_BYTES,
        }
    }

    /// Takes `bytes` from the allowance, or fails naming `source_name`.
    fn take(&mut self, bytes: u64, source_name: &str) -> Result<(), ImageError> {
        self.bytes_left =
            self.bytes_left
                .checked_sub(bytes)
                .ok_or_else(|| ImageError::TooLarge {
                    source_name: source_name.to_owned(),
                    what: "the image's unpacked size in bytes",
                    limit: MAX_IMAGE_BYTES,
                })?;
        Ok(())
    }
}

/// How a layer is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerOptions {
    /// Set files' owners from the tar headers (needs root; otherwise the unpacking user
    /// owns everything).
    pub(crate) preserve_owners: bool,
    /// The layer is unpacked alone into its own directory, an overlayfs lower layer:
    /// whiteouts become overlayfs whiteouts there (`.wh.<name>` a 0:0 character device
    /// `<name>`, `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its directory)
    /// instead of deleting what lower layers wrote, which are not there to delete.
    pub(crate) overlay: bool,
}

/// The xattr that makes a directory of an overlayfs layer hide the lower layers' one.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies one layer (an uncompressed tar stream) onto `rootfs`: its whiteouts delete
/// from the lower layers, its entries replace theirs; or, with [`LayerOptions::overlay`],
/// its whiteouts are written as overlayfs whiteouts. `source_name` names the layer in
/// errors.
pub(crate) fn apply_layer(
    rootfs: &Path,
    layer: impl Read,
    source_name: &str,
    options: LayerOptions,
    budget: &mut Budget,
) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(layer);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(options.preserve_owners);
    archive.set_overwrite(true);
    let read_error = |e| ImageError::io(format!("reading layer {source_name}"), e);
    // What this layer wrote: an opaque whiteout clears only what the lower layers left.
    let mut written: HashSet<PathBuf> = HashSet::new();
    for (count, entry) in archive.entries().map_err(read_error)?.enumerate() {
        if count as u64 >= MAX_ENTRIES {
            return Err(too_many_entries(source_name));
        }
        let mut entry = entry.map_err(read_error)?;
        budget.take(entry.size(), source_name)?;
        if let Some(dst) = apply_entry(rootfs, &mut entry, source_name, &written, options)? {
            written.insert(dst);
        }
    }
    Ok(())
}

/// Applies one layer entry; returns the path it wrote, if any.
fn apply_entry<R: Read>(
    rootfs: &Path,
    entry: &mut tar::Entry<'_, R>,
    source_name: &str,
    written: &HashSet<PathBuf>,
    options: LayerOptions,
) -> Result<Option<PathBuf>, ImageError> {
    let raw = entry
        .path()
        .map_err(|e| bad_entry(source_name, e))?
        .into_owned();
    let escape = |reason: String| ImageError::PathEscape {
        source_name: source_name.to_owned(),
        path: raw.display().to_string(),
        reason,
    };
    let parts = confined::entry_components(&raw).map_err(|r| escape(r.to_owned()))?;
    let Some((name, parents)) = parts.split_last() else {
        return Ok(None); // `./`: the rootfs itself.
    };
    let parent = resolve(rootfs, &parents.iter().collect::<PathBuf>(), escape)?;
    fs::create_dir_all(&parent).context(|| format!("creating {}", parent.display()))?;
    let name = name.to_string_lossy();
    if name == OPAQUE_WHITEOUT {
        if options.overlay {
            // The layer's own entries in the directory stay visible; only lower ones hide.
            xattr::set(&parent, OPAQUE_XATTR, b"y")
                .context(|| format!("marking {} opaque", parent.display()))?;
        } else {
            clear_lower(&parent, written)?;
        }
        return Ok(None);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if matches!(hidden, "" | "." | "..") || hidden.contains('/') {
            return Err(escape(format!("a whiteout of `{hidden}`")));
        }
        let hidden = parent.join(hidden);
        remove_any(&hidden)?;
        if options.overlay {
            overlay_whiteout(&hidden)?;
        }
        return Ok(None);
    }
    let kind = entry.header().entry_type();
    if skipped(kind) {
        return Ok(None);
    }
    let dst = parent.join(&*name);
    replace_existing(&dst, kind.is_dir())?;
    if kind.is_hard_link() {
        hard_link(rootfs, entry, &dst, source_name, escape)?;
    } else {
        entry
            .unpack(&dst)
            .context(|| format!("layer {source_name}: writing {}", dst.display()))?;
    }
    Ok(Some(dst))
}

/// Makes `dst` a hard link to the entry's target, another path of the rootfs (resolved
/// inside it; `..` and absolute targets are refused as for entry paths).
fn hard_link<R: Read>(
    rootfs: &Path,
    entry: &tar::Entry<'_, R>,
    dst: &Path,
    source_name: &str,
    escape: impl Fn(String) -> ImageError,
) -> Result<(), ImageError> {
    let link = entry
        .link_name()
        .map_err(|e| bad_entry(source_name, e))?
        .ok_or_else(|| bad_entry(source_name, io::Error::other("hard link without target")))?
        .into_owned();
    let parts = confined::entry_components(&link)
        .map_err(|r| escape(format!("its hard link target {}: {r}", link.display())))?;
    let target = parts.iter().collect::<PathBuf>();
    // The target itself is not followed: linking to a symlink links the symlink.
    let src = confined::resolve(rootfs, &target, false).map_err(|e| match e {
        Escape::Io(e) => ImageError::io(format!("resolving {}", link.display()), e),
        other => escape(format!("its hard link target: {other}")),
    })?;
    fs::hard_link(&src, dst).context(|| format!("linking {}", dst.display()))
}

/// Resolves an entry's parent directory inside `rootfs`, following symlinks as the
/// container would; climbing out is a [`ImageError::PathEscape`].
fn resolve(
    rootfs: &Path,
    parent: &Path,
    escape: impl Fn(String) -> ImageError,
) -> Result<PathBuf, ImageError> {
    confined::resolve(rootfs, parent, true).map_err(|e| match e {
        Escape::Io(e) => ImageError::io(format!("resolving {}", parent.display()), e),
        other => escape(format!("its parent directory: {other}")),
    })
}

/// Entries that are not written: device nodes and FIFOs (the runtime provides `/dev`),
/// and tar's own metadata entries.
fn skipped(kind: tar::EntryType) -> bool {
    kind.is_character_special() || kind.is_block_special() || kind.is_fifo() || is_metadata(kind)
}

/// tar's own metadata entries (pax headers, GNU long names), which carry no file.
fn is_metadata(kind: tar::EntryType) -> bool {
    kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
}

/// Makes room for a new entry at `dst`: a directory over a directory merges, anything
/// else replaces what the lower layers had there.
fn replace_existing(dst: &Path, is_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(dst) {
        Ok(meta) if meta.is_dir() && is_dir => Ok(()),
        Ok(_) => remove_any(dst),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(format!("reading {}", dst.display()), e)),
    }
}

/// Makes `path` an overlayfs whiteout: a character device 0:0, which hides the lower
/// layers' `path` in the merged view. Layers' own device nodes are skipped, so a layer can
/// make one only through a `.wh.` entry.
fn overlay_whiteout(path: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(io::Error::from)
        .context(|| format!("making the whiteout {}", path.display()))
}

/// Removes whatever is at `path` (a directory with its contents; a symlink itself, never
/// its target); nothing there is fine.
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    removed.context(|| format!("removing {}", path.display()))
}

/// Removes what the lower layers left in `dir` (an opaque whiteout), keeping what this
/// layer already wrote there.
fn clear_lower(dir: &Path, written: &HashSet<PathBuf>) -> Result<(), ImageError> {
    let entries = fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for child in entries {
        let child = child
            .context(|| format!("listing {}", dir.display()))?
            .path();
        if !written.contains(&child) {
            remove_any(&child)?;
        }
    }
    Ok(())
}

/// Extracts an OCI layout archive (`oci-archive:`) into `dest`, an empty directory. Only
/// directories and regular files are allowed (a layout has nothing else), so blobs can
/// never be links to host files.
pub(crate) fn extract_layout_archive(archive_path: &Path, dest: &Path) -> Result<(), ImageError> {
    let source_name = archive_path.display().to_string();
    let file = fs::File::open(archive_path).context(|| format!("opening {source_name}"))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let read_error = |e| ImageError::io(format!("reading {source_name}"), e);
    let mut budget = Budget::image();
    for (count, entry) in archive.entries().map_err(read_error)?.enumerate() {
        if count as u64 >= MAX_ENTRIES {
            return Err(too_many_entries(&source_name));
        }
        let mut entry = entry.map_err(read_error)?;
        budget.take(entry.size(), &source_name)?;
        extract_layout_entry(dest, &mut entry, &source_name)?;
    }
    Ok(())
}

/// Extracts one entry of a layout archive.
fn extract_layout_entry<R: Read>(
    dest: &Path,
    entry: &mut tar::Entry<'_, R>,
    source_name: &str,
) -> Result<(), ImageError> {
    let raw = entry
        .path()
        .map_err(|e| bad_entry(source_name, e))?
        .into_owned();
    let parts = confined::entry_components(&raw).map_err(|reason| ImageError::PathEscape {
        source_name: source_name.to_owned(),
        path: raw.display().to_string(),
        reason: reason.to_owned(),
    })?;
    let kind = entry.header().entry_type();
    let dst = parts
        .iter()
        .fold(dest.to_path_buf(), |p, part| p.join(part));
    if kind.is_dir() {
        return fs::create_dir_all(&dst).context(|| format!("creating {}", dst.display()));
    }
    if is_metadata(kind) {
        return Ok(());
    }
    if !kind.is_file() || parts.is_empty() {
        return Err(ImageError::InvalidLayout {
            layout: PathBuf::from(source_name),
            reason: format!(
                "entry `{}` is a {kind:?}: a layout archive holds only directories and files",
                raw.display()
            ),
        });
    }
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    entry
        .unpack(&dst)
        .context(|| format!("{source_name}: writing {}", dst.display()))?;
    Ok(())
}

fn too_many_entries(source_name: &str) -> ImageError {
    ImageError::TooLarge {
        source_name: source_name.to_owned(),
        what: "the number of tar entries",
        limit: MAX_ENTRIES,
    }
}

fn bad_entry(source_name: &str, e: io::Error) -> ImageError {
    ImageError::io(format!("reading an entry of {source_name}"), e)
}
