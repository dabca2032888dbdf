//! `berth server`'s configuration file (TOML). Unknown keys are errors; every value is
//! checked, and an error names the key and says what would be right. Flags and environment
//! variables override the file (see `berth server --help`).

use crate::provisioner::{Provisioner, Provisioners, Target};
use crate::units::{parse_cpu, parse_memory};
use berth_core::{CpuReserve, GpuType, PlacementPolicy, Pool, PoolAttributes, PoolName, Resources};
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
    /// What starts and stops the pool's workers: `{ command = ["/path/prog", "arg"] }` or
    /// `{ url = "http://..." }`. Absent: the pool grows only by hand.
    pub provisioner: Option<ProvisionerSection>,
    /// A worker of the pool owning nothing for this long, in seconds, is drained and handed
    /// to the provisioner to stop. Absent: never.
    pub idle_timeout_secs: Option<u64>,
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
        config.provisioners()?;
        Ok(config)
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

    /// The pools, checked.
    pub fn pools(&self) -> Result<Vec<Pool>, ConfigError> {
        self.pools
            .iter()
            .enumerate()
            .map(|(i, section)| section.to_pool(&format!("pools[{i}]")))
            .collect()
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
        })
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
