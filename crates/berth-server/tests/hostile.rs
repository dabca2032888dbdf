//! Malformed and hostile input to every endpoint: always the right 4xx with an ErrorBody
//! naming the field where there is one, never a 5xx, and nothing written.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_api::ErrorCode;
use common::Server;
use reqwest::Method;

/// One hostile request and what must come back.
#[derive(Clone)]
struct Case {
    method: Method,
    path: String,
    body: Option<(&'static str, String)>,
    status: u16,
    field: Option<&'static str>,
}

fn case(
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
    field: Option<&'static str>,
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body: body.map(|b| ("application/json", b.to_owned())),
        status,
        field,
    }
}

fn post(path: &str, body: &str, status: u16, field: Option<&'static str>) -> Case {
    case(Method::POST, path, Some(body), status, field)
}

const SPEC: &str = r#""cpu_millicores": 100, "memory_mib": 100, "command": ["x"]"#;

fn submits() -> Vec<Case> {
    let p = "/v1/containers";
    vec![
        post(p, "{", 400, None),
        post(p, "", 400, None),
        post(p, "[]", 400, None),
        post(p, "null", 400, None),
        post(p, &format!("{{{SPEC}}} trailing"), 400, None),
        post(p, &format!("{{{SPEC}, \"cpus\": 4}}"), 400, Some("cpus")),
        post(
            p,
            r#"{"cpu_millicores": -1, "memory_mib": 100, "command": ["x"]}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 1.5, "memory_mib": 100, "command": ["x"]}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"cpu_millicores": "1", "memory_mib": 100, "command": ["x"]}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 0, "memory_mib": 100, "command": ["x"]}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 100, "memory_mib": 0, "command": ["x"]}"#,
            400,
            Some("memory_mib"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 100, "memory_mib": 99999999999999999999999, "command": ["x"]}"#,
            400,
            Some("memory_mib"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 18446744073709551615, "memory_mib": 100, "command": ["x"]}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"cpu_millicores": 100, "memory_mib": 100}"#,
            400,
            None,
        ),
        post(
            p,
            r#"{"cpu_millicores": 100, "memory_mib": 100, "command": []}"#,
            400,
            Some("command"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"id\": \"a{{b}}\"}}"),
            400,
            Some("id"),
        ),
        post(p, &format!("{{{SPEC}, \"id\": \"\"}}"), 400, Some("id")),
        post(
            p,
            &format!("{{{SPEC}, \"id\": \"{}\"}}", "x".repeat(200)),
            400,
            Some("id"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"pool\": \"a b\"}}"),
            400,
            Some("pool"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"tenant\": \"t{{1}}\"}}"),
            400,
            Some("tenant"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"priority\": 3000000000}}"),
            400,
            Some("priority"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 1, \"types\": [\"A100 40\"]}}}}"),
            400,
            Some("gpu.types[0]"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 1, \"types\": [\"A10G\", \"{{x}}\"]}}}}"),
            400,
            Some("gpu.types[1]"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 1, \"types\": \"some\"}}}}"),
            400,
            Some("gpu.types"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": -2}}}}"),
            400,
            Some("gpu.count"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 0}}}}"),
            400,
            Some("gpu.count"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 1, \"vendor\": \"x\"}}}}"),
            400,
            Some("gpu.vendor"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"env\": {{\"BERTH_TIMEOUT_SECS\": \"5\"}}}}"),
            400,
            Some("env.BERTH_TIMEOUT_SECS"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"env\": {{\"A\": 5}}}}"),
            400,
            Some("env.A"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"timeout_secs\": 0}}"),
            400,
            Some("timeout_secs"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"timeout_secs\": -5}}"),
            400,
            Some("timeout_secs"),
        ),
        post(
            p,
            &format!("{{{SPEC}, \"image\": \"\"}}"),
            400,
            Some("image"),
        ),
        // Never placeable: 422, nothing written.
        post(
            p,
            &format!("{{{SPEC}, \"gpu\": {{\"count\": 10000}}}}"),
            422,
            None,
        ),
        post(
            p,
            r#"{"cpu_millicores": 1000000000, "memory_mib": 100, "command": ["x"]}"#,
            422,
            None,
        ),
        post(p, &format!("{{{SPEC}, \"pool\": \"nowhere\"}}"), 422, None),
        Case {
            method: Method::POST,
            path: p.to_owned(),
            body: Some(("text/plain", format!("{{{SPEC}}}"))),
            status: 415,
            field: None,
        },
        // Over the 64 KiB limit of the test server.
        post(
            p,
            &format!(
                "{{{SPEC}, \"env\": {{\"BIG\": \"{}\"}}}}",
                "x".repeat(100 * 1024)
            ),
            413,
            None,
        ),
    ]
}

