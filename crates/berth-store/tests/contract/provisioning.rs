//! The provisioning role: workers started and not registered yet, recorded per pool,
//! seen by every client, forgotten once.

use super::{Connect, config, wid};
use berth_core::*;
use berth_store::*;

fn pending(id: &str, started_ms: u64) -> PendingWorker {
    PendingWorker {
        worker: wid(id),
        started_ms,
        expires_ms: started_ms + 300_000,
    }
}

pub async fn provisioned_workers_are_recorded_per_pool_and_forgotten_once(connect: impl Connect) {
    let config = config("provisioned");
    let (a, b) = (connect(config.clone()).await, connect(config).await);
    let (gpu, cpu) = (PoolName::new("gpu").unwrap(), PoolName::new("cpu").unwrap());
    assert!(a.provisioned(&gpu).await.unwrap().is_empty());
    a.record_provisioned(&gpu, &[pending("w-2", 10), pending("w-1", 10)])
        .await
        .unwrap();
    a.record_provisioned(&cpu, &[pending("c-1", 20)])
        .await
        .unwrap();
    a.record_provisioned(&gpu, &[]).await.unwrap();
    a.record_provisioned(&gpu, &[pending("w-2", 30)])
        .await
        .unwrap();
    assert_eq!(
        b.provisioned(&gpu).await.unwrap(),
        vec![pending("w-1", 10), pending("w-2", 30)],
        "sorted by id, a worker recorded again replaced"
    );
    assert_eq!(
        b.forget_provisioned(&gpu, &[wid("w-1"), wid("c-1"), wid("nobody")])
            .await
            .unwrap(),
        1,
        "only the pool's own entries are forgotten"
    );
    assert_eq!(a.forget_provisioned(&gpu, &[wid("w-1")]).await.unwrap(), 0);
    assert_eq!(a.forget_provisioned(&gpu, &[]).await.unwrap(), 0);
    assert_eq!(a.provisioned(&gpu).await.unwrap(), vec![pending("w-2", 30)]);
    assert_eq!(b.provisioned(&cpu).await.unwrap(), vec![pending("c-1", 20)]);
}
