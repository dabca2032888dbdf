//! Reading a node's view of the cluster: `CLUSTER INFO`, `CLUSTER SLOTS`
//! and `ROLE`, parsed from the `redis` crate's [`Value`]s.

use redis::{InfoDict, Value};

use crate::LocalRedisError;
use crate::client;
use crate::slot::SLOT_COUNT;

/// A range of hash slots and the nodes that serve it, as reported by
/// `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slot of the range.
    pub start: u16,
    /// The last slot of the range (inclusive).
    pub end: u16,
    /// The port of the primary serving the range.
    pub primary: u16,
    /// The ports of its replicas, as `CLUSTER SLOTS` lists them: only those
    /// not known to have failed and whose replication offset is non-zero,
    /// which in an idle cluster takes up to 10 s (`repl-ping-replica-period`)
    /// after startup. See [`LocalCluster::replicas_of`](crate::LocalCluster::replicas_of)
    /// for connected replicas.
    pub replicas: Vec<u16>,
}

impl SlotRange {
    /// Whether `slot` is in this range.
    #[must_use]
    pub fn contains(&self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

/// What `ROLE` says about a node.
pub(super) enum Role {
    /// A primary, with the ports of its connected replicas.
    Primary { replicas: Vec<u16> },
    /// A replica, with the port of its primary and the state of its link
    /// to it (`connected` once in sync).
    Replica { primary: u16, link: String },
}

/// Reads `CLUSTER INFO` from the node on `port`.
pub(super) fn cluster_info(port: u16) -> Result<InfoDict, LocalRedisError> {
    client::query(port, &["CLUSTER", "INFO"])
}

/// Reads and parses `ROLE` from the node on `port`.
pub(super) fn role(port: u16) -> Result<Role, LocalRedisError> {
    let reply = client::command(port, &["ROLE"])?;
    parse_role(&reply).ok_or_else(|| LocalRedisError::UnexpectedReply {
        port,
        command: String::from("ROLE"),
        detail: format!("{reply:?}"),
    })
}

/// Parses a `ROLE` reply; `None` if it does not have the expected shape.
fn parse_role(reply: &Value) -> Option<Role> {
    let items = reply.as_sequence()?;
    match text(items.first()?)?.as_str() {
        // ["master", offset, [[ip, port, offset], ...]]
        "master" => {
            let replicas = items
                .get(2)?
                .as_sequence()?
                .iter()
                .map(|r| port_of(r.as_sequence()?.get(1)?))
                .collect::<Option<_>>()?;
            Some(Role::Primary { replicas })
        }
        // ["slave", ip, port, state, offset]
        "slave" => Some(Role::Replica {
            primary: port_of(items.get(2)?)?,
            link: text(items.get(3)?)?,
        }),
        _ => None,
    }
}

/// Reads and parses `CLUSTER SLOTS` from the node on `port`, sorted by
/// first slot.
pub(super) fn cluster_slots(port: u16) -> Result<Vec<SlotRange>, LocalRedisError> {
    let reply = client::command(port, &["CLUSTER", "SLOTS"])?;
    let bad = |detail: String| LocalRedisError::UnexpectedReply {
        port,
        command: String::from("CLUSTER SLOTS"),
        detail,
    };
    let entries = reply
        .as_sequence()
        .ok_or_else(|| bad(format!("expected an array, got {reply:?}")))?;
    let mut ranges = entries
        .iter()
        .map(|entry| parse_slot_range(entry).ok_or_else(|| bad(format!("bad entry {entry:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    ranges.sort_by_key(|r| r.start);
    Ok(ranges)
}

/// Parses one `CLUSTER SLOTS` entry, `[start, end, primary, replica...]`
/// where each node is `[ip, port, id, ...]`; `None` if it does not have
/// that shape.
fn parse_slot_range(entry: &Value) -> Option<SlotRange> {
    let fields = entry.as_sequence()?;
    let slot = |i: usize| {
        redis::from_redis_value_ref::<u16>(fields.get(i)?)
            .ok()
            .filter(|&s| s < SLOT_COUNT)
    };
    let node_port = |node: &Value| port_of(node.as_sequence()?.get(1)?);
    Some(SlotRange {
        start: slot(0)?,
        end: slot(1)?,
        primary: node_port(fields.get(2)?)?,
        replicas: fields
            .iter()
            .skip(3)
            .map(node_port)
            .collect::<Option<_>>()?,
    })
}

/// A port given as an integer or as text (`ROLE` uses both).
fn port_of(value: &Value) -> Option<u16> {
    redis::from_redis_value_ref(value).ok()
}

/// A simple or bulk string as text.
fn text(value: &Value) -> Option<String> {
    redis::from_redis_value_ref(value).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(port: i64) -> Value {
        Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")])
    }

    #[test]
    fn parses_cluster_slots_entries() {
        let entry = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node(7000),
            node(7004),
        ]);
        assert_eq!(
            parse_slot_range(&entry).unwrap(),
            SlotRange {
                start: 0,
                end: 5460,
                primary: 7000,
                replicas: vec![7004],
            }
        );
        let out_of_range = Value::Array(vec![Value::Int(0), Value::Int(16384), node(7000)]);
        assert!(parse_slot_range(&out_of_range).is_none());
        let no_primary = Value::Array(vec![Value::Int(0), Value::Int(5460)]);
        assert!(parse_slot_range(&no_primary).is_none());
    }

    #[test]
    fn parses_roles() {
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(42),
            Value::Array(vec![Value::Array(vec![
                bulk("127.0.0.1"),
                bulk("7004"),
                bulk("42"),
            ])]),
        ]);
        assert!(matches!(
            parse_role(&primary),
            Some(Role::Primary { replicas }) if replicas == [7004]
        ));
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(7000),
            bulk("connected"),
            Value::Int(42),
        ]);
        assert!(matches!(
            parse_role(&replica),
            Some(Role::Replica { primary: 7000, link }) if link == "connected"
        ));
        assert!(parse_role(&Value::Array(vec![bulk("sentinel")])).is_none());
        assert!(parse_role(&Value::Okay).is_none());
    }
}
