//! The engine scenarios every store backend runs; `memory_engine.rs` and `redis_engine.rs`
//! call them with their [`Backend`]. All of them wait with bounded polls, never with fixed
//! sleeps, and assert nothing about how long anything took.

use super::gate::{Gate, HoldAt};
use super::*;
use berth_engine::*;
use futures::future::{join_all, try_join_all};
use std::collections::HashMap;

/// One store client of a fresh namespace, `n` equal workers, one engine.
async fn single(
    backend: &Backend,
    test: &str,
    config: EngineConfig,
    workers: usize,
    size: Resources,
) -> (Arc<dyn Store>, Engine) {
    let store = backend.store(test, StoreConfig::default()).await;
    fleet(&*store, workers, size.cpu_millicores, size.memory_mib).await;
    let engine = Engine::start(store.clone(), config, Vec::new());
    (store, engine)
}

/// Submits `requests` concurrently, one `submit` each, and waits for every outcome: each
/// must be placed, on the worker its record names. Returns the placements by worker.
async fn place_all(engine: &Engine, requests: Vec<ContainerRequest>) -> HashMap<WorkerId, usize> {
    let store = engine.store().clone();
    let ids = ids_of(&requests);
    let tickets = try_join_all(requests.into_iter().map(|r| engine.submit(r)))
        .await
        .unwrap();
    let outcomes = join_all(tickets.into_iter().map(outcome)).await;
    for (id, outcome) in ids.iter().zip(outcomes) {
        let Outcome::Placed { worker } = outcome else {
            panic!("{id} was not placed: {outcome:?}");
        };
        let placed = record(&*store, id).await;
        assert_eq!(placed.state, ContainerState::Scheduled, "{id}: {placed:?}");
        assert_eq!(
            placed.worker.as_ref(),
            Some(&worker),
            "{id}: the ticket and the record disagree"
        );
    }
    let tally = tally(&*store, &ids).await;
    assert_eq!(tally.scheduled, ids.len(), "{}", tally.brief());
    tally.per_worker
}

/// Waits until `gate` holds a call.
async fn until_held(gate: &Gate, what: &str) {
    eventually(what, WAIT, || async move {
        if gate.held() > 0 {
            Ok(())
        } else {
            Err("nothing held yet".to_owned())
        }
    })
    .await;
}

/// Waits until the record of `id` is scheduled, and returns it.
async fn until_scheduled(store: &dyn Store, id: &ContainerId, what: &str) -> ContainerRecord {
    eventually(what, WAIT, || async move {
        let seen = record(store, id).await;
        match seen.state {
            ContainerState::Scheduled => Ok(seen),
            ContainerState::Pending => Err(format!("{seen:?}")),
            _ => panic!("{id} ended: {seen:?}"),
        }
    })
    .await
}

// ----- 1. the seed workload -----

/// 100 concurrent 1-CPU requests on `workers` 16-CPU workers: every one placed, invariants
/// clean. Returns the placements by worker.
pub async fn seed_workload(
    backend: &Backend,
    strategy: Strategy,
    workers: usize,
) -> HashMap<WorkerId, usize> {
    let test = format!("seed-{strategy}-{workers}");
    let size = Resources::new(16_000, 65_536, 0);
    let (store, engine) = single(
        backend,
        &test,
        engine_config(strategy, "engine-0"),
        workers,
        size,
    )
    .await;
    let now = engine.now_ms();
    let per_worker = place_all(&engine, requests("c", 100, 1000, 0, now)).await;
    assert_clean(&*store).await;
    assert_eq!(per_worker.values().sum::<usize>(), 100);
    engine.shutdown().await;
    per_worker
}

/// Every strategy places the seed workload on 10, 20 and 40 workers.
pub async fn every_strategy_places_the_seed_workload(backend: &Backend) {
    for strategy in Strategy::ALL {
        for workers in [10, 20, 40] {
            seed_workload(backend, strategy, workers).await;
        }
    }
}

/// With spread, batch-script spreads 100 1-CPU requests over 20 16-CPU workers exactly:
/// 5 each (the planner deducts every placement and the cache follows every commit).
pub async fn batch_script_spreads_the_seed_workload_exactly(backend: &Backend) {
    let per_worker = seed_workload(backend, Strategy::BatchScript, 20).await;
    assert_eq!(per_worker.len(), 20, "{per_worker:?}");
    assert!(per_worker.values().all(|&n| n == 5), "{per_worker:?}");
}

