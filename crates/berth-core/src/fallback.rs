//! Fallback chains (beta9's GPU failover chains): what a request may also accept once it
//! has waited long enough.
//!
//! A request lists steps in order, each with a wait since its submission and what it adds:
//! another pool (it replaces the pool selector) and/or other GPU types (they replace the
//! preference list). A pool may list steps too ([`crate::Pool::fallback`]): they apply to
//! every request that selects that pool, after the request's own steps of the same wait.
//! The request's *effective* choices at a wait are its original choice, then every step
//! whose wait has passed, in that order; the planner tries them in that order, so a worker
//! of a later step is only used when no worker of an earlier one has room.
//!
//! Everything here is pure: the caller says how long the request has waited.

use crate::{ContainerRequest, GpuPreference, GpuType, Pool, PoolName, RequestError};
use serde::{Deserialize, Serialize};

/// The most steps a request may list.
pub const MAX_FALLBACK_STEPS: usize = 8;

/// One step of a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackStep {
    /// How long after the request's submission the step becomes acceptable, in ms.
    pub after_ms: u64,
    /// The pool to try: replaces the request's pool selector. `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolName>,
    /// The GPU types to try, in order of preference: they replace the request's list.
    /// Empty keeps it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<GpuType>,
}

/// One acceptable way to place a request: a pool selector and a GPU preference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Choice {
    /// The pool the request must go to, if any.
    pub pool_selector: Option<PoolName>,
    /// The GPU types acceptable, in order of preference.
    pub gpu: GpuPreference,
}

impl Choice {
    /// The request's own choice, before any step.
    pub fn original(request: &ContainerRequest) -> Choice {
        Choice {
            pool_selector: request.pool_selector.clone(),
            gpu: request.gpu.clone(),
        }
    }

    /// The choice a step makes of the request's own: what it names replaces the original.
    fn of_step(request: &ContainerRequest, step: &FallbackStep) -> Choice {
        Choice {
            pool_selector: step.pool.clone().or_else(|| request.pool_selector.clone()),
            gpu: if step.gpu.is_empty() {
                request.gpu.clone()
            } else {
                GpuPreference::Types(step.gpu.clone())
            },
        }
    }

    /// The request as this choice would have it: selector and GPU types replaced, and no
    /// chain of its own, so every placement rule applies to it unchanged.
    pub fn apply(&self, request: &ContainerRequest) -> ContainerRequest {
        ContainerRequest {
            pool_selector: self.pool_selector.clone(),
            gpu: self.gpu.clone(),
            fallback: Vec::new(),
            ..request.clone()
        }
    }
}

/// Every step of the request's chain, in the order they become due: its own steps, then
/// the steps of the pool it selects (a stable sort by wait keeps the request's own first
/// among equal waits).
pub fn chain<'a>(request: &'a ContainerRequest, pools: &'a [Pool]) -> Vec<&'a FallbackStep> {
    let selected = pools
        .iter()
        .filter(|pool| request.pool_selector.as_ref() == Some(&pool.attributes.pool))
        .flat_map(|pool| &pool.fallback);
    let mut steps: Vec<&FallbackStep> = request.fallback.iter().chain(selected).collect();
    steps.sort_by_key(|step| step.after_ms);
    steps
}

/// True when the request has a chain at all (its own steps, or its selected pool's): the
/// planner's fast path skips the rest for the many requests without one.
pub fn has_chain(request: &ContainerRequest, pools: &[Pool]) -> bool {
    !request.fallback.is_empty()
        || request.pool_selector.as_ref().is_some_and(|selected| {
            pools
                .iter()
                .any(|pool| pool.attributes.pool == *selected && !pool.fallback.is_empty())
        })
}

/// The request's effective choices after it has waited `waited_ms`: its original choice,
/// then each step whose wait has passed, in preference order, without repeats.
pub fn effective(request: &ContainerRequest, pools: &[Pool], waited_ms: u64) -> Vec<Choice> {
    choices(request, pools, Some(waited_ms))
}

/// Every choice the request may ever have: [`effective`] once every step is due.
pub fn ever(request: &ContainerRequest, pools: &[Pool]) -> Vec<Choice> {
    choices(request, pools, None)
}

fn choices(request: &ContainerRequest, pools: &[Pool], waited_ms: Option<u64>) -> Vec<Choice> {
    let mut out = vec![Choice::original(request)];
    let due = |step: &&FallbackStep| waited_ms.is_none_or(|waited| step.after_ms <= waited);
    for step in chain(request, pools).into_iter().filter(due) {
        let choice = Choice::of_step(request, step);
        // A step that repeats an earlier choice adds nothing to try.
        if !out.contains(&choice) {
            out.push(choice);
        }
    }
    out
}

/// When (ms since the epoch) the request's next step becomes due, seen at `now_ms`:
/// `None` when no step is still to come.
pub fn next_step_due_ms(request: &ContainerRequest, pools: &[Pool], now_ms: u64) -> Option<u64> {
    let waited = now_ms.saturating_sub(request.submitted_at_ms);
    chain(request, pools)
        .into_iter()
        .map(|step| step.after_ms)
        .find(|&after| after > waited)
        .map(|after| request.submitted_at_ms.saturating_add(after))
}

