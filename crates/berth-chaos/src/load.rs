//! The load: a seeded stream of requests (CPU, GPU, and some too big to fit while the fleet
//! is busy, though an idle worker holds them), submitted through the HTTP API to the
//! replicas in turn, each with its own id so that a retry after a connection error is
//! idempotent. Every container appends `ID DIR WORKER` to the run's start log when it
//! starts (`DIR` is its working directory's name, `ID.ATTEMPT`), which is how a container
//! started twice is found.

use crate::gateway::Gateway;
use berth_api::{ContainerSpec, GpuSpec, GpuTypes};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The environment variable naming the start log in every container.
pub const STARTS_ENV: &str = "CHAOS_STARTS";
/// How long a submit is retried on unavailable replicas before it counts as unacknowledged.
pub const SUBMIT_PATIENCE: Duration = Duration::from_secs(30);
/// The most submits in flight at once.
const IN_FLIGHT: usize = 32;
/// Mixed into the seed so that the load's random stream differs from the schedule's.
const LOAD_STREAM: u64 = 0x6c6f_6164;

/// Which part of the mix a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestClass {
    /// CPU and memory only.
    Cpu,
    /// One GPU of a listed type or of any type, or a fraction (a quarter or a half) of one.
    Gpu,
    /// A whole worker (2 CPUs, or both GPUs of the one A100 worker): deferred while the
    /// fleet is busy, placed once a worker is idle. The two-GPU ones are rare (1%): they
    /// can only run one at a time, each after a backoff of up to 10 s.
    Big,
    /// A probe of the fault injector.
    Probe,
}

/// A command that records its start in the start log, then sleeps `sleep` (seconds).
pub fn recording_command(sleep: &str) -> Vec<String> {
    let script = format!(
        "echo \"$BERTH_CONTAINER_ID $BERTH_CONTAINER_ID.$BERTH_ATTEMPT_ID $BERTH_WORKER_ID\" >> \"${STARTS_ENV}\"; sleep {sleep}"
    );
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// A spec with id `id` running [`recording_command`], with the start log at `starts`.
pub fn recording_spec(
    id: String,
    cpu: u64,
    memory: u64,
    sleep: &str,
    starts: &Path,
) -> ContainerSpec {
    let mut spec = ContainerSpec::new(cpu, memory, recording_command(sleep));
    spec.id = Some(id);
    spec.env
        .insert(STARTS_ENV.to_owned(), starts.display().to_string());
    spec.timeout_secs = Some(120);
    spec
}

/// Makes the seeded stream of requests.
#[derive(Debug)]
pub struct RequestMaker {
    rng: StdRng,
    next: u64,
    starts: std::path::PathBuf,
}

impl RequestMaker {
    /// The stream of seed `seed`, recording starts in `starts`.
    pub fn new(seed: u64, starts: &Path) -> RequestMaker {
        RequestMaker {
            rng: StdRng::seed_from_u64(seed ^ LOAD_STREAM),
            next: 0,
            starts: starts.to_owned(),
        }
    }

    /// How long to wait before the next request (80-240 ms: about 6 a second).
    pub fn pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(80..=240))
    }

    /// The next request and its class.
    pub fn next_request(&mut self) -> (ContainerSpec, RequestClass) {
        self.next += 1;
        let id = format!("load-{:06}", self.next);
        let sleep = format!("{:.1}", self.rng.random_range(1..=20) as f64 / 10.0);
        let roll = self.rng.random_range(0..1000);
        let (class, mut spec) = if roll < 700 {
            let cpu = [100, 250, 500, 750, 1000][self.rng.random_range(0..5)];
            let memory = [64, 128, 256, 512][self.rng.random_range(0..4)];
            (
                RequestClass::Cpu,
                recording_spec(id, cpu, memory, &sleep, &self.starts),
            )
        } else if roll < 920 {
            let mut spec = recording_spec(id, 250, 256, &sleep, &self.starts);
            let types = match self.rng.random_range(0..3) {
                0 => GpuTypes::List(vec!["A10G".to_owned()]),
                1 => GpuTypes::List(vec!["A100-80".to_owned(), "A10G".to_owned()]),
                _ => GpuTypes::Any,
            };
            // A third ask for a fraction of one GPU, which shares a device with others.
            let milli = [None, None, Some(250), None, Some(500), None][self.rng.random_range(0..6)];
            spec.gpu = Some(GpuSpec {
                count: u32::from(milli.is_none()),
                milli,
                types,
            });
            (RequestClass::Gpu, spec)
        } else if roll < 990 {
            (
                RequestClass::Big,
                recording_spec(id, 2000, 1024, &sleep, &self.starts),
            )
        } else {
            let mut spec = recording_spec(id, 1000, 1024, &sleep, &self.starts);
            spec.gpu = Some(GpuSpec {
                count: 2,
                milli: None,
                types: GpuTypes::List(vec!["A100-80".to_owned()]),
            });
            (RequestClass::Big, spec)
        };
        spec.priority = self.rng.random_range(0..=3);
        // A quarter accept interruption: when the fleet is full, requests of higher priority
        // (the probes among them) preempt them.
        spec.preemptible = self.rng.random_range(0..4) == 0;
        (spec, class)
    }
}

