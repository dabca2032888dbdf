//! Read-only root filesystems for berth's containers.
//!
//! The worker agent asks an [`ImageStore`] for a container's image with
//! [`ImageStore::prepare`] and gets a [`PreparedImage`]: a rootfs directory, pulled or
//! unpacked once and shared by every container of that image, and its [`ImageConfig`]
//! (user, env, working directory, entrypoint, command). The `Arc` it returns is a lease:
//! garbage collection keeps an image while a clone of it lives outside the store. The
//! runtime gives each container its own overlay of the image's shared layers
//! ([`PreparedImage::layers`], [`mount_container_rootfs`]) or, for a flattened image,
//! mounts the rootfs read-only; [`resolve_user`] turns the image's user into a uid and gid from the image's own
//! `/etc/passwd` and `/etc/group`. Everything here blocks on the file system: call it
//! from `spawn_blocking`.
//!
//! # Image references
//!
//! - `None`: berth's default rootfs, built on first use from the host's static busybox
//!   (`/bin/busybox`, Debian's `busybox-static`): `bin/busybox` and a symlink per applet,
//!   `/etc/passwd` (root 0, nobody 65534), `/etc/group`, and empty `proc sys dev tmp etc
//!   work`. Its id is `default-<sha256 of busybox>`, so a busybox upgrade builds a new one.
//!   Its config: `PATH=/bin`, nothing else.
//! - `oci:<path>[:<tag>]`: an OCI image layout directory (`oci-layout`, `index.json`,
//!   `blobs/sha256/...`). The tag is matched against the
//!   `org.opencontainers.image.ref.name` annotation in `index.json`; without a tag the
//!   index must hold exactly one manifest.
//! - `oci-archive:<path>[:<tag>]`: a tar of such a layout, extracted into a work
//!   directory inside the store and read as above.
//! - A bare absolute path (`/images/app`, `/images/app.tar:v2`): a directory is a layout,
//!   a file an archive.
//!
//! - Anything else is a registry reference, pulled over the OCI distribution API
//!   (`oci-client`): `registry/repo:tag`, `repo@sha256:<hex>`, with Docker's defaults
//!   (`busybox:1.36` is `docker.io/library/busybox:1.36`; no tag is `latest`). Plain HTTP
//!   only for loopback registries and those listed in [`RegistryOptions::insecure`];
//!   credentials (basic; the client does the bearer token exchange) from a docker
//!   `config.json` ([`RegistryOptions::auth_file`], default [`default_auth_file`]). An
//!   index picks the `linux/<this arch>` manifest. A reference is resolved once per
//!   process: later calls use the image it named (tags are not re-checked). Failures to
//!   fetch are [`ImageError::Pull`] or [`ImageError::DigestMismatch`]
//!   ([`ImageError::is_pull_failure`]); a reference that does not parse is
//!   [`ImageError::InvalidReference`].
//!
//! An image's id is its manifest digest. Layers may be `application/vnd.oci.image.layer
//! .v1.tar` or `...tar+gzip` (Docker's gzip layer type is taken as the latter); others are
//! refused. Every blob is checked against its digest and size. Whiteouts are honoured
//! (`.wh.<name>` deletes a lower layer's `<name>`, `.wh..wh..opq` empties its directory of
//! what the lower layers put there): applied when flattening, kept as overlayfs whiteouts
//! in [layer mode](#layer-mode). Device nodes and FIFOs are skipped: the runtime provides
//! `/dev`. File owners are kept when the store runs as root; tar xattrs are not unpacked
//! (so a layer cannot set `trusted.overlay.*` attributes itself).
//!
//! # Safety of unpacking
//!
//! Nothing is written outside the rootfs (in layer mode, outside the layer's own
//! directory): an entry with a `..` component or an absolute path is refused, and parent
//! directories are resolved as the container would see them (an absolute symlink target
//! is taken inside the rootfs); a symlink that climbs above the rootfs is refused
//! ([`ImageError::PathEscape`]). A layout archive may hold only
//! directories and regular files.
//!
//! # On disk
//!
//! Under the store's root, `images/<id>/rootfs` and `images/<id>/config.json` (a `:` in
//! the id becomes `-`; in layer mode also `images/<id>/layers.json`, the image's layer
//! digests bottom first, and `rootfs` is a mount point), `layers/<digest>/` for the
//! layers unpacked in layer mode (`:` becomes `-`; content-addressed by the verified blob
//! digest, renamed into place when complete; `layers/empty` is an empty lowest layer for
//! one-layer images), `registry/blobs/sha256/<hex>` for the blobs pulled from
//! registries (content-addressed: a layer two images share is fetched once; a blob is
//! renamed into place only once verified), and `tmp/` for work in progress. An image is unpacked into a work
//! directory and renamed into place when complete, so a crash of the process never leaves
//! a half image that looks complete (files are not fsynced: a power loss right after an
//! unpack may). Work left by dead processes is removed by the next [`ImageStore::open`].
//! Concurrent `prepare` calls for one image unpack it once, and for one registry
//! reference pull it once (a blob is fetched once even across references; a layer is
//! unpacked once even across images); a second store on the same root (another process,
//! or a restart) uses what is on disk, mounting an image's layers again if they are not.
//!
//! # Layer mode
//!
//! When the store can mount overlayfs (`open` tries a read-only overlay in `tmp/`: it
//! needs root), or when told to with [`ImageStore::with_layer_sharing`], registry images
//! and OCI layouts and archives are stored as layers: each layer is unpacked once, alone,
//! into `layers/<digest>/` (`.wh.<name>` becomes a character device 0:0 `<name>`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory, as Docker's
//! overlay2 driver does), and an image's rootfs is a read-only overlay mount of its
//! layers, `lowerdir=<top>:...:<bottom>`, made private (`MS_PRIVATE`) so that nothing
//! mounted or unmounted under it propagates to or from other mount namespaces. Images
//! sharing a layer share its files on disk and in the page cache. Otherwise (not root, no
//! overlayfs), and always for the default rootfs, each image's layers are applied in
//! order into one directory of its own, whiteouts applied, and layers are shared only as
//! downloaded blobs.
//!
//! In layer mode an image's rootfs (which the runtime reads for the user and the program
//! check) is mounted by the store that loads its image (`prepare`,
//! [`ImageStore::lease`]); dropping the store detaches the mounts it made. Containers do
//! not run on it: each has its own overlay of the layer directories
//! ([`mount_container_rootfs`]), made and removed by the runtime, which uses
//! `layers/<digest>` directly for as long as the container lives. What keeps those
//! layers is the container's lease on its image, never a mount; the store's directory
//! must not be removed while containers of its images run. Work
//! directories a dead process left in `tmp/` are unmounted before being removed, never
//! removed through a mount. Unlike flattening, a layer is unpacked without its lower
//! layers: an entry under a symlink a lower layer made, or a hard link to a lower layer's
//! file, is not resolved through them (real layers, made from a file system's changes,
//! have neither); a directory a layer implies without an entry of its own gets mode
//! 0755.
//!
//! # Garbage collection
//!
//! After every `prepare`, while the images, blobs and layers this process prepared take
//! more than the limit ([`ImageStore::with_cache_limit`], default
//! [`DEFAULT_CACHE_LIMIT`]), the least recently used image that no one holds a lease on
//! is removed (in layer mode its rootfs unmounted first), then the
//! blobs and layers no remaining image uses. A layer or blob shared by several images is
//! counted once; an image's own bytes are its directory without its mounted rootfs.
//! Images left on disk by an earlier process are not counted until they are prepared (or
//! [leased](ImageStore::lease)) again: one may back a container that outlived its agent.
//! For the same reason a layer any image directory on disk lists is never removed, and
//! neither blobs nor layers are removed while a pull or build is in progress in the
//! process (the next collection does it). Stores in two processes on one root are not
//! coordinated: one may remove a layer the other is about to mount, which then fails
//! that `prepare`.
//!
//! The rootfs and the layers are shared by every container of the image: the runtime
//! must keep them read-only (an overlay with the container's own upper directory, or a
//! read-only mount) and put each container's writes elsewhere.
//!
//! # Limits
//!
//! Generous, to refuse the absurd with [`ImageError::TooLarge`] rather than fill the disk:
//! at most [`MAX_ENTRIES`] (1,000,000) tar entries per layer or layout archive,
//! [`MAX_IMAGE_BYTES`] (64 GiB) of file content per image (all layers) or archive, and
//! [`MAX_METADATA_BYTES`] (4 MiB) per `index.json`, manifest or configuration.
//!
//! # Layout
//!
//! - `store`: [`ImageStore`], [`PreparedImage`]; the on-disk layout of the store, layer
//!   mode; `store::gc`, leases, the bookkeeping of uses and eviction, layer removal.
//! - `overlay`: overlay mounts of layers, the probe, mounts left under a directory.
//! - `cache`: the bookkeeping of sizes, uses and references, and the LRU choice;
//!   [`HeldImage`].
//! - `slots`: per-key locks that make concurrent calls do the work once.
//! - `reference`: parsing image references.
//! - `registry`: pulling into the blob directory, verified; [`RegistryOptions`].
//! - `auth`: credentials from a docker `config.json`.
//! - `capped`: a writer that stops a blob at its announced size.
//! - `metrics`: the counters' names.
//! - `layout`: reading an OCI layout: manifest selection, blob verification, layers.
//! - `unpack`: tar streams to disk: layers with whiteouts (applied, or as overlayfs
//!   whiteouts), layout archives; the limits.
//! - `confined`: resolving paths inside a root the way the container sees them.
//! - `busybox`: the default rootfs and the static-ELF check.
//! - `config`: [`ImageConfig`].
//! - `user`: [`resolve_user`].
//! - `error`: [`ImageError`].
//! - `testing` (feature `testing`): writing layouts and archives for tests, and a local
//!   registry (`testing::registry`).

mod auth;
mod busybox;
mod cache;
mod capped;
mod config;
mod confined;
mod error;
mod layout;
pub mod metrics;
mod overlay;
mod reference;
mod registry;
mod slots;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod unpack;
mod user;

pub use auth::default_auth_file;
pub use busybox::DEFAULT_BUSYBOX;
pub use cache::HeldImage;
pub use config::ImageConfig;
pub use error::ImageError;
pub use layout::MAX_METADATA_BYTES;
pub use overlay::{mount_container_rootfs, unmount_container_rootfs};
pub use registry::RegistryOptions;
pub use store::{DEFAULT_CACHE_LIMIT, ImageStore, PreparedImage};
pub use unpack::{MAX_ENTRIES, MAX_IMAGE_BYTES};
pub use user::resolve_user;
#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests;
