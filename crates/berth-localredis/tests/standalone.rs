//! Tests of `LocalRedis` against a real redis-server. They fail (never skip)
//! when redis-server is missing.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_localredis::{LocalRedis, LocalRedisError};
use redis::Value;

/// Unwraps, panicking with the error's `Display` (which includes log tails).
fn ok<T>(r: Result<T, LocalRedisError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn refuses_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn starts_and_answers_ping() {
    let redis = ok(LocalRedis::start());
    assert_eq!(
        ok(redis.command(&["PING"])),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert!(redis.dir().is_dir());
    assert_eq!(
        ok(redis.command(&["SET", "greeting", "hello world"])),
        Value::Okay
    );
    assert_eq!(
        ok(redis.command(&["GET", "greeting"])),
        Value::BulkString(b"hello world".to_vec())
    );
    assert_eq!(ok(redis.command(&["GET", "missing"])), Value::Nil);
    assert!(matches!(
        redis.command(&["NO-SUCH-COMMAND"]),
        Err(LocalRedisError::ServerError { message, .. }) if message.starts_with("ERR")
    ));
    // Persistence is off.
    let save = ok(redis.command(&["CONFIG", "GET", "save"]));
    assert_eq!(
        save,
        Value::Array(vec![
            Value::BulkString(b"save".to_vec()),
            Value::BulkString(Vec::new())
        ])
    );
}

#[test]
fn errors_name_the_port_and_the_command() {
    let redis = ok(LocalRedis::start());
    let port = redis.port();
    let err = redis.command(&["NO-SUCH-COMMAND", "x"]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("`NO-SUCH-COMMAND x`"), "{msg}");
    let err = berth_localredis::query::<i64>(port, &["GET", "missing"]).unwrap_err();
    assert!(
        matches!(&err, LocalRedisError::UnexpectedReply { port: p, command, .. }
            if *p == port && command == "GET missing"),
        "{err}"
    );
    drop(redis);
    let err = berth_localredis::command(port, &["PING"]).unwrap_err();
    assert!(
        matches!(err, LocalRedisError::Connect { port: p, .. } if p == port),
        "{err}"
    );
}

/// A server that accepts connections but never answers (stopped with
/// SIGSTOP) gives an error within the client's timeouts instead of blocking.
#[test]
fn a_hung_server_gives_an_error() {
    let redis = ok(LocalRedis::start());
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &redis.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} failed");
    };
    signal("-STOP");
    let started = Instant::now();
    let result = redis.command(&["PING"]);
    let waited = started.elapsed();
    signal("-CONT");
    assert!(result.is_err(), "{result:?}");
    assert!(waited < Duration::from_secs(8), "took {waited:?}");
    assert_eq!(
        ok(redis.command(&["PING"])),
        Value::SimpleString("PONG".into())
    );
}

#[test]
fn drop_stops_the_server_and_removes_its_dir() {
    let redis = ok(LocalRedis::start());
    let port = redis.port();
    let pid = redis.pid();
    let dir = redis.dir().to_path_buf();
    assert!(!refuses_connections(port));
    drop(redis);
    assert!(
        refuses_connections(port),
        "port {port} still accepts connections"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    // The process was reaped, so it is gone from /proc (pids are not reused
    // this quickly).
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server pid {pid} still exists"
    );
}

#[test]
fn servers_get_distinct_ports() {
    let servers: Vec<LocalRedis> = (0..4).map(|_| ok(LocalRedis::start())).collect();
    let mut ports: Vec<u16> = servers.iter().map(LocalRedis::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
}

/// Environment variable that makes `missing_redis_server_is_an_error` run
/// its child half.
const CHILD_ENV: &str = "BERTH_LOCALREDIS_TEST_EMPTY_PATH";

/// Runs this test again in a child process whose PATH holds no redis-server
/// (changing PATH in this process would affect concurrently running tests),
/// and checks that starting fails with the "not found" error.
#[test]
fn missing_redis_server_is_an_error() {
    if std::env::var_os(CHILD_ENV).is_some() {
        match LocalRedis::start() {
            Err(e @ LocalRedisError::RedisServerNotFound) => {
                let msg = e.to_string();
                assert!(msg.starts_with("redis-server not found"), "{msg}");
                assert!(msg.contains("scripts/test.sh"), "{msg}");
                assert!(
                    msg.contains("apt-get install redis-server redis-tools"),
                    "{msg}"
                );
            }
            Err(e) => panic!("expected RedisServerNotFound, got: {e}"),
            Ok(redis) => panic!("redis-server started on port {}", redis.port()),
        }
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "missing_redis_server_is_an_error",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Make sure the child really ran the test rather than filtering it out.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
