//! `--scenario c1m`: 10,000 workers, 1,000,000 requests: the time to place them all, the
//! scheduler's peak memory (this process's `VmHWM`, reset just before the run: the engine
//! replicas, the submitting client and the tokio runtime together; with `--store memory`
//! the store's data too) and Redis's memory (`INFO memory` right after the run).

use super::load::{self, IN_FLIGHT_PER_REPLICA, LoadSpec};
use super::report::{self, BenchReport};
use super::store_choice::StoreChoice;
use super::{Scenario, Settings};
use anyhow::Context;

/// Records read back for the latency percentiles (a sample spread over the run).
const LATENCY_SAMPLES: usize = 20_000;

/// Runs every strategy, rtt and replica count asked for, one run each on a fresh fleet.
pub async fn run(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    for &strategy in &settings.strategies {
        for &rtt in &settings.rtts {
            for &replicas in &settings.replicas {
                let spec = LoadSpec {
                    scenario: Scenario::C1m.as_str(),
                    strategy,
                    rtt,
                    workers: settings.workers,
                    requests: settings.requests,
                    replicas,
                    in_flight: settings
                        .in_flight
                        .unwrap_or(IN_FLIGHT_PER_REPLICA * replicas),
                    latency_samples: LATENCY_SAMPLES.min(settings.requests),
                    reset_peak_memory: true,
                };
                let row = load::run(choice, &spec).await.with_context(|| {
                    format!(
                        "c1m: {strategy}, {replicas} replicas, rtt {} ms",
                        report::ms(rtt)
                    )
                })?;
                report.runs.push(row);
            }
        }
    }
    report::print_scale(report, Scenario::C1m);
    Ok(())
}
