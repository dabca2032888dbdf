//! GPU devices: what a worker has ([`GpuDevice`]) and what a container holds of one
//! ([`DeviceShare`]).
//!
//! A GPU is booked per device, in milli-GPUs: a whole GPU is [`GPU_MILLI`] (1,000) of one
//! device, a fraction (`A10G:0.25`) is a share below that of exactly one device. Shares of
//! one device never add up beyond [`GPU_MILLI`], and a whole booking never shares its device.

use crate::GpuType;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One whole GPU, in milli-GPUs.
pub const GPU_MILLI: u32 = 1000;

/// The most characters of a device UUID (`GPU-` and 36 characters of an NVIDIA UUID, with
/// room for other vendors' forms).
pub const MAX_UUID_LEN: usize = 64;

/// One GPU device of a worker, as the worker registers it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuDevice {
    /// The device's index on its worker (what `nvidia-smi` and `CUDA_VISIBLE_DEVICES` call
    /// it, and `/dev/nvidia<index>`).
    pub index: u32,
    /// The device's type; every device of one worker has the same.
    pub gpu_type: GpuType,
    /// Its memory, in MiB (0 when unknown).
    pub memory_mib: u64,
    /// Its UUID, where known (`GPU-...` from `nvidia-smi`).
    #[serde(default)]
    pub uuid: Option<String>,
    /// False when the worker reports it unhealthy: it is not booked.
    pub healthy: bool,
}

/// Why a device list or a device share is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Two devices of one worker have the same index.
    #[error("GPU device index {0} is listed twice; each device of a worker has its own index")]
    DuplicateIndex(u32),
    /// A worker's devices are of different types.
    #[error(
        "GPU device {index} is a {found}, the worker's other devices are {expected}; one worker has one GPU type"
    )]
    MixedTypes {
        /// The device.
        index: u32,
        /// The type of the first device.
        expected: GpuType,
        /// This device's type.
        found: GpuType,
    },
    /// A UUID that is empty, too long, or has characters other than letters, digits, `-`
    /// and `_`.
    #[error(
        "GPU device {index}: UUID {uuid:?} must be 1 to {MAX_UUID_LEN} letters, digits, '-' or '_'"
    )]
    BadUuid {
        /// The device.
        index: u32,
        /// The UUID as given.
        uuid: String,
    },
    /// A share of 0, or of more than a whole GPU.
    #[error("a share of GPU device {index} must be 1 to {GPU_MILLI} milli-GPUs (got {milli})")]
    BadShare {
        /// The device.
        index: u32,
        /// The share as given.
        milli: u32,
    },
    /// A share list that does not parse (`index:milli`, comma-separated).
    #[error("GPU device shares {0:?} are not a comma-separated list of index:milli")]
    BadShareList(String),
}

impl GpuDevice {
    /// Checks one worker's devices: distinct indices, one type, well-formed UUIDs.
    pub fn validate_all(devices: &[GpuDevice]) -> Result<(), DeviceError> {
        let mut seen = std::collections::BTreeSet::new();
        for device in devices {
            if !seen.insert(device.index) {
                return Err(DeviceError::DuplicateIndex(device.index));
            }
            if let Some(first) = devices.first()
                && first.gpu_type != device.gpu_type
            {
                return Err(DeviceError::MixedTypes {
                    index: device.index,
                    expected: first.gpu_type.clone(),
                    found: device.gpu_type.clone(),
                });
            }
            if let Some(uuid) = &device.uuid
                && !uuid_ok(uuid)
            {
                return Err(DeviceError::BadUuid {
                    index: device.index,
                    uuid: uuid.clone(),
                });
            }
        }
        Ok(())
    }
}

