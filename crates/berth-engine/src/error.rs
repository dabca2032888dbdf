//! The engine's error type.

/// What can go wrong when submitting to or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed; nothing was written.
    #[error("invalid request {id}: {source}")]
    Invalid {
        /// The request's id.
        id: String,
        /// What is wrong with it.
        source: berth_core::RequestError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    /// The engine was shut down.
    #[error("the engine is shut down")]
    Shutdown,
}
