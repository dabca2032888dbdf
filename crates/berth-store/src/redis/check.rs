//! The invariant check: reads every worker (with what it owns, its last heartbeat and its
//! assignment stream), every container record and what waits in the intake and the
//! backlog into a [`Dump`], and lets [`berth_core::invariants::violations`] judge it, as the memory
//! store does. Anything that cannot be read becomes a violation naming its key; nothing
//! panics.
//!
//! Records are found through the id set `P:{q}:containers` (one slot, so this works on
//! cluster without scanning every node). Each kind of read is one pipelined round trip
//! (records: one per chunk); the keys of each command share one slot.
//!
//! The reads are not one snapshot. An assignment entry that does not match its worker's
//! ownership, and a pending record found in neither the intake nor the backlog, may just
//! have moved between two reads (a commit, a release, a settlement, a promotion), so they
//! are read again once, in an order that sees such a move, before they are judged.

use super::codec::{self, decode_assignment, decode_owned, decode_record};
use super::reply::{self, expect_text};
use super::store::{Call, RedisStore};
use crate::{ContainerState, Result, StoreError, Violation};
use berth_core::invariants::{CheckOptions, Dump, QueuedAssignment, WorkerDump};
use berth_core::{ContainerId, WorkerId};
use redis::Value;
use std::collections::HashSet;

/// Records read per round trip.
const RECORD_CHUNK: usize = 500;
/// Workers read per round trip: each brings its owned hash and its assignment stream with
/// every undelivered payload, so 10,000 workers in one round trip (c1m's fleet, 100
/// reservations each) made a reply of hundreds of MB that outlasted the response timeout.
const WORKER_CHUNK: usize = 200;

impl RedisStore {
    /// See [`crate::Inspection::check`].
    pub(super) async fn check_invariants(&self, options: &CheckOptions) -> Result<Vec<Violation>> {
        let mut dump = Dump::default();
        self.dump_workers(&mut dump, options).await?;
        self.recheck_assignments(&mut dump).await?;
        self.dump_records(&mut dump).await?;
        self.dump_quota(&mut dump).await?;
        self.dump_queued(&mut dump).await?;
        self.recheck_pending(&mut dump).await?;
        Ok(berth_core::invariants::violations(&dump, options))
    }

    async fn dump_workers(&self, dump: &mut Dump, options: &CheckOptions) -> Result<()> {
        let index = self.keys.workers();
        let members = self.members(&index).await?;
        let mut ids = Vec::with_capacity(members.len());
        for member in members {
            match WorkerId::new(&member) {
                Ok(id) => ids.push(id),
                Err(e) => dump.unreadable.push(unreadable(codec::corrupt(
                    &index,
                    &member,
                    &e.to_string(),
                ))),
            }
        }
        ids.sort();
        for chunk in ids.chunks(WORKER_CHUNK) {
            let calls = chunk
                .iter()
                .flat_map(|id| {
                    [
                        self.hgetall(self.keys.worker(id)),
                        self.hgetall(self.keys.owned(id)),
                        xrange(self.keys.assign(id), "-", "+"),
                    ]
                })
                .collect();
            let mut replies = self.run(calls).await?.into_iter();
            self.stats.worker_reads(chunk.len() as u64);
            for id in chunk {
                let (Some(worker), Some(owned), Some(assign)) =
                    (replies.next(), replies.next(), replies.next())
                else {
                    break;
                };
                let replies = [worker, owned, assign];
                if let Some(entry) = self.dump_worker(id, replies, options, &mut dump.unreadable) {
                    dump.workers.push(entry);
                }
            }
        }
        Ok(())
    }

