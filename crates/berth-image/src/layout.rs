//! Reading an OCI image layout directory: picking the manifest in `index.json`, reading
//! and verifying blobs, and unpacking the manifest's layers into a rootfs.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use oci_spec::image::{
    Descriptor, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use sha2::{Digest as _, Sha256};

use crate::config::ImageConfig;
use crate::error::{ImageError, IoContext};
use crate::unpack::{self, Budget, LayerOptions};

/// Most bytes `index.json`, a manifest or an image configuration may have (4 MiB).
pub const MAX_METADATA_BYTES: u64 = 4 << 20;

/// The annotation that names a manifest's tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Docker's gzip layer media type, which some tools still write into OCI layouts.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Picks the manifest of `layout`: the one tagged `tag`, or the only one. Its digest is
/// the image's id.
pub(crate) fn select_manifest(layout: &Path, tag: Option<&str>) -> Result<Descriptor, ImageError> {
    if !layout.join("oci-layout").is_file() {
        return Err(invalid(layout, "no `oci-layout` file".to_owned()));
    }
    let index_path = layout.join("index.json");
    let bytes = read_capped(&index_path, MAX_METADATA_BYTES)?;
    let index = ImageIndex::from_reader(&bytes[..])
        .map_err(|e| invalid(layout, format!("index.json: {e}")))?;
    let manifests = index.manifests();
    let available: Vec<String> = manifests.iter().filter_map(ref_name).collect();
    let chosen = match tag {
        Some(tag) => manifests
            .iter()
            .find(|m| ref_name(m).as_deref() == Some(tag))
            .ok_or_else(|| ImageError::TagNotFound {
                layout: layout.to_owned(),
                tag: tag.to_owned(),
                available: available.clone(),
            })?,
        None if manifests.len() == 1 => &manifests[0],
        None => {
            return Err(ImageError::AmbiguousManifest {
                layout: layout.to_owned(),
                count: manifests.len(),
                available,
            });
        }
    };
    if *chosen.media_type() != MediaType::ImageManifest {
        return Err(invalid(
            layout,
            format!(
                "the selected entry of index.json is a `{}`, not an image manifest \
                 (nested indexes, e.g. multi-platform images, are not supported yet)",
                chosen.media_type()
            ),
        ));
    }
    blob_path(layout, chosen)?;
    Ok(chosen.clone())
}

/// Unpacks the image whose manifest is `manifest` into `rootfs` (an empty directory) and
/// returns its configuration. Every blob is checked against its digest and size.
pub(crate) fn unpack_image(
    layout: &Path,
    manifest: &Descriptor,
    rootfs: &Path,
    options: LayerOptions,
) -> Result<ImageConfig, ImageError> {
    let (manifest, config) = read_image(layout, manifest)?;
    let mut budget = Budget::image();
    for layer in manifest.layers() {
        unpack_layer(layout, layer, rootfs, options, &mut budget)?;
    }
    Ok(config)
}

/// Reads the manifest `manifest` names and the image configuration it names, both
/// verified against their descriptors.
pub(crate) fn read_image(
    layout: &Path,
    manifest: &Descriptor,
) -> Result<(ImageManifest, ImageConfig), ImageError> {
    let manifest: ImageManifest =
        read_json_blob(layout, manifest, |b| ImageManifest::from_reader(b))?;
    let config = read_json_blob(layout, manifest.config(), |b| {
        ImageConfiguration::from_reader(b)
    })?;
    Ok((manifest, ImageConfig::from_oci(&config)))
}

