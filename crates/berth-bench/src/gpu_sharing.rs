//! `--scenario gpu-sharing`: an arrival-only fill of a GPU fleet, shaped by the published
//! node and pod lists of Alibaba's cluster-trace-gpu-v2023 (the "openb" trace of Weng et
//! al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
//! Gradient Descent", USENIX ATC '23), under spread, pack and the fragmentation-aware
//! policy.
//!
//! It runs the core planner alone (no store: the placement decision is what differs
//! between the policies). One fleet and one seeded stream of pods; for each policy a fresh
//! copy of the fleet takes the pods one at a time in arrival order, each planned against
//! the fleet as the pods before it left it (their devices booked), and nothing ever leaves.
//! It records the state at the first GPU pod refused, when the GPUs the arrived pods asked
//! for reach the fleet's GPUs (the point the paper compares policies at: "arrived
//! workload = 100% of the cluster's GPU capacity"), and at the end of the stream.
//!
//! Where the figures come from (read, not copied; the raw trace is neither used nor
//! committed):
//! - nodes: `cluster-trace-gpu-v2023/csv/openb_node_list_gpu_node.csv` in
//!   github.com/alibaba/clusterdata, 1,213 GPU nodes. `NODE_SHAPES` holds its shapes
//!   (cores, memory, GPUs, model exactly as listed) with their shares of the nodes rounded
//!   to whole percents by reading the list (so about +-2 points each): mostly 8-GPU nodes
//!   of 96 cores and 384 GiB (12 cores a GPU) and 2-GPU T4 nodes of 104 cores and 512
//!   GiB, then 2-GPU P100 nodes of 16 cores. No node without GPUs: the paper's simulator
//!   (github.com/hkust-adsl/kubernetes-scheduler-simulator, fed by the trace's
//!   `prepare_input.sh`) runs the whole workload, CPU-only pods included, on this GPU-node
//!   list, so every pool here lets CPU-only pods onto GPU nodes, with no reserve.
//! - pods: the class mix of `openb_pod_list_default.csv` (8,152 pods, read whole): 13.3%
//!   CPU-only (1,088), 37.8% a fraction of one GPU (3,078), 48.0% one whole GPU (3,911),
//!   0.9% several (75). Within each class the shapes (cores, memory, GPU share) are the
//!   commonest of the list with their counts as weights: 20 CPU-only shapes (99.5% of that
//!   class), 30 fraction shapes (97.5%), 30 one-GPU shapes (98.2%) and all 13 multi-GPU
//!   shapes. So CPU-only pods are mostly of 12.5 or 32 cores, one-GPU pods mostly of 11.3
//!   to 19 cores, multi-GPU pods of 8 to 15 cores a GPU, and fractions mostly small in
//!   cores; a third of the fractions ask 0.81 of a GPU (1,078 pods), leaving 0.19 of their
//!   device that only the 1.3% of pods asking 0.16 or less fit.
//! - GPU types are the trace's models. In the default list every pod accepts any type.
//!   With `--typed-pods`, the GPU pods accept the types of the trace's
//!   `openb_pod_list_gpuspec33.csv`: the default list with a `gpu_spec` on 2,388 of its
//!   7,064 GPU pods (33.8%), read whole. A pod's types are drawn, by the counts of its
//!   class, from that class's specs ([`FRACTION_TYPES`], [`ONE_GPU_TYPES`],
//!   [`MULTI_GPU_TYPES`]; within a class the commonest shapes split alike), from a
//!   generator of their own, so a typed stream has the same pods as the untyped one of its
//!   seed. Its table adds fgd weighing a demand blind to the types, to show what knowing
//!   them is worth.
//!
//! The fragmentation-aware policy weighs placements against the stream's own shape mix
//! (the demand a pool would learn from its history), as the paper's FGD weighs them
//! against the workload's popular pod shapes.

use crate::report::{BenchReport, Fill, GpuSharingResult, PolicyFill};
use berth_core::gpu_fit::DemandShape;
use berth_core::{
    ContainerId, ContainerRequest, CpuReserve, GPU_MILLI, GpuPreference, GpuType, Payload,
    PlacementPolicy, PlanOptions, PoolAttributes, PoolName, Resources, RuntimeName, Snapshot,
    Worker, WorkerId, WorkerRegistration, WorkerStatus, plan_for_demand,
};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

