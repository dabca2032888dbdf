//! `berth server`'s configuration file (TOML). Unknown keys are errors; every value is
//! checked, and an error names the key and says what would be right. Flags and environment
//! variables override the file (see `berth server --help`).

use crate::provisioner::{Provisioner, Provisioners, Target};
use crate::units::{parse_cpu, parse_gpus, parse_memory};
use berth_core::fallback::MAX_FALLBACK_STEPS;
use berth_core::{
    CpuReserve, FallbackStep, GpuType, PlacementPolicy, Pool, PoolAttributes, PoolName, Resources,
    Tenant, TenantName,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The address the API listens on, e.g. `127.0.0.1:7700`.
    pub listen: Option<String>,
    /// Where the state lives.
    #[serde(default)]
    pub store: StoreSection,
    /// Engine tuning.
    #[serde(default)]
    pub engine: EngineSection,
    /// Liveness of workers.
    #[serde(default)]
    pub workers: WorkersSection,
    /// The pools workers join and an autoscaler grows.
    #[serde(default)]
    pub pools: Vec<PoolSection>,
    /// Tenants' quotas and weights, stored at every start (the API may change them while
    /// the server runs; the file wins at the next start).
    #[serde(default)]
    pub tenants: Vec<TenantSection>,
}

/// One `[[tenants]]` entry: `name = "acme"`, `weight = 2`, and limits that apply to what
/// the tenant holds at once: `containers = 10`, `cpu = "16"`, `memory = "64Gi"`,
/// `gpus = "4"`, `gpus_by_type = { H100 = "2" }`. An absent limit does not apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// The tenant.
    pub name: String,
    /// Its share of contended capacity (1 to 10000; default 1).
    pub weight: Option<u32>,
    /// Containers scheduled or running at once.
    pub containers: Option<u64>,
    /// CPU, as `16` or `1500m`.
    pub cpu: Option<String>,
    /// Memory, as `64Gi`.
    pub memory: Option<String>,
    /// GPUs of every type, as `4` or `2.5`.
    pub gpus: Option<String>,
    /// GPUs by type, as `{ H100 = "2" }`.
    #[serde(default)]
    pub gpus_by_type: std::collections::BTreeMap<String, String>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Redis URLs: none for the embedded store, one for standalone Redis, several for a
    /// Redis Cluster (its seed nodes).
    #[serde(default)]
    pub redis: Vec<String>,
    /// The prefix of every Redis key.
    pub prefix: Option<String>,
    /// Redis: wait for this many replicas to have each batch's commits before settling it
    /// (`WAIT`; 0, the default, does not wait).
    pub replica_acks: Option<u32>,
    /// Redis: how long one such wait may take, in milliseconds (default 500).
    pub replica_timeout_ms: Option<u64>,
    /// Redis: the ACL user, for URLs that name none (`--redis-username`).
    pub username: Option<String>,
    /// Redis: a file holding the password, for URLs that carry none
    /// (`--redis-password-file`).
    pub password_file: Option<PathBuf>,
    /// Redis: the CA certificate (PEM) that `rediss://` servers must chain to
    /// (`--redis-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Redis: a client certificate (PEM) for mutual TLS (`--redis-client-cert`).
    pub client_cert_file: Option<PathBuf>,
    /// Redis: the private key (PEM) of `client_cert_file` (`--redis-client-key`).
    pub client_key_file: Option<PathBuf>,
}

/// `[engine]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// `serial`, `batch-lock` or `batch-script`.
    pub strategy: Option<String>,
    /// The most requests one batch plans and commits (default 2,048; 1 to 100,000).
    pub max_batch: Option<usize>,
    /// The most requests per batch that may preempt running containers (default 4; 0
    /// turns preemption off; at most 1,000).
    pub max_preemptions: Option<usize>,
    /// How long a request may wait for room, in seconds.
    pub deadline_secs: Option<u64>,
    /// How long a worker a provisioner started counts toward its pool's demand before it
    /// registers, in seconds (default 300).
    pub registration_timeout_secs: Option<u64>,
}

/// `[workers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSection {
    /// A worker silent for this long is declared lost, in seconds.
    pub heartbeat_timeout_secs: Option<u64>,
}

