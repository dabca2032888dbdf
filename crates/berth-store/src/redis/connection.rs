//! The transport: one shared multiplexed connection (standalone: a [`ConnectionManager`],
//! which reconnects by itself; cluster: a [`ClusterConnection`], which follows the slot map
//! and fails over by itself), plus a small pool of dedicated connections for blocking reads.
//!
//! A blocking command (XREADGROUP BLOCK) on the shared connection would stall every command
//! pipelined behind it, so blocking calls each take a dedicated connection from the pool
//! for their duration.
//!
//! Both connect as a [`RedisTarget`] says: its user and password, TLS for `rediss://`
//! URLs with its certificates. Logs show URLs redacted.

use super::keys::route;
use super::target::RedisTarget;
use crate::{Result, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, RedisError, RedisResult,
    Value,
};
use std::collections::HashMap;
use std::time::Duration;

/// How long the shared connection waits for one reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the cluster client keeps retrying one request (redirections, failover).
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long connecting to one server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How much longer than its BLOCK time a blocking call may take before it is abandoned.
const BLOCKING_GRACE: Duration = Duration::from_secs(5);
/// Idle dedicated connections kept for blocking calls.
const MAX_IDLE_BLOCKING: usize = 8;

/// One command and the key it is routed by.
#[derive(Debug, Clone)]
pub struct Routed {
    /// A key of the command (all its keys share this key's slot).
    pub key: String,
    /// The command.
    pub cmd: Cmd,
}

#[derive(Clone)]
enum Shared {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

enum Dedicated {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

enum Opener {
    Standalone(Box<Client>),
    Cluster(Box<ClusterClient>),
}

/// The connections of one store.
pub struct Connection {
    shared: Shared,
    opener: Opener,
    idle: parking_lot::Mutex<Vec<Dedicated>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("cluster", &self.is_cluster())
            .field("idle_blocking", &self.idle.lock().len())
            .finish()
    }
}

impl Connection {
    /// Connects to `target`: a Cluster through its seeds if `cluster`, else the standalone
    /// server of its one URL.
    pub async fn open(target: &RedisTarget, cluster: bool) -> Result<Connection> {
        let infos = target.connection_infos()?;
        let tls = infos
            .iter()
            .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
        if target.certificates().is_some() && !tls {
            return Err(StoreError::InvalidArgument(format!(
                "a CA or client certificate was given for {}, but only rediss:// URLs use TLS",
                target.redacted()
            )));
        }
        match infos.as_slice() {
            [] => Err(StoreError::InvalidArgument("no Redis URL given".to_owned())),
            [info] if !cluster => Ok(Self::standalone(info.clone(), target).await?),
            [_] => Ok(Self::cluster(infos, target).await?),
            _ if !cluster => Err(StoreError::InvalidArgument(format!(
                "a standalone Redis takes one URL, got {}",
                target.redacted()
            ))),
            _ => Ok(Self::cluster(infos, target).await?),
        }
    }

    /// Connects to a standalone server.
    async fn standalone(info: ConnectionInfo, target: &RedisTarget) -> RedisResult<Connection> {
        let client = match target.certificates() {
            Some(certificates) => Client::build_with_tls(info, certificates)?,
            None => Client::open(info)?,
        };
        // One connection without retries first: refused credentials or a failed TLS
        // handshake fail at once instead of after the manager's retries. It is kept for
        // blocking reads.
        let first = dedicated_standalone(&client).await?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(6)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
        tracing::info!(url = target.redacted(), "connected to redis (standalone)");
        Ok(Connection {
            shared: Shared::Standalone(manager),
            opener: Opener::Standalone(Box::new(client)),
            idle: parking_lot::Mutex::new(vec![Dedicated::Standalone(first)]),
        })
    }

