//! Contract cases for tenants' quotas: policies round-trip, a hold never takes a tenant
//! above a limit (also from two clients at once), and every charge follows its record: it
//! is given back by whatever ends the record or sends it back to waiting, and the usage is
//! always the sum of the charges (the invariant check says so).

use super::*;
use berth_core::quota::{Quota, Tenant};

fn tenant(name: &str, quota: Quota) -> Tenant {
    Tenant {
        name: TenantName::new(name).unwrap(),
        quota,
        weight: 1,
    }
}

fn of_tenant(id: &str, tenant: &str, cpu: u64) -> ContainerRequest {
    ContainerRequest {
        tenant: tenant.into(),
        ..request(id, cpu)
    }
}

fn hold_of(request: &ContainerRequest) -> Hold {
    Hold {
        container: request.id.clone(),
        charge: Charge::of(request, None),
    }
}

pub(super) async fn usage_of(store: &dyn Store, tenant: &str) -> Usage {
    store
        .usage()
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t == tenant)
        .map(|(_, u)| u)
        .unwrap_or_default()
}

/// Submits and claims `requests`; returns their claims in request order.
async fn claimed(store: &dyn Store, requests: &[ContainerRequest]) -> Vec<Claim> {
    store.submit(requests).await.unwrap();
    let claims = store.claim("e", 1000, Duration::ZERO).await.unwrap();
    requests
        .iter()
        .map(|r| {
            claims
                .iter()
                .find(|c| c.request.id == r.id)
                .unwrap()
                .clone()
        })
        .collect()
}

pub async fn tenants_policies_round_trip(connect: impl Connect) {
    let store = open(&connect, "tenants").await;
    assert!(store.tenants().await.unwrap().is_empty());
    let quota = Quota {
        containers: Some(3),
        gpu_milli_by_type: [(GpuType::H100, 2000)].into(),
        ..Quota::default()
    };
    let mut acme = tenant("acme", quota);
    acme.weight = 4;
    store.put_tenant(&acme).await.unwrap();
    store
        .put_tenant(&tenant("zeta", Quota::default()))
        .await
        .unwrap();
    let stored = store.tenants().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], acme);
    acme.weight = 0;
    let refused = store.put_tenant(&acme).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(store.remove_tenant(&acme.name).await.unwrap());
    assert!(!store.remove_tenant(&acme.name).await.unwrap());
    assert_eq!(store.tenants().await.unwrap().len(), 1);
}

pub async fn holds_never_take_a_tenant_over_its_quota(connect: impl Connect) {
    let store = open(&connect, "hold").await;
    let quota = Quota {
        containers: Some(2),
        cpu_millicores: Some(1000),
        ..Quota::default()
    };
    store.put_tenant(&tenant("acme", quota)).await.unwrap();
    let requests = [
        of_tenant("a1", "acme", 400),
        of_tenant("a2", "acme", 400),
        of_tenant("a3", "acme", 100),
        of_tenant("big", "acme", 1500),
        of_tenant("free", "other", 5000),
    ];
    claimed(&*store, &requests).await;
    let holds: Vec<Hold> = requests.iter().map(hold_of).collect();
    let outcomes = store.hold(&holds).await.unwrap();
    assert_eq!(outcomes[..2], [HoldOutcome::Held, HoldOutcome::Held]);
    let HoldOutcome::Over(over) = &outcomes[2] else {
        panic!("a third container is over a limit of two: {outcomes:?}");
    };
    assert_eq!(
        (over.dimension.as_str(), over.limit, over.in_use, over.asked),
        ("containers", 2, 2, 1)
    );
    let HoldOutcome::Never(never) = &outcomes[3] else {
        panic!("1500m is above a 1000m quota on its own: {outcomes:?}");
    };
    assert_eq!(never.dimension, "cpu_millicores");
    assert_eq!(outcomes[4], HoldOutcome::Held, "no policy, no limit");
    let usage = usage_of(&*store, "acme").await;
    assert_eq!((usage.containers, usage.cpu_millicores), (2, 800));
    assert!(
        usage_of(&*store, "other").await.is_empty(),
        "a tenant without a policy is charged by its settlement, not its hold"
    );
    // A retried batch holds the same charges again without being judged.
    let again = store.hold(&holds[..2]).await.unwrap();
    assert_eq!(again, [HoldOutcome::Held, HoldOutcome::Held]);
    assert_eq!(usage_of(&*store, "acme").await.containers, 2);
    // One container twice in one call, charged differently: the later item wins, and it is
    // counted once.
    let resized = |cpu: u64| {
        let mut hold = holds[0].clone();
        hold.charge.cpu_millicores = cpu;
        hold
    };
    let twice = store.hold(&[resized(300), resized(500)]).await.unwrap();
    assert_eq!(twice, [HoldOutcome::Held, HoldOutcome::Held]);
    let usage = usage_of(&*store, "acme").await;
    assert_eq!((usage.containers, usage.cpu_millicores), (2, 900));
    assert_clean(&*store).await;
}

