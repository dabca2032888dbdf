//! A worker's static attributes (what it says about itself besides its status and capacity:
//! the pool attributes and the GPU type) as named text fields, by one table:
//! [`WORKER_ATTRIBUTES`], one entry of field name, format and parse per attribute. A store
//! writes and reads them through the table without code per attribute (the Redis store
//! keeps them as fields of the worker hash, which its scripts write without knowing their
//! names).

use crate::{GpuType, PoolAttributes, PoolName, Resources, WorkerId, WorkerRegistration};
use crate::{PlacementPolicy, WorkerStatus};

/// One static attribute of a worker as a text field.
pub struct WorkerAttribute {
    /// The field's name (in the Redis worker hash, among others).
    pub field: &'static str,
    /// The attribute of a registration as text.
    pub format: fn(&WorkerRegistration) -> String,
    /// Sets the attribute of a registration from text, or says what the text is not.
    pub parse: fn(&str, &mut WorkerRegistration) -> Result<(), String>,
}

/// A stored attribute that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct AttributeError {
    /// The attribute's field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Every static attribute of a worker, in the order they are written and checked.
pub static WORKER_ATTRIBUTES: [WorkerAttribute; 6] = [
    WorkerAttribute {
        field: "pool",
        format: |r| r.pool.pool.to_string(),
        parse: |text, r| {
            r.pool.pool = parsed(text, "a pool name")?;
            Ok(())
        },
    },
    WorkerAttribute {
        field: "priority",
        format: |r| r.pool.priority.to_string(),
        parse: |text, r| {
            r.pool.priority = parsed(text, "a 32-bit integer")?;
            Ok(())
        },
    },
    WorkerAttribute {
        field: "preemptible",
        format: |r| flag(r.pool.preemptible),
        parse: |text, r| {
            r.pool.preemptible = parse_flag(text)?;
            Ok(())
        },
    },
    WorkerAttribute {
        field: "requires_pool_selector",
        format: |r| flag(r.pool.requires_pool_selector),
        parse: |text, r| {
            r.pool.requires_pool_selector = parse_flag(text)?;
            Ok(())
        },
    },
    WorkerAttribute {
        field: "policy",
        format: |r| r.pool.policy.as_str().to_owned(),
        parse: |text, r| {
            r.pool.policy = parsed::<PlacementPolicy>(text, "spread or pack")?;
            Ok(())
        },
    },
    WorkerAttribute {
        field: "gpu_type",
        // No GPU type is an empty string.
        format: |r| {
            r.gpu_type
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        },
        parse: |text, r| {
            r.gpu_type = match text {
                "" => None,
                name => Some(
                    name.parse::<GpuType>()
                        .map_err(|e| format!("{name:?}: {e}"))?,
                ),
            };
            Ok(())
        },
    },
];

/// The registration's static attributes as (field, text) pairs, in table order.
pub fn format_attributes(
    registration: &WorkerRegistration,
) -> impl Iterator<Item = (&'static str, String)> + '_ {
    WORKER_ATTRIBUTES
        .iter()
        .map(|a| (a.field, (a.format)(registration)))
}

/// Reads a worker's static attributes back: `stored(field)` is the stored text of a field,
/// `None` when it is missing. Returns a registration of worker `id` with those attributes
/// (and the given status and total), or the first field that is missing or unreadable.
pub fn parse_attributes<'s>(
    id: WorkerId,
    status: WorkerStatus,
    total: Resources,
    stored: impl Fn(&str) -> Option<&'s str>,
) -> Result<WorkerRegistration, AttributeError> {
    let unset = PoolName::new("unset").map_err(|e| AttributeError {
        field: "pool",
        problem: e.to_string(),
    })?;
    let mut registration = WorkerRegistration {
        id,
        pool: PoolAttributes::plain(unset),
        status,
        total,
        gpu_type: None,
    };
    for attribute in &WORKER_ATTRIBUTES {
        let problem = |problem: String| AttributeError {
            field: attribute.field,
            problem,
        };
        let text = stored(attribute.field).ok_or_else(|| problem("is missing".to_owned()))?;
        (attribute.parse)(text, &mut registration).map_err(problem)?;
    }
    Ok(registration)
}

fn parsed<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{text:?} is not {what}"))
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(format!("{other:?} is not 0 or 1")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn registration() -> WorkerRegistration {
        WorkerRegistration {
            id: WorkerId::new("w1").unwrap(),
            pool: PoolAttributes {
                pool: PoolName::new("gpu-a").unwrap(),
                priority: -3,
                preemptible: true,
                requires_pool_selector: false,
                policy: PlacementPolicy::Pack,
            },
            status: WorkerStatus::Pending,
            total: Resources::new(1000, 2048, 4),
            gpu_type: Some(GpuType::A100_80),
        }
    }

    #[test]
    fn attributes_round_trip() {
        let original = registration();
        for gpu_type in [original.gpu_type.clone(), None] {
            let original = WorkerRegistration {
                gpu_type,
                ..original.clone()
            };
            let stored: HashMap<&str, String> = format_attributes(&original).collect();
            let back =
                parse_attributes(original.id.clone(), original.status, original.total, |f| {
                    stored.get(f).map(String::as_str)
                })
                .unwrap();
            assert_eq!(back, original);
        }
    }

    #[test]
    fn field_names_are_distinct() {
        let mut names: Vec<&str> = WORKER_ATTRIBUTES.iter().map(|a| a.field).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKER_ATTRIBUTES.len());
    }
}
