//! [`Capped`]: a writer that takes at most a given number of bytes, so a registry cannot
//! fill the disk with more than a blob's descriptor announced.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// Writes through to `inner` until `left` bytes were written, then fails.
#[derive(Debug)]
pub(crate) struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W> Capped<W> {
    /// `inner`, taking at most `limit` bytes.
    pub(crate) fn new(inner: W, limit: u64) -> Capped<W> {
        Capped { inner, left: limit }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Capped<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() as u64 > this.left {
            return Poll::Ready(Err(io::Error::other(
                "the registry sent more bytes than the blob's descriptor says",
            )));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.left -= written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test]
    async fn takes_up_to_its_limit_and_refuses_more() {
        let mut capped = Capped::new(Vec::new(), 4);
        capped.write_all(b"abcd").await.unwrap();
        assert!(capped.write_all(b"e").await.is_err());
        assert_eq!(capped.inner, b"abcd");
    }
}
