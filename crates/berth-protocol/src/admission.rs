//! Admission: a submit is refused (nothing written) when no worker or pool could ever run
//! one of its requests, judged against the engine's worker cache as published
//! ([`berth_engine::cache::FleetView`]), at most [`crate::ProtocolConfig::fleet_max_age`] old.
//! A request that exists already is a duplicate, whatever the fleet.

use crate::{Protocol, ProtocolError};
use berth_core::{ContainerRequest, UnplacedReason};
use berth_store::{ContainerState, SubmitOutcome};

impl Protocol {
    /// Admits `requests` (see [`Protocol::admit`]) and submits the fresh ones in one store
    /// operation, all or none. Returns each request's outcome, in order.
    pub async fn submit(
        &self,
        requests: Vec<ContainerRequest>,
    ) -> Result<Vec<SubmitOutcome>, ProtocolError> {
        let existing = self.admit(&requests).await?;
        let fresh: Vec<ContainerRequest> = requests
            .into_iter()
            .zip(&existing)
            .filter(|(_, existing)| existing.is_none())
            .map(|(request, _)| request)
            .collect();
        let mut submitted = self.submit_fresh(&fresh).await?.into_iter();
        let outcomes = existing
            .into_iter()
            .map(|existing| match existing {
                Some(state) => Some(SubmitOutcome::Duplicate(state)),
                None => submitted.next(),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ProtocolError::Inconsistent("a submitted container got no outcome".into())
            })?;
        outcomes.iter().for_each(count);
        Ok(outcomes)
    }

    /// The admission decision: [`ProtocolError::Unplaceable`] for the first request no
    /// worker or pool could ever run (unless it exists already); otherwise, for each
    /// request, the state of the existing container of its id among those, `None` for the
    /// others (they may exist too: the store's submit tells).
    pub async fn admit(
        &self,
        requests: &[ContainerRequest],
    ) -> Result<Vec<Option<ContainerState>>, ProtocolError> {
        let fleet = self
            .engine
            .fleet()
            .snapshot(self.config.fleet_max_age)
            .await?;
        let plan = berth_core::plan(&fleet, requests);
        let mut existing = vec![None; requests.len()];
        for unplaced in plan.unplaced.into_iter().filter(|u| permanent(&u.reason)) {
            if let Some(record) = self.store.container(&unplaced.container).await? {
                existing[unplaced.request] = Some(record.state);
                continue;
            }
            metrics::counter!("berth_api_submits_total", "outcome" => "unplaceable").increment(1);
            return Err(ProtocolError::Unplaceable {
                index: unplaced.request,
                container: unplaced.container,
                reason: unplaced.reason,
            });
        }
        self.admit_quotas(requests, &mut existing).await?;
        Ok(existing)
    }

    /// Refuses the first request that its tenant's quota could never admit on its own
    /// (unless the container exists already), as [`ProtocolError::Unplaceable`]; fills in
    /// `existing` for those that do exist.
    async fn admit_quotas(
        &self,
        requests: &[ContainerRequest],
        existing: &mut [Option<ContainerState>],
    ) -> Result<(), ProtocolError> {
        let mut policies = self.policies.lock().await;
        policies.refresh(&*self.store).await;
        for (index, request) in requests.iter().enumerate() {
            let Some(tenant) = policies.tenant(&request.tenant) else {
                continue;
            };
            let Some(exceeded) = tenant.quota.never_admits(request) else {
                continue;
            };
            if existing[index].is_some() {
                continue;
            }
            if let Some(record) = self.store.container(&request.id).await? {
                existing[index] = Some(record.state);
                continue;
            }
            metrics::counter!("berth_api_submits_total", "outcome" => "over_quota").increment(1);
            return Err(ProtocolError::Unplaceable {
                index,
                container: request.id.clone(),
                reason: UnplacedReason::NeverWithinQuota(exceeded.to_string()),
            });
        }
        Ok(())
    }

    /// Submits `fresh` to the store (nothing if it is empty), one outcome per request.
    async fn submit_fresh(
        &self,
        fresh: &[ContainerRequest],
    ) -> Result<Vec<SubmitOutcome>, ProtocolError> {
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self.store.submit(fresh).await?;
        if outcomes.len() != fresh.len() {
            return Err(ProtocolError::Inconsistent(format!(
                "the store answered {} outcomes for {} requests",
                outcomes.len(),
                fresh.len()
            )));
        }
        Ok(outcomes)
    }
}

/// True for the reasons no change in free capacity can cure.
fn permanent(reason: &UnplacedReason) -> bool {
    matches!(
        reason,
        UnplacedReason::NeverFits | UnplacedReason::NoMatchingPool | UnplacedReason::Invalid(_)
    )
}

/// Counts one submit's outcome in the metrics.
fn count(outcome: &SubmitOutcome) {
    let label = match outcome {
        SubmitOutcome::Accepted => "accepted",
        SubmitOutcome::Duplicate(_) => "duplicate",
    };
    metrics::counter!("berth_api_submits_total", "outcome" => label).increment(1);
}