/// Checks a request's own steps: at most [`MAX_FALLBACK_STEPS`], waits strictly
/// increasing, each naming a pool or GPU types, and GPU types only for a request that asks
/// for GPUs. (Pool and GPU type names are valid by construction.)
pub fn validate(request: &ContainerRequest) -> Result<(), RequestError> {
    let steps = &request.fallback;
    if steps.len() > MAX_FALLBACK_STEPS {
        return Err(RequestError::TooManyFallbackSteps {
            count: steps.len(),
            limit: MAX_FALLBACK_STEPS,
        });
    }
    let mut previous: Option<u64> = None;
    for (index, step) in steps.iter().enumerate() {
        if previous.is_some_and(|before| step.after_ms <= before) {
            return Err(RequestError::FallbackWaitsNotIncreasing { index });
        }
        previous = Some(step.after_ms);
        if step.pool.is_none() && step.gpu.is_empty() {
            return Err(RequestError::EmptyFallbackStep { index });
        }
        if !step.gpu.is_empty() && !request.wants_gpus() {
            return Err(RequestError::FallbackGpuWithoutGpus { index });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::{ContainerId, Payload, PoolAttributes, Resources};

    fn request(fallback: Vec<FallbackStep>) -> ContainerRequest {
        ContainerRequest {
            id: ContainerId::new("c").unwrap(),
            tenant: "t".into(),
            resources: Resources::new(1000, 1024, 1),
            gpu_fraction_milli: None,
            gpu: GpuPreference::Types(vec![GpuType::A100_80]),
            pool_selector: Some(PoolName::new("a100").unwrap()),
            preemptible: false,
            priority: 0,
            submitted_at_ms: 1_000,
            payload: Payload::default(),
            fallback,
            max_retries: 0,
        }
    }

    fn gpu_step(after_ms: u64, ty: GpuType) -> FallbackStep {
        FallbackStep {
            after_ms,
            pool: None,
            gpu: vec![ty],
        }
    }

    fn pool_step(after_ms: u64, pool: &str) -> FallbackStep {
        FallbackStep {
            after_ms,
            pool: Some(PoolName::new(pool).unwrap()),
            gpu: Vec::new(),
        }
    }

    fn pool(name: &str, fallback: Vec<FallbackStep>) -> Pool {
        Pool {
            attributes: PoolAttributes::plain(PoolName::new(name).unwrap()),
            gpu_type: None,
            worker_size: Resources::new(1000, 1024, 0),
            fallback,
        }
    }

    #[test]
    fn steps_join_in_order_once_due() {
        let r = request(vec![
            gpu_step(300, GpuType::H100),
            gpu_step(600, GpuType::L4),
        ]);
        assert_eq!(effective(&r, &[], 299).len(), 1);
        let at_300 = effective(&r, &[], 300);
        assert_eq!(at_300.len(), 2);
        assert_eq!(at_300[0], Choice::original(&r));
        assert_eq!(at_300[1].gpu, GpuPreference::Types(vec![GpuType::H100]));
        // The step keeps the request's pool selector.
        assert_eq!(at_300[1].pool_selector, r.pool_selector);
        assert_eq!(effective(&r, &[], 10_000).len(), 3);
        assert_eq!(ever(&r, &[]).len(), 3);
    }

    #[test]
    fn the_selected_pool_adds_its_steps() {
        let r = request(vec![gpu_step(500, GpuType::H100)]);
        let pools = [
            pool("a100", vec![pool_step(200, "h100")]),
            pool("h100", vec![]),
        ];
        let choices = effective(&r, &pools, 1_000);
        let selectors: Vec<_> = choices
            .iter()
            .map(|c| c.pool_selector.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(selectors, ["a100", "h100", "a100"]);
        assert_eq!(next_step_due_ms(&r, &pools, 1_000), Some(1_200));
        assert_eq!(next_step_due_ms(&r, &pools, 1_200), Some(1_500));
        assert_eq!(next_step_due_ms(&r, &pools, 1_500), None);
    }

    #[test]
    fn other_pools_steps_do_not_apply() {
        let r = request(Vec::new());
        let pools = [pool("h100", vec![pool_step(0, "l4")])];
        assert_eq!(effective(&r, &pools, u64::MAX).len(), 1);
        assert_eq!(next_step_due_ms(&r, &pools, 0), None);
    }

    #[test]
    fn records_stored_before_chains_still_read() {
        let r = request(Vec::new());
        let json = serde_json::to_string(&r).unwrap();
        // Stored without the field, as records written before it existed.
        assert!(!json.contains("fallback"));
        let back: ContainerRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let chained = request(vec![pool_step(30_000, "h100")]);
        let json = serde_json::to_string(&chained).unwrap();
        assert_eq!(
            serde_json::from_str::<ContainerRequest>(&json).unwrap(),
            chained
        );
    }

    #[test]
    fn validation_names_the_step() {
        let mut r = request(vec![
            gpu_step(300, GpuType::H100),
            gpu_step(300, GpuType::L4),
        ]);
        assert_eq!(
            validate(&r),
            Err(RequestError::FallbackWaitsNotIncreasing { index: 1 })
        );
        r.fallback = vec![FallbackStep {
            after_ms: 1,
            pool: None,
            gpu: Vec::new(),
        }];
        assert_eq!(
            validate(&r),
            Err(RequestError::EmptyFallbackStep { index: 0 })
        );
        r.fallback = (0..9).map(|i| gpu_step(i, GpuType::H100)).collect();
        assert!(matches!(
            validate(&r),
            Err(RequestError::TooManyFallbackSteps { count: 9, .. })
        ));
        r.fallback = vec![gpu_step(1, GpuType::H100)];
        r.resources.gpu_count = 0;
        r.gpu = GpuPreference::Any;
        assert_eq!(
            validate(&r),
            Err(RequestError::FallbackGpuWithoutGpus { index: 0 })
        );
        r.fallback = vec![pool_step(1, "cpu")];
        assert_eq!(validate(&r), Ok(()));
    }
}
