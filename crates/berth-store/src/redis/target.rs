//! [`RedisTarget`]: where Redis is (one URL, or a Cluster's seed URLs) and how to log in
//! and verify it (user, password, TLS certificates), plus [`redact`], which every message
//! that shows a URL goes through, and [`read_secret_file`].

use crate::{Result, StoreError};
use redis::{ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use std::path::Path;

/// Where Redis is and how to reach it.
///
/// A user or password set here applies to every URL that carries none of its own
/// (`redis://user:password@host:port` wins). TLS is chosen per URL by its scheme
/// (`rediss://`); [`ca_pem`](Self::ca_pem) replaces the system's trusted roots.
///
/// ```
/// use berth_store::RedisTarget;
/// let target = RedisTarget::new(vec!["rediss://127.0.0.1:6380/".into()])
///     .with_password("s3cret");
/// assert_eq!(target.redacted(), "rediss://127.0.0.1:6380/");
/// assert!(!format!("{target:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default)]
pub struct RedisTarget {
    /// One URL for a standalone server; several for a Cluster's seed nodes.
    pub urls: Vec<String>,
    /// The ACL user, for URLs that name none.
    pub username: Option<String>,
    /// The password, for URLs that carry none.
    pub password: Option<String>,
    /// The CA certificate(s) (PEM) that `rediss://` servers must chain to; `None` trusts
    /// the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key (both PEM), for servers that require one
    /// (`tls-auth-clients yes`).
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("urls", &self.redacted())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .finish()
    }
}

impl RedisTarget {
    /// A target with these URLs and nothing else set.
    pub fn new(urls: Vec<String>) -> RedisTarget {
        RedisTarget {
            urls,
            ..RedisTarget::default()
        }
    }

    /// Sets the password used for URLs that carry none.
    pub fn with_password(mut self, password: impl Into<String>) -> RedisTarget {
        self.password = Some(password.into());
        self
    }

    /// Sets the user used for URLs that name none.
    pub fn with_username(mut self, username: impl Into<String>) -> RedisTarget {
        self.username = Some(username.into());
        self
    }

    /// Trusts the CA certificate(s) in `pem` (instead of the system's roots).
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> RedisTarget {
        self.ca_pem = Some(pem);
        self
    }

    /// Reads the CA certificate(s) to trust from the PEM file at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::File`] if the file cannot be read, is empty or holds no PEM
    /// certificate.
    pub fn with_ca_file(self, path: &Path) -> Result<RedisTarget> {
        let pem = read_pem_file("the Redis CA certificate file", path, "CERTIFICATE")?;
        Ok(self.with_ca_pem(pem))
    }

    /// Presents the client certificate and key in these PEM files (mutual TLS).
    ///
    /// # Errors
    ///
    /// [`StoreError::File`] if a file cannot be read or holds no PEM block of its kind.
    pub fn with_client_identity_files(mut self, cert: &Path, key: &Path) -> Result<RedisTarget> {
        let cert = read_pem_file("the Redis client certificate file", cert, "CERTIFICATE")?;
        let key = read_pem_file("the Redis client key file", key, "PRIVATE KEY")?;
        self.client_identity = Some((cert, key));
        Ok(self)
    }

    /// The URLs joined by ", ", each [redacted](redact).
    pub fn redacted(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        urls.join(", ")
    }

    /// Each URL parsed, with the target's user and password filled in where it has none.
    pub(super) fn connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        self.urls
            .iter()
            .map(|url| self.connection_info(url))
            .collect()
    }

    fn connection_info(&self, url: &str) -> Result<ConnectionInfo> {
        let info = url
            .into_connection_info()
            .map_err(|e| StoreError::InvalidArgument(format!("Redis URL {}: {e}", redact(url))))?;
        let mut settings = info.redis_settings().clone();
        if let (None, Some(user)) = (settings.username(), &self.username) {
            settings = settings.set_username(user);
        }
        if let (None, Some(password)) = (settings.password(), &self.password) {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }

    /// The certificates to hand the redis crate, if any were given.
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        if self.ca_pem.is_none() && self.client_identity.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .client_identity
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.ca_pem.clone(),
        })
    }
}

