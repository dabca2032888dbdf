//! What a client submits: [`ContainerSpec`], its GPU part [`GpuSpec`], and the validation
//! that turns it into a [`berth_core::ContainerRequest`].

use crate::error::ApiError;
use berth_core::fallback::MAX_FALLBACK_STEPS;
use berth_core::request::MAX_GPU_COUNT;
use berth_core::{
    ContainerId, ContainerRequest, FallbackStep, GpuPreference, GpuType, Payload, PoolName,
    RequestError, Resources,
};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use utoipa::ToSchema;

/// The reserved environment variable that carries a container's timeout to its worker:
/// `timeout_secs` of a [`ContainerSpec`] is stored in the payload's environment under this
/// key (in seconds, as decimal digits), and the worker kills the container once it has run
/// that long. A spec may not set it in `env` itself.
pub const TIMEOUT_ENV: &str = "BERTH_TIMEOUT_SECS";

/// The longest timeout accepted: 30 days.
pub const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// The most arguments a command may have.
pub const MAX_COMMAND_ARGS: usize = 4096;

/// The most environment variables a container may have.
pub const MAX_ENV_VARS: usize = 1024;

/// The longest tenant name, image reference or environment variable name, in bytes.
pub const MAX_NAME_LEN: usize = 512;

/// The timeout carried in a payload's environment under [`TIMEOUT_ENV`], if any.
pub fn timeout_secs(payload: &Payload) -> Option<u64> {
    payload.env.get(TIMEOUT_ENV)?.parse().ok()
}

/// Which GPU types a container accepts: the string `"any"`, or a list of type names in
/// order of preference (`["A100-80", "A100-40"]`; names are case-insensitive and may be
/// known ones such as T4, L4, A10G, A100-40, A100-80, H100, H200, L40S, A6000, RTX4090, or
/// any other name of letters, digits, `-`, `_` and `.`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GpuTypes {
    /// Any type will do.
    #[default]
    Any,
    /// Only these types, the first preferred (validated by
    /// [`ContainerSpec::into_request`]).
    List(Vec<String>),
}

impl Serialize for GpuTypes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuTypes::Any => serializer.serialize_str("any"),
            GpuTypes::List(types) => types.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GpuTypes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TypesVisitor;
        impl<'de> Visitor<'de> for TypesVisitor {
            type Value = GpuTypes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"any\" or a list of GPU type names")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<GpuTypes, E> {
                if value.eq_ignore_ascii_case("any") {
                    Ok(GpuTypes::Any)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GpuTypes, A::Error> {
                let mut types = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    types.push(name);
                }
                Ok(GpuTypes::List(types))
            }
        }
        deserializer.deserialize_any(TypesVisitor)
    }
}

impl utoipa::PartialSchema for GpuTypes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["any"]))
                    .description(Some("any GPU type will do")),
            )
            .item(
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("acceptable GPU types, the first preferred")),
            )
            .into()
    }
}

impl ToSchema for GpuTypes {}

/// The GPUs a container needs: `{"count": 2, "types": ["A100-80", "A100-40"]}` or
/// `{"count": 1, "types": "any"}` (`types` defaults to `"any"`). All of a container's GPUs
/// are of its worker's one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// How many whole GPUs, each a device of its own (omit `gpu` for a CPU-only container;
    /// 0 or absent with `milli`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65536)]
    pub count: u32,
    /// Instead of whole GPUs, a fraction of one GPU in milli-GPUs, 1 to 999 (`250` is a
    /// quarter): it lives on one device, which other fractions share. What it gets of the
    /// device is a share the scheduler books; the device itself does not enforce it unless
    /// the worker runs CUDA MPS (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 999)]
    pub milli: Option<u32>,
    /// Which types are acceptable.
    #[serde(default)]
    #[schema(inline)]
    pub types: GpuTypes,
}

fn default_tenant() -> String {
    ContainerSpec::DEFAULT_TENANT.to_owned()
}

