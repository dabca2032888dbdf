//! `GET /v1/throughput`: placements per second and their median latency over the last
//! minutes, for the console's chart.
//!
//! The series is built from the container records' timestamps (`scheduled_at_ms` and
//! `submitted_at_ms`), not from what this replica placed: the records are shared, so every
//! replica answers with the placements of the whole fleet. The price is a read of up to
//! [`MAX_RECORDS`] records per call, and its limits: a container placed again (after a
//! retry or a preemption) counts once, at its latest placement; a record whose container
//! is pending again has no placement; with more records than the read takes, the series
//! undercounts (`truncated` says so). An answer is reused for [`REUSE_FOR`]
//! ([`ThroughputCache`]), so that the consoles polling once a second cost one read per
//! second per replica, not one per console.

use crate::error::HttpError;
use crate::extract::QueryParams;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use berth_api::{ErrorBody, ThroughputSecond, ThroughputView};
use berth_store::ContainerRecord;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most container records one call reads.
pub const MAX_RECORDS: usize = 10_000;
/// The longest window, in minutes.
pub const MAX_MINUTES: u64 = 15;
/// How long an answer is reused for calls with the same window.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// The last answer, for reuse within [`REUSE_FOR`].
#[derive(Debug, Default)]
pub struct ThroughputCache {
    last: Mutex<Option<(Instant, u64, ThroughputView)>>,
}

impl ThroughputCache {
    /// The answer for a window of `minutes` made less than [`REUSE_FOR`] before `now`.
    fn fresh(&self, minutes: u64, now: Instant) -> Option<ThroughputView> {
        let last = self.last.lock();
        let (at, window, view) = last.as_ref()?;
        (*window == minutes && now.saturating_duration_since(*at) < REUSE_FOR).then(|| view.clone())
    }

    /// Keeps `view`, the answer for `minutes` made at `at`.
    fn keep(&self, minutes: u64, at: Instant, view: &ThroughputView) {
        *self.last.lock() = Some((at, minutes, view.clone()));
    }
}

/// Placements per second over the last minutes, and the median time from submit to
/// placement in each second.
#[utoipa::path(
    get, path = "/v1/throughput", tag = "operations",
    params(
        ("minutes" = Option<u64>, Query, minimum = 1, maximum = 15, description = "The window, in minutes (default 5, at most 15)"),
    ),
    responses(
        (status = 200, body = ThroughputView),
        (status = 400, description = "Malformed query", body = ErrorBody),
    )
)]
pub async fn throughput(
    State(state): State<Arc<AppState>>,
    query: QueryParams,
) -> Result<Json<ThroughputView>, HttpError> {
    query.only(&["minutes"])?;
    let minutes = query.number("minutes", 5, 1, MAX_MINUTES)?;
    let now = Instant::now();
    if let Some(view) = state.throughput.fresh(minutes, now) {
        return Ok(Json(view));
    }
    let records = state.store.containers(None, MAX_RECORDS).await?;
    let view = series(&records, state.now_ms(), minutes * 60);
    state.throughput.keep(minutes, now, &view);
    Ok(Json(view))
}

/// The series of the `seconds` whole seconds that end at `now_ms`, from `records`.
pub fn series(records: &[ContainerRecord], now_ms: u64, seconds: u64) -> ThroughputView {
    let end = now_ms - now_ms % 1000;
    let start = end.saturating_sub(seconds * 1000);
    let slots = usize::try_from((end - start) / 1000).unwrap_or(0);
    let mut latencies: Vec<(u64, Vec<u64>)> = vec![(0, Vec::new()); slots];
    for record in records {
        let Some(placed) = record
            .scheduled_at_ms
            .filter(|at| (start..end).contains(at))
        else {
            continue;
        };
        let Ok(slot) = usize::try_from((placed - start) / 1000) else {
            continue;
        };
        let (count, firsts) = &mut latencies[slot];
        *count += 1;
        // A retried container's submit time is its first submit: its wait would count the
        // run before, so only first placements give latencies.
        if record.retries == 0 {
            firsts.push(placed.saturating_sub(record.request.submitted_at_ms));
        }
    }
    let seconds = latencies
        .into_iter()
        .zip((start..end).step_by(1000))
        .map(|((placed, mut waits), at_ms)| ThroughputSecond {
            at_ms,
            placed,
            p50_latency_ms: median(&mut waits),
        })
        .collect();
    ThroughputView {
        now_ms,
        seconds,
        records_read: records.len() as u64,
        truncated: records.len() >= MAX_RECORDS,
    }
}

/// The median of `values` (the lower one of an even count), or `None` if empty.
fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let middle = (values.len() - 1) / 2;
    Some(*values.select_nth_unstable(middle).1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::{
        ContainerId, ContainerRequest, ContainerState, GpuPreference, Payload, Resources,
    };

    /// A record submitted at `submitted` and placed at `placed`, run again `retries` times.
    fn record(id: &str, submitted: u64, placed: Option<u64>, retries: u32) -> ContainerRecord {
        let request = ContainerRequest {
            id: ContainerId::new(id).unwrap(),
            tenant: "t".into(),
            resources: Resources::new(100, 64, 0),
            gpu_fraction_milli: None,
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority: 0,
            submitted_at_ms: submitted,
            payload: Payload::default(),
            fallback: Vec::new(),
            max_retries: retries,
        };
        ContainerRecord {
            state: ContainerState::Running,
            scheduled_at_ms: placed,
            retries,
            ..berth_core::lifecycle::pending(request)
        }
    }

    #[test]
    fn placements_count_in_their_second_with_the_median_wait_of_first_placements() {
        let records = [
            record("a", 9_000, Some(10_100), 0),
            record("b", 9_900, Some(10_200), 0),
            record("c", 10_000, Some(10_900), 0),
            record("retried", 1_000, Some(10_500), 1),
            record("later", 11_000, Some(11_500), 0),
            record("pending", 11_000, None, 0),
            record("too-old", 1_000, Some(2_000), 0),
        ];
        let view = series(&records, 12_345, 3);
        let got: Vec<_> = view
            .seconds
            .iter()
            .map(|s| (s.at_ms, s.placed, s.p50_latency_ms))
            .collect();
        assert_eq!(
            got,
            [
                (9_000, 0, None),
                (10_000, 4, Some(900)),
                (11_000, 1, Some(500))
            ]
        );
        assert_eq!(view.records_read, 7);
        assert!(!view.truncated);
    }

    #[test]
    fn a_read_at_its_limit_says_it_may_undercount() {
        let records = vec![record("a", 0, None, 0); MAX_RECORDS];
        assert!(series(&records, 5_000, 1).truncated);
    }

    #[test]
    fn an_answer_is_reused_within_a_second_for_the_same_window_only() {
        let cache = ThroughputCache::default();
        let at = Instant::now();
        assert_eq!(cache.fresh(5, at), None);
        let view = series(&[], 10_000, 60);
        cache.keep(5, at, &view);
        assert_eq!(cache.fresh(5, at + Duration::from_millis(999)), Some(view));
        assert_eq!(cache.fresh(1, at), None, "another window is read anew");
        assert_eq!(
            cache.fresh(5, at + REUSE_FOR),
            None,
            "a second later it is read anew"
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
        assert_eq!(median(&mut []), None);
    }
}
