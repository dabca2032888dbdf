//! The command line of `berth bench` ([`BenchArgs`], flattened into the binary's `bench`
//! subcommand) and the settings the scenarios run with, checked and with each scenario's
//! defaults filled in ([`Settings`]).

use anyhow::bail;
use berth_engine::Strategy;
use std::path::PathBuf;
use std::time::Duration;

/// Which experiment to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The seed's experiment: 100 requests on 10, 20 and 40 workers, every strategy.
    Seed,
    /// 1,000 workers, 100,000 requests, 1 to 4 engine replicas.
    Sustained,
    /// 10,000 workers, 1,000,000 requests.
    C1m,
    /// Through the HTTP API: 100 concurrent single submits, and batch submits.
    Api,
    /// Container starts on real workers: 200 containers running `true`, runc and the
    /// process runtime side by side, end to end and in the runtime alone.
    Start,
    /// An arrival-only fill of a GPU fleet shaped by Alibaba's 2023 GPU trace, under
    /// spread, pack and the fragmentation-aware policy (the planner alone, no store).
    GpuSharing,
}

impl Scenario {
    /// The scenario's name in the report and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Seed => "seed",
            Scenario::Sustained => "sustained",
            Scenario::C1m => "c1m",
            Scenario::Api => "api",
            Scenario::Start => "start",
            Scenario::GpuSharing => "gpu-sharing",
        }
    }
}

/// Which store to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Redis: the one given with `--redis`, or a redis-server the bench starts itself.
    Redis,
    /// The embedded in-memory store.
    Memory,
}

/// Whether the scale runs give every tenant a quota (`--quotas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum QuotaMode {
    /// No tenant has a policy (the placements are charged by their settlement).
    #[default]
    Off,
    /// Every tenant has a quota that never binds, so every placement is held.
    On,
    /// Each run twice, without and then with the quotas, side by side.
    Both,
}

impl QuotaMode {
    /// The variants each scale run is made in, in order: `false` without quotas, `true`
    /// with them.
    pub fn variants(self) -> Vec<bool> {
        match self {
            QuotaMode::Off => vec![false],
            QuotaMode::On => vec![true],
            QuotaMode::Both => vec![false, true],
        }
    }
}

/// The most tenants `--tenants` accepts.
const MAX_TENANTS: usize = 10_000;

/// Arguments of `berth bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The experiment: seed, sustained, c1m, api, start or gpu-sharing.
    #[arg(long, value_enum, default_value = "seed")]
    scenario: Scenario,
    /// The store: redis (default when redis-server is installed or --redis is given) or
    /// memory (the embedded store).
    #[arg(long, value_enum)]
    pub(crate) store: Option<StoreKind>,
    /// Use this Redis (e.g. redis://127.0.0.1:6379/) instead of starting one. The bench
    /// writes under fresh key prefixes `bench-<pid>-<n>` and deletes them afterwards.
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// With --redis: every batch's commits wait for this many replicas (Redis WAIT) before
    /// the batch is settled, to measure what that durability costs.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "redis")]
    pub(crate) replica_acks: u32,
    /// Simulated network round-trip time added to every store round trip, in ms
    /// (0 to 1000; a comma-separated list runs each). Default: 0,1 for seed, 0 otherwise.
    #[arg(
        long = "rtt-ms",
        value_delimiter = ',',
        value_name = "MS",
        allow_negative_numbers = true
    )]
    rtt_ms: Vec<f64>,
    /// Commit strategies, comma-separated. Default: all three for seed, batch-script for
    /// the scale runs.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<Strategy>,
    /// Seed: measured repetitions per strategy, fleet size and rtt (after one warm-up).
    #[arg(long, default_value_t = 10)]
    repetitions: usize,
    /// Seed: repetitions of `serial` at a non-zero rtt, where it is slow by design
    /// (default: the same as --repetitions).
    #[arg(long, value_name = "N")]
    serial_repetitions: Option<usize>,
    /// Seed: fleet sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40")]
    fleets: Vec<usize>,
    /// Seed: give every worker this many A10G devices (1 to 64) and every request a quarter
    /// of one GPU, so each commit books device shares (default 0: CPU-only, as the seed).
    #[arg(long, value_name = "N", default_value_t = 0)]
    gpu_devices: u32,
    /// Seed: concurrent requests per repetition (default 100); start: containers per
    /// runtime (default 200).
    #[arg(long)]
    containers: Option<usize>,
    /// gpu-sharing: the seeds of the fleet and the pod stream, comma-separated; each runs
    /// its own fill and verdict (default 2023).
    #[arg(long, value_delimiter = ',', value_name = "SEED")]
    stream_seeds: Vec<u64>,
    /// gpu-sharing: a third of the GPU pods accept only some GPU types, as in the trace's
    /// `openb_pod_list_gpuspec33.csv` (default: every pod takes any type, as in its default
    /// list); adds a row for fgd weighing a demand that ignores the types.
    #[arg(long)]
    typed_pods: bool,
    /// Scale runs: engine replicas, comma-separated (default: 1,2,3,4 for sustained; 2 for
    /// c1m, the fastest on a 2-core machine, where one replica leaves Redis idle while it
    /// plans).
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<usize>,
    /// Scale runs: workers (default 1,000 for sustained, 10,000 for c1m); gpu-sharing:
    /// nodes (default 400).
    #[arg(long)]
    workers: Option<usize>,
    /// Scale runs and api's batch submits: requests (default 100,000; 1,000,000 for c1m);
    /// gpu-sharing: pods in the stream (default 8,000).
    #[arg(long)]
    requests: Option<usize>,
    /// Scale runs: the most requests submitted and not yet placed at any time (a closed
    /// loop; default 4096 per replica). Start: the most containers submitted and not yet
    /// ended (default 4).
    #[arg(long, value_name = "N")]
    in_flight: Option<usize>,
    /// Scale runs: spread the requests round-robin over this many tenants (default 1: every
    /// request is tenant `bench`).
    #[arg(long, value_name = "N")]
    tenants: Option<usize>,
    /// Scale runs: off (default), on (before the run every tenant gets a quota of twice its
    /// share of the fleet, which never binds but makes every placement take a hold), or
    /// both (each run without, then with; the table shows the ratio).
    #[arg(long, value_enum, value_name = "MODE", default_value = "off")]
    quotas: QuotaMode,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) json: Option<PathBuf>,
}

