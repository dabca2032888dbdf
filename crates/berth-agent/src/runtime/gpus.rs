//! A container's GPUs: the device shares it was assigned, resolved against the worker's
//! devices ([`AssignedGpus`]), and the environment that makes CUDA see exactly those.
//!
//! What is enforced, and what is not:
//! - Under runc a container gets only its devices' nodes (`/dev/nvidia<index>`), so a whole
//!   GPU is enforced by the device cgroup: the others cannot be opened.
//! - The visibility variables ([`ENV_NVIDIA_VISIBLE_DEVICES`], [`ENV_CUDA_VISIBLE_DEVICES`])
//!   are the only fence under the process runtime, and a process may ignore them.
//! - A fraction (a share below [`GPU_MILLI`]) also gets the MPS variables. They are
//!   honoured only when an MPS control daemon runs on the worker; without one, nothing
//!   enforces a fraction's compute share or memory: the container may use the whole device.
//!
//! These variables override whatever the request's environment says for the same names.

use super::StartError;
use berth_core::{DeviceShare, GPU_MILLI, GpuDevice};
use std::collections::BTreeSet;

/// The NVIDIA container toolkit's list of visible devices; `void` for none.
pub const ENV_NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
/// CUDA's list of visible devices (UUIDs or indices); empty for none.
pub const ENV_CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// The container's share of its one device in milli-GPUs, set for a fraction only.
pub const ENV_GPU_MILLI: &str = "BERTH_GPU_MILLI";
/// The percentage of the device's threads an MPS client may use, set for a fraction.
pub const ENV_MPS_THREAD_PERCENTAGE: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
/// The device memory an MPS client may pin, set for a fraction of a device whose memory is
/// known.
pub const ENV_MPS_MEMORY_LIMIT: &str = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";

/// One device a container holds, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedGpu {
    /// The worker's device.
    pub device: GpuDevice,
    /// The container's share of it, 1 to [`GPU_MILLI`].
    pub milli: u32,
}

impl AssignedGpu {
    /// How CUDA and the NVIDIA toolkit name it: its UUID where known, which survives any
    /// renumbering, else its index.
    pub fn id(&self) -> String {
        self.device
            .uuid
            .clone()
            .unwrap_or_else(|| self.device.index.to_string())
    }
}

/// The devices one container holds, checked against the worker's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignedGpus {
    gpus: Vec<AssignedGpu>,
}

impl AssignedGpus {
    /// Resolves `shares` against the worker's `devices`. Refused: a share of 0 or above a
    /// whole GPU, a device the worker does not have, a device listed twice, and a fraction
    /// together with other shares (a fraction is always of exactly one device).
    pub fn resolve(
        shares: &[DeviceShare],
        devices: &[GpuDevice],
    ) -> Result<AssignedGpus, StartError> {
        let mut seen = BTreeSet::new();
        let mut gpus = Vec::with_capacity(shares.len());
        for share in shares {
            share.validate().map_err(|err| gpu_error(err.to_string()))?;
            if !seen.insert(share.index) {
                return Err(gpu_error(format!(
                    "device {} is assigned twice",
                    share.index
                )));
            }
            let device = devices
                .iter()
                .find(|device| device.index == share.index)
                .ok_or_else(|| unknown_device(share.index, devices))?;
            if !device.healthy {
                tracing::warn!(
                    index = device.index,
                    "a container is assigned an unhealthy GPU"
                );
            }
            gpus.push(AssignedGpu {
                device: device.clone(),
                milli: share.milli,
            });
        }
        if gpus.len() > 1 && gpus.iter().any(|gpu| gpu.milli < GPU_MILLI) {
            return Err(gpu_error(format!(
                "shares {} mix a fraction with other devices; a fraction is of one device only",
                DeviceShare::format_list(shares)
            )));
        }
        Ok(AssignedGpus { gpus })
    }

    /// The devices, in the order they were assigned.
    pub fn gpus(&self) -> &[AssignedGpu] {
        &self.gpus
    }

    /// True when the container has no GPU.
    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty()
    }

    /// The devices' indices on the worker.
    pub fn indices(&self) -> Vec<u32> {
        self.gpus.iter().map(|gpu| gpu.device.index).collect()
    }

    /// The one device held in part, if the container holds a fraction.
    fn fraction(&self) -> Option<&AssignedGpu> {
        match self.gpus.as_slice() {
            [gpu] if gpu.milli < GPU_MILLI => Some(gpu),
            _ => None,
        }
    }

    /// The environment variables that give the container exactly its devices (see the
    /// [module docs](self)); they go after the request's own, so they win.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        if self.is_empty() {
            // `void`: the toolkit mounts no device; empty: CUDA enumerates none.
            return vec![
                (ENV_NVIDIA_VISIBLE_DEVICES, "void".to_owned()),
                (ENV_CUDA_VISIBLE_DEVICES, String::new()),
            ];
        }
        let ids = self
            .gpus
            .iter()
            .map(AssignedGpu::id)
            .collect::<Vec<_>>()
            .join(",");
        let mut env = vec![
            (ENV_NVIDIA_VISIBLE_DEVICES, ids.clone()),
            (ENV_CUDA_VISIBLE_DEVICES, ids),
        ];
        if let Some(gpu) = self.fraction() {
            env.extend(fraction_env(gpu));
        }
        env
    }
}