/// The seed of the fleet and the stream, unless `--stream-seeds` gives others.
pub const SEED: u64 = 2023;
/// The target: the fragmentation-aware policy leaves at most this share of the GPUs pack
/// leaves unallocated.
const TARGET_SHARE_OF_PACK: f64 = 0.5;

/// A node shape of the trace's GPU-node list: CPU millicores, memory MiB, GPUs, GPU model;
/// and its share of the nodes in percent.
const NODE_SHAPES: [(u64, u64, u32, &str, u32); 11] = [
    (96_000, 393_216, 8, "G2", 42),
    (104_000, 524_288, 2, "T4", 36),
    (16_000, 122_880, 2, "P100", 9),
    (128_000, 786_432, 8, "G3", 3),
    (64_000, 262_144, 2, "P100", 2),
    (96_000, 786_432, 8, "V100M32", 2),
    (32_000, 131_072, 4, "V100M16", 2),
    (96_000, 393_216, 4, "T4", 1),
    (48_000, 376_832, 4, "V100M32", 1),
    (64_000, 262_144, 8, "V100M16", 1),
    (8_000, 32_768, 1, "V100M16", 1),
];

/// Pod classes, in per mille of the stream: CPU-only, a fraction of one GPU, one whole GPU;
/// the rest asks for several GPUs.
const CPU_ONLY_PER_MILLE: u32 = 133;
const FRACTION_PER_MILLE: u32 = 378;
const ONE_GPU_PER_MILLE: u32 = 480;

/// CPU-only pod shapes: CPU millicores, memory MiB; weight.
const CPU_ONLY: [(u64, u64, u32); 20] = [
    (12_500, 57_344, 364),
    (32_000, 49_152, 284),
    (8_000, 30_517, 163),
    (15_400, 51_200, 120),
    (16_500, 51_200, 95),
    (11_400, 57_344, 11),
    (8_000, 15_625, 11),
    (16_000, 31_250, 8),
    (8_000, 31_250, 5),
    (12_000, 24_576, 4),
    (32_000, 62_500, 3),
    (20_000, 65_536, 2),
    (12_500, 65_536, 2),
    (8_000, 16_384, 2),
    (32_000, 32_768, 2),
    (8_000, 8_192, 2),
    (16_000, 32_768, 2),
    (32_000, 65_536, 1),
    (16_000, 65_536, 1),
    (16_000, 16_384, 1),
];

/// Fraction pod shapes: CPU millicores, memory MiB, milli-GPUs of one device; weight.
const FRACTIONS: [(u64, u64, u32, u32); 30] = [
    (3_152, 5_600, 810, 1_047),
    (11_908, 47_104, 470, 388),
    (8_000, 30_517, 470, 360),
    (11_908, 47_104, 650, 237),
    (4_000, 22_888, 320, 111),
    (4_000, 30_517, 230, 84),
    (4_000, 15_258, 320, 78),
    (3_152, 5_600, 590, 75),
    (8_000, 30_517, 320, 72),
    (4_152, 10_600, 550, 72),
    (4_000, 15_258, 160, 53),
    (6_000, 6_144, 460, 51),
    (4_152, 10_600, 370, 45),
    (4_000, 30_517, 320, 43),
    (4_152, 10_600, 810, 31),
    (6_000, 12_288, 460, 29),
    (4_000, 22_888, 230, 26),
    (4_000, 15_258, 220, 24),
    (1_000, 2_048, 320, 22),
    (6_000, 22_888, 160, 20),
    (8_000, 30_517, 220, 19),
    (4_000, 22_888, 480, 18),
    (8_000, 30_517, 230, 18),
    (6_000, 18_432, 460, 18),
    (8_000, 30_517, 650, 12),
    (4_000, 15_258, 230, 12),
    (4_000, 22_888, 220, 11),
    (6_000, 8_192, 460, 9),
    (4_000, 22_888, 110, 9),
    (4_000, 15_258, 110, 8),
];