/// Validated settings shared by the scenarios.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The experiment.
    pub scenario: Scenario,
    /// Simulated round-trip times.
    pub rtts: Vec<Duration>,
    /// Commit strategies.
    pub strategies: Vec<Strategy>,
    /// Seed: measured repetitions.
    pub repetitions: usize,
    /// Seed: repetitions of serial at a non-zero rtt.
    pub serial_repetitions: usize,
    /// Seed: fleet sizes.
    pub fleets: Vec<usize>,
    /// Seed: GPU devices per worker (0: CPU-only workers and requests).
    pub gpu_devices: u32,
    /// Seed: requests per repetition; start: containers per runtime.
    pub containers: usize,
    /// gpu-sharing: the seeds of the fleet and the stream.
    pub stream_seeds: Vec<u64>,
    /// gpu-sharing: pods accept only the GPU types the trace's gpuspec33 list gives them.
    pub typed_pods: bool,
    /// Scale: replica counts.
    pub replicas: Vec<usize>,
    /// Scale: workers.
    pub workers: usize,
    /// Scale: requests.
    pub requests: usize,
    /// Scale: in-flight window per replica count (None: the default per replica).
    pub in_flight: Option<usize>,
    /// Scale: tenants the requests are spread over, round-robin.
    pub tenants: usize,
    /// Scale: without quotas (`false`), with them (`true`), or both, in that order.
    pub quotas: Vec<bool>,
}

/// The most GPU devices per worker `--gpu-devices` accepts.
const MAX_GPU_DEVICES: u32 = 64;

/// The largest simulated round-trip time, in ms.
const MAX_RTT_MS: f64 = 1000.0;

