//! End to end with a provisioner: `berth server` with a pool of no workers whose
//! provisioner is a shell script that starts `berth worker` processes when asked to add
//! workers and stops them (SIGTERM: the agent drains and deregisters) when asked to remove
//! them. A container submitted to the empty pool makes the script start a worker, runs on
//! it, and once the worker has been idle past the pool's idle timeout it is drained and
//! removed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BERTH, eventually_within, free_port};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long the test waits for each step at most (bounds a hang; times nothing).
const PATIENCE: Duration = Duration::from_secs(90);

/// The server, and every worker the script started (by the pid files it left), killed
/// when dropped, whether the test passed or not.
struct Cleanup {
    server: Option<Child>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Ok(pid) = std::fs::read_to_string(&path)
                && still_our_worker(pid.trim(), &self.dir)
            {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }
}

/// Whether `pid` is still a `berth worker` working in `dir`: a worker that exited may have
/// left its pid to an unrelated process, which must not be killed.
fn still_our_worker(pid: &str, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let cmdline = String::from_utf8_lossy(&cmdline);
        cmdline.contains("worker") && cmdline.contains(&*dir.to_string_lossy())
    })
}

/// The fake provisioner: `add` starts `count` workers of the pool (ids `auto-N`), each
/// leaving `ID.pid` in `dir`; `remove` sends SIGTERM to the named workers and appends
/// their ids to `dir/removed`. Each answers the JSON the server expects.
fn script(dir: &Path, server: &str) -> String {
    format!(
        r#"#!/bin/sh
set -eu
dir='{dir}'
call=$(cat)
action=$(echo "$call" | sed 's/.*"action":"\([a-z]*\)".*/\1/')
if [ "$action" = add ]; then
  count=$(echo "$call" | sed 's/.*"count":\([0-9]*\).*/\1/')
  started=""
  i=0
  while [ "$i" -lt "$count" ]; do
    n=$(ls "$dir" | grep -c '\.pid$' || true)
    id="auto-$n"
    '{berth}' worker --server '{server}' --id "$id" --pool cpu --cpu 1 --memory 1Gi \
      --runtime process --work-dir "$dir/$id" >"$dir/$id.log" 2>&1 &
    echo $! >"$dir/$id.pid"
    started="$started${{started:+,}}\"$id\""
    i=$((i + 1))
  done
  echo "{{\"started\": [$started]}}"
else
  for id in $(echo "$call" | sed 's/.*"workers":\[\([^]]*\)\].*/\1/' | tr -d '"' | tr ',' ' '); do
    kill -TERM "$(cat "$dir/$id.pid")"
    echo "$id" >>"$dir/removed"
  done
  echo '{{}}'
fi
"#,
        dir = dir.display(),
        berth = BERTH,
    )
}

fn berth(config_dir: &Path, server: &str, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env("BERTH_CONFIG_DIR", config_dir)
        .env("BERTH_SERVER", server)
        .output()
        .unwrap()
}

fn workers(config_dir: &Path, server: &str) -> Vec<serde_json::Value> {
    let out = berth(config_dir, server, &["workers", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_pool_of_no_workers_grows_for_work_and_shrinks_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, spawned) = (dir.path().join("config"), dir.path().join("workers"));
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&spawned).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let server = format!("http://{listen}");
    let script_path = dir.path().join("provisioner.sh");
    std::fs::write(&script_path, script(&spawned, &server)).unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&script_path).status();
    assert!(chmod.unwrap().success());
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[pools]]\nname = \"cpu\"\nworker_size = {{ cpu = \"1\", memory = \"1Gi\" }}\n\
             idle_timeout_secs = 2\nprovisioner = {{ command = [\"{}\"], timeout_secs = 20 }}\n",
            script_path.display()
        ),
    )
    .unwrap();
    let mut cleanup = Cleanup {
        server: None,
        dir: spawned.clone(),
    };
    cleanup.server = Some(
        Command::new(BERTH)
            .args(["server", "--listen", &listen, "--config"])
            .arg(&config)
            .env("BERTH_CONFIG_DIR", &config_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually_within("the server to answer", PATIENCE, || {
        berth(&config_dir, &server, &["workers", "--json"])
            .status
            .success()
    });
    assert!(workers(&config_dir, &server).is_empty());

    let run = berth(
        &config_dir,
        &server,
        &[
            "run", "--wait", "--cpu", "100m", "--memory", "64Mi", "--", "echo", "grown",
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "grown");
    let started = std::fs::read_dir(&spawned)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .count();
    assert_eq!(started, 1, "one worker for one small request");

    eventually_within("the idle worker removed and gone", PATIENCE, || {
        let removed = std::fs::read_to_string(spawned.join("removed")).unwrap_or_default();
        removed.trim() == "auto-0" && workers(&config_dir, &server).is_empty()
    });
}