fn batches() -> Vec<Case> {
    let p = "/v1/containers/batch";
    let ok = format!("{{{SPEC}}}");
    vec![
        post(p, "{", 400, None),
        post(p, r#"{"containers": []}"#, 400, Some("containers")),
        post(p, r#"{"containers": {}}"#, 400, Some("containers")),
        post(p, r#"{"items": []}"#, 400, Some("items")),
        post(
            p,
            &format!(
                "{{\"containers\": [{ok}, {{\"cpu_millicores\": 1, \"memory_mib\": 0, \"command\": [\"x\"]}}]}}"
            ),
            400,
            Some("containers[1].memory_mib"),
        ),
        post(
            p,
            &format!("{{\"containers\": [{ok}, {{{SPEC}, \"bogus\": 1}}]}}"),
            400,
            Some("containers[1].bogus"),
        ),
        post(
            p,
            &format!("{{\"containers\": [{{{SPEC}, \"id\": \"d\"}}, {{{SPEC}, \"id\": \"d\"}}]}}"),
            400,
            Some("containers[1].id"),
        ),
        post(
            p,
            &format!("{{\"containers\": [{ok}, {{{SPEC}, \"gpu\": {{\"count\": 10000}}}}]}}"),
            422,
            Some("containers[1]"),
        ),
        post(
            p,
            &format!(
                "{{\"containers\": [{}]}}",
                vec![ok.as_str(); 2000].join(",")
            ),
            413,
            None,
        ),
    ]
}

fn containers() -> Vec<Case> {
    let status_ok = r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "running"}"#;
    vec![
        case(
            Method::GET,
            "/v1/containers/a%7Bb%7D",
            None,
            400,
            Some("id"),
        ),
        case(Method::GET, "/v1/containers/a%20b", None, 400, Some("id")),
        case(Method::GET, "/v1/containers/unknown", None, 404, None),
        case(
            Method::GET,
            "/v1/containers?limit=0",
            None,
            400,
            Some("limit"),
        ),
        case(
            Method::GET,
            "/v1/containers?limit=-1",
            None,
            400,
            Some("limit"),
        ),
        case(
            Method::GET,
            "/v1/containers?limit=abc",
            None,
            400,
            Some("limit"),
        ),
        case(
            Method::GET,
            "/v1/containers?limit=5000",
            None,
            400,
            Some("limit"),
        ),
        case(
            Method::GET,
            "/v1/containers?state=sleeping",
            None,
            400,
            Some("state"),
        ),
        case(
            Method::GET,
            "/v1/containers?colour=red",
            None,
            400,
            Some("colour"),
        ),
        case(
            Method::POST,
            "/v1/containers/a%7Bb%7D/cancel",
            None,
            400,
            Some("id"),
        ),
        case(
            Method::POST,
            "/v1/containers/unknown/cancel",
            None,
            404,
            None,
        ),
        case(
            Method::GET,
            "/v1/containers/a%7Bb%7D/logs",
            None,
            400,
            Some("id"),
        ),
        case(Method::GET, "/v1/containers/unknown/logs", None, 404, None),
        post("/v1/containers/a%7Bb%7D/status", status_ok, 400, Some("id")),
        post("/v1/containers/unknown/status", status_ok, 404, None),
        post("/v1/containers/c1/status", "{", 400, None),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w{1}", "attempt": "a1", "state": "running"}"#,
            400,
            Some("worker"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a 1", "state": "running"}"#,
            400,
            Some("attempt"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "done"}"#,
            400,
            Some("state"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "exited"}"#,
            400,
            Some("exit_code"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "running", "exit_code": 1}"#,
            400,
            Some("exit_code"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "exited", "exit_code": 99999999999}"#,
            400,
            Some("exit_code"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "running", "extra": 1}"#,
            400,
            Some("extra"),
        ),
        post(
            "/v1/containers/c1/status",
            r#"{"epoch": 1, "worker": "w1", "attempt": "a1", "state": "running", "logs": "x"}"#,
            400,
            Some("logs"),
        ),
    ]
}

fn workers() -> Vec<Case> {
    let p = "/v1/workers";
    let reg = r#""pool": "cpu", "cpu_millicores": 1000, "memory_mib": 1000"#;
    vec![
        post(p, "{", 400, None),
        post(
            p,
            &format!("{{\"id\": \"w{{1}}\", {reg}}}"),
            400,
            Some("id"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"cpu\": 1}}"),
            400,
            Some("cpu"),
        ),
        post(
            p,
            r#"{"id": "w2", "pool": "cpu", "cpu_millicores": 0, "memory_mib": 1}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"id": "w2", "pool": "cpu", "cpu_millicores": -1, "memory_mib": 1}"#,
            400,
            Some("cpu_millicores"),
        ),
        post(
            p,
            r#"{"id": "w2", "pool": "cpu", "cpu_millicores": 1, "memory_mib": 99999999999999999}"#,
            400,
            Some("memory_mib"),
        ),
        post(
            p,
            r#"{"id": "w2", "pool": "c p u", "cpu_millicores": 1, "memory_mib": 1}"#,
            400,
            Some("pool"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"gpu\": {{\"count\": 1, \"type\": \"A100 40\"}}}}"),
            400,
            Some("gpu.type"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"gpu\": {{\"count\": 0, \"type\": \"T4\"}}}}"),
            400,
            Some("gpu.count"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"status\": \"lost\"}}"),
            400,
            Some("status"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"status\": \"zombie\"}}"),
            400,
            Some("status"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"priority\": 7}}"),
            400,
            Some("priority"),
        ),
        post(
            p,
            &format!("{{\"id\": \"w2\", {reg}, \"policy\": \"random\"}}"),
            400,
            Some("policy"),
        ),
        case(
            Method::POST,
            "/v1/workers/w%7B1%7D/drain",
            None,
            400,
            Some("id"),
        ),
        case(Method::POST, "/v1/workers/ghost/drain", None, 404, None),
        case(
            Method::POST,
            "/v1/workers/w%7B1%7D/disable",
            None,
            400,
            Some("id"),
        ),
        case(Method::POST, "/v1/workers/ghost/disable", None, 404, None),
        case(Method::POST, "/v1/workers/ghost/enable", None, 404, None),
        case(
            Method::DELETE,
            "/v1/workers/w%7B1%7D",
            None,
            400,
            Some("id"),
        ),
        case(Method::DELETE, "/v1/workers/ghost", None, 404, None),
        post(
            "/v1/workers/w%7B1%7D/heartbeat",
            r#"{"epoch": 1}"#,
            400,
            Some("id"),
        ),
        post("/v1/workers/ghost/heartbeat", r#"{"epoch": 1}"#, 404, None),
        post("/v1/workers/w1/heartbeat", "{}", 400, None),
        post(
            "/v1/workers/w1/heartbeat",
            r#"{"epoch": -1}"#,
            400,
            Some("epoch"),
        ),
        post("/v1/workers/w1/heartbeat", "{", 400, None),
        post(
            "/v1/workers/w1/heartbeat",
            r#"{"epoch": 1, "running": ["a{b}"]}"#,
            400,
            Some("running[0]"),
        ),
        post(
            "/v1/workers/w1/heartbeat",
            r#"{"epoch": 1, "running": "x"}"#,
            400,
            Some("running"),
        ),
        post(
            "/v1/workers/w1/heartbeat",
            r#"{"beat": 1}"#,
            400,
            Some("beat"),
        ),
        case(
            Method::GET,
            "/v1/workers/w%7B1%7D/assignments",
            None,
            400,
            Some("id"),
        ),
        case(
            Method::GET,
            "/v1/workers/ghost/assignments?epoch=1",
            None,
            404,
            None,
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?epoch=1&max=0",
            None,
            400,
            Some("max"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?epoch=1&max=99999",
            None,
            400,
            Some("max"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?epoch=1&wait_ms=-1",
            None,
            400,
            Some("wait_ms"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?epoch=1&wait_ms=soon",
            None,
            400,
            Some("wait_ms"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?follow=1",
            None,
            400,
            Some("follow"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments",
            None,
            400,
            Some("epoch"),
        ),
        case(
            Method::GET,
            "/v1/workers/w1/assignments?epoch=x",
            None,
            400,
            Some("epoch"),
        ),
        case(
            Method::POST,
            "/v1/workers/w1/assignments/1-0/ack",
            None,
            400,
            Some("epoch"),
        ),
        case(
            Method::POST,
            "/v1/workers/w1/assignments/x%20y/ack?epoch=1",
            None,
            400,
            Some("delivery"),
        ),
        case(
            Method::POST,
            "/v1/workers/ghost/assignments/1/ack?epoch=1",
            None,
            404,
            None,
        ),
        post("/v1/workers/w1/release", "{", 400, None),
        post(
            "/v1/workers/w1/release",
            r#"{"epoch": 1, "container": "c1", "attempt": "a b"}"#,
            400,
            Some("attempt"),
        ),
        post(
            "/v1/workers/w1/release",
            r#"{"epoch": 1, "container": "c{1}", "attempt": "a1"}"#,
            400,
            Some("container"),
        ),
        post(
            "/v1/workers/ghost/release",
            r#"{"epoch": 1, "container": "c1", "attempt": "a1"}"#,
            404,
            None,
        ),
    ]
}

fn others() -> Vec<Case> {
    vec![
        case(Method::GET, "/v1/nothing", None, 404, None),
        // `/` is the console's page; nothing else under it is served.
        case(Method::GET, "/console/nothing.js", None, 404, None),
        case(Method::POST, "/", None, 405, None),
        case(Method::DELETE, "/v1/containers", None, 405, None),
        case(Method::PUT, "/v1/workers/w1/heartbeat", None, 405, None),
        case(Method::PATCH, "/v1/containers/batch", None, 405, None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_bad_input_cleanly() {
    let server = Server::start().await;
    server.register("w1", 4000, 8192).await;
    let containers_before = server.container_count().await;
    let workers_before = server.store.workers().await.unwrap();
    let mut failures = Vec::new();
    let all = [submits(), batches(), containers(), workers(), others()].concat();
    for case in &all {
        let body = case
            .body
            .as_ref()
            .map(|(kind, body)| (*kind, body.as_str()));
        let (status, error, text) = server.raw(case.method.clone(), &case.path, body).await;
        let shown = format!(
            "{} {} {:?}",
            case.method,
            case.path,
            case.body
                .as_ref()
                .map(|(_, b)| b.chars().take(120).collect::<String>())
        );
        if status >= 500 {
            failures.push(format!("{shown}: a 5xx ({status}): {text}"));
            continue;
        }
        if status != case.status {
            failures.push(format!(
                "{shown}: expected {}, got {status}: {text}",
                case.status
            ));
            continue;
        }
        let Some(error) = error else {
            failures.push(format!("{shown}: the body is not an ErrorBody: {text}"));
            continue;
        };
        if error.code.http_status() != status || error.code == ErrorCode::Other {
            failures.push(format!(
                "{shown}: code {} does not match {status}",
                error.code
            ));
        }
        if case.field.is_some() && error.field.as_deref() != case.field {
            failures.push(format!(
                "{shown}: expected field {:?}, got {:?} ({})",
                case.field, error.field, error.message
            ));
        }
        if error.message.is_empty() {
            failures.push(format!("{shown}: empty message"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    assert_eq!(
        server.container_count().await,
        containers_before,
        "nothing written"
    );
    assert_eq!(server.store.backlog_len().await.unwrap(), 0);
    assert_eq!(
        server.store.workers().await.unwrap(),
        workers_before,
        "no worker changed"
    );
    server.assert_clean().await;
    server.stop().await;
}

/// A connection that starts a request line and never finishes its head is closed once the
/// header read timeout passes, instead of holding its socket and task forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = berth_server::ServerConfig {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..common::config()
    };
    let server = Server::start_with(config, false).await;
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /v1/contai").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut rest),
    )
    .await;
    assert!(
        closed.is_ok(),
        "the connection was still open after 5 s (header read timeout 300 ms)"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    server.stop().await;
}

/// A request target or headers over berth's limits get 414 or 431 with an ErrorBody (hyper
/// alone would answer with an empty body), and the limits leave ordinary requests alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_heads_get_an_error_body() {
    let server = Server::start().await;
    let limits = berth_server::ServerConfig::default();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str::<berth_api::ErrorBody>(&text).ok(),
            text,
        )
    };
    let url = format!("{}/v1/containers", server.base);
    // More headers than hyper's default limit: hyper alone answers 431 with no body.
    let mut many = server.http.get(&url);
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let (status, error, text) = send(many).await;
    assert_eq!(status, 431, "{text}");
    assert_eq!(error.expect(&text).code, ErrorCode::HeadersTooLarge);

    let big = "b".repeat(limits.max_header_bytes);
    let (status, error, text) = send(server.http.get(&url).header("x-big", big)).await;
    assert_eq!(status, 431, "{text}");
    assert_eq!(error.expect(&text).code, ErrorCode::HeadersTooLarge);

    let long = "a".repeat(limits.max_uri_bytes + 1);
    let (status, error, text) = server
        .raw(Method::GET, &format!("/v1/containers?x={long}"), None)
        .await;
    assert_eq!(status, 414, "{text}");
    assert_eq!(error.expect(&text).code, ErrorCode::UriTooLong);

    let fine = "c".repeat(4000);
    let (status, _, text) = send(server.http.get(&url).header("x-fine", fine)).await;
    assert_eq!(status, 200, "{text}");
    server.stop().await;
}

/// Every 405 names the route's methods in `Allow`, OPTIONS included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_carries_allow() {
    let server = Server::start().await;
    let cases = [
        (Method::OPTIONS, "/v1/containers", "GET,HEAD,POST"),
        (Method::PUT, "/v1/workers/x", "DELETE,GET,HEAD"),
        (Method::DELETE, "/v1/containers", "GET,HEAD,POST"),
        (Method::GET, "/v1/workers/x/heartbeat", "POST"),
        (Method::OPTIONS, "/metrics", "GET,HEAD"),
    ];
    for (method, path, allowed) in cases {
        let response = server
            .http
            .request(method.clone(), format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap();
        let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        methods.sort_unstable();
        assert_eq!(methods.join(","), allowed, "{method} {path}");
        let body: berth_api::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.code, ErrorCode::MethodNotAllowed);
    }
    server.stop().await;
}

/// For every path of the OpenAPI document, OPTIONS is a 405 whose `Allow` lists exactly
/// the documented methods (and HEAD, which every GET takes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_exactly_the_documented_methods() {
    let server = Server::start().await;
    let (_, _, text) = server.raw(Method::GET, "/openapi.json", None).await;
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let mut failures = Vec::new();
    for (template, operations) in paths {
        let mut documented: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        if documented.iter().any(|m| m == "GET") {
            documented.push("HEAD".to_owned());
        }
        documented.sort();
        let path: String = template
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        let response = server
            .http
            .request(Method::OPTIONS, format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut allowed: Vec<String> = allow.split(',').map(|m| m.trim().to_owned()).collect();
        allowed.sort();
        if response.status().as_u16() != 405 || allowed != documented {
            failures.push(format!(
                "OPTIONS {path}: {} Allow {allow:?}, documented {documented:?}",
                response.status()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.stop().await;
}

/// A refusal that may come before the body is read closes the connection, so that a
/// pooling client does not send its next request into a socket the server is closing
/// (which failed `every_endpoint_refuses_bad_input_cleanly` now and then with
/// `IncompleteMessage`).
#[tokio::test]
async fn a_refused_body_closes_the_connection() {
    let server = Server::start().await;
    let unauthenticated = reqwest::Client::new()
        .post(format!("{}/v1/containers", server.base))
        .header("content-type", "application/json")
        .body(r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    assert_eq!(
        unauthenticated
            .headers()
            .get("connection")
            .map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let wrong_type = server
        .raw(
            reqwest::Method::POST,
            "/v1/containers",
            Some(("text/plain", "x")),
        )
        .await;
    assert_eq!(wrong_type.0, 415);
    let accepted = server
        .http
        .post(format!("{}/v1/containers", server.base))
        .json(&serde_json::json!({"cpu_millicores": 1, "memory_mib": 1, "command": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    assert!(accepted.headers().get("connection").is_none(), "kept alive");
    server.stop().await;
}
