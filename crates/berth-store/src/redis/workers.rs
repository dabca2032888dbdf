//! Workers: registration, heartbeats, status, reads, the per-worker lock, and release.

use super::codec::{self, MAX_LUA_INT, decode_worker};
use super::reply::{self, expect_text, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::{Call, RedisStore, millis};
use crate::model::*;
use crate::{Result, StoreError};
use berth_core::{AttemptId, WorkerRegistration};
use berth_core::{ContainerId, Resources, Worker, WorkerId, WorkerStatus};
use redis::Value;
use std::time::Duration;

impl RedisStore {
    /// The worker's three keys that its scripts take: worker, owned, assign.
    pub(super) fn worker_keys(&self, id: &WorkerId) -> Vec<String> {
        vec![
            self.keys.worker(id),
            self.keys.owned(id),
            self.keys.assign(id),
        ]
    }

    /// Decodes a worker hash reply of worker `id` (a hash, or its flat field/value list as
    /// the scripts reply with it).
    pub(super) fn decode_worker_reply(&self, id: &WorkerId, value: Value) -> Result<Worker> {
        decode_worker(&self.keys.worker(id), id, &reply::fields(value)?)
    }

    /// See [`crate::Fleet::register_worker`]. The id goes into the index first (another
    /// slot), in the same round trip as the registration script.
    pub(super) async fn register(&self, registration: &WorkerRegistration) -> Result<Worker> {
        let id = &registration.id;
        let args = codec::registration_args(registration, crate::now_ms())?;
        let mut index = redis::cmd("SADD");
        index.arg(self.keys.workers()).arg(id.as_str());
        let calls = vec![
            Call::command(self.keys.workers(), index),
            Call::Script(ScriptCall::new(
                &SCRIPTS.register,
                self.worker_keys(id),
                args,
            )),
        ];
        let mut replies = self.run(calls).await?.into_iter();
        replies
            .next()
            .unwrap_or_else(|| Err(unexpected("the index reply", &Value::Nil)))?;
        let value = replies
            .next()
            .unwrap_or_else(|| Err(unexpected("the register reply", &Value::Nil)))?;
        let (tag, mut parts) = tagged(value)?;
        match tag.as_str() {
            "ok" => self.decode_worker_reply(id, part(&mut parts, 0, "worker")?),
            "below_reserved" => Err(StoreError::BelowReserved {
                worker: id.clone(),
                total: registration.total.to_string(),
                reserved: resources_reply(&mut parts, 0)?.to_string(),
            }),
            _ => Err(unexpected("register", &Value::Array(parts))),
        }
    }

    /// See [`crate::Fleet::heartbeat`].
    pub(super) async fn beat(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        now_ms: u64,
        images: Option<&[String]>,
    ) -> Result<()> {
        let mut args = vec![now_ms.min(MAX_LUA_INT).to_string(), epoch_arg(epoch)];
        if let Some(images) = images {
            crate::check_images(images)?;
            args.push(images.join("\n"));
        }
        let call = ScriptCall::new(&SCRIPTS.heartbeat, vec![self.keys.worker(worker)], args);
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => Ok(()),
            "unknown" => Err(StoreError::UnknownWorker(worker.clone())),
            "stale" => Err(stale(worker, epoch, &mut parts)?),
            _ => Err(unexpected("heartbeat", &Value::Array(parts))),
        }
    }

    /// See [`crate::Fleet::set_worker_status`].
    pub(super) async fn set_status(
        &self,
        worker: &WorkerId,
        status: WorkerStatus,
    ) -> Result<Worker> {
        let call = ScriptCall::new(
            &SCRIPTS.set_status,
            vec![self.keys.worker(worker)],
            vec![status.as_str().to_owned()],
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => self.decode_worker_reply(worker, part(&mut parts, 0, "worker")?),
            "unknown" => Err(StoreError::UnknownWorker(worker.clone())),
            _ => Err(unexpected("set_status", &Value::Array(parts))),
        }
    }

    /// See [`crate::Fleet::worker`]: one HGETALL.
    pub(super) async fn read_worker(&self, worker: &WorkerId) -> Result<Option<Worker>> {
        let key = self.keys.worker(worker);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let fields = reply::fields(self.command(&key, cmd).await?)?;
        self.stats.worker_reads(1);
        if fields.is_empty() {
            return Ok(None);
        }
        decode_worker(&key, worker, &fields).map(Some)
    }

    /// The registered worker ids, from the index (one round trip), and the index entries
    /// that are not worker ids, as errors.
    pub(super) async fn worker_ids(&self) -> Result<(Vec<WorkerId>, Vec<StoreError>)> {
        let key = self.keys.workers();
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(&key);
        let members = reply::items(self.command(&key, cmd).await?)?;
        let mut ids = Vec::with_capacity(members.len());
        let mut bad = Vec::new();
        for member in &members {
            let parsed = expect_text("a worker id", member).and_then(|text| {
                WorkerId::new(&text).map_err(|e| codec::corrupt(&key, &text, &e.to_string()))
            });
            match parsed {
                Ok(id) => ids.push(id),
                Err(error) => bad.push(error),
            }
        }
        ids.sort();
        Ok((ids, bad))
    }

    /// See [`crate::Fleet::workers`]: the readable workers, each quarantined one logged
    /// and counted.
    pub(super) async fn read_workers(&self) -> Result<Vec<Worker>> {
        let (workers, quarantined) = self.read_fleet().await?;
        report_quarantined(&quarantined);
        Ok(workers)
    }

    /// See [`crate::Fleet::fleet`]: [`Self::read_workers`] and [`Self::read_quarantined`]
    /// from one read.
    pub(super) async fn read_fleet_and_quarantined(
        &self,
    ) -> Result<(Vec<Worker>, Vec<crate::Violation>)> {
        let (workers, quarantined) = self.read_fleet().await?;
        report_quarantined(&quarantined);
        let quarantined = quarantined
            .into_iter()
            .map(super::check::unreadable)
            .collect();
        Ok((workers, quarantined))
    }

    /// See [`crate::Fleet::quarantined`].
    pub(super) async fn read_quarantined(&self) -> Result<Vec<crate::Violation>> {
        let (_, quarantined) = self.read_fleet().await?;
        Ok(quarantined
            .into_iter()
            .map(super::check::unreadable)
            .collect())
    }

    /// The index, then every worker hash in one pipelined round trip (on cluster: one
    /// pipeline per slot, all at once): the workers that read back, and why each other one
    /// does not. Ids in the index without a hash (a registration that failed after
    /// indexing) are skipped.
    async fn read_fleet(&self) -> Result<(Vec<Worker>, Vec<StoreError>)> {
        let (ids, mut quarantined) = self.worker_ids().await?;
        let calls = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.keys.worker(id));
                Call::command(self.keys.worker(id), cmd)
            })
            .collect();
        let replies = self.run(calls).await?;
        self.stats.worker_reads(ids.len() as u64);
        let mut workers = Vec::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(replies) {
            let key = self.keys.worker(id);
            let read = value.and_then(reply::fields).map_err(|error| match error {
                // A key of another type answers WRONGTYPE: that worker's record is corrupt.
                StoreError::Redis(e) if e.code() == Some("WRONGTYPE") => {
                    codec::corrupt(&key, "type", "is not a hash")
                }
                other => other,
            });
            let fields = match read {
                Ok(fields) => fields,
                Err(error @ StoreError::Corrupt { .. }) => {
                    quarantined.push(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            if !fields.is_empty() {
                match decode_worker(&key, id, &fields) {
                    Ok(worker) => workers.push(worker),
                    Err(error) => quarantined.push(error),
                }
            }
        }
        Ok((workers, quarantined))
    }

    /// See [`crate::Bookings::owners`]: the index, then one `HGET` of the container in every
    /// worker's ownership hash, all in one pipelined round trip.
    pub(super) async fn container_owners(
        &self,
        container: &ContainerId,
    ) -> Result<Vec<(WorkerId, AttemptId)>> {
        let (ids, _) = self.worker_ids().await?;
        let calls = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(self.keys.owned(id)).arg(container.as_str());
                Call::command(self.keys.owned(id), cmd)
            })
            .collect();
        let replies = self.run(calls).await?;
        let mut owners = Vec::new();
        for (id, value) in ids.into_iter().zip(replies) {
            if let Some(entry) = reply::text(&value?) {
                let owned = codec::decode_owned(&self.keys.owned(&id), container.as_str(), &entry)?;
                owners.push((id, owned.attempt));
            }
        }
        Ok(owners)
    }

    /// See [`crate::WorkerLocks::lock_worker`].
    pub(super) async fn lock(&self, worker: &WorkerId, ttl: Duration) -> Result<Option<LockToken>> {
        let token = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let call = ScriptCall::new(
            &SCRIPTS.lock,
            vec![self.keys.worker(worker), self.keys.lock(worker)],
            vec![token.clone(), millis(ttl).to_string()],
        );
        let (tag, parts) = tagged(self.script(call).await?)?;
        let acquired = match tag.as_str() {
            "ok" => true,
            "held" => false,
            "unknown" => return Err(StoreError::UnknownWorker(worker.clone())),
            _ => return Err(unexpected("lock", &Value::Array(parts))),
        };
        self.stats.lock_attempt(acquired);
        Ok(acquired.then(|| LockToken {
            worker: worker.clone(),
            token,
        }))
    }

    /// See [`crate::WorkerLocks::unlock_worker`].
    pub(super) async fn unlock(&self, lock: &LockToken) -> Result<bool> {
        let worker = &lock.worker;
        let call = ScriptCall::new(
            &SCRIPTS.unlock,
            vec![self.keys.worker(worker), self.keys.lock(worker)],
            vec![lock.token.clone()],
        );
        let (tag, parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "released" => Ok(true),
            "not_held" => Ok(false),
            "unknown" => Err(StoreError::UnknownWorker(worker.clone())),
            _ => Err(unexpected("unlock", &Value::Array(parts))),
        }
    }

    /// See [`crate::Bookings::release`].
    pub(super) async fn release_container(
        &self,
        worker: &WorkerId,
        container: &ContainerId,
        attempt: Option<&AttemptId>,
        epoch: Option<u64>,
    ) -> Result<ReleaseOutcome> {
        let attempt = attempt.map_or_else(String::new, |a| a.0.clone());
        let call = ScriptCall::new(
            &SCRIPTS.release,
            self.worker_keys(worker),
            vec![container.to_string(), attempt, epoch_arg(epoch)],
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "released" => Ok(ReleaseOutcome::Released {
                resources: resources_reply(&mut parts, 0)?,
                worker: Box::new(self.decode_worker_reply(worker, part(&mut parts, 3, "worker")?)?),
            }),
            "not_owned" => Ok(ReleaseOutcome::NotOwned),
            "unknown" => Err(StoreError::UnknownWorker(worker.clone())),
            "stale" => Err(stale(worker, epoch, &mut parts)?),
            _ => Err(unexpected("release", &Value::Array(parts))),
        }
    }
}

