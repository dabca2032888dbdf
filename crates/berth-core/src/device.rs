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
    /// A worker lists a different number of devices than it counts GPUs.
    #[error("the worker counts {count} GPUs but lists {listed} devices; list each GPU once")]
    CountMismatch {
        /// Its GPU count.
        count: u32,
        /// The devices listed.
        listed: usize,
    },
    /// A share list that does not parse (`index:milli`, comma-separated).
    #[error("GPU device shares {0:?} are not a comma-separated list of index:milli")]
    BadShareList(String),
    /// Shares that are not what a reservation of `count` whole GPUs (or, with 0, of at most
    /// one fraction) holds.
    #[error(
        "GPU device shares {shares:?} do not fit a reservation of {count} GPUs: it holds that many distinct whole devices, or with 0 GPUs at most one fraction"
    )]
    SharesMismatch {
        /// The whole GPUs reserved.
        count: u32,
        /// The shares as given.
        shares: String,
    },
    /// A stored device that does not parse (`index:uuid:memory:health`).
    #[error("GPU device {0:?} is not index:uuid:memory_mib:health")]
    BadDeviceList(String),
}

/// A decimal number of plain digits (no sign, no spaces).
fn digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl GpuDevice {
    /// The devices of a worker that counts `count` GPUs of `gpu_type` without listing them:
    /// indices 0 to `count - 1`, memory and UUID unknown, healthy.
    pub fn unlisted(gpu_type: &GpuType, count: u32) -> Vec<GpuDevice> {
        (0..count)
            .map(|index| GpuDevice {
                index,
                gpu_type: gpu_type.clone(),
                memory_mib: 0,
                uuid: None,
                healthy: true,
            })
            .collect()
    }

    /// The devices as the worker hash keeps them: `index:uuid:memory:health` for each,
    /// `;`-separated (the type is the worker's; an unknown UUID is empty; health `1` or
    /// `0`).
    pub fn format_list(devices: &[GpuDevice]) -> String {
        devices
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{}:{}",
                    d.index,
                    d.uuid.as_deref().unwrap_or(""),
                    d.memory_mib,
                    u8::from(d.healthy)
                )
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Parses [`GpuDevice::format_list`]'s form for a worker whose GPUs are `gpu_type`,
    /// checked as [`GpuDevice::validate_all`] does.
    pub fn parse_list(text: &str, gpu_type: &GpuType) -> Result<Vec<GpuDevice>, DeviceError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let devices = text
            .split(';')
            .map(|part| {
                let bad = || DeviceError::BadDeviceList(part.to_owned());
                let fields: Vec<&str> = part.split(':').collect();
                let [index, uuid, memory, health] = fields.as_slice() else {
                    return Err(bad());
                };
                Ok(GpuDevice {
                    index: digits(index).ok_or_else(bad)?,
                    gpu_type: gpu_type.clone(),
                    memory_mib: digits(memory).ok_or_else(bad)?,
                    uuid: (!uuid.is_empty()).then(|| (*uuid).to_owned()),
                    healthy: match *health {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad()),
                    },
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        GpuDevice::validate_all(&devices)?;
        Ok(devices)
    }

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

    /// Checks the shares of one reservation of `count` whole GPUs: each share valid, on
    /// distinct devices, and either `count` whole devices or (with `count` 0) at most one
    /// fraction.
    pub fn check_reservation(count: u32, shares: &[DeviceShare]) -> Result<(), DeviceError> {
        for share in shares {
            share.validate()?;
        }
        let mut indices: Vec<u32> = shares.iter().map(|s| s.index).collect();
        indices.sort_unstable();
        indices.dedup();
        let whole = shares.iter().filter(|s| s.is_whole()).count();
        let fine = indices.len() == shares.len()
            && if count == 0 {
                shares.len() <= 1 && whole == 0
            } else {
                whole == shares.len() && u32::try_from(whole) == Ok(count)
            };
        if fine {
            Ok(())
        } else {
            Err(DeviceError::SharesMismatch {
                count,
                shares: DeviceShare::format_list(shares),
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
        Ok(DeviceShare {
            index: digits(index).ok_or_else(bad)?,
            milli: digits(milli).ok_or_else(bad)?,
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
    fn device_lists_round_trip_and_refuse_garbage() {
        let mut devices = GpuDevice::unlisted(&GpuType::A10G, 2);
        devices[1].uuid = Some("GPU-1f".to_owned());
        devices[1].memory_mib = 24_576;
        devices[1].healthy = false;
        let text = GpuDevice::format_list(&devices);
        assert_eq!(text, "0::0:1;1:GPU-1f:24576:0");
        assert_eq!(GpuDevice::parse_list(&text, &GpuType::A10G), Ok(devices));
        assert_eq!(GpuDevice::parse_list("", &GpuType::A10G), Ok(Vec::new()));
        for bad in [
            "0",
            "0::0",
            "0::0:2",
            "x::0:1",
            "0::-1:1",
            "0::0:1;",
            "0::0:1;0::0:1",
            "0:a b:0:1",
        ] {
            assert!(
                GpuDevice::parse_list(bad, &GpuType::A10G).is_err(),
                "{bad:?}"
            );
        }
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
    fn a_reservation_holds_its_whole_devices_or_one_fraction() {
        let half = DeviceShare {
            index: 1,
            milli: 500,
        };
        let ok =
            |count, shares: &[DeviceShare]| DeviceShare::check_reservation(count, shares).is_ok();
        assert!(ok(0, &[]));
        assert!(ok(0, &[half]));
        assert!(ok(2, &[DeviceShare::whole(0), DeviceShare::whole(3)]));
        assert!(!ok(1, &[]));
        assert!(!ok(0, &[DeviceShare::whole(0)]));
        assert!(!ok(
            0,
            &[
                half,
                DeviceShare {
                    index: 2,
                    milli: 10
                }
            ]
        ));
        assert!(!ok(1, &[half]));
        assert!(!ok(2, &[DeviceShare::whole(0), DeviceShare::whole(0)]));
        assert!(!ok(1, &[DeviceShare::whole(0), half]));
        assert!(!ok(0, &[DeviceShare { index: 1, milli: 0 }]));
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
