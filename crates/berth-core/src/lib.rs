//! # berth-core
//!
//! The pure placement core of berth: domain types, feasibility, scoring and batch planning.
//! It does no I/O and depends on neither tokio nor redis; plans are values.
//!
//! ## Layout
//! - [`ids`]: validated identifiers (container, worker, pool), safe inside Redis keys.
//! - [`resources`]: CPU millicores, memory MiB and GPU count, with checked arithmetic.
//! - [`gpu`]: GPU types and a request's preference list.
//! - [`device`]: GPU devices and the shares of them containers hold, in milli-GPUs.
//! - [`gpu_fit`]: which devices a request gets on a worker, and the fragmentation measure
//!   of the fragmentation-aware policy.
//! - [`worker`]: workers, their status, pools and placement policies.
//! - [`runtime`]: the name of a worker's container runtime (`process`, `runc`).
//! - [`attributes`]: a worker's static attributes as named text fields, by one table.
//! - [`request`]: container requests and their validation.
//! - [`fallback`]: fallback chains, the pools and GPU types a request accepts after a wait.
//! - [`rules`]: the placement rules, one [`rules::PlacementRule`] each, listed in
//!   [`rules::RULES`].
//! - [`feasibility`]: stage 1, may a request run on a worker (by the rules).
//! - [`scoring`]: stages 2 and 3, the score of a worker for a request and the rendezvous
//!   tie-break.
//! - [`planner`]: stage 4, [`plan()`] a batch against a snapshot.
//! - [`fair`]: the order a batch of several tenants is planned in (weighted dominant
//!   resource fairness).
//! - [`plan`](mod@plan): the plan's types; [`verify_plan`] checks its post-conditions.
//!
//! The shared model every other crate speaks, without depending on a store:
//! - [`record`]: container records, their states and placement attempts.
//! - [`lifecycle`]: the container record's state machine.
//! - [`assignment`]: what a worker is told to run.
//! - [`demand`]: unmet demand per pool.
//! - [`quota`]: tenants' quotas and weights, what a container charges, the hold's judgement.
//! - [`invariants`]: the pure judging part of the invariant check (a dump in, violations
//!   out).

pub mod assignment;
pub mod attributes;
pub mod credential;
pub mod demand;
pub mod device;
pub mod fair;
pub mod fallback;
pub mod feasibility;
pub mod gpu;
pub mod gpu_fit;
pub mod ids;
mod index;
pub mod invariants;
pub mod lifecycle;
pub mod plan;
pub mod planner;
pub mod preempt;
pub mod quota;
pub mod record;
pub mod request;
pub mod resources;
pub mod rules;
pub mod runtime;
pub mod scoring;
mod verify;
pub mod worker;

pub use assignment::Assignment;
pub use credential::{Credential, CredentialError, Role, Token, TokenId};
pub use demand::{PoolDemand, aggregate_demand};
pub use device::{DeviceError, DeviceShare, GPU_MILLI, GpuDevice};
pub use fallback::{Choice, FallbackStep};
pub use gpu::{GpuPreference, GpuType, GpuTypeError};
pub use gpu_fit::GpuAsk;
pub use ids::{ContainerId, IdError, PoolName, TenantName, WorkerId};
pub use invariants::{CheckOptions, Violation};
pub use lifecycle::Transition;
pub use plan::{Placement, Plan, PlanOptions, Snapshot, Unplaced, UnplacedReason, WorkerPlan};
pub use planner::{plan, plan_fair, plan_for_demand, plan_with, planning_order};
pub use quota::{Charge, Quota, Tenant, TenantError, Usage, Verdict};
pub use record::{AttemptId, ContainerRecord, ContainerState, ReclaimOutcome};
pub use request::{ContainerRequest, Payload, RequestError, SecretEnv};
pub use resources::Resources;
pub use runtime::{RuntimeName, RuntimeNameError};
pub use verify::{verify_plan, verify_plan_at};
pub use worker::{
    CpuReserve, CpuReserveError, ImageListError, MAX_IMAGE_REFERENCE, MAX_WORKER_IMAGES,
    PlacementPolicy, Pool, PoolAttributes, Worker, WorkerGpu, WorkerRegistration, WorkerStatus,
    check_images, plausible_image,
};