pub async fn charges_follow_their_records(connect: impl Connect) {
    let store = open(&connect, "charges").await;
    register(&*store, "w1", 8000, 8192).await;
    store
        .put_tenant(&tenant(
            "acme",
            Quota {
                containers: Some(10),
                ..Quota::default()
            },
        ))
        .await
        .unwrap();
    let names = ["run", "fail", "defer", "cancel", "lost", "requeue"];
    let requests: Vec<ContainerRequest> = names.iter().map(|n| of_tenant(n, "acme", 100)).collect();
    let claims = claimed(&*store, &requests).await;
    let holds: Vec<Hold> = requests.iter().map(hold_of).collect();
    assert!(
        store
            .hold(&holds)
            .await
            .unwrap()
            .iter()
            .all(|o| *o == HoldOutcome::Held)
    );
    assert_eq!(usage_of(&*store, "acme").await.containers, 6);
    assert_clean(&*store).await;

    // Deferred and failed settlements give their holds back.
    let defer = Settlement::Deferred {
        not_before_ms: 0,
        reason: "quota".into(),
        pool: None,
        gpu_type: None,
    };
    let fail = Settlement::Failed {
        reason: "no".into(),
    };
    let placed = [&claims[0], &claims[3], &claims[4], &claims[5]];
    let reservations = placed.iter().map(|c| reservation_for(c)).collect();
    let out = store.commit(&[group("w1", reservations)]).await.unwrap();
    assert!(committed(&out[0]));
    let mut items = vec![
        settle_item(&claims[1], fail),
        settle_item(&claims[2], defer),
    ];
    items.extend(placed.iter().map(|c| scheduled_on(c, "w1")));
    store.settle(&items).await.unwrap();
    assert_eq!(usage_of(&*store, "acme").await.containers, 4);
    assert_clean(&*store).await;

    // A cancelled one, an exited one, a lost one and a requeued one give theirs back.
    let w1 = wid("w1");
    for claim in [&claims[0], &claims[4]] {
        let running = Transition::Running {
            worker: w1.clone(),
            attempt: claim.attempt.clone(),
        };
        store.transition(&claim.request.id, &running).await.unwrap();
    }
    let exited = Transition::Exited {
        worker: w1.clone(),
        attempt: claims[0].attempt.clone(),
        exit_code: 0,
    };
    store.transition(&cid("run"), &exited).await.unwrap();
    store
        .release(&w1, &cid("run"), Some(&claims[0].attempt), None)
        .await
        .unwrap();
    assert_eq!(usage_of(&*store, "acme").await.containers, 3);
    let cancelled = store.cancel(&cid("cancel")).await.unwrap();
    assert_eq!(cancelled.state, ContainerState::Scheduled, "flagged only");
    store
        .transition(
            &cid("cancel"),
            &Transition::Failed {
                reason: "cancelled".into(),
            },
        )
        .await
        .unwrap();
    store
        .release(&w1, &cid("cancel"), Some(&claims[3].attempt), None)
        .await
        .unwrap();
    assert_eq!(usage_of(&*store, "acme").await.containers, 2);
    store
        .set_worker_status(&w1, WorkerStatus::Lost)
        .await
        .unwrap();
    let why = "worker w1 missed its heartbeats";
    let lost = store
        .reclaim(&w1, &cid("lost"), &claims[4].attempt, why)
        .await
        .unwrap();
    let requeued = store
        .reclaim(&w1, &cid("requeue"), &claims[5].attempt, why)
        .await
        .unwrap();
    assert_eq!(
        (lost, requeued),
        (ReclaimOutcome::Lost, ReclaimOutcome::Requeued)
    );
    assert!(usage_of(&*store, "acme").await.is_empty());
    assert_clean(&*store).await;

    // Cancelling a pending, held one gives its hold back too.
    let pending = store.claim("e", 10, Duration::ZERO).await.unwrap();
    let again = pending
        .iter()
        .find(|c| c.request.id.as_str() == "requeue")
        .unwrap();
    store.hold(&[hold_of(&again.request)]).await.unwrap();
    assert_eq!(usage_of(&*store, "acme").await.containers, 1);
    store.cancel(&cid("requeue")).await.unwrap();
    assert!(usage_of(&*store, "acme").await.is_empty());
    assert_clean(&*store).await;
}

