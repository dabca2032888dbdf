//! The API end to end, in process: a server on loopback around an engine on the memory
//! store, driven through the typed client.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_api::{
    ContainerSpec, ErrorCode, FallbackSpec, GpuSpec, GpuTypes, HeartbeatRequest, RegisterWorker,
    ReleaseRequest, ReportedState, StatusReport,
};
use berth_core::{ContainerId, PoolName, RuntimeName, WorkerId, WorkerStatus};
use berth_server::reap_once;
use berth_store::{AttemptId, ContainerState};
use common::Server;
use std::time::{Duration, Instant};

fn spec(id: Option<&str>, cpu: u64, memory: u64) -> ContainerSpec {
    let mut spec = ContainerSpec::new(cpu, memory, vec!["echo".into(), "hi".into()]);
    spec.id = id.map(str::to_owned);
    spec
}

fn cid(id: &str) -> ContainerId {
    ContainerId::new(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_get_list_cancel_and_logs() {
    let server = Server::start().await;
    let client = &server.client;

    // No worker yet: the `cpu` pool could grow, so the request waits (pending).
    let one = client.submit(&spec(None, 500, 256)).await.unwrap();
    assert_eq!(one.state, ContainerState::Pending);
    assert!(!one.duplicate);
    assert!(one.id.as_str().starts_with("c-"), "{}", one.id);

    let batch = client
        .submit_batch(&[
            spec(Some("b-1"), 100, 100),
            spec(Some("b-2"), 100, 100),
            spec(None, 100, 100),
        ])
        .await
        .unwrap();
    assert_eq!(batch.results.len(), 3);
    assert_eq!(batch.results[0].id.as_str(), "b-1");
    assert_eq!(batch.results[1].id.as_str(), "b-2");
    assert!(batch.results.iter().all(|r| !r.duplicate));

    // Idempotent resubmits, alone and in a batch.
    let first = client.submit(&spec(Some("job-1"), 100, 100)).await.unwrap();
    assert!(!first.duplicate);
    let again = client.submit(&spec(Some("job-1"), 100, 100)).await.unwrap();
    assert!(again.duplicate);
    let (status, _, _) = server
        .post(
            "/v1/containers",
            r#"{"id": "job-1", "cpu_millicores": 100, "memory_mib": 100, "command": ["x"]}"#,
        )
        .await;
    assert_eq!(status, 200, "a duplicate answers 200");
    let mixed = client
        .submit_batch(&[spec(Some("job-1"), 100, 100), spec(Some("job-2"), 100, 100)])
        .await
        .unwrap();
    assert!(mixed.results[0].duplicate && !mixed.results[1].duplicate);
    assert_eq!(server.container_count().await, 6);

    // A dot segment as an id would be normalised out of its URLs: refused, nothing written.
    for bad in [".", "..", "-x"] {
        let body = format!(
            r#"{{"id": "{bad}", "cpu_millicores": 100, "memory_mib": 100, "command": ["x"]}}"#
        );
        let (status, _, text) = server.post("/v1/containers", &body).await;
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(
            text.contains("start it with an ASCII letter or digit"),
            "{text}"
        );
    }
    assert_eq!(server.container_count().await, 6);

    let view = client.container(&one.id).await.unwrap();
    assert_eq!(view.id, one.id);
    assert_eq!(view.resources.cpu_millicores, 500);
    assert_eq!(view.command, vec!["echo".to_owned(), "hi".to_owned()]);
    assert_eq!(view.tenant, "default");

    let all = client.containers(None, None).await.unwrap();
    assert_eq!(all.len(), 6);
    let two = client.containers(None, Some(2)).await.unwrap();
    assert_eq!(two.len(), 2);
    let pending = client
        .containers(Some(ContainerState::Pending), None)
        .await
        .unwrap();
    assert_eq!(pending.len(), 6);

    let cancelled = client.cancel(&cid("b-1")).await.unwrap();
    assert_eq!(cancelled.state, ContainerState::Failed);
    assert_eq!(cancelled.reason.as_deref(), Some("cancelled"));
    let failed = client
        .containers(Some(ContainerState::Failed), None)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);

    let logs = client.logs(&one.id).await.unwrap();
    assert_eq!(logs.id, one.id);
    assert!(logs.lines.is_empty());

    // An id that is also a route segment still reads back.
    client.submit(&spec(Some("batch"), 100, 100)).await.unwrap();
    assert_eq!(
        client.container(&cid("batch")).await.unwrap().id.as_str(),
        "batch"
    );
    assert!(client.logs(&cid("batch")).await.unwrap().lines.is_empty());
    assert_eq!(
        client.cancel(&cid("batch")).await.unwrap().state,
        ContainerState::Failed
    );

    let missing = client.container(&cid("nope")).await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.body().unwrap().code, ErrorCode::NotFound);

    // Workers: list and drain.
    let w1 = server.register("w1", 4000, 8192).await;
    let workers = client.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, w1);
    assert_eq!(workers[0].status, WorkerStatus::Available);
    assert!(workers[0].last_heartbeat_ms.is_some());
    let drained = client.drain(&w1).await.unwrap();
    assert_eq!(drained.status, WorkerStatus::Draining);
    // A drained worker that registers again stays drained.
    server.register("w1", 4000, 8192).await;
    assert_eq!(
        client.workers().await.unwrap()[0].status,
        WorkerStatus::Draining
    );
    let disabled = client.disable(&w1).await.unwrap();
    assert_eq!(disabled.status, WorkerStatus::Disabled);
    let enabled = client.enable(&w1).await.unwrap();
    assert_eq!(enabled.status, WorkerStatus::Available);

    assert!(client.check().await.unwrap().violations.is_empty());
    server.stop().await;
}