fn uuid_ok(uuid: &str) -> bool {
    (1..=MAX_UUID_LEN).contains(&uuid.len())
        && uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What a container holds of one device: `milli` milli-GPUs of device `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceShare {
    /// The device's index on the worker.
    pub index: u32,
    /// The share, 1 to [`GPU_MILLI`].
    pub milli: u32,
}

impl DeviceShare {
    /// A whole device.
    pub const fn whole(index: u32) -> DeviceShare {
        DeviceShare {
            index,
            milli: GPU_MILLI,
        }
    }

    /// True when it is the whole device.
    pub const fn is_whole(&self) -> bool {
        self.milli == GPU_MILLI
    }

    /// Checks the share is 1 to [`GPU_MILLI`] milli-GPUs.
    pub fn validate(&self) -> Result<(), DeviceError> {
        if (1..=GPU_MILLI).contains(&self.milli) {
            Ok(())
        } else {
            Err(DeviceError::BadShare {
                index: self.index,
                milli: self.milli,
            })
        }
    }

    /// The shares as stored and sent: `index:milli`, comma-separated (empty for none).
    pub fn format_list(shares: &[DeviceShare]) -> String {
        shares
            .iter()
            .map(DeviceShare::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`DeviceShare::format_list`]'s form, each share checked.
    pub fn parse_list(text: &str) -> Result<Vec<DeviceShare>, DeviceError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|part| {
                let share: DeviceShare = part.parse()?;
                share.validate()?;
                Ok(share)
            })
            .collect()
    }
}

impl fmt::Display for DeviceShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.milli)
    }
}

impl FromStr for DeviceShare {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<DeviceShare, DeviceError> {
        let bad = || DeviceError::BadShareList(text.to_owned());
        let (index, milli) = text.split_once(':').ok_or_else(bad)?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u32>().map_err(|_| bad())
        };
        Ok(DeviceShare {
            index: number(index)?,
            milli: number(milli)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn device(index: u32, gpu_type: GpuType) -> GpuDevice {
        GpuDevice {
            index,
            gpu_type,
            memory_mib: 24_576,
            uuid: Some(format!("GPU-{index}")),
            healthy: true,
        }
    }

    #[test]
    fn a_workers_devices_have_distinct_indices_one_type_and_clean_uuids() {
        let good = [device(0, GpuType::A10G), device(1, GpuType::A10G)];
        assert_eq!(GpuDevice::validate_all(&good), Ok(()));
        assert_eq!(GpuDevice::validate_all(&[]), Ok(()));
        let twice = [device(0, GpuType::A10G), device(0, GpuType::A10G)];
        assert_eq!(
            GpuDevice::validate_all(&twice),
            Err(DeviceError::DuplicateIndex(0))
        );
        let mixed = [device(0, GpuType::A10G), device(1, GpuType::H100)];
        assert!(matches!(
            GpuDevice::validate_all(&mixed),
            Err(DeviceError::MixedTypes { index: 1, .. })
        ));
        for uuid in ["", "GPU 1", &"x".repeat(MAX_UUID_LEN + 1)] {
            let mut bad = device(0, GpuType::A10G);
            bad.uuid = Some(uuid.to_owned());
            assert!(
                matches!(
                    GpuDevice::validate_all(&[bad]),
                    Err(DeviceError::BadUuid { .. })
                ),
                "{uuid:?}"
            );
        }
        let mut longest = device(0, GpuType::A10G);
        longest.uuid = Some("x".repeat(MAX_UUID_LEN));
        assert_eq!(GpuDevice::validate_all(&[longest]), Ok(()));
    }

    #[test]
    fn shares_are_one_to_a_thousand_milli() {
        assert!(DeviceShare::whole(3).is_whole());
        assert_eq!(DeviceShare::whole(3).validate(), Ok(()));
        let one = DeviceShare { index: 0, milli: 1 };
        assert_eq!(one.validate(), Ok(()));
        assert!(!one.is_whole());
        for milli in [0, GPU_MILLI + 1] {
            let share = DeviceShare { index: 2, milli };
            assert_eq!(
                share.validate(),
                Err(DeviceError::BadShare { index: 2, milli })
            );
        }
    }

    #[test]
    fn share_lists_round_trip_and_refuse_garbage() {
        let shares = vec![
            DeviceShare::whole(0),
            DeviceShare {
                index: 3,
                milli: 250,
            },
        ];
        let text = DeviceShare::format_list(&shares);
        assert_eq!(text, "0:1000,3:250");
        assert_eq!(DeviceShare::parse_list(&text), Ok(shares));
        assert_eq!(DeviceShare::parse_list(""), Ok(Vec::new()));
        for bad in [
            "0",
            "0:",
            ":5",
            "a:5",
            "0:5,",
            "0:+5",
            "0:-5",
            "0:99999999999",
            "0:0",
        ] {
            assert!(DeviceShare::parse_list(bad).is_err(), "{bad:?}");
        }
    }
}
