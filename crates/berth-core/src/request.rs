//! Container requests: what a client asks the scheduler to place.

use crate::fallback::FallbackStep;
use crate::gpu_fit::GpuAsk;
use crate::{ContainerId, GPU_MILLI, GpuPreference, PoolName, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the worker needs to run the container. The scheduler carries it and never reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The container image, if the runtime uses images.
    #[serde(default)]
    pub image: Option<String>,
    /// The command and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: delivered only to the worker that runs the container,
    /// never shown by the API, and redacted wherever the payload is printed.
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    pub secret_env: SecretEnv,
}

/// Secret environment variables, by name. Serialized as a plain map (to the store and to
/// the worker that runs the container); its `Debug` shows the names only, so a logged
/// payload or request never carries a value.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(pub BTreeMap<String, String>);

impl SecretEnv {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variables, names and values.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<redacted>")))
            .finish()
    }
}

/// A request to run one container somewhere in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRequest {
    /// The container's id, supplied by the client or generated at intake.
    pub id: ContainerId,
    /// Who asked; carried for accounting.
    pub tenant: String,
    /// CPU, memory and the number of whole GPUs.
    pub resources: Resources,
    /// A fraction of one GPU instead of whole GPUs, in milli-GPUs (1 to 999; `A10G:0.25`
    /// is 250). It always lives on one device. `None` with whole GPUs or none.
    #[serde(default)]
    pub gpu_fraction_milli: Option<u32>,
    /// Which GPU types are acceptable, in order of preference. Ignored without GPUs.
    #[serde(default)]
    pub gpu: GpuPreference,
    /// Run only on workers of this pool.
    #[serde(default)]
    pub pool_selector: Option<PoolName>,
    /// Accepts interruption: may run on preemptible workers, and may be preempted for a
    /// request of higher priority ([`crate::preempt`]).
    #[serde(default)]
    pub preemptible: bool,
    /// Higher runs first; a request that finds no room may preempt preemptible containers
    /// of lower priority.
    #[serde(default)]
    pub priority: i32,
    /// When the request was accepted, in milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// What to run; opaque to the scheduler.
    #[serde(default)]
    pub payload: Payload,
    /// The fallback chain: pools or GPU types to accept next, each after a wait since
    /// submission, in order (see [`crate::fallback`]). Empty (and absent in records stored
    /// before it existed): only the choice above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<FallbackStep>,
    /// How many times the container is put back in the intake after it ends involuntarily
    /// (its worker died: see [`crate::lifecycle::end_or_retry`]) instead of ending. 0 (and
    /// absent in records stored before it existed): never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_retries: u32,
}

/// The most retries a request may ask for: a container that keeps killing its workers
/// should not keep taking capacity for ever.
pub const MAX_RETRIES: u32 = 100;

/// The largest CPU request accepted: 1,048,576 cores.
pub const MAX_CPU_MILLICORES: u64 = 1 << 30;
/// The largest memory request accepted: 1 EiB in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 40;
/// The largest GPU request accepted.
pub const MAX_GPU_COUNT: u32 = 1 << 16;

