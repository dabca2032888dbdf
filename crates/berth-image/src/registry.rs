//! Pulling from OCI registries (the distribution API, through `oci-client`) into the
//! store's blob directory, an OCI layout shared by every pulled image: `blobs/sha256/<hex>`.
//!
//! A pull fetches the manifest (choosing this platform's from an index), then the config
//! and each layer it does not have yet. Every blob is written to a work file, checked
//! against its descriptor's digest and size, and only then renamed into place, so a blob
//! in the directory is always a verified one. A layer shared by two images is fetched
//! once; concurrent fetches of one blob wait for the first (a slot per digest).

use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{self as media, OciDescriptor};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use crate::auth;
use crate::capped::Capped;
use crate::error::{ImageError, IoContext};
use crate::layout::{self, MAX_METADATA_BYTES, hex};
use crate::metrics;
use crate::slots::{Slots, lock};
use crate::unpack::MAX_IMAGE_BYTES;

/// The manifest media types asked for: OCI and Docker, single images and indexes.
const ACCEPTED: &[&str] = &[
    media::OCI_IMAGE_MEDIA_TYPE,
    media::IMAGE_MANIFEST_MEDIA_TYPE,
    media::OCI_IMAGE_INDEX_MEDIA_TYPE,
    media::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// How the store reaches registries (the worker's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// A docker `config.json` with credentials (see [`crate::default_auth_file`]); `None`:
    /// anonymous pulls only.
    pub auth_file: Option<PathBuf>,
    /// Registries (`host[:port]`, as written in references) reached over plain HTTP.
    /// Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) always are, as with
    /// Docker; every other one over HTTPS.
    pub insecure: Vec<String>,
}

/// The shared blob directory and the slots that make a blob be fetched once.
#[derive(Debug)]
pub(crate) struct BlobDir {
    /// The layout directory (`<store>/registry`): `oci-layout`, `blobs/sha256/`.
    pub(crate) layout: PathBuf,
    /// One slot per blob digest, held while it is fetched.
    fetching: Slots<()>,
}

/// A pulled image: its manifest's descriptor (whose digest is the image id) and the
/// digests of every blob it uses.
#[derive(Debug)]
pub(crate) struct Pulled {
    pub(crate) manifest: Descriptor,
    pub(crate) blobs: Vec<String>,
}

impl BlobDir {
    /// The blob directory under `layout`, created if needed.
    pub(crate) fn open(layout: PathBuf) -> Result<BlobDir, ImageError> {
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).context(|| format!("creating {}", blobs.display()))?;
        let marker = layout.join("oci-layout");
        std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .context(|| format!("writing {}", marker.display()))?;
        Ok(BlobDir {
            layout,
            fetching: Slots::default(),
        })
    }

    /// Where the blob `digest` (`sha256:<hex>`) lives.
    pub(crate) fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.layout.join("blobs/sha256").join(hex)
    }

    /// The blobs here that the image whose manifest is `digest` was pulled from: the
    /// manifest, its config and its layers, those on disk. For an image found on disk
    /// rather than pulled by this process (after a restart), so that its blobs count
    /// toward the cache and go with it; empty for an image not pulled from a registry
    /// (no such manifest here), or a manifest that does not read.
    pub(crate) fn pulled_from(&self, digest: &str) -> Vec<String> {
        let Some(manifest) = std::fs::read(self.path(digest))
            .ok()
            .and_then(|bytes| ImageManifest::from_reader(&bytes[..]).ok())
        else {
            return Vec::new();
        };
        std::iter::once(digest.to_owned())
            .chain(
                std::iter::once(manifest.config())
                    .chain(manifest.layers())
                    .map(|d| d.digest().to_string()),
            )
            .filter(|blob| self.path(blob).is_file())
            .collect()
    }
}