/// The GPU types fraction pods accept in the trace's gpuspec33 list ('|'-separated; empty:
/// any type) and how many pods state each.
const FRACTION_TYPES: [(&str, u32); 4] = [
    ("", 2_194),
    ("T4", 593),
    ("P100", 278),
    ("G2|P100|T4|V100M16|V100M32", 13),
];

/// The GPU types one-GPU pods accept in the gpuspec33 list (a spec that names V100M32
/// twice is counted with the same types named once).
const ONE_GPU_TYPES: [(&str, u32); 16] = [
    ("", 2_435),
    ("T4", 698),
    ("G2", 321),
    ("V100M16|V100M32", 156),
    ("P100|V100M16|V100M32", 102),
    ("G3", 80),
    ("P100|T4|V100M16|V100M32", 33),
    ("G2|P100|T4|V100M16|V100M32", 26),
    ("A10|G2|T4|V100M16|V100M32", 24),
    ("V100M32", 18),
    ("A10|T4", 6),
    ("P100|V100M16", 4),
    ("A10|G2|P100|T4|V100M16|V100M32", 3),
    ("V100M16", 3),
    ("P100", 1),
    ("T4|V100M16|V100M32", 1),
];

/// The GPU types multi-GPU pods accept in the gpuspec33 list.
const MULTI_GPU_TYPES: [(&str, u32); 7] = [
    ("", 47),
    ("G2", 10),
    ("V100M16|V100M32", 7),
    ("G3", 6),
    ("T4|V100M16|V100M32", 2),
    ("V100M32", 2),
    ("P100|V100M16|V100M32", 1),
];

/// One-GPU pod shapes: CPU millicores, memory MiB; weight.
const ONE_GPU: [(u64, u64, u32); 30] = [
    (11_300, 49_152, 857),
    (11_400, 48_128, 534),
    (3_152, 5_600, 470),
    (18_708, 64_512, 255),
    (9_810, 41_560, 195),
    (12_000, 24_576, 158),
    (15_700, 58_368, 158),
    (11_908, 47_104, 153),
    (16_000, 32_768, 108),
    (8_000, 16_384, 104),
    (4_000, 24_576, 104),
    (12_000, 16_384, 99),
    (14_200, 58_368, 93),
    (24_200, 93_184, 84),
    (11_400, 77_824, 65),
    (8_000, 32_768, 55),
    (11_900, 77_824, 51),
    (12_000, 15_360, 44),
    (8_200, 33_792, 41),
    (4_000, 31_250, 40),
    (15_200, 80_896, 36),
    (16_000, 65_536, 33),
    (16_400, 125_952, 27),
    (11_300, 37_888, 16),
    (1_000, 6_144, 15),
    (7_000, 30_000, 11),
    (15_400, 90_112, 9),
    (4_000, 16_384, 8),
    (12_000, 32_768, 8),
    (12_000, 47_104, 8),
];

/// Multi-GPU pod shapes: CPU millicores, memory MiB, GPUs; weight.
const MULTI_GPU: [(u64, u64, u32, u32); 13] = [
    (64_200, 263_168, 8, 18),
    (88_000, 327_680, 8, 18),
    (32_200, 132_096, 4, 9),
    (16_200, 66_560, 2, 7),
    (6_000, 65_536, 2, 3),
    (30_200, 160_768, 2, 3),
    (32_000, 131_072, 4, 3),
    (60_200, 320_512, 4, 3),
    (64_000, 262_144, 8, 3),
    (120_000, 737_280, 8, 3),
    (17_400, 43_008, 2, 2),
    (120_200, 640_000, 8, 2),
    (14_000, 60_000, 2, 1),
];

/// One of `items`, drawn with the weights `weight` gives them (the first if all weigh 0).
fn pick<'a, T>(rng: &mut StdRng, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for item in items {
        let w = weight(item);
        if roll < w {
            return item;
        }
        roll -= w;
    }
    &items[0]
}