/// The share and the MPS limits of a fraction.
fn fraction_env(gpu: &AssignedGpu) -> Vec<(&'static str, String)> {
    let percentage = (gpu.milli / 10).max(1);
    let mut env = vec![
        (ENV_GPU_MILLI, gpu.milli.to_string()),
        (ENV_MPS_THREAD_PERCENTAGE, percentage.to_string()),
    ];
    if gpu.device.memory_mib > 0 {
        let limit = gpu.device.memory_mib * u64::from(gpu.milli) / u64::from(GPU_MILLI);
        // Without a UUID, the device is named as the container's CUDA numbers it: it sees
        // only this one device, as device 0, whatever its index on the worker.
        let id = gpu.device.uuid.clone().unwrap_or_else(|| "0".to_owned());
        env.push((ENV_MPS_MEMORY_LIMIT, format!("{id}={limit}M")));
    }
    env
}

fn unknown_device(index: u32, devices: &[GpuDevice]) -> StartError {
    let have: Vec<String> = devices.iter().map(|d| d.index.to_string()).collect();
    let have = if have.is_empty() {
        "none".to_owned()
    } else {
        have.join(", ")
    };
    gpu_error(format!(
        "device {index} is assigned, but this worker's GPU devices are: {have}"
    ))
}

fn gpu_error(why: String) -> StartError {
    StartError::Gpus { why }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::GpuType;
    use std::collections::BTreeMap;

    fn devices() -> Vec<GpuDevice> {
        vec![
            GpuDevice {
                index: 0,
                gpu_type: GpuType::A10G,
                memory_mib: 24_000,
                uuid: Some("GPU-aaa".into()),
                healthy: true,
            },
            GpuDevice {
                index: 1,
                gpu_type: GpuType::A10G,
                memory_mib: 0,
                uuid: None,
                healthy: true,
            },
        ]
    }

    fn env(shares: &[DeviceShare]) -> BTreeMap<&'static str, String> {
        AssignedGpus::resolve(shares, &devices())
            .unwrap()
            .env()
            .into_iter()
            .collect()
    }

    #[test]
    fn no_share_sees_no_device() {
        let env = env(&[]);
        assert_eq!(env[ENV_NVIDIA_VISIBLE_DEVICES], "void");
        assert_eq!(env[ENV_CUDA_VISIBLE_DEVICES], "");
        assert_eq!(env.len(), 2, "{env:?}");
    }

    #[test]
    fn whole_devices_are_named_by_uuid_else_index() {
        let env = env(&[DeviceShare::whole(1), DeviceShare::whole(0)]);
        assert_eq!(env[ENV_CUDA_VISIBLE_DEVICES], "1,GPU-aaa");
        assert_eq!(env[ENV_NVIDIA_VISIBLE_DEVICES], "1,GPU-aaa");
        assert!(!env.contains_key(ENV_GPU_MILLI), "{env:?}");
        assert!(!env.contains_key(ENV_MPS_THREAD_PERCENTAGE), "{env:?}");
    }

    #[test]
    fn a_fraction_gets_its_share_and_mps_limits() {
        let env = env(&[DeviceShare {
            index: 0,
            milli: 250,
        }]);
        assert_eq!(env[ENV_CUDA_VISIBLE_DEVICES], "GPU-aaa");
        assert_eq!(env[ENV_GPU_MILLI], "250");
        assert_eq!(env[ENV_MPS_THREAD_PERCENTAGE], "25");
        assert_eq!(env[ENV_MPS_MEMORY_LIMIT], "GPU-aaa=6000M");
        // Unknown memory: no memory limit; a tiny share still gets 1 % of the threads.
        let env = super::tests::env(&[DeviceShare { index: 1, milli: 5 }]);
        assert_eq!(env[ENV_CUDA_VISIBLE_DEVICES], "1");
        assert_eq!(env[ENV_MPS_THREAD_PERCENTAGE], "1");
        assert!(!env.contains_key(ENV_MPS_MEMORY_LIMIT), "{env:?}");
    }

    #[test]
    fn a_fraction_without_uuid_is_device_0_to_mps() {
        let mut devices = devices();
        devices[1].memory_mib = 16_000;
        let share = DeviceShare {
            index: 1,
            milli: 500,
        };
        let env: BTreeMap<_, _> = AssignedGpus::resolve(&[share], &devices)
            .unwrap()
            .env()
            .into_iter()
            .collect();
        assert_eq!(env[ENV_MPS_MEMORY_LIMIT], "0=8000M");
    }

    #[test]
    fn shares_the_worker_cannot_honour_are_refused() {
        let fraction = DeviceShare {
            index: 0,
            milli: 500,
        };
        for (shares, why) in [
            (
                vec![DeviceShare::whole(2)],
                "worker's GPU devices are: 0, 1",
            ),
            (vec![DeviceShare::whole(0), DeviceShare::whole(0)], "twice"),
            (vec![DeviceShare { index: 0, milli: 0 }], "1 to 1000"),
            (vec![fraction, DeviceShare::whole(1)], "fraction"),
        ] {
            let err = AssignedGpus::resolve(&shares, &devices()).unwrap_err();
            assert!(err.to_string().contains(why), "{shares:?}: {err}");
        }
        let err = AssignedGpus::resolve(&[DeviceShare::whole(0)], &[]).unwrap_err();
        assert!(err.to_string().contains("are: none"), "{err}");
    }
}
