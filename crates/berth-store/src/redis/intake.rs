//! Container records and the intake: submit, read, transition, claim, settle, and the
//! delayed-retry backlog. Every key here carries the `{q}` hash tag, so each script runs
//! on one slot.

use super::codec::{self, MAX_LUA_INT, decode_record};
use super::queue::{is_entry_id, stream_entries};
use super::reply::{self, expect_text, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::{MAX_BATCH, RedisStore, millis};
use crate::model::*;
use crate::{Result, SettleItem, StoreError};
use berth_core::{AttemptId, ContainerRecord, ContainerState, PoolDemand, Transition};
use berth_core::{ContainerId, ContainerRequest, GpuType, PoolName, Resources, WorkerId};
use redis::Value;
use std::time::Duration;

/// A claimable entry as the claim and screen scripts report it.
struct RawClaim {
    entry: String,
    id: String,
    request: String,
    redelivered: bool,
}

impl RedisStore {
    /// See [`crate::Intake::submit`]: the whole batch is one script call.
    pub(super) async fn submit_requests(
        &self,
        requests: &[ContainerRequest],
    ) -> Result<Vec<SubmitOutcome>> {
        crate::validate_requests(requests)?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = vec![self.keys.intake(), self.keys.containers()];
        let mut args = Vec::with_capacity(2 * requests.len());
        for request in requests {
            keys.push(self.keys.record(&request.id));
            args.push(request.id.to_string());
            args.push(serde_json::to_string(request)?);
        }
        let call = ScriptCall::new(&SCRIPTS.submit, keys, args);
        let outcomes = reply::items(self.script(call).await?)?;
        if outcomes.len() != requests.len() {
            return Err(unexpected(
                "one outcome per request",
                &Value::Array(outcomes),
            ));
        }
        requests
            .iter()
            .zip(outcomes)
            .map(|(request, value)| {
                let text = expect_text("a submit outcome", &value)?;
                if text == "accepted" {
                    return Ok(SubmitOutcome::Accepted);
                }
                self.parse_state(&request.id, &text)
                    .map(SubmitOutcome::Duplicate)
            })
            .collect()
    }

    fn parse_state(&self, id: &ContainerId, text: &str) -> Result<ContainerState> {
        ContainerState::parse(text).ok_or_else(|| {
            codec::corrupt(
                &self.keys.record(id),
                "state",
                &format!("{text:?} is not a state"),
            )
        })
    }

    /// See [`crate::Records::container`]: one HGETALL.
    pub(super) async fn read_container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        let key = self.keys.record(id);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let fields = reply::fields(self.command(&key, cmd).await?)?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode_record(&key, &fields).map(Some)
    }

    /// See [`crate::Records::transition`].
    pub(super) async fn move_container(
        &self,
        id: &ContainerId,
        transition: &Transition,
    ) -> Result<ContainerRecord> {
        let key = self.keys.record(id);
        let call = ScriptCall::new(
            &SCRIPTS.transition,
            vec![key.clone()],
            transition_args(transition),
        );
        let (tag, mut parts) = tagged(self.script(call).await?)?;
        match tag.as_str() {
            "ok" => decode_record(&key, &reply::fields(part(&mut parts, 0, "record")?)?),
            "unknown" => Err(StoreError::UnknownContainer(id.clone())),
            "refused" => {
                let state = expect_text("a state", &part(&mut parts, 0, "state")?)?;
                let why = expect_text("a reason", &part(&mut parts, 1, "why")?)?;
                Err(StoreError::InvalidTransition {
                    container: id.clone(),
                    from: self.parse_state(id, &state)?,
                    why,
                })
            }
            _ => Err(unexpected("transition", &Value::Array(parts))),
        }
    }

    /// See [`crate::Intake::claim`]: one script call reclaims stale entries and reads new
    /// ones; when that finds nothing and `wait` is not zero, a blocking XREADGROUP on a
    /// dedicated connection waits, and a second script screens what it returns.
    pub(super) async fn claim_requests(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claim>> {
        if consumer.is_empty() {
            return Err(StoreError::InvalidArgument(
                "the consumer name must not be empty".to_owned(),
            ));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_BATCH);
        let call = ScriptCall::new(
            &SCRIPTS.claim,
            vec![self.keys.intake()],
            vec![
                self.keys.record_prefix(),
                consumer.to_owned(),
                self.config.claim_visibility.as_millis().to_string(),
                max.to_string(),
                if self.reclaim_due() { "1" } else { "0" }.to_owned(),
            ],
        );
        let raw = self.screened(self.script(call).await?)?;
        if !raw.is_empty() || wait.is_zero() {
            return self.to_claims(raw).await;
        }
        let entries = self.wait_for_intake(consumer, max, wait).await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![self.keys.record_prefix()];
        args.extend(entries);
        let call = ScriptCall::new(&SCRIPTS.screen, vec![self.keys.intake()], args);
        let raw = self.screened(self.script(call).await?)?;
        self.to_claims(raw).await
    }

    /// Whether this claim also takes over stale claims (entries claimed and not settled
    /// within the visibility timeout): at most once per quarter of the timeout, and at least
    /// once a second, while claims go on. Looking costs Redis time in proportion to the
    /// claims outstanding (XAUTOCLAIM scans them), which a busy engine paid on every claim;
    /// a stale claim is now taken over at most that much later than its timeout.
    fn reclaim_due(&self) -> bool {
        let now = std::time::Instant::now();
        let mut next = self.reclaim_at.lock();
        if next.is_some_and(|at| now < at) {
            return false;
        }
        let every = (self.config.claim_visibility / 4).min(Duration::from_secs(1));
        *next = Some(now + every);
        true
    }

    /// Blocks for new intake entries; returns their ids.
    async fn wait_for_intake(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<String>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg("engine")
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(wait))
            .arg("STREAMS")
            .arg(self.keys.intake())
            .arg(">");
        let value = reply::ok(self.blocking(cmd, wait).await?)?;
        stream_entries(value)?
            .into_iter()
            .map(|entry| {
                let mut pair = reply::items(entry)?;
                expect_text("an entry id", &part(&mut pair, 0, "entry id")?)
            })
            .collect()
    }

    /// The claims of a claim or screen reply `{claims, bad}`; bad entries (already dropped
    /// by the script) are logged.
    fn screened(&self, value: Value) -> Result<Vec<RawClaim>> {
        let mut halves = reply::items(value)?;
        let claims = reply::items(part(&mut halves, 0, "claims")?)?;
        for bad in reply::items(part(&mut halves, 1, "bad entries")?)? {
            let parts: Vec<String> = reply::items(bad)?
                .iter()
                .map(|v| reply::text(v).unwrap_or_default())
                .collect();
            tracing::error!(entry = ?parts.first(), container = ?parts.get(1), problem = ?parts.get(2), "dropped an intake entry that cannot be claimed");
        }
        claims
            .into_iter()
            .map(|claim| {
                let mut parts = reply::items(claim)?;
                Ok(RawClaim {
                    entry: expect_text("an entry id", &part(&mut parts, 0, "entry")?)?,
                    id: expect_text("a container id", &part(&mut parts, 1, "id")?)?,
                    request: expect_text("a request", &part(&mut parts, 2, "request")?)?,
                    redelivered: expect_text("a flag", &part(&mut parts, 3, "redelivered")?)?
                        == "1",
                })
            })
            .collect()
    }

    /// Parses the claimed requests, each with a fresh attempt. A request that does not
    /// parse (or whose id differs from the record's) cannot be placed: its record is
    /// failed with the reason, and its entry settled.
    async fn to_claims(&self, raw: Vec<RawClaim>) -> Result<Vec<Claim>> {
        let mut claims = Vec::with_capacity(raw.len());
        let mut unusable = Vec::new();
        for r in raw {
            match parse_claimed(&r) {
                Ok(request) => claims.push(Claim {
                    entry: r.entry,
                    request,
                    attempt: crate::new_attempt(),
                    redelivered: r.redelivered,
                }),
                Err(problem) => {
                    tracing::error!(entry = %r.entry, container = %r.id, %problem, "failing a queued request that cannot be read");
                    if let Ok(container) = ContainerId::new(&r.id) {
                        unusable.push(SettleItem {
                            entry: r.entry,
                            container,
                            settlement: Settlement::Failed {
                                reason: format!("the stored request cannot be read: {problem}"),
                            },
                        });
                    }
                }
            }
        }
        if !unusable.is_empty() {
            self.settle_claims(&unusable).await?;
        }
        Ok(claims)
    }

    /// See [`crate::Intake::settle`]: all items in one script call, each atomic.
    pub(super) async fn settle_claims(&self, items: &[SettleItem]) -> Result<Vec<SettleOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = vec![self.keys.intake(), self.keys.backlog()];
        let mut args = vec![crate::now_ms().to_string()];
        for item in items {
            if !is_entry_id(&item.entry) {
                return Err(StoreError::InvalidArgument(format!(
                    "intake entry {:?} is not one of ours",
                    item.entry
                )));
            }
            keys.push(self.keys.record(&item.container));
            args.extend(settle_args(item)?);
        }
        let call = ScriptCall::new(&SCRIPTS.settle, keys, args);
        let outcomes = reply::items(self.script(call).await?)?;
        if outcomes.len() != items.len() {
            return Err(unexpected("one outcome per item", &Value::Array(outcomes)));
        }
        items
            .iter()
            .zip(outcomes)
            .map(|(item, value)| self.decode_settled(&item.container, value))
            .collect()
    }

    fn decode_settled(&self, id: &ContainerId, value: Value) -> Result<SettleOutcome> {
        let (tag, mut parts) = tagged(value)?;
        match tag.as_str() {
            "done" => Ok(SettleOutcome::Done),
            "superseded" => {
                let mut text = |i: usize, what: &str| -> Result<String> {
                    expect_text(what, &part(&mut parts, i, what)?)
                };
                let state = self.parse_state(id, &text(0, "state")?)?;
                let worker = text(1, "worker")?;
                let attempt = text(2, "attempt")?;
                let holder = if worker.is_empty() || attempt.is_empty() {
                    None
                } else {
                    let worker = WorkerId::new(&worker).map_err(|e| {
                        codec::corrupt(&self.keys.record(id), "worker", &e.to_string())
                    })?;
                    Some((worker, AttemptId(attempt)))
                };
                Ok(SettleOutcome::Superseded { state, holder })
            }
            _ => Err(unexpected("settle", &Value::Array(parts))),
        }
    }

    /// See [`crate::Intake::promote_due`].
    pub(super) async fn promote(&self, now_ms: u64, max: usize) -> Result<usize> {
        let call = ScriptCall::new(
            &SCRIPTS.promote,
            vec![self.keys.intake(), self.keys.backlog()],
            vec![
                now_ms.min(MAX_LUA_INT).to_string(),
                max.min(MAX_BATCH).to_string(),
            ],
        );
        let value = self.script(call).await?;
        match value {
            Value::Int(n) => usize::try_from(n).map_err(|_| unexpected("a count", &value)),
            other => Err(unexpected("a count", &other)),
        }
    }

    /// See [`crate::Intake::unmet_demand`]: one read-only script over the backlog.
    pub(super) async fn read_demand(&self) -> Result<Vec<PoolDemand>> {
        let backlog = self.keys.backlog();
        let call = ScriptCall::new(
            &SCRIPTS.demand,
            vec![backlog.clone()],
            vec![self.keys.record_prefix()],
        );
        let mut waiting = Vec::new();
        for entry in reply::items(self.script(call).await?)? {
            let parts: Vec<String> = reply::items(entry)?
                .iter()
                .map(|v| reply::text(v).unwrap_or_default())
                .collect();
            match parts.as_slice() {
                [bad, id, problem] if bad == "bad" => {
                    tracing::warn!(container = %id, %problem, "unreadable backlog record");
                }
                [pool, gpu, cpu, mem, gpus] => {
                    waiting.push(decode_demand(&backlog, pool, gpu, cpu, mem, gpus)?)
                }
                _ => return Err(unexpected("a demand entry", &Value::Nil)),
            }
        }
        Ok(berth_core::aggregate_demand(
            waiting.iter().map(|(p, g, r)| (p.as_ref(), g.as_ref(), *r)),
        ))
    }

    /// See [`crate::Intake::claim_provisioning`]: `SET NX PX` on the pool's intent key.
    pub(super) async fn provisioning_intent(
        &self,
        pool: &PoolName,
        intent: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let key = self.keys.provisioning(pool);
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LUA_INT);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(intent).arg("NX").arg("PX").arg(ttl_ms);
        Ok(matches!(self.command(&key, cmd).await?, Value::Okay))
    }

    /// See [`crate::Intake::backlog_len`]: ZCARD.
    pub(super) async fn count_backlog(&self) -> Result<u64> {
        let key = self.keys.backlog();
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(&key);
        self.count(&key, cmd).await
    }

    /// See [`crate::Intake::intake_len`]: XLEN (settled entries are deleted from the
    /// stream, so its length is what waits).
    pub(super) async fn count_intake(&self) -> Result<u64> {
        let key = self.keys.intake();
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(&key);
        self.count(&key, cmd).await
    }

    /// Runs a command that answers a count.
    async fn count(&self, key: &str, cmd: redis::Cmd) -> Result<u64> {
        let value = self.command(key, cmd).await?;
        match value {
            Value::Int(n) => u64::try_from(n).map_err(|_| unexpected("a count", &value)),
            other => Err(unexpected("a count", &other)),
        }
    }
}

