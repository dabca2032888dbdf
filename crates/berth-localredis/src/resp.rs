//! A tiny blocking RESP2 client: send one command, read one reply.
//!
//! This is what the crate uses to PING servers and to read `CLUSTER INFO`,
//! `CLUSTER SLOTS` and `ROLE`, instead of shelling out to `redis-cli` (which
//! is only used for `redis-cli --cluster create`). It opens a new
//! [`TcpStream`] to `127.0.0.1:port` per command, with short timeouts, so a
//! dead or hung server gives an error instead of blocking a test forever.
//!
//! It speaks RESP2 (the protocol a connection uses until it sends `HELLO 3`):
//! simple strings, errors, integers, bulk strings (and the null bulk string)
//! and arrays (and the null array). It is meant for small administrative
//! replies, not for data-heavy use.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::LocalRedisError;

/// How long to wait for a TCP connection to a local server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a reply (or for a write to go through).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bulk strings larger than this are rejected rather than allocated.
const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Arrays nested deeper than this are rejected.
const MAX_DEPTH: usize = 32;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A simple string (`+OK`).
    Simple(String),
    /// An error reply (`-ERR ...`), without the leading `-`.
    Error(String),
    /// An integer (`:42`).
    Integer(i64),
    /// A bulk string (`$3\r\nfoo`).
    Bulk(Vec<u8>),
    /// An array (`*2\r\n...`).
    Array(Vec<Value>),
    /// The null bulk string (`$-1`) or the null array (`*-1`).
    Nil,
}

impl Value {
    /// The text of a simple string, or of a bulk string that is valid UTF-8.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value of an integer reply.
    #[must_use]
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of an array reply.
    #[must_use]
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Sends one command to the redis server on `127.0.0.1:port` over a fresh
/// TCP connection and returns its reply.
///
/// An error *reply* from the server (such as `-MOVED ...`) is returned as
/// `Ok(Value::Error(..))`; only connection and protocol problems are `Err`.
///
/// # Errors
///
/// [`LocalRedisError::Io`] if the connection, the write or the read fails or
/// times out, [`LocalRedisError::Protocol`] if the reply is not valid RESP2.
pub fn command(port: u16, args: &[&str]) -> Result<Value, LocalRedisError> {
    let io_err = |source| LocalRedisError::Io { port, source };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(io_err)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    stream.write_all(&encode(args)).map_err(io_err)?;
    let mut reader = BufReader::new(stream);
    read_value(&mut reader, 0).map_err(|e| match e {
        ReadError::Io(source) => LocalRedisError::Io { port, source },
        ReadError::Protocol(detail) => LocalRedisError::Protocol { port, detail },
    })
}

/// Like [`command`], but an error reply becomes [`LocalRedisError::ServerError`].
pub(crate) fn query(port: u16, args: &[&str]) -> Result<Value, LocalRedisError> {
    match command(port, args)? {
        Value::Error(message) => Err(LocalRedisError::ServerError {
            port,
            command: args.first().map_or_else(String::new, |s| (*s).to_owned()),
            message,
        }),
        value => Ok(value),
    }
}

/// Like [`query`], for commands whose reply is text (`CLUSTER INFO`).
pub(crate) fn query_text(port: u16, args: &[&str]) -> Result<String, LocalRedisError> {
    let value = query(port, args)?;
    value
        .as_text()
        .map(str::to_owned)
        .ok_or_else(|| LocalRedisError::Protocol {
            port,
            detail: format!("expected text in reply to {args:?}, got {value:?}"),
        })
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Why reading a reply failed.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Protocol(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads one line up to `\r\n` and returns it without the terminator.
fn read_line(r: &mut impl BufRead) -> Result<String, ReadError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply was read",
        )));
    }
    if !line.ends_with(b"\r\n") {
        return Err(ReadError::Protocol(format!(
            "line not terminated by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| ReadError::Protocol(format!("line is not UTF-8: {e}")))
}

/// Parses the length of a bulk string or array; `None` for `-1` (null).
fn parse_len(s: &str) -> Result<Option<usize>, ReadError> {
    if s == "-1" {
        return Ok(None);
    }
    s.parse::<usize>()
        .map(Some)
        .map_err(|_| ReadError::Protocol(format!("bad length {s:?}")))
}

/// Reads one RESP2 value.
fn read_value(r: &mut impl BufRead, depth: usize) -> Result<Value, ReadError> {
    if depth > MAX_DEPTH {
        return Err(ReadError::Protocol(format!(
            "arrays nested deeper than {MAX_DEPTH}"
        )));
    }
    let line = read_line(r)?;
    let mut chars = line.chars();
    let kind = chars.next();
    let rest = chars.as_str();
    match kind {
        Some('+') => Ok(Value::Simple(rest.to_owned())),
        Some('-') => Ok(Value::Error(rest.to_owned())),
        Some(':') => rest
            .parse()
            .map(Value::Integer)
            .map_err(|_| ReadError::Protocol(format!("bad integer {rest:?}"))),
        Some('$') => match parse_len(rest)? {
            None => Ok(Value::Nil),
            Some(len) if len > MAX_BULK_LEN => Err(ReadError::Protocol(format!(
                "bulk string of {len} bytes is too large"
            ))),
            Some(len) => {
                let mut buf = vec![0; len + 2];
                r.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(ReadError::Protocol(
                        "bulk string not terminated by CRLF".to_owned(),
                    ));
                }
                buf.truncate(len);
                Ok(Value::Bulk(buf))
            }
        },
        Some('*') => match parse_len(rest)? {
            None => Ok(Value::Nil),
            Some(len) => {
                // Do not trust `len` for preallocation.
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    items.push(read_value(r, depth + 1)?);
                }
                Ok(Value::Array(items))
            }
        },
        _ => Err(ReadError::Protocol(format!(
            "unknown reply type in line {line:?}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Value, ReadError> {
        let mut r = bytes;
        read_value(&mut r, 0)
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Value::Simple("PONG".into()));
        assert_eq!(
            parse(b"-ERR unknown\r\n").unwrap(),
            Value::Error("ERR unknown".into())
        );
        assert_eq!(parse(b":-12\r\n").unwrap(), Value::Integer(-12));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").unwrap(),
            Value::Bulk(b"a\r\nbc".to_vec())
        );
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Value::Bulk(Vec::new()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Value::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Value::Nil);
    }

    #[test]
    fn parses_nested_arrays() {
        let v =
            parse(b"*2\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n+x\r\n").unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Array(vec![
                    Value::Integer(0),
                    Value::Integer(5460),
                    Value::Array(vec![
                        Value::Bulk(b"127.0.0.1".to_vec()),
                        Value::Integer(7000)
                    ]),
                ]),
                Value::Simple("x".into()),
            ])
        );
        assert_eq!(parse(b"*0\r\n").unwrap(), Value::Array(Vec::new()));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse(b"?what\r\n"), Err(ReadError::Protocol(_))));
        assert!(matches!(parse(b":abc\r\n"), Err(ReadError::Protocol(_))));
        assert!(matches!(parse(b"+no crlf\n"), Err(ReadError::Protocol(_))));
        assert!(matches!(
            parse(b"$3\r\nabcd\r\n"),
            Err(ReadError::Protocol(_))
        ));
        assert!(matches!(parse(b"$-2\r\n"), Err(ReadError::Protocol(_))));
        assert!(matches!(parse(b""), Err(ReadError::Io(_))));
        assert!(matches!(parse(b"$10\r\nabc"), Err(ReadError::Io(_))));
        assert!(matches!(parse(b"*2\r\n:1\r\n"), Err(ReadError::Io(_))));
    }
}
