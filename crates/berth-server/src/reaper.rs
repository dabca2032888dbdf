//! The reaper's timer: every `reaper_every`, one pass of the protocol's reaper
//! ([`berth_protocol::Protocol::reap`]), until the server shuts down.

use crate::state::AppState;
use berth_protocol::{ProtocolError, ReapReport};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One reaper pass at `now_ms` (ms since the Unix epoch, the engine's clock): see
/// [`berth_protocol::Protocol::reap`].
pub async fn reap_once(state: &AppState, now_ms: u64) -> Result<ReapReport, ProtocolError> {
    state.protocol.reap(now_ms).await
}

/// Runs [`reap_once`] every `reaper_every` until the server shuts down.
pub fn spawn_reaper(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = state.config.reaper_every.max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match reap_once(&state, state.now_ms()).await {
                Ok(report) if report != ReapReport::default() => {
                    tracing::info!(?report, "reaper tick");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reaper tick failed"),
            }
        }
    })
}