impl BenchArgs {
    /// Checks every argument and fills in the scenario's defaults.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let scenario = self.scenario;
        let seed = scenario == Scenario::Seed;
        let rtts = self.rtts(seed)?;
        let strategies = if !self.strategies.is_empty() {
            dedup(self.strategies.clone())
        } else if seed {
            Strategy::ALL.to_vec()
        } else {
            vec![Strategy::BatchScript]
        };
        let serial_repetitions = self.check_seed_sizes()?;
        let replicas = self.replicas(scenario)?;
        let (workers, requests) = self.check_scale_sizes(scenario)?;
        let tenants = self.tenants(scenario)?;
        if self.store == Some(StoreKind::Memory) && self.redis.is_some() {
            bail!("--redis cannot be combined with --store memory");
        }
        if !seed && self.serial_repetitions.is_some() {
            bail!("--serial-repetitions applies to the seed scenario only");
        }
        if self.gpu_devices != 0 && (!seed || self.gpu_devices > MAX_GPU_DEVICES) {
            bail!(
                "--gpu-devices applies to the seed scenario only, from 1 to {MAX_GPU_DEVICES} \
                 (got {})",
                self.gpu_devices
            );
        }
        let stream_seeds = self.stream_seeds(scenario)?;
        if self.typed_pods && scenario != Scenario::GpuSharing {
            bail!("--typed-pods applies to the gpu-sharing scenario only");
        }
        Ok(Settings {
            scenario,
            rtts,
            strategies,
            repetitions: self.repetitions,
            serial_repetitions,
            fleets: dedup(self.fleets.clone()),
            gpu_devices: self.gpu_devices,
            containers: self.containers.unwrap_or(if scenario == Scenario::Start {
                200
            } else {
                100
            }),
            stream_seeds,
            typed_pods: self.typed_pods,
            replicas,
            workers,
            requests,
            in_flight: self.in_flight,
            tenants,
            quotas: self.quotas.variants(),
        })
    }

    /// `--stream-seeds` checked (gpu-sharing only; default: the scenario's own seed).
    fn stream_seeds(&self, scenario: Scenario) -> anyhow::Result<Vec<u64>> {
        if scenario != Scenario::GpuSharing {
            if !self.stream_seeds.is_empty() {
                bail!("--stream-seeds applies to the gpu-sharing scenario only");
            }
            return Ok(Vec::new());
        }
        if self.stream_seeds.is_empty() {
            return Ok(vec![crate::gpu_sharing::SEED]);
        }
        Ok(dedup(self.stream_seeds.clone()))
    }

    /// `--tenants` checked (default 1); it and `--quotas` apply to the scale runs only.
    fn tenants(&self, scenario: Scenario) -> anyhow::Result<usize> {
        let scale = matches!(scenario, Scenario::Sustained | Scenario::C1m);
        if !scale && (self.tenants.is_some() || self.quotas != QuotaMode::Off) {
            bail!("--tenants and --quotas apply to the sustained and c1m scenarios only");
        }
        let tenants = self.tenants.unwrap_or(1);
        if !(1..=MAX_TENANTS).contains(&tenants) {
            bail!("--tenants must be between 1 and {MAX_TENANTS} (got {tenants})");
        }
        Ok(tenants)
    }

    /// `--rtt-ms` checked, as durations without repeats (default: 0,1 for seed, else 0).
    fn rtts(&self, seed: bool) -> anyhow::Result<Vec<Duration>> {
        let rtt_ms = if self.rtt_ms.is_empty() {
            if seed { vec![0.0, 1.0] } else { vec![0.0] }
        } else {
            self.rtt_ms.clone()
        };
        let mut rtts = Vec::new();
        for ms in rtt_ms {
            if !ms.is_finite() || !(0.0..=MAX_RTT_MS).contains(&ms) {
                bail!("--rtt-ms must be between 0 and {MAX_RTT_MS} ms (got {ms})");
            }
            let rtt = Duration::from_secs_f64(ms / 1e3);
            if !rtts.contains(&rtt) {
                rtts.push(rtt);
            }
        }
        Ok(rtts)
    }

    /// Checks the seed scenario's sizes; returns serial's repetitions at a non-zero rtt.
    fn check_seed_sizes(&self) -> anyhow::Result<usize> {
        if !(1..=10_000).contains(&self.repetitions) {
            bail!(
                "--repetitions must be between 1 and 10000 (got {})",
                self.repetitions
            );
        }
        let serial_repetitions = self.serial_repetitions.unwrap_or(self.repetitions);
        if !(1..=10_000).contains(&serial_repetitions) {
            bail!("--serial-repetitions must be between 1 and 10000 (got {serial_repetitions})");
        }
        if self.fleets.is_empty() || self.fleets.iter().any(|&n| !(1..=100_000).contains(&n)) {
            bail!(
                "--fleets must list fleet sizes between 1 and 100000 (got {:?})",
                self.fleets
            );
        }
        if let Some(n) = self.containers
            && !(1..=100_000).contains(&n)
        {
            bail!("--containers must be between 1 and 100000 (got {n})");
        }
        Ok(serial_repetitions)
    }

    /// `--replicas` checked, or the scenario's default.
    fn replicas(&self, scenario: Scenario) -> anyhow::Result<Vec<usize>> {
        let replicas = if !self.replicas.is_empty() {
            dedup(self.replicas.clone())
        } else {
            match scenario {
                Scenario::Sustained => vec![1, 2, 3, 4],
                Scenario::C1m => vec![2],
                Scenario::Seed | Scenario::Api | Scenario::Start | Scenario::GpuSharing => vec![1],
            }
        };
        if replicas.iter().any(|&n| !(1..=16).contains(&n)) {
            bail!("--replicas must list counts between 1 and 16 (got {replicas:?})");
        }
        Ok(replicas)
    }

    /// Checks the scale runs' sizes; returns the workers and requests, or their defaults.
    fn check_scale_sizes(&self, scenario: Scenario) -> anyhow::Result<(usize, usize)> {
        let (default_workers, default_requests) = match scenario {
            Scenario::C1m => (10_000, 1_000_000),
            Scenario::GpuSharing => (400, 8_000),
            _ => (1_000, 100_000),
        };
        let workers = self.workers.unwrap_or(default_workers);
        if !(1..=100_000).contains(&workers) {
            bail!("--workers must be between 1 and 100000 (got {workers})");
        }
        let requests = self.requests.unwrap_or(default_requests);
        if !(1..=10_000_000).contains(&requests) {
            bail!("--requests must be between 1 and 10000000 (got {requests})");
        }
        if let Some(n) = self.in_flight
            && !(1..=1_000_000).contains(&n)
        {
            bail!("--in-flight must be between 1 and 1000000 (got {n})");
        }
        Ok((workers, requests))
    }
}

