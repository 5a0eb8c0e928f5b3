//! A socket whose writes fail once they have made no progress for a while: a client that stops
//! reading its answers (HTTP/1 pipelining without reading, a full receive window) loses its
//! connection instead of holding it, and the memory of the answers queued for it, forever.
//!
//! It wraps the TCP stream itself, under TLS when there is TLS, so handshake and record writes
//! are covered as well as plain ones.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, with every write, flush and shutdown failing with [`io::ErrorKind::TimedOut`] once
/// it has been pending for `limit` without a byte going out.
#[derive(Debug)]
pub(crate) struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Allocated at the first stall and re-armed after; `armed` says whether it is counting.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Counts the connections this guard has cut off.
    timed_out: ::metrics::Counter,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T, limit: Duration, timed_out: ::metrics::Counter) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            armed: false,
            timed_out,
        }
    }

    /// The write made progress (or failed on its own): stop counting.
    fn progressed<R>(&mut self, ready: R) -> R {
        self.armed = false;
        ready
    }

    /// The write is pending: start counting if not yet, and fail once the limit has passed.
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let deadline = Instant::now() + self.limit;
        let armed = self.armed;
        let timer = match &mut self.timer {
            Some(timer) => {
                if !armed {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.armed = false;
                self.timed_out.increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client has not read its answers for the write stall timeout",
                )))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(ready) => Poll::Ready(this.progressed(ready)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(ready) => Poll::Ready(this.progressed(ready)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(ready) => Poll::Ready(this.progressed(ready)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.stalled(cx),
            Poll::Ready(ready) => Poll::Ready(this.progressed(ready)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_limit_and_one_that_progresses_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let counter = ::metrics::Counter::noop();
        let mut guarded = StallGuard::new(near, Duration::from_secs(10), counter);
        // The pipe holds 64 bytes; the far end reads 64 bytes every 6 s, so each write waits
        // less than the limit and the whole transfer succeeds.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                far.read_exact(&mut buf).await.unwrap();
            }
            far
        });
        guarded.write_all(&[7u8; 256]).await.unwrap();
        let _far = reader.await.unwrap();
        // Now nobody reads: the pipe fills and the next write fails after 10 s.
        let started = Instant::now();
        let error = guarded.write_all(&[7u8; 256]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
