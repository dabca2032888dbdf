//! The last lines of a container's output: a bounded ring of lines, and the pump that
//! fills it from a pipe.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What a line longer than the limit ends with once cut.
pub const TRUNCATED_MARK: &str = " [truncated]";

/// The last `capacity` lines of a container's output, oldest first. Older lines are dropped
/// as new ones come; [`LogRing::dropped`] counts them. Every line gets a sequence number
/// (0 for the first line pushed), so a reader can ask for what came after the lines it
/// already took ([`LogRing::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRing {
    lines: VecDeque<String>,
    capacity: usize,
    dropped: u64,
}

impl LogRing {
    /// An empty ring that keeps at most `capacity` lines (0 keeps none).
    pub fn new(capacity: usize) -> LogRing {
        LogRing {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            dropped: 0,
        }
    }

    /// Appends a line, dropping the oldest one when the ring is full.
    pub fn push(&mut self, line: String) {
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many lines were dropped to make room (or because the capacity is 0).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many lines were pushed in all: the sequence number of the next line.
    pub fn pushed(&self) -> u64 {
        self.dropped + self.lines.len() as u64
    }

    /// The kept lines whose sequence number is `seq` or above, oldest first, and the
    /// sequence number to ask from next time. Lines dropped before they were read are lost.
    pub fn since(&self, seq: u64) -> (Vec<String>, u64) {
        let skip = seq.saturating_sub(self.dropped);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        (
            self.lines.iter().skip(skip).cloned().collect(),
            self.pushed(),
        )
    }
}

/// A ring shared between the pumps that fill it and the handle that reads it.
pub type SharedLog = Arc<Mutex<LogRing>>;

/// Reads `reader` to its end, one line at a time, into `ring`. Lines are split on `\n`
/// (a trailing `\r` is dropped), decoded lossily as UTF-8, and cut at `max_line_bytes`
/// bytes so a process that never writes a newline cannot exhaust memory. A read error
/// ends the pump like an end of file.
pub(crate) async fn pump_lines<R>(reader: R, ring: SharedLog, max_line_bytes: usize)
where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(reader);
    let mut line = LineBuffer::new(max_line_bytes);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::debug!(error = %err, "output pipe read failed; stopping capture");
                break;
            }
        };
        if chunk.is_empty() {
            break;
        }
        let used = chunk.len();
        line.feed(chunk, &ring);
        reader.consume(used);
    }
    line.finish(&ring);
}

/// The bytes of the line being read, cut at a limit: splits a byte stream into the lines
/// a [`LogRing`] keeps (see [`pump_lines`] for the rules).
pub(crate) struct LineBuffer {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl LineBuffer {
    /// An empty buffer that cuts lines at `limit` bytes.
    pub(crate) fn new(limit: usize) -> LineBuffer {
        LineBuffer {
            bytes: Vec::new(),
            limit,
            truncated: false,
        }
    }

    /// Splits `chunk` into lines: each completed line goes into `ring`, the rest is kept.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], ring: &SharedLog) {
        while let Some(newline) = chunk.iter().position(|b| *b == b'\n') {
            self.extend(&chunk[..newline]);
            ring.lock().push(self.take());
            chunk = &chunk[newline + 1..];
        }
        self.extend(chunk);
    }

    /// Pushes the unterminated tail, if any, as a last line.
    pub(crate) fn finish(&mut self, ring: &SharedLog) {
        if !self.is_empty() {
            ring.lock().push(self.take());
        }
    }

    fn extend(&mut self, more: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if more.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&more[..more.len().min(room)]);
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && !self.truncated
    }

    fn take(&mut self) -> String {
        if self.bytes.last() == Some(&b'\r') {
            self.bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            line.push_str(TRUNCATED_MARK);
        }
        self.bytes.clear();
        self.truncated = false;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines() {
        let mut ring = LogRing::new(3);
        for i in 0..5 {
            ring.push(format!("line {i}"));
        }
        assert_eq!(ring.lines(), vec!["line 2", "line 3", "line 4"]);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn since_returns_what_came_after() {
        let mut ring = LogRing::new(3);
        ring.push("a".into());
        ring.push("b".into());
        let (lines, next) = ring.since(0);
        assert_eq!((lines, next), (vec!["a".to_owned(), "b".to_owned()], 2));
        ring.push("c".into());
        assert_eq!(ring.since(next), (vec!["c".to_owned()], 3));
        for line in ["d", "e", "f", "g"] {
            ring.push(line.into());
        }
        // "c" to "d" were dropped unread: only the kept lines come back.
        assert_eq!(ring.since(3).0, vec!["e", "f", "g"]);
        assert_eq!(ring.since(6), (vec!["g".to_owned()], 7));
        assert_eq!(ring.since(7), (Vec::new(), 7));
    }

    #[test]
    fn ring_of_zero_keeps_nothing() {
        let mut ring = LogRing::new(0);
        ring.push("x".into());
        assert!(ring.is_empty());
        assert_eq!(ring.dropped(), 1);
    }

    async fn pump(input: &'static [u8], limit: usize) -> Vec<String> {
        let ring: SharedLog = Arc::new(Mutex::new(LogRing::new(10)));
        pump_lines(input, ring.clone(), limit).await;
        ring.lock().lines()
    }

    #[tokio::test]
    async fn pump_splits_lines_and_keeps_the_unterminated_tail() {
        let lines = pump(b"a\r\nb\n\nc", 100).await;
        assert_eq!(lines, vec!["a", "b", "", "c"]);
    }

    #[tokio::test]
    async fn pump_cuts_long_lines_and_decodes_lossily() {
        let lines = pump(b"abcdefgh\n\xffok\n", 4).await;
        assert_eq!(
            lines,
            vec![format!("abcd{TRUNCATED_MARK}"), "\u{fffd}ok".into()]
        );
    }
}