fn parse_claimed(raw: &RawClaim) -> std::result::Result<ContainerRequest, String> {
    let request: ContainerRequest =
        serde_json::from_str(&raw.request).map_err(|e| format!("invalid request JSON: {e}"))?;
    if request.id.as_str() != raw.id {
        return Err(format!(
            "the request's id {} is not the record's {}",
            request.id, raw.id
        ));
    }
    Ok(request)
}

/// transition.lua's arguments: kind, worker, attempt, exit code, reason, now.
fn transition_args(transition: &Transition) -> Vec<String> {
    let now = crate::now_ms().to_string();
    let (kind, worker, attempt, code, reason) = match transition {
        Transition::Scheduled { worker, attempt } => {
            ("scheduled", Some(worker), Some(attempt), None, "")
        }
        Transition::Pulling { worker, attempt } => {
            ("pulling", Some(worker), Some(attempt), None, "")
        }
        Transition::Running { worker, attempt } => {
            ("running", Some(worker), Some(attempt), None, "")
        }
        Transition::Exited {
            worker,
            attempt,
            exit_code,
        } => ("exited", Some(worker), Some(attempt), Some(*exit_code), ""),
        Transition::Failed { reason } => ("failed", None, None, None, reason.as_str()),
        Transition::Lost { reason } => ("lost", None, None, None, reason.as_str()),
    };
    vec![
        kind.to_owned(),
        worker.map_or_else(String::new, ToString::to_string),
        attempt.map_or_else(String::new, |a| a.0.clone()),
        code.map_or_else(String::new, |c| c.to_string()),
        reason.to_owned(),
        now,
    ]
}