// ----- 2. four replicas, an oversubscribed fleet -----

/// Four replicas on one store place 10,000 requests on a fleet that holds 6,000: exactly
/// 6,000 placed, every other one waiting in the backlog with a reason (or failed with one),
/// none lost, none placed twice.
pub async fn four_replicas_oversubscribed(backend: &Backend, strategy: Strategy) {
    const REQUESTS: usize = 10_000;
    const WORKERS: usize = 60;
    const SLOTS: usize = 100;
    let stores = backend
        .stores(
            &format!("four-replicas-{strategy}"),
            StoreConfig::default(),
            4,
        )
        .await;
    let store = stores[0].clone();
    fleet(&*store, WORKERS, SLOTS as u64 * 1000, SLOTS as u64 * 1024).await;
    let engines: Vec<Engine> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Engine::start(
                s.clone(),
                engine_config(strategy, &format!("replica-{i}")),
                Vec::new(),
            )
        })
        .collect();
    let now = engines[0].now_ms();
    let all = requests("c", REQUESTS, 1000, 0, now);
    let ids = ids_of(&all);
    let submits = all
        .chunks(250)
        .enumerate()
        .map(|(i, chunk)| engines[i % engines.len()].submit_many(chunk.to_vec()));
    drop(try_join_all(submits).await.unwrap());

    let capacity = WORKERS * SLOTS;
    let (engines_ref, ids_ref, store_ref) = (&engines, &ids, &store);
    let settled = eventually("every request placed or waiting", WAIT, || async move {
        let placed: u64 = engines_ref
            .iter()
            .map(|e| e.stats().snapshot().placed)
            .sum();
        if placed < capacity as u64 {
            return Err(format!("{placed} placed by the replicas"));
        }
        let tally = tally(&**store_ref, ids_ref).await;
        if tally.settled() && tally.scheduled == capacity {
            Ok(tally)
        } else {
            Err(tally.brief())
        }
    })
    .await;
    assert_eq!(
        settled.waiting + settled.failed,
        REQUESTS - capacity,
        "{}",
        settled.brief()
    );

    // Counters are bumped after the store settles: read them once the loops have stopped.
    let counters: Vec<Arc<EngineStats>> = engines.iter().map(Engine::stats).collect();
    for engine in engines {
        engine.shutdown().await;
    }
    let stats: Vec<EngineStatsSnapshot> = counters.iter().map(|c| c.snapshot()).collect();
    for (i, s) in stats.iter().enumerate() {
        eprintln!(
            "{strategy} replica-{i}: {} batches, {} placed, {} deferred, {} version conflicts, {} superseded",
            s.batches, s.placed, s.deferred, s.version_conflicts, s.superseded
        );
    }
    assert_clean(&*store).await;
    let last = tally(&*store, &ids).await;
    assert_eq!(last.scheduled, capacity, "{}", last.brief());
    assert!(last.settled(), "{}", last.brief());
    assert_eq!(last.per_worker.len(), WORKERS);
    assert!(
        last.per_worker.values().all(|&n| n == SLOTS),
        "{:?}",
        last.per_worker
    );
    assert_eq!(free_cpu(&*store).await, 0);
    let placed: u64 = stats.iter().map(|s| s.placed).sum();
    assert_eq!(placed, capacity as u64, "placed counts: {stats:?}");
}

// ----- 3. a replica stopped mid-batch -----

