//! Securing local servers: a password (`requirepass`), ACL users, and TLS with a test CA
//! generated in the server's directory.
//!
//! Certificates are generated with `rcgen` (on the same `ring` provider as the client's
//! rustls) rather than by shelling out to `openssl`: nothing more has to be installed, and
//! a failure is a typed error instead of a log to read.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::LocalRedisError;

/// How a local server (or every node of a local cluster) is secured. The default is an
/// open server on a plain TCP port, as before.
///
/// ```no_run
/// use berth_localredis::{AclUser, LocalRedis, Security};
///
/// let redis = LocalRedis::start_with(Security {
///     password: Some("s3cret".into()),
///     users: vec![AclUser::full_access("berth", "pw")],
///     tls: true,
///     require_client_cert: false,
/// })?;
/// assert!(redis.url().starts_with("rediss://"));
/// # Ok::<(), berth_localredis::LocalRedisError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// The default user's password (`requirepass`); on a cluster also `masterauth`, so
    /// that replicas can sync.
    pub password: Option<String>,
    /// ACL users created at start (`user` directives).
    pub users: Vec<AclUser>,
    /// Serve TLS only (`port 0`, `tls-port`), with a CA and a server certificate for
    /// `127.0.0.1` and `localhost` generated in the server's directory; a cluster also
    /// uses TLS on its bus and for replication. Clients need not present a certificate
    /// unless [`require_client_cert`](Self::require_client_cert) is set.
    pub tls: bool,
    /// With `tls`: clients must present a certificate signed by the test CA
    /// (`tls-auth-clients yes`); one is generated next to the CA (see
    /// `LocalRedis::client_cert_files`).
    pub require_client_cert: bool,
}

/// One ACL user: a name and its rules, as `ACL SETUSER` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    /// The user name.
    pub name: String,
    /// The rules, e.g. `["on", ">pw", "~*", "&*", "+@all"]`.
    pub rules: Vec<String>,
}

impl AclUser {
    /// A user allowed every command on every key and channel: `on >password ~* &* +@all`.
    #[must_use]
    pub fn full_access(name: &str, password: &str) -> AclUser {
        AclUser::with_rules(name, &["on", &format!(">{password}"), "~*", "&*", "+@all"])
    }

    /// A user with the given rules.
    #[must_use]
    pub fn with_rules(name: &str, rules: &[&str]) -> AclUser {
        AclUser {
            name: name.to_owned(),
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }
}

/// The files of a generated test CA and server certificate.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA certificate (PEM), which clients trust.
    pub(crate) ca_file: PathBuf,
    /// The server's certificate (PEM), signed by the CA.
    pub(crate) cert_file: PathBuf,
    /// The server's private key (PEM).
    pub(crate) key_file: PathBuf,
    /// A client certificate (PEM) signed by the CA, for mutual TLS.
    pub(crate) client_cert_file: PathBuf,
    /// The client certificate's private key (PEM).
    pub(crate) client_key_file: PathBuf,
}

/// A [`Security`] made concrete: its certificates generated, ready to give servers their
/// arguments and local clients what they need to connect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secured {
    pub(crate) security: Security,
    pub(crate) tls: Option<TlsFiles>,
    /// The CA certificate in PEM, when TLS is on.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// The client certificate and key in PEM, when the server requires one.
    pub(crate) client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Secured {
    /// Generates the certificates `security` asks for in `dir`.
    pub(crate) fn prepare(security: Security, dir: &Path) -> Result<Arc<Secured>, LocalRedisError> {
        if !security.tls {
            return Ok(Arc::new(Secured {
                security,
                ..Secured::default()
            }));
        }
        let (files, pem) = generate_certificates(dir)?;
        let client_identity = if security.require_client_cert {
            let read = |path: &Path| {
                fs::read(path).map_err(|source| LocalRedisError::TempDir {
                    what: "a TLS certificate file",
                    source,
                })
            };
            Some((
                read(&files.client_cert_file)?,
                read(&files.client_key_file)?,
            ))
        } else {
            None
        };
        Ok(Arc::new(Secured {
            security,
            tls: Some(files),
            ca_pem: Some(pem),
            client_identity,
        }))
    }

    /// `rediss` with TLS, else `redis`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The redis-server arguments for this security; `port` is the port clients use.
    pub(crate) fn server_args(&self, port: u16, cluster: bool) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));
        match &self.tls {
            None => push(&["--port", &port.to_string()]),
            Some(files) => {
                push(&["--port", "0", "--tls-port", &port.to_string()]);
                push(&["--tls-cert-file", &files.cert_file.to_string_lossy()]);
                push(&["--tls-key-file", &files.key_file.to_string_lossy()]);
                push(&["--tls-ca-cert-file", &files.ca_file.to_string_lossy()]);
                let auth_clients = if self.security.require_client_cert {
                    "yes"
                } else {
                    "no"
                };
                push(&["--tls-auth-clients", auth_clients]);
                if cluster {
                    push(&["--tls-cluster", "yes", "--tls-replication", "yes"]);
                }
            }
        }
        if let Some(password) = &self.security.password {
            push(&["--requirepass", password]);
            if cluster {
                push(&["--masterauth", password]);
            }
        }
        for user in &self.security.users {
            let mut directive = vec!["--user", user.name.as_str()];
            directive.extend(user.rules.iter().map(String::as_str));
            push(&directive);
        }
        args
    }

    /// The `redis-cli` options to reach a server secured this way.
    pub(crate) fn cli_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(files) = &self.tls {
            args.push("--tls".to_owned());
            args.push("--cacert".to_owned());
            args.push(files.ca_file.to_string_lossy().into_owned());
            if self.security.require_client_cert {
                args.push("--cert".to_owned());
                args.push(files.client_cert_file.to_string_lossy().into_owned());
                args.push("--key".to_owned());
                args.push(files.client_key_file.to_string_lossy().into_owned());
            }
        }
        if let Some(password) = &self.security.password {
            args.extend([
                "-a".to_owned(),
                password.clone(),
                "--no-auth-warning".to_owned(),
            ]);
        }
        args
    }
}

