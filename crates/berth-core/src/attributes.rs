//! A worker's static attributes (what it says about itself besides its status and capacity:
//! the pool attributes, the GPU type and the container runtime) as named text fields, by one
//! table: [`WORKER_ATTRIBUTES`], one entry of field name, format and parse per attribute (and
//! the text a field added later reads as when a stored worker lacks it). A store
//! writes and reads them through the table without code per attribute (the Redis store
//! keeps them as fields of the worker hash, which its scripts write without knowing their
//! names).

use crate::WorkerRegistration;
use crate::{CpuReserve, PlacementPolicy, WorkerStatus};
use crate::{GpuType, PoolAttributes, PoolName, Resources, RuntimeName, WorkerId};

/// One static attribute of a worker as a text field.
pub struct WorkerAttribute {
    /// The field's name (in the Redis worker hash, among others).
    pub field: &'static str,
    /// The attribute of a registration as text.
    pub format: fn(&WorkerRegistration) -> String,
    /// Sets the attribute of a registration from text, or says what the text is not.
    pub parse: fn(&str, &mut WorkerRegistration) -> Result<(), String>,
    /// The text a stored worker without this field is read with: set for an attribute that
    /// was added after workers were already stored (a worker written by an older version has
    /// no such field). `None`: a missing field is an error.
    pub when_missing: Option<&'static str>,
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
pub static WORKER_ATTRIBUTES: [WorkerAttribute; 9] = [
    WorkerAttribute {
        field: "pool",
        format: |r| r.pool.pool.to_string(),
        parse: |text, r| {
            r.pool.pool = parsed(text, "a pool name")?;
            Ok(())
        },
        when_missing: None,
    },
    WorkerAttribute {
        field: "priority",
        format: |r| r.pool.priority.to_string(),
        parse: |text, r| {
            r.pool.priority = parsed(text, "a 32-bit integer")?;
            Ok(())
        },
        when_missing: None,
    },
    WorkerAttribute {
        field: "preemptible",
        format: |r| flag(r.pool.preemptible),
        parse: |text, r| {
            r.pool.preemptible = parse_flag(text)?;
            Ok(())
        },
        when_missing: None,
    },
    WorkerAttribute {
        field: "requires_pool_selector",
        format: |r| flag(r.pool.requires_pool_selector),
        parse: |text, r| {
            r.pool.requires_pool_selector = parse_flag(text)?;
            Ok(())
        },
        when_missing: None,
    },
    WorkerAttribute {
        field: "policy",
        format: |r| r.pool.policy.as_str().to_owned(),
        parse: |text, r| {
            r.pool.policy = parsed::<PlacementPolicy>(text, "spread, pack or fgd")?;
            Ok(())
        },
        when_missing: None,
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
        when_missing: None,
    },
    // Added after workers were first stored: a worker written before it has no `runtime`
    // field and reads as `process`, the only runtime there was. An invalid name is an error
    // for that worker, as for every other field.
    WorkerAttribute {
        field: "runtime",
        format: |r| r.runtime.to_string(),
        parse: |text, r| {
            r.runtime = text
                .parse::<RuntimeName>()
                .map_err(|e| format!("{text:?} is not a runtime name: {e}"))?;
            Ok(())
        },
        when_missing: Some("process"),
    },
    // Added with per-device GPUs; after `gpu_type`, which it needs. A worker written before
    // it lists no devices (its GPUs, if any, read as unlisted ones: see
    // `Worker::device_slots`).
    WorkerAttribute {
        field: "gpu_devices",
        format: |r| crate::GpuDevice::format_list(&r.devices),
        parse: |text, r| {
            r.devices = match (&r.gpu_type, text) {
                (_, "") => Vec::new(),
                (Some(ty), text) => {
                    crate::GpuDevice::parse_list(text, ty).map_err(|e| e.to_string())?
                }
                (None, _) => return Err("lists GPU devices but the worker has no GPU type".into()),
            };
            Ok(())
        },
        when_missing: Some(""),
    },
    // Added with CPU-only requests on GPU workers: `<cpu_millicores>,<memory_mib>` of the
    // reserve, empty when the pool keeps its GPU workers for GPU requests. A worker written
    // before it reads as empty: GPU requests only, as then.
    WorkerAttribute {
        field: "cpu_on_gpu",
        format: |r| {
            r.pool
                .cpu_on_gpu
                .map_or_else(String::new, CpuReserve::as_text)
        },
        parse: |text, r| {
            r.pool.cpu_on_gpu = match text {
                "" => None,
                text => Some(text.parse::<CpuReserve>().map_err(|e| e.to_string())?),
            };
            Ok(())
        },
        when_missing: Some(""),
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
/// (and the given status and total), or the first field that is missing (and has no
/// [`WorkerAttribute::when_missing`]) or unreadable. A worker stored without a `runtime`
/// field (by a version before it) reads as [`RuntimeName::PROCESS`].
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
        devices: Vec::new(),
        id,
        pool: PoolAttributes::plain(unset),
        status,
        total,
        gpu_type: None,
        runtime: RuntimeName::PROCESS,
    };
    for attribute in &WORKER_ATTRIBUTES {
        let problem = |problem: String| AttributeError {
            field: attribute.field,
            problem,
        };
        let text = stored(attribute.field)
            .or(attribute.when_missing)
            .ok_or_else(|| problem("is missing".to_owned()))?;
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
            devices: Vec::new(),
            id: WorkerId::new("w1").unwrap(),
            pool: PoolAttributes {
                pool: PoolName::new("gpu-a").unwrap(),
                priority: -3,
                preemptible: true,
                requires_pool_selector: false,
                policy: PlacementPolicy::Pack,
                cpu_on_gpu: Some(CpuReserve {
                    cpu_millicores: 500,
                    memory_mib: 1024,
                }),
            },
            status: WorkerStatus::Pending,
            total: Resources::new(1000, 2048, 4),
            gpu_type: Some(GpuType::A100_80),
            runtime: RuntimeName::RUNC,
        }
    }

