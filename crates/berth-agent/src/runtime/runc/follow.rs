//! Reads a container's output file as it grows into its ring of lines. The container
//! writes the file itself (not a pipe to the agent), so its output survives an agent
//! restart and a container never blocks or dies on a full or broken pipe.

use crate::logs::{LineBuffer, SharedLog};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the follower waits at the end of the file before reading again.
const POLL: Duration = Duration::from_millis(100);

/// Follows `path` into `ring` until `done` fires and the file is read to its end.
pub fn spawn(
    path: PathBuf,
    ring: SharedLog,
    max_line_bytes: usize,
    done: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(follow(path, ring, max_line_bytes, done))
}

async fn follow(path: PathBuf, ring: SharedLog, max_line_bytes: usize, done: CancellationToken) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read a container's output");
            return;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = LineBuffer::new(max_line_bytes);
    loop {
        match file.read(&mut buf).await {
            Ok(0) if done.is_cancelled() => break,
            Ok(0) => {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = done.cancelled() => {}
                }
            }
            Ok(n) => line.feed(&buf[..n], &ring),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "reading a container's output failed");
                break;
            }
        }
    }
    line.finish(&ring);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::logs::LogRing;
    use parking_lot::Mutex;
    use std::io::Write;
    use std::sync::Arc;

    #[tokio::test]
    async fn follows_a_growing_file_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"one\ntw").unwrap();
        let ring: SharedLog = Arc::new(Mutex::new(LogRing::new(10)));
        let done = CancellationToken::new();
        let task = spawn(path, ring.clone(), 1024, done.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while ring.lock().lines().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "first line never read"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        file.write_all(b"o\nthree").unwrap();
        done.cancel();
        task.await.unwrap();
        assert_eq!(ring.lock().lines(), vec!["one", "two", "three"]);
    }
}
