//! Sampling the store's invariant check (`GET /v1/check`) on any live replica throughout
//! the run. A replica that cannot answer (dead, restarting, its Redis paused or failing
//! over) is an error to retry on another, never a violation; every violation a replica
//! reports is kept, with when it was first and last seen.

use crate::gateway::Gateway;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the check is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long one sample may look for a replica that answers.
const SAMPLE_PATIENCE: Duration = Duration::from_secs(5);

/// One violation the check reported, as seen over the samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenViolation {
    /// What it concerns (a worker or container id).
    pub subject: String,
    /// What is wrong.
    pub detail: String,
    /// When it was first reported, from the start of the load.
    pub first_at_ms: u64,
    /// When it was last reported.
    pub last_at_ms: u64,
    /// In how many samples.
    pub samples: u64,
    /// After how many of those samples an immediate re-check no longer reported it: a
    /// violation that vanishes at once was seen in state that was changing under the check.
    pub vanished_on_recheck: u64,
}

/// Every sample's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckLog {
    /// Samples a replica answered.
    pub samples: u64,
    /// Samples no replica answered in time.
    pub unanswered: u64,
    /// Every distinct violation reported, in order of first sight.
    pub violations: Vec<SeenViolation>,
    #[serde(skip)]
    index: BTreeMap<(String, String), usize>,
}

impl CheckLog {
    /// Records one answered sample at `at_ms` with these `(subject, detail)` violations.
    pub fn record(&mut self, at_ms: u64, violations: impl IntoIterator<Item = (String, String)>) {
        self.samples += 1;
        for (subject, detail) in violations {
            let key = (subject.clone(), detail.clone());
            match self.index.get(&key) {
                Some(&i) => {
                    let seen = &mut self.violations[i];
                    seen.last_at_ms = at_ms;
                    seen.samples += 1;
                }
                None => {
                    self.index.insert(key, self.violations.len());
                    self.violations.push(SeenViolation {
                        subject,
                        detail,
                        first_at_ms: at_ms,
                        last_at_ms: at_ms,
                        samples: 1,
                        vanished_on_recheck: 0,
                    });
                }
            }
        }
    }
}

impl CheckLog {
    /// Notes which of the `first` sample's violations an immediate `recheck` no longer
    /// reported.
    pub fn mark_vanished(&mut self, first: &[(String, String)], recheck: &[(String, String)]) {
        for violation in first.iter().filter(|v| !recheck.contains(v)) {
            if let Some(&i) = self.index.get(violation) {
                self.violations[i].vanished_on_recheck += 1;
            }
        }
    }
}

/// Asks any replica for the check once; the violations as `(subject, detail)`, or `None`
/// when no replica answered within `patience`.
pub async fn check_once(gateway: &Gateway, patience: Duration) -> Option<Vec<(String, String)>> {
    let (result, _) = gateway
        .call(patience, |client| async move { client.check().await })
        .await;
    match result {
        Ok(view) => Some(
            view.violations
                .into_iter()
                .map(|v| (v.subject, v.detail))
                .collect(),
        ),
        Err(error) => {
            tracing::debug!(%error, "no replica answered the check");
            None
        }
    }
}

/// Samples the check every [`SAMPLE_EVERY`] until `stop` fires.
pub async fn run_checks(
    gateway: Arc<Gateway>,
    started: Instant,
    stop: CancellationToken,
) -> CheckLog {
    let mut log = CheckLog::default();
    while !stop.is_cancelled() {
        match check_once(&gateway, SAMPLE_PATIENCE).await {
            Some(violations) => {
                let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                if !violations.is_empty() {
                    tracing::error!(at_ms, ?violations, "the invariant check reports violations");
                }
                log.record(at_ms, violations.clone());
                if !violations.is_empty() {
                    recheck(&gateway, started, &mut log, &violations).await;
                }
            }
            None => log.unanswered += 1,
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
    log
}

/// Samples the check again at once after `first` reported violations, and notes which
/// vanished.
async fn recheck(
    gateway: &Gateway,
    started: Instant,
    log: &mut CheckLog,
    first: &[(String, String)],
) {
    let Some(again) = check_once(gateway, SAMPLE_PATIENCE).await else {
        log.unanswered += 1;
        return;
    };
    let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    log.mark_vanished(first, &again);
    log.record(at_ms, again);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_seen_twice_is_one_with_two_samples() {
        let mut log = CheckLog::default();
        let v = || {
            (
                "w1".to_owned(),
                "free (1) + owned (0) != total (2)".to_owned(),
            )
        };
        log.record(100, []);
        log.record(200, [v()]);
        log.record(
            300,
            [
                v(),
                ("c1".to_owned(), "owned by 2 workers: a, b".to_owned()),
            ],
        );
        assert_eq!(log.samples, 3);
        assert_eq!(log.violations.len(), 2);
        assert_eq!(log.violations[0].first_at_ms, 200);
        assert_eq!(log.violations[0].last_at_ms, 300);
        assert_eq!(log.violations[0].samples, 2);
        assert_eq!(log.violations[1].subject, "c1");
        log.mark_vanished(&[v()], &[]);
        assert_eq!(log.violations[0].vanished_on_recheck, 1);
        assert_eq!(log.violations[1].vanished_on_recheck, 0);
    }
}