/// Replica A claims and plans a batch and is aborted before it commits (held there by a
/// gate); replica B, started afterwards, reclaims A's requests once the claim visibility
/// timeout passes and places every one of them.
pub async fn aborted_replica_loses_nothing(backend: &Backend, strategy: Strategy) {
    const N: usize = 50;
    let config = StoreConfig {
        claim_visibility: Duration::from_millis(500),
        ..StoreConfig::default()
    };
    let stores = backend
        .stores(&format!("aborted-{strategy}"), config, 2)
        .await;
    fleet(&*stores[0], 10, 16_000, 65_536).await;
    let gate = Gate::new(stores[0].clone(), HoldAt::Commit);
    let a_config = EngineConfig {
        // The lock-based strategies hold the worker's lock while the commit is held: let it
        // expire soon after the crash.
        lock_ttl: Duration::from_millis(500),
        ..engine_config(strategy, "replica-a")
    };
    let a = Engine::start(gate.clone(), a_config, Vec::new());
    let all = requests("c", N, 1000, 0, a.now_ms());
    let ids = ids_of(&all);
    drop(a.submit_many(all).await.unwrap());
    until_held(&gate, "replica A to reach its commit").await;
    a.abort();

    let b = Engine::start(
        stores[1].clone(),
        engine_config(strategy, "replica-b"),
        Vec::new(),
    );
    let (store, ids_ref) = (&stores[1], &ids);
    eventually("replica B to place A's requests", WAIT, || async move {
        let tally = tally(&**store, ids_ref).await;
        if tally.scheduled == N {
            Ok(())
        } else {
            Err(tally.brief())
        }
    })
    .await;
    let counters = b.stats();
    b.shutdown().await;
    assert_eq!(counters.snapshot().placed, N as u64);
    assert_clean(&*stores[1]).await;
    assert_eq!(free_cpu(&*stores[1]).await, 10 * 16_000 - N as u64 * 1000);
}

// ----- 4. released capacity goes to the highest priority -----

/// A full fleet; a low-priority then a high-priority request wait in the backlog; capacity
/// for exactly one is released; the high-priority one is placed, the low one still waits.
pub async fn released_capacity_goes_to_the_highest_priority(backend: &Backend) {
    let config = EngineConfig {
        // A short TTL, so the engine's cache sees the release (releases do not go through
        // the engine) before the waiting requests are retried.
        cache_ttl: Duration::from_millis(500),
        backoff_base: Duration::from_secs(1),
        ..engine_config(Strategy::BatchScript, "engine-0")
    };
    let size = Resources::new(2000, 2048, 0);
    let (store, engine) = single(backend, "priority", config, 2, size).await;
    let fill = requests("fill", 4, 1000, 0, engine.now_ms());
    let fill_ids = ids_of(&fill);
    place_all(&engine, fill).await;

    // Same submission time: the two are deferred, promoted and retried together, in one
    // batch, whatever the machine's speed.
    let now = engine.now_ms();
    let (low, high) = (request("low", 1000, 0, now), request("high", 1000, 10, now));
    let (low_id, high_id) = (low.id.clone(), high.id.clone());
    drop(engine.submit_many(vec![low, high]).await.unwrap());
    let (store_ref, both) = (&store, [low_id.clone(), high_id.clone()]);
    let both = &both;
    eventually(
        "both requests to wait in the backlog",
        WAIT,
        || async move {
            let tally = tally(&**store_ref, both).await;
            if tally.waiting == 2 {
                Ok(())
            } else {
                Err(tally.brief())
            }
        },
    )
    .await;

    finish(&*store, &fill_ids[0]).await;
    let high_record =
        until_scheduled(&*store, &high_id, "the high-priority request to be placed").await;
    assert_eq!(
        high_record.worker,
        record(&*store, &fill_ids[0]).await.worker
    );
    let low = record(&*store, &low_id).await;
    assert_eq!(low.state, ContainerState::Pending, "{low:?}");
    assert!(low.reason.is_some() && low.deferrals >= 1, "{low:?}");
    assert_clean(&*store).await;
    assert_eq!(free_cpu(&*store).await, 0);
    engine.shutdown().await;
}

// ----- 6. requests no worker could ever hold -----

