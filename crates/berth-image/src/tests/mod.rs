//! The store against real layouts, archives and busybox in temporary directories.

mod default_rootfs;
mod escapes;
mod gc;
mod layouts;
mod registry;

use std::path::Path;

use crate::ImageConfig;

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
