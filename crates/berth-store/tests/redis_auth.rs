//! `RedisStore` on secured servers: a password (`requirepass`), an ACL user, TLS with a
//! private CA, and a Cluster with TLS and a password; and the messages a wrong password,
//! a missing one, a user without rights and an untrusted certificate give. The servers
//! are started here (berth-localredis) and the tests fail (never skip) when redis-server
//! is missing.

#![allow(clippy::unwrap_used)]

#[allow(unused_imports)] // Only some of the contract cases run here.
mod contract;

use berth_localredis::{AclUser, LocalCluster, LocalRedis, Security};
use berth_store::prelude::*;
use berth_store::*;
use std::sync::Arc;

const PASSWORD: &str = "s3cret-pw";

fn ok<T>(r: Result<T, berth_localredis::LocalRedisError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A server with a password for the default user, a full-rights user `berth` and a user
/// `limited` that may only PING.
fn protected() -> LocalRedis {
    ok(LocalRedis::start_with(Security {
        password: Some(PASSWORD.into()),
        users: vec![
            AclUser::full_access("berth", "berth-pw"),
            AclUser::with_rules("limited", &["on", ">limited-pw", "~*", "+ping", "+hello"]),
        ],
        tls: false,
        require_client_cert: false,
    }))
}

fn tls_server() -> LocalRedis {
    ok(LocalRedis::start_with(Security {
        tls: true,
        ..Security::default()
    }))
}

/// A connect function for the contract suite: every client connects as `target` says.
fn connector(
    target: RedisTarget,
) -> impl Fn(StoreConfig) -> std::pin::Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> {
    move |config| {
        let target = target.clone();
        Box::pin(async move {
            let store = RedisStore::connect_to(&target, config)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            Arc::new(store) as Arc<dyn Store>
        })
    }
}

/// `url` with `user:password@` put in front of its host.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    url.replacen("://", &format!("://{user}:{password}@"), 1)
}

async fn connect_error(target: &RedisTarget) -> String {
    let error = RedisStore::connect_to(target, StoreConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    for secret in [PASSWORD, "berth-pw", "limited-pw", "wrong-pw"] {
        assert!(
            !message.contains(secret),
            "the message shows a password: {message}"
        );
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_password_in_the_url_works() {
    let redis = protected();
    let url = with_credentials(&redis.url(), "", PASSWORD);
    let connect = connector(RedisTarget::new(vec![url]));
    contract::release_is_idempotent(&connect).await;
    contract::assignments_wait_without_polling(&connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_given_apart_from_the_url_works() {
    let redis = protected();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let password = read_secret_file("the Redis password file", &file).unwrap();
    let target = RedisTarget::new(vec![redis.url()]).with_password(password);
    contract::release_is_idempotent(connector(target)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acl_user_in_the_url_works() {
    let redis = protected();
    let url = with_credentials(&redis.url(), "berth", "berth-pw");
    contract::release_is_idempotent(connector(RedisTarget::new(vec![url]))).await;
    // The same user given apart from the URL.
    let target = RedisTarget::new(vec![redis.url()])
        .with_username("berth")
        .with_password("berth-pw");
    contract::commit_is_all_or_nothing(connector(target)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_is_refused_clearly() {
    let redis = protected();
    let url = with_credentials(&redis.url(), "berth", "wrong-pw");
    let message = connect_error(&RedisTarget::new(vec![url])).await;
    assert!(
        message.contains("refused the credentials (WRONGPASS)"),
        "{message}"
    );
    assert!(message.contains("berth:***@"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_password_is_reported_clearly() {
    let redis = protected();
    let message = connect_error(&RedisTarget::new(vec![redis.url()])).await;
    assert!(
        message.contains("requires a password (NOAUTH)"),
        "{message}"
    );
    assert!(message.contains("--redis-password-file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_without_rights_is_reported_clearly() {
    let redis = protected();
    let url = with_credentials(&redis.url(), "limited", "limited-pw");
    let message = connect_error(&RedisTarget::new(vec![url])).await;
    assert!(message.contains("(NOPERM)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_the_private_ca_works() {
    let redis = tls_server();
    let target = RedisTarget::new(vec![redis.url()])
        .with_ca_file(redis.ca_file().unwrap())
        .unwrap();
    let connect = connector(target);
    contract::release_is_idempotent(&connect).await;
    contract::assignments_wait_without_polling(&connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_certificate_is_reported_clearly() {
    let redis = tls_server();
    let message = connect_error(&RedisTarget::new(vec![redis.url()])).await;
    assert!(message.contains("TLS handshake failed"), "{message}");
    assert!(message.contains("--redis-ca-file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_redis_against_a_tls_port_suggests_rediss() {
    let redis = tls_server();
    let url = redis.url().replacen("rediss://", "redis://", 1);
    let message = connect_error(&RedisTarget::new(vec![url])).await;
    assert!(message.contains("use rediss://"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ca_file_with_a_plain_url_is_refused() {
    let redis = tls_server();
    let url = redis.url().replacen("rediss://", "redis://", 1);
    let target = RedisTarget::new(vec![url])
        .with_ca_file(redis.ca_file().unwrap())
        .unwrap();
    let error = RedisStore::connect_to(&target, StoreConfig::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("only rediss:// URLs use TLS"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_with_a_password_works() {
    let cluster = ok(LocalCluster::start_with(Security {
        password: Some(PASSWORD.into()),
        users: Vec::new(),
        tls: true,
        require_client_cert: false,
    }));
    let target = RedisTarget::new(cluster.urls())
        .with_password(PASSWORD)
        .with_ca_file(cluster.ca_file().unwrap())
        .unwrap();
    let connect = connector(target.clone());
    contract::release_is_idempotent(&connect).await;
    contract::assignments_wait_without_polling(&connect).await;
    // The password in the seed URLs works as well.
    let urls = cluster
        .urls()
        .iter()
        .map(|u| with_credentials(u, "", PASSWORD))
        .collect();
    let in_urls = RedisTarget {
        urls,
        ..target.clone()
    };
    contract::commit_is_all_or_nothing(connector(in_urls)).await;
    // And without it the cluster refuses clearly.
    let anonymous = RedisTarget {
        password: None,
        ..target
    };
    let message = connect_error(&anonymous).await;
    assert!(message.contains("NOAUTH"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_with_a_client_certificate_works() {
    let redis = ok(LocalRedis::start_with(Security {
        tls: true,
        require_client_cert: true,
        ..Security::default()
    }));
    let (cert, key) = redis.client_cert_files().unwrap();
    let target = RedisTarget::new(vec![redis.url()])
        .with_ca_file(redis.ca_file().unwrap())
        .unwrap();
    // Without the client certificate the server ends the handshake.
    let refused = RedisStore::connect_to(&target, StoreConfig::default()).await;
    assert!(
        matches!(refused, Err(StoreError::Connect { .. })),
        "{refused:?}"
    );
    let target = target.with_client_identity_files(cert, key).unwrap();
    contract::release_is_idempotent(connector(target)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_against_a_plain_port_is_reported_clearly() {
    let redis = ok(LocalRedis::start());
    let url = redis.url().replacen("redis://", "rediss://", 1);
    let message = connect_error(&RedisTarget::new(vec![url])).await;
    assert!(message.contains("TLS handshake failed"), "{message}");
    assert!(
        message.contains("use redis:// for a plain port"),
        "{message}"
    );
}
