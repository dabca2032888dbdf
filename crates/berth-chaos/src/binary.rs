//! Finding the `berth` binary the harness runs: the one given with `--berth`; else, when
//! cargo runs the harness (`CARGO` is set), the one `cargo build -p berth` puts next to this
//! executable, built with this executable's profile; else the one already next to it.

use crate::SetupError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The build profile of this executable, which the `berth` binary is built with too.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The `berth` binary to run: `explicit` if given (it must exist), else built with cargo
/// when `cargo` (the `CARGO` environment variable) is set, else the one next to this
/// executable.
pub fn locate(explicit: Option<&Path>, cargo: Option<&Path>) -> Result<PathBuf, SetupError> {
    if let Some(path) = explicit {
        return existing(path, "the file given with --berth");
    }
    let exe = std::env::current_exe().map_err(|e| SetupError::Berth {
        detail: format!("cannot tell where this executable is: {e}"),
    })?;
    let dir = exe.parent().ok_or_else(|| SetupError::Berth {
        detail: format!("{} has no parent directory", exe.display()),
    })?;
    if let Some(cargo) = cargo {
        build(cargo, dir)?;
    }
    existing(
        &dir.join("berth"),
        "next to this executable (build it with `cargo build --release -p berth`, or pass --berth PATH)",
    )
}

fn existing(path: &Path, what: &str) -> Result<PathBuf, SetupError> {
    if path.is_file() {
        Ok(path.to_owned())
    } else {
        Err(SetupError::Berth {
            detail: format!("no berth binary at {} ({what})", path.display()),
        })
    }
}

/// Runs `cargo build -p berth` with this executable's profile into the target directory
/// this executable is in (`TARGET/PROFILE/berth-chaos`).
fn build(cargo: &Path, exe_dir: &Path) -> Result<(), SetupError> {
    let target_dir = exe_dir.parent().ok_or_else(|| SetupError::Berth {
        detail: format!("{} is not in a target directory", exe_dir.display()),
    })?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", "berth", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if profile() == "release" {
        command.arg("--release");
    }
    tracing::info!(profile = profile(), "building the berth binary with cargo");
    let status = command.status().map_err(|e| SetupError::Berth {
        detail: format!("cannot run {}: {e}", cargo.display()),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(SetupError::Berth {
            detail: format!("`cargo build -p berth` failed ({status})"),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_binary_is_a_setup_error() {
        let error = locate(Some(Path::new("/nonexistent/berth")), None).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/berth"), "{error}");
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn an_existing_explicit_binary_is_used() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(locate(Some(file.path()), None).unwrap(), file.path());
    }
}