/// Why a request cannot be accepted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// CPU or memory was zero.
    #[error(
        "field {field}: a container must request some CPU and memory (got 0); ask for at least 1m CPU and 1Mi memory"
    )]
    ZeroSized {
        /// The field that was zero.
        field: &'static str,
    },
    /// A quantity exceeded the sanity limit.
    #[error("field {field}: {value} is above the limit of {limit}")]
    TooLarge {
        /// The field that was too large.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// GPU types were listed for a request with no GPUs.
    #[error(
        "field gpu: GPU types are listed but gpu_count is 0; set gpu_count or drop the GPU types"
    )]
    TypesWithoutCount,
    /// An empty list of GPU types was given with a GPU count.
    #[error("field gpu: the list of GPU types is empty; list at least one type, or use any")]
    EmptyTypeList,
    /// A GPU fraction outside 1 to 999 milli-GPUs.
    #[error(
        "field gpu: a fraction of a GPU must be 0.001 to 0.999 (1 to 999 milli-GPUs; got {0}); ask for whole GPUs with a count"
    )]
    BadFraction(u32),
    /// Both whole GPUs and a fraction.
    #[error(
        "field gpu: a request asks for whole GPUs or for a fraction of one, not both (got {count} and {milli} milli-GPUs)"
    )]
    WholeAndFraction {
        /// The whole GPUs asked for.
        count: u32,
        /// The fraction asked for.
        milli: u32,
    },
    /// The fallback chain is longer than the limit.
    #[error("field fallback: {count} steps listed, at most {limit} are allowed")]
    TooManyFallbackSteps {
        /// The steps listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A fallback step's wait is not later than the step before it.
    #[error(
        "field fallback[{index}]: its wait must be longer than the step before it (steps are listed in the order they become due)"
    )]
    FallbackWaitsNotIncreasing {
        /// The step's position in the chain.
        index: usize,
    },
    /// A fallback step names neither a pool nor GPU types.
    #[error("field fallback[{index}]: a step must name a pool or GPU types to try")]
    EmptyFallbackStep {
        /// The step's position in the chain.
        index: usize,
    },
    /// A fallback step lists GPU types for a request with no GPUs.
    #[error("field fallback[{index}]: the step lists GPU types but the request asks for no GPUs")]
    FallbackGpuWithoutGpus {
        /// The step's position in the chain.
        index: usize,
    },
}

impl ContainerRequest {
    /// Checks the request's quantities. Ids are valid by construction.
    pub fn validate(&self) -> Result<(), RequestError> {
        let r = &self.resources;
        if r.cpu_millicores == 0 {
            return Err(RequestError::ZeroSized {
                field: "cpu_millicores",
            });
        }
        if r.memory_mib == 0 {
            return Err(RequestError::ZeroSized {
                field: "memory_mib",
            });
        }
        check_limit("cpu_millicores", r.cpu_millicores, MAX_CPU_MILLICORES)?;
        check_limit("memory_mib", r.memory_mib, MAX_MEMORY_MIB)?;
        check_limit("gpu_count", r.gpu_count.into(), MAX_GPU_COUNT.into())?;
        check_limit("max_retries", self.max_retries.into(), MAX_RETRIES.into())?;
        if let Some(milli) = self.gpu_fraction_milli {
            if !(1..GPU_MILLI).contains(&milli) {
                return Err(RequestError::BadFraction(milli));
            }
            if r.gpu_count > 0 {
                return Err(RequestError::WholeAndFraction {
                    count: r.gpu_count,
                    milli,
                });
            }
        }
        match (&self.gpu, self.wants_gpus()) {
            (GpuPreference::Types(types), false) if !types.is_empty() => {
                return Err(RequestError::TypesWithoutCount);
            }
            (GpuPreference::Types(types), true) if types.is_empty() => {
                return Err(RequestError::EmptyTypeList);
            }
            _ => {}
        }
        crate::fallback::validate(self)
    }

    /// True when the request asks for GPUs: whole ones or a fraction of one.
    pub fn wants_gpus(&self) -> bool {
        self.gpu_ask() != GpuAsk::None
    }

    /// What the request asks of GPU devices.
    pub fn gpu_ask(&self) -> GpuAsk {
        match (self.resources.gpu_count, self.gpu_fraction_milli) {
            (0, Some(milli)) => GpuAsk::Fraction(milli),
            (0, None) => GpuAsk::None,
            (count, _) => GpuAsk::Whole(count),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn check_limit(field: &'static str, value: u64, limit: u64) -> Result<(), RequestError> {
    if value > limit {
        return Err(RequestError::TooLarge {
            field,
            value,
            limit,
        });
    }
    Ok(())
}
