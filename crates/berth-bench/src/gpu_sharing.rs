//! `--scenario gpu-sharing`: an arrival-only fill of a GPU fleet, shaped by the published
//! statistics of Alibaba's cluster-trace-gpu-v2023 and of Weng et al., "Beware of
//! Fragmentation" (USENIX ATC '23), under spread, pack and the fragmentation-aware policy.
//!
//! It runs the core planner alone (no store: the placement decision is what differs
//! between the policies). One fleet and one seeded stream of pods; for each policy a fresh
//! copy of the fleet takes the pods one at a time in arrival order, each planned against
//! the fleet as the pods before it left it (their devices booked), and nothing ever leaves.
//! It records the state at the first pod refused and at the end of the stream.
//!
//! What is taken from the published figures (the raw trace is not used or committed):
//! - pods (8,000 on 400 nodes by default, about twice what the fleet holds): about 13%
//!   CPU-only, 38% a fraction of one GPU (`gpu_milli` below 1000), 48% one
//!   whole GPU, 1% several (2, 4 or 8); GPU pods of 4 to 16 cores, CPU-only ones of 1 to 32;
//! - fractions: mostly 0.1 to 0.5 of a GPU, with 0.5 the most common;
//! - nodes: mostly 8-GPU nodes of 96 to 128 cores, some 4- and 2-GPU ones, and about one
//!   node in five without GPUs; several GPU types (any type is accepted here, as by the
//!   two thirds of the trace's GPU pods that state no type).
//!
//! The fragmentation-aware policy weighs placements against the stream's own shape mix
//! (the demand a pool would learn from its history).

use crate::report::{BenchReport, Fill, GpuSharingResult, PolicyFill};
use berth_core::gpu_fit::DemandShape;
use berth_core::{
    ContainerId, ContainerRequest, GPU_MILLI, GpuPreference, GpuType, Payload, PlacementPolicy,
    PlanOptions, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot, Worker, WorkerId,
    WorkerRegistration, WorkerStatus, plan_for_demand,
};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

/// The seed of the fleet and the stream.
const SEED: u64 = 2023;
/// The target: the fragmentation-aware policy leaves at most this share of the GPUs pack
/// leaves unallocated.
const TARGET_SHARE_OF_PACK: f64 = 0.5;

/// A node shape: cores, memory GiB, GPUs, GPU type; and its weight in the fleet.
const NODE_SHAPES: [(u64, u64, u32, GpuType, u32); 5] = [
    (96, 768, 8, GpuType::A10G, 35),
    (128, 1024, 8, GpuType::A100_80, 25),
    (64, 512, 4, GpuType::T4, 12),
    (32, 256, 2, GpuType::L4, 8),
    (32, 256, 0, GpuType::T4, 20),
];

/// The fleet: [`NODES`] workers drawn from [`NODE_SHAPES`] by weight.
fn fleet(rng: &mut StdRng, nodes: usize) -> anyhow::Result<Vec<Worker>> {
    let total_weight: u32 = NODE_SHAPES.iter().map(|s| s.4).sum();
    (0..nodes)
        .map(|i| {
            let mut roll = rng.random_range(0..total_weight);
            let shape = NODE_SHAPES
                .iter()
                .find(|s| {
                    if roll < s.4 {
                        true
                    } else {
                        roll -= s.4;
                        false
                    }
                })
                .unwrap_or(&NODE_SHAPES[0]);
            let (cores, gib, gpus, gpu_type, _) = shape.clone();
            let total = Resources::new(cores * 1000, gib * 1024, gpus);
            let registration = WorkerRegistration {
                id: WorkerId::new(format!("node-{i:04}"))?,
                pool: PoolAttributes::plain(PoolName::new("gpu")?),
                status: WorkerStatus::Available,
                total,
                gpu_type: (gpus > 0).then_some(gpu_type),
                devices: Vec::new(),
                runtime: RuntimeName::PROCESS,
            };
            Ok(registration.with_devices()?.into_worker(total, 1, 1))
        })
        .collect()
}

