//! The store against real layouts, archives and busybox in temporary directories.

mod default_rootfs;
mod escapes;
mod gc;
mod layers;
mod layouts;
mod registry;
mod token_front;

use std::path::Path;

use crate::{ImageConfig, ImageStore};

/// A config with every field set, to see it come through.
fn app_config() -> ImageConfig {
    ImageConfig {
        user: Some("1000:1000".into()),
        env: vec!["PATH=/usr/bin".into(), "MODE=test".into()],
        working_dir: Some("/app".into()),
        entrypoint: vec!["/bin/app".into()],
        cmd: vec!["--serve".into()],
    }
}

/// The names in a directory, sorted; empty if it is missing.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A store under `root`, in layer mode or flattening.
fn open_store(layered: bool, root: impl Into<std::path::PathBuf>) -> ImageStore {
    ImageStore::open(root).unwrap().with_layer_sharing(layered)
}

/// Layer mode needs root (overlay mounts): the layered tests fail, saying so, rather than
/// pass without testing anything when the suite is not run as root (scripts/test.sh is).
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "layer mode needs root (overlay mounts): run the tests as root, as scripts/test.sh does"
    );
}

/// For each test function `name(layered: bool)`, the tests `name::flattened` and
/// `name::layered`: the same checks in both modes of the store.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn flattened() {
                super::$name(false)
            }

            #[test]
            fn layered() {
                crate::tests::require_root();
                super::$name(true)
            }
        }
    )*};
}
use in_both_modes;
