//! The name of the container runtime a worker runs its containers with.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The name of a worker's container runtime (`process`, `runc`, ...): lowercase ASCII
/// letters, digits and `-`, 1 to [`RuntimeName::MAX_LEN`] characters.
///
/// A worker states it when it registers. A worker that does not (an agent older than the
/// field) runs [`RuntimeName::PROCESS`], which is also the [`Default`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuntimeName(Cow<'static, str>);

/// Why a string is not a runtime name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeNameError {
    /// The name was empty.
    #[error("runtime name must not be empty; use a name such as process or runc")]
    Empty,
    /// The name was longer than [`RuntimeName::MAX_LEN`].
    #[error(
        "runtime name is {len} characters long; the limit is {}",
        RuntimeName::MAX_LEN
    )]
    TooLong {
        /// The length that was given, in characters.
        len: usize,
    },
    /// The name held a character other than lowercase ASCII letters, digits and `-`.
    #[error(
        "runtime name {value:?} contains {bad:?}; use only lowercase ASCII letters, digits and '-'"
    )]
    BadChar {
        /// The offending input.
        value: String,
        /// The first character that is not allowed.
        bad: char,
    },
}

impl RuntimeName {
    /// The longest name accepted, in characters.
    pub const MAX_LEN: usize = 32;

    /// The process runtime: a container is a process group on the worker's host. The runtime
    /// of every worker that does not say otherwise.
    pub const PROCESS: RuntimeName = RuntimeName(Cow::Borrowed("process"));

    /// The runc runtime: a container is an OCI bundle run by `runc`.
    pub const RUNC: RuntimeName = RuntimeName(Cow::Borrowed("runc"));

    /// Parses and validates a runtime name. Nothing is trimmed or lower-cased: `Runc` is
    /// refused, not read as `runc`.
    pub fn new(value: impl Into<String>) -> Result<Self, RuntimeNameError> {
        let value = value.into();
        if value.is_empty() {
            return Err(RuntimeNameError::Empty);
        }
        let len = value.chars().count();
        if len > Self::MAX_LEN {
            return Err(RuntimeNameError::TooLong { len });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
            return Err(RuntimeNameError::BadChar { value, bad });
        }
        Ok(RuntimeName(Cow::Owned(value)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RuntimeName {
    /// [`RuntimeName::PROCESS`]: what a worker that does not state its runtime runs.
    fn default() -> Self {
        RuntimeName::PROCESS
    }
}

impl TryFrom<String> for RuntimeName {
    type Error = RuntimeNameError;
    fn try_from(value: String) -> Result<Self, RuntimeNameError> {
        Self::new(value)
    }
}

impl std::str::FromStr for RuntimeName {
    type Err = RuntimeNameError;
    fn from_str(value: &str) -> Result<Self, RuntimeNameError> {
        Self::new(value)
    }
}

impl From<RuntimeName> for String {
    fn from(name: RuntimeName) -> String {
        name.0.into_owned()
    }
}

impl fmt::Display for RuntimeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RuntimeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_letters_digits_and_dashes() {
        for name in ["process", "runc", "gvisor-2", "a", &"x".repeat(32)] {
            assert_eq!(RuntimeName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn the_constants_are_valid_and_equal_their_parsed_names() {
        for constant in [RuntimeName::PROCESS, RuntimeName::RUNC] {
            assert_eq!(RuntimeName::new(constant.as_str()).unwrap(), constant);
        }
        assert_eq!(RuntimeName::default(), RuntimeName::PROCESS);
        assert_eq!(RuntimeName::PROCESS.to_string(), "process");
        assert_eq!(RuntimeName::RUNC.to_string(), "runc");
    }

    #[test]
    fn refuses_empty_and_too_long() {
        assert_eq!(RuntimeName::new(""), Err(RuntimeNameError::Empty));
        assert_eq!(
            RuntimeName::new("x".repeat(33)),
            Err(RuntimeNameError::TooLong { len: 33 })
        );
    }

    #[test]
    fn refuses_uppercase_and_other_characters() {
        for (name, bad) in [
            ("Runc", 'R'),
            ("PROCESS", 'P'),
            ("run c", ' '),
            ("run_c", '_'),
            ("run.c", '.'),
            ("{runc}", '{'),
            ("runç", 'ç'),
        ] {
            assert_eq!(
                RuntimeName::new(name),
                Err(RuntimeNameError::BadChar {
                    value: name.to_owned(),
                    bad
                }),
                "{name}"
            );
        }
        let message = RuntimeName::new("BAD NAME").unwrap_err().to_string();
        assert!(message.contains("\"BAD NAME\"") && message.contains("lowercase"));
    }

    #[test]
    fn serde_validates() {
        let bad: Result<RuntimeName, _> = serde_json::from_str("\"Runc\"");
        assert!(bad.is_err());
        let good: RuntimeName = serde_json::from_str("\"runc\"").unwrap();
        assert_eq!(good, RuntimeName::RUNC);
        assert_eq!(serde_json::to_string(&good).unwrap(), "\"runc\"");
        assert_eq!("runc".parse::<RuntimeName>().unwrap(), RuntimeName::RUNC);
    }
}
