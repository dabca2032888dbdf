//! Tests of `LocalCluster` against real redis-server processes. They fail
//! (never skip) when redis-server or redis-cli is missing.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use berth_localredis::{
    CLUSTER_NODES, LocalCluster, LocalRedisError, SLOT_COUNT, command, key_slot, query,
};
use redis::Value;

/// Unwraps, panicking with the error's `Display` (which includes log tails).
fn ok<T>(r: Result<T, LocalRedisError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn refuses_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn cluster_covers_all_slots_and_fails_over() {
    let t = Instant::now();
    let mut cluster = ok(LocalCluster::start());
    eprintln!("cluster started in {:?}", t.elapsed());

    assert_eq!(cluster.ports().len(), CLUSTER_NODES);
    assert_eq!(cluster.urls().len(), CLUSTER_NODES);
    for (url, port) in cluster.urls().iter().zip(cluster.ports()) {
        assert_eq!(url, &format!("redis://127.0.0.1:{port}/"));
    }

    // All slots covered, by three primaries with one replica each.
    let slots = ok(cluster.check_healthy());
    let covered: u32 = slots.iter().map(|r| u32::from(r.end - r.start) + 1).sum();
    assert_eq!(covered, u32::from(SLOT_COUNT));
    let mut primaries: Vec<u16> = slots.iter().map(|r| r.primary).collect();
    primaries.sort_unstable();
    primaries.dedup();
    assert_eq!(primaries.len(), 3, "{slots:?}");
    for &p in &primaries {
        assert_eq!(ok(cluster.replicas_of(p)).len(), 1, "primary {p}");
    }

    // Our slot computation agrees with the server's.
    let any = cluster.ports()[0];
    for key in [
        "foo",
        "bar",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "",
    ] {
        let server = ok(command(any, &["CLUSTER", "KEYSLOT", key]));
        assert_eq!(
            server,
            Value::Int(i64::from(key_slot(key.as_bytes()))),
            "key {key:?}"
        );
    }

    // The primary of a key accepts writes to it; another primary redirects.
    let old = ok(cluster.primary_for_key("foo"));
    assert_eq!(ok(cluster.primary_for_slot(12182)), old);
    assert_eq!(ok(command(old, &["SET", "foo", "1"])), Value::Okay);
    let other = *primaries.iter().find(|&&p| p != old).unwrap();
    assert!(matches!(
        command(other, &["GET", "foo"]),
        Err(LocalRedisError::ServerError { message, .. }) if message.starts_with("MOVED 12182 ")
    ));
    assert!(matches!(
        cluster.primary_for_slot(SLOT_COUNT),
        Err(LocalRedisError::SlotOutOfRange { .. })
    ));

    // Kill that primary; a replica takes over.
    assert!(matches!(
        cluster.wait_for_failover(old, Duration::from_secs(1)),
        Err(LocalRedisError::NodeNotKilled { .. })
    ));
    let t = Instant::now();
    ok(cluster.kill_node(old));
    assert!(refuses_connections(old));
    assert!(!cluster.ports().contains(&old));
    assert_eq!(cluster.urls().len(), CLUSTER_NODES - 1);
    assert!(matches!(
        cluster.kill_node(old),
        Err(LocalRedisError::NodeAlreadyKilled { .. })
    ));
    let new = ok(cluster.wait_for_failover(old, Duration::from_secs(20)));
    eprintln!("failover took {:?} ({old} -> {new})", t.elapsed());
    assert_ne!(new, old);

    // Healthy again, and the key's slot is served by the promoted replica.
    let slots = ok(cluster.check_healthy());
    assert!(slots.iter().all(|r| r.primary != old), "{slots:?}");
    assert_eq!(ok(cluster.primary_for_key("foo")), new);
    for port in cluster.ports() {
        let info: String = ok(query(port, &["CLUSTER", "INFO"]));
        assert!(info.contains("cluster_state:ok"), "{info:?}");
    }
    assert!(matches!(
        cluster.kill_node(1),
        Err(LocalRedisError::UnknownNode { port: 1, .. })
    ));
}

#[test]
fn drop_stops_every_node() {
    let mut cluster = ok(LocalCluster::start());
    let ports = cluster.ports();
    // Killing a replica is allowed, but there is nothing to fail over.
    let slots = ok(cluster.slots());
    let replica = ok(cluster.replicas_of(slots[0].primary))[0];
    assert!(ok(cluster.replicas_of(replica)).is_empty());
    ok(cluster.kill_node(replica));
    assert!(matches!(
        cluster.wait_for_failover(replica, Duration::from_secs(1)),
        Err(LocalRedisError::NotAPrimary { .. })
    ));
    assert!(
        ports
            .iter()
            .all(|&p| p == replica || !refuses_connections(p))
    );
    drop(cluster);
    for port in ports {
        assert!(
            refuses_connections(port),
            "port {port} still accepts connections"
        );
    }
}

#[test]
fn a_killed_primary_restarts_as_a_replica_of_its_successor() {
    let mut cluster = ok(LocalCluster::start());
    let old = ok(cluster.primary_for_key("foo"));
    ok(cluster.kill_node(old));
    let new = ok(cluster.wait_for_failover(old, Duration::from_secs(30)));
    ok(cluster.restart_node(old));
    assert!(
        matches!(
            cluster.restart_node(old),
            Err(LocalRedisError::NodeNotKilled { .. })
        ),
        "a running node cannot be restarted"
    );
    ok(cluster.wait_for_rejoin(old, Duration::from_secs(30)));
    assert_eq!(ok(cluster.primary_for_key("foo")), new);
    assert!(ok(cluster.replicas_of(new)).contains(&old));
    assert_eq!(cluster.ports().len(), CLUSTER_NODES);
    // It can fail over again, back to the restarted node.
    ok(cluster.kill_node(new));
    assert_eq!(
        ok(cluster.wait_for_failover(new, Duration::from_secs(30))),
        old
    );
}
