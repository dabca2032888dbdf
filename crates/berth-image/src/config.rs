//! [`ImageConfig`]: what an image says about how to run it.

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// The parts of an image's configuration a runtime needs to start a container from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The user to run as (`uid`, `uid:gid`, `name`, `name:group`; see
    /// [`crate::resolve_user`]); `None`: root.
    pub user: Option<String>,
    /// `NAME=value` environment entries.
    pub env: Vec<String>,
    /// The working directory inside the rootfs; `None`: `/`.
    pub working_dir: Option<String>,
    /// The command prefix; the container's command or [`ImageConfig::cmd`] follows it.
    pub entrypoint: Vec<String>,
    /// The default command (arguments to the entrypoint, if any).
    pub cmd: Vec<String>,
}

impl ImageConfig {
    /// The configuration of berth's default rootfs: `PATH=/bin`, nothing else.
    pub fn default_rootfs() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/bin".to_owned()],
            ..ImageConfig::default()
        }
    }

    /// Takes what berth uses from an OCI image configuration (empty strings are unset).
    pub(crate) fn from_oci(image: &ImageConfiguration) -> ImageConfig {
        let Some(config) = image.config() else {
            return ImageConfig::default();
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ImageConfig {
            user: non_empty(config.user()),
            env: config.env().clone().unwrap_or_default(),
            working_dir: non_empty(config.working_dir()),
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
        }
    }
}
