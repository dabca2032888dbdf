//! [`Provisioning`] on Redis: one hash per pool, `P:{q}:provisioned:POOL`, worker id ->
//! `started_ms expires_ms`. Each operation is one command on that one key, so each is
//! atomic on its own and runs unchanged on Cluster.

use super::reply;
use super::store::RedisStore;
use crate::{PendingWorker, Provisioning, Result};
use async_trait::async_trait;
use berth_core::{PoolName, WorkerId};
use redis::{Value, cmd};

#[async_trait]
impl Provisioning for RedisStore {
    async fn record_provisioned(&self, pool: &PoolName, workers: &[PendingWorker]) -> Result<()> {
        if workers.is_empty() {
            return Ok(());
        }
        let key = self.keys.provisioned(pool);
        let mut hset = cmd("HSET");
        hset.arg(&key);
        for pending in workers {
            let times = format!("{} {}", pending.started_ms, pending.expires_ms);
            hset.arg(pending.worker.as_str()).arg(times);
        }
        self.command(&key, hset).await?;
        Ok(())
    }

    async fn provisioned(&self, pool: &PoolName) -> Result<Vec<PendingWorker>> {
        let key = self.keys.provisioned(pool);
        let mut hgetall = cmd("HGETALL");
        hgetall.arg(&key);
        let fields = reply::fields(self.command(&key, hgetall).await?)?;
        let mut pending: Vec<PendingWorker> = fields
            .iter()
            .filter_map(|(id, times)| decode(&key, id, times))
            .collect();
        pending.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(pending)
    }

    async fn forget_provisioned(&self, pool: &PoolName, workers: &[WorkerId]) -> Result<usize> {
        if workers.is_empty() {
            return Ok(0);
        }
        let key = self.keys.provisioned(pool);
        let mut hdel = cmd("HDEL");
        hdel.arg(&key);
        for id in workers {
            hdel.arg(id.as_str());
        }
        match self.command(&key, hdel).await? {
            Value::Int(n) => {
                usize::try_from(n).map_err(|_| reply::unexpected("HDEL's count", &Value::Int(n)))
            }
            other => Err(reply::unexpected("HDEL's count", &other)),
        }
    }
}

/// A recorded pending worker, or `None` (logged) if its id or times do not read.
fn decode(key: &str, id: &str, times: &str) -> Option<PendingWorker> {
    let parsed = WorkerId::new(id).ok().zip(
        times
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))),
    );
    let Some((worker, (started_ms, expires_ms))) = parsed else {
        tracing::warn!(
            key,
            field = id,
            value = times,
            "a pending worker does not read back; it no longer counts"
        );
        return None;
    };
    Some(PendingWorker {
        worker,
        started_ms,
        expires_ms,
    })
}