/// A request larger than any worker fails at once with the never-fits reason; one that
/// selects a pool that does not exist fails at once with the no-matching-pool reason; one
/// larger than any worker but within the size of a configured pool waits.
pub async fn hopeless_requests_fail_at_once(backend: &Backend) {
    let size = Resources::new(16_000, 65_536, 0);
    let config = engine_config(Strategy::BatchScript, "engine-0");
    let (store, engine) = single(backend, "hopeless", config.clone(), 2, size).await;
    let now = engine.now_ms();

    let huge = request("huge", 32_000, 0, now);
    let mut elsewhere = request("elsewhere", 1000, 0, now);
    elsewhere.pool_selector = Some(PoolName::new("no-such-pool").unwrap());
    let tickets = engine.submit_many(vec![huge, elsewhere]).await.unwrap();
    let outcomes = join_all(tickets.into_iter().map(outcome)).await;
    let expected = [UnplacedReason::NeverFits, UnplacedReason::NoMatchingPool];
    for ((id, outcome), reason) in ["huge", "elsewhere"].iter().zip(outcomes).zip(expected) {
        let reason = reason.to_string();
        assert_eq!(
            outcome,
            Outcome::Failed {
                reason: reason.clone()
            },
            "{id}"
        );
        let failed = record(&*store, &cid(id)).await;
        assert_eq!(failed.state, ContainerState::Failed, "{failed:?}");
        assert_eq!(failed.reason.as_deref(), Some(reason.as_str()));
        assert_eq!(
            failed.deferrals, 0,
            "{id} waited before it failed: {failed:?}"
        );
    }
    assert!(
        UnplacedReason::NeverFits
            .to_string()
            .starts_with("larger than any worker")
    );
    engine.shutdown().await;

    // The same store, and a pool whose new workers could hold 64 CPUs.
    let pool = Pool {
        attributes: cpu_pool(),
        gpu_type: None,
        worker_size: Resources::new(64_000, 262_144, 0),
        fallback: Vec::new(),
    };
    let engine = Engine::start(store.clone(), config, vec![pool]);
    drop(
        engine
            .submit(request("grows", 32_000, 0, engine.now_ms()))
            .await
            .unwrap(),
    );
    let store_ref = &store;
    let waiting = eventually(
        "the request to wait for a bigger worker",
        WAIT,
        || async move {
            let waiting = record(&**store_ref, &cid("grows")).await;
            match waiting.state {
                ContainerState::Pending if waiting.deferrals > 0 => Ok(waiting),
                ContainerState::Pending => Err(format!("{waiting:?}")),
                _ => panic!("a request a pool could hold ended: {waiting:?}"),
            }
        },
    )
    .await;
    assert_eq!(waiting.reason, Some(UnplacedReason::NoRoomNow.to_string()));
    assert_clean(&*store).await;
    engine.shutdown().await;
}

// ----- 7. two replicas racing for a nearly full fleet -----

/// Two batch-script replicas with small batches race for the last 40 slots of a fleet
/// (20 workers x 8 slots, 120 already taken) with 100 requests: exactly 40 placed, 60
/// waiting, no overbooking. Version conflicts (lost races) are allowed and reported.
pub async fn two_replicas_race_for_a_nearly_full_fleet(backend: &Backend) {
    let stores = backend.stores("race", StoreConfig::default(), 2).await;
    let store = stores[0].clone();
    fleet(&*store, 20, 8000, 8192).await;
    let config = |replica: &str| EngineConfig {
        max_batch: 10,
        ..engine_config(Strategy::BatchScript, replica)
    };
    let a = Engine::start(stores[0].clone(), config("replica-a"), Vec::new());
    let fill = requests("fill", 120, 1000, 0, a.now_ms());
    let mut ids = ids_of(&fill);
    place_all(&a, fill).await;

    let b = Engine::start(stores[1].clone(), config("replica-b"), Vec::new());
    let burst = requests("burst", 100, 1000, 0, a.now_ms());
    ids.extend(ids_of(&burst));
    let (to_a, to_b) = burst.split_at(50);
    let (sa, sb) = tokio::join!(a.submit_many(to_a.to_vec()), b.submit_many(to_b.to_vec()));
    drop((sa.unwrap(), sb.unwrap()));

    let (store_ref, ids_ref) = (&store, &ids);
    let settled = eventually("every request placed or waiting", WAIT, || async move {
        let tally = tally(&**store_ref, ids_ref).await;
        if tally.settled() && tally.scheduled == 160 {
            Ok(tally)
        } else {
            Err(tally.brief())
        }
    })
    .await;
    assert_eq!(settled.waiting, 60, "{}", settled.brief());
    let (ca, cb) = (a.stats(), b.stats());
    a.shutdown().await;
    b.shutdown().await;
    let (sa, sb) = (ca.snapshot(), cb.snapshot());
    eprintln!(
        "race: replica A placed {} with {} version conflicts, replica B placed {} with {}",
        sa.placed, sa.version_conflicts, sb.placed, sb.version_conflicts
    );
    assert_clean(&*store).await;
    let last = tally(&*store, &ids).await;
    assert_eq!(last.scheduled, 160, "{}", last.brief());
    assert!(
        last.per_worker.values().all(|&n| n == 8),
        "{:?}",
        last.per_worker
    );
    assert_eq!(free_cpu(&*store).await, 0);
    assert_eq!(sa.placed + sb.placed, 160);
}