/// The fleet: `nodes` workers drawn from [`NODE_SHAPES`] by share, each letting CPU-only
/// pods on with no reserve (as in the paper's simulation).
fn fleet(rng: &mut StdRng, nodes: usize) -> anyhow::Result<Vec<Worker>> {
    (0..nodes)
        .map(|i| {
            let &(cpu, memory, gpus, model, _) = pick(rng, &NODE_SHAPES, |s| s.4);
            let total = Resources::new(cpu, memory, gpus);
            let registration = WorkerRegistration {
                id: WorkerId::new(format!("node-{i:04}"))?,
                pool: PoolAttributes {
                    cpu_on_gpu: Some(CpuReserve::default()),
                    ..PoolAttributes::plain(PoolName::new("gpu")?)
                },
                status: WorkerStatus::Available,
                total,
                gpu_type: (gpus > 0).then(|| model.parse::<GpuType>()).transpose()?,
                devices: Vec::new(),
                runtime: RuntimeName::PROCESS,
            };
            Ok(registration.with_devices()?.into_worker(total, 1, 1))
        })
        .collect()
}

/// One pod: its class by the published mix, then its shape by the sampled weights.
fn pod(rng: &mut StdRng, index: usize) -> anyhow::Result<ContainerRequest> {
    let roll = rng.random_range(0..1000);
    let (cpu, memory, gpus, fraction) = if roll < CPU_ONLY_PER_MILLE {
        let &(cpu, memory, _) = pick(rng, &CPU_ONLY, |s| s.2);
        (cpu, memory, 0, None)
    } else if roll < CPU_ONLY_PER_MILLE + FRACTION_PER_MILLE {
        let &(cpu, memory, milli, _) = pick(rng, &FRACTIONS, |s| s.3);
        (cpu, memory, 0, Some(milli))
    } else if roll < CPU_ONLY_PER_MILLE + FRACTION_PER_MILLE + ONE_GPU_PER_MILLE {
        let &(cpu, memory, _) = pick(rng, &ONE_GPU, |s| s.2);
        (cpu, memory, 1, None)
    } else {
        let &(cpu, memory, gpus, _) = pick(rng, &MULTI_GPU, |s| s.3);
        (cpu, memory, gpus, None)
    };
    Ok(ContainerRequest {
        id: ContainerId::new(format!("pod-{index:05}"))?,
        tenant: "trace".to_owned(),
        resources: Resources::new(cpu, memory, gpus),
        gpu_fraction_milli: fraction,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: index as u64,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    })
}

/// The seed of the generator that draws the typed stream's GPU types, mixed with the
/// stream's seed.
const TYPES_SEED: u64 = 0x6770_7573_7065_6333;

/// Gives each GPU pod of `pods` the GPU types it accepts, drawn by its class's counts in
/// the trace's gpuspec33 list from a generator of their own (so the pods stay those of the
/// untyped stream).
fn assign_types(pods: &mut [ContainerRequest], seed: u64) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ TYPES_SEED);
    for pod in pods.iter_mut().filter(|pod| pod.wants_gpus()) {
        let specs: &[(&str, u32)] = if pod.gpu_fraction_milli.is_some() {
            &FRACTION_TYPES
        } else if pod.resources.gpu_count == 1 {
            &ONE_GPU_TYPES
        } else {
            &MULTI_GPU_TYPES
        };
        let &(spec, _) = pick(&mut rng, specs, |s| s.1);
        pod.gpu = if spec.is_empty() {
            GpuPreference::Any
        } else {
            GpuPreference::Types(spec.split('|').map(str::parse).collect::<Result<_, _>>()?)
        };
    }
    Ok(())
}

/// The stream's shape mix, as the demand the fragmentation-aware policy weighs against;
/// with `types` false, as if every pod took any GPU type.
fn demand_of(pods: &[ContainerRequest], types: bool) -> Vec<DemandShape> {
    let any = GpuPreference::Any;
    berth_core::gpu_fit::demand_of(
        pods.iter()
            .map(|p| (&p.resources, p.gpu_ask(), if types { &p.gpu } else { &any })),
    )
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
        ..PlanOptions::default()
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

/// One run of the scenario: the fleet's nodes and the stream's pods (about 20 per node
/// saturates the fleet), both drawn from `seed`, and whether the pods state GPU types.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Pods in the stream.
    pub pods: usize,
    /// The seed of the fleet and the stream.
    pub seed: u64,
    /// Whether a third of the GPU pods accept only some types (`--typed-pods`).
    pub typed: bool,
}

