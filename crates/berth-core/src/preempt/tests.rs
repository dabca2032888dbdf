#![allow(clippy::unwrap_used)] // Tests may unwrap.

use super::*;
use crate::{
    GpuDevice, GpuPreference, GpuType, Payload, PoolAttributes, PoolName, RuntimeName, WorkerGpu,
    WorkerStatus,
};
use proptest::prelude::*;

/// A worker of 8 cores, 8 GiB and `gpus` A10G devices, with `free` of it not booked and
/// its devices' free milli-GPUs as given (all whole when `device_free` is empty).
fn worker(id: &str, free: Resources, gpus: u32, device_free: &[u32]) -> Worker {
    let slots: Vec<u32> = if device_free.is_empty() {
        vec![1000; gpus as usize]
    } else {
        device_free.to_vec()
    };
    Worker {
        images: Vec::new(),
        id: WorkerId::new(id).unwrap(),
        pool: PoolAttributes::plain(PoolName::new("default").unwrap()),
        status: WorkerStatus::Available,
        total: Resources::new(8000, 8192, gpus),
        free,
        gpu_type: (gpus > 0).then_some(GpuType::A10G),
        gpus: slots
            .iter()
            .zip(0..)
            .map(|(&free_milli, index)| WorkerGpu {
                device: GpuDevice {
                    index,
                    gpu_type: GpuType::A10G,
                    memory_mib: 0,
                    uuid: None,
                    healthy: true,
                },
                free_milli,
            })
            .collect(),
        runtime: RuntimeName::PROCESS,
        version: 1,
        epoch: 1,
    }
}

fn request(cpu: u64, gpus: u32, priority: i32) -> ContainerRequest {
    ContainerRequest {
        id: ContainerId::new("preemptor").unwrap(),
        tenant: "t".into(),
        resources: Resources::new(cpu, 1024, gpus),
        gpu_fraction_milli: None,
        gpu: GpuPreference::Any,
        pool_selector: None,
        preemptible: false,
        priority,
        submitted_at_ms: 0,
        payload: Payload::default(),
        fallback: Vec::new(),
        max_retries: 0,
    }
}

fn running(id: &str, worker: &str, cpu: u64, priority: i32) -> Running {
    Running {
        container: ContainerId::new(id).unwrap(),
        attempt: AttemptId(format!("a-{id}")),
        worker: WorkerId::new(worker).unwrap(),
        priority,
        preemptible: true,
        resources: Resources::new(cpu, 1024, 0),
        devices: Vec::new(),
    }
}

fn names(p: &Preemption) -> Vec<String> {
    p.victims.iter().map(|v| v.container.to_string()).collect()
}

#[test]
fn only_lower_priority_preemptible_containers_are_victims() {
    let w = worker("w", Resources::new(0, 4096, 0), 0, &[]);
    let mut stubborn = running("stubborn", "w", 4000, 0);
    stubborn.preemptible = false;
    let equal = running("equal", "w", 4000, 5);
    let ask = request(2000, 0, 5);
    assert_eq!(
        choose(
            &ask,
            std::slice::from_ref(&w),
            &[stubborn.clone(), equal.clone()]
        ),
        None
    );
    let lower = running("lower", "w", 4000, 4);
    let chosen = choose(&ask, &[w], &[stubborn, equal, lower]).unwrap();
    assert_eq!(names(&chosen), ["lower"]);
    assert_eq!(chosen.worker.as_str(), "w");
}

#[test]
fn the_fewest_victims_win_over_lower_priorities() {
    // Two small containers of priority 0 or one large one of priority 3.
    let w = worker("w", Resources::new(0, 5120, 0), 0, &[]);
    let all = [
        running("small-a", "w", 2000, 0),
        running("small-b", "w", 2000, 0),
        running("large", "w", 4000, 3),
    ];
    let chosen = choose(&request(4000, 0, 9), &[w], &all).unwrap();
    assert_eq!(names(&chosen), ["large"]);
}

#[test]
fn among_as_many_victims_the_lowest_priorities_win() {
    let w = worker("w", Resources::new(0, 4096, 0), 0, &[]);
    let all = [
        running("p2", "w", 2000, 2),
        running("p1", "w", 2000, 1),
        running("p3", "w", 2000, 3),
        running("p0", "w", 2000, 0),
    ];
    let chosen = choose(&request(4000, 0, 9), &[w], &all).unwrap();
    assert_eq!(names(&chosen), ["p0", "p1"]);
}