// ----- 8. invalid requests -----

/// A request for zero CPU (or zero memory) is refused by `submit` and `submit_many` with
/// `EngineError::Invalid`, and nothing is written: not the request, not its valid siblings.
pub async fn invalid_requests_are_refused(backend: &Backend) {
    let size = Resources::new(16_000, 65_536, 0);
    let (store, engine) = single(
        backend,
        "invalid",
        engine_config(Strategy::BatchScript, "engine-0"),
        1,
        size,
    )
    .await;
    let now = engine.now_ms();

    let zero_cpu = request("zero-cpu", 0, 0, now);
    let error = engine.submit(zero_cpu).await.unwrap_err();
    assert!(
        matches!(&error, EngineError::Invalid { id, .. } if id == "zero-cpu"),
        "{error:?}"
    );
    let mut zero_memory = request("zero-memory", 1000, 0, now);
    zero_memory.resources.memory_mib = 0;
    let valid = request("valid", 1000, 0, now);
    let error = engine
        .submit_many(vec![valid, zero_memory])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Invalid { id, .. } if id == "zero-memory"),
        "{error:?}"
    );
    for id in ["zero-cpu", "zero-memory", "valid"] {
        assert_eq!(
            store.container(&cid(id)).await.unwrap(),
            None,
            "{id} was written"
        );
    }
    // Nothing reached the intake either: a later valid request is the only one placed.
    let tickets = engine.submit(request("later", 1000, 0, now)).await.unwrap();
    assert!(matches!(outcome(tickets).await, Outcome::Placed { .. }));
    assert_eq!(engine.stats().snapshot().placed, 1);
    assert_eq!(engine.stats().snapshot().failed, 0);
    assert_eq!(free_cpu(&*store).await, 15_000);
    engine.shutdown().await;
}

// ----- more: recovery paths, the cache, duplicates, packing -----

