//! Encoding and decoding of the stored hashes: workers, ownership entries, container
//! records and assignment entries (see [`super::keys`] for their fields).
//!
//! Decoding never panics and never trusts stored data: a missing or malformed field is a
//! [`StoreError::Corrupt`] naming the key and the field.

use crate::{Assignment, AttemptId, ContainerRecord, ContainerState, WorkerRegistration};
use crate::{Result, StoreError};
use berth_core::attributes::{format_attributes, parse_attributes};
use berth_core::invariants::OwnedEntry;
use berth_core::{
    ContainerId, ContainerRequest, DeviceShare, GPU_MILLI, Payload, Resources, Worker, WorkerId,
    WorkerStatus,
};
use std::collections::HashMap;
use std::str::FromStr;

/// The largest integer a Lua script handles exactly (2^53 - 1): the scripts keep every
/// quantity at or below it. Times (ms since the epoch) are capped to it, which is about
/// the year 287,000.
pub const MAX_LUA_INT: u64 = (1 << 53) - 1;

/// A hash as read from Redis: field -> value.
pub type Fields = HashMap<String, String>;

/// The fields of a stored hash, looked up with errors that name the key.
struct Hash<'a> {
    key: &'a str,
    fields: &'a Fields,
}

impl<'a> Hash<'a> {
    fn text(&self, field: &str) -> Result<&'a str> {
        self.fields
            .get(field)
            .map(String::as_str)
            .ok_or_else(|| corrupt(self.key, field, "is missing"))
    }

    /// The field parsed with `FromStr`, or `Corrupt` saying what it is not.
    fn parse<T: FromStr>(&self, field: &str, what: &str) -> Result<T> {
        let text = self.text(field)?;
        text.parse()
            .map_err(|_| corrupt(self.key, field, &format!("{text:?} is not {what}")))
    }

    fn uint(&self, field: &str) -> Result<u64> {
        self.parse(field, "a non-negative integer")
    }

    /// An optional field: absent or empty is `None`.
    fn optional(&self, field: &str) -> Option<&'a str> {
        self.fields
            .get(field)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn optional_parse<T: FromStr>(&self, field: &str, what: &str) -> Result<Option<T>> {
        self.optional(field)
            .map(|text| {
                text.parse()
                    .map_err(|_| corrupt(self.key, field, &format!("{text:?} is not {what}")))
            })
            .transpose()
    }

    fn resources(&self, prefix: &str) -> Result<Resources> {
        Ok(Resources {
            cpu_millicores: self.uint(&format!("{prefix}_cpu"))?,
            memory_mib: self.uint(&format!("{prefix}_mem"))?,
            gpu_count: self.parse(&format!("{prefix}_gpu"), "a GPU count")?,
        })
    }
}

