//! The cold and warm starts of `--scenario start`: a container of a registry image started
//! through the runc runtime alone, when the worker must pull the image first (cold) and
//! when it holds it already (warm).
//!
//! A distribution registry (Debian's `docker-registry`) runs on loopback with one image
//! pushed by skopeo: busybox and 8 MiB of incompressible data in one layer.
//! Each cold sample is a fresh runtime with an empty image cache starting one container
//! of it (the start call: pull, verify, unpack, bundle, `runc run`); the warm samples are
//! further containers on the last of those runtimes. Loopback hides the network: a real
//! registry adds its transfer time to every cold start. Without `docker-registry` or
//! `skopeo` the run is skipped with a note (the bench is not a test; `scripts/test.sh`
//! installs both for the tests).

use crate::report::{BenchReport, ImageStartResult, Spread};
use anyhow::Context;
use berth_agent::{RuncConfig, RuncRuntime};
use berth_core::WorkerId;
use berth_image::testing::registry::LocalRegistry;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use std::path::Path;

/// Cold samples (each a fresh runtime) and warm samples.
const SAMPLES: usize = 8;
/// The image's data besides busybox, in MiB.
const PAYLOAD_MIB: usize = 8;

/// Measures cold and warm starts under `root`, or notes why it could not.
pub async fn run(root: &Path, report: &mut BenchReport) -> anyhow::Result<()> {
    let registry = match LocalRegistry::start(None) {
        Ok(registry) => registry,
        Err(error) => {
            let note = format!("cold and warm image starts not measured: {error}");
            println!("\n{note}");
            report.notes.push(note);
            return Ok(());
        }
    };
    let reference = push_image(&registry, root)?;
    let mut cold = Vec::with_capacity(SAMPLES);
    let mut last = None;
    for sample in 0..SAMPLES {
        let runtime = runtime(root, sample).await?;
        cold.push(start_once(&runtime, &reference, sample * 1000).await?);
        last = Some(runtime);
    }
    let runtime = last.context("no cold sample ran")?;
    let mut warm = Vec::with_capacity(SAMPLES);
    for sample in 0..SAMPLES {
        warm.push(start_once(&runtime, &reference, 100_000 + sample).await?);
    }
    let result = ImageStartResult {
        image_mib: PAYLOAD_MIB,
        samples: SAMPLES,
        cold_start_ms: Spread::of(cold),
        warm_start_ms: Spread::of(warm),
    };
    print_table(&result);
    report.image_starts.push(result);
    Ok(())
}

/// Writes the image's layout and pushes it; returns its reference.
fn push_image(registry: &LocalRegistry, root: &Path) -> anyhow::Result<String> {
    let mut payload = vec![0u8; PAYLOAD_MIB << 20];
    StdRng::seed_from_u64(7).fill_bytes(&mut payload);
    registry
        .push_busybox_image(
            &root.join("image-layout"),
            &[("data/payload", &payload, 0o644)],
            "bench:v1",
        )
        .context("writing the image and pushing it with skopeo")
}

/// A runc runtime with an empty image cache of its own.
async fn runtime(root: &Path, sample: usize) -> anyhow::Result<RuncRuntime> {
    let worker = format!("bench-image-{sample}");
    let work = root.join(&worker);
    let mut config = RuncConfig::new(work.join("runc"), &worker);
    config.images = work.join("images");
    Ok(RuncRuntime::new(config).await?)
}

/// Starts one container of `reference` running `busybox true`; returns the start call's
/// ms.
async fn start_once(runtime: &RuncRuntime, reference: &str, n: usize) -> anyhow::Result<f64> {
    let worker = WorkerId::new("bench-image")?;
    // The image holds busybox alone, without a link per applet.
    let command = ["busybox", "true"];
    let alone = crate::start::start_and_wait(runtime, &worker, n, Some(reference), &command);
    Ok(alone.await?.started_ms)
}

fn print_table(result: &ImageStartResult) {
    println!(
        "\nImage starts through runc ({} MiB image from a loopback registry, {} samples each)",
        result.image_mib, result.samples
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["start", "p50 ms", "p99 ms", "max ms"]);
    for (name, spread) in [
        ("cold (pull)", &result.cold_start_ms),
        ("warm (cached)", &result.warm_start_ms),
    ] {
        table.add_row([
            name.to_owned(),
            format!("{:.1}", spread.p50),
            format!("{:.1}", spread.p99),
            format!("{:.1}", spread.max),
        ]);
    }
    println!("{table}");
}
