//! Tests of the worker and protocol bodies: registration against configured pools,
//! attempt ids, strict status reports.

#![allow(clippy::unwrap_used)] // Tests may unwrap.
use super::*;
use berth_core::{
    CpuReserve, GpuType, PlacementPolicy, Pool, PoolAttributes, PoolName, RuntimeName, WorkerStatus,
};

fn pool(name: &str, priority: i32) -> Pool {
    Pool {
        attributes: PoolAttributes {
            pool: PoolName::new(name).unwrap(),
            priority,
            preemptible: false,
            requires_pool_selector: false,
            policy: PlacementPolicy::Pack,
            cpu_on_gpu: None,
        },
        gpu_type: None,
        worker_size: Resources::new(1000, 1000, 0),
        fallback: Vec::new(),
    }
}

#[test]
fn a_configured_pool_supplies_the_attributes() {
    let pools = [pool("gpu", 5)];
    let mut register = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("gpu").unwrap(),
        4000,
        8192,
    );
    register.gpu = Some(WorkerGpu {
        devices: Vec::new(),
        count: 4,
        gpu_type: "a100-40".into(),
    });
    let registration = register.resolve(&pools).unwrap();
    assert_eq!(registration.pool.priority, 5);
    assert_eq!(registration.pool.policy, PlacementPolicy::Pack);
    assert_eq!(registration.gpu_type, Some(GpuType::A100_40));
    assert_eq!(registration.total, Resources::new(4000, 8192, 4));
    register.priority = Some(1);
    assert_eq!(
        register.resolve(&pools).unwrap_err().field.as_deref(),
        Some("priority")
    );
}

#[test]
fn an_unconfigured_pool_takes_the_given_attributes() {
    let mut register = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("adhoc").unwrap(),
        1,
        1,
    );
    register.preemptible = Some(true);
    let registration = register.resolve(&[]).unwrap();
    assert!(registration.pool.preemptible);
    assert_eq!(registration.pool.priority, 0);
    register.cpu_millicores = 0;
    assert_eq!(
        register.resolve(&[]).unwrap_err().field.as_deref(),
        Some("cpu_millicores")
    );
    register.cpu_millicores = 1;
    register.status = Some(WorkerStatus::Lost);
    assert_eq!(
        register.resolve(&[]).unwrap_err().field.as_deref(),
        Some("status")
    );
}

#[test]
fn the_runtime_is_optional_and_validated() {
    let mut register = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("adhoc").unwrap(),
        1,
        1,
    );
    assert_eq!(
        register.resolve(&[]).unwrap().runtime,
        RuntimeName::PROCESS,
        "an older agent that does not say runs processes"
    );
    register.runtime = Some("runc".into());
    assert_eq!(register.resolve(&[]).unwrap().runtime, RuntimeName::RUNC);
    for bad in ["BAD NAME", "", "Runc", &"x".repeat(33)] {
        register.runtime = Some(bad.to_owned());
        let error = register.resolve(&[]).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("runtime"), "{bad:?}");
        assert!(error.message.contains("runtime name"), "{}", error.message);
    }
}

#[test]
fn the_runtime_is_left_out_of_the_json_when_absent() {
    let register = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("adhoc").unwrap(),
        1,
        1,
    );
    let json = serde_json::to_value(&register).unwrap();
    assert!(json.get("runtime").is_none(), "{json}");
    let with: RegisterWorker = serde_json::from_value(serde_json::json!({
        "id": "w1", "pool": "p", "cpu_millicores": 1, "memory_mib": 1, "runtime": "runc"
    }))
    .unwrap();
    assert_eq!(with.runtime.as_deref(), Some("runc"));
}

#[test]
fn cpu_on_gpu_is_accepted_in_registration_and_shown() {
    let json = serde_json::json!({
        "id": "w1", "pool": "adhoc", "cpu_millicores": 8000, "memory_mib": 16384,
        "gpu": { "count": 2, "type": "a10g" },
        "cpu_on_gpu": { "cpu_millicores": 2000, "memory_mib": 4096 }
    });
    let register: RegisterWorker = serde_json::from_value(json).unwrap();
    let reserve = CpuReserve {
        cpu_millicores: 2000,
        memory_mib: 4096,
    };
    let registration = register.resolve(&[]).unwrap();
    assert_eq!(registration.pool.cpu_on_gpu, Some(reserve));
    let worker = registration.into_worker(Resources::new(8000, 16384, 2), 1, 1);
    let view = WorkerView::new(&worker, None, 0);
    assert_eq!(view.cpu_on_gpu, Some(reserve.into()));
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["cpu_on_gpu"]["memory_mib"], 4096, "{json}");

    let plain = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("adhoc").unwrap(),
        1,
        1,
    );
    assert_eq!(
        plain.resolve(&[]).unwrap().pool.cpu_on_gpu,
        None,
        "off by default"
    );
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("cpu_on_gpu").is_none(), "{json}");
    let bad = serde_json::json!({
        "id": "w1", "pool": "p", "cpu_millicores": 1, "memory_mib": 1,
        "cpu_on_gpu": { "cpu_millicores": -1, "memory_mib": 1 }
    });
    assert!(serde_json::from_value::<RegisterWorker>(bad).is_err());
}

#[test]
fn cpu_on_gpu_must_agree_with_a_configured_pool() {
    let mut configured = pool("gpu", 5);
    let mut register = RegisterWorker::new(
        WorkerId::new("w1").unwrap(),
        &PoolName::new("gpu").unwrap(),
        4000,
        8192,
    );
    let reserve = CpuReserveView {
        cpu_millicores: 1000,
        memory_mib: 2048,
    };
    register.cpu_on_gpu = Some(reserve);
    let error = register.resolve(&[configured.clone()]).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("cpu_on_gpu"));
    assert!(error.message.contains("off"), "{}", error.message);
    configured.attributes.cpu_on_gpu = Some(reserve.into());
    let registration = register.resolve(&[configured.clone()]).unwrap();
    assert_eq!(registration.pool.cpu_on_gpu, Some(reserve.into()));
    register.cpu_on_gpu = None;
    let registration = register.resolve(&[configured]).unwrap();
    assert_eq!(
        registration.pool.cpu_on_gpu,
        Some(reserve.into()),
        "the configured pool supplies it"
    );
}

#[test]
fn attempts_are_checked() {
    assert!(check_attempt("attempt", &AttemptId("0123abcd".into())).is_ok());
    assert!(check_attempt("attempt", &AttemptId("a b".into())).is_err());
    assert!(check_attempt("attempt", &AttemptId(String::new())).is_err());
}

#[test]
fn status_reports_parse_strictly() {
    let report: StatusReport = serde_json::from_str(
        r#"{"worker": "w1", "attempt": "a1", "epoch": 1, "state": "exited", "exit_code": 0}"#,
    )
    .unwrap();
    assert_eq!(report.state, ReportedState::Exited);
    let bad: Result<StatusReport, _> = serde_json::from_str(
        r#"{"worker": "w{1}", "attempt": "a1", "epoch": 1, "state": "exited"}"#,
    );
    assert!(bad.is_err());
    let bad: Result<StatusReport, _> =
        serde_json::from_str(r#"{"worker": "w1", "attempt": "a1", "state": "done"}"#);
    assert!(bad.is_err());
}
