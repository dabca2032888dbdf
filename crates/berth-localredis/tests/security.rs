//! Tests of secured local servers (password, ACL users, TLS) against a real redis-server.
//! They fail (never skip) when redis-server is missing.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_localredis::{AclUser, LocalCluster, LocalRedis, LocalRedisError, Security, Value};

/// Unwraps, panicking with the error's `Display` (which includes log tails).
fn ok<T>(r: Result<T, LocalRedisError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn pong() -> Value {
    Value::SimpleString("PONG".into())
}

#[test]
fn a_password_protected_server_refuses_anonymous_clients() {
    let redis = ok(LocalRedis::start_with(Security {
        password: Some("s3cret".into()),
        users: vec![AclUser::full_access("berth", "pw")],
        tls: false,
        require_client_cert: false,
    }));
    // This crate's own client authenticates...
    assert_eq!(ok(redis.command(&["PING"])), pong());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    // ...and the ACL user exists.
    let users: Vec<String> = ok(berth_localredis::query(redis.port(), &["ACL", "USERS"]));
    assert!(users.contains(&"berth".to_owned()), "{users:?}");
    // A client without the password is refused.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let refused = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(refused.to_string().contains("NOAUTH"), "{refused}");
}

#[test]
fn a_tls_server_serves_tls_only_with_its_test_ca() {
    let redis = ok(LocalRedis::start_with(Security {
        tls: true,
        ..Security::default()
    }));
    assert_eq!(ok(redis.command(&["PING"])), pong());
    assert_eq!(redis.url(), format!("rediss://127.0.0.1:{}/", redis.port()));
    let ca = std::fs::read(redis.ca_file().unwrap()).unwrap();
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca),
    };
    let client = redis::Client::build_with_tls(redis.url(), certs).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).unwrap(),
        "PONG"
    );
    // Without the CA the certificate is not trusted.
    let untrusted = redis::Client::open(redis.url()).unwrap().get_connection();
    assert!(untrusted.is_err());
}

#[test]
fn a_tls_cluster_with_a_password_starts_healthy() {
    let cluster = ok(LocalCluster::start_with(Security {
        password: Some("s3cret".into()),
        users: Vec::new(),
        tls: true,
        require_client_cert: false,
    }));
    assert_eq!(ok(cluster.check_healthy()).len(), 3);
    assert!(cluster.urls().iter().all(|u| u.starts_with("rediss://")));
    assert!(cluster.ca_file().unwrap().is_file());
}
