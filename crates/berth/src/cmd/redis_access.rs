//! How berth logs in to Redis and verifies it, shared by `berth server` and `berth check`:
//! the user, the password (from a file or the environment, never a flag's value) and the
//! TLS certificates, resolved with the `[store]` section of the configuration file into a
//! [`RedisTarget`].

use crate::config::StoreSection;
use anyhow::{Context, bail};
use berth_store::{RedisTarget, read_secret_file};
use std::path::{Path, PathBuf};

/// The environment variable that may hold the Redis password itself.
pub const PASSWORD_ENV: &str = "BERTH_REDIS_PASSWORD";

/// Redis credentials and TLS settings. Each applies to every Redis URL that does not carry
/// its own (`redis://user:password@host:port` wins). Flags override environment variables,
/// which override the configuration file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RedisAccessArgs {
    /// The Redis ACL user, for URLs that name none.
    #[arg(long, env = "BERTH_REDIS_USERNAME", value_name = "USER")]
    pub redis_username: Option<String>,
    /// A file holding the Redis password (one trailing newline is ignored), for URLs that
    /// carry none. The password may also be given in the environment variable
    /// BERTH_REDIS_PASSWORD.
    #[arg(long, env = "BERTH_REDIS_PASSWORD_FILE", value_name = "PATH")]
    pub redis_password_file: Option<PathBuf>,
    /// The CA certificate (PEM) that rediss:// servers must chain to, instead of the
    /// system's trusted roots.
    #[arg(long, env = "BERTH_REDIS_CA_FILE", value_name = "PATH")]
    pub redis_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to rediss:// servers that require one
    /// (mutual TLS); needs --redis-client-key.
    #[arg(
        long,
        env = "BERTH_REDIS_CLIENT_CERT",
        value_name = "PATH",
        requires = "redis_client_key"
    )]
    pub redis_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --redis-client-cert.
    #[arg(
        long,
        env = "BERTH_REDIS_CLIENT_KEY",
        value_name = "PATH",
        requires = "redis_client_cert"
    )]
    pub redis_client_key: Option<PathBuf>,
}

impl RedisAccessArgs {
    /// The target for `urls`: these flags (or their environment variables), else the
    /// `[store]` section's keys; the password from --redis-password-file, else
    /// BERTH_REDIS_PASSWORD, else `store.password_file`.
    pub fn target(&self, urls: Vec<String>, file: &StoreSection) -> anyhow::Result<RedisTarget> {
        let mut target = RedisTarget::new(urls);
        target.username = self.redis_username.clone().or(file.username.clone());
        target.password = self.password(file)?;
        if let Some(ca) = self.redis_ca_file.as_ref().or(file.ca_file.as_ref()) {
            target = target.with_ca_file(ca)?;
        }
        let cert = self
            .redis_client_cert
            .as_ref()
            .or(file.client_cert_file.as_ref());
        let key = self
            .redis_client_key
            .as_ref()
            .or(file.client_key_file.as_ref());
        match (cert, key) {
            (Some(cert), Some(key)) => target = target.with_client_identity_files(cert, key)?,
            (None, None) => {}
            _ => bail!(
                "a Redis client certificate needs its key and the key its certificate \
                 (--redis-client-cert and --redis-client-key, or store.client_cert_file \
                 and store.client_key_file)"
            ),
        }
        Ok(target)
    }

    fn password(&self, file: &StoreSection) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.redis_password_file {
            return Ok(Some(password_file(path)?));
        }
        if let Some(password) = std::env::var_os(PASSWORD_ENV) {
            let Some(password) = password.to_str().filter(|p| !p.is_empty()) else {
                bail!("{PASSWORD_ENV} is set but empty or not UTF-8; unset it or set the password");
            };
            return Ok(Some(password.to_owned()));
        }
        file.password_file.as_deref().map(password_file).transpose()
    }
}

fn password_file(path: &Path) -> anyhow::Result<String> {
    read_secret_file("the Redis password file", path)
        .context("reading the Redis password (--redis-password-file or store.password_file)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let flag_file = dir.path().join("flag");
        let config_file = dir.path().join("config");
        std::fs::write(&flag_file, "from-flag\n").unwrap();
        std::fs::write(&config_file, "from-config\n").unwrap();
        let file = StoreSection {
            username: Some("config-user".into()),
            password_file: Some(config_file),
            ..StoreSection::default()
        };
        let urls = vec!["redis://h:1/".to_owned()];
        let from_file = RedisAccessArgs::default()
            .target(urls.clone(), &file)
            .unwrap();
        assert_eq!(from_file.username.as_deref(), Some("config-user"));
        // (BERTH_REDIS_PASSWORD is not set in tests.)
        assert_eq!(from_file.password.as_deref(), Some("from-config"));
        let args = RedisAccessArgs {
            redis_username: Some("flag-user".into()),
            redis_password_file: Some(flag_file),
            ..RedisAccessArgs::default()
        };
        let from_flags = args.target(urls, &file).unwrap();
        assert_eq!(from_flags.username.as_deref(), Some("flag-user"));
        assert_eq!(from_flags.password.as_deref(), Some("from-flag"));
    }

    #[test]
    fn an_empty_password_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty-password");
        std::fs::write(&path, "").unwrap();
        let args = RedisAccessArgs {
            redis_password_file: Some(path.clone()),
            ..RedisAccessArgs::default()
        };
        let error = args
            .target(vec!["redis://h:1/".into()], &StoreSection::default())
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("empty"), "{message}");
    }
}
