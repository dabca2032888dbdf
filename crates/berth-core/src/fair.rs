//! Fair share between tenants: the order a batch is planned in when it holds requests of
//! several tenants.
//!
//! The policy is weighted dominant resource fairness (DRF), by progressive filling. A
//! tenant's dominant share is the largest of its shares of the fleet's CPU, memory and GPUs;
//! each tenant starts at its dominant share of what it holds now (its usage, read from the
//! store) divided by its weight, and the batch goes to the tenant lowest at each step, whose
//! share then grows by what its next request asks. So a tenant that holds little is served
//! before one that holds much, within a batch and across the backlog (the running set counts,
//! not only the batch), in proportion to the weights. Within a tenant, requests keep the
//! planner's order: highest priority first, then oldest, then by id.
//!
//! A batch of one tenant is planned in exactly [`crate::planning_order`].

use crate::{ContainerRequest, GPU_MILLI, Resources, Snapshot, Usage};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// What fair sharing weighs: each tenant's weight and what it holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shares {
    /// Weights by tenant (a tenant not listed weighs [`crate::quota::DEFAULT_WEIGHT`]).
    pub weights: HashMap<String, u32>,
    /// What each tenant holds now (a tenant not listed holds nothing).
    pub usage: HashMap<String, Usage>,
}

/// The fleet's whole capacity, the denominators of the shares (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fleet {
    cpu: f64,
    mem: f64,
    gpu_milli: f64,
}

impl Fleet {
    fn of(snapshot: &Snapshot) -> Fleet {
        let total = snapshot.workers.iter().fold(Resources::ZERO, |sum, w| {
            sum.checked_add(w.total).unwrap_or(sum)
        });
        Fleet {
            cpu: (total.cpu_millicores as f64).max(1.0),
            mem: (total.memory_mib as f64).max(1.0),
            gpu_milli: (f64::from(total.gpu_count) * f64::from(GPU_MILLI)).max(1.0),
        }
    }

    /// The dominant share of `cpu`, `mem` and `gpu_milli` of this fleet.
    fn dominant(&self, cpu: u64, mem: u64, gpu_milli: u64) -> f64 {
        (cpu as f64 / self.cpu)
            .max(mem as f64 / self.mem)
            .max(gpu_milli as f64 / self.gpu_milli)
    }

    fn of_request(&self, request: &ContainerRequest) -> f64 {
        let gpu_milli = u64::from(request.resources.gpu_count) * u64::from(GPU_MILLI)
            + u64::from(request.gpu_fraction_milli.unwrap_or(0));
        self.dominant(
            request.resources.cpu_millicores,
            request.resources.memory_mib,
            gpu_milli,
        )
    }
}

/// One tenant's place in the progressive filling: its share so far over its weight, then
/// its next request's priority (higher first), age and id, so that equal shares fall back
/// to the planner's own order.
struct Turn<'a> {
    share: f64,
    next: &'a ContainerRequest,
    tenant: usize,
}

impl Turn<'_> {
    fn key(&self) -> (Reverse<i32>, u64, &str) {
        (
            Reverse(self.next.priority),
            self.next.submitted_at_ms,
            self.next.id.as_str(),
        )
    }
}

impl PartialEq for Turn<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn<'_> {}
impl PartialOrd for Turn<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn<'_> {
    /// Reversed, so that the max-heap pops the lowest share first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .share
            .total_cmp(&self.share)
            .then_with(|| other.key().cmp(&self.key()))
            .then_with(|| other.tenant.cmp(&self.tenant))
    }
}

