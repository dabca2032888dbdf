//! The berth processes of a run: [`REPLICAS`] `berth server` replicas on fixed ports and
//! [`WORKERS`] `berth worker` slots, each running one worker process at a time. Killing and
//! restarting them is all this module does; waiting for them to be healthy is the caller's.

use crate::processes::{ChildGuard, ProcessError};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many server replicas run.
pub const REPLICAS: usize = 3;
/// How many worker slots run.
pub const WORKERS: usize = 8;
/// The servers' `--heartbeat-timeout`: a worker silent this long is declared lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// How often a server's reaper looks for silent workers: berth-server's default
/// (`ServerConfig::reaper_every`), which `berth server` has no flag for.
pub const REAPER_PERIOD: Duration = Duration::from_secs(5);

/// The capacity one worker slot registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerShape {
    /// `--cpu`.
    pub cpu: &'static str,
    /// `--memory`.
    pub memory: &'static str,
    /// `--gpu`, if any.
    pub gpu: Option<&'static str>,
}

const CPU_WORKER: WorkerShape = WorkerShape {
    cpu: "2",
    memory: "2Gi",
    gpu: None,
};
const A10G_WORKER: WorkerShape = WorkerShape {
    cpu: "2",
    memory: "2Gi",
    gpu: Some("A10G:1"),
};
const A100_WORKER: WorkerShape = WorkerShape {
    cpu: "2",
    memory: "4Gi",
    gpu: Some("A100-80:2"),
};

/// The shape of each worker slot: five CPU workers, two with one A10G, one with two
/// A100-80s (all 2 CPUs).
pub const SHAPES: [WorkerShape; WORKERS] = [
    CPU_WORKER,
    CPU_WORKER,
    CPU_WORKER,
    CPU_WORKER,
    CPU_WORKER,
    A10G_WORKER,
    A10G_WORKER,
    A100_WORKER,
];

/// One server replica: a fixed port and name; the process when it runs.
#[derive(Debug)]
struct ServerSlot {
    port: u16,
    process: Option<ChildGuard>,
    starts: u32,
}

/// One worker slot: its current worker id (a fresh one per start) and process.
#[derive(Debug)]
struct WorkerSlot {
    generation: u32,
    process: Option<ChildGuard>,
    stopped: bool,
}

/// The server replicas and worker slots. Dropping it kills every process.
#[derive(Debug)]
pub struct Fleet {
    berth: PathBuf,
    dir: PathBuf,
    /// The workers' runtime (`process` or `runc`).
    runtime: String,
    /// The start log, bound into runc containers at the same path.
    starts: PathBuf,
    servers: Vec<ServerSlot>,
    workers: Vec<WorkerSlot>,
    /// The admin token every replica accepts (`BERTH_ADMIN_TOKEN`): the harness's own.
    admin_token: String,
    /// The join token the workers register with, once a replica has issued it.
    join_token: Option<String>,
}

impl Fleet {
    /// A fleet running `berth`, with logs and work directories under `dir`, its replicas on
    /// `ports` (one each), its workers on `runtime` with the start log at `starts`; nothing
    /// is started yet.
    pub fn new(berth: &Path, dir: &Path, ports: &[u16], runtime: &str, starts: &Path) -> Fleet {
        Fleet {
            berth: berth.to_owned(),
            dir: dir.to_owned(),
            runtime: runtime.to_owned(),
            starts: starts.to_owned(),
            servers: ports
                .iter()
                .map(|&port| ServerSlot {
                    port,
                    process: None,
                    starts: 0,
                })
                .collect(),
            workers: (0..WORKERS)
                .map(|_| WorkerSlot {
                    generation: 0,
                    process: None,
                    stopped: false,
                })
                .collect(),
            admin_token: berth_core::Token::from_random(rand::random(), rand::random()).expose(),
            join_token: None,
        }
    }

    /// The admin token every replica accepts.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Sets the join token the workers started from now on register with.
    pub fn set_join_token(&mut self, token: String) {
        self.join_token = Some(token);
    }

    /// The base URL of replica `index`.
    pub fn server_url(&self, index: usize) -> Option<String> {
        self.servers
            .get(index)
            .map(|s| format!("http://127.0.0.1:{}", s.port))
    }

    /// The base URLs of every replica, in order.
    pub fn server_urls(&self) -> Vec<String> {
        (0..self.servers.len())
            .filter_map(|i| self.server_url(i))
            .collect()
    }

    /// Starts replica `index` on its port, on Redis at `redis_urls`.
    pub fn start_server(
        &mut self,
        index: usize,
        redis_urls: &[String],
    ) -> Result<(), ProcessError> {
        let Some(slot) = self.servers.get_mut(index) else {
            return Ok(());
        };
        slot.starts += 1;
        let mut args = vec![
            "server".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{}", slot.port),
            "--replica".to_owned(),
            format!("r{index}"),
            "--heartbeat-timeout".to_owned(),
            HEARTBEAT_TIMEOUT.as_secs().to_string(),
        ];
        for url in redis_urls {
            args.extend(["--redis".to_owned(), url.clone()]);
        }
        let log = self.dir.join(format!("server-{index}.{}.log", slot.starts));
        let name = format!("server-{index}");
        let config = self.dir.join("config").display().to_string();
        slot.process = Some(ChildGuard::spawn(
            &name,
            &self.berth,
            &args,
            &[
                ("BERTH_LOG", "info"),
                ("BERTH_ADMIN_TOKEN", &self.admin_token),
                ("BERTH_CONFIG_DIR", &config),
            ],
            &log,
        )?);
        Ok(())
    }