/// settle.lua's seven arguments of one item.
fn settle_args(item: &SettleItem) -> Result<[String; 7]> {
    let none = String::new;
    let (kind, a, b, c, d) = match &item.settlement {
        Settlement::Scheduled {
            worker,
            attempt,
            charge,
        } => (
            "scheduled",
            worker.to_string(),
            attempt.0.clone(),
            super::quotas::encode_charge(charge)?,
            none(),
        ),
        Settlement::Deferred {
            not_before_ms,
            reason,
            pool,
            gpu_type,
        } => (
            "deferred",
            (*not_before_ms).min(MAX_LUA_INT).to_string(),
            reason.clone(),
            pool.as_ref().map_or_else(none, ToString::to_string),
            gpu_type.as_ref().map_or_else(none, ToString::to_string),
        ),
        Settlement::Failed { reason } => ("failed", reason.clone(), none(), none(), none()),
    };
    Ok([
        item.entry.clone(),
        item.container.to_string(),
        kind.to_owned(),
        a,
        b,
        c,
        d,
    ])
}

/// One waiting container of demand.lua's reply: (pool, GPU type, resources).
type Waiting = (Option<PoolName>, Option<GpuType>, Resources);

fn decode_demand(
    key: &str,
    pool: &str,
    gpu: &str,
    cpu: &str,
    mem: &str,
    gpus: &str,
) -> Result<Waiting> {
    let bad = |field: &str, problem: String| StoreError::Corrupt {
        key: key.to_owned(),
        field: field.to_owned(),
        problem,
    };
    let pool = (!pool.is_empty())
        .then(|| PoolName::new(pool).map_err(|e| bad("demand_pool", e.to_string())))
        .transpose()?;
    let gpu = (!gpu.is_empty())
        .then(|| {
            gpu.parse::<GpuType>()
                .map_err(|e| bad("demand_gpu", e.to_string()))
        })
        .transpose()?;
    let number = |field: &str, text: &str| {
        text.parse::<u64>()
            .map_err(|e| bad(field, format!("{text:?}: {e}")))
    };
    let gpu_count =
        u32::try_from(number("gpu_count", gpus)?).map_err(|e| bad("gpu_count", e.to_string()))?;
    Ok((
        pool,
        gpu,
        Resources::new(number("cpu", cpu)?, number("mem", mem)?, gpu_count),
    ))
}