/// Parses a registry reference, with Docker's defaults (`busybox:1.36` is
/// `docker.io/library/busybox:1.36`, no tag is `latest`).
pub(crate) fn parse(reference: &str) -> Result<Reference, ImageError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// Pulls `reference` into `blobs` (skipping the blobs already there), with `tmp` for work
/// files. Blocks; runs the async client on a runtime of its own.
pub(crate) fn pull(
    reference: &Reference,
    options: &RegistryOptions,
    blobs: &BlobDir,
    tmp: &Path,
) -> Result<Pulled, ImageError> {
    let failed = |reason: String| pull_error(reference, reason);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::io("starting the pull's runtime", e))?;
    let auth = auth::credentials(options.auth_file.as_deref(), reference.resolve_registry())
        .map_err(failed)?;
    let client = client_for(reference, options);
    let (bytes, digest) = runtime.block_on(fetch_manifest(&client, reference, &auth))?;
    let manifest_path = blobs.path(&digest);
    write_verified(&manifest_path, &bytes, tmp)?;
    let manifest = ImageManifest::from_reader(&bytes[..])
        .map_err(|e| failed(format!("manifest {digest}: {e}")))?;
    let mut used = vec![digest.clone()];
    for descriptor in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let slot = blobs.fetching.slot(descriptor.digest().to_string());
        let _fetching = lock(&slot);
        let path = blobs.path(descriptor.digest().as_ref());
        if !path.is_file() {
            runtime.block_on(fetch_blob(
                &client, reference, &auth, descriptor, &path, tmp,
            ))?;
        }
        used.push(descriptor.digest().to_string());
    }
    let manifest = Descriptor::new(
        MediaType::ImageManifest,
        bytes.len() as u64,
        parse_digest(reference, &digest)?,
    );
    metrics::pulled();
    Ok(Pulled {
        manifest,
        blobs: used,
    })
}

/// How long a read from a registry may wait for its next bytes.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A client for the reference's registry: plain HTTP for loopback and insecure ones.
fn client_for(reference: &Reference, options: &RegistryOptions) -> Client {
    let registry = reference.resolve_registry();
    let plain = is_loopback(registry) || options.insecure.iter().any(|r| r == registry);
    Client::new(ClientConfig {
        protocol: if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        // A registry that stops sending fails the pull (which is retried a bounded number
        // of times) rather than holding the container's booking for ever.
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    })
}

/// Whether `registry` (`host[:port]`) is on this machine.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The image manifest's bytes and digest, checked against the reference's digest when it
/// is pinned; through an index, this platform's manifest.
async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<(Vec<u8>, String), ImageError> {
    let (bytes, digest) = fetch_raw_manifest(client, reference, auth, reference.digest()).await?;
    let Some(chosen) = platform_manifest(reference, &bytes)? else {
        return Ok((bytes, digest));
    };
    let by_digest = reference.clone_with_digest(chosen.clone());
    fetch_raw_manifest(client, &by_digest, auth, Some(&chosen)).await
}

/// One manifest's bytes and their digest, which must be `expected` if given.
async fn fetch_raw_manifest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String), ImageError> {
    let (bytes, _) = client
        .pull_manifest_raw(reference, auth, ACCEPTED)
        .await
        .map_err(|e| oci_error(reference, auth, e))?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(ImageError::TooLarge {
            source_name: reference.whole(),
            what: "the size of a manifest in bytes",
            limit: MAX_METADATA_BYTES,
        });
    }
    // The digest is computed here rather than taken from the registry's header.
    let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    match expected {
        Some(expected) if expected != digest => Err(ImageError::DigestMismatch {
            digest: expected.to_owned(),
            reason: format!("the manifest served hashes to {digest}"),
        }),
        _ => Ok((bytes.to_vec(), digest)),
    }
}

/// If `bytes` is an index, the digest of this platform's manifest in it.
fn platform_manifest(reference: &Reference, bytes: &[u8]) -> Result<Option<String>, ImageError> {
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let kind: Kind = serde_json::from_slice(bytes)
        .map_err(|e| pull_error(reference, format!("the manifest is not JSON: {e}")))?;
    let is_index = kind.manifests.is_some()
        || matches!(
            kind.media_type.as_deref(),
            Some(media::OCI_IMAGE_INDEX_MEDIA_TYPE | media::IMAGE_MANIFEST_LIST_MEDIA_TYPE)
        );
    if !is_index {
        return Ok(None);
    }
    let index = ImageIndex::from_reader(bytes)
        .map_err(|e| pull_error(reference, format!("the index: {e}")))?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    index
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == arch
            })
        })
        .map(|m| Some(m.digest().to_string()))
        .ok_or_else(|| pull_error(reference, format!("the index has no linux/{arch} image")))
}