/// Replica A reserves a request and then stalls (a long pause) before its settlement;
/// replica B reclaims the request after the visibility timeout and places it; when A wakes
/// up and settles, the request stays placed once: either B placed it elsewhere and A's
/// settlement is superseded (A gives its own reservation back), or B adopted A's
/// reservation and A's settlement agrees with it.
pub async fn a_stalled_replica_does_not_place_twice(backend: &Backend) {
    let config = StoreConfig {
        claim_visibility: Duration::from_millis(500),
        ..StoreConfig::default()
    };
    let stores = backend.stores("stalled", config, 2).await;
    fleet(&*stores[0], 2, 4000, 4096).await;
    let gate = Gate::new(stores[0].clone(), HoldAt::Settle);
    let a = Engine::start(
        gate.clone(),
        engine_config(Strategy::BatchScript, "replica-a"),
        Vec::new(),
    );
    let id = cid("c0");
    drop(a.submit(request("c0", 1000, 0, a.now_ms())).await.unwrap());
    until_held(&gate, "replica A to reach its settlement").await;

    let store = stores[1].clone();
    let b = Engine::start(
        store.clone(),
        engine_config(Strategy::BatchScript, "replica-b"),
        Vec::new(),
    );
    let placed = until_scheduled(&*store, &id, "replica B to place the request").await;
    b.shutdown().await;

    gate.open();
    let a_stats = a.stats();
    let a_ref = &a_stats;
    eventually("replica A to settle", WAIT, || async move {
        let stats = a_ref.snapshot();
        if stats.superseded + stats.placed == 1 {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    })
    .await;
    a.shutdown().await;
    assert_eq!(
        record(&*store, &id).await,
        placed,
        "the record moved after B placed it"
    );
    assert_clean(&*store).await;
    let total: u64 = store
        .workers()
        .await
        .unwrap()
        .iter()
        .map(|w| w.total.cpu_millicores)
        .sum();
    assert_eq!(
        total - free_cpu(&*store).await,
        1000,
        "reserved capacity leaked"
    );
}

/// A worker drained behind the engine's back (the cache still says available) gets no new
/// container. batch-script plans onto it from its cache, the commit is rejected, the cache
/// takes the worker's state from the rejection and the group is replanned onto the other
/// worker; batch-lock re-reads the workers it touched before planning again.
pub async fn a_worker_drained_behind_the_cache_gets_nothing(backend: &Backend, strategy: Strategy) {
    let config = EngineConfig {
        cache_ttl: Duration::from_secs(600),
        ..engine_config(strategy, "engine-0")
    };
    let size = Resources::new(4000, 4096, 0);
    let (store, engine) = single(backend, &format!("drained-{strategy}"), config, 2, size).await;
    let per_worker = place_all(&engine, requests("fill", 2, 1000, 0, engine.now_ms())).await;
    assert_eq!(
        per_worker.len(),
        2,
        "spread puts one on each: {per_worker:?}"
    );
    let drained = WorkerId::new("w0").unwrap();
    store
        .set_worker_status(&drained, WorkerStatus::Draining)
        .await
        .unwrap();

    let before = engine.stats().snapshot();
    let per_worker = place_all(&engine, requests("after", 3, 1000, 0, engine.now_ms())).await;
    assert_eq!(
        per_worker.get(&drained),
        None,
        "{strategy}: placed on a draining worker: {per_worker:?}"
    );
    let spent = engine.stats().snapshot().since(&before);
    if strategy == Strategy::BatchScript {
        // batch-lock reads the workers it touched again before its next plan, so it sees
        // the drain without a rejection; batch-script learns it from the rejected commit.
        assert!(
            spent.version_conflicts >= 1,
            "{strategy}: the stale cache was never corrected: {spent:?}"
        );
    }
    assert_clean(&*store).await;
    engine.shutdown().await;
}

/// The same request submitted twice in one call, and again once placed, is placed once: one
/// record, one reservation, and every ticket follows it to the same worker.
pub async fn duplicate_submissions_are_placed_once(backend: &Backend) {
    let size = Resources::new(4000, 4096, 0);
    let config = engine_config(Strategy::BatchScript, "engine-0");
    let (store, engine) = single(backend, "duplicates", config, 2, size).await;
    let now = engine.now_ms();
    let twice = vec![request("c0", 1000, 0, now), request("c0", 1000, 0, now)];
    let tickets = engine.submit_many(twice).await.unwrap();
    let outcomes = join_all(tickets.into_iter().map(outcome)).await;
    let Outcome::Placed { worker } = outcomes[0].clone() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(outcomes[1], outcomes[0]);
    let again = engine
        .submit(request("c0", 1000, 0, engine.now_ms()))
        .await
        .unwrap();
    assert_eq!(outcome(again).await, Outcome::Placed { worker });
    assert_eq!(free_cpu(&*store).await, 2 * 4000 - 1000);
    assert_eq!(engine.stats().snapshot().placed, 1);
    assert_clean(&*store).await;
    engine.shutdown().await;
}

/// With the pack policy, batch-script fills workers one at a time: 100 1-CPU requests on
/// 20 16-CPU workers use 7 workers, 6 full and one with 4.
pub async fn batch_script_packs_the_seed_workload(backend: &Backend) {
    let store = backend.store("pack", StoreConfig::default()).await;
    let pool = PoolAttributes {
        policy: PlacementPolicy::Pack,
        ..cpu_pool()
    };
    fleet_in(&*store, 20, Resources::new(16_000, 65_536, 0), pool).await;
    let engine = Engine::start(
        store.clone(),
        engine_config(Strategy::BatchScript, "engine-0"),
        Vec::new(),
    );
    let per_worker = place_all(&engine, requests("c", 100, 1000, 0, engine.now_ms())).await;
    let mut counts: Vec<usize> = per_worker.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [4, 16, 16, 16, 16, 16, 16], "{per_worker:?}");
    assert_clean(&*store).await;
    engine.shutdown().await;
}

// ----- bugs -----

