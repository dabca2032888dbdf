//! The agent loop against a fake server: register, long-poll, report, acknowledge, cancel,
//! drain. Every scenario runs over each transport (in memory, and HTTP when available).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use berth_agent::{AgentConfig, ContainerRuntime, Control, HttpControl, ProcessRuntime};
use berth_core::{AttemptId, ContainerState, RuntimeName, WorkerId};
use common::fake::{FakeServer, State};
use common::{MemoryControl, PATIENCE, Renamed, RunningAgent, test_config, wait_until};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// How the agent reaches the fake server.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// Calls the fake directly.
    Memory,
    /// Through `HttpControl` and berth-api's client, to the fake behind axum.
    Http,
}

async fn start(
    server: &Arc<FakeServer>,
    transport: Transport,
    tweak: impl FnOnce(&mut AgentConfig),
) -> RunningAgent {
    start_with_runtime(server, transport, tweak, None).await
}

/// [`start`], with the process runtime under `name` if one is given.
async fn start_with_runtime(
    server: &Arc<FakeServer>,
    transport: Transport,
    tweak: impl FnOnce(&mut AgentConfig),
    name: Option<RuntimeName>,
) -> RunningAgent {
    let dir = TempDir::new().unwrap();
    let base = match transport {
        Transport::Memory => "http://unused.invalid".to_owned(),
        Transport::Http => common::http::serve(server.clone(), CancellationToken::new()).await,
    };
    let mut config = test_config(&base, &dir);
    tweak(&mut config);
    let control: Arc<dyn Control> = match transport {
        Transport::Memory => Arc::new(MemoryControl(server.clone())),
        Transport::Http => {
            let client = berth_api::Client::new(&base)
                .unwrap()
                .with_timeout(config.call_timeout);
            Arc::new(HttpControl::new(client))
        }
    };
    let inner = ProcessRuntime::new(config.process_runtime());
    let runtime: Arc<dyn ContainerRuntime> = match name {
        None => Arc::new(inner),
        Some(name) => Arc::new(Renamed { inner, name }),
    };
    RunningAgent::start_with_runtime(control, config, dir, runtime)
}

fn wid(id: &str) -> WorkerId {
    WorkerId::new(id).unwrap()
}

fn cid(id: &str) -> berth_core::ContainerId {
    berth_core::ContainerId::new(id).unwrap()
}

/// True when the container's record is in `state` (called under the server's lock).
fn state_is(s: &State, container: &str, state: ContainerState) -> bool {
    s.records
        .iter()
        .any(|(id, r)| id.as_str() == container && r.state == state)
}

/// The worker registers with the name of the runtime it was given.
async fn the_registration_states_the_runtimes_name(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.with(|s| assert_eq!(s.workers[&wid("w-1")].runtime, RuntimeName::PROCESS));
    agent.stop().await.unwrap();

    let server = Arc::new(FakeServer::new());
    let runc = Some(RuntimeName::RUNC);
    let agent = start_with_runtime(&server, transport, |_| {}, runc).await;
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.with(|s| assert_eq!(s.workers[&wid("w-1")].runtime, RuntimeName::RUNC));
    agent.stop().await.unwrap();
}

async fn runs_an_assignment_and_reports_it(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.assign(
        "w-1",
        "c-1",
        &["sh", "-c", "echo hello; echo oops >&2; exit 0"],
        &[],
    );
    wait_until(&server, "c-1 exited", |s| {
        s.index_of("exited c-1 0").is_some()
    })
    .await;
    let record = server.record("c-1").unwrap();
    assert_eq!(record.exit_code, Some(0));
    let mut logs = record.logs.clone();
    logs.sort();
    assert_eq!(logs, vec!["hello", "oops"]);
    server.with(|s| {
        let running = s.index_of("running c-1").unwrap();
        let ack = s.index_of("ack d-1").expect("the delivery is acknowledged");
        let exited = s.index_of("exited c-1 0").unwrap();
        assert!(s.index_of("register w-1").unwrap() < running);
        assert!(running < ack && running < exited, "{:?}", s.events);
        assert!(s.unacked.is_empty());
    });
    agent.stop().await.unwrap();
    server.with(|s| assert_eq!(s.events.last().map(String::as_str), Some("deregister ok")));
}

async fn reports_exit_codes_and_start_failures(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    server.assign("w-1", "c-3", &["sh", "-c", "exit 3"], &[]);
    server.assign("w-1", "c-missing", &["no-such-command-berth"], &[]);
    server.assign(
        "w-1",
        "c-env",
        &["sh", "-c", "echo $GREETING from $BERTH_CONTAINER_ID"],
        &[("GREETING", "hi")],
    );
    wait_until(&server, "all three ended", |s| {
        s.records.values().all(|r| r.state.is_terminal()) && s.acked.len() == 3
    })
    .await;
    assert_eq!(server.record("c-3").unwrap().exit_code, Some(3));
    let missing = server.record("c-missing").unwrap();
    assert_eq!(missing.state, ContainerState::Failed);
    assert_eq!(
        missing.reason.as_deref(),
        Some("command not found: no-such-command-berth")
    );
    assert_eq!(server.record("c-env").unwrap().logs, vec!["hi from c-env"]);
    agent.stop().await.unwrap();
}