/// A [`StoreError::Corrupt`] for `key` and `field`.
pub fn corrupt(key: &str, field: &str, problem: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

/// Decodes the hash stored at `key` for worker `id`: the static attributes by
/// [`berth_core::attributes::WORKER_ATTRIBUTES`], then status, capacity, version and epoch.
pub fn decode_worker(key: &str, id: &WorkerId, fields: &Fields) -> Result<Worker> {
    let hash = Hash { key, fields };
    let registration =
        parse_attributes(id.clone(), WorkerStatus::Available, Resources::ZERO, |f| {
            fields.get(f).map(String::as_str)
        })
        .map_err(|e| corrupt(key, e.field, &e.problem))?;
    let status = hash.parse::<WorkerStatus>(
        "status",
        "a worker status (available, pending, draining, disabled)",
    )?;
    let total = hash.resources("total")?;
    let free = hash.resources("free")?;
    let version = hash.uint("version")?;
    let epoch = hash.uint("epoch")?;
    let mut worker = WorkerRegistration {
        status,
        total,
        ..registration
    }
    .into_worker(free, version, epoch);
    // Advisory (a preference, never a booking): entries that do not read are skipped
    // rather than quarantining the worker.
    worker.images = hash
        .optional("images")
        .unwrap_or("")
        .split('\n')
        .filter(|image| berth_core::plausible_image(image))
        .take(berth_core::MAX_WORKER_IMAGES)
        .map(str::to_owned)
        .collect();
    if !worker.gpus.is_empty() {
        // Absent when no device is bookable (register.lua writes it only with some).
        let text = hash.optional("gpu_free").unwrap_or("");
        let left = parse_device_free(text)
            .ok_or_else(|| corrupt(key, "gpu_free", &format!("{text:?} is not index:free,...")))?;
        for gpu in &mut worker.gpus {
            // A device without an entry is not bookable (unhealthy): nothing free on it.
            gpu.free_milli = left
                .iter()
                .find(|(index, _)| *index == gpu.device.index)
                .map_or(0, |(_, free)| *free);
        }
        // The stored count, as the scripts keep it (the check compares it with the devices).
        worker.free.gpu_count = free.gpu_count;
    }
    Ok(worker)
}

/// The `gpu_free` field: `index:free` for each bookable device, comma-separated, free 0 to
/// [`GPU_MILLI`]; `None` if it is not that.
fn parse_device_free(text: &str) -> Option<Vec<(u32, u32)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|part| {
            // The share's text form, where 0 (a device wholly booked) is allowed.
            let free: DeviceShare = part.parse().ok()?;
            (free.milli <= GPU_MILLI).then_some((free.index, free.milli))
        })
        .collect()
}

