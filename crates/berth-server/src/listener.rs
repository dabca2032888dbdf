//! The accept loop: every connection is served by hyper's HTTP/1 server with a header read
//! timeout and a head buffer large enough for berth's own limits (see [`crate::limits`]),
//! and drained gracefully on shutdown.

use crate::ServerConfig;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// hyper's own limit on the number of headers: above [`crate::limits::MAX_HEADERS`], so
/// that berth, not hyper, refuses too many headers (with a body).
const HYPER_MAX_HEADERS: usize = 4 * crate::limits::MAX_HEADERS;

/// hyper's default read buffer (8 KiB plus 4 KiB per header of 100), the least we give it.
const HYPER_DEFAULT_BUF: usize = 8192 + 4096 * 100;

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting, lets every
/// connection finish the request it is serving and waits for them all.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    stop: CancellationToken,
) {
    let http = builder(config);
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    pause_after(error).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        connections.spawn(serve_one(http.clone(), stream, app.clone(), stop.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The HTTP/1 settings: the header read timeout (which needs a timer), and limits above
/// berth's so that berth answers oversize heads with an `ErrorBody`.
fn builder(config: &ServerConfig) -> http1::Builder {
    let head = config
        .max_uri_bytes
        .saturating_add(config.max_header_bytes)
        .saturating_mul(2);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(head.max(HYPER_DEFAULT_BUF));
    http
}

/// Serves one connection until the client closes it, or until `stop`, when the request in
/// flight (if any) finishes first.
async fn serve_one(http: http1::Builder, stream: TcpStream, app: Router, stop: CancellationToken) {
    let service = TowerToHyperService::new(app);
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // Clients that disconnect, send garbage or stall past the header timeout end here; a
    // debug line is enough (hyper has answered what could be answered).
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// After a failed accept: a connection reset before it was accepted costs nothing; any
/// other error (out of file descriptors, mostly) waits a second before accepting again, so
/// that the loop does not spin.
async fn pause_after(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