async fn a_stale_delivery_is_acknowledged_and_not_run(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    let marker = agent.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let holder = AttemptId("current".into());
    let stale = AttemptId("stale".into());
    server.assign_as("w-1", "c-2", &holder, &stale, &["sh", "-c", &touch], &[]);
    wait_until(&server, "the stale delivery acknowledged", |s| {
        s.acked.contains("d-1")
    })
    .await;
    assert!(!marker.exists(), "a stale delivery must not run");
    assert_eq!(
        server.record("c-2").unwrap().state,
        ContainerState::Scheduled
    );
    server.with(|s| {
        assert!(s.index_of("conflict running c-2").is_some());
        assert!(s.index_of("running c-2").is_none());
        let released = s
            .index_of("release c-2")
            .expect("the reservation is released");
        assert!(released < s.index_of("ack d-1").unwrap());
    });
    agent.stop().await.unwrap();
}

async fn a_cancellation_kills_the_container(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    server.assign(
        "w-1",
        "c-long",
        &["sh", "-c", "echo started; sleep 30 & wait"],
        &[],
    );
    wait_until(&server, "c-long running", |s| {
        state_is(s, "c-long", ContainerState::Running)
    })
    .await;
    wait_until(&server, "a heartbeat naming c-long", |s| {
        s.last_heartbeat.iter().any(|c| c.as_str() == "c-long")
    })
    .await;
    server.cancel("c-long");
    wait_until(&server, "c-long failed", |s| {
        state_is(s, "c-long", ContainerState::Failed)
    })
    .await;
    let record = server.record("c-long").unwrap();
    assert_eq!(record.reason.as_deref(), Some("cancelled"));
    assert_eq!(record.logs, vec!["started"]);
    wait_until(&server, "heartbeats without c-long", |s| {
        s.last_heartbeat.is_empty()
    })
    .await;
    agent.stop().await.unwrap();
}

async fn shutdown_gives_running_containers_their_grace(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    server.assign("w-1", "c-short", &["sh", "-c", "sleep 2; echo done"], &[]);
    wait_until(&server, "c-short running", |s| {
        state_is(s, "c-short", ContainerState::Running)
    })
    .await;
    agent.stop().await.unwrap();
    let record = server.record("c-short").unwrap();
    assert_eq!(record.state, ContainerState::Exited, "it was let finish");
    assert_eq!(record.logs, vec!["done"]);
    server.with(|s| {
        let exited = s.index_of("exited c-short 0").unwrap();
        let deregistered = s.index_of("deregister ok").expect("deregistered");
        assert!(exited < deregistered);
    });
}

async fn shutdown_kills_what_outlives_the_grace(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |c| c.grace = Duration::from_secs(1)).await;
    server.assign("w-1", "c-stuck", &["sleep", "30"], &[]);
    wait_until(&server, "c-stuck running", |s| {
        state_is(s, "c-stuck", ContainerState::Running)
    })
    .await;
    agent.stop().await.unwrap();
    let record = server.record("c-stuck").unwrap();
    assert_eq!(record.state, ContainerState::Failed);
    assert_eq!(record.reason.as_deref(), Some("worker shutting down"));
    server.with(|s| {
        let failed = s.index_of("failed c-stuck worker shutting down").unwrap();
        let deregistered = s.index_of("deregister ok").expect("deregistered");
        assert!(failed < deregistered);
        assert!(s.workers.is_empty());
    });
}

async fn an_unavailable_server_is_waited_for(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    server.with(|s| s.fail_next = 8);
    let agent = start(&server, transport, |_| {}).await;
    server.assign("w-1", "c-1", &["echo", "hello"], &[]);
    wait_until(&server, "c-1 exited", |s| {
        state_is(s, "c-1", ContainerState::Exited)
    })
    .await;
    server.with(|s| s.fail_next = 3);
    server.assign("w-1", "c-2", &["echo", "again"], &[]);
    wait_until(&server, "c-2 exited", |s| {
        state_is(s, "c-2", ContainerState::Exited)
    })
    .await;
    assert_eq!(server.record("c-2").unwrap().logs, vec!["again"]);
    agent.stop().await.unwrap();
}

