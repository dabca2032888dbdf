//! GPU types and a request's GPU preference.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A GPU model. The well-known ones are variants; any other name is kept as [`GpuType::Other`],
/// upper-cased so that comparisons are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GpuType {
    /// NVIDIA T4.
    T4,
    /// NVIDIA L4.
    L4,
    /// NVIDIA A10G.
    A10G,
    /// NVIDIA A100 with 40 GB.
    A100_40,
    /// NVIDIA A100 with 80 GB.
    A100_80,
    /// NVIDIA H100.
    H100,
    /// NVIDIA H200.
    H200,
    /// NVIDIA L40S.
    L40S,
    /// NVIDIA RTX A6000.
    A6000,
    /// NVIDIA GeForce RTX 4090.
    Rtx4090,
    /// Any other model, by its upper-cased name.
    Other(String),
}

/// Why a string is not a GPU type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuTypeError {
    /// The name was empty or only whitespace.
    #[error("GPU type must not be empty; use a name such as A10G, A100-40, H100")]
    Empty,
    /// The name had a character outside letters, digits, '-', '_' and '.'.
    #[error("GPU type {0:?} has characters other than letters, digits, '-', '_' and '.'")]
    BadName(String),
    /// The name was longer than 32 bytes.
    #[error("GPU type {0:?} is longer than 32 characters")]
    TooLong(String),
}

const KNOWN: [(GpuType, &str); 10] = [
    (GpuType::T4, "T4"),
    (GpuType::L4, "L4"),
    (GpuType::A10G, "A10G"),
    (GpuType::A100_40, "A100-40"),
    (GpuType::A100_80, "A100-80"),
    (GpuType::H100, "H100"),
    (GpuType::H200, "H200"),
    (GpuType::L40S, "L40S"),
    (GpuType::A6000, "A6000"),
    (GpuType::Rtx4090, "RTX4090"),
];

impl GpuType {
    /// The canonical name: `A100-40`, `RTX4090`, or the upper-cased other name.
    pub fn name(&self) -> &str {
        match self {
            GpuType::Other(name) => name,
            known => KNOWN
                .iter()
                .find(|(ty, _)| ty == known)
                .map_or("", |(_, name)| name),
        }
    }
}

impl FromStr for GpuType {
    type Err = GpuTypeError;

    fn from_str(input: &str) -> Result<Self, GpuTypeError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(GpuTypeError::Empty);
        }
        if trimmed.len() > 32 {
            return Err(GpuTypeError::TooLong(trimmed.to_owned()));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if !trimmed.chars().all(ok) {
            return Err(GpuTypeError::BadName(trimmed.to_owned()));
        }
        let upper = trimmed.to_ascii_uppercase();
        let known = KNOWN.iter().find(|(_, name)| *name == upper);
        Ok(known.map_or(GpuType::Other(upper), |(ty, _)| ty.clone()))
    }
}

impl TryFrom<String> for GpuType {
    type Error = GpuTypeError;
    fn try_from(value: String) -> Result<Self, GpuTypeError> {
        value.parse()
    }
}

impl From<GpuType> for String {
    fn from(ty: GpuType) -> String {
        ty.name().to_owned()
    }
}

impl fmt::Display for GpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which GPU types a request accepts, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GpuPreference {
    /// Any GPU type will do.
    #[default]
    Any,
    /// Only these types, the first one preferred.
    Types(Vec<GpuType>),
}

impl GpuPreference {
    /// The position of `ty` in the preference list (0 is the most preferred), or `None` if
    /// the type is not accepted. Every type is at position 0 for [`GpuPreference::Any`].
    pub fn rank(&self, ty: &GpuType) -> Option<usize> {
        match self {
            GpuPreference::Any => Some(0),
            GpuPreference::Types(types) => types.iter().position(|t| t == ty),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn parses_known_types_case_insensitively() {
        assert_eq!("a100-40".parse(), Ok(GpuType::A100_40));
        assert_eq!(" h100 ".parse(), Ok(GpuType::H100));
        assert_eq!("rtx4090".parse(), Ok(GpuType::Rtx4090));
        assert_eq!(GpuType::A100_80.to_string(), "A100-80");
    }

    #[test]
    fn keeps_other_names_upper_cased() {
        assert_eq!("mi300x".parse(), Ok(GpuType::Other("MI300X".into())));
        assert_eq!(
            "mi300x".parse::<GpuType>().unwrap(),
            "MI300X".parse::<GpuType>().unwrap()
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!("".parse::<GpuType>(), Err(GpuTypeError::Empty));
        assert!(matches!(
            "a100 40".parse::<GpuType>(),
            Err(GpuTypeError::BadName(_))
        ));
        assert!(matches!(
            "x".repeat(33).parse::<GpuType>(),
            Err(GpuTypeError::TooLong(_))
        ));
    }

    #[test]
    fn rank_follows_the_preference_order() {
        let pref = GpuPreference::Types(vec![GpuType::H100, GpuType::A100_80]);
        assert_eq!(pref.rank(&GpuType::H100), Some(0));
        assert_eq!(pref.rank(&GpuType::A100_80), Some(1));
        assert_eq!(pref.rank(&GpuType::T4), None);
        assert_eq!(GpuPreference::Any.rank(&GpuType::T4), Some(0));
    }
}
