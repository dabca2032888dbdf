//! A property test over random interleavings of two scheduler replicas on the memory store:
//! each claims, holds, commits, settles (placed, deferred or failed) on its own, while
//! containers run, end, are cancelled or reclaimed from a dead worker. After every step the
//! tenant holds no more than its quota (counting its scheduled and running records, not
//! only the store's usage), and the invariant check (usage = sum of charges, nothing ended
//! still charged, the rest of the invariants) finds nothing, and only placed containers and
//! claims in a replica's hands are charged.

#![allow(clippy::unwrap_used)]

use berth_core::quota::{Quota, Tenant};
use berth_core::*;
use berth_store::prelude::*;
use berth_store::*;
use proptest::prelude::*;
use std::time::Duration;

const LIMIT: u64 = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Submit a request of tenant `acme` (true) or `other`.
    Submit(bool),
    /// Replica `r` claims what is waiting.
    Claim(usize),
    /// Replica `r` holds, commits and settles its claims on worker `w`; what the hold
    /// refuses is deferred.
    Place(usize, usize),
    /// Replica `r` holds its claims and goes on to something else (the hold stays).
    Hold(usize),
    /// Replica `r` defers its claims without placing them.
    Defer(usize),
    /// Replica `r` fails its claims.
    Fail(usize),
    /// The `i`th placed container runs and exits.
    Exit(usize),
    /// The `i`th placed container is cancelled (and, if placed, fails on its worker).
    Cancel(usize),
    /// Worker `w` dies: what it holds is reclaimed; it comes back at once.
    Die(usize),
    /// The due backlog goes back to the intake.
    Promote,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(Step::Submit),
        3 => (0..2usize).prop_map(Step::Claim),
        4 => (0..2usize, 0..2usize).prop_map(|(r, w)| Step::Place(r, w)),
        2 => (0..2usize).prop_map(Step::Hold),
        1 => (0..2usize).prop_map(Step::Defer),
        1 => (0..2usize).prop_map(Step::Fail),
        3 => (0..8usize).prop_map(Step::Exit),
        1 => (0..8usize).prop_map(Step::Cancel),
        1 => (0..2usize).prop_map(Step::Die),
        1 => Just(Step::Promote),
    ]
}

struct World {
    store: MemoryStore,
    claims: [Vec<Claim>; 2],
    submitted: Vec<ContainerId>,
}

fn wid(w: usize) -> WorkerId {
    WorkerId::new(format!("w{w}")).unwrap()
}

async fn register(store: &MemoryStore, w: usize) {
    store
        .register_worker(&WorkerRegistration {
            devices: Vec::new(),
            id: wid(w),
            pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
            status: WorkerStatus::Available,
            total: Resources::new(100_000, 100_000, 0),
            gpu_type: None,
            runtime: RuntimeName::PROCESS,
        })
        .await
        .unwrap();
}

fn hold_of(claim: &Claim) -> Hold {
    Hold {
        container: claim.request.id.clone(),
        charge: Charge::of(&claim.request, None),
    }
}

impl World {
    async fn new() -> World {
        let store = MemoryStore::new(StoreConfig {
            claim_visibility: Duration::from_secs(3600),
            ..StoreConfig::default()
        });
        for w in 0..2 {
            register(&store, w).await;
        }
        let quota = Quota {
            containers: Some(LIMIT),
            ..Quota::default()
        };
        store
            .put_tenant(&Tenant {
                name: TenantName::new("acme").unwrap(),
                quota,
                weight: 1,
            })
            .await
            .unwrap();
        World {
            store,
            claims: [Vec::new(), Vec::new()],
            submitted: Vec::new(),
        }
    }

    async fn placed(&self) -> Vec<ContainerRecord> {
        let mut placed = Vec::new();
        for id in &self.submitted {
            let record = self.store.container(id).await.unwrap().unwrap();
            if matches!(
                record.state,
                ContainerState::Scheduled | ContainerState::Running
            ) {
                placed.push(record);
            }
        }
        placed
    }

    async fn settle(&mut self, r: usize, settlement: impl Fn(&Claim) -> Settlement) {
        let items: Vec<SettleItem> = self.claims[r]
            .drain(..)
            .map(|claim| SettleItem {
                entry: claim.entry.clone(),
                container: claim.request.id.clone(),
                settlement: settlement(&claim),
            })
            .collect();
        self.store.settle(&items).await.unwrap();
    }