/// The items in their first order, without repeats.
fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        cli.bench.settings()
    }

    #[test]
    fn without_the_options_sustained_runs_one_tenant_without_quotas() {
        let s = settings(&["--scenario", "sustained"]).unwrap();
        assert_eq!(s.tenants, 1);
        assert_eq!(s.quotas, [false]);
    }

    #[test]
    fn tenants_and_quotas_parse() {
        let s = settings(&[
            "--scenario",
            "sustained",
            "--tenants",
            "100",
            "--quotas",
            "on",
        ]);
        let s = s.unwrap();
        assert_eq!((s.tenants, s.quotas), (100, vec![true]));
        let s = settings(&["--scenario", "c1m", "--quotas", "both"]).unwrap();
        assert_eq!((s.tenants, s.quotas), (1, vec![false, true]));
        assert!(settings(&["--scenario", "sustained", "--quotas", "maybe"]).is_err());
    }

    #[test]
    fn tenants_are_bounded_and_for_the_scale_runs_only() {
        for bad in ["0", "10001"] {
            let err = settings(&["--scenario", "sustained", "--tenants", bad]).unwrap_err();
            assert!(err.to_string().contains("--tenants must be"), "{err}");
        }
        let err = settings(&["--scenario", "seed", "--tenants", "5"]).unwrap_err();
        assert!(err.to_string().contains("scale") || err.to_string().contains("sustained"));
        assert!(settings(&["--scenario", "api", "--quotas", "on"]).is_err());
    }

    #[test]
    fn stream_seeds_are_for_gpu_sharing_and_default_to_its_own() {
        let s = settings(&["--scenario", "gpu-sharing"]).unwrap();
        assert_eq!(s.stream_seeds, [crate::gpu_sharing::SEED]);
        let s = settings(&["--scenario", "gpu-sharing", "--stream-seeds", "1,2,1"]).unwrap();
        assert_eq!(s.stream_seeds, [1, 2]);
        assert!(
            settings(&["--scenario", "seed"])
                .unwrap()
                .stream_seeds
                .is_empty()
        );
        let err = settings(&["--scenario", "seed", "--stream-seeds", "1"]).unwrap_err();
        assert!(err.to_string().contains("gpu-sharing"), "{err}");
        assert!(settings(&["--scenario", "gpu-sharing", "--stream-seeds", "x"]).is_err());
    }

    #[test]
    fn typed_pods_are_for_gpu_sharing() {
        assert!(!settings(&["--scenario", "gpu-sharing"]).unwrap().typed_pods);
        let s = settings(&["--scenario", "gpu-sharing", "--typed-pods"]).unwrap();
        assert!(s.typed_pods);
        let err = settings(&["--scenario", "seed", "--typed-pods"]).unwrap_err();
        assert!(err.to_string().contains("--typed-pods applies"), "{err}");
    }

    #[test]
    fn gpu_devices_are_for_the_seed_and_bounded() {
        let s = settings(&["--scenario", "seed", "--gpu-devices", "8"]).unwrap();
        assert_eq!(s.gpu_devices, 8);
        assert_eq!(settings(&["--scenario", "seed"]).unwrap().gpu_devices, 0);
        for bad in [
            &["--scenario", "seed", "--gpu-devices", "65"][..],
            &["--scenario", "sustained", "--gpu-devices", "8"],
        ] {
            let err = settings(bad).unwrap_err();
            assert!(err.to_string().contains("--gpu-devices applies"), "{err}");
        }
    }
}
