//! The error type of this crate.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, talking to or stopping local
/// redis-server processes.
///
/// Every message says what happened and, where there is one, how to fix it.
/// Messages about a server that failed include the tail of its log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalRedisError {
    /// `redis-server` is not on `PATH`.
    #[error(
        "redis-server not found: run scripts/test.sh (it installs redis-server and redis-tools), \
         or apt-get install redis-server redis-tools"
    )]
    RedisServerNotFound,

    /// `redis-cli` (needed to create a cluster) is not on `PATH`.
    #[error(
        "redis-cli not found: run scripts/test.sh (it installs redis-server and redis-tools), \
         or apt-get install redis-server redis-tools"
    )]
    RedisCliNotFound,

    /// A program was found but could not be started.
    #[error("failed to start {program}: {source}; check that it is installed and executable")]
    Spawn {
        /// The program that failed to start.
        program: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A temporary directory (or a file in it) could not be created.
    #[error(
        "could not create {what} for redis-server: {source}; check that the temporary directory \
         ($TMPDIR or /tmp) exists, is writable and is not full"
    )]
    TempDir {
        /// What was being created.
        what: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// No free TCP port could be reserved on 127.0.0.1.
    #[error(
        "could not find a free TCP port on 127.0.0.1: {0}; check that the loopback interface is up"
    )]
    FreePort(#[source] io::Error),

    /// redis-server kept losing the race for the free ports it was given.
    #[error(
        "redis-server could not bind a free port after {attempts} attempts (another process took \
         it each time); log tail of the last attempt:\n{log_tail}"
    )]
    PortRace {
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the server log of the last attempt.
        log_tail: String,
    },

    /// redis-server exited while it was starting.
    #[error("redis-server on port {port} exited during startup ({status}); log tail:\n{log_tail}")]
    Exited {
        /// The port the server was told to listen on.
        port: u16,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },

    /// redis-server did not answer PING in time.
    #[error(
        "redis-server on port {port} did not answer PING within {waited:?} (last problem: \
         {last_problem}); it was killed; log tail:\n{log_tail}"
    )]
    StartTimeout {
        /// The port the server was told to listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last reason PING did not succeed.
        last_problem: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// `redis-cli --cluster create` failed or hung.
    #[error("`redis-cli --cluster create` failed ({status}); its output:\n{output}")]
    ClusterCreate {
        /// Its exit status, or a note that it timed out.
        status: String,
        /// Its combined stdout and stderr (tail).
        output: String,
    },

    /// The cluster did not become healthy in time.
    #[error(
        "the redis cluster did not become healthy within {waited:?}: {problem}; \
         node log tails:\n{log_tails}"
    )]
    ClusterTimeout {
        /// How long we waited.
        waited: Duration,
        /// The last problem seen.
        problem: String,
        /// The last lines of every node's log.
        log_tails: String,
    },

    /// No replica took over the slots of a killed primary in time.
    #[error(
        "no replica took over the slots of the killed primary on port {old_port} within \
         {waited:?}: {problem}; node log tails:\n{log_tails}"
    )]
    FailoverTimeout {
        /// The port of the killed primary.
        old_port: u16,
        /// How long we waited.
        waited: Duration,
        /// The last problem seen.
        problem: String,
        /// The last lines of every live node's log.
        log_tails: String,
    },

    /// The cluster is not healthy right now.
    #[error("the redis cluster is not healthy: {problem}")]
    ClusterUnhealthy {
        /// What is wrong.
        problem: String,
    },

    /// A connection to a server could not be opened.
    #[error(
        "could not connect to redis on 127.0.0.1:{port}: {source}; is the server still running?"
    )]
    Connect {
        /// The server's port.
        port: u16,
        /// The redis client's error.
        #[source]
        source: redis::RedisError,
    },

    /// Sending a command to a server, or reading its reply, failed or timed out.
    #[error(
        "sending `{command}` to redis on 127.0.0.1:{port} failed: {source}; is the server still \
         running?"
    )]
    Command {
        /// The server's port.
        port: u16,
        /// The command that was sent.
        command: String,
        /// The redis client's error.
        #[source]
        source: redis::RedisError,
    },

    /// A server's reply to a command did not have the expected shape.
    #[error("unexpected reply to `{command}` from redis on 127.0.0.1:{port}: {detail}")]
    UnexpectedReply {
        /// The server's port.
        port: u16,
        /// The command that was sent.
        command: String,
        /// What was wrong with the reply.
        detail: String,
    },

    /// A server answered a command with an error reply.
    #[error("redis on 127.0.0.1:{port} answered `{command}` with an error: {message}")]
    ServerError {
        /// The server's port.
        port: u16,
        /// The command that was sent.
        command: String,
        /// The error message: its code (such as `ERR` or `MOVED`) and details.
        message: String,
    },

    /// A port that is not one of this cluster's nodes was passed.
    #[error("port {port} is not a node of this cluster (nodes: {nodes:?})")]
    UnknownNode {
        /// The port that was passed.
        port: u16,
        /// The ports of the cluster's nodes.
        nodes: Vec<u16>,
    },

    /// The node was already killed.
    #[error("the cluster node on port {port} was already killed")]
    NodeAlreadyKilled {
        /// The node's port.
        port: u16,
    },

    /// `wait_for_failover` was called for a node that was not killed with `kill_node`.
    #[error("the cluster node on port {port} was not killed; call kill_node({port}) first")]
    NodeNotKilled {
        /// The node's port.
        port: u16,
    },

    /// `wait_for_failover` was called for a node that served no slots when it was killed.
    #[error(
        "the cluster node on port {port} was a replica (it served no slots) when it was killed, \
         so there is nothing to fail over; kill a primary (see primary_for_slot)"
    )]
    NotAPrimary {
        /// The node's port.
        port: u16,
    },

    /// A slot number of 16384 or more was passed.
    #[error("slot {slot} is out of range: Redis Cluster slots are 0..=16383")]
    SlotOutOfRange {
        /// The slot that was passed.
        slot: u16,
    },

    /// No node serves the slot.
    #[error("no node of the cluster serves slot {slot}")]
    SlotUnassigned {
        /// The slot.
        slot: u16,
    },

    /// The test CA or server certificate for TLS could not be generated.
    #[error("could not generate the test TLS certificates: {0}")]
    Certificates(String),
}