/// Fetches one blob into a work file in `tmp`, verifies it, and renames it to `dest`.
async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    descriptor: &Descriptor,
    dest: &Path,
    tmp: &Path,
) -> Result<(), ImageError> {
    if descriptor.size() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            source_name: descriptor.digest().to_string(),
            what: "a blob's size in bytes",
            limit: MAX_IMAGE_BYTES,
        });
    }
    let work = tempfile::NamedTempFile::new_in(tmp)
        .context(|| format!("creating a work file in {}", tmp.display()))?;
    let file = tokio::fs::File::from_std(
        work.reopen()
            .context(|| format!("opening {}", work.path().display()))?,
    );
    let wanted = OciDescriptor {
        media_type: descriptor.media_type().to_string(),
        digest: descriptor.digest().to_string(),
        size: i64::try_from(descriptor.size()).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    };
    client
        .pull_blob(reference, &wanted, Capped::new(file, descriptor.size()))
        .await
        .map_err(|e| oci_error(reference, auth, e))?;
    layout::verify_file(work.path(), descriptor)?;
    metrics::fetched(descriptor.size());
    work.persist(dest)
        .map_err(|e| ImageError::io(format!("renaming into {}", dest.display()), e.error))?;
    tracing::debug!(image = %reference, digest = %descriptor.digest(), bytes = descriptor.size(), "blob fetched");
    Ok(())
}

/// Writes a blob already in memory and checked, through a work file and a rename.
fn write_verified(dest: &Path, bytes: &[u8], tmp: &Path) -> Result<(), ImageError> {
    if dest.is_file() {
        return Ok(());
    }
    let mut work = tempfile::NamedTempFile::new_in(tmp)
        .context(|| format!("creating a work file in {}", tmp.display()))?;
    std::io::Write::write_all(&mut work, bytes)
        .context(|| format!("writing {}", work.path().display()))?;
    work.persist(dest)
        .map_err(|e| ImageError::io(format!("renaming into {}", dest.display()), e.error))?;
    Ok(())
}

fn parse_digest(reference: &Reference, digest: &str) -> Result<Digest, ImageError> {
    digest
        .parse()
        .map_err(|e| pull_error(reference, format!("digest {digest}: {e}")))
}

/// A client error: a digest error is a [`ImageError::DigestMismatch`], anything else
/// (network, auth, not found) an [`ImageError::Pull`]; an auth error says who asked.
fn oci_error(
    reference: &Reference,
    auth: &RegistryAuth,
    error: OciDistributionError,
) -> ImageError {
    match error {
        OciDistributionError::DigestError(e) => ImageError::DigestMismatch {
            digest: reference.whole(),
            reason: e.to_string(),
        },
        e @ (OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)) => {
            let who = match auth {
                RegistryAuth::Basic(user, _) => format!("as `{user}`"),
                RegistryAuth::Bearer(_) => "with a bearer token".to_owned(),
                RegistryAuth::Anonymous => {
                    "anonymously: the worker's auth file has no credentials for it".to_owned()
                }
            };
            pull_error(reference, format!("{e} ({who})"))
        }
        other => pull_error(reference, other.to_string()),
    }
}

fn pull_error(reference: &Reference, reason: String) -> ImageError {
    ImageError::Pull {
        reference: reference.whole(),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_apply() {
        let r = parse("busybox:1.36").unwrap();
        assert_eq!(r.whole(), "docker.io/library/busybox:1.36");
        let r = parse("127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert!(r.digest().is_some());
        assert!(matches!(
            parse("UPPER/Case:x"),
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[test]
    fn only_loopback_registries_are_plain_http_by_default() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("index.docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