/// The name of the row of fgd weighing a demand blind to GPU types (typed streams only).
const FGD_TYPE_BLIND: &str = "fgd, type-blind demand";

/// Runs the scenario on `stream` and prints its table.
pub fn run(stream: Stream, report: &mut BenchReport) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(stream.seed);
    let fleet = fleet(&mut rng, stream.nodes)?;
    let mut pods = (0..stream.pods)
        .map(|i| pod(&mut rng, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if stream.typed {
        assign_types(&mut pods, stream.seed)?;
    }
    let demand = demand_of(&pods, true);
    let mut policies: Vec<(String, Fill)> = [
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
    if stream.typed {
        let blind = demand_of(&pods, false);
        policies.push((
            FGD_TYPE_BLIND.to_owned(),
            fill(&fleet, &pods, &blind, PlacementPolicy::Fgd),
        ));
    }
    let result = GpuSharingResult {
        nodes: fleet.len(),
        gpus: total_gpus(&fleet) / u64::from(GPU_MILLI),
        pods: pods.len(),
        seed: stream.seed,
        typed: stream.typed,
        policies,
    };
    print_table(&result);
    report.gpu_sharing.push(result);
    Ok(())
}

fn print_table(result: &GpuSharingResult) {
    let typed = if result.typed {
        ", a third of its GPU pods naming GPU types"
    } else {
        ""
    };
    println!(
        "arrival-only fill: {} nodes, {} GPUs, a stream of {} pods (seed {}{typed}), planned one at a time",
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
    if result.typed {
        print_typed_shares(result);
    }
}

/// The state of `result`'s fill under `policy` when the arrived GPU asks reach the fleet's.
fn at_capacity<'a>(result: &'a GpuSharingResult, policy: &str) -> Option<&'a PolicyFill> {
    result
        .policies
        .iter()
        .find(|(p, _)| p == policy)
        .map(|(_, fill)| &fill.at_capacity)
}

/// The unallocated GPUs `of` leaves as a share of those `to` leaves (1 when `to` leaves
/// none).
fn share_of(of: &PolicyFill, to: &PolicyFill) -> f64 {
    if to.unallocated_gpus > 0.0 {
        of.unallocated_gpus / to.unallocated_gpus
    } else {
        1.0
    }
}

/// A typed stream's comparison: what fgd leaves at capacity as a share of pack's, knowing
/// the demand's GPU types and blind to them (the verdict has the first too).
fn print_typed_shares(result: &GpuSharingResult) {
    let (Some(pack), Some(fgd), Some(blind)) = (
        at_capacity(result, "pack"),
        at_capacity(result, "fgd"),
        at_capacity(result, FGD_TYPE_BLIND),
    ) else {
        return;
    };
    println!(
        "GPU asks = fleet: fgd leaves {:.0}% of the GPUs pack leaves unallocated; weighing a type-blind demand, {:.0}%",
        share_of(fgd, pack) * 100.0,
        share_of(blind, pack) * 100.0
    );
}

/// Why fgd misses the target on a stream of the default list: the floor every policy
/// shares.
const WHY_DEFAULT_MISSED: &str = "fgd avoids most of what pack strands (pack fills small-CPU nodes with CPU-heavy pods and loses their GPUs), but a floor is common to every policy: a third of the trace's fractions ask 0.81 of a GPU, and the 0.19 each leaves fits only the 1.3% of pods asking 0.16 or less; at the fleet's capacity those slivers hold 57-60 GPUs under each policy (seed 2023), two fifths of what pack leaves in all, so fgd would have to leave almost nothing else (BENCHMARKS.md, GPU sharing)";

/// Why fgd misses the target on a typed stream.
const WHY_TYPED_MISSED: &str = "this typed stream differs from those measured: on seeds 2023, 1, 2, 3 and 4 (and seed 2023 at the trace's size) fgd left 28-33% of pack's unallocated GPUs (BENCHMARKS.md, GPU sharing, pods that name GPU types)";

/// The verdict on the fragmentation target, for each stream (the default list and, with
/// `--typed-pods`, the gpuspec33 one).
pub fn verdicts(report: &BenchReport) -> Vec<crate::report::Verdict> {
    report
        .gpu_sharing
        .iter()
        .filter_map(|r| {
            let (pack, fgd) = (at_capacity(r, "pack")?, at_capacity(r, "fgd")?);
            let share = share_of(fgd, pack);
            let met = share <= TARGET_SHARE_OF_PACK && fgd.placed >= pack.placed;
            let stream = if r.typed {
                format!("seed {}, typed pods", r.seed)
            } else {
                format!("seed {}", r.seed)
            };
            Some(crate::report::Verdict {
                target: format!("gpu-sharing ({stream}): fgd leaves at most half the unallocated GPUs pack leaves, placing no fewer pods (when the arrived GPU asks reach the fleet's GPUs)"),
                measured: format!(
                    "fgd {:.1} GPUs unallocated, {} pods; pack {:.1} GPUs, {} pods ({:.0}% of pack's)",
                    fgd.unallocated_gpus,
                    fgd.placed,
                    pack.unallocated_gpus,
                    pack.placed,
                    share * 100.0
                ),
                verdict: if met { "met" } else { "missed" },
                why: match (met, r.typed) {
                    (true, _) => String::new(),
                    (false, false) => WHY_DEFAULT_MISSED.to_owned(),
                    (false, true) => WHY_TYPED_MISSED.to_owned(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn total(specs: &[(&str, u32)]) -> u32 {
        specs.iter().map(|s| s.1).sum()
    }

    /// The type tables hold every GPU pod of their class in the gpuspec33 list, and about a
    /// third of them name types, as there (2,388 of 7,064).
    #[test]
    fn the_type_tables_hold_each_class_of_the_trace() {
        assert_eq!(total(&FRACTION_TYPES), 3_078);
        assert_eq!(total(&ONE_GPU_TYPES), 3_911);
        assert_eq!(total(&MULTI_GPU_TYPES), 75);
        let any: u32 = [&FRACTION_TYPES[..], &ONE_GPU_TYPES, &MULTI_GPU_TYPES]
            .iter()
            .map(|specs| {
                specs
                    .iter()
                    .filter(|s| s.0.is_empty())
                    .map(|s| s.1)
                    .sum::<u32>()
            })
            .sum();
        assert_eq!(7_064 - any, 2_388);
    }

    /// Typing a stream changes only the GPU pods' accepted types: the pods are those of the
    /// untyped stream, CPU-only pods take any type, and about a third of the GPU pods name
    /// types (all of them the trace's models).
    #[test]
    fn typing_keeps_the_pods_and_names_types_for_a_third() {
        let stream = |typed| {
            let mut rng = StdRng::seed_from_u64(5);
            let mut pods: Vec<ContainerRequest> =
                (0..3000).map(|i| pod(&mut rng, i).unwrap()).collect();
            if typed {
                assign_types(&mut pods, 5).unwrap();
            }
            pods
        };
        let (plain, typed) = (stream(false), stream(true));
        let gpu_pods = plain.iter().filter(|p| p.wants_gpus()).count();
        let mut named = 0;
        for (a, b) in plain.iter().zip(&typed) {
            assert_eq!(
                (&a.id, a.resources, a.gpu_ask()),
                (&b.id, b.resources, b.gpu_ask())
            );
            assert_eq!(a.gpu, GpuPreference::Any);
            if let GpuPreference::Types(types) = &b.gpu {
                assert!(b.wants_gpus(), "{b:?}");
                named += 1;
                let models = ["G2", "G3", "T4", "P100", "V100M16", "V100M32", "A10"];
                assert!(
                    types.iter().all(|t| models.contains(&t.name())),
                    "{types:?}"
                );
            }
        }
        let share = f64::from(named) / gpu_pods as f64;
        assert!((0.30..0.38).contains(&share), "{named} of {gpu_pods}");
    }
}