    fn read_back(
        original: &WorkerRegistration,
        stored: &HashMap<&str, String>,
    ) -> Result<WorkerRegistration, AttributeError> {
        parse_attributes(original.id.clone(), original.status, original.total, |f| {
            stored.get(f).map(String::as_str)
        })
    }

    #[test]
    fn attributes_round_trip() {
        let original = registration();
        let variants = [
            (original.gpu_type.clone(), RuntimeName::RUNC),
            (None, RuntimeName::PROCESS),
        ];
        for (gpu_type, runtime) in variants {
            let original = WorkerRegistration {
                gpu_type,
                runtime,
                ..original.clone()
            };
            let stored: HashMap<&str, String> = format_attributes(&original).collect();
            assert_eq!(read_back(&original, &stored).unwrap(), original);
        }
    }

    #[test]
    fn a_worker_stored_without_a_runtime_reads_as_process() {
        let original = registration();
        let mut stored: HashMap<&str, String> = format_attributes(&original).collect();
        assert_eq!(stored["runtime"], "runc");
        stored.remove("runtime");
        let back = read_back(&original, &stored).unwrap();
        assert_eq!(back.runtime, RuntimeName::PROCESS);
        assert_eq!(
            WorkerRegistration {
                runtime: RuntimeName::RUNC,
                ..back
            },
            original,
            "everything else is read as stored"
        );
        let runtime = WORKER_ATTRIBUTES.iter().find(|a| a.field == "runtime");
        assert_eq!(
            runtime.and_then(|a| a.when_missing),
            Some(RuntimeName::PROCESS.as_str())
        );
    }

    #[test]
    fn an_invalid_runtime_is_an_error_naming_the_field() {
        let original = registration();
        let mut stored: HashMap<&str, String> = format_attributes(&original).collect();
        stored.insert("runtime", "Not A Runtime".to_owned());
        let error = read_back(&original, &stored).unwrap_err();
        assert_eq!(error.field, "runtime");
        assert!(error.problem.contains("\"Not A Runtime\""), "{error}");
        stored.insert("runtime", String::new());
        assert_eq!(read_back(&original, &stored).unwrap_err().field, "runtime");
    }

    #[test]
    fn only_attributes_added_later_may_be_missing() {
        let original = registration();
        for attribute in &WORKER_ATTRIBUTES {
            let mut stored: HashMap<&str, String> = format_attributes(&original).collect();
            stored.remove(attribute.field);
            let back = read_back(&original, &stored);
            match attribute.when_missing {
                None => assert_eq!(
                    back.unwrap_err(),
                    AttributeError {
                        field: attribute.field,
                        problem: "is missing".to_owned()
                    }
                ),
                Some(_) => assert!(back.is_ok(), "{}: {back:?}", attribute.field),
            }
        }
    }

    #[test]
    fn cpu_on_gpu_round_trips_and_reads_as_off_when_missing() {
        let original = registration();
        let mut stored: HashMap<&str, String> = format_attributes(&original).collect();
        assert_eq!(stored["cpu_on_gpu"], "500,1024");
        assert_eq!(read_back(&original, &stored).unwrap(), original);
        stored.remove("cpu_on_gpu");
        let back = read_back(&original, &stored).unwrap();
        assert_eq!(
            back.pool.cpu_on_gpu, None,
            "a worker stored before the switch: off"
        );
        let off = WorkerRegistration {
            pool: PoolAttributes {
                cpu_on_gpu: None,
                ..original.pool.clone()
            },
            ..original.clone()
        };
        let stored: HashMap<&str, String> = format_attributes(&off).collect();
        assert_eq!(stored["cpu_on_gpu"], "");
        assert_eq!(read_back(&off, &stored).unwrap(), off);
    }

    #[test]
    fn a_bad_cpu_on_gpu_is_an_error_naming_the_field() {
        let original = registration();
        for bad in ["500", "500,", ",1", "a,b", "-1,1", "1,2,3"] {
            let mut stored: HashMap<&str, String> = format_attributes(&original).collect();
            stored.insert("cpu_on_gpu", bad.to_owned());
            let error = read_back(&original, &stored).unwrap_err();
            assert_eq!(error.field, "cpu_on_gpu", "{bad:?}");
            assert!(error.problem.contains("CPU reserve"), "{error}");
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
