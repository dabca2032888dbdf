//! The contract on GPU devices: the commit books device shares inside its atomic step (a
//! whole device once, fractions of one device up to its whole, never an unhealthy device),
//! a release credits exactly the shares it held, once, a re-registration keeps what the
//! devices hold, and concurrent clients never overbook a device.

use super::{Connect, assert_clean, cid, committed, group, now, open, wid};
use berth_core::*;
use berth_store::prelude::*;
use berth_store::*;
use std::sync::Arc;

/// A worker of two A10G devices (or `devices` as given), 16 cores and 64 GiB.
fn gpu_worker(id: &str, devices: Vec<GpuDevice>) -> WorkerRegistration {
    WorkerRegistration {
        id: wid(id),
        pool: PoolAttributes::plain(PoolName::new("gpu").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(16_000, 65_536, 2),
        gpu_type: Some(GpuType::A10G),
        devices,
        runtime: RuntimeName::PROCESS,
    }
}

fn gpu_reservation(container: &str, whole: u32, devices: Vec<DeviceShare>) -> Reservation {
    Reservation {
        container: cid(container),
        attempt: AttemptId(format!("a-{container}")),
        resources: Resources::new(100, 100, whole),
        devices,
        payload: Payload::default(),
    }
}

fn share(index: u32, milli: u32) -> DeviceShare {
    DeviceShare { index, milli }
}

/// Each device's free milli-GPUs, by index.
async fn device_free(store: &dyn Store, worker: &str) -> Vec<(u32, u32)> {
    let worker = store.worker(&wid(worker)).await.unwrap().unwrap();
    let mut free: Vec<(u32, u32)> = worker
        .gpus
        .iter()
        .filter(|g| g.device.healthy)
        .map(|g| (g.device.index, g.free_milli))
        .collect();
    free.sort_unstable();
    free
}

async fn free_gpus(store: &dyn Store, worker: &str) -> u32 {
    let worker = store.worker(&wid(worker)).await.unwrap().unwrap();
    worker.free.gpu_count
}

pub async fn devices_are_booked_once_and_credited_exactly(connect: impl Connect) {
    let store = open(&connect, "devices").await;
    store
        .register_worker(&gpu_worker("g1", Vec::new()))
        .await
        .unwrap();
    assert_eq!(device_free(&*store, "g1").await, [(0, 1000), (1, 1000)]);
    let whole = gpu_reservation("whole", 1, vec![DeviceShare::whole(0)]);
    let out = store.commit(&[group("g1", vec![whole])]).await.unwrap();
    assert!(committed(&out[0]), "{out:?}");
    assert_eq!(device_free(&*store, "g1").await, [(0, 0), (1, 1000)]);
    assert_eq!(free_gpus(&*store, "g1").await, 1);

    // Device 0 is taken whole: neither another whole booking nor a fraction gets it.
    for (name, res) in [
        (
            "again",
            gpu_reservation("again", 1, vec![DeviceShare::whole(0)]),
        ),
        ("sliver", gpu_reservation("sliver", 0, vec![share(0, 1)])),
    ] {
        let out = store.commit(&[group("g1", vec![res])]).await.unwrap();
        assert!(!committed(&out[0]), "{name} booked a taken device: {out:?}");
    }
    // Two halves of device 1 in one group fill it; a third share finds no room.
    let halves = vec![
        gpu_reservation("half-a", 0, vec![share(1, 500)]),
        gpu_reservation("half-b", 0, vec![share(1, 500)]),
    ];
    let out = store.commit(&[group("g1", halves)]).await.unwrap();
    assert!(committed(&out[0]), "{out:?}");
    assert_eq!(device_free(&*store, "g1").await, [(0, 0), (1, 0)]);
    assert_eq!(free_gpus(&*store, "g1").await, 0);
    let more = gpu_reservation("more", 0, vec![share(1, 1)]);
    assert!(!committed(
        &store.commit(&[group("g1", vec![more])]).await.unwrap()[0]
    ));

    // A release credits exactly its share, once; the device is whole again only when all
    // its shares are back.
    let released = store
        .release(&wid("g1"), &cid("half-a"), None, None)
        .await
        .unwrap();
    assert!(matches!(released, ReleaseOutcome::Released { .. }));
    assert_eq!(device_free(&*store, "g1").await, [(0, 0), (1, 500)]);
    let twice = store
        .release(&wid("g1"), &cid("half-a"), None, None)
        .await
        .unwrap();
    assert_eq!(twice, ReleaseOutcome::NotOwned);
    assert_eq!(device_free(&*store, "g1").await, [(0, 0), (1, 500)]);
    assert_eq!(free_gpus(&*store, "g1").await, 0);
    store
        .release(&wid("g1"), &cid("half-b"), None, None)
        .await
        .unwrap();
    assert_eq!(device_free(&*store, "g1").await, [(0, 0), (1, 1000)]);
    assert_eq!(free_gpus(&*store, "g1").await, 1);
    let owned = store.owned(&wid("g1")).await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].devices, [DeviceShare::whole(0)]);
    assert_clean(&*store).await;
}

