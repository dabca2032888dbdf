//! Sending one command to a local server with the `redis` crate's
//! synchronous connection.
//!
//! This is what the crate uses to PING servers and to read `CLUSTER INFO`,
//! `CLUSTER SLOTS` and `ROLE`, instead of shelling out to `redis-cli` (which
//! is only used for `redis-cli --cluster create`). Each command opens a new
//! connection to `127.0.0.1:port` with short timeouts, so a dead or hung
//! server gives an error instead of blocking a test forever. The connection
//! speaks RESP2 and skips the `CLIENT SETINFO` handshake, so connecting
//! sends nothing before the command itself.

use std::time::Duration;

use redis::{Cmd, ConnectionAddr, ConnectionInfo, ConnectionLike, FromRedisValue, Value};

use crate::LocalRedisError;

/// How long to wait for a TCP connection to a local server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a reply (or for a write to go through).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command to the redis server on `127.0.0.1:port` over a fresh
/// connection and returns its reply.
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
    let info: ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(
        ConnectionAddr::Tcp("127.0.0.1".to_owned(), port),
    )
    .map_err(connect_err)?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings)).map_err(connect_err)?;
    let con = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(connect_err)?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(connect_err)?;
    con.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(connect_err)?;
    Ok(con)
}
