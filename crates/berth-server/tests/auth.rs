//! Who may call what: every route of the API against no token, another tenant's token,
//! another worker's credential, the other roles, and the right token. Only the right ones
//! pass. The routes are taken from the OpenAPI document, so a route added without a case
//! here fails the test.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_api::{Client, ContainerSpec, CreateToken, NewTokenKind, RegisterWorker};
use berth_core::{ContainerId, PoolName, WorkerId, WorkerStatus};
use common::{Server, authorized_http};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The callers of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Nobody,
    Admin,
    TenantA,
    TenantB,
    Worker1,
    Worker2,
    Worker3,
    Join,
    Metrics,
}

const EVERYONE: [Who; 9] = [
    Who::Nobody,
    Who::Admin,
    Who::TenantA,
    Who::TenantB,
    Who::Worker1,
    Who::Worker2,
    Who::Worker3,
    Who::Join,
    Who::Metrics,
];

/// One request and who may make it. Every caller not in `right` (or `skip`) must be
/// refused: 401 without a token, else 403, or 404 where `hidden` says the thing is another
/// tenant's. The right ones go last, in the order listed, so that refused calls are seen
/// to have changed nothing before the right one acts.
struct Case {
    method: Method,
    route: &'static str,
    path: String,
    body: Option<Value>,
    right: Vec<(Who, u16)>,
    hidden: Vec<Who>,
    skip: Vec<Who>,
}

fn case(method: Method, route: &'static str, path: impl Into<String>) -> Case {
    Case {
        method,
        route,
        path: path.into(),
        body: None,
        right: Vec::new(),
        hidden: Vec::new(),
        skip: Vec::new(),
    }
}

impl Case {
    fn body(mut self, body: Value) -> Case {
        self.body = Some(body);
        self
    }
    fn right(mut self, who: Who, status: u16) -> Case {
        self.right.push((who, status));
        self
    }
    fn everyone(mut self, status: u16) -> Case {
        self.right = EVERYONE.iter().map(|who| (*who, status)).collect();
        self
    }
    fn hidden(mut self, who: Who) -> Case {
        self.hidden.push(who);
        self
    }
    fn skip(mut self, who: Who) -> Case {
        self.skip.push(who);
        self
    }
}

struct World {
    server: Server,
    tokens: BTreeMap<Who, String>,
    epoch1: u64,
    ca: ContainerId,
    ca2: ContainerId,
    attempt: String,
    delivery: String,
}

async fn token(admin: &Client, kind: NewTokenKind, tenant: Option<&str>) -> String {
    admin
        .create_token(&CreateToken {
            kind,
            tenant: tenant.map(str::to_owned),
            name: None,
        })
        .await
        .unwrap()
        .token
}

fn spec(tenant: Option<&str>) -> ContainerSpec {
    let mut spec = ContainerSpec::new(100, 64, vec!["true".into()]);
    if let Some(tenant) = tenant {
        spec.tenant = tenant.to_owned();
    }
    spec
}