/// The order to plan `requests` in, fairly between their tenants (see the module): indices
/// into `requests`, each once.
pub fn order(requests: &[ContainerRequest], snapshot: &Snapshot, shares: &Shares) -> Vec<usize> {
    let base = crate::planning_order(requests);
    let mut queues: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &index in &base {
        queues
            .entry(requests[index].tenant.as_str())
            .or_default()
            .push(index);
    }
    if queues.len() <= 1 {
        return base;
    }
    let fleet = Fleet::of(snapshot);
    let tenants: Vec<(&str, Vec<usize>)> = queues.into_iter().collect();
    let weight = |tenant: &str| {
        f64::from(
            shares
                .weights
                .get(tenant)
                .copied()
                .unwrap_or(crate::quota::DEFAULT_WEIGHT)
                .max(1),
        )
    };
    let mut heads = vec![0usize; tenants.len()];
    let mut heap: BinaryHeap<Turn> = tenants
        .iter()
        .enumerate()
        .map(|(t, (name, queue))| {
            let held = shares.usage.get(*name).map_or(0.0, |u| {
                fleet.dominant(u.cpu_millicores, u.memory_mib, u.gpu_milli)
            });
            Turn {
                share: held / weight(name),
                next: &requests[queue[0]],
                tenant: t,
            }
        })
        .collect();
    let mut out = Vec::with_capacity(requests.len());
    while let Some(turn) = heap.pop() {
        let (name, queue) = &tenants[turn.tenant];
        let index = queue[heads[turn.tenant]];
        out.push(index);
        heads[turn.tenant] += 1;
        if let Some(&next) = queue.get(heads[turn.tenant]) {
            heap.push(Turn {
                share: turn.share + fleet.of_request(&requests[index]) / weight(name),
                next: &requests[next],
                tenant: turn.tenant,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::{
        ContainerId, GpuPreference, Payload, PoolAttributes, PoolName, RuntimeName, Worker,
        WorkerRegistration, WorkerStatus,
    };
    use proptest::prelude::*;

    fn fleet(cores: u64) -> Snapshot {
        let registration = WorkerRegistration {
            id: crate::WorkerId::new("w").unwrap(),
            pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
            status: WorkerStatus::Available,
            total: Resources::new(cores * 1000, cores * 4096, 0),
            gpu_type: None,
            devices: Vec::new(),
            runtime: RuntimeName::PROCESS,
        };
        let worker: Worker = registration.with_devices().unwrap().into_worker(
            Resources::new(cores * 1000, cores * 4096, 0),
            1,
            1,
        );
        Snapshot {
            workers: vec![worker],
            pools: Vec::new(),
        }
    }

    /// Two workers of 8 cores, 16 GiB and 2 GPUs each.
    fn gpu_fleet() -> Fleet {
        let worker = |id: &str| {
            WorkerRegistration {
                id: crate::WorkerId::new(id).unwrap(),
                pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
                status: WorkerStatus::Available,
                total: Resources::new(8000, 16_384, 2),
                gpu_type: Some(crate::GpuType::A10G),
                devices: Vec::new(),
                runtime: RuntimeName::PROCESS,
            }
            .with_devices()
            .unwrap()
            .into_worker(Resources::new(8000, 16_384, 2), 1, 1)
        };
        Fleet::of(&Snapshot {
            workers: vec![worker("a"), worker("b")],
            pools: Vec::new(),
        })
    }

    #[test]
    fn the_dominant_share_is_the_largest_of_cpu_memory_and_gpus() {
        let fleet = gpu_fleet();
        assert_eq!(
            (fleet.cpu, fleet.mem, fleet.gpu_milli),
            (16_000.0, 32_768.0, 4000.0)
        );
        assert_eq!(fleet.dominant(4000, 4096, 0), 0.25, "CPU dominates");
        assert_eq!(fleet.dominant(1000, 16_384, 0), 0.5, "memory dominates");
        assert_eq!(fleet.dominant(0, 0, 1000), 0.25, "GPUs dominate");
        let mut gpu = request("g", "t", 0, 0);
        gpu.resources = Resources::new(100, 100, 1);
        assert_eq!(fleet.of_request(&gpu), 0.25);
        gpu.resources.gpu_count = 0;
        gpu.gpu_fraction_milli = Some(500);
        assert_eq!(fleet.of_request(&gpu), 0.125);
        let empty = Fleet::of(&Snapshot::default());
        assert_eq!((empty.cpu, empty.mem, empty.gpu_milli), (1.0, 1.0, 1.0));
    }

    #[test]
    fn a_tenant_heavy_in_memory_yields_to_one_light_in_everything() {
        let mut requests = vec![request("m0", "memory", 0, 0), request("c0", "cpu", 0, 1)];
        requests[0].resources = Resources::new(100, 100, 0);
        let mut shares = Shares::default();
        // 10% of the CPU against 50% of the memory: memory's dominant share is larger.
        shares.usage.insert(
            "memory".into(),
            Usage {
                containers: 1,
                cpu_millicores: 100,
                memory_mib: 5 * 4096,
                ..Usage::default()
            },
        );
        shares.usage.insert(
            "cpu".into(),
            Usage {
                containers: 1,
                cpu_millicores: 1000,
                memory_mib: 100,
                ..Usage::default()
            },
        );
        let names = ids(&requests, &order(&requests, &fleet(10), &shares));
        assert_eq!(names, ["c0", "m0"]);
    }

    fn request(id: &str, tenant: &str, priority: i32, at: u64) -> ContainerRequest {
        ContainerRequest {
            id: ContainerId::new(id).unwrap(),
            tenant: tenant.into(),
            resources: Resources::new(1000, 1024, 0),
            gpu_fraction_milli: None,
            gpu: GpuPreference::Any,
            pool_selector: None,
            preemptible: false,
            priority,
            submitted_at_ms: at,
            payload: Payload::default(),
            fallback: Vec::new(),
            max_retries: 0,
        }
    }

    fn ids(requests: &[ContainerRequest], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| requests[i].id.to_string()).collect()
    }

    #[test]
    fn one_tenant_keeps_the_planners_order() {
        let requests = vec![
            request("a", "t", 0, 3),
            request("b", "t", 5, 9),
            request("c", "t", 0, 1),
        ];
        let order = order(&requests, &fleet(10), &Shares::default());
        assert_eq!(order, crate::planning_order(&requests));
    }

    #[test]
    fn a_light_tenant_is_served_before_a_heavy_ones_backlog() {
        let mut requests: Vec<ContainerRequest> = (0..100)
            .map(|i| request(&format!("h{i}"), "heavy", 0, i))
            .collect();
        requests.push(request("l0", "light", 0, 1000));
        requests.push(request("l1", "light", 0, 1001));
        let order = order(&requests, &fleet(100), &Shares::default());
        let names = ids(&requests, &order);
        // Equal weights, nothing held: they alternate until light runs out.
        assert_eq!(&names[..4], ["h0", "l0", "h1", "l1"]);
        let mut shares = Shares::default();
        shares.usage.insert(
            "heavy".into(),
            Usage {
                containers: 10,
                cpu_millicores: 10_000,
                memory_mib: 10 * 1024,
                ..Usage::default()
            },
        );
        let order = super::order(&requests, &fleet(100), &shares);
        assert_eq!(
            &ids(&requests, &order)[..3],
            ["l0", "l1", "h0"],
            "heavy already holds 10% of the fleet"
        );
    }

    #[test]
    fn weights_split_the_batch_in_proportion() {
        let mut requests: Vec<ContainerRequest> = (0..300)
            .map(|i| request(&format!("a{i}"), "a", 0, i))
            .collect();
        requests.extend((0..300).map(|i| request(&format!("b{i}"), "b", 0, i)));
        let mut shares = Shares::default();
        shares.weights.insert("a".into(), 3);
        let order = order(&requests, &fleet(1000), &shares);
        let first: Vec<&str> = order[..200]
            .iter()
            .map(|&i| requests[i].tenant.as_str())
            .collect();
        let a = first.iter().filter(|t| **t == "a").count();
        assert_eq!(a, 150, "a weighs 3, b 1: 3 of every 4");
    }

    #[test]
    fn priority_orders_each_tenants_own_requests() {
        let requests = vec![
            request("a-low", "a", 0, 1),
            request("a-high", "a", 9, 5),
            request("b-low", "b", 0, 2),
            request("b-high", "b", 7, 6),
        ];
        let names = ids(&requests, &order(&requests, &fleet(10), &Shares::default()));
        assert_eq!(names, ["a-high", "b-high", "a-low", "b-low"]);
    }

    proptest! {
        /// Every request comes out once, and each tenant's requests keep the planner's
        /// order among themselves.
        #[test]
        fn a_fair_order_is_a_permutation_that_keeps_each_tenants_order(
            specs in proptest::collection::vec((0u8..4, -2i32..3, 0u64..50), 0..60),
            weights in proptest::collection::vec(1u32..5, 4),
        ) {
            let requests: Vec<ContainerRequest> = specs
                .iter()
                .enumerate()
                .map(|(i, (t, p, at))| request(&format!("r{i}"), &format!("t{t}"), *p, *at))
                .collect();
            let mut shares = Shares::default();
            for (t, w) in weights.iter().enumerate() {
                shares.weights.insert(format!("t{t}"), *w);
            }
            let order = order(&requests, &fleet(20), &shares);
            let mut seen = order.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..requests.len()).collect::<Vec<_>>());
            let base = crate::planning_order(&requests);
            for t in 0..4 {
                let tenant = format!("t{t}");
                let mine = |o: &Vec<usize>| -> Vec<usize> {
                    o.iter().copied().filter(|&i| requests[i].tenant == tenant).collect()
                };
                prop_assert_eq!(mine(&order), mine(&base));
            }
        }
    }
}