/// The `gpu_free` field of a freshly registered worker: each healthy device wholly free
/// (register.lua then takes what the owned hash holds).
pub fn initial_device_free(registration: &WorkerRegistration) -> String {
    registration
        .devices
        .iter()
        .filter(|d| d.healthy)
        .map(|d| format!("{}:{GPU_MILLI}", d.index))
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments of register.lua: `now`, status, total capacity and the devices' initial
/// free milli-GPUs (`gpu_free`), then the static
/// attributes as field/value pairs (by
/// [`berth_core::attributes::WORKER_ATTRIBUTES`]).
pub fn registration_args(registration: &WorkerRegistration, now_ms: u64) -> Result<Vec<String>> {
    let registration = registration
        .clone()
        .with_devices()
        .map_err(|e| StoreError::InvalidArgument(format!("worker {}: {e}", registration.id)))?;
    let total = checked_resources(&registration.total, "total")?;
    let mut args = vec![now_ms.to_string(), registration.status.as_str().to_owned()];
    args.extend(total);
    args.push(initial_device_free(&registration));
    for (field, value) in format_attributes(&registration) {
        args.push(field.to_owned());
        args.push(value);
    }
    Ok(args)
}

/// `cpu`, `mem`, `gpu` as decimal strings, refusing quantities a Lua script cannot hold
/// exactly.
pub fn checked_resources(resources: &Resources, what: &str) -> Result<[String; 3]> {
    if resources.cpu_millicores > MAX_LUA_INT || resources.memory_mib > MAX_LUA_INT {
        return Err(StoreError::InvalidArgument(format!(
            "{what} {resources} is above the store's limit of {MAX_LUA_INT} per quantity"
        )));
    }
    Ok([
        resources.cpu_millicores.to_string(),
        resources.memory_mib.to_string(),
        resources.gpu_count.to_string(),
    ])
}

/// Decodes one ownership entry `attempt cpu mem gpu [devices]` of the owned hash at `key`
/// (devices as [`DeviceShare::format_list`] writes them; absent without GPU devices).
pub fn decode_owned(key: &str, container: &str, value: &str) -> Result<OwnedEntry> {
    let bad = |problem: &str| corrupt(key, container, problem);
    let container = ContainerId::new(container).map_err(|e| bad(&e.to_string()))?;
    let parts: Vec<&str> = value.split(' ').collect();
    let (attempt, cpu, mem, gpu, devices) = match parts.as_slice() {
        [attempt, cpu, mem, gpu] => (attempt, cpu, mem, gpu, ""),
        [attempt, cpu, mem, gpu, devices] => (attempt, cpu, mem, gpu, *devices),
        _ => {
            return Err(bad(&format!(
                "{value:?} is not \"attempt cpu mem gpu [devices]\""
            )));
        }
    };
    let number = |text: &str| {
        text.parse::<u64>().map_err(|_| {
            bad(&format!(
                "{value:?}: {text:?} is not a non-negative integer"
            ))
        })
    };
    let gpu_count = u32::try_from(number(gpu)?)
        .map_err(|_| bad(&format!("{value:?}: the GPU count is too large")))?;
    if attempt.is_empty() {
        return Err(bad(&format!("{value:?} has an empty attempt")));
    }
    let devices = DeviceShare::parse_list(devices).map_err(|e| bad(&format!("{value:?}: {e}")))?;
    Ok(OwnedEntry {
        devices,
        container,
        attempt: AttemptId((*attempt).to_owned()),
        resources: Resources::new(number(cpu)?, number(mem)?, gpu_count),
    })
}

/// Decodes the container record stored at `key`.
pub fn decode_record(key: &str, fields: &Fields) -> Result<ContainerRecord> {
    let hash = Hash { key, fields };
    let request_json = hash.text("request")?;
    let request: ContainerRequest = serde_json::from_str(request_json)
        .map_err(|e| corrupt(key, "request", &format!("is not a request: {e}")))?;
    let state_text = hash.text("state")?;
    let state = ContainerState::parse(state_text)
        .ok_or_else(|| corrupt(key, "state", &format!("{state_text:?} is not a state")))?;
    let worker = hash
        .optional("worker")
        .map(|w| WorkerId::new(w).map_err(|e| corrupt(key, "worker", &e.to_string())))
        .transpose()?;
    Ok(ContainerRecord {
        request,
        state,
        worker,
        attempt: hash.optional("attempt").map(|a| AttemptId(a.to_owned())),
        scheduled_at_ms: hash.optional_parse("scheduled_ms", "a time in ms")?,
        started_at_ms: hash.optional_parse("started_ms", "a time in ms")?,
        finished_at_ms: hash.optional_parse("finished_ms", "a time in ms")?,
        exit_code: hash.optional_parse("exit_code", "an exit code")?,
        reason: hash.optional("reason").map(str::to_owned),
        deferrals: hash
            .optional_parse("deferrals", "a deferral count")?
            .unwrap_or(0),
        cancel_requested: hash.optional("cancel") == Some("1"),
        revoked_attempts: hash
            .optional("revoked")
            .map(|list| {
                list.split_whitespace()
                    .map(|a| AttemptId(a.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        retries: hash
            .optional_parse("retries", "a retry count")?
            .unwrap_or(0),
        preempted_at_ms: hash.optional_parse("preempted_ms", "a time in ms")?,
    })
}

/// Decodes one entry `delivery` of the assignment stream at `key`.
pub fn decode_assignment(key: &str, delivery: &str, fields: &Fields) -> Result<Assignment> {
    let hash = Hash { key, fields };
    let field = |name: &str| format!("{delivery}.{name}");
    let container = ContainerId::new(hash.text("container")?)
        .map_err(|e| corrupt(key, &field("container"), &e.to_string()))?;
    let payload: Payload = serde_json::from_str(hash.text("payload")?)
        .map_err(|e| corrupt(key, &field("payload"), &format!("is not a payload: {e}")))?;
    Ok(Assignment {
        delivery: delivery.to_owned(),
        container,
        attempt: AttemptId(hash.text("attempt")?.to_owned()),
        resources: Resources::new(
            hash.uint("cpu")?,
            hash.uint("mem")?,
            hash.parse("gpu", "a GPU count")?,
        ),
        devices: DeviceShare::parse_list(hash.optional("devices").unwrap_or(""))
            .map_err(|e| corrupt(key, &field("devices"), &e.to_string()))?,
        payload,
        preempts: hash
            .optional("preempts")
            .unwrap_or("")
            .split_whitespace()
            .map(|id| {
                ContainerId::new(id).map_err(|e| corrupt(key, &field("preempts"), &e.to_string()))
            })
            .collect::<Result<_>>()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::{GpuType, PlacementPolicy, PoolAttributes, PoolName, RuntimeName};

    const KEY: &str = "berth:{w:w1}:worker";

    /// A worker hash with every field, `runtime` included.
    fn worker_fields() -> Fields {
        [
            ("runtime", "runc"),
            ("pool", "gpu-a"),
            ("priority", "-3"),
            ("preemptible", "1"),
            ("requires_pool_selector", "0"),
            ("policy", "pack"),
            ("status", "available"),
            ("total_cpu", "8000"),
            ("total_mem", "32768"),
            ("total_gpu", "4"),
            ("free_cpu", "6000"),
            ("free_mem", "30000"),
            ("free_gpu", "3"),
            ("gpu_type", "a100-80"),
            ("version", "7"),
            ("epoch", "3"),
            ("heartbeat_ms", "123"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn decode(fields: &Fields) -> Result<Worker> {
        decode_worker(KEY, &WorkerId::new("w1").unwrap(), fields)
    }

    fn corrupt_field(result: Result<Worker>) -> (String, String, String) {
        match result {
            Err(StoreError::Corrupt {
                key,
                field,
                problem,
            }) => (key, field, problem),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_worker() {
        let worker = decode(&worker_fields()).unwrap();
        assert_eq!(worker.pool.priority, -3);
        assert!(worker.pool.preemptible);
        assert_eq!(worker.pool.policy, PlacementPolicy::Pack);
        assert_eq!(worker.total, Resources::new(8000, 32768, 4));
        assert_eq!(worker.free, Resources::new(6000, 30000, 3));
        assert_eq!(worker.gpu_type, Some(GpuType::A100_80));
        assert_eq!(worker.runtime, RuntimeName::RUNC);
        assert_eq!(worker.version, 7);
    }

    #[test]
    fn a_worker_stored_without_a_runtime_reads_as_process() {
        let mut fields = worker_fields();
        fields.remove("runtime");
        let worker = decode(&fields).unwrap();
        assert_eq!(worker.runtime, RuntimeName::PROCESS);
        assert_eq!(worker.total, Resources::new(8000, 32768, 4));
    }

    #[test]
    fn a_bad_runtime_is_named() {
        for bad in ["Runc", "", "run c"] {
            let mut fields = worker_fields();
            fields.insert("runtime".into(), bad.into());
            let (key, field, problem) = corrupt_field(decode(&fields));
            assert_eq!((key.as_str(), field.as_str()), (KEY, "runtime"));
            assert!(problem.contains(&format!("{bad:?}")), "{problem}");
        }
    }

    #[test]
    fn no_gpu_type_is_an_empty_string() {
        let mut fields = worker_fields();
        fields.insert("gpu_type".into(), String::new());
        assert_eq!(decode(&fields).unwrap().gpu_type, None);
    }

    #[test]
    fn a_missing_field_is_named() {
        let mut fields = worker_fields();
        fields.remove("free_mem");
        let (key, field, problem) = corrupt_field(decode(&fields));
        assert_eq!((key.as_str(), field.as_str()), (KEY, "free_mem"));
        assert!(problem.contains("missing"), "{problem}");
        let mut fields = worker_fields();
        fields.remove("gpu_type");
        assert_eq!(corrupt_field(decode(&fields)).1, "gpu_type");
    }

    #[test]
    fn a_non_numeric_field_is_named() {
        let mut fields = worker_fields();
        fields.insert("free_cpu".into(), "abc".into());
        let (key, field, problem) = corrupt_field(decode(&fields));
        assert_eq!((key.as_str(), field.as_str()), (KEY, "free_cpu"));
        assert!(problem.contains("abc"), "{problem}");
        let mut fields = worker_fields();
        fields.insert("version".into(), "-1".into());
        assert_eq!(corrupt_field(decode(&fields)).1, "version");
        let mut fields = worker_fields();
        fields.insert("total_gpu".into(), "99999999999".into());
        assert_eq!(corrupt_field(decode(&fields)).1, "total_gpu");
    }

    #[test]
    fn a_bad_status_is_named() {
        let mut fields = worker_fields();
        fields.insert("status".into(), "sleeping".into());
        let (_, field, problem) = corrupt_field(decode(&fields));
        assert_eq!(field, "status");
        assert!(problem.contains("sleeping"), "{problem}");
    }

    #[test]
    fn a_bad_gpu_type_is_named() {
        let mut fields = worker_fields();
        fields.insert("gpu_type".into(), "a100 80".into());
        let (_, field, problem) = corrupt_field(decode(&fields));
        assert_eq!(field, "gpu_type");
        assert!(problem.contains("a100 80"), "{problem}");
    }

    #[test]
    fn bad_flags_and_policies_are_named() {
        let mut fields = worker_fields();
        fields.insert("preemptible".into(), "yes".into());
        assert_eq!(corrupt_field(decode(&fields)).1, "preemptible");
        let mut fields = worker_fields();
        fields.insert("policy".into(), "random".into());
        assert_eq!(corrupt_field(decode(&fields)).1, "policy");
        let mut fields = worker_fields();
        fields.insert("pool".into(), "a{b}".into());
        assert_eq!(corrupt_field(decode(&fields)).1, "pool");
    }

    #[test]
    fn registration_round_trips_through_the_codec() {
        let registration = WorkerRegistration {
            devices: Vec::new(),
            id: WorkerId::new("w1").unwrap(),
            pool: PoolAttributes {
                pool: PoolName::new("p").unwrap(),
                priority: 5,
                preemptible: false,
                requires_pool_selector: true,
                policy: PlacementPolicy::Spread,
                cpu_on_gpu: Some(berth_core::CpuReserve {
                    cpu_millicores: 2000,
                    memory_mib: 4096,
                }),
            },
            status: WorkerStatus::Pending,
            total: Resources::new(1000, 2048, 0),
            gpu_type: None,
            runtime: RuntimeName::RUNC,
        };
        let args = registration_args(&registration, 42).unwrap();
        assert_eq!(
            args,
            [
                "42",
                "pending",
                "1000",
                "2048",
                "0",
                "",
                "pool",
                "p",
                "priority",
                "5",
                "preemptible",
                "0",
                "requires_pool_selector",
                "1",
                "policy",
                "spread",
                "gpu_type",
                "",
                "runtime",
                "runc",
                "gpu_devices",
                "",
                "cpu_on_gpu",
                "2000,4096"
            ]
        );
        let too_big = WorkerRegistration {
            total: Resources::new(MAX_LUA_INT + 1, 1, 0),
            ..registration
        };
        assert!(matches!(
            registration_args(&too_big, 42),
            Err(StoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn decodes_ownership_entries() {
        let key = "berth:{w:w1}:owned";
        let entry = decode_owned(key, "c1", "a1 500 256 1").unwrap();
        assert_eq!(entry.attempt, AttemptId("a1".into()));
        assert_eq!(entry.resources, Resources::new(500, 256, 1));
        assert!(entry.devices.is_empty());
        let entry = decode_owned(key, "c1", "a1 500 256 1 3:1000").unwrap();
        assert_eq!(entry.devices, [DeviceShare::whole(3)]);
        for bad in [
            "a1 500 256",
            "a1 x 256 1",
            " 1 2 3",
            "a1 1 2 99999999999",
            "a1 1 2 1 3:1001",
            "a1 1 2 1 3:0",
            "a1 1 2 1 x",
            "a1 1 2 1 3:1000 extra",
        ] {
            match decode_owned(key, "c1", bad) {
                Err(StoreError::Corrupt { key: k, field, .. }) => {
                    assert_eq!((k.as_str(), field.as_str()), (key, "c1"));
                }
                other => panic!("{bad:?}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_record_with_a_bad_request_is_named() {
        let key = "berth:{q}:c:c1";
        let fields: Fields = [("request", "{not json"), ("state", "pending")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        match decode_record(key, &fields) {
            Err(StoreError::Corrupt { field, .. }) => assert_eq!(field, "request"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