/// One `[[pools]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// The pool's name.
    pub name: String,
    /// The GPU type of its workers.
    pub gpu_type: Option<String>,
    /// Higher is preferred.
    #[serde(default)]
    pub priority: i32,
    /// Its workers may be reclaimed.
    #[serde(default)]
    pub preemptible: bool,
    /// Only requests that select it go there.
    #[serde(default)]
    pub requires_selector: bool,
    /// `spread` or `pack`.
    pub policy: Option<String>,
    /// The size of one worker an autoscaler would add.
    pub worker_size: Option<WorkerSize>,
    /// Lets CPU-only requests use the pool's GPU workers, each keeping this much free for
    /// GPU work: `{ cpu = "8", memory = "32Gi" }`. Absent: GPU workers take GPU requests
    /// only.
    pub cpu_on_gpu: Option<ReserveSection>,
    /// The pools a request that selects this one may go to next, in order, each after its
    /// wait: `fallback = [{ pool = "h100", after_secs = 30 }]`.
    #[serde(default)]
    pub fallback: Vec<FallbackSection>,
    /// What starts and stops the pool's workers: `{ command = ["/path/prog", "arg"] }` or
    /// `{ url = "http://..." }`. Absent: the pool grows only by hand.
    pub provisioner: Option<ProvisionerSection>,
    /// A worker of the pool owning nothing for this long, in seconds, is drained and handed
    /// to the provisioner to stop. Absent: never.
    pub idle_timeout_secs: Option<u64>,
}

/// One step of a pool's fallback chain: `{ pool = "h100", after_secs = 30 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSection {
    /// A configured pool to try next.
    pub pool: String,
    /// How long after submission, in seconds.
    pub after_secs: u64,
}

/// A pool's provisioner: exactly one of `command` and `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerSection {
    /// An executable and its arguments, given the call as JSON on stdin.
    pub command: Option<Vec<String>>,
    /// An http URL the call is POSTed to as JSON (no https yet).
    pub url: Option<String>,
    /// How long one call may take, in seconds (default 60).
    pub timeout_secs: Option<u64>,
}

impl ProvisionerSection {
    /// The command or the URL, checked.
    fn target(&self, key: &str) -> Result<Target, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{key}.provisioner{field}"),
            message,
        };
        match (&self.command, &self.url) {
            (Some(command), None) => {
                if command
                    .first()
                    .is_none_or(|program| program.trim().is_empty())
                {
                    return Err(invalid(
                        ".command",
                        "needs a program to run: [\"/path/prog\", \"arg\", ...]".into(),
                    ));
                }
                Ok(Target::Command(command.clone()))
            }
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| invalid(".url", format!("{url:?} is not a URL: {e}")))?;
                // The workspace's reqwest is built without TLS (its TLS backends pull a slow
                // C build), so an https URL could never be called: refused here, not at
                // the first call.
                if parsed.scheme() != "http" {
                    return Err(invalid(
                        ".url",
                        format!("{url:?} is not an http URL (https is not supported yet)"),
                    ));
                }
                Ok(Target::Webhook(parsed))
            }
            _ => Err(invalid("", "needs exactly one of command and url".into())),
        }
    }
}

/// What a GPU worker keeps free for GPU work while CPU-only requests run on it:
/// `{ cpu = "8", memory = "32Gi" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveSection {
    /// CPU, as `8` or `8000m`.
    pub cpu: String,
    /// Memory, as `32Gi`.
    pub memory: String,
}

/// A worker's size in the file: `{ cpu = "16", memory = "64Gi", gpus = 8 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSize {
    /// CPU, as `16` or `16000m`.
    pub cpu: String,
    /// Memory, as `64Gi`.
    pub memory: String,
    /// GPUs.
    #[serde(default)]
    pub gpus: u32,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// What toml said (it names the key and the line).
        message: String,
    },
    /// A value is out of its domain.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `pools[1].policy`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

