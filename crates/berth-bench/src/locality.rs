//! The warm-start share of `--scenario start`: how often placement puts a container on a
//! worker that already holds its image, over a stream of containers of 50 distinct images
//! on 20 workers, with image locality on and off.
//!
//! It runs the core planner alone: what differs between on and off is the placement
//! decision, not the store or the runtime (the start scenario measures those). Each worker
//! keeps the [`CACHE_IMAGES`] images it used last (a cache under a size limit, least
//! recently used out first) and reports them as a real agent does after each start. One
//! container arrives each tick, [`ARRIVALS`] ticks in all, asking for 1 to 4 of a worker's
//! 16 cores for 40 to 120 ticks (about 60% of the fleet's cores busy in the steady state); images
//! are drawn uniformly, the hardest case for locality (a popular image is warm almost
//! everywhere by chance). A start is warm when its worker held the image when it was
//! placed; the first start of each image can only be cold. Chance is the share with
//! locality off.

use crate::report::{BenchReport, LocalityResult, LocalityRun, Verdict};
use berth_core::{
    ContainerId, ContainerRequest, GpuPreference, Payload, PlanOptions, PoolAttributes, PoolName,
    Resources, RuntimeName, Snapshot, Worker, WorkerId, WorkerStatus, plan_with,
};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Workers in the fleet.
pub const WORKERS: usize = 20;
/// Distinct images in the stream.
pub const IMAGES: usize = 50;
/// Containers in the stream (one arrives each tick).
pub const ARRIVALS: usize = 5_000;
/// Images a worker keeps (its cache's size limit, in images).
pub const CACHE_IMAGES: usize = 10;
/// The seed of the stream.
const SEED: u64 = 17;
/// The target: with locality on, at least this share of starts is warm.
const TARGET_WARM_SHARE: f64 = 0.9;
/// A worker's cores (millicores) and memory (MiB).
const WORKER_CPU: u64 = 16_000;
const WORKER_MEMORY: u64 = 65_536;

/// One container of the stream: its image, cores, and how many ticks it runs.
struct Arrival {
    image: usize,
    cores: u64,
    ticks: usize,
}

/// Runs the stream with locality off and on, prints the table and adds the result.
pub fn run(report: &mut BenchReport) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let stream: Vec<Arrival> = (0..ARRIVALS)
        .map(|_| Arrival {
            image: rng.random_range(0..IMAGES),
            cores: rng.random_range(1..=4),
            ticks: rng.random_range(40..=120),
        })
        .collect();
    let result = LocalityResult {
        workers: WORKERS,
        images: IMAGES,
        containers: ARRIVALS,
        cache_images: CACHE_IMAGES,
        seed: SEED,
        off: simulate(&stream, false)?,
        on: simulate(&stream, true)?,
    };
    print_table(&result);
    report.locality.push(result);
    Ok(())
}

/// Places the stream one container at a time on a fresh fleet.
fn simulate(stream: &[Arrival], locality: bool) -> anyhow::Result<LocalityRun> {
    let mut snapshot = fleet()?;
    let options = PlanOptions {
        image_locality: locality,
        ..PlanOptions::default()
    };
    // (end tick, worker, resources) of the containers still running.
    let mut running: Vec<(usize, usize, Resources)> = Vec::new();
    let mut run = LocalityRun::default();
    for (tick, arrival) in stream.iter().enumerate() {
        running.retain(|&(end, worker, resources)| {
            let ended = end <= tick;
            if ended {
                let free = &mut snapshot.workers[worker].free;
                *free = free.checked_add(resources).unwrap_or(*free);
            }
            !ended
        });
        let image = format!("registry.local/app-{}:v1", arrival.image);
        let request = request(tick, &image, arrival.cores)?;
        let plan = plan_with(&snapshot, std::slice::from_ref(&request), options);
        let Some(group) = plan.workers.first() else {
            run.refused += 1;
            continue;
        };
        let worker = snapshot
            .workers
            .iter()
            .position(|w| w.id == group.worker)
            .ok_or_else(|| anyhow::anyhow!("the plan names an unknown worker"))?;
        let chosen = &mut snapshot.workers[worker];
        run.placed += 1;
        if chosen.holds_image(&image) {
            run.warm += 1;
        }
        chosen.free = chosen
            .free
            .checked_sub(request.resources)
            .ok_or_else(|| anyhow::anyhow!("the plan overbooked {}", chosen.id))?;
        use_image(&mut chosen.images, image);
        running.push((tick + arrival.ticks, worker, request.resources));
    }
    run.warm_share = share(run.warm, run.placed);
    Ok(run)
}