/// A server with three workers registered by the join token (each with its own
/// credential), tenant A's container `ca` placed on worker 1, and `ca2` of tenant A.
async fn world() -> World {
    let server = Server::start().await;
    let admin = server.client.clone();
    let mut tokens = BTreeMap::new();
    tokens.insert(Who::Admin, server.admin_token.clone());
    tokens.insert(
        Who::TenantA,
        token(&admin, NewTokenKind::Client, Some("a")).await,
    );
    tokens.insert(
        Who::TenantB,
        token(&admin, NewTokenKind::Client, Some("b")).await,
    );
    tokens.insert(Who::Join, token(&admin, NewTokenKind::Join, None).await);
    tokens.insert(
        Who::Metrics,
        token(&admin, NewTokenKind::Metrics, None).await,
    );
    let joining = Client::new(&server.base)
        .unwrap()
        .with_token(&tokens[&Who::Join]);
    let pool = PoolName::new("cpu").unwrap();
    let mut epoch1 = 0;
    for (who, id) in [
        (Who::Worker1, "w1"),
        (Who::Worker2, "w2"),
        (Who::Worker3, "w3"),
    ] {
        let id = WorkerId::new(id).unwrap();
        let registered = joining
            .register(&RegisterWorker::new(id.clone(), &pool, 4000, 4096))
            .await
            .unwrap();
        if who == Who::Worker1 {
            epoch1 = registered.worker.epoch;
        } else {
            admin.drain(&id).await.unwrap();
        }
        tokens.insert(who, registered.credential.unwrap());
    }
    let tenant_a = Client::new(&server.base)
        .unwrap()
        .with_token(&tokens[&Who::TenantA]);
    let ca = tenant_a.submit(&spec(None)).await.unwrap().id;
    let ca2 = tenant_a.submit(&spec(None)).await.unwrap().id;
    let placed = admin
        .container_when_settled(&ca, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(placed.worker.as_ref().map(WorkerId::as_str), Some("w1"));
    let attempt = placed.attempt.unwrap().to_string();
    let delivered = admin
        .assignments(
            &WorkerId::new("w1").unwrap(),
            epoch1,
            10,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let delivery = delivered[0].delivery.clone();
    World {
        delivery,
        server,
        tokens,
        epoch1,
        ca,
        ca2,
        attempt,
    }
}

/// Every case, in the order they run.
fn cases(w: &World) -> Vec<Case> {
    use Who::*;
    let (ca, ca2, e1, attempt) = (&w.ca, &w.ca2, w.epoch1, &w.attempt);
    let submit_a = serde_json::to_value(spec(Some("a"))).unwrap();
    let register = |id: &str| {
        serde_json::to_value(RegisterWorker::new(
            WorkerId::new(id).unwrap(),
            &PoolName::new("cpu").unwrap(),
            4000,
            4096,
        ))
        .unwrap()
    };
    vec![
        case(Method::GET, "/healthz", "/healthz").everyone(200),
        case(Method::GET, "/readyz", "/readyz").everyone(200),
        case(Method::GET, "/openapi.json", "/openapi.json")
            .right(Admin, 200)
            .right(TenantA, 200)
            .right(TenantB, 200)
            .right(Worker1, 200)
            .right(Worker2, 200)
            .right(Worker3, 200)
            .right(Join, 200)
            .right(Metrics, 200),
        case(Method::GET, "/metrics", "/metrics")
            .right(Metrics, 200)
            .right(Admin, 200),
        case(Method::POST, "/v1/containers", "/v1/containers")
            .body(submit_a.clone())
            .right(TenantA, 202)
            .right(Admin, 202),
        case(Method::POST, "/v1/containers/batch", "/v1/containers/batch")
            .body(json!({ "containers": [submit_a] }))
            .right(TenantA, 202)
            .right(Admin, 202),
        case(Method::GET, "/v1/containers", "/v1/containers")
            .right(TenantA, 200)
            .right(TenantB, 200)
            .right(Admin, 200),
        case(Method::GET, "/v1/containers/batch", "/v1/containers/batch")
            .right(TenantA, 404)
            .right(TenantB, 404)
            .right(Admin, 404),
        case(
            Method::GET,
            "/v1/containers/{id}",
            format!("/v1/containers/{ca}"),
        )
        .hidden(TenantB)
        .right(TenantA, 200)
        .right(Admin, 200),
        case(
            Method::GET,
            "/v1/containers/{id}/logs",
            format!("/v1/containers/{ca}/logs"),
        )
        .hidden(TenantB)
        .right(TenantA, 200)
        .right(Admin, 200),
        case(
            Method::POST,
            "/v1/containers/{id}/cancel",
            format!("/v1/containers/{ca2}/cancel"),
        )
        .hidden(TenantB)
        .right(TenantA, 200)
        .right(Admin, 200),
        case(
            Method::POST,
            "/v1/containers/{id}/status",
            format!("/v1/containers/{ca}/status"),
        )
        .body(json!({"worker": "w1", "attempt": attempt, "epoch": e1, "state": "running"}))
        .right(Worker1, 200)
        .skip(Admin),
        case(Method::GET, "/v1/workers", "/v1/workers").right(Admin, 200),
        case(Method::POST, "/v1/workers", "/v1/workers")
            .body(register("w4"))
            .right(Join, 200)
            .skip(Worker1)
            .skip(Admin),
        case(Method::GET, "/v1/workers/{id}", "/v1/workers/w1")
            .right(Worker1, 200)
            .right(Admin, 200),
        case(
            Method::POST,
            "/v1/workers/{id}/heartbeat",
            "/v1/workers/w1/heartbeat",
        )
        .body(json!({"epoch": e1, "running": [ca.as_str()]}))
        .right(Worker1, 200)
        .right(Admin, 200),
        case(
            Method::GET,
            "/v1/workers/{id}/assignments",
            format!("/v1/workers/w1/assignments?epoch={e1}"),
        )
        .right(Worker1, 200)
        .right(Admin, 200),
        case(
            Method::POST,
            "/v1/workers/{id}/assignments/{delivery}/ack",
            format!("/v1/workers/w1/assignments/{}/ack?epoch={e1}", w.delivery),
        )
        .right(Worker1, 204)
        .right(Admin, 204),
        case(
            Method::POST,
            "/v1/workers/{id}/release",
            "/v1/workers/w1/release",
        )
        .body(json!({"epoch": e1, "container": ca.as_str(), "attempt": attempt}))
        // The right caller reaches the protocol, which refuses to release a running
        // container (report its end instead).
        .right(Worker1, 409)
        .skip(Admin),
        case(Method::POST, "/v1/workers", "/v1/workers")
            .body(register("w1"))
            .right(Worker1, 200)
            .skip(Admin),
        case(
            Method::POST,
            "/v1/workers/{id}/disable",
            "/v1/workers/w2/disable",
        )
        .right(Admin, 200),
        case(
            Method::POST,
            "/v1/workers/{id}/enable",
            "/v1/workers/w2/enable",
        )
        .right(Admin, 200),
        case(
            Method::POST,
            "/v1/workers/{id}/drain",
            "/v1/workers/w2/drain",
        )
        .right(Admin, 200),
        case(Method::GET, "/v1/demand", "/v1/demand").right(Admin, 200),
        case(Method::GET, "/v1/throughput", "/v1/throughput").right(Admin, 200),
        case(Method::GET, "/v1/check", "/v1/check").right(Admin, 200),
        case(Method::POST, "/v1/tokens", "/v1/tokens")
            .body(json!({"kind": "join"}))
            .right(Admin, 201),
        case(Method::GET, "/v1/tokens", "/v1/tokens").right(Admin, 200),
        case(Method::GET, "/v1/tenants", "/v1/tenants").right(Admin, 200),
        case(Method::GET, "/v1/tenants/{name}", "/v1/tenants/a")
            .right(TenantA, 200)
            .right(Admin, 200)
            .hidden(TenantB),
        case(Method::PUT, "/v1/tenants/{name}", "/v1/tenants/c")
            .body(json!({"quota": {"containers": 5}, "weight": 2}))
            .right(Admin, 200),
        case(Method::DELETE, "/v1/tenants/{name}", "/v1/tenants/c").right(Admin, 200),
        case(Method::DELETE, "/v1/workers/{id}", "/v1/workers/w3")
            .right(Worker3, 204)
            .skip(Admin),
    ]
}

async fn send(w: &World, who: Who, case: &Case) -> (u16, String) {
    let http = match w.tokens.get(&who) {
        Some(token) => authorized_http(token),
        None => reqwest::Client::new(),
    };
    let mut request = http.request(
        case.method.clone(),
        format!("{}{}", w.server.base, case.path),
    );
    if let Some(body) = &case.body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The (method, route) pairs of the OpenAPI document.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(<berth_server::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_admits_only_the_right_callers() {
    let w = world().await;
    let cases = cases(&w);
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.to_string(), c.route.to_owned()))
        .collect();
    let mut documented = documented_routes();
    documented.insert(("DELETE".to_owned(), "/v1/tokens/{id}".to_owned()));
    let missing: Vec<_> = documented.difference(&covered).collect();
    // DELETE /v1/tokens/{id} is covered below, after the matrix (it revokes).
    assert_eq!(
        missing,
        vec![&("DELETE".to_owned(), "/v1/tokens/{id}".to_owned())],
        "routes without a case"
    );
    let mut checked = 0;
    for case in &cases {
        let right: Vec<Who> = case.right.iter().map(|(who, _)| *who).collect();
        for who in EVERYONE {
            if right.contains(&who) || case.skip.contains(&who) {
                continue;
            }
            let expected = match who {
                Who::Nobody => 401,
                who if case.hidden.contains(&who) => 404,
                _ => 403,
            };
            let (status, body) = send(&w, who, case).await;
            assert_eq!(
                status, expected,
                "{who:?} {} {}: {body}",
                case.method, case.path
            );
            checked += 1;
        }
        for (who, expected) in &case.right {
            let (status, body) = send(&w, *who, case).await;
            assert_eq!(
                status, *expected,
                "{who:?} {} {}: {body}",
                case.method, case.path
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} calls checked");

    // A removed worker's credential is revoked with it.
    let gone = Client::new(&w.server.base)
        .unwrap()
        .with_token(&w.tokens[&Who::Worker3]);
    let refused = gone
        .worker(&WorkerId::new("w3").unwrap())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");

    // Revoking: only an admin may, and the token is refused from then on.
    let doomed = w.tokens[&Who::TenantB].clone();
    let id = &doomed["berth_".len().."berth_".len() + 16];
    let revoke = case(
        Method::DELETE,
        "/v1/tokens/{id}",
        format!("/v1/tokens/{id}"),
    );
    for who in [
        Who::Nobody,
        Who::TenantA,
        Who::TenantB,
        Who::Worker1,
        Who::Join,
        Who::Metrics,
    ] {
        let (status, body) = send(&w, who, &revoke).await;
        assert_eq!(
            status,
            if who == Who::Nobody { 401 } else { 403 },
            "{who:?}: {body}"
        );
    }
    assert_eq!(send(&w, Who::Admin, &revoke).await.0, 200);
    assert_eq!(send(&w, Who::Admin, &revoke).await.0, 404);
    let revoked = Client::new(&w.server.base).unwrap().with_token(&doomed);
    assert_eq!(
        revoked.containers(None, None).await.unwrap_err().status(),
        Some(401)
    );
    w.server.stop().await;
}

#[tokio::test]
async fn tenants_see_and_touch_only_their_own_containers() {
    let w = world().await;
    let client = |who: Who| {
        Client::new(&w.server.base)
            .unwrap()
            .with_token(&w.tokens[&who])
    };
    let (a, b) = (client(Who::TenantA), client(Who::TenantB));
    let theirs = b.submit(&spec(None)).await.unwrap().id;
    let seen_by_a: Vec<ContainerId> = a
        .containers(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(seen_by_a.contains(&w.ca) && seen_by_a.contains(&w.ca2));
    assert!(!seen_by_a.contains(&theirs));
    let seen_by_b: Vec<ContainerId> = b
        .containers(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(seen_by_b, vec![theirs.clone()]);
    let view = w.server.client.container(&theirs).await.unwrap();
    assert_eq!(view.tenant, "b", "a client's containers are its tenant's");

    // B's cancel of A's container is a 404 and changes nothing.
    let refused = b.cancel(&w.ca2).await.unwrap_err();
    assert_eq!(refused.status(), Some(404));
    let still = w.server.client.container(&w.ca2).await.unwrap();
    assert!(
        !still.cancel_requested && !still.state.is_terminal(),
        "{still:?}"
    );

    // A submit naming another tenant is refused, and nothing is written.
    let before = w.server.container_count().await;
    let forged = b.submit(&spec(Some("a"))).await.unwrap_err();
    assert_eq!(forged.status(), Some(403), "{forged}");
    assert_eq!(forged.body().unwrap().field.as_deref(), Some("tenant"));
    assert_eq!(w.server.container_count().await, before);
    w.server.stop().await;
}

#[tokio::test]
async fn a_worker_credential_acts_only_for_its_worker_and_is_replaced_on_takeover() {
    let w = world().await;
    let client = |who: Who| {
        Client::new(&w.server.base)
            .unwrap()
            .with_token(&w.tokens[&who])
    };
    let pool = PoolName::new("cpu").unwrap();
    let w1 = WorkerId::new("w1").unwrap();

    // Worker 2 cannot forge worker 1's report, even naming itself in the path's place.
    let forged = json!({"worker": "w1", "attempt": w.attempt, "epoch": w.epoch1, "state": "exited", "exit_code": 0});
    let (status, _) = send(
        &w,
        Who::Worker2,
        &case(
            Method::POST,
            "/v1/containers/{id}/status",
            format!("/v1/containers/{}/status", w.ca),
        )
        .body(forged),
    )
    .await;
    assert_eq!(status, 403);
    let running = w.server.client.container(&w.ca).await.unwrap();
    assert!(!running.state.is_terminal(), "{running:?}");

    // The join token cannot take over a live worker's id with made-up capacity.
    let takeover = client(Who::Join)
        .register(&RegisterWorker::new(w1.clone(), &pool, 999_000, 999_999))
        .await
        .unwrap_err();
    assert_eq!(takeover.status(), Some(403), "{takeover}");
    let unchanged = w.server.client.worker(&w1).await.unwrap();
    assert_eq!(unchanged.worker.total.cpu_millicores, 4000);

    // Once worker 1 is declared lost, the join token may register it again; the new
    // credential replaces the old one, which is refused from then on.
    w.server
        .store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    let again = client(Who::Join)
        .register(&RegisterWorker::new(w1.clone(), &pool, 4000, 4096))
        .await
        .unwrap();
    let fresh = again.credential.unwrap();
    let old = client(Who::Worker1).worker(&w1).await.unwrap_err();
    assert_eq!(old.status(), Some(401), "{old}");
    let new = Client::new(&w.server.base).unwrap().with_token(&fresh);
    assert_eq!(new.worker(&w1).await.unwrap().worker.id, w1);
    w.server.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_tokens_are_refused_with_a_reason() {
    let server = Server::start().await;
    for header in [
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer berth_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/containers", server.base))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header}");
        let body: berth_api::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.code, berth_api::ErrorCode::Unauthenticated);
        assert!(!body.message.is_empty());
    }
    // The admin token with its secret changed by one digit is refused.
    let mut wrong = server.admin_token.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    let response = authorized_http(&wrong)
        .get(format!("{}/v1/containers", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    server.stop().await;
}

#[tokio::test]
async fn a_secret_reaches_only_the_worker_that_runs_the_container() {
    let w = world().await;
    let secret = "s3cr3t-value-4f2a";
    let tenant_a = Client::new(&w.server.base)
        .unwrap()
        .with_token(&w.tokens[&Who::TenantA]);
    let mut with_secret = spec(None);
    with_secret.id = Some("holds-a-secret".to_owned());
    with_secret
        .secret_env
        .insert("API_KEY".to_owned(), secret.to_owned());
    let id = tenant_a.submit(&with_secret).await.unwrap().id;
    let placed = w
        .server
        .client
        .container_when_settled(&id, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(placed.worker.as_ref().map(WorkerId::as_str), Some("w1"));

    // Nothing a client or an operator reads carries the value.
    for (who, path) in [
        (Who::TenantA, format!("/v1/containers/{id}")),
        (Who::TenantA, "/v1/containers".to_owned()),
        (Who::Admin, format!("/v1/containers/{id}")),
        (Who::Admin, "/v1/workers/w1".to_owned()),
        (Who::Admin, "/v1/check".to_owned()),
    ] {
        let (status, body) = send(&w, who, &case(Method::GET, "", path.clone())).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains(secret), "{path} shows the secret: {body}");
    }
    // Nor does the record as it would be logged.
    let record = w.server.store.container(&id).await.unwrap().unwrap();
    let logged = format!("{record:?}");
    assert!(
        !logged.contains(secret) && logged.contains("API_KEY"),
        "{logged}"
    );

    // Worker 2 may not read worker 1's assignments; worker 1 receives the secret.
    let path = format!("/v1/workers/w1/assignments?epoch={}&max=100", w.epoch1);
    let (status, _) = send(&w, Who::Worker2, &case(Method::GET, "", path.clone())).await;
    assert_eq!(status, 403);
    let (status, body) = send(&w, Who::Worker1, &case(Method::GET, "", path)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(secret), "the running worker gets it: {body}");
    w.server.stop().await;
}

#[tokio::test]
async fn a_secret_named_in_env_too_is_refused() {
    let server = Server::start().await;
    let (status, error, _) = server
        .post(
            "/v1/containers",
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "env": {"K": "1"}, "secret_env": {"K": "2"}}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error.unwrap().field.as_deref(), Some("secret_env.K"));
    let (status, error, _) = server
        .post(
            "/v1/containers",
            r#"{"cpu_millicores": 1, "memory_mib": 1, "command": ["a"], "secret_env": {"1X": "2"}}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error.unwrap().field.as_deref(), Some("secret_env.1X"));
    assert_eq!(server.container_count().await, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_bootstrap_admin_token_is_not_revoked_through_the_api() {
    let server = Server::start().await;
    let id = &server.admin_token["berth_".len().."berth_".len() + 16];
    let listed = server.client.tokens().await.unwrap();
    assert!(
        listed.iter().any(|t| t.id == id && t.bootstrap),
        "{listed:?}"
    );
    let refused = server.client.revoke_token(id).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert!(server.client.tokens().await.is_ok(), "still accepted");
    // Another admin token is revocable as usual.
    let other = server
        .client
        .create_token(&CreateToken {
            kind: NewTokenKind::Admin,
            tenant: None,
            name: Some("ops".to_owned()),
        })
        .await
        .unwrap();
    assert!(!other.credential.bootstrap);
    server
        .client
        .revoke_token(&other.credential.id)
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn metrics_open_serves_metrics_alone_without_a_token() {
    let config = berth_server::ServerConfig {
        metrics_open: true,
        ..common::config()
    };
    let server = Server::start_with(config, false).await;
    let anonymous = reqwest::Client::new();
    let get = |path: &str| anonymous.get(format!("{}{path}", server.base)).send();
    assert_eq!(get("/metrics").await.unwrap().status().as_u16(), 200);
    for path in [
        "/v1/workers",
        "/v1/containers",
        "/openapi.json",
        "/v1/check",
    ] {
        assert_eq!(get(path).await.unwrap().status().as_u16(), 401, "{path}");
    }
    server.stop().await;
}
