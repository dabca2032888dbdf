//! The engine's clock: wall-clock milliseconds that advance with tokio's clock, so tests can
//! pause and advance time while timestamps stay comparable with the store's.

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, advancing with tokio's (pausable) clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: u64,
    base: Instant,
}

impl Clock {
    /// A clock that reads the system time now and advances with tokio's clock from here.
    pub fn new() -> Clock {
        Clock {
            base_ms: berth_store::now_ms(),
            base: Instant::now(),
        }
    }

    /// The current time in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.base_ms.saturating_add(millis(self.base.elapsed()))
    }
}

/// `duration` in whole ms, saturating at `u64::MAX`.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
