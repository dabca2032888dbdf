//! `--scenario sustained`: 1,000 workers, 100,000 requests, 1 to 4 engine replicas on one
//! store: placements per second and latency percentiles (see [`super::load`] for how the
//! load is offered and what is measured).

use super::load::{self, IN_FLIGHT_PER_REPLICA, LoadSpec};
use super::report::{self, BenchReport};
use super::store_choice::StoreChoice;
use super::{Scenario, Settings};
use anyhow::Context;

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
                    scenario: Scenario::Sustained.as_str(),
                    strategy,
                    rtt,
                    workers: settings.workers,
                    requests: settings.requests,
                    replicas,
                    in_flight: settings
                        .in_flight
                        .unwrap_or(IN_FLIGHT_PER_REPLICA * replicas),
                    latency_samples: settings.requests,
                    reset_peak_memory: true,
                };
                let row = load::run(choice, &spec).await.with_context(|| {
                    format!(
                        "sustained: {strategy}, {replicas} replicas, rtt {} ms",
                        report::ms(rtt)
                    )
                })?;
                report.runs.push(row);
            }
        }
    }
    report::print_scale(report, Scenario::Sustained);
    Ok(())
}