    /// Connects to a cluster through any of its nodes.
    async fn cluster(infos: Vec<ConnectionInfo>, target: &RedisTarget) -> RedisResult<Connection> {
        let client = cluster_builder(&infos, target)
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(CLUSTER_OVERALL_TIMEOUT))
            .build()?;
        let connection = client.get_async_connection().await?;
        // Blocking reads get no response timeout of their own; `blocking` bounds them.
        let blocking = cluster_builder(&infos, target).build()?;
        tracing::info!(
            nodes = infos.len(),
            urls = target.redacted(),
            "connected to redis (cluster)"
        );
        Ok(Connection {
            shared: Shared::Cluster(connection),
            opener: Opener::Cluster(Box::new(blocking)),
            idle: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// True on Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.shared, Shared::Cluster(_))
    }

    /// Sends one command on the shared connection (on cluster: to the node of its key, or
    /// to every node for SCRIPT LOAD and the like). Error replies come back as errors.
    pub async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self.shared.clone() {
            Shared::Standalone(mut c) => cmd.query_async(&mut c).await,
            Shared::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// Sends `commands` as one round trip: one pipeline on standalone; on cluster one
    /// pipeline per slot route (commands with the same route keep their order), all sent
    /// at once. Returns one reply per command, in order; an error reply comes back as
    /// [`Value::ServerError`] in its place. A transport error fails the whole batch.
    pub async fn batch(&self, commands: Vec<Routed>) -> RedisResult<Vec<Value>> {
        match self.shared.clone() {
            Shared::Standalone(mut c) => pipeline(commands).query_async(&mut c).await,
            Shared::Cluster(c) => cluster_batch(c, commands).await,
        }
    }

    /// Runs a blocking command on a dedicated connection, abandoning it after `block` plus
    /// a grace period (the connection is then dropped, not reused).
    pub async fn blocking(&self, cmd: &Cmd, block: Duration) -> RedisResult<Value> {
        let mut dedicated = self.take_dedicated().await?;
        let call = async {
            match &mut dedicated {
                Dedicated::Standalone(c) => cmd.query_async(c).await,
                Dedicated::Cluster(c) => cmd.query_async(c).await,
            }
        };
        let result = tokio::time::timeout(block + BLOCKING_GRACE, call).await;
        match result {
            Ok(Ok(value)) => {
                self.give_back(dedicated);
                Ok(value)
            }
            Ok(Err(error)) => {
                if !(error.is_io_error() || error.is_timeout() || error.is_connection_dropped()) {
                    self.give_back(dedicated);
                }
                Err(error)
            }
            Err(_) => {
                tracing::warn!(
                    ?block,
                    "a blocking redis read overran its block time; dropping its connection"
                );
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "blocking read timed out",
                )))
            }
        }
    }

    async fn take_dedicated(&self) -> RedisResult<Dedicated> {
        if let Some(idle) = self.idle.lock().pop() {
            return Ok(idle);
        }
        tracing::debug!("opening a dedicated connection for blocking reads");
        match &self.opener {
            Opener::Standalone(client) => {
                Ok(Dedicated::Standalone(dedicated_standalone(client).await?))
            }
            Opener::Cluster(client) => Ok(Dedicated::Cluster(client.get_async_connection().await?)),
        }
    }

    fn give_back(&self, dedicated: Dedicated) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(dedicated);
        }
    }
}

/// A connection of its own to a standalone server, without a response timeout (blocking
/// calls bound themselves).
async fn dedicated_standalone(client: &Client) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The cluster client's settings; the user, the password and the certificates apply to
/// every node it discovers, not only to the seeds.
fn cluster_builder(infos: &[ConnectionInfo], target: &RedisTarget) -> ClusterClientBuilder {
    let mut builder = ClusterClientBuilder::new(infos.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .retries(12)
        .min_retry_wait(50)
        .max_retry_wait(1000);
    if let Some(first) = infos.first().map(ConnectionInfo::redis_settings) {
        if let Some(user) = first.username() {
            builder = builder.username(user);
        }
        if let Some(password) = first.password() {
            builder = builder.password(password);
        }
    }
    if let Some(certificates) = target.certificates() {
        builder = builder.certs(certificates);
    }
    builder
}

fn pipeline(commands: Vec<Routed>) -> redis::Pipeline {
    let mut pipe = redis::Pipeline::with_capacity(commands.len());
    pipe.ignore_errors();
    for routed in commands {
        pipe.add_command(routed.cmd);
    }
    pipe
}

/// One pipeline per slot route, all in flight together; replies put back in order.
async fn cluster_batch(
    connection: ClusterConnection,
    commands: Vec<Routed>,
) -> RedisResult<Vec<Value>> {
    let total = commands.len();
    let mut groups: HashMap<String, Vec<(usize, Cmd)>> = HashMap::new();
    for (index, routed) in commands.into_iter().enumerate() {
        groups
            .entry(route(&routed.key).to_owned())
            .or_default()
            .push((index, routed.cmd));
    }
    let sends = groups.into_values().map(|group| {
        let mut c = connection.clone();
        async move {
            let (indexes, cmds): (Vec<usize>, Vec<Cmd>) = group.into_iter().unzip();
            let pipe = pipeline(
                cmds.into_iter()
                    .map(|cmd| Routed {
                        key: String::new(),
                        cmd,
                    })
                    .collect(),
            );
            let values: Vec<Value> = pipe.query_async(&mut c).await?;
            Ok::<_, RedisError>(indexes.into_iter().zip(values).collect::<Vec<_>>())
        }
    });
    let mut out = vec![Value::Nil; total];
    for group in futures::future::join_all(sends).await {
        for (index, value) in group? {
            if let Some(slot) = out.get_mut(index) {
                *slot = value;
            }
        }
    }
    Ok(out)
}
