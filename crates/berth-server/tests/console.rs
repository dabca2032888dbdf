//! The web console's routes without a browser: the shell is public, self-contained and
//! under a strict security policy; `GET /v1/throughput` is for admins and counts what was
//! placed. (The browser tests are in `crates/berth/tests/console.rs`.)

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_api::{ContainerSpec, CreateToken, NewTokenKind, ThroughputView};
use common::{Server, authorized_http};

/// A GET of `path` with `client`: (status, content type, security policy, body).
async fn fetch(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
) -> (u16, String, String, String) {
    let response = client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, policy) = (header("content-type"), header("content-security-policy"));
    let status = response.status().as_u16();
    (status, content_type, policy, response.text().await.unwrap())
}

#[tokio::test]
async fn the_shell_is_served_without_a_token_under_a_same_origin_policy() {
    let server = Server::start().await;
    let anonymous = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let (status, content_type, policy, body) = fetch(&anonymous, &server, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(!body.is_empty());
    }
    let (_, _, _, page) = fetch(&anonymous, &server, "/").await;
    assert!(page.contains("src=\"/console/app.js\""));
    assert!(
        !page.contains("://"),
        "the page loads nothing from elsewhere"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_script_builds_pages_from_text_nodes_only() {
    // The script must never parse strings as HTML: names, commands, reasons and logs are
    // the users', and would inject markup.
    let script = include_str!("../console/app.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
}

#[tokio::test]
async fn the_throughput_is_for_admins_only() {
    let server = Server::start().await;
    let client_token = server
        .client
        .create_token(&CreateToken {
            kind: NewTokenKind::Client,
            tenant: Some("acme".to_owned()),
            name: None,
        })
        .await
        .unwrap()
        .token;
    let path = "/v1/throughput";
    assert_eq!(fetch(&reqwest::Client::new(), &server, path).await.0, 401);
    assert_eq!(
        fetch(&authorized_http(&client_token), &server, path)
            .await
            .0,
        403
    );
    assert_eq!(fetch(&server.http, &server, path).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_throughput_refuses_a_window_out_of_range() {
    let server = Server::start().await;
    for query in ["minutes=0", "minutes=16", "minutes=soon", "hours=1"] {
        let (status, _, _, body) =
            fetch(&server.http, &server, &format!("/v1/throughput?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_throughput_counts_what_was_placed_with_its_latency() {
    let server = Server::start().await;
    server.register("w1", 4000, 4096).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let spec = ContainerSpec::new(100, 64, vec!["true".into()]);
        ids.push(server.client.submit(&spec).await.unwrap().id);
    }
    for id in &ids {
        server.wait_for(id, "scheduled").await;
    }
    // The series ends with the last whole second: wait for the placements' to end.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, _, body) = fetch(&server.http, &server, "/v1/throughput?minutes=1").await;
    assert_eq!(status, 200, "{body}");
    let view: ThroughputView = serde_json::from_str(&body).unwrap();
    assert_eq!(view.seconds.len(), 60);
    let placed: u64 = view.seconds.iter().map(|s| s.placed).sum();
    assert_eq!(placed, 3, "{view:?}");
    assert!(view.seconds.iter().any(|s| s.p50_latency_ms.is_some()));
    assert_eq!(view.records_read, 3);
    server.stop().await;
}