impl FileConfig {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        FileConfig::parse(&text, &shown)
    }

    /// Parses and checks TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        let config: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.pools()?;
        config.tenants()?;
        config.provisioners()?;
        Ok(config)
    }

    /// The tenants' policies, checked; a name given twice is an error.
    pub fn tenants(&self) -> Result<Vec<Tenant>, ConfigError> {
        let mut tenants: Vec<Tenant> = Vec::new();
        for (i, section) in self.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            let tenant = section.to_tenant(&key)?;
            if tenants.iter().any(|t| t.name == tenant.name) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.name"),
                    message: format!("tenant {} is listed twice; list each once", tenant.name),
                });
            }
            tenants.push(tenant);
        }
        Ok(tenants)
    }

    /// The pools' provisioners, checked.
    pub fn provisioners(&self) -> Result<Provisioners, ConfigError> {
        let mut by_pool = std::collections::HashMap::new();
        for (i, section) in self.pools.iter().enumerate() {
            let key = format!("pools[{i}]");
            if let Some(provisioner) = section.to_provisioner(&key)? {
                let name = section.to_pool(&key)?.attributes.pool;
                by_pool.insert(name, provisioner);
            }
        }
        Ok(Provisioners { by_pool })
    }

    /// The pools, checked: each alone, then that every fallback names a configured pool.
    pub fn pools(&self) -> Result<Vec<Pool>, ConfigError> {
        let pools: Vec<Pool> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, section)| section.to_pool(&format!("pools[{i}]")))
            .collect::<Result<_, _>>()?;
        for (i, pool) in pools.iter().enumerate() {
            for (j, step) in pool.fallback.iter().enumerate() {
                let known = pools
                    .iter()
                    .any(|p| Some(&p.attributes.pool) == step.pool.as_ref());
                if !known {
                    return Err(ConfigError::Invalid {
                        key: format!("pools[{i}].fallback[{j}].pool"),
                        message: format!(
                            "no [[pools]] entry is named {:?}; name a configured pool",
                            self.pools[i].fallback[j].pool
                        ),
                    });
                }
            }
        }
        Ok(pools)
    }
}

impl TenantSection {
    fn to_tenant(&self, key: &str) -> Result<Tenant, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{key}.{field}"),
            message,
        };
        let name = TenantName::new(&self.name).map_err(|e| invalid("name", e.to_string()))?;
        let parsed =
            |field: &str,
             text: &Option<String>,
             parse: fn(&str) -> Result<u64, crate::units::UnitError>| {
                text.as_deref()
                    .map(parse)
                    .transpose()
                    .map_err(|e| invalid(field, e.to_string()))
            };
        let mut by_type = std::collections::BTreeMap::new();
        for (gpu_type, amount) in &self.gpus_by_type {
            let milli = parse_gpus(amount)
                .map_err(|e| invalid(&format!("gpus_by_type.{gpu_type}"), e.to_string()))?;
            by_type.insert(gpu_type.clone(), milli);
        }
        let spec = berth_api::TenantSpec {
            quota: berth_api::QuotaView {
                containers: self.containers,
                cpu_millicores: parsed("cpu", &self.cpu, parse_cpu)?,
                memory_mib: parsed("memory", &self.memory, parse_memory)?,
                gpu_milli: parsed("gpus", &self.gpus, parse_gpus)?,
                gpu_milli_by_type: by_type,
            },
            weight: self.weight,
        };
        spec.to_tenant(name).map_err(|e| ConfigError::Invalid {
            key: key.to_owned(),
            message: e.to_string(),
        })
    }
}

/// How long a provisioner call may take unless the file says.
const PROVISIONER_TIMEOUT: Duration = Duration::from_secs(60);

