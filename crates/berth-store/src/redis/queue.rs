//! Assignment queues: a stream per worker with the consumer group `agent`.
//!
//! A delivery is a stream entry id. Unacknowledged deliveries stay in the group's pending
//! list and are reclaimed (XAUTOCLAIM) after the redelivery timeout; acknowledged ones are
//! deleted from the stream.

use super::codec::decode_assignment;
use super::reply::{self, expect_text, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::{MAX_BATCH, RedisStore, millis};
use super::workers::{epoch_arg, stale};
use crate::Assignment;
use crate::{Result, StoreError};
use berth_core::WorkerId;
use redis::Value;
use std::time::Duration;

impl RedisStore {
    /// See [`crate::Bookings::assignments`]: one script call takes what is due now; if there is
    /// nothing and `wait` is not zero, a blocking XREADGROUP on a dedicated connection waits
    /// for new entries.
    pub(super) async fn deliver(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        if max == 0 {
            return self.require_worker(worker).await.map(|()| Vec::new());
        }
        let max = max.min(MAX_BATCH);
        let call = ScriptCall::new(
            &SCRIPTS.deliver,
            vec![self.keys.worker(worker), self.keys.assign(worker)],
            vec![
                worker.to_string(),
                self.config.redelivery.as_millis().to_string(),
                max.to_string(),
                epoch_arg(epoch),
            ],
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => {}
            "unknown" => return Err(StoreError::UnknownWorker(worker.clone())),
            "stale" => return Err(stale(worker, epoch, &mut parts)?),
            _ => return Err(unexpected("deliver", &Value::Array(parts))),
        }
        let due = self.decode_entries(worker, part(&mut parts, 0, "entries")?)?;
        if !due.is_empty() || wait.is_zero() {
            return Ok(due);
        }
        self.wait_for_assignments(worker, max, wait).await
    }

    async fn wait_for_assignments(
        &self,
        worker: &WorkerId,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Assignment>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg("agent")
            .arg(worker.as_str())
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(wait))
            .arg("STREAMS")
            .arg(self.keys.assign(worker))
            .arg(">");
        let value = match self.blocking(cmd, wait).await {
            Ok(value) => reply::ok(value)?,
            // The stream was deleted under the blocked read: the worker was removed (or
            // its queue reset); say which, rather than fail the poll.
            Err(StoreError::Redis(error)) if error.code() == Some("UNBLOCKED") => {
                self.require_worker(worker).await?;
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        let entries = stream_entries(value)?;
        self.decode_entries(worker, Value::Array(entries))
    }

    /// Decodes stream entries `{id, {field, value, ...}}`. An entry that cannot be decoded
    /// is logged and skipped (it stays pending, so it is not lost), so that one bad entry
    /// cannot wedge a worker's queue.
    fn decode_entries(&self, worker: &WorkerId, value: Value) -> Result<Vec<Assignment>> {
        let key = self.keys.assign(worker);
        let mut out = Vec::new();
        for entry in reply::items(value)? {
            let mut pair = reply::items(entry)?;
            let delivery = expect_text("an entry id", &part(&mut pair, 0, "entry id")?)?;
            let fields = reply::fields(part(&mut pair, 1, "entry fields")?)?;
            match decode_assignment(&key, &delivery, &fields) {
                Ok(assignment) => out.push(assignment),
                Err(error) => {
                    tracing::error!(%error, worker = %worker, delivery, "skipping an assignment entry that cannot be decoded");
                }
            }
        }
        Ok(out)
    }

    /// See [`crate::Bookings::ack_assignment`].
    pub(super) async fn ack(
        &self,
        worker: &WorkerId,
        epoch: Option<u64>,
        delivery: &str,
    ) -> Result<()> {
        if !is_entry_id(delivery) {
            return Err(StoreError::InvalidArgument(format!(
                "delivery id {delivery:?} is not one of ours"
            )));
        }
        let call = ScriptCall::new(
            &SCRIPTS.ack,
            vec![self.keys.worker(worker), self.keys.assign(worker)],
            vec![delivery.to_owned(), epoch_arg(epoch)],
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => Ok(()),
            "unknown" => Err(StoreError::UnknownWorker(worker.clone())),
            "stale" => Err(stale(worker, epoch, &mut parts)?),
            _ => Err(unexpected("ack", &Value::Array(parts))),
        }
    }

    async fn require_worker(&self, worker: &WorkerId) -> Result<()> {
        let key = self.keys.worker(worker);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        match self.command(&key, cmd).await? {
            Value::Int(0) => Err(StoreError::UnknownWorker(worker.clone())),
            _ => Ok(()),
        }
    }
}

/// The entries of an XREADGROUP reply on one stream (`nil` when the block timed out).
pub(super) fn stream_entries(value: Value) -> Result<Vec<Value>> {
    let streams: Vec<Value> = match value {
        Value::Nil => return Ok(Vec::new()),
        // RESP3 answers a map stream -> entries.
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => reply::items(other)?
            .into_iter()
            .map(|stream| {
                let mut pair = reply::items(stream)?;
                part(&mut pair, 1, "stream entries")
            })
            .collect::<Result<_>>()?,
    };
    let mut entries = Vec::new();
    for stream in streams {
        entries.extend(reply::items(stream)?);
    }
    Ok(entries)
}

/// A stream entry id `ms-seq`.
pub(super) fn is_entry_id(text: &str) -> bool {
    text.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_two_numbers() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(!is_entry_id("17"));
        assert!(!is_entry_id("a-1"));
        assert!(!is_entry_id("1-"));
        assert!(!is_entry_id("-1"));
    }

    #[test]
    fn a_timed_out_read_has_no_entries() {
        assert!(stream_entries(Value::Nil).unwrap().is_empty());
    }
}