#[test]
fn the_worker_with_the_cheapest_victims_is_chosen() {
    let a = worker("a", Resources::new(0, 4096, 0), 0, &[]);
    let b = worker("b", Resources::new(2000, 4096, 0), 0, &[]);
    let all = [
        running("on-a", "a", 8000, 1),
        running("on-b-1", "b", 2000, 0),
        running("on-b-2", "b", 4000, 0),
    ];
    // On b one victim of priority 0 frees enough with what is free; on a, one of priority 1.
    let chosen = choose(&request(4000, 0, 9), &[a, b], &all).unwrap();
    assert_eq!(chosen.worker.as_str(), "b");
    assert_eq!(names(&chosen), ["on-b-1"]);
}

#[test]
fn a_gpu_request_gets_the_device_its_victim_frees() {
    let w = worker("w", Resources::new(6000, 6144, 0), 2, &[0, 0]);
    let mut low = running("low", "w", 1000, 1);
    low.devices = vec![DeviceShare {
        index: 1,
        milli: 1000,
    }];
    let mut high = running("high", "w", 1000, 3);
    high.devices = vec![DeviceShare {
        index: 0,
        milli: 1000,
    }];
    let chosen = choose(&request(1000, 1, 5), &[w], &[high, low]).unwrap();
    assert_eq!(names(&chosen), ["low"]);
    assert_eq!(
        chosen.devices,
        [DeviceShare {
            index: 1,
            milli: 1000
        }]
    );
}

#[test]
fn nothing_is_chosen_when_even_every_victim_leaves_too_little() {
    let w = worker("w", Resources::new(0, 4096, 0), 0, &[]);
    let all = [running("a", "w", 2000, 0), running("b", "w", 2000, 0)];
    assert_eq!(choose(&request(6000, 0, 9), &[w], &all), None);
}

#[test]
fn the_reason_names_the_preemptor_and_the_worker() {
    let chosen = Preemption {
        worker: WorkerId::new("w1").unwrap(),
        victims: Vec::new(),
        devices: Vec::new(),
    };
    assert_eq!(
        chosen.reason(&request(1000, 0, 7)),
        "by preemptor (priority 7) on worker w1"
    );
}

#[test]
fn subsets_are_every_combination_once() {
    let all: Vec<Vec<usize>> = subsets(4, 2).collect();
    assert_eq!(
        all,
        [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]].map(|s| s.to_vec())
    );
    assert_eq!(subsets(3, 3).count(), 1);
    assert_eq!(subsets(2, 3).count(), 0);
}

/// Every subset of `0..n` (as index lists), by brute force.
fn every_subset(n: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

proptest! {
    /// On one worker, against a brute force over every subset of the candidates: a chosen
    /// set holds only containers the request may preempt and makes room; no smaller set of
    /// them would; none of its size ranks lower; and nothing is chosen only when no set of
    /// them makes room.
    #[test]
    fn the_choice_is_the_smallest_and_cheapest_set_that_makes_room(
        containers in proptest::collection::vec((1u64..5, 0i32..6, any::<bool>()), 0..7),
        spare in 0u64..3,
        ask_cores in 1u64..8,
        ask_priority in 0i32..7,
    ) {
        let mut running_on = Vec::new();
        let mut used = 0;
        for (i, (cores, priority, preemptible)) in containers.iter().enumerate() {
            if used + cores * 1000 > 8000 - spare * 1000 {
                break;
            }
            used += cores * 1000;
            let mut r = running(&format!("c{i}"), "w", cores * 1000, *priority);
            r.preemptible = *preemptible;
            running_on.push(r);
        }
        let w = worker("w", Resources::new(8000 - used, 8192, 0), 0, &[]);
        let ask = request(ask_cores * 1000, 0, ask_priority);
        let eligible: Vec<&Running> =
            running_on.iter().filter(|r| may_preempt(&ask, r)).collect();
        let fitting: Vec<Vec<Running>> = every_subset(eligible.len())
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().map(|&i| eligible[i].clone()).collect::<Vec<_>>())
            .filter(|set| room_after(&ask, &w, set).is_some())
            .collect();
        match choose(&ask, std::slice::from_ref(&w), &running_on) {
            None => prop_assert!(fitting.is_empty()),
            Some(chosen) => {
                prop_assert!(chosen.victims.iter().all(|v| may_preempt(&ask, v)));
                prop_assert!(room_after(&ask, &w, &chosen.victims).is_some());
                let best = fitting.iter().map(|set| rank(set)).min().unwrap();
                prop_assert_eq!(rank(&chosen.victims), best);
            }
        }
    }
}