/// A container to run: the body of `POST /v1/containers` and an element of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The container's id (ASCII letters, digits, `.`, `_`, `-`, `:`, starting with a letter
    /// or digit; at most 128 bytes).
    /// Supplying it makes the submit idempotent: submitting the same id again writes nothing
    /// and answers with the existing container's state. Generated (`c-` and 16 hex digits)
    /// when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub id: Option<String>,
    /// Who asks, for accounting (same alphabet as ids).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// CPU in millicores (1000 = one core), at least 1.
    pub cpu_millicores: u64,
    /// Memory in MiB, at least 1.
    pub memory_mib: u64,
    /// The GPUs it needs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
    /// Run only on workers of this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub pool: Option<String>,
    /// Higher runs first; a request that finds no room may preempt running preemptible
    /// containers of lower priority.
    #[serde(default)]
    pub priority: i32,
    /// Accepts interruption: may run on preemptible workers, and may be preempted (stopped
    /// with SIGTERM and its worker's stop grace, then ended `preempted` or requeued while
    /// `max_retries` lasts) for a request of higher priority.
    #[serde(default)]
    pub preemptible: bool,
    /// The container image, if the worker's runtime uses images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The command and its arguments; not empty.
    pub command: Vec<String>,
    /// Environment variables. [`TIMEOUT_ENV`] is reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables (API keys, passwords): given to the container like
    /// `env`, but never returned by the API nor logged; only the worker that runs the
    /// container receives them. A name may not be in both `env` and `secret_env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// The worker kills the container after this many seconds (1 to 30 days); carried to the
    /// worker in the environment under [`TIMEOUT_ENV`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// The fallback chain (beta9's GPU failover): pools or GPU types to accept next, in
    /// order, each once the container has waited its `after_ms` since submission; at most
    /// 8 steps, waits increasing. A step is used only while no earlier choice has room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 8)]
    pub fallback: Vec<FallbackSpec>,
    /// How many times the container is run again after its worker died under it (0 to
    /// 100): instead of ending `lost` it goes back to `pending` and is placed anew, from
    /// the start. 0 (the default): it ends `lost`.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(minimum = 0, maximum = 100)]
    pub max_retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One step of a fallback chain: `{"after_ms": 30000, "gpu_types": ["H100"]}` or
/// `{"after_ms": 30000, "pool": "h100"}`. It names a pool, GPU types, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    /// How long after submission the step becomes acceptable, in ms.
    pub after_ms: u64,
    /// The pool to try instead of `pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        min_length = 1,
        max_length = 128
    )]
    pub pool: Option<String>,
    /// The GPU types to try instead of `gpu.types`, the first preferred (only for a
    /// container with GPUs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_types: Vec<String>,
}

impl FallbackSpec {
    /// The core step, its names checked; errors name `field` (e.g. `fallback[0]`).
    fn to_step(&self, field: &str) -> Result<FallbackStep, ApiError> {
        let pool = match &self.pool {
            Some(pool) => Some(
                PoolName::new(pool.as_str())
                    .map_err(|e| ApiError::invalid(format!("{field}.pool"), e.to_string()))?,
            ),
            None => None,
        };
        let gpu = self
            .gpu_types
            .iter()
            .enumerate()
            .map(|(i, name)| parse_gpu_type(&format!("{field}.gpu_types[{i}]"), name))
            .collect::<Result<_, _>>()?;
        Ok(FallbackStep {
            after_ms: self.after_ms,
            pool,
            gpu,
        })
    }

