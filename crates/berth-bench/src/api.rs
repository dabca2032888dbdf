//! `--scenario api`: the engine's speed through the HTTP API. A `berth server` (in this
//! process, on the chosen store) with a fleet of bench workers; (1) 100 concurrent single
//! submits from 100 client connections, timed until all 100 are placed (not just
//! accepted); (2) batch submits of 500 from 4 clients, placements per second.

use super::args::Settings;
use super::fleet::{self, REQUEST};
use super::percentile::percentile;
use super::report::{ApiResult, BenchReport};
use super::store_choice::StoreChoice;
use anyhow::Context;
use berth_api::{Client, ContainerSpec};
use berth_core::ContainerId;
use berth_engine::{Engine, EngineConfig};
use berth_server::{AppState, ServerConfig};
use berth_store::{ContainerState, Store};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Concurrent single submits, one client connection each.
const SINGLES: usize = 100;
/// Requests per batch submit.
const BATCH: usize = 500;
/// Clients sending batch submits at once.
const BATCH_CLIENTS: usize = 4;

/// A server with its engine, on a fresh namespace of the chosen store.
pub(crate) struct Running {
    /// Where the server listens.
    pub(crate) url: String,
    /// An admin token the server accepts (every call of the bench goes through the
    /// server's authentication, as a client's would).
    pub(crate) admin: String,
    /// A join token for the bench's agents.
    pub(crate) join: berth_core::Token,
    engine: Arc<Engine>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A server on `store` with `workers` bench workers (never polled: the engine only places
/// onto them), each with room for `per_worker` requests.
async fn start(
    store: Arc<dyn Store>,
    workers: usize,
    per_worker: usize,
) -> anyhow::Result<Running> {
    fleet::register(&*store, workers, fleet::worker_for(per_worker)).await?;
    serve(store).await
}

/// A server and its engine on `store`, listening on a free loopback port.
pub(crate) async fn serve(store: Arc<dyn Store>) -> anyhow::Result<Running> {
    let engine = Arc::new(Engine::start(
        store.clone(),
        EngineConfig::default(),
        Vec::new(),
    ));
    let admin = berth_core::Token::from_random(rand::random(), rand::random()).expose();
    berth_server::tokens::bootstrap_admin(&*store, &admin, berth_store::now_ms()).await?;
    let join = berth_server::tokens::issue(
        &*store,
        berth_core::Role::Join,
        "bench agents",
        berth_store::now_ms(),
    )
    .await?;
    let state = AppState::new(store, engine.clone(), Vec::new(), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(berth_server::serve(listener, state, async move {
        stopped.cancelled().await
    }));
    Ok(Running {
        url,
        admin,
        join,
        engine,
        stop,
        task,
    })
}

impl Running {
    /// A client of the server with its admin token.
    pub(crate) fn client(&self) -> Result<Client, berth_api::ClientError> {
        Ok(Client::new(&self.url)?.with_token(&self.admin))
    }

    /// Stops the server, then its engine.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("the server task")??;
        self.engine.stop().await;
        Ok(())
    }
}

fn spec(id: String) -> ContainerSpec {
    let mut spec = ContainerSpec::new(
        REQUEST.cpu_millicores,
        REQUEST.memory_mib,
        vec!["true".to_owned()],
    );
    spec.id = Some(id);
    spec
}

/// How long one wait for a placement may last before the client asks again. The client
/// learns of the placement by a long-poll (`GET /v1/containers/{id}?wait_ms=`), which the
/// server answers as soon as its engine settles the request; the time reported is the
/// placement time the store recorded at settlement.
const WAIT: Duration = Duration::from_secs(10);

/// Submits through `client`, waits until the container is placed, and returns when it was
/// placed (ms since the epoch, as the store stamped it at settlement).
async fn submit_and_wait(client: Client, id: String) -> anyhow::Result<u64> {
    let container = ContainerId::new(id.as_str())?;
    client.submit(&spec(id)).await?;
    loop {
        let view = client.container_when_settled(&container, WAIT).await?;
        if view.state != ContainerState::Pending {
            anyhow::ensure!(
                view.worker.is_some(),
                "{container} ended {}: {:?}",
                view.state,
                view.reason
            );
            return view.scheduled_at_ms.with_context(|| {
                format!("{container} is {} without a placement time", view.state)
            });
        }
    }
}

async fn singles_once(choice: &StoreChoice, round: usize) -> anyhow::Result<Duration> {
    let namespace = choice.namespace();
    let running = start(choice.connect(&namespace).await?, 20, SINGLES / 20).await?;
    let clients = (0..SINGLES)
        .map(|_| running.client())
        .collect::<Result<Vec<_>, _>>()?;
    let started_ms = berth_store::now_ms();
    let waits = clients.into_iter().enumerate().map(|(i, client)| {
        submit_and_wait(
            client,
            format!(
                "{}-s{round}-{i}",
                namespace.prefix().replace(['{', '}'], "")
            ),
        )
    });
    let placed_at = futures::future::try_join_all(waits).await?;
    let last = placed_at.into_iter().max().unwrap_or(started_ms);
    let elapsed = Duration::from_millis(last.saturating_sub(started_ms));
    running.stop().await?;
    choice.cleanup(namespace).await?;
    Ok(elapsed)
}

async fn batches(choice: &StoreChoice, requests: usize) -> anyhow::Result<f64> {
    let namespace = choice.namespace();
    let workers = 1_000;
    let running = start(
        choice.connect(&namespace).await?,
        workers,
        requests.div_ceil(workers),
    )
    .await?;
    let prefix = namespace.prefix().replace(['{', '}'], "");
    let before = running.engine.stats().snapshot().placed;
    let started = Instant::now();
    let chunks: Vec<Vec<usize>> = (0..requests)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[usize]>::to_vec)
        .collect();
    let per_client = chunks.len().div_ceil(BATCH_CLIENTS);
    let senders = chunks.chunks(per_client.max(1)).map(|mine| {
        let client = running.client();
        let prefix = prefix.clone();
        let mine = mine.to_vec();
        async move {
            let client = client?;
            for chunk in mine {
                let specs: Vec<ContainerSpec> = chunk
                    .iter()
                    .map(|i| spec(format!("{prefix}-b{i}")))
                    .collect();
                client.submit_batch(&specs).await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(senders).await?;
    let target = before + requests as u64;
    while running.engine.stats().snapshot().placed < target {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "placements stalled"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    running.stop().await?;
    choice.cleanup(namespace).await?;
    Ok(rate)
}

/// Runs the API scenario and prints its table.
pub async fn run(
    choice: &StoreChoice,
    settings: &Settings,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    singles_once(choice, 0).await?;
    let mut samples = Vec::with_capacity(settings.repetitions);
    for round in 1..=settings.repetitions {
        samples.push(singles_once(choice, round).await?.as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    let requests = settings.requests.min(100_000);
    let rate = batches(choice, requests).await?;
    let result = ApiResult {
        workers: 20,
        repetitions: samples.len(),
        singles_p50_ms: percentile(&samples, 50.0),
        singles_min_ms: samples.first().copied().unwrap_or(0.0),
        singles_max_ms: samples.last().copied().unwrap_or(0.0),
        batch_requests: requests,
        batch_placements_per_sec: rate,
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["through the HTTP API", "measured", "target"]);
    table.add_row([
        format!("{SINGLES} concurrent single submits on 20 workers, all placed: p50 (min-max)"),
        format!(
            "{:.2} ms ({:.2} - {:.2})",
            result.singles_p50_ms, result.singles_min_ms, result.singles_max_ms
        ),
        "< 20 ms".to_owned(),
    ]);
    table.add_row([
        format!("batch submits of {BATCH} from {BATCH_CLIENTS} clients, {requests} requests on 1,000 workers"),
        format!("{:.0} placements/s", result.batch_placements_per_sec),
        ">= 20,000/s".to_owned(),
    ]);
    println!("{table}");
    report.api.push(result);
    Ok(())
}
