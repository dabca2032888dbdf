//! Retries of calls to the server: capped exponential backoff with jitter, stopped by a
//! cancellation token.

use crate::control::ControlError;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How calls to the server are retried while it is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay; delays double up to it.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// The delays of one series of retries.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            next: policy.initial,
        }
    }

    /// The next delay, with up to 20% of jitter either way.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next.min(self.policy.max);
        self.next = base.saturating_mul(2).min(self.policy.max);
        base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
    }

    /// Starts again from the first delay.
    pub(crate) fn reset(&mut self) {
        self.next = self.policy.initial;
    }

    /// Sleeps the next delay; false if `stop` fired first.
    pub(crate) async fn sleep(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Why [`retry`] gave up.
#[derive(Debug)]
pub(crate) enum GaveUp {
    /// The server refused in a way retrying cannot fix.
    Refused(ControlError),
    /// The stop token fired.
    Stopped,
}

/// Calls `op` until it succeeds, fails for good, or `stop` fires. Unavailable servers are
/// retried without limit.
pub(crate) async fn retry<T, F, Fut>(
    what: &str,
    policy: RetryPolicy,
    stop: &CancellationToken,
    mut op: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ControlError>>,
{
    let mut backoff = Backoff::new(policy);
    for attempt in 1u64.. {
        let result = tokio::select! {
            () = stop.cancelled() => return Err(GaveUp::Stopped),
            result = op() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() => {
                crate::metrics::server_error();
                tracing::warn!(%what, attempt, error = %err, "server call failed; retrying");
            }
            Err(err) => return Err(GaveUp::Refused(err)),
        }
        if !backoff.sleep(stop).await {
            return Err(GaveUp::Stopped);
        }
    }
    Err(GaveUp::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        let mut backoff = Backoff::new(policy);
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let bases = [100, 200, 350, 350, 350];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*delay >= base.mul_f64(0.79) && *delay <= base.mul_f64(1.21));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(121));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_retries_unavailable_and_stops_on_refusal() {
        let stop = CancellationToken::new();
        let mut calls = 0;
        let result: Result<(), GaveUp> = retry("test", RetryPolicy::default(), &stop, || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 | 2 => Err(ControlError::Unavailable("down".into())),
                    _ => Err(ControlError::Conflict("stale".into())),
                }
            }
        })
        .await;
        assert!(matches!(
            result,
            Err(GaveUp::Refused(ControlError::Conflict(_)))
        ));
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_when_told() {
        let stop = CancellationToken::new();
        stop.cancel();
        let result: Result<(), GaveUp> = retry("test", RetryPolicy::default(), &stop, || async {
            Err(ControlError::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(result, Err(GaveUp::Stopped)));
    }
}