/// Generates a CA and a server certificate for 127.0.0.1 and localhost into `dir`;
/// returns the files and the CA certificate's PEM.
fn generate_certificates(dir: &Path) -> Result<(TlsFiles, Vec<u8>), LocalRedisError> {
    let cert_err = |e: rcgen::Error| LocalRedisError::Certificates(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "berth-localredis test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(cert_err)?)
        .map_err(cert_err)?;
    let sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let (cert, key) = leaf(&ca, "berth-localredis server", sans)?;
    let (client_cert, client_key) = leaf(&ca, "berth-localredis client", Vec::new())?;
    let files = TlsFiles {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        client_cert_file: dir.join("client.crt"),
        client_key_file: dir.join("client.key"),
    };
    let ca_pem = ca.pem();
    for (path, text) in [
        (&files.ca_file, ca_pem.as_str()),
        (&files.cert_file, cert.as_str()),
        (&files.key_file, key.as_str()),
        (&files.client_cert_file, client_cert.as_str()),
        (&files.client_key_file, client_key.as_str()),
    ] {
        fs::write(path, text).map_err(|source| LocalRedisError::TempDir {
            what: "a TLS certificate file",
            source,
        })?;
    }
    Ok((files, ca_pem.into_bytes()))
}

/// A certificate signed by `ca` and its key, both PEM. It is good for both ends of a
/// connection: cluster nodes present theirs when they connect to each other.
fn leaf(
    ca: &CertifiedIssuer<'_, KeyPair>,
    name: &str,
    sans: Vec<String>,
) -> Result<(String, String), LocalRedisError> {
    let cert_err = |e: rcgen::Error| LocalRedisError::Certificates(e.to_string());
    let mut params = CertificateParams::new(sans).map_err(cert_err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = params.signed_by(&key, ca).map_err(cert_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn plain_server_args_are_just_the_port() {
        let secured = Secured::default();
        assert_eq!(secured.server_args(7000, false), ["--port", "7000"]);
        assert!(secured.cli_args().is_empty());
        assert_eq!(secured.scheme(), "redis");
    }

    #[test]
    fn password_and_users_become_directives() {
        let secured = Secured {
            security: Security {
                password: Some("pw".into()),
                users: vec![AclUser::full_access("berth", "x")],
                ..Security::default()
            },
            ..Secured::default()
        };
        let args = secured.server_args(7000, true);
        let joined = args.join(" ");
        assert!(
            joined.contains("--requirepass pw --masterauth pw"),
            "{joined}"
        );
        assert!(
            joined.ends_with("--user berth on >x ~* &* +@all"),
            "{joined}"
        );
    }

    #[test]
    fn tls_generates_a_ca_and_a_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let security = Security {
            tls: true,
            ..Security::default()
        };
        let secured = Secured::prepare(security, dir.path()).unwrap();
        assert_eq!(secured.scheme(), "rediss");
        let ca = fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(dir.path().join("server.key").is_file());
        let args = secured.server_args(7000, true).join(" ");
        assert!(args.starts_with("--port 0 --tls-port 7000"), "{args}");
        assert!(
            args.contains("--tls-cluster yes --tls-replication yes"),
            "{args}"
        );
    }
}
