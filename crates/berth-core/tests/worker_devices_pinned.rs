//! A worker's per-device accounting, pinned: booking and crediting shares (all or nothing),
//! accounting what its containers own, the free GPU count as the wholly free healthy
//! devices, the slots the planner books from, and the device list a registration ends with.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use berth_core::gpu_fit::DeviceSlot;
use berth_core::{
    DeviceError, DeviceShare, GPU_MILLI, GpuDevice, GpuType, PoolAttributes, PoolName, Resources,
    RuntimeName, Worker, WorkerGpu, WorkerId, WorkerRegistration, WorkerStatus,
};

fn device(index: u32, healthy: bool) -> GpuDevice {
    GpuDevice {
        index,
        gpu_type: GpuType::A10G,
        memory_mib: 0,
        uuid: None,
        healthy,
    }
}

/// A worker whose devices (index, healthy, free milli-GPUs) are as given, its free GPU
/// count `count` (as a store may hold it, not recomputed).
fn worker(devices: &[(u32, bool, u32)], count: u32) -> Worker {
    Worker {
        images: Vec::new(),
        id: WorkerId::new("w").unwrap(),
        pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(8000, 8192, devices.len() as u32),
        free: Resources::new(8000, 8192, count),
        gpu_type: Some(GpuType::A10G),
        gpus: devices
            .iter()
            .map(|&(index, healthy, free_milli)| WorkerGpu {
                device: device(index, healthy),
                free_milli,
            })
            .collect(),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn free_milli(worker: &Worker) -> Vec<u32> {
    worker.gpus.iter().map(|g| g.free_milli).collect()
}

fn share(index: u32, milli: u32) -> DeviceShare {
    DeviceShare { index, milli }
}

#[test]
fn booking_takes_shares_from_healthy_devices_all_or_nothing() {
    let mut w = worker(&[(0, true, 1000), (1, true, 1000), (2, false, 1000)], 0);
    assert!(w.book_devices(&[DeviceShare::whole(0), share(1, 300)]));
    assert_eq!(free_milli(&w), [0, 700, 1000]);
    // The free count is the wholly free healthy devices: none (device 2 is unhealthy).
    assert_eq!(w.free.gpu_count, 0);
    assert!(w.book_devices(&[share(1, 700)]));
    assert_eq!(free_milli(&w), [0, 0, 1000]);
    let before = w.clone();
    // More than a device has free, an unhealthy device, an unknown device: refused, and
    // nothing changed (not even the shares before the bad one).
    for shares in [
        vec![share(1, 1)],
        vec![DeviceShare::whole(2)],
        vec![share(5, 10)],
    ] {
        assert!(!w.book_devices(&shares), "{shares:?}");
        assert_eq!(w, before);
    }
    let mut w = worker(&[(0, true, 1000), (1, true, 500)], 1);
    assert!(!w.book_devices(&[share(0, 100), share(1, 600)]));
    assert_eq!(free_milli(&w), [1000, 500]);
    assert_eq!(w.free.gpu_count, 1);
    // Nothing booked is fine, and recounts.
    let mut w = worker(&[(0, true, 1000), (1, true, 1000)], 0);
    assert!(w.book_devices(&[]));
    assert_eq!(w.free.gpu_count, 2);
}

#[test]
fn crediting_gives_shares_back_never_beyond_the_whole() {
    let mut w = worker(&[(0, true, 0), (1, true, 400), (2, false, 0)], 0);
    assert!(w.credit_devices(&[DeviceShare::whole(0), share(1, 100)]));
    assert_eq!(free_milli(&w), [1000, 500, 0]);
    assert_eq!(w.free.gpu_count, 1);
    // Exactly to the whole is fine; an unhealthy device is credited but not counted free.
    assert!(w.credit_devices(&[share(1, 500), DeviceShare::whole(2)]));
    assert_eq!(free_milli(&w), [1000, 1000, 1000]);
    assert_eq!(w.free.gpu_count, 2);
    // Beyond the whole: refused, nothing changed.
    let mut w = worker(&[(0, true, 0), (1, true, 400)], 0);
    let before = w.clone();
    assert!(!w.credit_devices(&[DeviceShare::whole(0), share(1, 601)]));
    assert_eq!(w, before);
    // A share on a device it no longer lists is dropped.
    assert!(w.credit_devices(&[share(7, 1000), share(1, 600)]));
    assert_eq!(free_milli(&w), [0, 1000]);
    assert_eq!(w.free.gpu_count, 1);
}

#[test]
fn accounting_owned_shares_sets_each_device_to_the_whole_less_them() {
    let mut w = worker(
        &[(0, true, 0), (1, true, 0), (2, false, 0), (3, true, 17)],
        4,
    );
    assert_eq!(
        w.account_owned_devices(&[share(1, 250), share(1, 250), share(2, 1000), share(9, 5)]),
        Ok(())
    );
    assert_eq!(free_milli(&w), [1000, 500, 0, 1000]);
    // Devices 0 and 3 are wholly free and healthy.
    assert_eq!(w.free.gpu_count, 2);
    // Shares beyond a device's whole: the first such device, nothing changed.
    let before = w.clone();
    assert_eq!(
        w.account_owned_devices(&[share(0, 600), share(3, 600), share(3, 600)]),
        Err(3)
    );
    assert_eq!(w, before);
}

#[test]
fn a_worker_without_a_device_list_keeps_its_count() {
    let mut w = worker(&[], 2);
    w.total.gpu_count = 3;
    assert!(w.book_devices(&[]));
    assert!(w.credit_devices(&[]));
    assert_eq!(w.account_owned_devices(&[]), Ok(()));
    assert_eq!(w.free.gpu_count, 2);
    // Its slots are devices 0 to total - 1, the first `free` of them wholly free.
    assert_eq!(
        w.device_slots(),
        [
            DeviceSlot {
                index: 0,
                free: GPU_MILLI
            },
            DeviceSlot {
                index: 1,
                free: GPU_MILLI
            },
            DeviceSlot { index: 2, free: 0 },
        ]
    );
}

#[test]
fn slots_are_the_healthy_devices_by_index() {
    let w = worker(&[(3, true, 250), (0, false, 1000), (1, true, 1000)], 1);
    assert!(w.has_gpus());
    assert_eq!(
        w.device_slots(),
        [
            DeviceSlot {
                index: 1,
                free: 1000
            },
            DeviceSlot {
                index: 3,
                free: 250
            },
        ]
    );
    // A free amount beyond the whole counts as the whole.
    let w = worker(&[(0, true, 1500)], 1);
    assert_eq!(
        w.device_slots(),
        [DeviceSlot {
            index: 0,
            free: 1000
        }]
    );
    // No GPUs: no type, or a count of zero.
    let mut w = worker(&[(0, true, 1000)], 1);
    w.gpu_type = None;
    assert!(!w.has_gpus());
    assert_eq!(w.device_slots(), []);
    let mut w = worker(&[(0, true, 1000)], 1);
    w.total.gpu_count = 0;
    assert!(!w.has_gpus());
    assert_eq!(w.device_slots(), []);
}

fn registration(
    gpus: u32,
    gpu_type: Option<GpuType>,
    devices: Vec<GpuDevice>,
) -> WorkerRegistration {
    WorkerRegistration {
        id: WorkerId::new("w").unwrap(),
        pool: PoolAttributes::plain(PoolName::new("p").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(8000, 8192, gpus),
        gpu_type,
        devices,
        runtime: RuntimeName::PROCESS,
    }
}

#[test]
fn a_registration_lists_each_gpu_once_of_the_workers_type() {
    // Counted, not listed: devices 0 to count - 1.
    let done = registration(2, Some(GpuType::T4), Vec::new())
        .with_devices()
        .unwrap();
    assert_eq!(done.devices, GpuDevice::unlisted(&GpuType::T4, 2));
    // Listed: kept as listed.
    let listed = vec![device(4, true), device(2, false)];
    let done = registration(2, Some(GpuType::A10G), listed.clone())
        .with_devices()
        .unwrap();
    assert_eq!(done.devices, listed);
    // Another type than the worker's.
    assert!(matches!(
        registration(1, Some(GpuType::T4), vec![device(0, true)]).with_devices(),
        Err(DeviceError::MixedTypes { index: 0, .. })
    ));
    // Too many or too few.
    assert_eq!(
        registration(
            1,
            Some(GpuType::A10G),
            vec![device(0, true), device(1, true)]
        )
        .with_devices()
        .unwrap_err(),
        DeviceError::CountMismatch {
            count: 1,
            listed: 2
        }
    );
    assert_eq!(
        registration(3, Some(GpuType::A10G), vec![device(0, true)])
            .with_devices()
            .unwrap_err(),
        DeviceError::CountMismatch {
            count: 3,
            listed: 1
        }
    );
    // Twice the same index.
    assert_eq!(
        registration(
            2,
            Some(GpuType::A10G),
            vec![device(0, true), device(0, true)]
        )
        .with_devices()
        .unwrap_err(),
        DeviceError::DuplicateIndex(0)
    );
    // No GPU type: no devices, whatever the count.
    let done = registration(2, None, Vec::new()).with_devices().unwrap();
    assert!(done.devices.is_empty());
    assert_eq!(
        registration(0, None, vec![device(0, true)])
            .with_devices()
            .unwrap_err(),
        DeviceError::CountMismatch {
            count: 0,
            listed: 1
        }
    );
}

#[test]
fn a_registered_worker_starts_with_its_lowest_healthy_devices_free() {
    let devices = vec![
        device(3, true),
        device(0, false),
        device(1, true),
        device(2, true),
    ];
    let reg = registration(4, Some(GpuType::A10G), devices);
    let w = reg.clone().into_worker(Resources::new(8000, 8192, 2), 5, 6);
    let state: Vec<(u32, u32)> = w
        .gpus
        .iter()
        .map(|g| (g.device.index, g.free_milli))
        .collect();
    // Sorted by index; the unhealthy device 0 is skipped; 1 and 2 free, 3 booked.
    assert_eq!(state, [(0, 0), (1, 1000), (2, 1000), (3, 0)]);
    assert_eq!(w.free.gpu_count, 2);
    assert_eq!((w.version, w.epoch), (5, 6));
    // A count beyond the healthy devices frees them all and counts what is there.
    let w = reg.clone().into_worker(Resources::new(8000, 8192, 9), 1, 1);
    let free: Vec<u32> = w.gpus.iter().map(|g| g.free_milli).collect();
    assert_eq!(free, [0, 1000, 1000, 1000]);
    assert_eq!(w.free.gpu_count, 3);
    let w = reg.into_worker(Resources::new(8000, 8192, 0), 1, 1);
    assert!(w.gpus.iter().all(|g| g.free_milli == 0));
    assert_eq!(w.free.gpu_count, 0);
}
