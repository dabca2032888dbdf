//! The invariant check: reads every worker (with what it owns) and every container record
//! into a [`Dump`], and lets [`crate::check::violations`] judge it, as the memory store does.
//! Anything that cannot be read becomes a violation naming its key; nothing panics.
//!
//! Records are found through the id set `P:{q}:containers` (one slot, so this works on
//! cluster without scanning every node).

use super::codec::{self, decode_owned, decode_record, decode_worker};
use super::reply::{self, expect_text};
use super::store::{Call, RedisStore};
use crate::check::{Dump, OwnedEntry};
use crate::{Result, StoreError, Violation};
use berth_core::{Worker, WorkerId};
use redis::Value;

/// Records read per round trip.
const RECORD_CHUNK: usize = 500;

impl RedisStore {
    /// See [`crate::Store::check`].
    pub(super) async fn check_invariants(&self) -> Result<Vec<Violation>> {
        let mut dump = Dump::default();
        self.dump_workers(&mut dump).await?;
        self.dump_records(&mut dump).await?;
        Ok(crate::check::violations(&dump))
    }

    async fn dump_workers(&self, dump: &mut Dump) -> Result<()> {
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
        let calls = ids
            .iter()
            .flat_map(|id| {
                [
                    self.hgetall(self.keys.worker(id)),
                    self.hgetall(self.keys.owned(id)),
                ]
            })
            .collect();
        let mut replies = self.run(calls).await?.into_iter();
        self.stats.worker_reads(ids.len() as u64);
        for id in &ids {
            let (Some(worker), Some(owned)) = (replies.next(), replies.next()) else {
                break;
            };
            if let Some(entry) = self.dump_worker(id, worker?, owned?, &mut dump.unreadable)? {
                dump.workers.push(entry);
            }
        }
        Ok(())
    }

    /// One worker and what it owns; `None` if it has no hash (or an unreadable one, which
    /// is recorded as a violation).
    fn dump_worker(
        &self,
        id: &WorkerId,
        worker: Value,
        owned: Value,
        unreadable: &mut Vec<Violation>,
    ) -> Result<Option<(Worker, Vec<OwnedEntry>)>> {
        let key = self.keys.worker(id);
        let fields = reply::fields(worker)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let worker = match decode_worker(&key, id, &fields) {
            Ok(worker) => worker,
            Err(error) => {
                unreadable.push(unreadable_at(&key, &error));
                return Ok(None);
            }
        };
        let owned_key = self.keys.owned(id);
        let mut entries = Vec::new();
        let mut pairs: Vec<(String, String)> = reply::fields(owned)?.into_iter().collect();
        pairs.sort();
        for (container, value) in pairs {
            match decode_owned(&owned_key, &container, &value) {
                Ok(entry) => entries.push(entry),
                Err(error) => unreadable.push(unreadable_at(&owned_key, &error)),
            }
        }
        Ok(Some((worker, entries)))
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
                let fields = reply::fields(value?)?;
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

fn unreadable(error: StoreError) -> Violation {
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
