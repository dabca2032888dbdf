//! The service operations on Redis: liveness, listing, logs, cancellation, dead workers and
//! deregistration (see the "service" section of [`crate::Store`]).

use super::codec::{self, decode_owned, decode_record};
use super::reply::{self, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::{Call, RedisStore};
use crate::{LogSlice, Result, StoreError};
use berth_core::invariants::OwnedEntry;
use berth_core::{AttemptId, ContainerRecord, ContainerState, ReclaimOutcome};
use berth_core::{ContainerId, WorkerId};
use redis::Value;

/// The most records `containers` reads to answer one listing.
const LISTING_SCAN: usize = 10_000;

impl RedisStore {
    /// See [`crate::Fleet::heartbeat_of`]: one HGET.
    pub(super) async fn read_heartbeat(&self, worker: &WorkerId) -> Result<Option<u64>> {
        let key = self.keys.worker(worker);
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&key).arg("heartbeat_ms");
        let value = self.command(&key, cmd).await?;
        let Some(text) = reply::text(&value) else {
            return Ok(None);
        };
        match text.parse() {
            Ok(at) => Ok(Some(at)),
            Err(_) => {
                tracing::error!(worker = %worker, heartbeat_ms = %text,
                    "a heartbeat that does not read: left out");
                Ok(None)
            }
        }
    }

    /// See [`crate::Fleet::heartbeats`]: the index, then one pipelined round trip. A
    /// worker whose heartbeat does not read (its record is quarantined, see
    /// [`crate::Fleet::workers`]) is left out.
    pub(super) async fn read_heartbeats(&self) -> Result<Vec<(WorkerId, u64)>> {
        let (ids, _) = self.worker_ids().await?;
        let calls = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(self.keys.worker(id)).arg("heartbeat_ms");
                Call::command(self.keys.worker(id), cmd)
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, value) in ids.into_iter().zip(self.run(calls).await?) {
            let Some(text) = value.ok().as_ref().and_then(reply::text) else {
                continue;
            };
            match text.parse() {
                Ok(at) => out.push((id, at)),
                Err(_) => tracing::error!(worker = %id, heartbeat_ms = %text,
                    "a heartbeat that does not read: left out"),
            }
        }
        Ok(out)
    }

    /// See [`crate::Fleet::deregister_worker`].
    pub(super) async fn remove_worker(&self, worker: &WorkerId) -> Result<()> {
        let keys = vec![
            self.keys.worker(worker),
            self.keys.owned(worker),
            self.keys.assign(worker),
            self.keys.lock(worker),
        ];
        let value = self
            .script(ScriptCall::new(&SCRIPTS.deregister, keys, Vec::new()))
            .await?;
        match reply::text(&value).as_deref() {
            Some("removed" | "unknown") => {}
            _ => {
                let (_, mut parts) = tagged(value)?;
                let count = match part(&mut parts, 0, "count")? {
                    Value::Int(n) => usize::try_from(n).unwrap_or(usize::MAX),
                    other => return Err(unexpected("an owned count", &other)),
                };
                return Err(StoreError::StillOwns {
                    worker: worker.clone(),
                    count,
                });
            }
        }
        let index = self.keys.workers();
        let mut cmd = redis::cmd("SREM");
        cmd.arg(&index).arg(worker.as_str());
        self.command(&index, cmd).await?;
        Ok(())
    }

    /// See [`crate::Records::containers`]: up to [`LISTING_SCAN`] ids from the id set, their
    /// records in pipelined chunks; unreadable records are skipped (and logged).
    pub(super) async fn list_containers(
        &self,
        wanted: Option<ContainerState>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>> {
        let set = self.keys.containers();
        let mut cmd = redis::cmd("SRANDMEMBER");
        cmd.arg(&set).arg(LISTING_SCAN);
        let ids = reply::items(self.command(&set, cmd).await?)?;
        let calls = ids
            .iter()
            .filter_map(reply::text)
            .filter_map(|id| ContainerId::new(id).ok())
            .map(|id| {
                let key = self.keys.record(&id);
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(&key);
                (key.clone(), Call::command(key, cmd))
            })
            .collect::<Vec<_>>();
        let (keys, calls): (Vec<String>, Vec<Call>) = calls.into_iter().unzip();
        let mut records = Vec::new();
        for (key, value) in keys.iter().zip(self.run(calls).await?) {
            let fields = reply::fields(value?)?;
            match decode_record(key, &fields) {
                Ok(record) if wanted.is_none_or(|s| s == record.state) => records.push(record),
                Ok(_) => {}
                Err(error) => tracing::warn!(%key, %error, "skipping an unreadable record"),
            }
        }
        records.sort_by(|a, b| {
            (b.request.submitted_at_ms, &b.request.id)
                .cmp(&(a.request.submitted_at_ms, &a.request.id))
        });
        records.truncate(limit);
        Ok(records)
    }

    /// See [`crate::Records::append_logs`]: one script appends the lines, trims the list
    /// and counts them.
    pub(super) async fn push_logs(
        &self,
        container: &ContainerId,
        lines: &[String],
        keep: usize,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let keys = vec![self.keys.logs(container), self.keys.log_count(container)];
        let mut args = Vec::with_capacity(lines.len() + 1);
        args.push((keep as u64).min(codec::MAX_LUA_INT).to_string());
        args.extend(lines.iter().cloned());
        self.script(ScriptCall::new(&SCRIPTS.append_logs, keys, args))
            .await?;
        Ok(())
    }

    /// See [`crate::Records::logs`]: one script reads the lines with their positions.
    pub(super) async fn read_logs(&self, container: &ContainerId, after: u64) -> Result<LogSlice> {
        let keys = vec![self.keys.logs(container), self.keys.log_count(container)];
        let after = after.min(codec::MAX_LUA_INT);
        let call = ScriptCall::new(&SCRIPTS.read_logs, keys, vec![after.to_string()]);
        let value = self.script(call).await?;
        let mut parts = reply::items(value.clone())?;
        let first = reply::text(&part(&mut parts, 0, "read_logs position")?)
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| unexpected("read_logs", &value))?;
        let lines = reply::items(part(&mut parts, 1, "read_logs lines")?)?
            .iter()
            .filter_map(reply::text)
            .collect();
        Ok(LogSlice { first, lines })
    }

    /// See [`crate::Records::cancel`].
    pub(super) async fn cancel_container(
        &self,
        container: &ContainerId,
    ) -> Result<ContainerRecord> {
        let key = self.keys.record(container);
        let call = ScriptCall::new(
            &SCRIPTS.cancel,
            vec![key.clone()],
            vec![crate::now_ms().to_string()],
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => decode_record(&key, &reply::fields(part(&mut parts, 0, "record")?)?),
            "unknown" => Err(StoreError::UnknownContainer(container.clone())),
            _ => Err(unexpected("cancel", &Value::Array(parts))),
        }
    }

    /// See [`crate::Records::cancel_requested`]: one pipelined read of the flags.
    pub(super) async fn cancellations(
        &self,
        containers: &[ContainerId],
    ) -> Result<Vec<ContainerId>> {
        let calls = containers
            .iter()
            .map(|id| {
                let key = self.keys.record(id);
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&key).arg("cancel");
                Call::command(key, cmd)
            })
            .collect();
        let mut out = Vec::new();
        for (id, value) in containers.iter().zip(self.run(calls).await?) {
            if reply::text(&value?).as_deref() == Some("1") {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    /// See [`crate::Bookings::reclaim`] (`end` [`ContainerState::Lost`]) and
    /// [`crate::Bookings::preempted`] (`end` [`ContainerState::Preempted`]): the record
    /// (intake slot), then the release (worker slot).
    pub(super) async fn reclaim_container(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: &AttemptId,
        end: ContainerState,
        reason: &str,
    ) -> Result<ReclaimOutcome> {
        let call = ScriptCall::new(
            &SCRIPTS.reclaim,
            vec![self.keys.record(container), self.keys.intake()],
            vec![
                container.to_string(),
                worker.to_string(),
                attempt.0.clone(),
                reason.to_owned(),
                crate::now_ms().to_string(),
                end.as_str().to_owned(),
            ],
        );
        let value = self.script(call).await?;
        let outcome = match reply::text(&value).as_deref() {
            Some("requeued") => ReclaimOutcome::Requeued,
            Some("retried") => ReclaimOutcome::Retried,
            Some("lost") => ReclaimOutcome::Lost,
            Some("preempted") => ReclaimOutcome::Preempted,
            Some("released") => ReclaimOutcome::Released,
            _ => return Err(unexpected("reclaim", &value)),
        };
        self.release_container(worker, container, Some(attempt), None)
            .await?;
        Ok(outcome)
    }

    /// See [`crate::Bookings::owned`].
    pub(super) async fn owned_by(&self, worker: &WorkerId) -> Result<Vec<OwnedEntry>> {
        let key = self.keys.owned(worker);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let fields = reply::fields(self.command(&key, cmd).await?)?;
        fields
            .iter()
            .map(|(container, value)| decode_owned(&key, container, value))
            .collect()
    }
}