    async fn run(&mut self, step: Step) {
        match step {
            Step::Submit(acme) => {
                let id = ContainerId::new(format!("c{}", self.submitted.len())).unwrap();
                let request = ContainerRequest {
                    id: id.clone(),
                    tenant: if acme { "acme" } else { "other" }.into(),
                    resources: Resources::new(100, 100, 0),
                    gpu_fraction_milli: None,
                    gpu: GpuPreference::Any,
                    pool_selector: None,
                    preemptible: false,
                    priority: 0,
                    submitted_at_ms: 1,
                    payload: Payload::default(),
                    fallback: Vec::new(),
                    max_retries: 0,
                };
                self.store.submit(&[request]).await.unwrap();
                self.submitted.push(id);
            }
            Step::Claim(r) => {
                let claims = self.store.claim("e", 10, Duration::ZERO).await.unwrap();
                self.claims[r].extend(claims);
            }
            Step::Place(r, w) => self.place(r, w).await,
            Step::Hold(r) => {
                let holds: Vec<Hold> = self.claims[r].iter().map(hold_of).collect();
                self.store.hold(&holds).await.unwrap();
            }
            Step::Defer(r) => {
                self.settle(r, |_| Settlement::Deferred {
                    not_before_ms: 0,
                    reason: "no room".into(),
                    pool: None,
                    gpu_type: None,
                })
                .await
            }
            Step::Fail(r) => {
                self.settle(r, |_| Settlement::Failed {
                    reason: "never".into(),
                })
                .await
            }
            Step::Exit(i) => {
                let placed = self.placed().await;
                if let Some(record) = placed.get(i % placed.len().max(1)) {
                    self.exit(record).await;
                }
            }
            Step::Cancel(i) => {
                let id = self.submitted.get(i % self.submitted.len().max(1)).cloned();
                if let Some(id) = &id {
                    let record = self.store.cancel(id).await.unwrap();
                    if let (Some(worker), Some(attempt)) = (&record.worker, &record.attempt)
                        && !record.state.is_terminal()
                    {
                        let failed = Transition::Failed {
                            reason: "cancelled".into(),
                        };
                        self.store.transition(id, &failed).await.unwrap();
                        self.store
                            .release(worker, id, Some(attempt), None)
                            .await
                            .unwrap();
                    }
                }
            }
            Step::Die(w) => {
                let worker = wid(w);
                self.store
                    .set_worker_status(&worker, WorkerStatus::Lost)
                    .await
                    .unwrap();
                for owned in self.store.owned(&worker).await.unwrap() {
                    self.store
                        .reclaim(&worker, &owned.container, &owned.attempt, "lost")
                        .await
                        .unwrap();
                }
                register(&self.store, w).await;
            }
            Step::Promote => {
                self.store.promote_due(u64::MAX / 2, 100).await.unwrap();
            }
        }
    }

    async fn place(&mut self, r: usize, w: usize) {
        let claims = std::mem::take(&mut self.claims[r]);
        let holds: Vec<Hold> = claims.iter().map(hold_of).collect();
        let outcomes = self.store.hold(&holds).await.unwrap();
        let (held, refused): (Vec<_>, Vec<_>) = claims
            .into_iter()
            .zip(outcomes)
            .partition(|(_, o)| *o == HoldOutcome::Held);
        let reservations = held
            .iter()
            .map(|(c, _)| Reservation {
                container: c.request.id.clone(),
                attempt: c.attempt.clone(),
                resources: c.request.resources,
                devices: Vec::new(),
                payload: Payload::default(),
            })
            .collect();
        let group = CommitGroup {
            worker: wid(w),
            reservations,
        };
        let committed = matches!(
            self.store.commit(&[group]).await.unwrap()[0],
            CommitOutcome::Committed { .. }
        );
        let mut items = Vec::new();
        for (claim, _) in &held {
            let settlement = if committed {
                Settlement::Scheduled {
                    worker: wid(w),
                    attempt: claim.attempt.clone(),
                    charge: Charge::of(&claim.request, None),
                }
            } else {
                Settlement::Deferred {
                    not_before_ms: 0,
                    reason: "lost a race".into(),
                    pool: None,
                    gpu_type: None,
                }
            };
            items.push(SettleItem {
                entry: claim.entry.clone(),
                container: claim.request.id.clone(),
                settlement,
            });
        }
        for (claim, _) in &refused {
            items.push(SettleItem {
                entry: claim.entry.clone(),
                container: claim.request.id.clone(),
                settlement: Settlement::Deferred {
                    not_before_ms: 0,
                    reason: "quota".into(),
                    pool: None,
                    gpu_type: None,
                },
            });
        }
        let outcomes = self.store.settle(&items).await.unwrap();
        for (item, outcome) in items.iter().zip(outcomes) {
            if let (
                Settlement::Scheduled {
                    worker, attempt, ..
                },
                SettleOutcome::Superseded { .. },
            ) = (&item.settlement, outcome)
            {
                self.store
                    .release(worker, &item.container, Some(attempt), None)
                    .await
                    .unwrap();
            }
        }
    }

    async fn exit(&self, record: &ContainerRecord) {
        let (worker, attempt) = (
            record.worker.clone().unwrap(),
            record.attempt.clone().unwrap(),
        );
        let id = &record.request.id;
        let running = Transition::Running {
            worker: worker.clone(),
            attempt: attempt.clone(),
        };
        let _ = self.store.transition(id, &running).await;
        let exited = Transition::Exited {
            worker: worker.clone(),
            attempt: attempt.clone(),
            exit_code: 0,
        };
        self.store.transition(id, &exited).await.unwrap();
        self.store
            .release(&worker, id, Some(&attempt), None)
            .await
            .unwrap();
    }

    async fn assert_within(&self) -> Result<(), TestCaseError> {
        let held = self
            .placed()
            .await
            .iter()
            .filter(|r| r.request.tenant == "acme")
            .count() as u64;
        prop_assert!(held <= LIMIT, "acme holds {} > {}", held, LIMIT);
        // Only placed containers and claims in a replica's hands may hold quota: a request
        // waiting in the backlog or ended holds none.
        let in_hand = self
            .claims
            .iter()
            .flatten()
            .filter(|c| c.request.tenant == "acme")
            .count() as u64;
        let usage = self.store.usage().await.unwrap();
        let charged = usage
            .iter()
            .find(|(t, _)| t == "acme")
            .map_or(0, |(_, u)| u.containers);
        prop_assert!(
            charged <= held + in_hand,
            "acme is charged for {} but holds {} and {} are claimed",
            charged,
            held,
            in_hand
        );
        let violations = self
            .store
            .check(CheckOptions::ignoring_heartbeats())
            .await
            .unwrap();
        prop_assert!(violations.is_empty(), "{:?}", violations);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_replicas_never_exceed_a_quota(steps in proptest::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut world = World::new().await;
            for step in steps {
                world.run(step).await;
                world.assert_within().await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