async fn an_idle_agent_does_not_busy_poll(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    wait_until(&server, "a first poll", |s| s.polls >= 1).await;
    wait_until(&server, "some heartbeats", |s| s.heartbeats >= 5).await;
    let polls = server.with(|s| s.polls);
    assert!(polls <= 2, "{polls} polls while idle with a 20 s long-poll");
    agent.stop().await.unwrap();
}

async fn a_server_that_does_not_wait_is_not_busy_polled(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    server.with(|s| s.ignore_wait = true);
    let agent = start(&server, transport, |_| {}).await;
    wait_until(&server, "some heartbeats", |s| s.heartbeats >= 10).await;
    let polls = server.with(|s| s.polls);
    assert!(polls < 100, "{polls} polls in about 2 s");
    server.assign("w-1", "c-1", &["true"], &[]);
    wait_until(&server, "c-1 exited", |s| {
        state_is(s, "c-1", ContainerState::Exited)
    })
    .await;
    agent.stop().await.unwrap();
}

async fn a_forgotten_worker_registers_again(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |c| {
        c.poll_wait = Duration::from_millis(300)
    })
    .await;
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;
    server.with(|s| s.workers.clear());
    wait_until(&server, "a second registration", |s| {
        s.events
            .iter()
            .filter(|e| e.starts_with("register"))
            .count()
            >= 2
    })
    .await;
    server.assign("w-1", "c-1", &["true"], &[]);
    wait_until(&server, "c-1 exited", |s| {
        state_is(s, "c-1", ContainerState::Exited)
    })
    .await;
    agent.stop().await.unwrap();
}

async fn a_delivery_timeout_kills_the_container(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    let command = ["sh", "-c", "sleep 30 & wait"];
    server.assign_timed("w-1", "c-slow", &command, Duration::from_secs(1));
    wait_until(&server, "c-slow failed", |s| {
        state_is(s, "c-slow", ContainerState::Failed)
    })
    .await;
    let reason = server.record("c-slow").unwrap().reason.unwrap();
    assert_eq!(reason, "timed out after 1 s");
    agent.stop().await.unwrap();
}

async fn output_is_sent_while_running_and_never_twice(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |c| {
        c.log_flush_every = Some(Duration::from_millis(200))
    })
    .await;
    let script = "echo first; sleep 30 & wait";
    server.assign("w-1", "c-chatty", &["sh", "-c", script], &[]);
    wait_until(&server, "the first line while running", |s| {
        s.records
            .values()
            .any(|r| r.state == ContainerState::Running && r.logs == vec!["first".to_owned()])
    })
    .await;
    server.cancel("c-chatty");
    wait_until(&server, "c-chatty failed", |s| {
        state_is(s, "c-chatty", ContainerState::Failed)
    })
    .await;
    assert_eq!(server.record("c-chatty").unwrap().logs, vec!["first"]);
    agent.stop().await.unwrap();
}

async fn a_worker_declared_lost_stops_its_containers_and_registers_again(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    let marker = agent.dir.path().join("still-running");
    let script = format!("sleep 1; touch {}; sleep 30 & wait", marker.display());
    server.assign("w-1", "c-orphan", &["sh", "-c", &script], &[]);
    wait_until(&server, "c-orphan running", |s| {
        state_is(s, "c-orphan", ContainerState::Running)
    })
    .await;
    server.declare_lost("w-1");
    wait_until(&server, "a second registration, nothing running", |s| {
        let registrations = s
            .events
            .iter()
            .filter(|e| e.starts_with("register"))
            .count();
        registrations >= 2 && s.lost.is_empty() && s.index_of("conflict failed c-orphan").is_some()
    })
    .await;
    wait_until(&server, "nothing running", |s| s.last_heartbeat.is_empty()).await;
    assert_eq!(
        server.record("c-orphan").unwrap().state,
        ContainerState::Lost
    );
    agent.stop().await.unwrap();
}

/// Fencing: the worker was presumed dead and only one of its two containers was given back
/// (the other one was still owned when it registered again). It keeps the owned one, stops
/// the other, and never reports under its old epoch once it registered again.
async fn a_resurrected_worker_keeps_only_what_it_still_owns(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    server.assign("w-1", "c-keep", &["sh", "-c", "sleep 2"], &[]);
    server.assign("w-1", "c-gone", &["sleep", "30"], &[]);
    wait_until(&server, "both running", |s| {
        state_is(s, "c-keep", ContainerState::Running)
            && state_is(s, "c-gone", ContainerState::Running)
    })
    .await;
    let worker = berth_core::WorkerId::new("w-1").unwrap();
    server.with(|s| {
        let gone = s.records.get_mut(&cid("c-gone")).unwrap();
        gone.state = ContainerState::Lost;
        gone.reason = Some("worker lost".into());
        *s.epochs.get_mut(&worker).unwrap() += 1;
    });
    wait_until(&server, "c-keep exited under the new epoch", |s| {
        state_is(s, "c-keep", ContainerState::Exited)
    })
    .await;
    wait_until(&server, "c-gone stopped", |s| {
        s.index_of("conflict failed c-gone").is_some()
    })
    .await;
    server.with(|s| {
        let registrations = s
            .events
            .iter()
            .filter(|e| e.starts_with("register"))
            .count();
        assert_eq!(registrations, 2, "{:?}", s.events);
        assert!(s.index_of("exited c-keep 0").is_some(), "{:?}", s.events);
    });
    agent.stop().await.unwrap();
}