/// One pod's shape.
fn pod(rng: &mut StdRng, index: usize) -> anyhow::Result<ContainerRequest> {
    let roll = rng.random_range(0..1000);
    let (cores, gpus, fraction) = if roll < 133 {
        (rng.random_range(1..=32), 0, None)
    } else if roll < 133 + 378 {
        let milli = [100, 200, 250, 300, 400, 500, 500, 500, 700, 800][rng.random_range(0..10)];
        (rng.random_range(4..=8), 0, Some(milli))
    } else if roll < 133 + 378 + 480 {
        (rng.random_range(4..=16), 1, None)
    } else {
        let count = [2, 2, 4, 4, 8][rng.random_range(0..5)];
        (8 * count as u64, count, None)
    };
    Ok(ContainerRequest {
        id: ContainerId::new(format!("pod-{index:05}"))?,
        tenant: "trace".to_owned(),
        resources: Resources::new(cores * 1000, cores * 4096, gpus),
        gpu_fraction_milli: fraction,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: index as u64,
        payload: Payload::default(),
    })
}

/// The stream's shape mix, as the demand the fragmentation-aware policy weighs against.
fn demand(pods: &[ContainerRequest]) -> Vec<DemandShape> {
    berth_core::gpu_fit::demand_of(pods.iter().map(|p| (&p.resources, p.gpu_ask())))
}

/// The GPUs of the fleet not allocated, in milli-GPUs (healthy devices' free shares).
fn unallocated(workers: &[Worker]) -> u64 {
    workers
        .iter()
        .flat_map(|w| w.device_slots())
        .map(|slot| u64::from(slot.free))
        .sum()
}

fn total_gpus(workers: &[Worker]) -> u64 {
    workers
        .iter()
        .map(|w| u64::from(w.total.gpu_count) * u64::from(GPU_MILLI))
        .sum()
}

/// The fleet's state after some pods: placed pods, GPU allocation rate, unallocated GPUs.
fn state(workers: &[Worker], placed: usize) -> PolicyFill {
    let total = total_gpus(workers) as f64;
    let free = unallocated(workers) as f64;
    PolicyFill {
        placed,
        gpu_allocation_rate: if total > 0.0 { 1.0 - free / total } else { 0.0 },
        unallocated_gpus: free / f64::from(GPU_MILLI),
    }
}

/// Fills a copy of `fleet` with `pods` under `policy`: the state at the first GPU pod
/// refused, when the GPUs the arrived pods asked for first exceed the fleet's, and at the
/// end, and how long planning took.
fn fill(
    fleet: &[Worker],
    pods: &[ContainerRequest],
    demand: &[DemandShape],
    policy: PlacementPolicy,
) -> Fill {
    let mut snapshot = Snapshot {
        workers: fleet.to_vec(),
        pools: Vec::new(),
    };
    for worker in &mut snapshot.workers {
        worker.pool.policy = policy;
    }
    let index_of: std::collections::HashMap<WorkerId, usize> = snapshot
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.clone(), i))
        .collect();
    // Every feasible worker is scored (no sampling), so the policies alone differ.
    let options = PlanOptions {
        max_candidates: snapshot.workers.len().max(1),
    };
    let started = Instant::now();
    let mut placed = 0;
    let mut first_refusal = None;
    let mut at_capacity = None;
    let capacity = total_gpus(&snapshot.workers);
    let mut arrived = 0u64;
    for pod in pods {
        arrived += pod.gpu_ask().milli();
        if arrived > capacity {
            at_capacity.get_or_insert_with(|| state(&snapshot.workers, placed));
        }
        let plan = plan_for_demand(&snapshot, std::slice::from_ref(pod), options, demand);
        let Some(group) = plan.workers.first() else {
            if pod.wants_gpus() {
                first_refusal.get_or_insert_with(|| state(&snapshot.workers, placed));
            }
            continue;
        };
        let worker = &mut snapshot.workers[index_of[&group.worker]];
        for placement in &group.placements {
            worker.free = worker
                .free
                .checked_sub(placement.resources)
                .unwrap_or(worker.free);
            let booked = worker.book_devices(&placement.devices);
            debug_assert!(booked, "the planner chose devices with room");
            worker.version += 1;
            placed += 1;
        }
    }
    let end = state(&snapshot.workers, placed);
    let planning_ms = started.elapsed().as_secs_f64() * 1e3;
    Fill {
        first_refusal: first_refusal.unwrap_or_else(|| end.clone()),
        at_capacity: at_capacity.unwrap_or_else(|| end.clone()),
        end,
        planning_ms,
    }
}

