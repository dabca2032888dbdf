//! `--scenario sustained`: 1,000 workers, 100,000 requests, 1 to 4 engine replicas on one
//! store: placements per second and latency percentiles (see [`super::load`] for how the
//! load is offered and what is measured). With `--tenants N` the requests are spread over N
//! tenants, and with `--quotas on|both` every tenant has a quota that never binds, so every
//! placement takes a hold (see [`super::tenants`]).

use crate::args::{Scenario, Settings};
use crate::load;
use crate::report::BenchReport;
use crate::store_choice::StoreChoice;

/// Runs every strategy, rtt and replica count asked for, one run each on a fresh fleet,
/// reading every record back for the latency percentiles.
pub async fn run(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    load::run_scenario(
        choice,
        settings,
        report,
        Scenario::Sustained,
        settings.requests,
    )
    .await
}