/// Puts `image` first in a worker's most-recently-used list, dropping the least recently
/// used beyond [`CACHE_IMAGES`].
fn use_image(images: &mut Vec<String>, image: String) {
    images.retain(|held| *held != image);
    images.insert(0, image);
    images.truncate(CACHE_IMAGES);
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// [`WORKERS`] empty workers of one spread pool, holding no image.
fn fleet() -> anyhow::Result<Snapshot> {
    let pool = PoolAttributes::plain(PoolName::new("default")?);
    let total = Resources::new(WORKER_CPU, WORKER_MEMORY, 0);
    let workers = (0..WORKERS)
        .map(|i| {
            Ok(Worker {
                id: WorkerId::new(format!("w{i:02}"))?,
                pool: pool.clone(),
                status: WorkerStatus::Available,
                total,
                free: total,
                gpu_type: None,
                gpus: Vec::new(),
                runtime: RuntimeName::RUNC,
                version: 1,
                epoch: 1,
                images: Vec::new(),
            })
        })
        .collect::<anyhow::Result<Vec<Worker>>>()?;
    Ok(Snapshot {
        workers,
        pools: Vec::new(),
    })
}

/// The request of the stream's `index`th container.
fn request(index: usize, image: &str, cores: u64) -> anyhow::Result<ContainerRequest> {
    Ok(ContainerRequest {
        id: ContainerId::new(format!("c{index:05}"))?,
        tenant: "bench".into(),
        resources: Resources::new(cores * 1000, cores * 1024, 0),
        gpu: GpuPreference::Any,
        gpu_fraction_milli: None,
        pool_selector: None,
        preemptible: false,
        priority: 0,
        submitted_at_ms: index as u64,
        payload: Payload {
            image: Some(image.to_owned()),
            ..Payload::default()
        },
        fallback: Vec::new(),
        max_retries: 0,
    })
}

fn print_table(result: &LocalityResult) {
    println!(
        "\nWarm starts: {} containers of {} images on {} workers (each keeps {} images), the planner alone",
        result.containers, result.images, result.workers, result.cache_images
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["image locality", "placed", "warm", "warm share", "refused"]);
    for (name, run) in [("off (chance)", &result.off), ("on", &result.on)] {
        table.add_row([
            name.to_owned(),
            run.placed.to_string(),
            run.warm.to_string(),
            format!("{:.1}%", run.warm_share * 100.0),
            run.refused.to_string(),
        ]);
    }
    println!("{table}");
}

/// The verdict on the warm-start target, if the stream ran.
pub fn verdicts(report: &BenchReport) -> Vec<Verdict> {
    report
        .locality
        .iter()
        .map(|r| {
            let met = r.on.warm_share >= TARGET_WARM_SHARE;
            Verdict {
                target: format!(
                    "start: at least 90% warm starts with locality on ({} images, {} workers)",
                    r.images, r.workers
                ),
                measured: format!(
                    "{:.1}% warm with locality on, {:.1}% by chance (off)",
                    r.on.warm_share * 100.0,
                    r.off.warm_share * 100.0
                ),
                verdict: if met { "met" } else { "missed" },
                why: if met {
                    String::new()
                } else {
                    "the warm workers were full when their images came again".to_owned()
                },
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_most_recently_used_first_and_drops_the_oldest() {
        let mut images = Vec::new();
        for i in 0..=CACHE_IMAGES {
            use_image(&mut images, format!("i{i}"));
        }
        assert_eq!(images.len(), CACHE_IMAGES);
        assert_eq!(images[0], format!("i{CACHE_IMAGES}"));
        assert!(!images.contains(&"i0".to_owned()), "the oldest went");
        use_image(&mut images, "i5".to_owned());
        assert_eq!(images[0], "i5");
        assert_eq!(images.len(), CACHE_IMAGES);
    }

    #[test]
    fn locality_warms_more_starts_than_chance() {
        let mut report = BenchReport::empty("memory");
        run(&mut report).unwrap();
        let result = &report.locality[0];
        assert_eq!(result.on.placed + result.on.refused, ARRIVALS);
        assert!(result.on.warm_share > result.off.warm_share);
        // Only the first start of each image must be cold.
        assert!(result.on.placed - result.on.warm >= IMAGES.min(result.on.placed));
    }
}
