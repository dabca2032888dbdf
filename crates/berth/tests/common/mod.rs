//! What the tests that drive the real `berth` binary share: child processes that are
//! killed when dropped, free ports, and polling with a bound.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a part; tests may unwrap.

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

/// The `berth` binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it is true, for at most 60 s (bounds a hang; times nothing).
pub fn eventually(what: &str, probe: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(60), probe);
}

/// Polls `probe` every 100 ms until it is true, for at most `limit`.
pub fn eventually_within(what: &str, limit: Duration, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
