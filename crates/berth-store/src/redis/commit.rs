//! Commits, all groups in one pipelined round trip: on standalone Redis `commit_many.lua`
//! calls of many groups each; on cluster one `commit.lua` call per group (one pipeline per
//! worker slot, all at once). The locked variant for one group.

use super::codec::checked_resources;
use super::reply::{self, expect_text, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::{Call, RedisStore};
use crate::model::*;
use crate::{Result, StoreError};
use berth_core::AttemptId;
use berth_core::{ContainerId, DeviceShare, WorkerId};
use redis::Value;

/// How a group is committed: lock-free, or under a lock at an expected version.
enum Mode<'a> {
    Free,
    Locked { lock: &'a LockToken, expected: u64 },
}

impl RedisStore {
    /// See [`crate::Bookings::commit`]. An error for any group (a transport error, corrupt
    /// stored data) fails the call; groups that did commit stay committed, and a retry
    /// reports their containers as already owned.
    pub(super) async fn commit_groups(&self, groups: &[CommitGroup]) -> Result<Vec<CommitOutcome>> {
        validate(groups)?;
        let single = !self.is_cluster();
        let mut calls = if single {
            groups
                .chunks(GROUPS_PER_CALL)
                .map(|chunk| self.commit_many_call(chunk).map(Call::Script))
                .collect::<Result<Vec<_>>>()?
        } else {
            groups
                .iter()
                .map(|g| self.commit_call(g, &Mode::Free).map(Call::Script))
                .collect::<Result<Vec<_>>>()?
        };
        let commits = calls.len();
        let waits = self.replica_waits(groups);
        let waited = waits.len();
        calls.extend(waits);
        let mut replies = self.run(calls).await?;
        let wait_replies = replies.split_off(commits);
        self.judge_waits(wait_replies, waited);
        if single {
            return self.decode_many(groups, replies);
        }
        groups
            .iter()
            .zip(replies)
            .map(|(group, value)| self.decode_commit(&group.worker, value?))
            .collect()
    }

    /// The outcomes of `commit_many.lua` calls of up to [`GROUPS_PER_CALL`] groups each
    /// (standalone Redis: the same work per group as `commit.lua`, without a script call per
    /// worker; a batch spread over many workers has about one reservation per worker, where
    /// the call itself cost more than the commit).
    fn decode_many(
        &self,
        groups: &[CommitGroup],
        replies: Vec<Result<Value>>,
    ) -> Result<Vec<CommitOutcome>> {
        let mut outcomes = Vec::with_capacity(groups.len());
        for (chunk, value) in groups.chunks(GROUPS_PER_CALL).zip(replies) {
            let items = reply::items(value?)?;
            if items.len() != chunk.len() {
                return Err(unexpected("one reply per group", &Value::Array(items)));
            }
            for (group, item) in chunk.iter().zip(items) {
                outcomes.push(self.decode_commit(&group.worker, item)?);
            }
        }
        Ok(outcomes)
    }

    /// One `WAIT` per slot route the groups write to, when replica acknowledgements are
    /// asked for ([`crate::StoreConfig::replica_acks`]): sent in the same round trip, each
    /// behind its slot's commits in that slot's pipeline, so it goes to the primary that
    /// took them (on standalone Redis: one, after every commit).
    fn replica_waits(&self, groups: &[CommitGroup]) -> Vec<Call> {
        let acks = self.config.replica_acks;
        if acks == 0 {
            return Vec::new();
        }
        let timeout = self.config.replica_timeout.as_millis().max(1);
        let mut routes = std::collections::BTreeMap::new();
        for group in groups {
            let key = self.keys.worker(&group.worker);
            let route = super::keys::route(&key).to_owned();
            routes.entry(route).or_insert(key);
        }
        if !self.is_cluster() {
            routes = routes.into_iter().take(1).collect();
        }
        routes
            .into_values()
            .map(|key| {
                let mut wait = redis::cmd("WAIT");
                wait.arg(acks).arg(timeout.to_string());
                Call::command(key, wait)
            })
            .collect()
    }

    /// Counts and logs the waits that did not get their replicas in time.
    fn judge_waits(&self, replies: Vec<Result<Value>>, waited: usize) {
        let wanted = i64::from(self.config.replica_acks);
        for reply in replies.into_iter().take(waited) {
            let short = match reply {
                Ok(Value::Int(got)) if got >= wanted => None,
                Ok(other) => Some(format!("{other:?}")),
                Err(error) => Some(error.to_string()),
            };
            if let Some(got) = short {
                self.stats.unreplicated();
                tracing::warn!(wanted, %got, timeout = ?self.config.replica_timeout,
                    "commits were not acknowledged by enough replicas in time; a failover now could drop them");
            }
        }
    }

    fn commit_many_call(&self, groups: &[CommitGroup]) -> Result<ScriptCall> {
        let mut keys = Vec::with_capacity(3 * groups.len());
        let reservations: usize = groups.iter().map(|g| g.reservations.len()).sum();
        let mut args = Vec::with_capacity(1 + groups.len() + 7 * reservations);
        args.push(groups.len().to_string());
        for group in groups {
            keys.extend(self.worker_keys(&group.worker));
            push_reservations(&mut args, group)?;
        }
        Ok(ScriptCall::new(&SCRIPTS.commit_many, keys, args))
    }

    /// See [`crate::WorkerLocks::commit_locked`].
    pub(super) async fn commit_under_lock(
        &self,
        lock: &LockToken,
        expected: u64,
        group: &CommitGroup,
    ) -> Result<CommitOutcome> {
        validate(std::slice::from_ref(group))?;
        if group.worker != lock.worker {
            return Err(StoreError::InvalidArgument(format!(
                "the lock is for worker {}, the group for {}",
                lock.worker, group.worker
            )));
        }
        let call = self.commit_call(group, &Mode::Locked { lock, expected })?;
        let value = self.script(call).await?;
        self.decode_commit(&group.worker, value)
    }

    fn commit_call(&self, group: &CommitGroup, mode: &Mode<'_>) -> Result<ScriptCall> {
        let mut keys = self.worker_keys(&group.worker);
        let mut args = Vec::with_capacity(4 + 6 * group.reservations.len());
        match mode {
            Mode::Free => args.extend(["free".to_owned(), String::new(), String::new()]),
            Mode::Locked { lock, expected } => {
                keys.push(self.keys.lock(&group.worker));
                args.extend([
                    "locked".to_owned(),
                    lock.token.clone(),
                    expected.to_string(),
                ]);
            }
        }
        push_reservations(&mut args, group)?;
        Ok(ScriptCall::new(&SCRIPTS.commit, keys, args))
    }

    /// See [`crate::Bookings::preempt`]: `preempt.lua` on the worker's slot.
    pub(super) async fn preempt_on_worker(
        &self,
        preemption: &PreemptionCommit,
    ) -> Result<CommitOutcome> {
        let group = CommitGroup {
            worker: preemption.worker.clone(),
            reservations: vec![preemption.reservation.clone()],
        };
        validate(std::slice::from_ref(&group))?;
        if preemption.victims.is_empty() {
            return Err(StoreError::InvalidArgument(
                "a preemption needs at least one victim".to_owned(),
            ));
        }
        let mut args = Vec::with_capacity(8 + 2 * preemption.victims.len());
        push_reservations(&mut args, &group)?;
        // push_reservations leads with the count (1): preempt.lua takes one reservation.
        args.remove(0);
        args.push(preemption.victims.len().to_string());
        for (container, attempt) in &preemption.victims {
            args.extend([container.to_string(), attempt.0.clone()]);
        }
        let call = ScriptCall::new(&SCRIPTS.preempt, self.worker_keys(&group.worker), args);
        let value = self.script(call).await?;
        self.decode_commit(&group.worker, value)
    }

    fn decode_commit(&self, worker: &WorkerId, value: Value) -> Result<CommitOutcome> {
        let (tag, mut parts) = tagged(value)?;
        let rejection = match tag.as_str() {
            "ok" => {
                return Ok(CommitOutcome::Committed {
                    worker: self.decode_worker_reply(worker, part(&mut parts, 0, "worker")?)?,
                    already_owned: already_owned(part(&mut parts, 1, "already owned")?)?,
                });
            }
            "unknown" => {
                return Ok(CommitOutcome::Rejected {
                    rejection: Rejection::UnknownWorker,
                    worker: None,
                });
            }
            "not_accepting" => Rejection::NotAcceptingWork,
            "no_room" => Rejection::NoRoom,
            "owned_elsewhere" => Rejection::OwnedByAnotherAttempt,
            "version_conflict" => Rejection::VersionConflict,
            "lock_lost" => Rejection::LockLost,
            "victim_gone" => Rejection::VictimGone,
            _ => return Err(unexpected("commit", &Value::Array(parts))),
        };
        Ok(CommitOutcome::Rejected {
            rejection,
            worker: Some(self.decode_worker_reply(worker, part(&mut parts, 0, "worker")?)?),
        })
    }
}

/// Groups per `commit_many.lua` call: each call blocks the server while it runs (about
/// 10-20 us a group), so a large batch goes out as several calls in one pipeline.
const GROUPS_PER_CALL: usize = 32;

/// A group's reservation count, then per reservation: container, attempt, cpu, mem, gpu,
/// payload JSON (the arguments of `commit_group` in commit_lib.lua).
fn push_reservations(args: &mut Vec<String>, group: &CommitGroup) -> Result<()> {
    args.push(group.reservations.len().to_string());
    for r in &group.reservations {
        let [cpu, mem, gpu] = checked_resources(&r.resources, "a reservation")?;
        args.extend([r.container.to_string(), r.attempt.0.clone(), cpu, mem, gpu]);
        args.push(DeviceShare::format_list(&r.devices));
        args.push(serde_json::to_string(&r.payload)?);
    }
    Ok(())
}

/// The flat `container, attempt, ...` list of a commit reply.
fn already_owned(value: Value) -> Result<Vec<(ContainerId, AttemptId)>> {
    let items = reply::items(value)?;
    items
        .chunks(2)
        .map(|pair| match pair {
            [container, attempt] => {
                let container = expect_text("a container id", container)?;
                let container = ContainerId::new(&container)
                    .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                Ok((container, AttemptId(expect_text("an attempt", attempt)?)))
            }
            _ => Err(unexpected("a container and its attempt", &Value::Nil)),
        })
        .collect()
}

/// What both stores refuse before anything is sent (see the memory store's
/// `validate_groups`), plus attempts the ownership entry format cannot hold.
fn validate(groups: &[CommitGroup]) -> Result<()> {
    crate::memory::validate_groups(groups)?;
    for reservation in groups.iter().flat_map(|g| &g.reservations) {
        let attempt = &reservation.attempt.0;
        if attempt.is_empty() || attempt.chars().any(char::is_whitespace) {
            return Err(StoreError::InvalidArgument(format!(
                "container {}: attempt {attempt:?} must be non-empty, without whitespace",
                reservation.container
            )));
        }
    }
    Ok(())
}
