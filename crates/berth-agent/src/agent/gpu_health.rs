//! Following the health of detected GPUs after registration: `nvidia-smi` runs again every
//! [`crate::AgentConfig::gpu_check_every`]; when a device's health changes, the worker
//! registers again with the new health. The scheduler then books nothing more on an
//! unhealthy device (and books a recovered one again), and the registration's answer
//! names the containers that hold a share of an unhealthy device: they are reported
//! (logged here and by the server, and listed by `GET /v1/workers/{id}`), not stopped, since
//! whether a container can go on without its GPU is its owner's call.
//!
//! A check that cannot run (`nvidia-smi` missing, failing or hanging) changes nothing: it
//! is logged and counted, and the next check tries again. Declaring devices unhealthy
//! because the query failed would take a whole worker's GPUs away on one slow call.

use super::Inner;
use berth_core::GpuDevice;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// The registered devices with the health of `now`, if any device's health differs.
/// Devices are matched by UUID where both sides know it, else by index; a registered
/// device `now` does not list (fallen off the bus, or its UUID changed) is unhealthy. A
/// device `now` lists beyond the registered ones is ignored: a worker's devices are fixed
/// by its registration, and a new one takes a restart of the agent.
pub(crate) fn health_changes(
    registered: &[GpuDevice],
    now: &[GpuDevice],
) -> Option<Vec<GpuDevice>> {
    let next: Vec<GpuDevice> = registered
        .iter()
        .map(|device| GpuDevice {
            healthy: now
                .iter()
                .find(|seen| same_device(device, seen))
                .is_some_and(|seen| seen.healthy),
            ..device.clone()
        })
        .collect();
    let changed = next
        .iter()
        .zip(registered)
        .any(|(after, before)| after.healthy != before.healthy);
    changed.then_some(next)
}

fn same_device(registered: &GpuDevice, seen: &GpuDevice) -> bool {
    match (&registered.uuid, &seen.uuid) {
        (Some(a), Some(b)) => a == b,
        _ => registered.index == seen.index,
    }
}

impl Inner {
    /// Checks the GPUs' health every [`crate::AgentConfig::gpu_check_every`] until `stop`
    /// fires; returns at once when the devices are not detected.
    pub(crate) async fn gpu_health_loop(self: Arc<Self>, stop: CancellationToken) {
        if self.config.capacity.gpus.probe().is_none() {
            return;
        }
        let mut ticker = tokio::time::interval(self.config.gpu_check_every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let gpus = self.config.capacity.gpus.clone();
            let probed = tokio::select! {
                () = stop.cancelled() => return,
                probed = tokio::task::spawn_blocking(move || gpus.probe()) => probed,
            };
            let now = match probed {
                Ok(Some(Ok(devices))) => devices,
                Ok(Some(Err(err))) => {
                    crate::metrics::gpu_check_failed();
                    if !failing {
                        tracing::warn!(error = %err,
                            "the GPU health check failed; the devices keep their last known health");
                    }
                    failing = true;
                    continue;
                }
                Ok(None) => return,
                Err(err) => {
                    crate::metrics::gpu_check_failed();
                    tracing::error!(error = %err, "the GPU health check task failed");
                    continue;
                }
            };
            failing = false;
            let registered = self.registration.lock().devices.clone();
            if let Some(next) = health_changes(&registered, &now) {
                self.apply_gpu_health(&registered, next).await;
            }
        }
    }

    /// Registers again with the devices' new health, and reports the containers on
    /// unhealthy devices.
    async fn apply_gpu_health(&self, before: &[GpuDevice], next: Vec<GpuDevice>) {
        for (old, new) in before.iter().zip(&next) {
            if old.healthy && !new.healthy {
                tracing::warn!(
                    index = new.index,
                    uuid = new.uuid.as_deref().unwrap_or("unknown"),
                    "GPU device became unhealthy: it gets no more containers"
                );
            } else if !old.healthy && new.healthy {
                tracing::info!(
                    index = new.index,
                    uuid = new.uuid.as_deref().unwrap_or("unknown"),
                    "GPU device is healthy again: it takes containers again"
                );
            }
        }
        crate::metrics::gpus_unhealthy(next.iter().filter(|d| !d.healthy).count());
        self.registration.lock().devices = next;
        let Some(lease) = self.register_again("the GPUs' health changed").await else {
            return;
        };
        for container in &lease.on_unhealthy_gpus {
            tracing::warn!(%container, "this container holds a GPU that is unhealthy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::GpuType;

    fn device(index: u32, uuid: Option<&str>, healthy: bool) -> GpuDevice {
        GpuDevice {
            index,
            gpu_type: GpuType::A10G,
            memory_mib: 24_576,
            uuid: uuid.map(str::to_owned),
            healthy,
        }
    }

    #[test]
    fn the_same_health_is_no_change() {
        let registered = [
            device(0, Some("GPU-a"), true),
            device(1, Some("GPU-b"), false),
        ];
        assert_eq!(health_changes(&registered, &registered), None);
    }

    #[test]
    fn a_device_turning_unhealthy_or_healthy_again_is_a_change() {
        let registered = [
            device(0, Some("GPU-a"), true),
            device(1, Some("GPU-b"), true),
        ];
        let now = [
            device(0, Some("GPU-a"), true),
            device(1, Some("GPU-b"), false),
        ];
        let next = health_changes(&registered, &now).expect("a change");
        assert_eq!(next, now);
        let back = health_changes(&now, &registered).expect("a change");
        assert_eq!(back, registered);
    }

    #[test]
    fn a_missing_device_is_unhealthy_and_a_new_one_is_ignored() {
        let registered = [
            device(0, Some("GPU-a"), true),
            device(1, Some("GPU-b"), true),
        ];
        let now = [
            device(0, Some("GPU-a"), true),
            device(2, Some("GPU-c"), true),
        ];
        let next = health_changes(&registered, &now).expect("a change");
        assert_eq!(
            next,
            [
                device(0, Some("GPU-a"), true),
                device(1, Some("GPU-b"), false)
            ]
        );
    }

    #[test]
    fn uuids_match_devices_across_a_renumbering() {
        let registered = [
            device(0, Some("GPU-a"), true),
            device(1, Some("GPU-b"), true),
        ];
        let now = [
            device(0, Some("GPU-b"), true),
            device(1, Some("GPU-a"), false),
        ];
        let next = health_changes(&registered, &now).expect("a change");
        assert_eq!(
            next,
            [
                device(0, Some("GPU-a"), false),
                device(1, Some("GPU-b"), true)
            ]
        );
    }

    #[test]
    fn indices_match_devices_without_a_registered_uuid() {
        let registered = [device(0, None, true), device(1, None, true)];
        let now = [
            device(0, Some("GPU-x"), true),
            device(1, Some("GPU-y"), false),
        ];
        let next = health_changes(&registered, &now).expect("a change");
        assert_eq!(next, [device(0, None, true), device(1, None, false)]);
    }
}
