//! A berth server on loopback around an engine on the memory store, for the API tests.
#![allow(dead_code, clippy::unwrap_used)] // Shared by several test files; tests may unwrap.

use berth_api::{Client, ErrorBody, RegisterWorker};
use berth_core::{ContainerId, GpuType, Pool, PoolAttributes, PoolName, Resources, WorkerId};
use berth_engine::{Engine, EngineConfig};
use berth_server::{AppState, ServerConfig, serve};
use berth_store::{CheckOptions, MemoryStore, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub client: Client,
    pub base: String,
    /// Sends the admin token with every request.
    pub http: reqwest::Client,
    /// The admin token `client` and `http` call with.
    pub admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The configured pools: `cpu` (16 cores, 64 GiB) and `gpu` (8 A100-80s).
pub fn pools() -> Vec<Pool> {
    let attributes = |name: &str| PoolAttributes::plain(PoolName::new(name).unwrap());
    vec![
        Pool {
            attributes: attributes("cpu"),
            gpu_type: None,
            worker_size: Resources::new(16_000, 65_536, 0),
            fallback: Vec::new(),
        },
        Pool {
            attributes: attributes("gpu"),
            gpu_type: Some(GpuType::A100_80),
            worker_size: Resources::new(32_000, 262_144, 8),
            fallback: Vec::new(),
        },
    ]
}

/// Test settings: a reaper that never ticks on its own, a small body limit.
pub fn config() -> ServerConfig {
    ServerConfig {
        reaper_every: Duration::from_secs(3600),
        max_body_bytes: 64 * 1024,
        fleet_cache_ttl: Duration::ZERO,
        ..ServerConfig::default()
    }
}

/// A reqwest client that sends `Authorization: Bearer <token>` with every request.
pub fn authorized_http(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

impl Server {
    /// Asserts that every invariant holds, judged as `GET /v1/check` judges: at the
    /// server's clock, with its dead-after time.
    pub async fn assert_clean(&self) {
        let options = CheckOptions::at(self.state.now_ms(), self.state.config.check_dead_after());
        let violations = self.store.check(options).await.unwrap();
        assert!(violations.is_empty(), "violations: {violations:#?}");
    }

    /// A server whose engine places on the same store.
    pub async fn start() -> Server {
        Server::start_with(config(), false).await
    }

    /// A server with `config`; with `detached_engine` the engine runs on a store of its own,
    /// so the server's store sees only the server's calls (to count them).
    pub async fn start_with(config: ServerConfig, detached_engine: bool) -> Server {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let engine_store: Option<Arc<dyn Store>> = if detached_engine {
            Some(Arc::new(MemoryStore::default()))
        } else {
            None
        };
        Server::start_on(store, engine_store, config).await
    }

    /// A server on `store`, its engine on `engine_store` (the same store if `None`).
    pub async fn start_on(
        store: Arc<dyn Store>,
        engine_store: Option<Arc<dyn Store>>,
        config: ServerConfig,
    ) -> Server {
        let engine_config = EngineConfig {
            cache_ttl: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        Server::start_full(store, engine_store, config, engine_config).await
    }

    /// A server on the memory store whose engine runs with `engine_config`.
    pub async fn start_with_engine(engine_config: EngineConfig) -> Server {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        Server::start_full(store, None, config(), engine_config).await
    }

    async fn start_full(
        store: Arc<dyn Store>,
        engine_store: Option<Arc<dyn Store>>,
        config: ServerConfig,
        engine_config: EngineConfig,
    ) -> Server {
        let engine_store = engine_store.unwrap_or_else(|| store.clone());
        let engine = Arc::new(Engine::start(engine_store, engine_config, pools()));
        let state = AppState::new(store.clone(), engine, pools(), config);
        let admin_token = berth_core::Token::from_random(rand::random(), rand::random()).expose();
        berth_server::tokens::bootstrap_admin(&*store, &admin_token, 0)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            state,
            store,
            client: Client::new(&base).unwrap().with_token(&admin_token),
            base,
            http: authorized_http(&admin_token),
            admin_token,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Registers a CPU worker in pool `cpu`.
    pub async fn register(&self, id: &str, cpu: u64, memory: u64) -> WorkerId {
        let id = WorkerId::new(id).unwrap();
        let pool = PoolName::new("cpu").unwrap();
        self.client
            .register(&RegisterWorker::new(id.clone(), &pool, cpu, memory))
            .await
            .unwrap();
        id
    }

    /// How many container records the store holds.
    pub async fn container_count(&self) -> usize {
        self.store.containers(None, usize::MAX).await.unwrap().len()
    }

    /// Sends a raw request: (status, error body if it parses as one, raw body).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, Option<ErrorBody>, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).ok(), text)
    }

    /// Posts a JSON body.
    pub async fn post(&self, path: &str, body: &str) -> (u16, Option<ErrorBody>, String) {
        self.raw(
            reqwest::Method::POST,
            path,
            Some(("application/json", body)),
        )
        .await
    }

    /// Waits until the container is in `state` (up to 10 s).
    pub async fn wait_for(&self, id: &ContainerId, state: &str) -> berth_api::ContainerView {
        for _ in 0..200 {
            let view = self.client.container(id).await.unwrap();
            if view.state.as_str() == state {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("container {id} never became {state}");
    }
}
