//! Turning an error met while connecting into a message that says what was wrong and how
//! to fix it: refused credentials, a missing password, a user without rights, a TLS
//! handshake that failed.

use super::target::RedisTarget;
use crate::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// `error`, met while connecting to `target`, as [`StoreError::Connect`] with a hint when
/// it is a Redis error; other errors are returned unchanged.
pub(super) fn connect_error(target: &RedisTarget, error: StoreError) -> StoreError {
    match error {
        StoreError::Redis(cause) => StoreError::Connect {
            target: target.redacted(),
            hint: hint(target, &cause),
            cause,
        },
        other => other,
    }
}

/// What `error` most likely means, and what to do about it.
fn hint(target: &RedisTarget, error: &RedisError) -> String {
    let text = format!("{error:?} {error}");
    let tls = target.urls.iter().any(|u| u.starts_with("rediss://"));
    let kind = error.kind();
    if kind == ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("invalid username-password")
    {
        "Redis refused the credentials (WRONGPASS): check the user and password in the URL \
         (redis://user:password@host:port) or --redis-username / --redis-password-file"
            .to_owned()
    } else if error.code() == Some("NOAUTH") || text.contains("NOAUTH") {
        "Redis requires a password (NOAUTH) and none was given: put it in the URL \
         (redis://user:password@host:port), or use --redis-password-file or \
         BERTH_REDIS_PASSWORD"
            .to_owned()
    } else if kind == ErrorKind::Server(ServerErrorKind::NoPerm) || text.contains("NOPERM") {
        "the Redis user may not run a command berth needs (NOPERM): grant it, e.g. \
         ACL SETUSER <user> ~* &* +@all, or use another user"
            .to_owned()
    } else if text.contains("without any password configured") {
        "a password was given but the Redis server has none set: remove it, or set \
         requirepass on the server"
            .to_owned()
    } else if tls && is_certificate_problem(&text) {
        "the TLS handshake failed: Redis's certificate is not trusted or does not name the \
         host in the URL; give the CA that signed it with --redis-ca-file (or \
         BERTH_REDIS_CA_FILE), and connect by a name or address the certificate lists"
            .to_owned()
    } else if tls && (is_tls_problem(&text) || error.is_timeout()) {
        "the TLS handshake failed: check that the server serves TLS on this port \
         (tls-port), or use redis:// for a plain port"
            .to_owned()
    } else if !tls && (error.is_io_error() || error.is_connection_dropped()) {
        "check the host and port; if the server serves TLS only, use rediss:// (and \
         --redis-ca-file for a private CA)"
            .to_owned()
    } else {
        "check the URL, the credentials and that the server is up".to_owned()
    }
}

/// True when `text` tells of a certificate that was not accepted.
fn is_certificate_problem(text: &str) -> bool {
    [
        "InvalidCertificate",
        "invalid peer certificate",
        "UnknownIssuer",
        "NotValidForName",
        "certificate",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// True when `text` tells of a TLS handshake that failed for another reason.
fn is_tls_problem(text: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "tls",
        "TLS",
        "handshake",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint_for(url: &str, error: RedisError) -> String {
        hint(&RedisTarget::new(vec![url.to_owned()]), &error)
    }

    #[test]
    fn authentication_failures_say_what_to_fix() {
        let wrong = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
            "WRONGPASS invalid username-password pair".to_owned(),
        ));
        assert!(hint_for("redis://h:1/", wrong).contains("refused the credentials"));
        let untrusted = RedisError::from(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(hint_for("rediss://h:1/", untrusted).contains("--redis-ca-file"));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(hint_for("redis://h:1/", reset).contains("rediss://"));
    }
}
