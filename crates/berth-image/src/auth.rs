//! Registry credentials from a docker `config.json`: `auths.<host>.registrytoken` (a
//! bearer token, sent as it is), else `auths.<host>.auth` (base64 of `user:password`) or
//! `auths.<host>.username` and `.password` (basic credentials, which the client also
//! trades for a bearer token where the registry asks for one). The file is read at each
//! pull, so a changed file takes effect without a restart; credentials are never logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// The part of a docker `config.json` berth reads.
#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

/// One `auths` entry. Not `Debug`: it holds a secret.
#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
    identitytoken: Option<String>,
}

/// The default credentials file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`, if it exists.
pub fn default_auth_file() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")))?;
    Some(dir.join("config.json")).filter(|file| file.is_file())
}

/// The credentials for `registry` (e.g. `ghcr.io`, `127.0.0.1:5000`, `docker.io`) in the
/// docker config `file`; anonymous if the file has none for it. An unreadable or
/// malformed file is an error (a message without any secret).
pub(crate) fn credentials(file: Option<&Path>, registry: &str) -> Result<RegistryAuth, String> {
    let Some(file) = file else {
        return Ok(RegistryAuth::Anonymous);
    };
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    // serde_json's messages quote no input, so they cannot leak a password.
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| format!("parsing {}: {e}", file.display()))?;
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| same_registry(key, registry))
        .map(|(_, entry)| entry);
    match entry {
        None => Ok(RegistryAuth::Anonymous),
        Some(entry) => entry
            .auth()
            .map_err(|reason| format!("{}: the entry for {registry}: {reason}", file.display())),
    }
}

impl AuthEntry {
    /// A bearer token from `registrytoken`, else basic credentials from `auth`, else from
    /// `username` and `password`. An entry with an `identitytoken` is refused: `docker
    /// login` writes one with an `auth` whose password is empty, which would only be
    /// refused by the registry with a less helpful message.
    fn auth(&self) -> Result<RegistryAuth, &'static str> {
        if let Some(token) = &self.registrytoken {
            return match token.trim() {
                "" => Err("`registrytoken` is empty"),
                token => Ok(RegistryAuth::Bearer(token.to_owned())),
            };
        }
        if self.identitytoken.is_some() {
            return Err(
                "an `identitytoken` (an OAuth refresh token) is not supported; give a `registrytoken`, `auth`, or `username` and `password`",
            );
        }
        if let Some(auth) = &self.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| "`auth` is not base64")?;
            let text = String::from_utf8(decoded).map_err(|_| "`auth` is not UTF-8")?;
            let (user, password) = text
                .split_once(':')
                .ok_or("`auth` is not `user:password`")?;
            return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
        }
        match (&self.username, &self.password) {
            (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user.clone(), password.clone())),
            _ => Err("neither `registrytoken`, `auth`, nor `username` and `password`"),
        }
    }
}

/// Whether an `auths` key names `registry`. Keys may be URLs
/// (`https://index.docker.io/v1/`); Docker Hub goes by several names.
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let hub = |name: &str| {
        matches!(
            name,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    };
    host == registry || (hub(host) && hub(registry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn basic(auth: RegistryAuth) -> (String, String) {
        match auth {
            RegistryAuth::Basic(user, password) => (user, password),
            _ => panic!("not basic"),
        }
    }

    #[test]
    fn reads_auth_and_username_password_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("ann:s3cr:et");
        let json = format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{encoded}"}},
                "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}}
            }}}}"#
        );
        std::fs::write(&file, json).unwrap();
        let got = credentials(Some(&file), "127.0.0.1:5000").unwrap();
        assert_eq!(basic(got), ("ann".into(), "s3cr:et".into()));
        let got = credentials(Some(&file), "docker.io").unwrap();
        assert_eq!(basic(got), ("bob".into(), "pw".into()));
        let got = credentials(Some(&file), "ghcr.io").unwrap();
        assert!(matches!(got, RegistryAuth::Anonymous));
    }

    #[test]
    fn a_registry_token_is_a_bearer_token_and_an_identity_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let json = r#"{"auths": {
            "r.io": {"registrytoken": " tok-1 ", "auth": "YTpi"},
            "id.io": {"identitytoken": "refresh-secret", "auth": "dXNlcjo="},
            "empty.io": {"registrytoken": ""}
        }}"#;
        std::fs::write(&file, json).unwrap();
        let got = credentials(Some(&file), "r.io").unwrap();
        assert!(
            matches!(&got, RegistryAuth::Bearer(token) if token == "tok-1"),
            "the token before `auth`: {got:?}"
        );
        let error = credentials(Some(&file), "id.io").unwrap_err();
        assert!(error.contains("identitytoken"), "{error}");
        assert!(!error.contains("refresh-secret"), "{error}");
        let error = credentials(Some(&file), "empty.io").unwrap_err();
        assert!(error.contains("`registrytoken` is empty"), "{error}");
    }

    #[test]
    fn a_bad_entry_is_an_error_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {"r.io": {"auth": "!!not-base64-secret"}}}"#,
        )
        .unwrap();
        let error = credentials(Some(&file), "r.io").unwrap_err();
        assert!(error.contains("not base64"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
