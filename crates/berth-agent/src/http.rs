//! [`HttpControl`]: the [`Control`] contract over the server's HTTP API, through
//! [`berth_api::Client`].

use crate::control::{
    Control, ControlError, Delivery, HeartbeatReply, Lease, Registration, ReportedState,
    StatusReport,
};
use async_trait::async_trait;
use berth_api as api;
use berth_core::AttemptId;
use berth_core::{ContainerId, DeviceShare, Payload, WorkerId, WorkerStatus};
use std::time::Duration;

/// The longest failure reason the server accepts, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// The server's worker-facing API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpControl {
    client: api::Client,
}

impl HttpControl {
    /// A control of the server behind `client`.
    pub fn new(client: api::Client) -> HttpControl {
        HttpControl { client }
    }

    /// The client it calls through.
    pub fn client(&self) -> &api::Client {
        &self.client
    }
}

/// Sorts a client error into what the agent does about it.
fn classify(err: api::ClientError) -> ControlError {
    let message = err.to_string();
    let stale = err
        .body()
        .is_some_and(|body| body.code == api::ErrorCode::StaleEpoch);
    match err.status() {
        Some(409) if stale => ControlError::StaleEpoch(message),
        Some(409) => ControlError::Conflict(message),
        Some(404) => ControlError::NotFound(message),
        // A timeout by the server or a proxy, or too many requests: try again.
        Some(408 | 429) => ControlError::Unavailable(message),
        Some(status) if (400..500).contains(&status) => ControlError::Refused { status, message },
        // 5xx, no answer, or an answer that could not be read.
        _ => ControlError::Unavailable(message),
    }
}

/// A failure reason the server accepts: without NUL characters, at most
/// [`MAX_REASON_BYTES`] bytes (cut at a character boundary).
fn wire_reason(reason: &str) -> String {
    let mut clean = reason.replace('\0', " ");
    if clean.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

fn wire_report(report: &StatusReport) -> api::StatusReport {
    let (state, exit_code, reason) = match &report.state {
        ReportedState::Running => (api::ReportedState::Running, None, None),
        ReportedState::Exited { exit_code } => (api::ReportedState::Exited, Some(*exit_code), None),
        ReportedState::Failed { reason } => {
            (api::ReportedState::Failed, None, Some(wire_reason(reason)))
        }
    };
    api::StatusReport {
        worker: report.worker.clone(),
        attempt: report.attempt.clone(),
        epoch: report.epoch,
        state,
        exit_code,
        reason,
        logs: report.logs.clone(),
    }
}

fn delivery(view: api::AssignmentView) -> Delivery {
    Delivery {
        id: view.delivery,
        container: view.container,
        attempt: view.attempt,
        resources: view.resources.into(),
        devices: view
            .devices
            .iter()
            .map(|d| DeviceShare {
                index: d.index,
                milli: d.milli,
            })
            .collect(),
        payload: Payload {
            image: view.image,
            command: view.command,
            env: view.env,
        },
        timeout: view.timeout_secs.map(Duration::from_secs),
    }
}

#[async_trait]
impl Control for HttpControl {
    async fn register(&self, registration: &Registration) -> Result<Lease, ControlError> {
        let total = registration.total;
        let mut body = api::RegisterWorker::new(
            registration.worker.clone(),
            &registration.pool,
            total.cpu_millicores,
            total.memory_mib,
        );
        body.gpu = registration.gpu_type.as_ref().map(|ty| api::WorkerGpu {
            devices: registration
                .devices
                .iter()
                .map(api::DeviceView::from)
                .collect(),
            count: total.gpu_count,
            gpu_type: ty.to_string(),
        });
        body.runtime = Some(registration.runtime.to_string());
        let registered = self.client.register(&body).await.map_err(classify)?;
        Ok(Lease {
            epoch: registered.worker.epoch,
            owned: registered
                .owned
                .into_iter()
                .map(|o| (o.container, o.attempt))
                .collect(),
            on_unhealthy_gpus: registered.on_unhealthy_gpus,
        })
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        epoch: u64,
        running: &[ContainerId],
    ) -> Result<HeartbeatReply, ControlError> {
        let beat = api::HeartbeatRequest {
            epoch,
            running: running.to_vec(),
        };
        let reply = self
            .client
            .heartbeat(worker, &beat)
            .await
            .map_err(classify)?;
        Ok(HeartbeatReply {
            cancel: reply.cancel,
            stop: reply.stop,
            lost: reply.status == WorkerStatus::Lost,
        })
    }

    async fn assignments(
        &self,
        worker: &WorkerId,
        epoch: u64,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ControlError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let views = self
            .client
            .assignments(worker, epoch, max, wait)
            .await
            .map_err(classify)?;
        Ok(views.into_iter().map(delivery).collect())
    }

    async fn ack(&self, worker: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ControlError> {
        self.client
            .ack(worker, epoch, delivery)
            .await
            .map_err(classify)
    }

    async fn release(
        &self,
        worker: &WorkerId,
        epoch: u64,
        container: &ContainerId,
        attempt: &AttemptId,
    ) -> Result<bool, ControlError> {
        let release = api::ReleaseRequest {
            epoch,
            container: container.clone(),
            attempt: attempt.clone(),
        };
        let reply = self
            .client
            .release(worker, &release)
            .await
            .map_err(classify)?;
        Ok(reply.released)
    }

    async fn report(
        &self,
        container: &ContainerId,
        report: &StatusReport,
    ) -> Result<(), ControlError> {
        let body = wire_report(report);
        self.client
            .report(container, &body)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn deregister(&self, worker: &WorkerId) -> Result<(), ControlError> {
        self.client.deregister(worker).await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_to_what_the_server_accepts() {
        assert_eq!(wire_reason("a\0b"), "a b");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = wire_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() >= MAX_REASON_BYTES - 1);
    }

    #[test]
    fn reports_carry_the_exit_code_or_the_reason() {
        let report = |state| StatusReport {
            worker: WorkerId::new("w").expect("id"),
            attempt: AttemptId("a".into()),
            epoch: 1,
            state,
            logs: vec!["x".into()],
        };
        let exited = wire_report(&report(ReportedState::Exited { exit_code: 2 }));
        assert_eq!(
            (exited.state, exited.exit_code, exited.reason),
            (api::ReportedState::Exited, Some(2), None)
        );
        let failed = wire_report(&report(ReportedState::Failed {
            reason: "cancelled".into(),
        }));
        assert_eq!(
            (failed.state, failed.exit_code, failed.reason.as_deref()),
            (api::ReportedState::Failed, None, Some("cancelled"))
        );
        assert_eq!(failed.logs, vec!["x"]);
    }
}
