//! `--scenario c1m`: 10,000 workers, 1,000,000 requests: the time to place them all, the
//! scheduler's peak memory (this process's `VmHWM`, reset just before the run: the engine
//! replicas, the submitting client and the tokio runtime together; with `--store memory`
//! the store's data too) and Redis's memory (`INFO memory` right after the run).

use crate::args::{Scenario, Settings};
use crate::load;
use crate::report::BenchReport;
use crate::store_choice::StoreChoice;

/// Records read back for the latency percentiles (a sample spread over the run).
const LATENCY_SAMPLES: usize = 20_000;

/// Runs every strategy, rtt and replica count asked for, one run each on a fresh fleet.
pub async fn run(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    let samples = LATENCY_SAMPLES.min(settings.requests);
    load::run_scenario(choice, settings, report, Scenario::C1m, samples).await
}
