//! Calls to "any live replica": each call goes to the next replica in turn, and an error
//! that says the replica is unavailable (it cannot be reached, the connection broke, it
//! answered 5xx) moves on to the next one, until a deadline. Errors the server means (4xx)
//! are returned at once.

use berth_api::{Client, ClientError};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long one HTTP call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a round of failed calls.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Whether `error` means "this replica cannot answer now" rather than "the answer is no".
pub fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. } | ClientError::Http { .. } => true,
        ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => *status >= 500,
        ClientError::BadUrl { .. } => false,
    }
}

/// Clients of every replica, used in turn.
#[derive(Debug)]
pub struct Gateway {
    clients: Vec<Client>,
    next: AtomicUsize,
}

impl Gateway {
    /// A gateway to the replicas at `urls`, calling with `token`.
    pub fn new(urls: &[String], token: &str) -> Result<Gateway, ClientError> {
        let clients = urls
            .iter()
            .map(|url| Client::new(url).map(|c| c.with_timeout(CALL_TIMEOUT).with_token(token)))
            .collect::<Result<_, _>>()?;
        Ok(Gateway {
            clients,
            next: AtomicUsize::new(0),
        })
    }

    /// The client of replica `index`.
    pub fn client(&self, index: usize) -> Option<&Client> {
        self.clients.get(index)
    }

    /// Calls `call` on one replica after another until it succeeds, fails for a reason
    /// that is not the replica's unavailability, or `patience` has passed (then the last
    /// error is returned). Also returns how many calls failed on the way.
    pub async fn call<T, F, Fut>(
        &self,
        patience: Duration,
        call: F,
    ) -> (Result<T, ClientError>, u32)
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut failures = 0;
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
            let Some(client) = self.clients.get(index) else {
                return (
                    Err(ClientError::BadUrl {
                        url: String::new(),
                        reason: "no replica to call".to_owned(),
                    }),
                    failures,
                );
            };
            match call(client.clone()).await {
                Err(error) if retryable(&error) && started.elapsed() < patience => {
                    failures += 1;
                    tracing::debug!(%error, "replica unavailable; trying the next one");
                    if failures % u32::try_from(self.clients.len()).unwrap_or(1).max(1) == 0 {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
                result => return (result, failures),
            }
        }
    }
}