    /// The API's view of a core step.
    pub fn of_step(step: &FallbackStep) -> FallbackSpec {
        FallbackSpec {
            after_ms: step.after_ms,
            pool: step.pool.as_ref().map(ToString::to_string),
            gpu_types: step.gpu.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The chain's steps, checked name by name (the chain itself is checked with the request).
fn fallback_steps(specs: &[FallbackSpec]) -> Result<Vec<FallbackStep>, ApiError> {
    if specs.len() > MAX_FALLBACK_STEPS {
        // Refused before the names are parsed: the list is bounded.
        return Err(request_error(RequestError::TooManyFallbackSteps {
            count: specs.len(),
            limit: MAX_FALLBACK_STEPS,
        }));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| spec.to_step(&format!("fallback[{i}]")))
        .collect()
}

impl ContainerSpec {
    /// The tenant of a spec that names none (a client token's own tenant replaces it).
    pub const DEFAULT_TENANT: &'static str = "default";

    /// A spec with the given size and command, and every other field at its default.
    pub fn new(cpu_millicores: u64, memory_mib: u64, command: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            id: None,
            tenant: default_tenant(),
            cpu_millicores,
            memory_mib,
            gpu: None,
            pool: None,
            priority: 0,
            preemptible: false,
            image: None,
            command,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            timeout_secs: None,
            fallback: Vec::new(),
            max_retries: 0,
        }
    }

    /// Validates the spec and builds the request the store accepts, submitted at `now_ms`,
    /// with `generated_id` when the spec has no id. Every error names the field at fault.
    pub fn into_request(
        self,
        now_ms: u64,
        generated_id: ContainerId,
    ) -> Result<ContainerRequest, ApiError> {
        let id = match &self.id {
            Some(id) => {
                ContainerId::new(id.as_str()).map_err(|e| ApiError::invalid("id", e.to_string()))?
            }
            None => generated_id,
        };
        check_name("tenant", &self.tenant)?;
        let pool_selector = match &self.pool {
            Some(pool) => Some(
                PoolName::new(pool.as_str())
                    .map_err(|e| ApiError::invalid("pool", e.to_string()))?,
            ),
            None => None,
        };
        let (gpu_count, gpu) = gpu_preference(self.gpu.as_ref())?;
        let fallback = fallback_steps(&self.fallback)?;
        let gpu_fraction_milli = self.gpu.as_ref().and_then(|g| g.milli);
        let mut payload = payload(self.image, self.command, self.env, self.timeout_secs)?;
        payload.secret_env = secret_env(self.secret_env, &payload.env)?;
        let request = ContainerRequest {
            gpu_fraction_milli,
            id,
            tenant: self.tenant,
            resources: Resources::new(self.cpu_millicores, self.memory_mib, gpu_count),
            gpu,
            pool_selector,
            preemptible: self.preemptible,
            priority: self.priority,
            submitted_at_ms: now_ms,
            payload,
            fallback,
            max_retries: self.max_retries,
        };
        request.validate().map_err(request_error)?;
        Ok(request)
    }
}

/// Checks a tenant-like name: the id alphabet, not empty, at most 128 bytes.
fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    // The id rules are the ones every name in berth follows.
    ContainerId::new(value)
        .map(|_| ())
        .map_err(|e| ApiError::invalid(field, e.to_string().replace("container id", field)))
}

fn gpu_preference(gpu: Option<&GpuSpec>) -> Result<(u32, GpuPreference), ApiError> {
    let Some(gpu) = gpu else {
        return Ok((0, GpuPreference::Any));
    };
    match (gpu.count, gpu.milli) {
        (0, None) => {
            return Err(ApiError::invalid(
                "gpu.count",
                "must be at least 1, or give gpu.milli (1 to 999) for a fraction of one GPU; omit gpu for a CPU-only container",
            ));
        }
        (count, Some(milli)) if count > 0 => {
            return Err(ApiError::invalid(
                "gpu.milli",
                format!("{milli} milli-GPUs and {count} whole GPUs: ask for one or the other"),
            ));
        }
        (_, Some(milli)) if !(1..1000).contains(&milli) => {
            return Err(ApiError::invalid(
                "gpu.milli",
                format!("must be 1 to 999 (got {milli}); ask for whole GPUs with gpu.count"),
            ));
        }
        _ => {}
    }
    if gpu.count > MAX_GPU_COUNT {
        return Err(ApiError::invalid(
            "gpu.count",
            format!("{} is above the limit of {MAX_GPU_COUNT}", gpu.count),
        ));
    }
    let preference = match &gpu.types {
        GpuTypes::Any => GpuPreference::Any,
        GpuTypes::List(names) if names.is_empty() => {
            return Err(ApiError::invalid(
                "gpu.types",
                "the list of GPU types is empty; list at least one type, or use \"any\"",
            ));
        }
        GpuTypes::List(names) => GpuPreference::Types(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| parse_gpu_type(&format!("gpu.types[{i}]"), name))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok((gpu.count, preference))
}

/// Parses a GPU type name, naming `field` on error.
pub fn parse_gpu_type(field: &str, name: &str) -> Result<GpuType, ApiError> {
    name.parse()
        .map_err(|e: berth_core::GpuTypeError| ApiError::invalid(field, e.to_string()))
}

fn payload(
    image: Option<String>,
    command: Vec<String>,
    mut env: BTreeMap<String, String>,
    timeout: Option<u64>,
) -> Result<Payload, ApiError> {
    if let Some(image) = &image {
        let bad = image.is_empty()
            || image.len() > MAX_NAME_LEN
            || image.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(ApiError::invalid(
                "image",
                format!("must be 1 to {MAX_NAME_LEN} bytes without spaces or control characters"),
            ));
        }
    }
    if command.first().is_none_or(String::is_empty) {
        return Err(ApiError::invalid(
            "command",
            "must name a program: give a non-empty list whose first element is not empty",
        ));
    }
    if command.len() > MAX_COMMAND_ARGS {
        return Err(ApiError::invalid(
            "command",
            format!(
                "has {} arguments; the limit is {MAX_COMMAND_ARGS}",
                command.len()
            ),
        ));
    }
    if let Some(i) = command.iter().position(|arg| arg.contains('\0')) {
        return Err(ApiError::invalid(
            format!("command[{i}]"),
            "must not contain NUL characters",
        ));
    }
    if env.len() > MAX_ENV_VARS {
        return Err(ApiError::invalid(
            "env",
            format!("has {} variables; the limit is {MAX_ENV_VARS}", env.len()),
        ));
    }
    for (name, value) in &env {
        check_env_name(name)?;
        if value.contains('\0') {
            return Err(ApiError::invalid(
                format!("env.{name}"),
                "must not contain NUL characters",
            ));
        }
    }
    if let Some(secs) = timeout {
        if secs == 0 || secs > MAX_TIMEOUT_SECS {
            return Err(ApiError::invalid(
                "timeout_secs",
                format!("must be between 1 and {MAX_TIMEOUT_SECS} (30 days), got {secs}"),
            ));
        }
        env.insert(TIMEOUT_ENV.to_owned(), secs.to_string());
    }
    Ok(Payload {
        image,
        command,
        env,
        secret_env: berth_core::SecretEnv::default(),
    })
}

/// Checks secret variables like `env`'s, and that none shares a name with `env` (which
/// value would win would be the runtime's guess). Together they stay within
/// [`MAX_ENV_VARS`].
fn secret_env(
    secrets: BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> Result<berth_core::SecretEnv, ApiError> {
    if secrets.len() + env.len() > MAX_ENV_VARS {
        return Err(ApiError::invalid(
            "secret_env",
            format!(
                "env and secret_env have {} variables together; the limit is {MAX_ENV_VARS}",
                secrets.len() + env.len()
            ),
        ));
    }
    for (name, value) in &secrets {
        check_env_name(name).map_err(|mut error| {
            error.field = Some(format!("secret_env.{name}"));
            error
        })?;
        if env.contains_key(name) {
            return Err(ApiError::invalid(
                format!("secret_env.{name}"),
                "is in env too; give each variable once",
            ));
        }
        if value.contains('\0') {
            return Err(ApiError::invalid(
                format!("secret_env.{name}"),
                "must not contain NUL characters",
            ));
        }
    }
    Ok(berth_core::SecretEnv(secrets))
}

fn check_env_name(name: &str) -> Result<(), ApiError> {
    if name == TIMEOUT_ENV {
        return Err(ApiError::invalid(
            format!("env.{name}"),
            format!("{TIMEOUT_ENV} is reserved; set timeout_secs instead"),
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        let shown: String = name.chars().take(64).collect();
        return Err(ApiError::invalid(
            format!("env.{shown}"),
            "environment variable names are letters, digits and '_', not starting with a digit",
        ));
    }
    Ok(())
}

/// Maps the core's validation error to the spec's field names.
fn request_error(error: RequestError) -> ApiError {
    let field = match &error {
        RequestError::ZeroSized { field } | RequestError::TooLarge { field, .. } => match *field {
            "gpu_count" => "gpu.count".to_owned(),
            other => other.to_owned(),
        },
        RequestError::TypesWithoutCount | RequestError::EmptyTypeList => "gpu.types".to_owned(),
        RequestError::BadFraction(_) | RequestError::WholeAndFraction { .. } => {
            "gpu.milli".to_owned()
        }
        RequestError::TooManyFallbackSteps { .. } => "fallback".to_owned(),
        RequestError::FallbackWaitsNotIncreasing { index } => format!("fallback[{index}].after_ms"),
        RequestError::EmptyFallbackStep { index } => format!("fallback[{index}]"),
        RequestError::FallbackGpuWithoutGpus { index } => format!("fallback[{index}].gpu_types"),
    };
    let message = match &error {
        RequestError::ZeroSized { field } => {
            format!(
                "must be at least 1 (a container must request some {})",
                unit(field)
            )
        }
        RequestError::TooLarge { value, limit, .. } => {
            format!("{value} is above the limit of {limit}")
        }
        other => other.to_string(),
    };
    ApiError::invalid(field, message)
}

fn unit(field: &str) -> &'static str {
    match field {
        "cpu_millicores" => "CPU",
        "memory_mib" => "memory",
        _ => "resources",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn generated() -> ContainerId {
        ContainerId::new("gen-1").unwrap()
    }

    fn spec(json: &str) -> ContainerSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_minimal_spec_takes_the_defaults() {
        let request = spec(r#"{"cpu_millicores": 500, "memory_mib": 256, "command": ["true"]}"#)
            .into_request(7, generated())
            .unwrap();
        assert_eq!(request.id.as_str(), "gen-1");
        assert_eq!(request.tenant, "default");
        assert_eq!(request.resources, Resources::new(500, 256, 0));
        assert_eq!(request.submitted_at_ms, 7);
        assert_eq!(request.payload.command, vec!["true".to_owned()]);
    }

    #[test]
    fn max_retries_reaches_the_request_and_zero_is_left_out() {
        let json = r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "max_retries": 3}"#;
        let request = spec(json).into_request(0, generated()).unwrap();
        assert_eq!(request.max_retries, 3);
        let text = serde_json::to_string(&request).unwrap();
        assert!(text.contains(r#""max_retries":3"#), "{text}");
        let plain = ContainerSpec::new(1, 1, vec!["a".into()]);
        let text = serde_json::to_string(&plain.into_request(0, generated()).unwrap()).unwrap();
        assert!(
            !text.contains("max_retries"),
            "stored records stay as before: {text}"
        );
    }

    #[test]
    fn gpus_by_list_or_any() {
        let request = spec(
            r#"{"id": "x", "cpu_millicores": 1, "memory_mib": 1, "command": ["a"],
                "gpu": {"count": 2, "types": ["a10g", "A100-40"]}}"#,
        )
        .into_request(0, generated())
        .unwrap();
        assert_eq!(request.id.as_str(), "x");
        assert_eq!(request.resources.gpu_count, 2);
        assert_eq!(
            request.gpu,
            GpuPreference::Types(vec![GpuType::A10G, GpuType::A100_40])
        );
        let any = spec(
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1, "types": "any"}}"#,
        );
        assert_eq!(any.gpu.as_ref().unwrap().types, GpuTypes::Any);
        let omitted = spec(
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1}}"#,
        );
        assert_eq!(omitted.gpu.as_ref().unwrap().types, GpuTypes::Any);
        let text = serde_json::to_string(&any).unwrap();
        assert!(text.contains(r#""types":"any""#), "{text}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#""cpu_millicores": 0, "memory_mib": 1, "command": ["a"]"#,
                "cpu_millicores",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 0, "command": ["a"]"#,
                "memory_mib",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1099511627777, "command": ["a"]"#,
                "memory_mib",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": []"#,
                "command",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": [""]"#,
                "command",
            ),
            (
                r#""id": "a{b}", "cpu_millicores": 1, "memory_mib": 1, "command": ["a"]"#,
                "id",
            ),
            (
                r#""pool": "p q", "cpu_millicores": 1, "memory_mib": 1, "command": ["a"]"#,
                "pool",
            ),
            (
                r#""tenant": "", "cpu_millicores": 1, "memory_mib": 1, "command": ["a"]"#,
                "tenant",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1, "types": ["A100 40"]}"#,
                "gpu.types[0]",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 0}"#,
                "gpu.count",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1, "types": []}"#,
                "gpu.types",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 100000}"#,
                "gpu.count",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "env": {"BERTH_TIMEOUT_SECS": "1"}"#,
                "env.BERTH_TIMEOUT_SECS",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "env": {"1X": "1"}"#,
                "env.1X",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "timeout_secs": 0"#,
                "timeout_secs",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "image": "a b""#,
                "image",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "max_retries": 101"#,
                "max_retries",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "fallback": [{"after_ms": 1, "pool": "a b"}]"#,
                "fallback[0].pool",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1}, "fallback": [{"after_ms": 1, "gpu_types": ["H100", "a b"]}]"#,
                "fallback[0].gpu_types[1]",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1}, "fallback": [{"after_ms": 5, "pool": "a"}, {"after_ms": 5, "pool": "b"}]"#,
                "fallback[1].after_ms",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "fallback": [{"after_ms": 5}]"#,
                "fallback[0]",
            ),
            (
                r#""cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "fallback": [{"after_ms": 5, "gpu_types": ["H100"]}]"#,
                "fallback[0].gpu_types",
            ),
        ];
        for (body, field) in cases {
            let error = spec(&format!("{{{body}}}"))
                .into_request(0, generated())
                .unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{body}: {error}");
        }
    }

    #[test]
    fn a_fallback_chain_becomes_the_requests_steps() {
        let body = r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"],
            "gpu": {"count": 1, "types": ["A100-80"]},
            "fallback": [{"after_ms": 300, "gpu_types": ["h100"]}, {"after_ms": 900, "pool": "spot"}]}"#;
        let request = spec(body).into_request(0, generated()).unwrap();
        assert_eq!(request.fallback.len(), 2);
        assert_eq!(request.fallback[0].gpu, [berth_core::GpuType::H100]);
        assert_eq!(request.fallback[1].pool.as_ref().unwrap().as_str(), "spot");
        let view: Vec<FallbackSpec> = request.fallback.iter().map(FallbackSpec::of_step).collect();
        assert_eq!(view[0].gpu_types, ["H100"]);
    }

    #[test]
    fn the_timeout_travels_in_the_environment() {
        let mut spec = ContainerSpec::new(1, 1, vec!["sleep".into(), "9".into()]);
        spec.timeout_secs = Some(60);
        let request = spec.into_request(0, generated()).unwrap();
        assert_eq!(
            request.payload.env.get(TIMEOUT_ENV).map(String::as_str),
            Some("60")
        );
        assert_eq!(timeout_secs(&request.payload), Some(60));
    }

    #[test]
    fn unknown_fields_and_bad_gpu_shapes_are_refused() {
        let unknown: Result<ContainerSpec, _> = serde_json::from_str(
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "cpus": 2}"#,
        );
        assert!(unknown.is_err());
        let bad_types: Result<ContainerSpec, _> = serde_json::from_str(
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "gpu": {"count": 1, "types": "some"}}"#,
        );
        assert!(bad_types.is_err());
    }
}