impl PoolSection {
    /// The pool's provisioner, if it has one.
    fn to_provisioner(&self, key: &str) -> Result<Option<Provisioner>, ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            key: format!("{key}.{field}"),
            message: message.to_owned(),
        };
        let Some(section) = &self.provisioner else {
            if self.idle_timeout_secs.is_some() {
                return Err(invalid(
                    "idle_timeout_secs",
                    "removing idle workers needs a provisioner to stop them",
                ));
            }
            return Ok(None);
        };
        let seconds = |field: &str, value: Option<u64>| match value {
            Some(0) => Err(invalid(field, "must be at least 1 second")),
            other => Ok(other.map(Duration::from_secs)),
        };
        Ok(Some(Provisioner {
            target: section.target(key)?,
            timeout: seconds("provisioner.timeout_secs", section.timeout_secs)?
                .unwrap_or(PROVISIONER_TIMEOUT),
            idle_timeout: seconds("idle_timeout_secs", self.idle_timeout_secs)?,
        }))
    }

    fn to_pool(&self, key: &str) -> Result<Pool, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{key}.{field}"),
            message,
        };
        let name = PoolName::new(&self.name).map_err(|e| invalid("name", e.to_string()))?;
        let policy = match &self.policy {
            None => PlacementPolicy::Spread,
            Some(text) => text
                .parse()
                .map_err(|e| invalid("policy", format!("{e}")))?,
        };
        let gpu_type = self
            .gpu_type
            .as_deref()
            .map(str::parse::<GpuType>)
            .transpose()
            .map_err(|e| invalid("gpu_type", e.to_string()))?;
        let worker_size = match &self.worker_size {
            None => Resources::ZERO,
            Some(size) => Resources::new(
                parse_cpu(&size.cpu).map_err(|e| invalid("worker_size.cpu", e.to_string()))?,
                parse_memory(&size.memory)
                    .map_err(|e| invalid("worker_size.memory", e.to_string()))?,
                size.gpus,
            ),
        };
        let cpu_on_gpu = match &self.cpu_on_gpu {
            None => None,
            Some(reserve) => Some(CpuReserve {
                cpu_millicores: parse_cpu(&reserve.cpu)
                    .map_err(|e| invalid("cpu_on_gpu.cpu", e.to_string()))?,
                memory_mib: parse_memory(&reserve.memory)
                    .map_err(|e| invalid("cpu_on_gpu.memory", e.to_string()))?,
            }),
        };
        if worker_size.gpu_count > 0 && gpu_type.is_none() {
            return Err(invalid(
                "gpu_type",
                "worker_size has GPUs, so the pool needs a gpu_type".into(),
            ));
        }
        let fallback = self.fallback_steps(&name, key)?;
        Ok(Pool {
            attributes: PoolAttributes {
                pool: name,
                priority: self.priority,
                preemptible: self.preemptible,
                requires_pool_selector: self.requires_selector,
                policy,
                cpu_on_gpu,
            },
            gpu_type,
            worker_size,
            fallback,
        })
    }

    /// The fallback chain: at most [`MAX_FALLBACK_STEPS`] steps, each naming another pool
    /// (checked to exist by [`FileConfig::pools`]), waits strictly increasing.
    fn fallback_steps(&self, own: &PoolName, key: &str) -> Result<Vec<FallbackStep>, ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            key: format!("{key}.{field}"),
            message,
        };
        if self.fallback.len() > MAX_FALLBACK_STEPS {
            return Err(invalid(
                "fallback".into(),
                format!("at most {MAX_FALLBACK_STEPS} steps"),
            ));
        }
        let mut steps: Vec<FallbackStep> = Vec::new();
        for (j, section) in self.fallback.iter().enumerate() {
            let pool = PoolName::new(&section.pool)
                .map_err(|e| invalid(format!("fallback[{j}].pool"), e.to_string()))?;
            if pool == *own {
                return Err(invalid(
                    format!("fallback[{j}].pool"),
                    "a pool cannot fall back to itself".into(),
                ));
            }
            let after_ms = section.after_secs.saturating_mul(1000);
            if steps
                .last()
                .is_some_and(|before| after_ms <= before.after_ms)
            {
                return Err(invalid(
                    format!("fallback[{j}].after_secs"),
                    "must be longer than the step before it".into(),
                ));
            }
            steps.push(FallbackStep {
                after_ms,
                pool: Some(pool),
                gpu: Vec::new(),
            });
        }
        Ok(steps)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:7700"
