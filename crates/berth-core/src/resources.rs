//! Resources: CPU in millicores, memory in MiB and a GPU count, with checked arithmetic.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of compute: what a worker has, what is free on it, or what a container asks for.
///
/// All arithmetic is checked: [`Resources::checked_add`] and [`Resources::checked_sub`]
/// return `None` instead of wrapping or saturating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Number of GPUs (all of the worker's one GPU type).
    pub gpu_count: u32,
}

impl Resources {
    /// No resources at all.
    pub const ZERO: Resources = Resources {
        cpu_millicores: 0,
        memory_mib: 0,
        gpu_count: 0,
    };

    /// Builds a value from its three parts.
    pub const fn new(cpu_millicores: u64, memory_mib: u64, gpu_count: u32) -> Self {
        Resources {
            cpu_millicores,
            memory_mib,
            gpu_count,
        }
    }

    /// `self + other`, or `None` if any part overflows.
    #[must_use]
    pub fn checked_add(self, other: Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millicores: self.cpu_millicores.checked_add(other.cpu_millicores)?,
            memory_mib: self.memory_mib.checked_add(other.memory_mib)?,
            gpu_count: self.gpu_count.checked_add(other.gpu_count)?,
        })
    }

    /// `self - other`, or `None` if any part would go below zero.
    #[must_use]
    pub fn checked_sub(self, other: Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millicores: self.cpu_millicores.checked_sub(other.cpu_millicores)?,
            memory_mib: self.memory_mib.checked_sub(other.memory_mib)?,
            gpu_count: self.gpu_count.checked_sub(other.gpu_count)?,
        })
    }

    /// True when every part of `self` is at most the same part of `available`.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.cpu_millicores <= available.cpu_millicores
            && self.memory_mib <= available.memory_mib
            && self.gpu_count <= available.gpu_count
    }

    /// True when every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == Resources::ZERO
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m memory={}Mi gpu={}",
            self.cpu_millicores, self.memory_mib, self.gpu_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_sub_are_checked() {
        let a = Resources::new(1000, 512, 1);
        let b = Resources::new(500, 256, 1);
        assert_eq!(a.checked_sub(b), Some(Resources::new(500, 256, 0)));
        assert_eq!(b.checked_sub(a), None);
        assert_eq!(a.checked_add(b), Some(Resources::new(1500, 768, 2)));
        let max = Resources::new(u64::MAX, 0, 0);
        assert_eq!(max.checked_add(Resources::new(1, 0, 0)), None);
        let gpus = Resources::new(0, 0, u32::MAX);
        assert_eq!(gpus.checked_add(Resources::new(0, 0, 1)), None);
    }

    #[test]
    fn fits_in_checks_every_part() {
        let free = Resources::new(1000, 1024, 0);
        assert!(Resources::new(1000, 1024, 0).fits_in(&free));
        assert!(!Resources::new(1001, 1, 0).fits_in(&free));
        assert!(!Resources::new(1, 1025, 0).fits_in(&free));
        assert!(!Resources::new(1, 1, 1).fits_in(&free));
    }
}
