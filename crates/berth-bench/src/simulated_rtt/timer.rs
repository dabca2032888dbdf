//! A timer thread that wakes async sleepers at their deadlines with sub-millisecond
//! precision (tokio's timer has a resolution of one millisecond).

use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// One pending wake-up: ordered by deadline, then by arrival.
struct Due {
    at: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct TimerState {
    queue: BinaryHeap<Reverse<Due>>,
    seq: u64,
    closed: bool,
}

#[derive(Default)]
struct TimerShared {
    state: Mutex<TimerState>,
    wake: Condvar,
}

/// A thread that wakes async sleepers at their deadlines with sub-millisecond precision.
/// Dropping it stops the thread; sleepers still waiting then return at once.
pub(super) struct Timer {
    shared: Arc<TimerShared>,
}

impl Timer {
    pub(super) fn start() -> Timer {
        let shared = Arc::new(TimerShared::default());
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("berth-delay-timer".to_owned())
            .spawn(move || run_timer(&thread_shared));
        if let Err(error) = spawned {
            // Without the thread, sleepers return at once: no delay rather than a hang.
            tracing::error!(%error, "could not start the delay timer thread; no delay is added");
            shared.state.lock().closed = true;
        }
        Timer { shared }
    }

    pub(super) async fn sleep_until(&self, at: Instant) {
        let (done, wait) = oneshot::channel();
        {
            let mut state = self.shared.state.lock();
            if state.closed {
                return;
            }
            state.seq += 1;
            let seq = state.seq;
            state.queue.push(Reverse(Due { at, seq, done }));
        }
        self.shared.wake.notify_one();
        // An error means the timer stopped: return at once.
        let _ = wait.await;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn run_timer(shared: &TimerShared) {
    // Linux lets a thread narrow its own timer slack (50 us by default), which makes its
    // timed waits wake closer to their deadlines. Best effort: elsewhere it fails, harmlessly.
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1");
    let mut state = shared.state.lock();
    while !state.closed {
        let now = Instant::now();
        while state.queue.peek().is_some_and(|Reverse(due)| due.at <= now) {
            if let Some(Reverse(due)) = state.queue.pop() {
                let _ = due.done.send(());
            }
        }
        match state.queue.peek().map(|Reverse(due)| due.at) {
            Some(at) => {
                shared.wake.wait_until(&mut state, at);
            }
            None => shared.wake.wait(&mut state),
        }
    }
    // Wake everyone still waiting.
    state.queue.clear();
}
