//! The calls to the runc binary, each under the agent's own state root (so agents on one
//! host never see, adopt or kill each other's containers).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use tokio::process::Command;

/// What runc printed when a call failed.
#[derive(Debug, thiserror::Error)]
#[error("runc {action} failed: {message}")]
pub struct RuncError {
    /// What was asked (`kill`, `delete`, `list`, ...).
    pub action: &'static str,
    /// runc's own words, or why it could not be run.
    pub message: String,
}

/// runc, with the state root every call uses.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    /// runc at `binary` (a path, or a name looked up on `PATH`), keeping its state in `root`.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Runc {
        Runc {
            binary: binary.into(),
            root: root.into(),
        }
    }

    /// The binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `runc --version`'s first line.
    pub async fn version(&self) -> Result<String, RuncError> {
        let mut command = Command::new(&self.binary);
        command.arg("--version");
        let output = run("version", command).await?;
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        command
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) to the container's processes; with `all`, to
    /// every process in its cgroup rather than its init only.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuncError> {
        let mut command = self.command();
        command.arg("kill");
        if all {
            command.arg("--all");
        }
        command.arg(id).arg(signal);
        run("kill", command).await.map(drop)
    }

    /// Deletes the container (killing what is left of it), its cgroups and its state.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        let mut command = self.command();
        command.args(["delete", "--force", id]);
        run("delete", command).await.map(drop)
    }

    /// The ids of the containers in the state root.
    pub async fn list(&self) -> Result<Vec<String>, RuncError> {
        let mut command = self.command();
        command.args(["list", "--format", "json"]);
        let output = run("list", command).await?;
        parse_list(&output.stdout).map_err(|message| RuncError {
            action: "list",
            message,
        })
    }

    /// Kills and deletes the container without an async runtime (for `Drop`); errors are
    /// logged, not returned.
    pub fn destroy_blocking(&self, id: &str) {
        let result = std::process::Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                tracing::warn!(id, error = %String::from_utf8_lossy(&output.stderr).trim(),
                "cannot delete a dropped container")
            }
            Err(err) => {
                tracing::warn!(id, error = %err, "cannot run runc to delete a dropped container")
            }
        }
    }
}

async fn run(action: &'static str, mut command: Command) -> Result<Output, RuncError> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| RuncError {
            action,
            message: err.to_string(),
        })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(RuncError {
        action,
        message: format!("{} ({})", stderr.trim(), output.status),
    })
}

/// The ids in `runc list --format json`'s output (`null` when there are none).
fn parse_list(stdout: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
    }
    let entries: Option<Vec<Entry>> =
        serde_json::from_slice(stdout).map_err(|err| format!("unreadable list: {err}"))?;
    Ok(entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.id)
        .collect())
}

/// True when runc's message says the container is not there or not running: a kill or
/// delete of a container that already ended is not a failure.
pub fn is_gone(err: &RuncError) -> bool {
    let message = err.message.to_ascii_lowercase();
    message.contains("does not exist")
        || message.contains("not running")
        || message.contains("container not found")
        || message.contains("process already finished")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn lists_ids_and_takes_null_for_none() {
        let json = br#"[{"ociVersion":"1.0.2","id":"a1","pid":0,"status":"stopped"},{"id":"b2","status":"running"}]"#;
        assert_eq!(parse_list(json).unwrap(), vec!["a1", "b2"]);
        assert_eq!(parse_list(b"null").unwrap(), Vec::<String>::new());
        assert!(parse_list(b"{").is_err());
    }

    #[test]
    fn gone_containers_are_recognised() {
        let err = |message: &str| RuncError {
            action: "kill",
            message: message.into(),
        };
        assert!(is_gone(&err("container \"x\" does not exist")));
        assert!(is_gone(&err(
            "cannot kill container: container not running"
        )));
        assert!(!is_gone(&err("permission denied")));
    }
}
