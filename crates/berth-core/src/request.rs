//! Container requests: what a client asks the scheduler to place.

use crate::{ContainerId, GpuPreference, PoolName, Resources};
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
}

/// A request to run one container somewhere in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRequest {
    /// The container's id, supplied by the client or generated at intake.
    pub id: ContainerId,
    /// Who asked; carried for accounting.
    pub tenant: String,
    /// CPU, memory and the number of GPUs.
    pub resources: Resources,
    /// Which GPU types are acceptable, in order of preference. Ignored without GPUs.
    #[serde(default)]
    pub gpu: GpuPreference,
    /// Run only on workers of this pool.
    #[serde(default)]
    pub pool_selector: Option<PoolName>,
    /// May run on preemptible workers.
    #[serde(default)]
    pub preemptible: bool,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// When the request was accepted, in milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// What to run; opaque to the scheduler.
    #[serde(default)]
    pub payload: Payload,
}

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
        match (&self.gpu, r.gpu_count) {
            (GpuPreference::Types(types), 0) if !types.is_empty() => {
                Err(RequestError::TypesWithoutCount)
            }
            (GpuPreference::Types(types), n) if n > 0 && types.is_empty() => {
                Err(RequestError::EmptyTypeList)
            }
            _ => Ok(()),
        }
    }

    /// True when the request asks for at least one GPU.
    pub fn wants_gpus(&self) -> bool {
        self.resources.gpu_count > 0
    }
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