    /// One worker from its hash, its owned hash and its assignment stream; `None` if it has
    /// no hash (or an unreadable one, which is recorded as a violation).
    fn dump_worker(
        &self,
        id: &WorkerId,
        [worker, owned, assign]: [Result<Value>; 3],
        options: &CheckOptions,
        unreadable: &mut Vec<Violation>,
    ) -> Option<WorkerDump> {
        let key = self.keys.worker(id);
        let fields = match worker.and_then(reply::fields) {
            Ok(fields) => fields,
            Err(error) => {
                unreadable.push(unreadable_at(&key, &error));
                return None;
            }
        };
        if fields.is_empty() {
            return None;
        }
        let worker = match codec::decode_worker(&key, id, &fields) {
            Ok(worker) => worker,
            Err(error) => {
                unreadable.push(unreadable_at(&key, &error));
                return None;
            }
        };
        let heartbeat = fields.get("heartbeat_ms");
        let heartbeat_ms = match heartbeat.map(|t| (t, t.parse::<u64>())) {
            Some((_, Ok(at))) => at,
            problem => {
                let problem = problem.map_or("is missing".to_owned(), |(text, _)| {
                    format!("{text:?} is not a time in ms")
                });
                let error = codec::corrupt(&key, "heartbeat_ms", &problem);
                unreadable.push(unreadable_at(&key, &error));
                // Reported once: not judged dead on top.
                options.now_ms
            }
        };
        let owned_key = self.keys.owned(id);
        let mut entries = Vec::new();
        match owned.and_then(reply::fields) {
            Ok(fields) => {
                let mut pairs: Vec<(String, String)> = fields.into_iter().collect();
                pairs.sort();
                for (container, value) in pairs {
                    match decode_owned(&owned_key, &container, &value) {
                        Ok(entry) => entries.push(entry),
                        Err(error) => unreadable.push(unreadable_at(&owned_key, &error)),
                    }
                }
            }
            Err(error) => unreadable.push(unreadable_at(&owned_key, &error)),
        }
        let queue = self.keys.assign(id);
        let assignments = assignments(&queue, assign, unreadable);
        Some(WorkerDump {
            worker,
            owned: entries,
            heartbeat_ms,
            assignments,
            queue,
        })
    }

    /// Reads again each assignment entry that does not match its worker's ownership: first
    /// the ownership entry, then the stream entry, in one round trip. An entry deleted
    /// since (acknowledged, or released with its container) or whose container the worker
    /// now owns under its attempt (committed since) is dropped from the dump.
    async fn recheck_assignments(&self, dump: &mut Dump) -> Result<()> {
        let mut suspects = Vec::new();
        for (w, worker) in dump.workers.iter().enumerate() {
            for entry in &worker.assignments {
                let matched = worker
                    .owned
                    .iter()
                    .any(|o| o.container == entry.container && o.attempt == entry.attempt);
                if !matched {
                    suspects.push((w, entry.clone()));
                }
            }
        }
        if suspects.is_empty() {
            return Ok(());
        }
        let calls = suspects
            .iter()
            .flat_map(|(w, entry)| {
                let id = &dump.workers[*w].worker.id;
                let owned_key = self.keys.owned(id);
                let mut hget = redis::cmd("HGET");
                hget.arg(&owned_key).arg(entry.container.as_str());
                [
                    Call::command(owned_key, hget),
                    xrange(self.keys.assign(id), &entry.delivery, &entry.delivery),
                ]
            })
            .collect();
        let mut replies = self.run(calls).await?.into_iter();
        let mut settled = HashSet::new();
        for (w, entry) in &suspects {
            let (Some(owned), Some(stream)) = (replies.next(), replies.next()) else {
                break;
            };
            let owned_key = self.keys.owned(&dump.workers[*w].worker.id);
            let owns_now = owned.ok().and_then(|v| reply::text(&v)).is_some_and(|v| {
                decode_owned(&owned_key, entry.container.as_str(), &v)
                    .is_ok_and(|o| o.attempt == entry.attempt)
            });
            let gone = stream
                .and_then(reply::items)
                .is_ok_and(|items| items.is_empty());
            if owns_now || gone {
                settled.insert((*w, entry.delivery.clone()));
            }
        }
        for (w, worker) in dump.workers.iter_mut().enumerate() {
            worker
                .assignments
                .retain(|a| !settled.contains(&(w, a.delivery.clone())));
        }
        Ok(())
    }