/// Runs the scenario on `nodes` nodes with a stream of `pods` pods (about 20 per node
/// saturates the fleet) and prints its table.
pub fn run(nodes: usize, pods: usize, report: &mut BenchReport) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let fleet = fleet(&mut rng, nodes)?;
    let pods = (0..pods)
        .map(|i| pod(&mut rng, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let demand = demand(&pods);
    let policies = [
        PlacementPolicy::Spread,
        PlacementPolicy::Pack,
        PlacementPolicy::Fgd,
    ]
    .into_iter()
    .map(|policy| {
        (
            policy.as_str().to_owned(),
            fill(&fleet, &pods, &demand, policy),
        )
    })
    .collect();
    let result = GpuSharingResult {
        nodes: fleet.len(),
        gpus: total_gpus(&fleet) / u64::from(GPU_MILLI),
        pods: pods.len(),
        seed: SEED,
        policies,
    };
    print_table(&result);
    report.gpu_sharing.push(result);
    Ok(())
}

fn print_table(result: &GpuSharingResult) {
    println!(
        "arrival-only fill: {} nodes, {} GPUs, a stream of {} pods (seed {}), planned one at a time",
        result.nodes, result.gpus, result.pods, result.seed
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "policy",
        "first GPU pod refused: pods placed, GPU allocation",
        "GPU asks = fleet: GPU allocation, GPUs unallocated",
        "end: pods placed, GPU allocation, GPUs unallocated",
        "planning",
    ]);
    for (policy, fill) in &result.policies {
        let (first, full, end) = (&fill.first_refusal, &fill.at_capacity, &fill.end);
        table.add_row([
            policy.clone(),
            format!(
                "{}, {:.1}%",
                first.placed,
                first.gpu_allocation_rate * 100.0
            ),
            format!(
                "{:.1}%, {:.1}",
                full.gpu_allocation_rate * 100.0,
                full.unallocated_gpus
            ),
            format!(
                "{}, {:.1}%, {:.1}",
                end.placed,
                end.gpu_allocation_rate * 100.0,
                end.unallocated_gpus
            ),
            format!("{:.0} ms", fill.planning_ms),
        ]);
    }
    println!("{table}");
}

/// The verdict on the fragmentation target, if the scenario ran.
pub fn verdicts(report: &BenchReport) -> Vec<crate::report::Verdict> {
    report
        .gpu_sharing
        .iter()
        .filter_map(|r| {
            let end = |name: &str| {
                r.policies
                    .iter()
                    .find(|(p, _)| p == name)
                    .map(|(_, fill)| &fill.at_capacity)
            };
            let (pack, fgd) = (end("pack")?, end("fgd")?);
            let share = if pack.unallocated_gpus > 0.0 {
                fgd.unallocated_gpus / pack.unallocated_gpus
            } else {
                1.0
            };
            let met = share <= TARGET_SHARE_OF_PACK && fgd.placed >= pack.placed;
            Some(crate::report::Verdict {
                target: "gpu-sharing: fgd leaves at most half the unallocated GPUs pack leaves, placing no fewer pods (when the arrived GPU asks reach the fleet's GPUs)".to_owned(),
                measured: format!(
                    "fgd {:.1} GPUs unallocated, {} pods; pack {:.1} GPUs, {} pods ({:.0}% of pack's)",
                    fgd.unallocated_gpus,
                    fgd.placed,
                    pack.unallocated_gpus,
                    pack.placed,
                    share * 100.0
                ),
                verdict: if met { "met" } else { "missed" },
                why: if met {
                    String::new()
                } else {
                    "see the table: the fragmentation measure and the demand it weighs against decide where fractions go".to_owned()
                },
            })
        })
        .collect()
}