/// Reconciliation: a heartbeat answer naming a running container the worker does not own
/// stops it at once.
async fn a_container_the_worker_does_not_own_is_stopped(transport: Transport) {
    let server = Arc::new(FakeServer::new());
    let agent = start(&server, transport, |_| {}).await;
    server.assign("w-1", "c-moved", &["sleep", "30"], &[]);
    wait_until(&server, "c-moved running", |s| {
        state_is(s, "c-moved", ContainerState::Running)
    })
    .await;
    server.with(|s| {
        let record = s.records.get_mut(&cid("c-moved")).unwrap();
        record.worker = berth_core::WorkerId::new("w-other").unwrap();
    });
    wait_until(&server, "c-moved no longer running here", |s| {
        s.index_of("conflict failed c-moved").is_some() && s.last_heartbeat.is_empty()
    })
    .await;
    agent.stop().await.unwrap();
}

macro_rules! scenarios {
    ($transport:ident: $($name:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $transport {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    tokio::time::timeout(super::PATIENCE * 4, super::$name(super::Transport::$transport))
                        .await
                        .expect("the scenario finishes");
                }
            )*
        }
    };
}

scenarios!(Memory:
    the_registration_states_the_runtimes_name,
    runs_an_assignment_and_reports_it,
    reports_exit_codes_and_start_failures,
    a_stale_delivery_is_acknowledged_and_not_run,
    a_cancellation_kills_the_container,
    a_delivery_timeout_kills_the_container,
    output_is_sent_while_running_and_never_twice,
    a_worker_declared_lost_stops_its_containers_and_registers_again,
    shutdown_gives_running_containers_their_grace,
    shutdown_kills_what_outlives_the_grace,
    an_unavailable_server_is_waited_for,
    an_idle_agent_does_not_busy_poll,
    a_server_that_does_not_wait_is_not_busy_polled,
    a_forgotten_worker_registers_again,
    a_resurrected_worker_keeps_only_what_it_still_owns,
    a_container_the_worker_does_not_own_is_stopped,
);

scenarios!(Http:
    the_registration_states_the_runtimes_name,
    runs_an_assignment_and_reports_it,
    reports_exit_codes_and_start_failures,
    a_stale_delivery_is_acknowledged_and_not_run,
    a_cancellation_kills_the_container,
    a_delivery_timeout_kills_the_container,
    output_is_sent_while_running_and_never_twice,
    a_worker_declared_lost_stops_its_containers_and_registers_again,
    shutdown_gives_running_containers_their_grace,
    shutdown_kills_what_outlives_the_grace,
    an_unavailable_server_is_waited_for,
    an_idle_agent_does_not_busy_poll,
    a_server_that_does_not_wait_is_not_busy_polled,
    a_forgotten_worker_registers_again,
    a_resurrected_worker_keeps_only_what_it_still_owns,
    a_container_the_worker_does_not_own_is_stopped,
);

/// A second agent started in the work directory of a running one is refused, naming the
/// first, before it registers or touches a container; once the first has stopped, the
/// directory takes an agent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_in_a_work_directory_in_use_is_refused() {
    let server = Arc::new(FakeServer::new());
    let control = || -> Arc<dyn Control> { Arc::new(MemoryControl(server.clone())) };
    let dir = TempDir::new().unwrap();
    let first = RunningAgent::start(
        control(),
        test_config("http://unused.invalid", &dir),
        TempDir::new().unwrap(),
    );
    wait_until(&server, "registration", |s| !s.workers.is_empty()).await;

    let mut config = test_config("http://unused.invalid", &dir);
    config.worker_id = wid("w-2");
    let second = RunningAgent::start(control(), config.clone(), TempDir::new().unwrap());
    let refused = second.finished().await.unwrap_err().to_string();
    let holder = format!("pid {}", std::process::id());
    assert!(
        refused.contains("is in use by another agent") && refused.contains(&holder),
        "{refused}"
    );
    server.with(|s| assert!(!s.workers.contains_key(&wid("w-2")), "never registered"));

    first.stop().await.unwrap();
    let third = RunningAgent::start(control(), config, TempDir::new().unwrap());
    wait_until(&server, "w-2 registered", |s| {
        s.workers.contains_key(&wid("w-2"))
    })
    .await;
    third.stop().await.unwrap();
}