    async fn dump_records(&self, dump: &mut Dump) -> Result<()> {
        let ids_key = self.keys.containers();
        let mut ids = self.members(&ids_key).await?;
        ids.sort();
        for chunk in ids.chunks(RECORD_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| format!("{}{id}", self.keys.record_prefix()))
                .collect();
            let calls = keys.iter().map(|k| self.hgetall(k.clone())).collect();
            let replies = self.run(calls).await?;
            for (key, value) in keys.iter().zip(replies) {
                let fields = match value.and_then(reply::fields) {
                    Ok(fields) => fields,
                    Err(error) => {
                        dump.unreadable.push(unreadable_at(key, &error));
                        continue;
                    }
                };
                if fields.is_empty() {
                    dump.unreadable.push(Violation {
                        subject: key.clone(),
                        detail: format!("listed in {ids_key} but has no record"),
                    });
                    continue;
                }
                match decode_record(key, &fields) {
                    Ok(record) => dump.records.push(record),
                    Err(error) => dump.unreadable.push(unreadable_at(key, &error)),
                }
            }
        }
        Ok(())
    }

    /// The ids in the intake (every entry, claimed or not) and in the backlog: one round
    /// trip, the intake read first.
    async fn dump_queued(&self, dump: &mut Dump) -> Result<()> {
        let mut replies = self.run(self.queued_calls()).await?.into_iter();
        let (intake, backlog) = (replies.next(), replies.next());
        self.read_queued(intake, backlog, &mut dump.queued, &mut dump.unreadable);
        Ok(())
    }

    /// Reads the intake and the backlog again, then the state of each pending record found
    /// in neither, in one round trip (in this order on the intake's slot, so a record put
    /// back in the intake or moved on in between is not missed). A record found queued now
    /// is queued; one no longer pending moved on during the check and is left out of the
    /// dump (the next check judges it).
    async fn recheck_pending(&self, dump: &mut Dump) -> Result<()> {
        let suspects: Vec<ContainerId> = dump
            .records
            .iter()
            .filter(|r| r.state == ContainerState::Pending && !dump.queued.contains(&r.request.id))
            .map(|r| r.request.id.clone())
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        let mut calls = self.queued_calls();
        for id in &suspects {
            let key = self.keys.record(id);
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&key).arg("state");
            calls.push(Call::command(key, cmd));
        }
        let mut replies = self.run(calls).await?.into_iter();
        let (intake, backlog) = (replies.next(), replies.next());
        let mut queued = HashSet::new();
        // What cannot be read was reported by the first read.
        self.read_queued(intake, backlog, &mut queued, &mut Vec::new());
        let mut moved_on = HashSet::new();
        for (id, state) in suspects.into_iter().zip(replies) {
            let pending = state.ok().and_then(|v| reply::text(&v)).as_deref()
                == Some(ContainerState::Pending.as_str());
            if queued.contains(&id) {
                dump.queued.insert(id);
            } else if !pending {
                moved_on.insert(id);
            }
        }
        dump.records.retain(|r| !moved_on.contains(&r.request.id));
        Ok(())
    }

    /// XRANGE of the intake, then ZRANGE of the backlog (one slot).
    fn queued_calls(&self) -> Vec<Call> {
        let backlog = self.keys.backlog();
        let mut zrange = redis::cmd("ZRANGE");
        zrange.arg(&backlog).arg(0).arg(-1);
        vec![
            xrange(self.keys.intake(), "-", "+"),
            Call::command(backlog, zrange),
        ]
    }

    /// Adds the ids of the intake's entries (field `id`) and of the backlog's members to
    /// `queued`; what cannot be read becomes a violation naming the key (and the entry).
    fn read_queued(
        &self,
        intake: Option<Result<Value>>,
        backlog: Option<Result<Value>>,
        queued: &mut HashSet<ContainerId>,
        unreadable: &mut Vec<Violation>,
    ) {
        let intake_key = self.keys.intake();
        let missing = || Err(reply::unexpected("a reply", &Value::Nil));
        for (entry, fields) in stream(&intake_key, intake.unwrap_or_else(missing), unreadable) {
            let id = fields
                .get("id")
                .ok_or_else(|| "is missing".to_owned())
                .and_then(|id| ContainerId::new(id).map_err(|e| format!("{id:?}: {e}")));
            match id {
                Ok(id) => {
                    queued.insert(id);
                }
                Err(problem) => {
                    let error = codec::corrupt(&intake_key, &format!("{entry}.id"), &problem);
                    unreadable.push(unreadable_at(&intake_key, &error));
                }
            }
        }
        let backlog_key = self.keys.backlog();
        let members = backlog
            .unwrap_or_else(missing)
            .and_then(reply::items)
            .and_then(|items| {
                items
                    .iter()
                    .map(|m| expect_text("a backlog member", m))
                    .collect::<Result<Vec<_>>>()
            });
        match members {
            Ok(members) => {
                for member in members {
                    match ContainerId::new(&member) {
                        Ok(id) => {
                            queued.insert(id);
                        }
                        Err(e) => {
                            let error = codec::corrupt(&backlog_key, &member, &e.to_string());
                            unreadable.push(unreadable_at(&backlog_key, &error));
                        }
                    }
                }
            }
            Err(error) => unreadable.push(unreadable_at(&backlog_key, &error)),
        }
    }

    async fn members(&self, key: &str) -> Result<Vec<String>> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        reply::items(self.command(key, cmd).await?)?
            .iter()
            .map(|m| expect_text("a set member", m))
            .collect()
    }

    fn hgetall(&self, key: String) -> Call {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        Call::command(key, cmd)
    }
}

