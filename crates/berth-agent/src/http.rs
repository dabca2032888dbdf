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
use std::path::PathBuf;
use std::time::Duration;

/// The longest failure reason the server accepts, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// The server's worker-facing API over HTTP, under the worker's identity.
///
/// A worker joins with a join token; its registration answers with the worker's own
/// credential, which every later call carries, and which is kept in the credential file
/// (readable by its owner only) so that a restarted agent registers again as itself. A
/// kept credential the server no longer accepts (the worker was removed, or an operator
/// revoked it) is replaced by joining again with the join token.
#[derive(Debug)]
pub struct HttpControl {
    client: parking_lot::RwLock<api::Client>,
    join_token: Option<String>,
    credential_file: Option<PathBuf>,
}

impl HttpControl {
    /// A control of the server behind `client`, calling with the client's token.
    pub fn new(client: api::Client) -> HttpControl {
        HttpControl {
            client: parking_lot::RwLock::new(client),
            join_token: None,
            credential_file: None,
        }
    }

    /// A control that joins with `join_token` (if given) and keeps the worker's credential in
    /// `credential_file`; a credential kept there by an earlier run is used first.
    pub fn joining(
        client: api::Client,
        join_token: Option<String>,
        credential_file: PathBuf,
    ) -> HttpControl {
        let kept = std::fs::read_to_string(&credential_file)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        let client = match kept.as_ref().or(join_token.as_ref()) {
            Some(token) => client.with_token(token),
            None => client,
        };
        HttpControl {
            client: parking_lot::RwLock::new(client),
            join_token,
            credential_file: Some(credential_file),
        }
    }

    /// The client it calls through (a copy: the token changes when a registration issues
    /// the worker's credential).
    pub fn client(&self) -> api::Client {
        self.client.read().clone()
    }

    /// Calls with `token` from now on, and keeps it in the credential file.
    fn adopt_credential(&self, token: &str) {
        self.client.write().set_token(token);
        if let Some(path) = &self.credential_file
            && let Err(error) = berth_api::secret_file::write_private(path, token)
        {
            tracing::warn!(path = %path.display(), %error,
                "cannot keep the worker's credential: a restarted agent joins again");
        }
    }

    /// Registers once with the current token.
    async fn register_once(
        &self,
        body: &api::RegisterWorker,
    ) -> Result<api::Registered, api::ClientError> {
        self.client().register(body).await
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
        ReportedState::Pulling => (api::ReportedState::Pulling, None, None),
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
            secret_env: view.secret_env,
        },
        timeout: view.timeout_secs.map(Duration::from_secs),
        preempts: view.preempts,
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
        body.images = Some(registration.images.clone()).filter(|images| !images.is_empty());
        let registered = match self.register_once(&body).await {
            Err(error) if error.status() == Some(401) && self.join_token.is_some() => {
                tracing::warn!(%error, "the kept worker credential is refused; joining again");
                if let Some(join) = &self.join_token {
                    self.client.write().set_token(join);
                }
                self.register_once(&body).await
            }
            other => other,
        }
        .map_err(classify)?;
        if let Some(credential) = &registered.credential {
            self.adopt_credential(credential);
        }
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
        images: Option<&[String]>,
    ) -> Result<HeartbeatReply, ControlError> {
        let beat = api::HeartbeatRequest {
            epoch,
            running: running.to_vec(),
            images: images.map(<[String]>::to_vec),
        };
        let reply = self
            .client()
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
            .client()
            .assignments(worker, epoch, max, wait)
            .await
            .map_err(classify)?;
        Ok(views.into_iter().map(delivery).collect())
    }

    async fn ack(&self, worker: &WorkerId, epoch: u64, delivery: &str) -> Result<(), ControlError> {
        self.client()
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
            .client()
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
        self.client()
            .report(container, &body)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn deregister(&self, worker: &WorkerId) -> Result<(), ControlError> {
        self.client().deregister(worker).await.map_err(classify)
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