/// `url` with its password (and any `password=`/`pass=` query value) replaced by `***`,
/// for logs and error messages: `redis://user:s3cret@host:6379/` becomes
/// `redis://user:***@host:6379/`. A URL without a password comes back unchanged.
///
/// ```
/// assert_eq!(berth_store::redact("rediss://:pw@h:1/0"), "rediss://:***@h:1/0");
/// ```
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end);
    // The last '@' ends the user info: a password may hold '@' only percent-encoded, and
    // cutting too much is the safe side.
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}{}", redact_query(&rest))
}

/// Replaces the values of `password=` and `pass=` query parameters with `***`.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if matches!(name, "password" | "pass") => format!("{name}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

/// Reads a secret (a password) from the file at `path`: its content without one trailing
/// newline (`\n` or `\r\n`). `what` names the file in errors, e.g. "the Redis password file".
///
/// # Errors
///
/// [`StoreError::File`] if the file cannot be read, is not UTF-8, or is empty.
pub fn read_secret_file(what: &'static str, path: &Path) -> Result<String> {
    let file_error = |problem: String| StoreError::File {
        what,
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let secret = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(file_error(
            "it is empty; write the secret in it (one trailing newline is ignored)".to_owned(),
        ));
    }
    Ok(secret.to_owned())
}

/// Reads a PEM file that must hold at least one block whose label ends with `label`.
fn read_pem_file(what: &'static str, path: &Path, label: &str) -> Result<Vec<u8>> {
    let file_error = |problem: String| StoreError::File {
        what,
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text.lines().any(|line| {
        line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&format!("{label}-----"))
    });
    if !has_block {
        return Err(file_error(format!(
            "it holds no PEM block \"-----BEGIN ...{label}-----\""
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        let cases = [
            (
                "redis://user:s3cret@host:6379/",
                "redis://user:***@host:6379/",
            ),
            (
                "rediss://:s3cret@10.0.0.1:6380/2",
                "rediss://:***@10.0.0.1:6380/2",
            ),
            ("redis://user@host:6379/", "redis://user@host:6379/"),
            ("redis://host:6379/", "redis://host:6379/"),
            ("redis://u:p%40ss@host/", "redis://u:***@host/"),
            ("redis://u:p@ss@host/", "redis://u:***@host/"),
            (
                "unix:///tmp/r.sock?db=1&pass=x",
                "unix:///tmp/r.sock?db=1&pass=***",
            ),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn target_fills_in_credentials_only_where_missing() {
        let target = RedisTarget::new(vec![
            "redis://127.0.0.1:1/".into(),
            "redis://own:pw@127.0.0.1:2/".into(),
        ])
        .with_username("berth")
        .with_password("s3cret");
        let infos = target.connection_infos().unwrap();
        assert_eq!(infos[0].redis_settings().username(), Some("berth"));
        assert_eq!(infos[0].redis_settings().password(), Some("s3cret"));
        assert_eq!(infos[1].redis_settings().username(), Some("own"));
        assert_eq!(infos[1].redis_settings().password(), Some("pw"));
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_url_is_reported_redacted() {
        let target = RedisTarget::new(vec!["redis://u:s3cret@host:notaport/".into()]);
        let error = target.connection_infos().unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn secret_files_lose_one_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        assert_eq!(
            read_secret_file("the password file", &path).unwrap(),
            "s3cret"
        );
        std::fs::write(&path, "\n").unwrap();
        let empty = read_secret_file("the password file", &path)
            .unwrap_err()
            .to_string();
        assert!(empty.contains(&path.display().to_string()), "{empty}");
        assert!(empty.contains("empty"), "{empty}");
        let missing = dir.path().join("missing");
        let error = read_secret_file("the password file", &missing)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "hello").unwrap();
        let target = RedisTarget::default().with_ca_file(&path);
        assert!(target.unwrap_err().to_string().contains("no PEM block"));
    }
}