/// The script argument of an agent's epoch: `''` when the call is not fenced.
pub(super) fn epoch_arg(epoch: Option<u64>) -> String {
    epoch.map_or_else(String::new, |e| e.min(MAX_LUA_INT).to_string())
}

/// The error of a `{'stale', current}` reply to a call fenced with `epoch`.
pub(super) fn stale(
    worker: &WorkerId,
    epoch: Option<u64>,
    parts: &mut [Value],
) -> Result<StoreError> {
    let value = part(parts, 0, "the current epoch")?;
    let current = expect_text("an epoch", &value)?
        .parse()
        .map_err(|_| unexpected("an epoch", &value))?;
    Ok(StoreError::StaleEpoch {
        worker: worker.clone(),
        presented: epoch.unwrap_or_default(),
        current,
    })
}

/// Three reply parts `cpu, mem, gpu` from `at`.
fn resources_reply(parts: &mut [Value], at: usize) -> Result<Resources> {
    let mut number = |i: usize| -> Result<u64> {
        let value = part(parts, at + i, "a quantity")?;
        let text = expect_text("a quantity", &value)?;
        text.parse().map_err(|_| unexpected("a quantity", &value))
    };
    let cpu = number(0)?;
    let mem = number(1)?;
    let gpu = number(2)?;
    let gpu = u32::try_from(gpu).map_err(|_| unexpected("a GPU count", &Value::Int(0)))?;
    Ok(Resources::new(cpu, mem, gpu))
}

/// Logs each quarantined worker and sets the `berth_workers_quarantined` gauge.
fn report_quarantined(quarantined: &[StoreError]) {
    for error in quarantined {
        tracing::error!(%error, "a worker record does not read back: quarantined (left out of scheduling) until it registers again");
    }
    metrics::gauge!("berth_workers_quarantined").set(quarantined.len() as f64);
}