pub async fn an_unhealthy_device_is_never_booked(connect: impl Connect) {
    let store = open(&connect, "unhealthy").await;
    let mut devices = GpuDevice::unlisted(&GpuType::A10G, 2);
    devices[1].healthy = false;
    devices[0].uuid = Some("GPU-0a".to_owned());
    let worker = store
        .register_worker(&gpu_worker("g1", devices.clone()))
        .await
        .unwrap();
    assert_eq!(worker.free.gpu_count, 1);
    let stored = store.worker(&wid("g1")).await.unwrap().unwrap();
    let listed: Vec<GpuDevice> = stored.gpus.iter().map(|g| g.device.clone()).collect();
    assert_eq!(listed, devices, "the devices round-trip through the store");
    for res in [
        gpu_reservation("whole", 1, vec![DeviceShare::whole(1)]),
        gpu_reservation("part", 0, vec![share(1, 100)]),
        gpu_reservation("absent", 0, vec![share(7, 100)]),
    ] {
        let out = store.commit(&[group("g1", vec![res])]).await.unwrap();
        assert!(!committed(&out[0]), "{out:?}");
    }
    let ok = gpu_reservation("ok", 1, vec![DeviceShare::whole(0)]);
    assert!(committed(
        &store.commit(&[group("g1", vec![ok])]).await.unwrap()[0]
    ));
    assert_clean(&*store).await;
}

pub async fn reregistration_keeps_what_devices_hold(connect: impl Connect) {
    let store = open(&connect, "rereg-devices").await;
    store
        .register_worker(&gpu_worker("g1", Vec::new()))
        .await
        .unwrap();
    let part = gpu_reservation("part", 0, vec![share(0, 300)]);
    assert!(committed(
        &store.commit(&[group("g1", vec![part])]).await.unwrap()[0]
    ));
    let again = store
        .register_worker(&gpu_worker("g1", Vec::new()))
        .await
        .unwrap();
    assert_eq!(again.free.gpu_count, 1);
    assert_eq!(device_free(&*store, "g1").await, [(0, 700), (1, 1000)]);
    assert_clean(&*store).await;
}

pub async fn reservations_must_name_their_devices(connect: impl Connect) {
    let store = open(&connect, "bad-devices").await;
    store
        .register_worker(&gpu_worker("g1", Vec::new()))
        .await
        .unwrap();
    for res in [
        gpu_reservation("none", 1, Vec::new()),
        gpu_reservation("whole-as-fraction", 0, vec![DeviceShare::whole(0)]),
        gpu_reservation(
            "twice",
            2,
            vec![DeviceShare::whole(0), DeviceShare::whole(0)],
        ),
        gpu_reservation("zero", 0, vec![share(0, 0)]),
    ] {
        let outcome = store.commit(&[group("g1", vec![res.clone()])]).await;
        assert!(
            matches!(outcome, Err(StoreError::InvalidArgument(_))),
            "{res:?}: {outcome:?}"
        );
    }
    assert_eq!(device_free(&*store, "g1").await, [(0, 1000), (1, 1000)]);
    let mut mismatch = gpu_worker("g2", GpuDevice::unlisted(&GpuType::A10G, 3));
    mismatch.total.gpu_count = 2;
    assert!(store.register_worker(&mismatch).await.is_err());
}

/// Clients commit and release fractions and whole devices of two workers concurrently; at
/// the end no device is booked beyond its whole and the check is clean.
pub async fn concurrent_device_commits_never_overbook(connect: impl Connect) {
    let cfg = super::config("device-hammer");
    let stores: Vec<Arc<dyn Store>> = vec![connect(cfg.clone()).await, connect(cfg).await];
    for w in ["g0", "g1"] {
        stores[0]
            .register_worker(&gpu_worker(w, Vec::new()))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for task in 0..12usize {
        let store = stores[task % 2].clone();
        handles.push(tokio::spawn(async move {
            let mut booked = 0;
            for round in 0..60usize {
                let worker = ["g0", "g1"][(task + round) % 2];
                let name = format!("t{task}-r{round}");
                let device = ((task * 3 + round) % 2) as u32;
                let res = if round % 5 == 0 {
                    gpu_reservation(&name, 1, vec![DeviceShare::whole(device)])
                } else {
                    let milli = 100 + ((task * 37 + round * 91) % 500) as u32;
                    gpu_reservation(&name, 0, vec![share(device, milli)])
                };
                let out = store.commit(&[group(worker, vec![res])]).await.unwrap();
                if committed(&out[0]) {
                    booked += 1;
                    if round % 2 == 0 {
                        store
                            .release(&wid(worker), &cid(&name), None, None)
                            .await
                            .unwrap();
                    }
                }
            }
            booked
        }));
    }
    let mut booked = 0;
    for handle in handles {
        booked += handle.await.unwrap();
    }
    assert!(booked > 0, "some commits must succeed");
    let violations = stores[0].check(now()).await.unwrap();
    assert!(violations.is_empty(), "violations: {violations:?}");
}