/// A worker states its runtime when it registers; an older agent that does not say runs
/// `process`; an invalid name is a 400 naming the field, and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_with_its_runtime() {
    let server = Server::start().await;
    let register = |id: &str, runtime: Option<&str>| {
        let runtime = runtime.map_or(String::new(), |r| format!(r#", "runtime": "{r}""#));
        format!(
            r#"{{"id": "{id}", "pool": "cpu", "cpu_millicores": 1000, "memory_mib": 1024{runtime}}}"#
        )
    };

    let (status, _, text) = server.post("/v1/workers", &register("old", None)).await;
    assert_eq!(status, 200, "{text}");
    let registered: berth_api::Registered = serde_json::from_str(&text).unwrap();
    assert_eq!(registered.worker.runtime, RuntimeName::PROCESS);

    let (status, _, text) = server
        .post("/v1/workers", &register("new", Some("runc")))
        .await;
    assert_eq!(status, 200, "{text}");
    let registered: berth_api::Registered = serde_json::from_str(&text).unwrap();
    assert_eq!(registered.worker.runtime, RuntimeName::RUNC);

    let (status, error, text) = server
        .post("/v1/workers", &register("bad", Some("BAD NAME")))
        .await;
    assert_eq!(status, 400, "{text}");
    let error = error.unwrap();
    assert_eq!(error.code, ErrorCode::InvalidArgument);
    assert_eq!(error.field.as_deref(), Some("runtime"), "{text}");
    assert!(
        error.message.contains("runtime name \"BAD NAME\""),
        "{}",
        error.message
    );

    let mut workers: Vec<(String, String)> = server
        .client
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.id.to_string(), w.runtime.to_string()))
        .collect();
    workers.sort();
    let want = [("new", "runc"), ("old", "process")].map(|(w, r)| (w.to_owned(), r.to_owned()));
    assert_eq!(workers, want);
    let new = berth_core::WorkerId::new("new").unwrap();
    let drained = server.client.drain(&new).await.unwrap();
    assert_eq!(
        drained.runtime,
        RuntimeName::RUNC,
        "a status change keeps it"
    );

    // The document describes the field on both sides.
    let document = server.client.openapi().await.unwrap();
    let schemas = &document["components"]["schemas"];
    for schema in ["RegisterWorker", "WorkerView"] {
        assert!(
            schemas[schema]["properties"]["runtime"].is_object(),
            "{schema}: {}",
            schemas[schema]
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_a_container_through_the_api() {
    let server = Server::start().await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    let beat = client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(beat.cancel.is_empty());
    assert_eq!(beat.status, WorkerStatus::Available);

    let mut job = spec(Some("run-1"), 1000, 1024);
    job.timeout_secs = Some(60);
    job.env.insert("GREETING".into(), "hello".into());
    let submitted = client.submit(&job).await.unwrap();
    assert!(!submitted.duplicate);

    // The long-poll returns as soon as the container is placed.
    let started = Instant::now();
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(delivered.len(), 1);
    let assignment = &delivered[0];
    assert_eq!(assignment.container.as_str(), "run-1");
    assert_eq!(assignment.timeout_secs, Some(60));
    assert_eq!(
        assignment.env.get("GREETING").map(String::as_str),
        Some("hello")
    );
    assert!(!assignment.env.contains_key(berth_api::TIMEOUT_ENV));
    assert_eq!(assignment.command, vec!["echo".to_owned(), "hi".to_owned()]);
    client.ack(&w1, 1, &assignment.delivery).await.unwrap();

    let scheduled = server.wait_for(&cid("run-1"), "scheduled").await;
    assert_eq!(scheduled.worker.as_ref(), Some(&w1));
    let report = |state, exit_code, logs: Vec<String>| StatusReport {
        worker: w1.clone(),
        attempt: assignment.attempt.clone(),
        epoch: 1,
        state,
        exit_code,
        reason: None,
        logs,
    };
    let running = client
        .report(&cid("run-1"), &report(ReportedState::Running, None, vec![]))
        .await
        .unwrap();
    assert_eq!(running.state, ContainerState::Running);
    let busy = &client.workers().await.unwrap()[0];
    assert_eq!(busy.free.cpu_millicores, 3000);

    // A stale attempt is refused and changes nothing.
    let mut stale = report(ReportedState::Exited, Some(0), vec![]);
    stale.attempt = AttemptId("deadbeef".into());
    let refused = client.report(&cid("run-1"), &stale).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert_eq!(client.workers().await.unwrap()[0].free.cpu_millicores, 3000);

    let lines = vec!["hello".to_owned(), "world".to_owned()];
    let exited = client
        .report(
            &cid("run-1"),
            &report(ReportedState::Exited, Some(0), lines.clone()),
        )
        .await
        .unwrap();
    assert_eq!(exited.state, ContainerState::Exited);
    assert_eq!(exited.exit_code, Some(0));
    // Reporting again is harmless.
    client
        .report(
            &cid("run-1"),
            &report(ReportedState::Exited, Some(0), vec![]),
        )
        .await
        .unwrap();

    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.free, worker.total, "the capacity is back");
    assert_eq!(client.logs(&cid("run-1")).await.unwrap().lines, lines);
    server.assert_clean().await;
    assert!(client.check().await.unwrap().violations.is_empty());

    // Cancelling a running container: the heartbeat says to stop it, the worker reports.
    client
        .submit(&spec(Some("run-2"), 1000, 1024))
        .await
        .unwrap();
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    let attempt = delivered[0].attempt.clone();
    let start = StatusReport {
        worker: w1.clone(),
        attempt: attempt.clone(),
        epoch: 1,
        state: ReportedState::Running,
        exit_code: None,
        reason: None,
        logs: vec!["starting".into()],
    };
    server.wait_for(&cid("run-2"), "scheduled").await;
    client.report(&cid("run-2"), &start).await.unwrap();
    let flagged = client.cancel(&cid("run-2")).await.unwrap();
    assert!(flagged.cancel_requested);
    assert_eq!(flagged.state, ContainerState::Running);
    let beat = client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 1,
                running: vec![cid("run-2")],
                images: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(beat.cancel, vec![cid("run-2")]);
    let stopped = client
        .report(
            &cid("run-2"),
            &StatusReport {
                worker: w1.clone(),
                attempt,
                epoch: 1,
                state: ReportedState::Failed,
                exit_code: None,
                reason: Some("cancelled".into()),
                logs: vec!["killed".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(stopped.state, ContainerState::Failed);
    assert_eq!(stopped.reason.as_deref(), Some("cancelled"));
    assert_eq!(
        client.logs(&cid("run-2")).await.unwrap().lines,
        vec!["starting".to_owned(), "killed".to_owned()]
    );
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.free, worker.total);
    server.assert_clean().await;

    // A drained worker that owns nothing can leave; one that owns something cannot.
    client
        .submit(&spec(Some("run-3"), 1000, 1024))
        .await
        .unwrap();
    server.wait_for(&cid("run-3"), "scheduled").await;
    client.drain(&w1).await.unwrap();
    let busy = client.deregister(&w1).await.unwrap_err();
    assert_eq!(busy.status(), Some(409), "{busy}");
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(1))
        .await
        .unwrap();
    let run3 = delivered
        .iter()
        .find(|a| a.container.as_str() == "run-3")
        .unwrap();
    // Releasing what the record says this worker holds is refused: report instead.
    let release = ReleaseRequest {
        epoch: 1,
        container: cid("run-3"),
        attempt: run3.attempt.clone(),
    };
    assert_eq!(
        client.release(&w1, &release).await.unwrap_err().status(),
        Some(409)
    );
    client
        .report(
            &cid("run-3"),
            &StatusReport {
                worker: w1.clone(),
                attempt: run3.attempt.clone(),
                epoch: 1,
                state: ReportedState::Failed,
                exit_code: None,
                reason: Some("image not found".into()),
                logs: vec![],
            },
        )
        .await
        .unwrap();
    client.deregister(&w1).await.unwrap();
    assert!(client.workers().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_long_poll_waits_without_spinning() {
    // The engine runs on a store of its own, so the server's store counts only the
    // server's calls; the reservation is committed by hand.
    let server = Server::start_with(common::config(), true).await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;

    let before = server.store.stats().snapshot();
    let started = Instant::now();
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(1))
        .await
        .unwrap();
    let waited = started.elapsed();
    let spent = server.store.stats().snapshot().since(&before);
    assert!(delivered.is_empty());
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(spent.round_trips <= 3, "{spent:?}");

    // A reservation committed while the worker waits is delivered at once.
    let poll = {
        let client = client.clone();
        let w1 = w1.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let delivered = client
                .assignments(&w1, 1, 8, Duration::from_secs(10))
                .await
                .unwrap();
            (delivered, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let group = berth_store::CommitGroup {
        worker: w1.clone(),
        reservations: vec![berth_store::Reservation {
            devices: Vec::new(),
            container: cid("direct-1"),
            attempt: AttemptId("a1".into()),
            resources: berth_core::Resources::new(100, 100, 0),
            payload: berth_core::Payload::default(),
        }],
    };
    server.store.commit(&[group]).await.unwrap();
    let (delivered, waited) = poll.await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_is_capped_by_the_server() {
    let config = berth_server::ServerConfig {
        long_poll_max: Duration::from_millis(200),
        ..common::config()
    };
    let server = Server::start_with(config, true).await;
    let w1 = server.register("w1", 4000, 8192).await;
    let started = Instant::now();
    let delivered = server
        .client
        .assignments(&w1, 1, 8, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(delivered.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Beyond the document's int64: refused, not taken.
    for path in [
        "/v1/containers/c-1?wait_ms=9223372036854775808".to_owned(),
        format!("/v1/workers/{w1}/assignments?epoch=1&wait_ms=9223372036854775808"),
    ] {
        let (status, error, text) = server.raw(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert_eq!(error.unwrap().field.as_deref(), Some("wait_ms"), "{text}");
    }
    server.stop().await;
}

/// Admission judges every step of a fallback chain: a GPU type no pool has is refused, but
/// not when a later step accepts one a pool has; the container shows its chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_step_that_could_run_makes_a_request_admissible() {
    let server = Server::start().await;
    let mut odd = spec(Some("odd"), 1000, 1024);
    odd.gpu = Some(GpuSpec {
        count: 1,
        milli: None,
        types: GpuTypes::List(vec!["MI300X".into()]),
    });
    let error = server.client.submit(&odd).await.unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");

    odd.fallback = vec![FallbackSpec {
        after_ms: 30_000,
        pool: None,
        gpu_types: vec!["A100-80".into()],
    }];
    let submitted = server.client.submit(&odd).await.unwrap();
    assert_eq!(submitted.state, ContainerState::Pending);
    let view = server.client.container(&cid("odd")).await.unwrap();
    assert_eq!(view.fallback, odd.fallback);

    // A chain out of order is refused, naming the step.
    let mut disordered = odd.clone();
    disordered.id = Some("disordered".into());
    disordered.fallback.push(FallbackSpec {
        after_ms: 10,
        pool: Some("cpu".into()),
        gpu_types: Vec::new(),
    });
    let error = server.client.submit(&disordered).await.unwrap_err();
    assert_eq!(error.status(), Some(400), "{error}");
    assert_eq!(
        error.body().unwrap().field.as_deref(),
        Some("fallback[1].after_ms")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_gpus_are_refused_at_once() {
    let server = Server::start().await;
    let mut huge = spec(Some("huge"), 1000, 1024);
    huge.gpu = Some(GpuSpec {
        count: 10_000,
        milli: None,
        types: GpuTypes::Any,
    });
    let started = Instant::now();
    let error = server.client.submit(&huge).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(error.status(), Some(422), "{error}");
    assert_eq!(error.body().unwrap().code, ErrorCode::Unplaceable);
    assert!(error.body().unwrap().message.contains("never"), "{error}");

    // A GPU type no pool or worker has: no pool matches.
    let mut odd = spec(Some("odd"), 1000, 1024);
    odd.gpu = Some(GpuSpec {
        count: 1,
        milli: None,
        types: GpuTypes::List(vec!["MI300X".into()]),
    });
    let error = server.client.submit(&odd).await.unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");

    // In a batch, the field names the element; nothing of the batch is written.
    let error = server
        .client
        .submit_batch(&[spec(Some("fine"), 100, 100), huge.clone()])
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(422));
    assert_eq!(
        error.body().unwrap().field.as_deref(),
        Some("containers[1]")
    );

    assert_eq!(server.container_count().await, 0);
    assert_eq!(server.store.backlog_len().await.unwrap(), 0);
    // A modest GPU request fits the `gpu` pool and waits for it.
    let mut fits = spec(Some("fits"), 1000, 1024);
    fits.gpu = Some(GpuSpec {
        count: 8,
        milli: None,
        types: GpuTypes::List(vec!["A100-80".into()]),
    });
    assert_eq!(
        server.client.submit(&fits).await.unwrap().state,
        ContainerState::Pending
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_gives_back_a_dead_workers_containers() {
    let server = Server::start().await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    client
        .submit(&spec(Some("sched-1"), 1000, 1024))
        .await
        .unwrap();
    client
        .submit(&spec(Some("run-1"), 1000, 1024))
        .await
        .unwrap();
    server.wait_for(&cid("sched-1"), "scheduled").await;
    let running = server.wait_for(&cid("run-1"), "scheduled").await;
    client
        .report(
            &cid("run-1"),
            &StatusReport {
                worker: w1.clone(),
                attempt: running.attempt.clone().unwrap(),
                epoch: 1,
                state: ReportedState::Running,
                exit_code: None,
                reason: None,
                logs: vec![],
            },
        )
        .await
        .unwrap();

    // Within the timeout nothing happens.
    let now = server.state.now_ms();
    let quiet = reap_once(&server.state, now).await.unwrap();
    assert!(quiet.lost_workers.is_empty());

    // The worker stops heartbeating: a tick past the timeout reclaims.
    let later = now + 60_000;
    let report = reap_once(&server.state, later).await.unwrap();
    assert_eq!(report.lost_workers, vec![w1.clone()]);
    assert_eq!(report.requeued, 1);
    assert_eq!(report.lost_containers, 1);

    let sched = client.container(&cid("sched-1")).await.unwrap();
    assert_eq!(sched.state, ContainerState::Pending, "requeued");
    assert_eq!(sched.worker, None);
    let lost = client.container(&cid("run-1")).await.unwrap();
    assert_eq!(lost.state, ContainerState::Lost);
    assert!(
        lost.reason
            .as_deref()
            .unwrap()
            .contains("missed its heartbeats")
    );
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.status, WorkerStatus::Lost);
    assert_eq!(worker.free, worker.total, "reclaimed");
    server.assert_clean().await;

    // Again: nothing more (reclaimed exactly once).
    let again = reap_once(&server.state, later).await.unwrap();
    assert_eq!(again, berth_server::ReapReport::default());
    let worker = &client.workers().await.unwrap()[0];
    assert_eq!(worker.free, worker.total);

    // The dead worker's late report is refused; its heartbeat tells it it is lost.
    let late = client
        .report(
            &cid("run-1"),
            &StatusReport {
                worker: w1.clone(),
                attempt: running.attempt.clone().unwrap(),
                epoch: 1,
                state: ReportedState::Exited,
                exit_code: Some(0),
                reason: None,
                logs: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(late.status(), Some(409), "{late}");
    let late_start = client
        .report(
            &cid("run-1"),
            &StatusReport {
                worker: w1.clone(),
                attempt: running.attempt.clone().unwrap(),
                epoch: 1,
                state: ReportedState::Running,
                exit_code: None,
                reason: None,
                logs: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(late_start.status(), Some(409), "{late_start}");
    let beat = client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let code = beat.body().map(|b| b.code);
    assert_eq!(
        code,
        Some(ErrorCode::StaleEpoch),
        "declared lost: fenced off: {beat}"
    );
    let listed = client.workers().await.unwrap();
    assert_eq!(listed[0].status, WorkerStatus::Lost);

    // It registers again and the requeued container is placed on it anew.
    server.register("w1", 4000, 8192).await;
    let placed = server.wait_for(&cid("sched-1"), "scheduled").await;
    assert_ne!(placed.attempt, sched.attempt);
    server.assert_clean().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_repairs_a_half_done_tick() {
    let server = Server::start().await;
    let w1 = server.register("w1", 4000, 8192).await;
    server
        .client
        .submit(&spec(Some("s-1"), 1000, 1024))
        .await
        .unwrap();
    server.wait_for(&cid("s-1"), "scheduled").await;
    // A tick that died right after declaring the worker lost.
    server
        .store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    let report = reap_once(&server.state, server.state.now_ms())
        .await
        .unwrap();
    assert!(report.lost_workers.is_empty());
    assert_eq!(report.requeued, 1);
    assert!(server.store.owned(&w1).await.unwrap().is_empty());
    server.assert_clean().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_and_health() {
    let server = Server::start().await;
    let client = &server.client;
    client.submit(&spec(None, 100, 100)).await.unwrap();

    let document = client.openapi().await.unwrap();
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/containers",
        "/v1/containers/batch",
        "/v1/containers/{id}",
        "/v1/containers/{id}/cancel",
        "/v1/containers/{id}/logs",
        "/v1/containers/{id}/status",
        "/v1/workers",
        "/v1/workers/{id}",
        "/v1/workers/{id}/drain",
        "/v1/workers/{id}/disable",
        "/v1/workers/{id}/enable",
        "/v1/workers/{id}/heartbeat",
        "/v1/workers/{id}/assignments",
        "/v1/workers/{id}/assignments/{delivery}/ack",
        "/v1/workers/{id}/release",
        "/v1/demand",
        "/v1/check",
        "/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ContainerSpec") && schemas.contains_key("ErrorBody"));
    for (schema, field) in [
        ("ContainerSpec", "id"),
        ("ContainerSpec", "pool"),
        ("RegisterWorker", "id"),
        ("RegisterWorker", "pool"),
        ("StatusReport", "worker"),
        ("ReleaseRequest", "container"),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(
            property["pattern"],
            berth_core::ids::ID_PATTERN,
            "{schema}.{field}: {property}"
        );
        assert_eq!(
            property["maxLength"],
            berth_core::ids::MAX_ID_LEN,
            "{schema}.{field}"
        );
    }

    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("berth_"), "{metrics}");
    assert!(metrics.contains("berth_api_submits_total"), "{metrics}");

    assert_eq!(client.healthz().await.unwrap().status, "ok");
    assert_eq!(client.readyz().await.unwrap().status, "ready");
    let demand = client.demand().await.unwrap();
    assert!(demand.pools.len() <= 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_reservations_are_adopted_or_released() {
    // No engine on this store: the test plays the scheduler replica that died between its
    // commit and its settlement.
    let server = Server::start_with(common::config(), true).await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    let w2 = server.register("w2", 4000, 8192).await;
    let reserve =
        |worker: &berth_core::WorkerId, id: &str, attempt: &str| berth_store::CommitGroup {
            worker: worker.clone(),
            reservations: vec![berth_store::Reservation {
                devices: Vec::new(),
                container: cid(id),
                attempt: AttemptId(attempt.into()),
                resources: berth_core::Resources::new(1000, 1024, 0),
                payload: berth_core::Payload::default(),
            }],
        };

    // A pending record whose reservation the worker holds: the worker may run it.
    client
        .submit(&spec(Some("orph-1"), 1000, 1024))
        .await
        .unwrap();
    server
        .store
        .commit(&[reserve(&w1, "orph-1", "a1")])
        .await
        .unwrap();
    let report = |state, exit_code| StatusReport {
        worker: w1.clone(),
        attempt: AttemptId("a1".into()),
        epoch: 1,
        state,
        exit_code,
        reason: None,
        logs: vec![],
    };
    let running = client
        .report(&cid("orph-1"), &report(ReportedState::Running, None))
        .await
        .unwrap();
    assert_eq!(running.state, ContainerState::Running);
    assert_eq!(running.worker.as_ref(), Some(&w1));
    client
        .report(&cid("orph-1"), &report(ReportedState::Exited, Some(3)))
        .await
        .unwrap();
    assert_eq!(
        client.container(&cid("orph-1")).await.unwrap().exit_code,
        Some(3)
    );

    // A worker without the reservation cannot claim a pending record.
    client
        .submit(&spec(Some("orph-2"), 1000, 1024))
        .await
        .unwrap();
    let mut stranger = report(ReportedState::Running, None);
    stranger.worker = w2.clone();
    assert_eq!(
        client
            .report(&cid("orph-2"), &stranger)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );

    // A reservation whose record names another holder is released by its worker.
    server
        .store
        .commit(&[reserve(&w1, "orph-2", "real")])
        .await
        .unwrap();
    server
        .store
        .commit(&[reserve(&w2, "orph-2", "x1")])
        .await
        .unwrap();
    server
        .store
        .transition(
            &cid("orph-2"),
            &berth_store::Transition::Scheduled {
                worker: w1.clone(),
                attempt: AttemptId("real".into()),
            },
        )
        .await
        .unwrap();
    let released = client
        .release(
            &w2,
            &ReleaseRequest {
                epoch: 1,
                container: cid("orph-2"),
                attempt: AttemptId("x1".into()),
            },
        )
        .await
        .unwrap();
    assert!(released.released);
    let again = client
        .release(
            &w2,
            &ReleaseRequest {
                epoch: 1,
                container: cid("orph-2"),
                attempt: AttemptId("x1".into()),
            },
        )
        .await
        .unwrap();
    assert!(!again.released, "idempotent");
    let workers = client.workers().await.unwrap();
    let w2_view = workers.iter().find(|w| w.id == w2).unwrap();
    assert_eq!(w2_view.free, w2_view.total);
    server.assert_clean().await;
    server.stop().await;
}

/// Fencing and heartbeat reconciliation through the API: a registration starts a new epoch
/// and lists what the worker owns; calls under the old epoch get 409 `stale_epoch` and
/// change nothing; a heartbeat naming a container the worker does not own is told to stop
/// it; a reservation whose record ended is released by the next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_and_heartbeat_reconciliation() {
    let server = Server::start().await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    client.submit(&spec(Some("kept"), 500, 256)).await.unwrap();
    let kept = server.wait_for(&cid("kept"), "scheduled").await;
    let pool = berth_core::PoolName::new("cpu").unwrap();
    let again = client
        .register(&berth_api::RegisterWorker::new(
            w1.clone(),
            &pool,
            4000,
            8192,
        ))
        .await
        .unwrap();
    assert_eq!(again.worker.epoch, 2);
    let owned: Vec<(&str, &AttemptId)> = again
        .owned
        .iter()
        .map(|o| (o.container.as_str(), &o.attempt))
        .collect();
    assert_eq!(owned, vec![("kept", kept.attempt.as_ref().unwrap())]);

    let stale = client
        .assignments(&w1, 1, 8, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(stale.body().map(|b| b.code), Some(ErrorCode::StaleEpoch));
    let stale_release = ReleaseRequest {
        epoch: 1,
        container: cid("kept"),
        attempt: kept.attempt.clone().unwrap(),
    };
    let refused = client.release(&w1, &stale_release).await.unwrap_err();
    assert_eq!(refused.status(), Some(409));
    let free = client.workers().await.unwrap()[0].free;
    assert_eq!(
        free.cpu_millicores, 3500,
        "a stale release gives nothing back"
    );

    let beat = client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 2,
                running: vec![cid("kept"), cid("stranger")],
                images: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        beat.stop,
        vec![cid("stranger")],
        "only the unowned one stops"
    );

    // The record ends behind the worker's back (as a lost final report would leave it):
    // the next heartbeat that does not list it releases the dead reservation.
    server
        .store
        .transition(
            &cid("kept"),
            &berth_store::Transition::Failed {
                reason: "test".into(),
            },
        )
        .await
        .unwrap();
    client
        .heartbeat(
            &w1,
            &HeartbeatRequest {
                epoch: 2,
                running: vec![],
                images: None,
            },
        )
        .await
        .unwrap();
    let free = client.workers().await.unwrap()[0].free;
    assert_eq!(
        free.cpu_millicores, 4000,
        "the dead reservation was released"
    );
    assert!(client.check().await.unwrap().violations.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_for_the_placement_without_polling() {
    let server = Server::start().await;
    let client = &server.client;
    // No worker yet: the request stays pending, and the wait ends after wait_ms.
    let submitted = client.submit(&spec(Some("w-1"), 100, 100)).await.unwrap();
    let started = Instant::now();
    let view = client
        .container_when_settled(&submitted.id, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(view.state, ContainerState::Pending);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // A worker joins while the client waits: the answer comes with the placement.
    let waiting = {
        let client = client.clone();
        let id = submitted.id.clone();
        tokio::spawn(async move {
            client
                .container_when_settled(&id, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.register("w1", 4000, 8192).await;
    let view = waiting.await.unwrap().unwrap();
    assert_eq!(view.state, ContainerState::Scheduled);
    assert!(view.worker.is_some() && view.scheduled_at_ms.is_some());

    // Settled already: at once; unknown: 404; a bad wait: 400.
    let started = Instant::now();
    let again = client
        .container_when_settled(&submitted.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(again.state, ContainerState::Scheduled);
    assert!(started.elapsed() < Duration::from_secs(5));
    let unknown = client
        .container_when_settled(&cid("nope"), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    let (status, _, _) = server
        .raw(
            reqwest::Method::GET,
            "/v1/containers/w-1?wait_ms=soon",
            None,
        )
        .await;
    assert_eq!(status, 400);
    server.stop().await;
}

/// A release wakes the earliest deferred requests: a request deferred with a long backoff
/// is placed as soon as capacity comes back, not at the end of its backoff (under a steady
/// load, fresh requests would otherwise take the room first, again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_deferred_requests() {
    let server = Server::start_with_engine(berth_engine::EngineConfig {
        cache_ttl: Duration::from_millis(50),
        backoff_base: Duration::from_secs(3600),
        backoff_cap: Duration::from_secs(3600),
        ..berth_engine::EngineConfig::default()
    })
    .await;
    let client = &server.client;
    let w1 = server.register("w1", 1000, 1024).await;
    client
        .submit(&spec(Some("first"), 1000, 512))
        .await
        .unwrap();
    let first = server.wait_for(&cid("first"), "scheduled").await;
    client
        .submit(&spec(Some("second"), 1000, 512))
        .await
        .unwrap();
    let mut deferred = false;
    for _ in 0..200 {
        if client.container(&cid("second")).await.unwrap().deferrals > 0 {
            deferred = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(deferred, "second waits in the backlog, due in an hour");
    let report = |state, exit_code| StatusReport {
        worker: w1.clone(),
        attempt: first.attempt.clone().unwrap(),
        epoch: 1,
        state,
        exit_code,
        reason: None,
        logs: vec![],
    };
    client
        .report(&cid("first"), &report(ReportedState::Running, None))
        .await
        .unwrap();
    client
        .report(&cid("first"), &report(ReportedState::Exited, Some(0)))
        .await
        .unwrap();
    let second = server.wait_for(&cid("second"), "scheduled").await;
    assert_eq!(second.worker.as_ref(), Some(&w1));
    server.assert_clean().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_from_a_point_on() {
    let config = berth_server::ServerConfig {
        log_lines_kept: 4,
        ..common::config()
    };
    let server = Server::start_with(config, false).await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    let id = cid("tail-1");
    client
        .submit(&spec(Some("tail-1"), 1000, 1024))
        .await
        .unwrap();
    let delivered = client
        .assignments(&w1, 1, 8, Duration::from_secs(10))
        .await
        .unwrap();
    let attempt = delivered[0].attempt.clone();
    client.ack(&w1, 1, &delivered[0].delivery).await.unwrap();
    server.wait_for(&id, "scheduled").await;
    let report = |state, exit_code, logs: &[&str]| StatusReport {
        worker: w1.clone(),
        attempt: attempt.clone(),
        epoch: 1,
        state,
        exit_code,
        reason: None,
        logs: logs.iter().map(|l| (*l).to_owned()).collect(),
    };
    let lines = |view: &berth_api::LogsView| view.lines.join(",");

    let before = client.logs_after(&id, 0).await.unwrap();
    assert_eq!((before.first, before.next, before.dropped), (0, 0, 0));
    assert_eq!(
        (before.state, before.ended),
        (ContainerState::Scheduled, false)
    );

    client
        .report(&id, &report(ReportedState::Running, None, &["a", "b"]))
        .await
        .unwrap();
    let first = client.logs_after(&id, 0).await.unwrap();
    assert_eq!(lines(&first), "a,b");
    assert_eq!((first.first, first.next, first.dropped), (0, 2, 0));
    assert_eq!((first.state, first.ended), (ContainerState::Running, false));
    let nothing_new = client.logs_after(&id, first.next).await.unwrap();
    assert!(nothing_new.lines.is_empty());
    assert_eq!(nothing_new.next, 2, "the point stays until lines come");

    client
        .report(&id, &report(ReportedState::Running, None, &["c", "d", "e"]))
        .await
        .unwrap();
    let second = client.logs_after(&id, first.next).await.unwrap();
    assert_eq!(lines(&second), "c,d,e", "only the lines after the point");
    assert_eq!((second.first, second.next, second.dropped), (2, 5, 0));
    // Without `after`: every kept line (the last 4), as before, and how many are gone.
    let all = client.logs(&id).await.unwrap();
    assert_eq!(lines(&all), "b,c,d,e");
    assert_eq!((all.first, all.next, all.dropped), (1, 5, 1));

    // A follower that fell behind the kept lines is told how many it missed.
    client
        .report(
            &id,
            &report(ReportedState::Running, None, &["f", "g", "h", "i", "j"]),
        )
        .await
        .unwrap();
    let behind = client.logs_after(&id, second.next).await.unwrap();
    assert_eq!(lines(&behind), "g,h,i,j");
    assert_eq!((behind.first, behind.next, behind.dropped), (6, 10, 1));

    client
        .report(&id, &report(ReportedState::Exited, Some(0), &["k"]))
        .await
        .unwrap();
    let last = client.logs_after(&id, behind.next).await.unwrap();
    assert_eq!(lines(&last), "k");
    assert_eq!(
        (last.next, last.state, last.ended),
        (11, ContainerState::Exited, true)
    );
    // A repeated final report appends nothing again.
    client
        .report(&id, &report(ReportedState::Exited, Some(0), &["k"]))
        .await
        .unwrap();
    assert_eq!(client.logs(&id).await.unwrap().next, 11);
    // Past the end: nothing, and the end to ask from.
    let past = client.logs_after(&id, 99).await.unwrap();
    assert!(past.lines.is_empty());
    assert_eq!((past.first, past.next, past.dropped), (11, 11, 0));

    for bad in ["abc", "-1", "1.5", "", "99999999999999999999999"] {
        let (status, body, text) = server
            .raw(
                reqwest::Method::GET,
                &format!("/v1/containers/tail-1/logs?after={bad}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "after={bad:?}: {text}");
        let body = body.unwrap();
        assert_eq!(body.code, ErrorCode::InvalidArgument, "{text}");
        assert_eq!(body.field.as_deref(), Some("after"), "{text}");
    }
    let (status, body, text) = server
        .raw(
            reqwest::Method::GET,
            "/v1/containers/tail-1/logs?since=3",
            None,
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(body.unwrap().field.as_deref(), Some("since"));
    let unknown = client.logs_after(&cid("nobody"), 0).await.unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");

    let document = client.openapi().await.unwrap();
    let get = &document["paths"]["/v1/containers/{id}/logs"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"after"), "{params:?}");
    let schema = &document["components"]["schemas"]["LogsView"]["properties"];
    for field in ["lines", "first", "next", "dropped", "state", "ended"] {
        assert!(
            schema.get(field).is_some(),
            "LogsView.{field} missing: {schema}"
        );
    }
    server.assert_clean().await;
    server.stop().await;
}

/// Sends `head` (request line and headers, no body) on a raw connection and returns the
/// first response's status line, read within 10 s.
async fn status_line_of(base: &str, head: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("an answer, not a wait for the body")
        .unwrap();
    line
}

#[tokio::test]
async fn an_oversize_body_is_refused_before_it_is_sent_and_made_up_methods_add_no_series() {
    let server = Server::start().await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let huge = format!(
        "POST /v1/containers HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    );
    let line = status_line_of(&server.base, &huge).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    let expect = format!(
        "POST /v1/containers HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
    );
    let line = status_line_of(&server.base, &expect).await;
    assert!(line.starts_with("HTTP/1.1 413"), "not 100 Continue: {line}");

    for method in ["FROB", "QUUX", "ZAP"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        server.raw(method, "/v1/containers", None).await;
    }
    let metrics = server.client.metrics().await.unwrap();
    assert!(
        !metrics.contains("FROB") && !metrics.contains("QUUX"),
        "{metrics}"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    server.stop().await;
}

/// The exposition passes `promtool check metrics` (every family has HELP, counters end in
/// `_total`, latencies are histograms), after traffic has touched the engine, the store and
/// the HTTP layer. promtool comes from Debian's `prometheus` package (the test script
/// installs it); without it this test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_pass_promtool() {
    use std::io::Write;
    let server = Server::start().await;
    let w1 = server.register("w1", 4000, 8192).await;
    server
        .client
        .submit(&spec(Some("m-1"), 100, 100))
        .await
        .unwrap();
    server.wait_for(&cid("m-1"), "scheduled").await;
    let _ = server.client.assignments(&w1, 1, 8, Duration::ZERO).await;
    let metrics = server.client.metrics().await.unwrap();
    for family in [
        "berth_http_request_duration_seconds_bucket",
        "berth_store_lock_collisions_total 0",
        "# HELP berth_placed_total",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) must be installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

/// `berth_intake_depth` shows the requests queued for placement and not yet settled (here
/// the engine places on a store of its own, so the server's intake never drains).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_depth_is_a_gauge() {
    let server = Server::start_with(common::config(), true).await;
    for i in 0..3 {
        let id = format!("q-{i}");
        server
            .client
            .submit(&spec(Some(&id), 100, 100))
            .await
            .unwrap();
    }
    let metrics = server.client.metrics().await.unwrap();
    assert!(
        metrics.contains("# HELP berth_intake_depth"),
        "no HELP:\n{metrics}"
    );
    assert!(
        metrics.lines().any(|line| line == "berth_intake_depth 3"),
        "berth_intake_depth is not 3:\n{metrics}"
    );
    server.stop().await;
}

/// On shutdown a long-poll in flight answers at once (empty) and the server stops, instead
/// of waiting out the poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_the_server() {
    let server = Server::start().await;
    let w1 = server.register("w1", 4000, 8192).await;
    let client = server.client.clone();
    let poll =
        tokio::spawn(async move { client.assignments(&w1, 1, 8, Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops within 5 s of the signal");
    let assignments = poll.await.unwrap().unwrap();
    assert!(assignments.is_empty(), "{assignments:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A tenant's quota through the API: set it, see the second container wait with a `quota`
/// reason while the first runs, see one above the quota on its own refused with 422 and
/// nothing written, and see the usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_quota_holds_its_containers_back() {
    let server = Server::start().await;
    let client = &server.client;
    server.register("w1", 8000, 8192).await;
    let quota = berth_api::TenantSpec {
        quota: berth_api::QuotaView {
            containers: Some(1),
            cpu_millicores: Some(2000),
            ..Default::default()
        },
        weight: Some(2),
    };
    let stored = client.put_tenant("acme", &quota).await.unwrap();
    assert!(stored.has_policy);
    assert_eq!((stored.weight, stored.quota.containers), (2, Some(1)));
    let of_acme = |id: &str, cpu: u64| {
        let mut spec = spec(Some(id), cpu, 128);
        spec.tenant = "acme".into();
        spec
    };
    client.submit(&of_acme("q1", 500)).await.unwrap();
    client.submit(&of_acme("q2", 500)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let (a, b) = (
            client.container(&cid("q1")).await.unwrap(),
            client.container(&cid("q2")).await.unwrap(),
        );
        let placed = |s| s == ContainerState::Scheduled;
        let waits = |v: &berth_api::ContainerView| {
            v.state == ContainerState::Pending
                && v.reason.as_deref().is_some_and(|r| r.starts_with("quota:"))
        };
        if placed(a.state) && waits(&b) {
            break b;
        }
        if placed(b.state) && waits(&a) {
            break a;
        }
        assert!(Instant::now() < deadline, "{a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        waiting.reason.as_deref().unwrap().contains("containers"),
        "{waiting:?}"
    );
    let error = client.submit(&of_acme("huge", 3000)).await.unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");
    assert!(error.to_string().contains("cpu_millicores"), "{error}");
    assert!(
        client.container(&cid("huge")).await.is_err(),
        "nothing written"
    );
    let acme = client.tenant("acme").await.unwrap();
    assert_eq!((acme.usage.containers, acme.usage.cpu_millicores), (1, 500));
    let listed = client.tenants().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t.name == "acme" && t.usage.containers == 1)
    );
    let removed = client.remove_tenant("acme").await.unwrap();
    assert!(!removed.has_policy);
    let again = client.remove_tenant("acme").await.unwrap_err();
    assert_eq!(again.status(), Some(404), "{again}");
    let bad = berth_api::TenantSpec {
        weight: Some(0),
        ..Default::default()
    };
    let refused = client.put_tenant("acme", &bad).await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
}

/// A registration may carry the images the worker holds already: the answer and the
/// worker's view show them; one without them starts with none; a bad list is a 400
/// naming the field, and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reports_the_images_a_worker_holds() {
    let server = Server::start().await;
    let client = &server.client;
    let pool = PoolName::new("cpu").unwrap();
    let w1 = WorkerId::new("w1").unwrap();
    let mut body = RegisterWorker::new(w1.clone(), &pool, 4000, 8192);
    let held = vec!["app:v1".to_owned(), "tools:2".to_owned()];
    body.images = Some(held.clone());
    let registered = client.register(&body).await.unwrap();
    assert_eq!(registered.worker.images, held);
    assert_eq!(client.worker(&w1).await.unwrap().worker.images, held);

    body.images = None;
    let again = client.register(&body).await.unwrap();
    assert!(again.worker.images.is_empty(), "a new lease, a new list");
    assert!(client.worker(&w1).await.unwrap().worker.images.is_empty());

    let w2 = WorkerId::new("w2").unwrap();
    let mut bad = RegisterWorker::new(w2.clone(), &pool, 4000, 8192);
    bad.images = Some(vec!["has space".to_owned()]);
    let refused = client.register(&bad).await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert!(refused.to_string().contains("images"), "{refused}");
    assert_eq!(client.worker(&w2).await.unwrap_err().status(), Some(404));
    server.stop().await;
}

/// A heartbeat may carry the images the worker holds: the worker's view shows them, a
/// heartbeat without them keeps them, and a bad list is a 400 naming the field with
/// nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_report_the_images_a_worker_holds() {
    let server = Server::start().await;
    let client = &server.client;
    let w1 = server.register("w1", 4000, 8192).await;
    let beat = |images: Option<Vec<String>>| HeartbeatRequest {
        epoch: 1,
        running: Vec::new(),
        images,
    };
    let held = vec![
        "app:v1".to_owned(),
        "127.0.0.1:5000/tools@sha256:ab".to_owned(),
    ];
    client
        .heartbeat(&w1, &beat(Some(held.clone())))
        .await
        .unwrap();
    client.heartbeat(&w1, &beat(None)).await.unwrap();
    assert_eq!(client.worker(&w1).await.unwrap().worker.images, held);
    let too_many: Vec<String> = (0..65).map(|i| format!("img{i}")).collect();
    for bad in [too_many, vec!["has space".to_owned()]] {
        let refused = client.heartbeat(&w1, &beat(Some(bad))).await;
        let text = format!("{:?}", refused.unwrap_err());
        assert!(text.contains("images"), "{text}");
    }
    assert_eq!(client.worker(&w1).await.unwrap().worker.images, held);
    server.stop().await;
}