/// Applies one layer blob onto `rootfs` (or, with [`LayerOptions::overlay`], unpacks it
/// into its own directory), hashing it as it streams; a mismatch fails the whole image
/// (whose half-written directory the caller throws away).
pub(crate) fn unpack_layer(
    layout: &Path,
    layer: &Descriptor,
    rootfs: &Path,
    options: LayerOptions,
    budget: &mut Budget,
) -> Result<(), ImageError> {
    let digest = layer.digest().to_string();
    let gzip = match layer.media_type() {
        MediaType::ImageLayer => false,
        MediaType::ImageLayerGzip => true,
        MediaType::Other(other) if other == DOCKER_LAYER_GZIP => true,
        other => {
            return Err(ImageError::UnsupportedLayer {
                digest,
                media_type: other.to_string(),
            });
        }
    };
    let path = blob_path(layout, layer)?;
    let file = File::open(&path).context(|| format!("opening layer {}", path.display()))?;
    let mut blob = HashingReader::new(BufReader::new(file));
    let applied = if gzip {
        unpack::apply_layer(rootfs, GzDecoder::new(&mut blob), &digest, options, budget)
    } else {
        unpack::apply_layer(rootfs, &mut blob, &digest, options, budget)
    };
    // The tar ends before its padding and the gzip trailer: hash what is left too. A blob
    // that is not what its digest says is reported as such, even if it also failed to
    // unpack (a corrupt blob is the likelier cause).
    io::copy(&mut blob, &mut io::sink()).context(|| format!("reading {}", path.display()))?;
    blob.verify(layer)?;
    applied
}

/// Checks the file at `path` against a descriptor's digest and size.
pub(crate) fn verify_file(path: &Path, descriptor: &Descriptor) -> Result<(), ImageError> {
    let file = File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut hashing = HashingReader::new(BufReader::new(file));
    io::copy(&mut hashing, &mut io::sink()).context(|| format!("hashing {}", path.display()))?;
    hashing.verify(descriptor)
}

/// Reads a small JSON blob, checks it against its descriptor and parses it.
fn read_json_blob<T, E: std::fmt::Display>(
    layout: &Path,
    descriptor: &Descriptor,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, ImageError> {
    let path = blob_path(layout, descriptor)?;
    let bytes = read_capped(&path, MAX_METADATA_BYTES)?;
    let mut hashing = HashingReader::new(&bytes[..]);
    io::copy(&mut hashing, &mut io::sink()).context(|| format!("hashing {}", path.display()))?;
    hashing.verify(descriptor)?;
    parse(&bytes).map_err(|e| invalid(layout, format!("blob {}: {e}", descriptor.digest())))
}

/// Where a descriptor's blob lives; only sha256 digests are supported.
pub(crate) fn blob_path(layout: &Path, descriptor: &Descriptor) -> Result<PathBuf, ImageError> {
    let digest = descriptor.digest();
    if *digest.algorithm() != DigestAlgorithm::Sha256 {
        return Err(invalid(
            layout,
            format!("digest {digest}: only sha256 digests are supported"),
        ));
    }
    // oci-spec checked the value: 64 lowercase hex digits, so no path tricks.
    Ok(layout.join("blobs/sha256").join(digest.digest()))
}

/// Reads a whole file of at most `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            source_name: path.display().to_string(),
            what: "the size of a metadata file in bytes",
            limit,
        });
    }
    Ok(bytes)
}

/// A manifest's tag, from its `org.opencontainers.image.ref.name` annotation.
fn ref_name(descriptor: &Descriptor) -> Option<String> {
    descriptor.annotations().as_ref()?.get(REF_NAME).cloned()
}

fn invalid(layout: &Path, reason: String) -> ImageError {
    ImageError::InvalidLayout {
        layout: layout.to_owned(),
        reason,
    }
}

/// A reader that hashes (sha256) and counts everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The lowercase hex sha256 of what was read, and how many bytes.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex(&self.hasher.finalize()), self.bytes)
    }

    /// Checks what was read against a descriptor's size and digest.
    fn verify(self, descriptor: &Descriptor) -> Result<(), ImageError> {
        let (sha256, bytes) = self.finish();
        let digest = descriptor.digest();
        let reason = if bytes != descriptor.size() {
            format!("{bytes} bytes, the descriptor says {}", descriptor.size())
        } else if sha256 != digest.digest() {
            format!("its content hashes to sha256:{sha256}")
        } else {
            return Ok(());
        };
        Err(ImageError::DigestMismatch {
            digest: digest.to_string(),
            reason,
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