/// A replica that crashes after its commit and before its settlement leaves the reservation
/// behind. Replica A reserves one request on one of two workers and is aborted while its
/// settlement is held; replica B reclaims the request after the visibility timeout, plans
/// it against a fleet where A's worker has less room, and places it on the other worker:
/// the container is then owned by two workers (queued to both agents, so run twice), and
/// the first worker's capacity leaks.
pub async fn crash_between_commit_and_settle_leaves_no_orphan(backend: &Backend) {
    let config = StoreConfig {
        claim_visibility: Duration::from_millis(500),
        ..StoreConfig::default()
    };
    let stores = backend.stores("orphan", config, 2).await;
    let workers = fleet(&*stores[0], 2, 4000, 4096).await;
    let gate = Gate::new(stores[0].clone(), HoldAt::Settle);
    let a = Engine::start(
        gate.clone(),
        engine_config(Strategy::BatchScript, "replica-a"),
        Vec::new(),
    );
    let id = cid("c0");
    drop(a.submit(request("c0", 1000, 0, a.now_ms())).await.unwrap());
    until_held(&gate, "replica A to reach its settlement").await;
    a.abort();

    let store = stores[1].clone();
    let b = Engine::start(
        store.clone(),
        engine_config(Strategy::BatchScript, "replica-b"),
        Vec::new(),
    );
    let placed = until_scheduled(&*store, &id, "replica B to place the request").await;
    b.shutdown().await;
    assert_one_owner(&*store, &workers, &placed).await;
}

/// Asserts that `placed` is owned by one worker only, queued to one agent only, and that
/// no other capacity is reserved (the fleet's only container is `placed`).
async fn assert_one_owner(store: &dyn Store, workers: &[WorkerId], placed: &ContainerRecord) {
    let id = &placed.request.id;
    let mut queued_on = Vec::new();
    for worker in workers {
        let queued = store
            .assignments(worker, None, 10, Duration::ZERO)
            .await
            .unwrap();
        if queued.iter().any(|a| a.container == *id) {
            queued_on.push(worker.to_string());
        }
    }
    let violations = store
        .check(CheckOptions::ignoring_heartbeats())
        .await
        .unwrap();
    assert!(
        violations.is_empty(),
        "{id} is scheduled on {:?}, queued to the agents of {queued_on:?}; violations: {violations:#?}",
        placed.worker
    );
    assert_eq!(
        queued_on.len(),
        1,
        "{id} is queued to the agents of {queued_on:?}"
    );
    let total: u64 = store
        .workers()
        .await
        .unwrap()
        .iter()
        .map(|w| w.total.cpu_millicores)
        .sum();
    let reserved = total - free_cpu(store).await;
    assert_eq!(
        reserved, placed.request.resources.cpu_millicores,
        "reserved capacity leaked"
    );
}

/// A replica whose settlement fails (the store was unreachable for that one call) leaves
/// its reservation behind: it reclaims its own request after the visibility timeout, plans
/// it against a fleet where the reserved worker has less room, and places it on the other
/// worker, so two workers own it.
pub async fn a_failed_settlement_leaves_no_orphan(backend: &Backend) {
    let config = StoreConfig {
        claim_visibility: Duration::from_millis(500),
        ..StoreConfig::default()
    };
    let store = backend.store("failed-settle", config).await;
    let workers = fleet(&*store, 2, 4000, 4096).await;
    let gate = Gate::failing_settles(store.clone(), 1);
    place_one_through(
        gate,
        &*store,
        &workers,
        "the request to be placed after the failure",
    )
    .await;
}

/// A batch whose commit fails, and then whose settlement fails (the store unreachable for
/// those calls, as in a failover), is tried again at once by the same replica: the request
/// is placed long before the intake's visibility timeout (ten minutes here) would give it
/// back, and owned once.
pub async fn failed_store_calls_are_retried_at_once(backend: &Backend) {
    let config = StoreConfig {
        claim_visibility: Duration::from_secs(600),
        ..StoreConfig::default()
    };
    let store = backend.store("retried-at-once", config).await;
    let workers = fleet(&*store, 2, 4000, 4096).await;
    let gate = Gate::failing(store.clone(), 1, 2);
    place_one_through(
        gate,
        &*store,
        &workers,
        "the request to be placed after the failures",
    )
    .await;
}

/// Starts a batch-script replica on `gate` (a store failing some calls), submits request
/// `c0`, and waits until it is scheduled (`what` says after what), owned once among
/// `workers`.
async fn place_one_through(gate: Arc<Gate>, store: &dyn Store, workers: &[WorkerId], what: &str) {
    let engine = Engine::start(
        gate,
        engine_config(Strategy::BatchScript, "engine-0"),
        Vec::new(),
    );
    drop(
        engine
            .submit(request("c0", 1000, 0, engine.now_ms()))
            .await
            .unwrap(),
    );
    let placed = until_scheduled(store, &cid("c0"), what).await;
    engine.shutdown().await;
    assert_one_owner(store, workers, &placed).await;
}