    /// SIGKILLs replica `index`; false if it was not running.
    pub fn kill_server(&mut self, index: usize) -> bool {
        match self.servers.get_mut(index).and_then(|s| s.process.take()) {
            Some(process) => {
                process.kill9();
                true
            }
            None => false,
        }
    }

    /// The replicas that are not running (never started, killed, or exited by themselves).
    pub fn servers_down(&mut self) -> Vec<usize> {
        let mut down = Vec::new();
        for (index, slot) in self.servers.iter_mut().enumerate() {
            if slot.process.as_mut().is_none_or(ChildGuard::has_exited) {
                slot.process = None;
                down.push(index);
            }
        }
        down
    }

    /// The processes that exited though nobody killed them (a crash, or an exit nobody
    /// asked for), by name; they are forgotten (their slots are empty now).
    pub fn exited_by_themselves(&mut self) -> Vec<String> {
        let servers = self.servers.iter_mut().map(|s| &mut s.process);
        let workers = self.workers.iter_mut().map(|w| &mut w.process);
        let mut exited = Vec::new();
        for process in servers.chain(workers) {
            if process.as_mut().is_some_and(ChildGuard::has_exited) {
                exited.extend(process.take().map(|p| p.name().to_owned()));
            }
        }
        exited
    }

    /// The id of the worker in `slot` now (`w<slot>-g<generation>`).
    pub fn worker_id(&self, slot: usize) -> String {
        let generation = self.workers.get(slot).map_or(0, |w| w.generation);
        format!("w{slot}-g{generation}")
    }

    /// Starts a fresh worker (a new id) in `slot`, talking to replica `slot % REPLICAS`.
    /// Returns its id.
    pub fn start_worker(&mut self, slot: usize) -> Result<String, ProcessError> {
        let server = self
            .server_url(slot % self.servers.len().max(1))
            .unwrap_or_default();
        let Some(state) = self.workers.get_mut(slot) else {
            return Ok(String::new());
        };
        state.generation += 1;
        state.stopped = false;
        let id = format!("w{slot}-g{}", state.generation);
        let shape = SHAPES[slot % WORKERS];
        // One work directory per slot, kept across generations: a worker started after a
        // SIGKILL finds what the killed one left running under runc, owns none of it (its
        // id is new) and kills it.
        let work = self.dir.join("work").join(format!("slot-{slot}"));
        let mut args: Vec<String> = [
            "worker",
            "--server",
            &server,
            "--id",
            &id,
            "--cpu",
            shape.cpu,
            "--memory",
            shape.memory,
            "--grace",
            "1",
            "--work-dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(work.display().to_string());
        args.extend(["--runtime".to_owned(), self.runtime.clone()]);
        if self.runtime == "runc" {
            let starts = self.starts.display().to_string();
            args.extend(["--mount".to_owned(), format!("{starts}:{starts}")]);
        }
        if let Some(gpu) = shape.gpu {
            args.extend(["--gpu".to_owned(), gpu.to_owned()]);
        }
        let log = self.dir.join(format!("worker-{id}.log"));
        // Every process gets a config directory in the run's directory, so that none
        // reads or writes the user's.
        let config = self.dir.join("config").display().to_string();
        let join = self.join_token.clone().unwrap_or_default();
        state.process = Some(ChildGuard::spawn(
            &id,
            &self.berth,
            &args,
            &[
                ("BERTH_LOG", "info"),
                ("BERTH_JOIN_TOKEN", &join),
                ("BERTH_CONFIG_DIR", &config),
            ],
            &log,
        )?);
        Ok(id)
    }

    /// SIGKILLs the worker in `slot`; its id, or `None` if none ran.
    pub fn kill_worker(&mut self, slot: usize) -> Option<String> {
        let id = self.worker_id(slot);
        let state = self.workers.get_mut(slot)?;
        state.stopped = false;
        state.process.take().map(|process| {
            process.kill9();
            id
        })
    }

    /// SIGSTOPs (`stop`) or SIGCONTs the worker in `slot`; its id, or `None` if none runs.
    pub fn freeze_worker(
        &mut self,
        slot: usize,
        stop: bool,
    ) -> Result<Option<String>, ProcessError> {
        let id = self.worker_id(slot);
        let Some(state) = self.workers.get_mut(slot) else {
            return Ok(None);
        };
        let Some(process) = &state.process else {
            return Ok(None);
        };
        process.signal(if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        })?;
        state.stopped = stop;
        Ok(Some(id))
    }

    /// Continues every stopped worker and starts a fresh one in every slot whose worker is
    /// gone. Returns the ids of the workers started.
    pub fn heal_workers(&mut self) -> Result<Vec<String>, ProcessError> {
        let mut started = Vec::new();
        for slot in 0..self.workers.len() {
            if self.workers[slot].stopped {
                self.freeze_worker(slot, false)?;
            }
            let gone = self.workers[slot]
                .process
                .as_mut()
                .is_none_or(ChildGuard::has_exited);
            if gone {
                started.push(self.start_worker(slot)?);
            }
        }
        Ok(started)
    }

    /// The log files of every process started so far.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}