pub async fn an_ended_record_is_never_charged(connect: impl Connect) {
    let store = open(&connect, "ended").await;
    register(&*store, "w1", 8000, 8192).await;
    store
        .put_tenant(&tenant(
            "acme",
            Quota {
                containers: Some(1),
                ..Quota::default()
            },
        ))
        .await
        .unwrap();
    let requests = [
        of_tenant("gone", "acme", 100),
        of_tenant("open", "other", 100),
    ];
    let claims = claimed(&*store, &requests).await;
    for id in ["gone", "open"] {
        store.cancel(&cid(id)).await.unwrap();
    }
    assert_eq!(
        store.hold(&[hold_of(&requests[0])]).await.unwrap(),
        [HoldOutcome::Held],
        "held without a charge: its settlement will be superseded"
    );
    let items: Vec<SettleItem> = claims.iter().map(|c| scheduled_on(c, "w1")).collect();
    let outcomes = store.settle(&items).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, SettleOutcome::Superseded { .. }))
    );
    assert!(store.usage().await.unwrap().is_empty());
    assert_clean(&*store).await;
}

pub async fn gpu_limits_apply_per_type_and_in_total(connect: impl Connect) {
    let store = open(&connect, "gpu-quota").await;
    let quota = Quota {
        gpu_milli: Some(3000),
        gpu_milli_by_type: [(GpuType::H100, 1000)].into(),
        ..Quota::default()
    };
    store.put_tenant(&tenant("acme", quota)).await.unwrap();
    let mut requests: Vec<ContainerRequest> = ["h1", "h2", "a1", "a2"]
        .iter()
        .map(|id| of_tenant(id, "acme", 100))
        .collect();
    for r in &mut requests {
        r.resources.gpu_count = 1;
    }
    claimed(&*store, &requests).await;
    let on = |r: &ContainerRequest, t: GpuType| Hold {
        container: r.id.clone(),
        charge: Charge::of(r, Some(&t)),
    };
    let holds = [
        on(&requests[0], GpuType::H100),
        on(&requests[1], GpuType::H100),
        on(&requests[2], GpuType::A10G),
        on(&requests[3], GpuType::A10G),
    ];
    let outcomes = store.hold(&holds).await.unwrap();
    assert_eq!(outcomes[0], HoldOutcome::Held);
    assert!(
        matches!(&outcomes[1], HoldOutcome::Over(e) if e.dimension == "gpu_milli[H100]"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2..], [HoldOutcome::Held, HoldOutcome::Held]);
    let usage = usage_of(&*store, "acme").await;
    assert_eq!(usage.gpu_milli, 3000);
    assert_eq!(usage.gpu_milli_by_type.get(&GpuType::A10G), Some(&2000));
    // Replanned onto another type: the old charge is given back, the new one judged.
    let moved = store
        .hold(&[on(&requests[0], GpuType::A10G)])
        .await
        .unwrap();
    assert_eq!(moved, [HoldOutcome::Held]);
    let usage = usage_of(&*store, "acme").await;
    assert_eq!(usage.gpu_milli_by_type.get(&GpuType::H100), None);
    assert_eq!(usage.gpu_milli_by_type.get(&GpuType::A10G), Some(&3000));
    assert_clean(&*store).await;
}

/// Two clients of one store hold for one tenant at once, many times over: the tenant never
/// holds more than its quota, and the usage is the sum of the charges.
pub async fn concurrent_holds_never_exceed_a_quota(connect: impl Connect) {
    let config = config("concurrent-holds");
    let stores = [connect(config.clone()).await, connect(config).await];
    let limit = 7;
    stores[0]
        .put_tenant(&tenant(
            "acme",
            Quota {
                containers: Some(limit),
                ..Quota::default()
            },
        ))
        .await
        .unwrap();
    let requests: Vec<ContainerRequest> = (0..60)
        .map(|i| of_tenant(&format!("c{i}"), "acme", 10))
        .collect();
    claimed(&*stores[0], &requests).await;
    let mut tasks = Vec::new();
    for (i, chunk) in requests.chunks(3).enumerate() {
        let store = stores[i % 2].clone();
        let holds: Vec<Hold> = chunk.iter().map(hold_of).collect();
        tasks.push(tokio::spawn(
            async move { store.hold(&holds).await.unwrap() },
        ));
    }
    let mut held = 0;
    for task in tasks {
        held += task
            .await
            .unwrap()
            .iter()
            .filter(|o| **o == HoldOutcome::Held)
            .count() as u64;
    }
    assert_eq!(held, limit, "exactly the quota is held");
    assert_eq!(usage_of(&*stores[1], "acme").await.containers, limit);
    assert_clean(&*stores[1]).await;
}