/// What became of the submitted requests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Requests generated (each submitted, perhaps several times).
    pub requests: u64,
    /// Requests per class.
    pub by_class: BTreeMap<RequestClass, u64>,
    /// The ids that got a 2xx: the store accepted them.
    pub accepted: BTreeSet<String>,
    /// Ids refused with a 4xx, with the server's message (e.g. 422: no live worker could
    /// ever hold it at that moment).
    pub rejected: BTreeMap<String, String>,
    /// Ids never answered within [`SUBMIT_PATIENCE`], with the last error.
    pub unacknowledged: BTreeMap<String, String>,
    /// Calls that failed on an unavailable replica and were retried.
    pub retried_calls: u64,
}

impl LoadReport {
    fn record(&mut self, id: String, outcome: Submitted) {
        match outcome {
            Submitted::Accepted { retries } => {
                self.retried_calls += u64::from(retries);
                self.accepted.insert(id);
            }
            Submitted::Rejected { retries, why } => {
                self.retried_calls += u64::from(retries);
                self.rejected.insert(id, why);
            }
            Submitted::Unacknowledged { retries, why } => {
                self.retried_calls += u64::from(retries);
                self.unacknowledged.insert(id, why);
            }
        }
    }
}

/// How one submit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A 2xx.
    Accepted {
        /// Calls retried on the way.
        retries: u32,
    },
    /// A 4xx.
    Rejected {
        /// Calls retried on the way.
        retries: u32,
        /// The server's message.
        why: String,
    },
    /// No replica answered in time.
    Unacknowledged {
        /// Calls retried on the way.
        retries: u32,
        /// The last error.
        why: String,
    },
}

/// Submits `spec` to any replica, retrying unavailable ones for `patience`.
pub async fn submit(gateway: &Gateway, spec: &ContainerSpec, patience: Duration) -> Submitted {
    let (result, retries) = gateway
        .call(patience, |client| {
            let spec = spec.clone();
            async move { client.submit(&spec).await }
        })
        .await;
    match result {
        Ok(_) => Submitted::Accepted { retries },
        Err(error) if crate::gateway::retryable(&error) => Submitted::Unacknowledged {
            retries,
            why: error.to_string(),
        },
        Err(error) => Submitted::Rejected {
            retries,
            why: error.to_string(),
        },
    }
}

/// Submits the seeded stream until `stop` fires, then waits for the submits in flight.
pub async fn run_load(
    gateway: Arc<Gateway>,
    mut maker: RequestMaker,
    stop: CancellationToken,
) -> LoadReport {
    let mut report = LoadReport::default();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut in_flight: JoinSet<(String, Submitted)> = JoinSet::new();
    while !stop.is_cancelled() {
        let (spec, class) = maker.next_request();
        report.requests += 1;
        *report.by_class.entry(class).or_default() += 1;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let gateway = gateway.clone();
        in_flight.spawn(async move {
            let outcome = submit(&gateway, &spec, SUBMIT_PATIENCE).await;
            drop(slot);
            (spec.id.unwrap_or_default(), outcome)
        });
        while let Some(done) = in_flight.try_join_next() {
            collect(&mut report, done);
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(maker.pause()) => {}
        }
    }
    while let Some(done) = in_flight.join_next().await {
        collect(&mut report, done);
    }
    report
}

fn collect(report: &mut LoadReport, done: Result<(String, Submitted), tokio::task::JoinError>) {
    match done {
        Ok((id, outcome)) => report.record(id, outcome),
        Err(error) => tracing::error!(%error, "a submit task failed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_requests() {
        let starts = Path::new("/tmp/starts.log");
        let mut a = RequestMaker::new(5, starts);
        let mut b = RequestMaker::new(5, starts);
        for _ in 0..200 {
            assert_eq!(a.next_request(), b.next_request());
            assert_eq!(a.pause(), b.pause());
        }
    }

    #[test]
    fn the_mix_has_every_class_and_valid_specs() {
        let mut maker = RequestMaker::new(9, Path::new("/tmp/starts.log"));
        let mut seen = BTreeSet::new();
        for i in 0..500 {
            let (spec, class) = maker.next_request();
            seen.insert(class);
            assert_eq!(
                spec.id.as_deref(),
                Some(format!("load-{:06}", i + 1).as_str())
            );
            assert!(spec.env.contains_key(STARTS_ENV));
            let request = spec.into_request(0, berth_core::ContainerId::new("unused").unwrap());
            assert!(request.is_ok(), "{request:?}");
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
