//! [`ImageError`]: everything that can go wrong preparing an image or resolving a user.

use std::io;
use std::path::PathBuf;

/// The image reference forms berth understands, for error messages.
pub(crate) const SUPPORTED_FORMS: &str = "a registry reference \
     (`[registry/]repo[:tag][@sha256:<hex>]`), `oci:<layout dir>[:<tag>]`, \
     `oci-archive:<layout tar>[:<tag>]`, or an absolute path to an OCI layout directory \
     or archive";

/// Why an image could not be prepared, or a user not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference has no form berth knows (e.g. `oci:` without a path).
    #[error("image reference `{reference}` is not supported: use {SUPPORTED_FORMS}")]
    Unsupported {
        /// The reference as given.
        reference: String,
    },
    /// A registry reference that does not parse (upper case, bad digest, ...).
    #[error("invalid image reference `{reference}`: {reason}; use {SUPPORTED_FORMS}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Fetching from a registry failed: network, authentication, an unknown repository or
    /// tag, a malformed manifest, an unreadable credentials file.
    #[error("pulling {reference}: {reason}")]
    Pull {
        /// The reference, with the registry's defaults filled in.
        reference: String,
        /// What failed (never a credential).
        reason: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The OCI layout (or archive) is malformed: unreadable JSON, missing blobs, a nested
    /// index, an unsupported digest algorithm.
    #[error("invalid OCI image layout {layout}: {reason}")]
    InvalidLayout {
        /// The layout directory (for an archive: where it was unpacked).
        layout: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tag was given and no manifest in `index.json` carries it as
    /// `org.opencontainers.image.ref.name`.
    #[error("OCI layout {layout} has no manifest tagged `{tag}` (tags: {available:?})")]
    TagNotFound {
        /// The layout directory.
        layout: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags the index has.
        available: Vec<String>,
    },
    /// No tag was given and `index.json` does not hold exactly one manifest.
    #[error(
        "OCI layout {layout} has {count} manifests: name one with `:<tag>` (tags: {available:?})"
    )]
    AmbiguousManifest {
        /// The layout directory.
        layout: PathBuf,
        /// How many manifests the index lists.
        count: usize,
        /// The tags the index has.
        available: Vec<String>,
    },
    /// A blob's content does not match its digest (or its size the descriptor's size).
    #[error("blob {digest} does not match its descriptor: {reason}")]
    DigestMismatch {
        /// The digest the descriptor names.
        digest: String,
        /// What differs.
        reason: String,
    },
    /// A layer's media type is not an uncompressed or gzip tar layer.
    #[error(
        "layer {digest} has media type `{media_type}`: only \
         `application/vnd.oci.image.layer.v1.tar` and `...tar+gzip` are supported"
    )]
    UnsupportedLayer {
        /// The layer's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A layer (or layout archive) entry would be written outside the rootfs: a `..`
    /// component, an absolute path, or a parent symlink that climbs out of it.
    #[error("{source_name}: entry `{path}` would be written outside its root: {reason}")]
    PathEscape {
        /// The layer digest or archive path the entry comes from.
        source_name: String,
        /// The entry's path as written in the tar.
        path: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A layer or archive is past one of the limits (entries, bytes, metadata size).
    #[error("{source_name}: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// The layer digest, archive or file concerned.
        source_name: String,
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The host's busybox, needed for the default rootfs, is missing or not static.
    #[error(
        "default rootfs: {path}: {reason}; install busybox-static \
         (`apt-get install busybox-static`)"
    )]
    Busybox {
        /// Where busybox was looked for.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The user string is not `uid`, `uid:gid`, `name` or `name:group`.
    #[error("invalid user `{user}`: expected `uid`, `uid:gid`, `name` or `name:group`")]
    InvalidUser {
        /// The user string.
        user: String,
    },
    /// A user name is not in the rootfs's `/etc/passwd`.
    #[error("user `{name}` is not in the image's /etc/passwd")]
    UnknownUser {
        /// The name.
        name: String,
    },
    /// A group name is not in the rootfs's `/etc/group`.
    #[error("group `{name}` is not in the image's /etc/group")]
    UnknownGroup {
        /// The name.
        name: String,
    },
}

impl ImageError {
    /// Whether this is a failure to fetch the image from its registry (network, auth, not
    /// found, a digest mismatch), as opposed to a bad reference or a local problem. The
    /// agent reports these as `image_pull: <error>`.
    pub fn is_pull_failure(&self) -> bool {
        matches!(
            self,
            ImageError::Pull { .. } | ImageError::DigestMismatch { .. }
        )
    }

    /// An [`ImageError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds a context to an `io::Result`, making an [`ImageError::Io`].
pub(crate) trait IoContext<T> {
    /// Maps the error with a context computed only on failure.
    fn context(self, context: impl FnOnce() -> String) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::io(context(), source))
    }
}
