//! Validated identifiers: container ids, worker ids and pool names.
//!
//! Identifiers end up inside Redis keys, and a worker id inside a Redis Cluster hash tag
//! (`{w:ID}`), and into URL paths, so one rule holds for every kind ([`ID_PATTERN`]): 1 to
//! [`MAX_ID_LEN`] bytes of ASCII letters, digits and `.`, `_`, `-`, `:`, starting with a
//! letter or digit. Braces, spaces and control characters are refused, and so are `.` and
//! `..` (a URL path normalises them away, so such a container could never be reported or
//! cancelled) and a leading `-` (read as a flag by the CLI).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Every identifier's rule as a regular expression (for the OpenAPI document).
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$";

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
    },
    /// The string was longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The string started with something other than an ASCII letter or digit.
    #[error("{kind} {value:?} starts with {first:?}; start it with an ASCII letter or digit")]
    BadStart {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// The offending input.
        value: String,
        /// Its first character.
        first: char,
    },
    /// The string held a character outside the allowed alphabet.
    #[error(
        "{kind} {value:?} contains {bad:?}; use only ASCII letters, digits and '.', '_', '-', ':'"
    )]
    BadChar {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// The offending input.
        value: String,
        /// The first character that is not allowed.
        bad: char,
    },
}

fn validate(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(IdError::BadChar {
            kind,
            value: value.to_owned(),
            bad,
        });
    }
    match value.chars().next() {
        Some(first) if !first.is_ascii_alphanumeric() => Err(IdError::BadStart {
            kind,
            value: value.to_owned(),
            first,
        }),
        _ => Ok(()),
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an identifier.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// The id of a container request; client-supplied ids make a submit idempotent.
    ContainerId,
    "container id"
);
identifier!(
    /// The id of a worker machine.
    WorkerId,
    "worker id"
);
identifier!(
    /// The name of a pool of workers.
    PoolName,
    "pool name"
);
identifier!(
    /// The name of a tenant: who a container is run for, and what a client token is
    /// scoped to.
    TenantName,
    "tenant"
);

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn accepts_the_safe_alphabet() {
        assert_eq!(WorkerId::new("w-1.a_b:c").unwrap().as_str(), "w-1.a_b:c");
    }

    #[test]
    fn refuses_hash_tag_braces_and_spaces() {
        assert!(matches!(
            WorkerId::new("w{1}"),
            Err(IdError::BadChar { bad: '{', .. })
        ));
        assert!(matches!(
            ContainerId::new("a b"),
            Err(IdError::BadChar { bad: ' ', .. })
        ));
    }

    #[test]
    fn refuses_empty_and_long() {
        assert_eq!(PoolName::new(""), Err(IdError::Empty { kind: "pool name" }));
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            PoolName::new(long),
            Err(IdError::TooLong { len: 129, .. })
        ));
    }

    #[test]
    fn refuses_dot_segments_and_a_leading_dash_or_punctuation() {
        for bad in [".", "..", ".hidden", "-rf", "_x", ":x"] {
            assert!(
                matches!(ContainerId::new(bad), Err(IdError::BadStart { .. })),
                "{bad} accepted"
            );
        }
        assert_eq!(ContainerId::new("a..b").unwrap().as_str(), "a..b");
        assert_eq!(ContainerId::new("0.x-").unwrap().as_str(), "0.x-");
    }

    proptest::proptest! {
        #[test]
        fn every_string_of_the_pattern_is_accepted(
            id in proptest::string::string_regex(
                ID_PATTERN.trim_start_matches('^').trim_end_matches('$'),
            ).unwrap()
        ) {
            proptest::prop_assert!(ContainerId::new(id.as_str()).is_ok(), "{id:?}");
        }

        #[test]
        fn an_accepted_string_is_of_the_pattern(id in "[ -~]{0,140}") {
            if ContainerId::new(id.as_str()).is_ok() {
                let mut chars = id.chars();
                let first = chars.next().unwrap();
                proptest::prop_assert!(first.is_ascii_alphanumeric());
                proptest::prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)));
                proptest::prop_assert!(id.len() <= MAX_ID_LEN);
            }
        }
    }

    #[test]
    fn deserializing_validates() {
        let bad: Result<WorkerId, _> = serde_json::from_str("\"a}b\"");
        assert!(bad.is_err());
        let good: WorkerId = serde_json::from_str("\"ab\"").unwrap();
        assert_eq!(good.as_str(), "ab");
    }
}