/// `XRANGE key from to`.
fn xrange(key: String, from: &str, to: &str) -> Call {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(&key).arg(from).arg(to);
    Call::command(key, cmd)
}

/// The entries `(id, fields)` of an XRANGE reply on the stream at `key`; an unreadable
/// reply or entry becomes a violation naming the key.
fn stream(
    key: &str,
    value: Result<Value>,
    unreadable: &mut Vec<Violation>,
) -> Vec<(String, codec::Fields)> {
    let entries = match value.and_then(reply::items) {
        Ok(entries) => entries,
        Err(error) => {
            unreadable.push(unreadable_at(key, &error));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let decoded = reply::items(entry).and_then(|mut pair| {
            let id = expect_text("an entry id", &reply::part(&mut pair, 0, "entry id")?)?;
            let fields = reply::fields(reply::part(&mut pair, 1, "entry fields")?)?;
            Ok((id, fields))
        });
        match decoded {
            Ok(entry) => out.push(entry),
            Err(error) => unreadable.push(unreadable_at(key, &error)),
        }
    }
    out
}

/// The entries of the assignment stream at `key` that can be decoded; the others become
/// violations naming the key and the entry.
fn assignments(
    key: &str,
    value: Result<Value>,
    unreadable: &mut Vec<Violation>,
) -> Vec<QueuedAssignment> {
    stream(key, value, unreadable)
        .into_iter()
        .filter_map(
            |(delivery, fields)| match decode_assignment(key, &delivery, &fields) {
                Ok(a) => Some(QueuedAssignment {
                    delivery: a.delivery,
                    container: a.container,
                    attempt: a.attempt,
                }),
                Err(error) => {
                    unreadable.push(unreadable_at(key, &error));
                    None
                }
            },
        )
        .collect()
}

/// A store error about stored data as a violation naming its key (the check's and the
/// quarantine's phrasing).
pub(super) fn unreadable(error: StoreError) -> Violation {
    match &error {
        StoreError::Corrupt { key, .. } => unreadable_at(&key.clone(), &error),
        _ => Violation {
            subject: String::new(),
            detail: error.to_string(),
        },
    }
}

fn unreadable_at(key: &str, error: &StoreError) -> Violation {
    Violation {
        subject: key.to_owned(),
        detail: format!("unreadable: {error}"),
    }
}
