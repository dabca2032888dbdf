//! Helpers that write OCI image layouts and archives, for tests (this crate's and
//! berth-agent's, through the `testing` feature). Pure Rust, nothing fetched.
//!
//! [`write_layout`] writes a one-layer image; [`write_layout_layers`] several layers built
//! with [`layer`] from [`LayerEntry`]s, which may be anything a tar can hold, hostile
//! paths included; [`write_archive`] and [`archive_layout`] make `oci-archive:` files.
//! Writing into a directory that already holds a layout adds the manifest to its
//! `index.json`, so one layout can hold several tagged images. [`registry`] runs a
//! registry on loopback to push them to.

pub mod registry;

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::config::ImageConfig;
use crate::layout::hex;

/// One entry of a test layer. Paths are written into the tar as they are (even `../x`
/// or `/abs`), so tests can build hostile layers.
#[derive(Debug, Clone, Copy)]
pub enum LayerEntry<'a> {
    /// A regular file with its content and mode.
    File(&'a str, &'a [u8], u32),
    /// A directory with its mode.
    Dir(&'a str, u32),
    /// A symlink to a target.
    Symlink(&'a str, &'a str),
    /// A hard link to another path of the image.
    HardLink(&'a str, &'a str),
}

/// Writes a layout with one gzip layer holding `files` (`(path, content, mode)`; parent
/// directories are implied), `config`, and `tag` as its ref name, into `dir` (created if
/// needed). Returns the manifest digest, which is the image's id.
pub fn write_layout(
    dir: &Path,
    files: &[(&str, &[u8], u32)],
    config: &ImageConfig,
    tag: Option<&str>,
) -> io::Result<String> {
    let entries: Vec<LayerEntry<'_>> = files
        .iter()
        .map(|(path, data, mode)| LayerEntry::File(path, data, *mode))
        .collect();
    write_layout_layers(dir, &[layer(&entries)?], config, tag)
}

/// Like [`write_layout`], but into the tar file `archive` (an `oci-archive:`); the layout
/// is written in a temporary directory first. Returns the manifest digest.
pub fn write_archive(
    archive: &Path,
    files: &[(&str, &[u8], u32)],
    config: &ImageConfig,
    tag: Option<&str>,
) -> io::Result<String> {
    let dir = tempfile::tempdir()?;
    let digest = write_layout(dir.path(), files, config, tag)?;
    archive_layout(dir.path(), archive)?;
    Ok(digest)
}

/// Tars the layout directory `dir` into the file `archive`.
pub fn archive_layout(dir: &Path, archive: &Path) -> io::Result<()> {
    let mut builder = tar::Builder::new(fs::File::create(archive)?);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.sync_all()
}

/// A gzip-compressed layer tar holding `entries`, in order.
pub fn layer(entries: &[LayerEntry<'_>]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        let (path, data): (&str, &[u8]) = match *entry {
            LayerEntry::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                (path, data)
            }
            LayerEntry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode);
                (path, &[])
            }
            LayerEntry::Symlink(path, target) | LayerEntry::HardLink(path, target) => {
                let kind = match entry {
                    LayerEntry::Symlink(..) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                header.set_link_name_literal(target)?;
                (path, &[])
            }
        };
        set_raw_path(&mut header, path)?;
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data)?;
    }
    builder.into_inner()?.finish()
}

/// Writes a layout whose manifest lists `layers` (gzip tars, e.g. from [`layer`]), bottom
/// first, into `dir`. Returns the manifest digest.
pub fn write_layout_layers(
    dir: &Path,
    layers: &[Vec<u8>],
    config: &ImageConfig,
    tag: Option<&str>,
) -> io::Result<String> {
    fs::create_dir_all(dir.join("blobs/sha256"))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for blob in layers {
        diff_ids.push(format!("sha256:{}", sha256(&gunzip(blob)?)));
        let digest = write_blob(dir, blob)?;
        layer_descriptors.push(descriptor(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest,
            blob.len(),
        ));
    }
    let config_json = to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": config.user.clone().unwrap_or_default(),
            "Env": config.env,
            "WorkingDir": config.working_dir.clone().unwrap_or_default(),
            "Entrypoint": config.entrypoint,
            "Cmd": config.cmd,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    let config_digest = write_blob(dir, &config_json)?;
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(
            "application/vnd.oci.image.config.v1+json",
            &config_digest,
            config_json.len(),
        ),
        "layers": layer_descriptors,
    }))?;
    let manifest_digest = write_blob(dir, &manifest)?;
    let mut entry = descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        &manifest_digest,
        manifest.len(),
    );
    if let Some(tag) = tag {
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    }
    add_to_index(dir, entry)?;
    Ok(manifest_digest)
}

/// Appends a manifest descriptor to `dir/index.json`, creating it if needed.
fn add_to_index(dir: &Path, entry: Value) -> io::Result<()> {
    let path = dir.join("index.json");
    let mut index = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({ "schemaVersion": 2, "manifests": [] })
        }
        Err(e) => return Err(e),
    };
    match index["manifests"].as_array_mut() {
        Some(manifests) => manifests.push(entry),
        None => return Err(io::Error::other("index.json has no manifests array")),
    }
    fs::write(path, to_vec(&index)?)
}

/// Writes a blob under its digest; returns the digest (`sha256:<hex>`).
fn write_blob(dir: &Path, bytes: &[u8]) -> io::Result<String> {
    let hex = sha256(bytes);
    fs::write(dir.join("blobs/sha256").join(&hex), bytes)?;
    Ok(format!("sha256:{hex}"))
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = flate2::write::GzDecoder::new(Vec::new());
    out.write_all(bytes)?;
    out.finish()
}

fn to_vec(value: &Value) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

/// Writes `path` into the header's name field byte for byte, bypassing the tar crate's
/// checks, so tests can make entries with `..` or absolute paths.
fn set_raw_path(header: &mut tar::Header, path: &str) -> io::Result<()> {
    let name = &mut header.as_old_mut().name;
    if path.len() >= name.len() {
        return Err(io::Error::other(format!("test path too long: {path}")));
    }
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    Ok(())
}

/// The mount points at or under `dir` (canonical paths), from this process's
/// `/proc/self/mountinfo`: for tests that check what a runtime or a store left mounted.
pub fn mount_points_under(dir: &Path) -> Vec<std::path::PathBuf> {
    crate::overlay::mount_points_under(dir).unwrap_or_default()
}

/// Unmounts (detached, deepest first) whatever is mounted at or under `dir`: for tests
/// whose workers were killed rather than stopped, before their directories are removed.
/// Whether nothing is left.
pub fn unmount_under(dir: &Path) -> bool {
    crate::overlay::unmount_under(dir)
}
