//! Tickets: what a submitter holds until its request is placed or has failed.

use berth_core::{ContainerId, WorkerId};
use berth_store::{ContainerState, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Where a request ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reserved on a worker.
    Placed {
        /// The worker.
        worker: WorkerId,
    },
    /// It will not be placed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// How often a ticket also checks the store, to learn of placements made by other replicas.
const RECHECK: Duration = Duration::from_millis(250);

/// Submitters waiting for outcomes decided by one engine replica, by container.
pub(crate) type Waiters = parking_lot::Mutex<HashMap<ContainerId, Vec<oneshot::Sender<Outcome>>>>;

/// A claim on the outcome of one submitted request. Dropping it withdraws its waiter, so an
/// outcome decided by another replica leaves nothing behind in this one.
pub struct Ticket {
    pub(crate) id: ContainerId,
    pub(crate) local: oneshot::Receiver<Outcome>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) waiters: Arc<Waiters>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.local.close();
        let mut waiters = self.waiters.lock();
        if let Some(senders) = waiters.get_mut(&self.id) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiters.remove(&self.id);
            }
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// The request's id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// Waits until the request is placed or has failed. Outcomes decided by this replica
    /// arrive at once; those decided by another replica are read from the store.
    pub async fn outcome(mut self) -> Result<Outcome, berth_store::StoreError> {
        loop {
            match tokio::time::timeout(RECHECK, &mut self.local).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(_closed)) => tokio::time::sleep(RECHECK).await,
                Err(_elapsed) => {}
            }
            if let Some(outcome) = self.recorded().await? {
                return Ok(outcome);
            }
        }
    }

    async fn recorded(&self) -> Result<Option<Outcome>, berth_store::StoreError> {
        let Some(record) = self.store.container(&self.id).await? else {
            return Ok(None);
        };
        Ok(match (record.state, record.worker) {
            (ContainerState::Pending, _) => None,
            (ContainerState::Failed | ContainerState::Lost, _) | (_, None) => {
                Some(Outcome::Failed {
                    reason: record.reason.unwrap_or_else(|| record.state.to_string()),
                })
            }
            (_, Some(worker)) => Some(Outcome::Placed { worker }),
        })
    }
}
