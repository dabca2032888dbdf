//! Image references: what `prepare` accepts, parsed into where the image comes from.

use std::path::{Path, PathBuf};

use crate::error::{ImageError, IoContext};
use crate::registry;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// An OCI image layout directory.
    Layout { dir: PathBuf, tag: Option<String> },
    /// A tar of an OCI image layout.
    Archive { file: PathBuf, tag: Option<String> },
    /// An image in a registry.
    Registry(oci_client::Reference),
}

/// Parses `oci:<dir>[:<tag>]`, `oci-archive:<file>[:<tag>]` or an absolute path (a
/// directory is a layout, a file an archive, either with an optional `:<tag>`). Anything
/// else is a registry reference.
pub(crate) fn parse(reference: &str) -> Result<Source, ImageError> {
    let unsupported = || ImageError::Unsupported {
        reference: reference.to_owned(),
    };
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, tag) = split_tag(rest).ok_or_else(unsupported)?;
        return Ok(Source::Layout { dir, tag });
    }
    if let Some(rest) = reference.strip_prefix("oci-archive:") {
        let (file, tag) = split_tag(rest).ok_or_else(unsupported)?;
        return Ok(Source::Archive { file, tag });
    }
    if !reference.starts_with('/') {
        return registry::parse(reference).map(Source::Registry);
    }
    let (path, tag) = split_tag(reference).ok_or_else(unsupported)?;
    let meta = std::fs::metadata(&path)
        .context(|| format!("image `{reference}`: reading {}", path.display()))?;
    Ok(if meta.is_dir() {
        Source::Layout { dir: path, tag }
    } else {
        Source::Archive { file: path, tag }
    })
}

/// Splits `<path>[:<tag>]`. The part after the last `:` is a tag if it looks like one
/// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) and the whole string is not an existing path;
/// `None` for an empty path.
fn split_tag(text: &str) -> Option<(PathBuf, Option<String>)> {
    let whole = || Some((PathBuf::from(text), None));
    if text.is_empty() {
        return None;
    }
    let Some((path, tag)) = text.rsplit_once(':') else {
        return whole();
    };
    if path.is_empty() || !is_tag(tag) || Path::new(text).exists() {
        return whole();
    }
    Some((PathBuf::from(path), Some(tag.to_owned())))
}

/// The OCI distribution spec's tag grammar.
fn is_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn layout(dir: &str, tag: Option<&str>) -> Source {
        Source::Layout {
            dir: dir.into(),
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn oci_references_with_and_without_tags() {
        assert_eq!(parse("oci:/x/img").unwrap(), layout("/x/img", None));
        assert_eq!(
            parse("oci:/x/img:v1.2").unwrap(),
            layout("/x/img", Some("v1.2"))
        );
        assert_eq!(
            parse("oci:rel/img:latest").unwrap(),
            layout("rel/img", Some("latest"))
        );
        assert_eq!(
            parse("oci-archive:/x/img.tar:v1").unwrap(),
            Source::Archive {
                file: "/x/img.tar".into(),
                tag: Some("v1".into())
            }
        );
    }

    #[test]
    fn other_references_are_registry_ones() {
        let Source::Registry(r) = parse("python:3.11").unwrap() else {
            panic!("not a registry reference");
        };
        assert_eq!(r.whole(), "docker.io/library/python:3.11");
        let error = parse("Not/A/Valid:Ref!").unwrap_err();
        assert!(
            matches!(error, ImageError::InvalidReference { .. }),
            "{error}"
        );
        let error = parse("oci:").unwrap_err();
        assert!(matches!(error, ImageError::Unsupported { .. }), "{error}");
        assert!(error.to_string().contains("oci-archive:"), "{error}");
    }

    #[test]
    fn a_bare_path_is_a_layout_or_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("img.tar");
        std::fs::write(&file, b"").unwrap();
        let dir_ref = dir.path().to_str().unwrap();
        assert_eq!(parse(dir_ref).unwrap(), layout(dir_ref, None));
        let tagged = format!("{}:v1", file.display());
        assert_eq!(
            parse(&tagged).unwrap(),
            Source::Archive {
                file,
                tag: Some("v1".into())
            }
        );
        assert!(matches!(
            parse("/nonexistent/image"),
            Err(ImageError::Io { .. })
        ));
    }
}
