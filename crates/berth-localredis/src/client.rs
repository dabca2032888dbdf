//! Sending one command to a local server with the `redis` crate's
//! synchronous connection.
//!
//! This is what the crate uses to PING servers and to read `CLUSTER INFO`,
//! `CLUSTER SLOTS` and `ROLE`, instead of shelling out to `redis-cli` (which
//! is only used for `redis-cli --cluster create`). Each command opens a new
//! connection to `127.0.0.1:port` with short timeouts, so a dead or hung
//! server gives an error instead of blocking a test forever. The connection
//! speaks RESP2 and skips the `CLIENT SETINFO` handshake, so connecting
//! sends nothing before the command itself (except AUTH on a secured server).
//!
//! Secured servers register here, by port, how to reach them (TLS with the test CA, the
//! default user's password), so that every command to them, from this crate's polling or
//! from a test, connects the right way. Ports are unique among live servers, and a server
//! unregisters when its process is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::{Cmd, ConnectionAddr, ConnectionInfo, ConnectionLike, FromRedisValue, Value};

use crate::LocalRedisError;
use crate::security::Secured;

/// How to reach each secured server, by port.
static SECURED: Mutex<Option<HashMap<u16, Arc<Secured>>>> = Mutex::new(None);

/// Records how to reach the server on `port` (a no-op for an open, plain server).
pub(crate) fn register(port: u16, secured: &Arc<Secured>) {
    let mut map = SECURED.lock().unwrap_or_else(PoisonError::into_inner);
    map.get_or_insert_with(HashMap::new)
        .insert(port, Arc::clone(secured));
}

/// Forgets the server on `port`.
pub(crate) fn unregister(port: u16) {
    let mut map = SECURED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(map) = map.as_mut() {
        map.remove(&port);
    }
}

/// How to reach the server on `port`, if it registered.
fn secured(port: u16) -> Option<Arc<Secured>> {
    let map = SECURED.lock().unwrap_or_else(PoisonError::into_inner);
    map.as_ref().and_then(|m| m.get(&port).cloned())
}

/// How long to wait for a TCP connection to a local server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a reply (or for a write to go through).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command to the redis server on `127.0.0.1:port` over a fresh
/// connection and returns its reply. A server started by this crate with a
/// [`Security`](crate::Security) is reached over TLS and as the default user
/// with its password.
///
/// # Errors
///
/// [`LocalRedisError::Connect`] if the connection cannot be opened,
/// [`LocalRedisError::Command`] if sending the command or reading the reply
/// fails or times out, [`LocalRedisError::ServerError`] if the server
/// answers with an error reply (such as `MOVED ...`). Each names the port
/// and the command.
pub fn command(port: u16, args: &[&str]) -> Result<Value, LocalRedisError> {
    let mut con = connect(port)?;
    let mut cmd = Cmd::new();
    for arg in args {
        cmd.arg(*arg);
    }
    match con.req_command(&cmd) {
        Ok(Value::ServerError(e)) => Err(LocalRedisError::ServerError {
            port,
            command: args.join(" "),
            message: match e.details() {
                Some(details) => format!("{} {details}", e.code()),
                None => e.code().to_owned(),
            },
        }),
        Ok(value) => Ok(value),
        Err(source) => Err(LocalRedisError::Command {
            port,
            command: args.join(" "),
            source,
        }),
    }
}

/// Like [`command`], converting the reply to `T` (for example
/// [`redis::InfoDict`] for `CLUSTER INFO`, or `i64`).
///
/// # Errors
///
/// As for [`command`], and [`LocalRedisError::UnexpectedReply`] if the
/// reply does not convert to `T`.
pub fn query<T: FromRedisValue>(port: u16, args: &[&str]) -> Result<T, LocalRedisError> {
    let value = command(port, args)?;
    redis::from_redis_value(value).map_err(|e| LocalRedisError::UnexpectedReply {
        port,
        command: args.join(" "),
        detail: e.to_string(),
    })
}

/// Opens a connection to `127.0.0.1:port`, with the I/O timeouts set.
fn connect(port: u16) -> Result<redis::Connection, LocalRedisError> {
    let connect_err = |source| LocalRedisError::Connect { port, source };
    let secured = secured(port);
    let ca_pem = secured.as_ref().and_then(|s| s.ca_pem.clone());
    let host = "127.0.0.1".to_owned();
    let addr = match ca_pem {
        Some(_) => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host, port),
    };
    let info: ConnectionInfo =
        redis::IntoConnectionInfo::into_connection_info(addr).map_err(connect_err)?;
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = secured.as_ref().and_then(|s| s.security.password.clone()) {
        settings = settings.set_password(password);
    }
    let info = info.set_redis_settings(settings);
    let client = match ca_pem {
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: secured
                    .as_ref()
                    .and_then(|s| s.client_identity.clone())
                    .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                root_cert: Some(root_cert),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(connect_err)?;
    let con = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(connect_err)?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(connect_err)?;
    con.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(connect_err)?;
    Ok(con)
}