[store]
redis = ["redis://127.0.0.1:6379/"]
[engine]
strategy = "batch-script"
max_preemptions = 0
[[pools]]
name = "gpu"
gpu_type = "a100-80"
priority = 10
requires_selector = true
policy = "pack"
worker_size = { cpu = "32", memory = "256Gi", gpus = 8 }
cpu_on_gpu = { cpu = "4", memory = "64Gi" }
[[pools]]
name = "cpu"
"#;

    #[test]
    fn a_full_file_parses() {
        let config = FileConfig::parse(EXAMPLE, "example").unwrap();
        assert_eq!(config.engine.max_preemptions, Some(0));
        let pools = config.pools().unwrap();
        assert_eq!(pools[0].gpu_type, Some(GpuType::A100_80));
        assert_eq!(pools[0].worker_size, Resources::new(32_000, 262_144, 8));
        assert_eq!(pools[0].attributes.policy, PlacementPolicy::Pack);
        assert!(pools[0].attributes.requires_pool_selector);
        assert_eq!(
            pools[0].attributes.cpu_on_gpu,
            Some(CpuReserve {
                cpu_millicores: 4000,
                memory_mib: 65_536
            })
        );
        assert_eq!(pools[1].attributes.cpu_on_gpu, None, "off unless asked for");
    }

    #[test]
    fn a_bad_cpu_on_gpu_reserve_names_its_key() {
        let pool = |reserve: &str| format!("[[pools]]\nname = \"a\"\ncpu_on_gpu = {reserve}\n");
        let error =
            FileConfig::parse(&pool(r#"{ cpu = "lots", memory = "1Gi" }"#), "f").unwrap_err();
        assert!(
            error.to_string().starts_with("pools[0].cpu_on_gpu.cpu"),
            "{error}"
        );
        let error = FileConfig::parse(&pool(r#"{ cpu = "1", memory = "-1Gi" }"#), "f").unwrap_err();
        assert!(
            error.to_string().starts_with("pools[0].cpu_on_gpu.memory"),
            "{error}"
        );
        let error = FileConfig::parse(&pool(r#"{ cpu = "1" }"#), "f").unwrap_err();
        assert!(error.to_string().contains("memory"), "{error}");
        let error = FileConfig::parse(&pool("true"), "f").unwrap_err();
        assert!(error.to_string().contains("cpu_on_gpu"), "{error}");
    }

    #[test]
    fn the_redis_access_keys_parse() {
        let text = "[store]\nredis = [\"rediss://h:6380/\"]\nusername = \"berth\"\n\
                    password_file = \"/run/pw\"\nca_file = \"/etc/ca.pem\"\n\
                    client_cert_file = \"/etc/c.pem\"\nclient_key_file = \"/etc/k.pem\"\n";
        let store = FileConfig::parse(text, "f").unwrap().store;
        assert_eq!(store.username.as_deref(), Some("berth"));
        assert_eq!(store.password_file.as_deref(), Some(Path::new("/run/pw")));
        assert_eq!(store.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            store.client_cert_file.as_deref(),
            Some(Path::new("/etc/c.pem"))
        );
        assert_eq!(
            store.client_key_file.as_deref(),
            Some(Path::new("/etc/k.pem"))
        );
    }

    #[test]
    fn a_pool_falls_back_to_configured_pools_after_a_wait() {
        let file = "[[pools]]\nname = \"a100\"\nfallback = [{ pool = \"h100\", after_secs = 30 }]\n[[pools]]\nname = \"h100\"\n";
        let pools = FileConfig::parse(file, "f").unwrap().pools().unwrap();
        assert_eq!(
            pools[0].fallback,
            [FallbackStep {
                after_ms: 30_000,
                pool: Some(PoolName::new("h100").unwrap()),
                gpu: Vec::new(),
            }]
        );
        assert!(pools[1].fallback.is_empty());
    }

    #[test]
    fn a_bad_pool_fallback_names_its_key() {
        let unknown = "[[pools]]\nname = \"a\"\nfallback = [{ pool = \"nope\", after_secs = 1 }]\n";
        let error = FileConfig::parse(unknown, "f").unwrap_err();
        assert!(
            error.to_string().starts_with("pools[0].fallback[0].pool"),
            "{error}"
        );
        let itself = "[[pools]]\nname = \"a\"\nfallback = [{ pool = \"a\", after_secs = 1 }]\n";
        let error = FileConfig::parse(itself, "f").unwrap_err();
        assert!(
            error.to_string().starts_with("pools[0].fallback[0].pool"),
            "{error}"
        );
        let order = "[[pools]]\nname = \"a\"\nfallback = [{ pool = \"b\", after_secs = 9 }, { pool = \"c\", after_secs = 9 }]\n[[pools]]\nname = \"b\"\n[[pools]]\nname = \"c\"\n";
        let error = FileConfig::parse(order, "f").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("pools[0].fallback[1].after_secs"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = FileConfig::parse("listen = \"x\"\nlisten_port = 1\n", "f").unwrap_err();
        assert!(error.to_string().contains("listen_port"), "{error}");
        let error = FileConfig::parse("[[pools]]\nname = \"a\"\ncolour = 1\n", "f").unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn provisioners_parse_per_pool() {
        let text = "[[pools]]\nname = \"a\"\nidle_timeout_secs = 600\n\
                    provisioner = { command = [\"/bin/grow\", \"--fast\"], timeout_secs = 5 }\n\
                    [[pools]]\nname = \"b\"\nprovisioner = { url = \"http://h:8/grow\" }\n\
                    [[pools]]\nname = \"c\"\n";
        let provisioners = FileConfig::parse(text, "f")
            .unwrap()
            .provisioners()
            .unwrap();
        let a = &provisioners.by_pool[&PoolName::new("a").unwrap()];
        assert_eq!(
            a.target,
            Target::Command(vec!["/bin/grow".into(), "--fast".into()])
        );
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.idle_timeout, Some(Duration::from_secs(600)));
        let b = &provisioners.by_pool[&PoolName::new("b").unwrap()];
        assert!(matches!(&b.target, Target::Webhook(url) if url.as_str() == "http://h:8/grow"));
        assert_eq!((b.timeout, b.idle_timeout), (PROVISIONER_TIMEOUT, None));
        assert_eq!(provisioners.by_pool.len(), 2, "c has none");
    }

    #[test]
    fn bad_provisioners_name_their_key() {
        let pool = |rest: &str| format!("[[pools]]\nname = \"a\"\n{rest}\n");
        for (rest, key) in [
            (
                "provisioner = { command = [] }",
                "pools[0].provisioner.command",
            ),
            (
                "provisioner = { command = [\" \"] }",
                "pools[0].provisioner.command",
            ),
            (
                "provisioner = { url = \"not a url\" }",
                "pools[0].provisioner.url",
            ),
            (
                "provisioner = { url = \"ftp://h/x\" }",
                "pools[0].provisioner.url",
            ),
            (
                "provisioner = { url = \"https://h/x\" }",
                "pools[0].provisioner.url",
            ),
            ("provisioner = {}", "pools[0].provisioner"),
            (
                "provisioner = { url = \"http://h/\", command = [\"x\"] }",
                "pools[0].provisioner",
            ),
            (
                "provisioner = { url = \"http://h/\", timeout_secs = 0 }",
                "pools[0].provisioner.timeout_secs",
            ),
            (
                "provisioner = { url = \"http://h/\" }\nidle_timeout_secs = 0",
                "pools[0].idle_timeout_secs",
            ),
            ("idle_timeout_secs = 60", "pools[0].idle_timeout_secs"),
        ] {
            let error = FileConfig::parse(&pool(rest), "f").unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("{key}:")),
                "{rest}: {error}"
            );
        }
        let error = FileConfig::parse(&pool("provisioner = { cmd = [\"x\"] }"), "f").unwrap_err();
        assert!(error.to_string().contains("cmd"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let error =
            FileConfig::parse("[[pools]]\nname = \"a\"\npolicy = \"random\"\n", "f").unwrap_err();
        assert!(error.to_string().starts_with("pools[0].policy"), "{error}");
        let error = FileConfig::parse("[[pools]]\nname = \"a b\"\n", "f").unwrap_err();
        assert!(error.to_string().starts_with("pools[0].name"), "{error}");
        let gpus =
            "[[pools]]\nname = \"a\"\nworker_size = { cpu = \"1\", memory = \"1Gi\", gpus = 2 }\n";
        let error = FileConfig::parse(gpus, "f").unwrap_err();
        assert!(error.to_string().contains("gpu_type"), "{error}");
    }
}
