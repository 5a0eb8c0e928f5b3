//! The log writer: lines are appended to one bounded in-memory buffer, and a thread of its own
//! writes that buffer to standard error, a whole batch per system call.
//!
//! Why not `tracing_appender::non_blocking`: it copies every line into a fresh `Vec` and sends it
//! through a channel, and wakes the writer thread for nearly every line: on the token path that
//! was 1.5 context switches and two system calls per request (`perf stat`: 4.2 system calls a
//! request against the bare server's 2.0; 2.0 with audit lines off). Here a line costs a short
//! lock and a copy, and the writer, once woken, lingers up to [`LINGER`] (or until
//! [`WRITE_AT_BYTES`] wait) so that one wake-up and one `write` carry a batch of lines. A line
//! reaches standard error at most [`LINGER`] after it was logged.
//!
//! The guarantees are the same: a request never waits for standard error (a line that does not
//! fit in [`MAX_PENDING_BYTES`] is dropped and counted), and dropping the [`Flusher`] writes out
//! what is still buffered, waiting at most [`FLUSH_ON_EXIT`] for a stuck reader.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The most log bytes held while standard error is slow (a few thousand lines); beyond it lines
/// are dropped, never waited for.
pub(super) const MAX_PENDING_BYTES: usize = 4 << 20;
/// How long the writer waits for more lines after the first of a batch arrives.
pub(super) const LINGER: Duration = Duration::from_millis(10);
/// Enough waiting bytes for one `write`: the writer stops lingering.
const WRITE_AT_BYTES: usize = 64 << 10;
/// A batch buffer bigger than this after a burst is given back rather than kept for the next.
const KEEP_BYTES: usize = 256 << 10;
/// How long dropping the [`Flusher`] waits for the last lines to be written.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

/// What the request threads and the writer thread share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when lines arrive while the writer sleeps, and when the flusher is dropped.
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    writer: Writer,
    closing: bool,
}

/// What the writer thread is doing, so that lines wake it only when they must.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Writing, or about to take the pending lines: nobody needs to wake it.
    #[default]
    Busy,
    /// Asleep with nothing pending: the next line wakes it.
    Idle,
    /// Waiting up to [`LINGER`] for more lines: woken once [`WRITE_AT_BYTES`] are pending.
    Lingering,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The request side: each `write` is one whole line (tracing's formatter writes a formatted event
/// with one `write_all`), appended whole or dropped whole.
#[derive(Debug, Clone)]
pub(super) struct LineWriter {
    shared: Arc<Shared>,
}

impl LineWriter {
    /// Lines dropped so far because the buffer was full.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Write for &LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > MAX_PENDING_BYTES {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        state.pending.extend_from_slice(line);
        let wake = match state.writer {
            Writer::Idle => true,
            Writer::Lingering => state.pending.len() >= WRITE_AT_BYTES,
            Writer::Busy => false,
        };
        if wake {
            state.writer = Writer::Busy;
        }
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = &'a Self;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Keeps the writer thread; dropping it writes out what is buffered (bounded by
/// [`FLUSH_ON_EXIT`]).
#[derive(Debug)]
pub(super) struct Flusher {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let _ = self.done.recv_timeout(FLUSH_ON_EXIT);
    }
}

/// Starts the writer thread on `out`; `None` if the thread cannot be started.
pub(super) fn start<W: Write + Send + 'static>(out: W) -> Option<(LineWriter, Flusher)> {
    let shared = Arc::new(Shared::default());
    let (done_tx, done) = std::sync::mpsc::sync_channel(1);
    let writer_shared = shared.clone();
    std::thread::Builder::new()
        .name("stsvend-log-writer".into())
        .spawn(move || {
            drain(&writer_shared, out);
            let _ = done_tx.send(());
        })
        .ok()?;
    Some((
        LineWriter {
            shared: shared.clone(),
        },
        Flusher { shared, done },
    ))
}

/// The writer thread: takes every waiting line at once, writes them, sleeps when there are none.
fn drain<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && !state.closing {
            state.writer = Writer::Idle;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Lines are waiting: let more join them, unless there are enough for a write already.
        // (A spurious wake-up only writes a smaller batch.)
        if !state.closing && state.pending.len() < WRITE_AT_BYTES {
            state.writer = Writer::Lingering;
            state = match shared.wake.wait_timeout(state, LINGER) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.writer = Writer::Busy;
        let closing = state.closing;
        std::mem::swap(&mut state.pending, &mut batch);
        drop(state);
        // A failed write loses these lines, as a failed write to standard error always has; the
        // next batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > KEEP_BYTES {
            batch = Vec::new();
        }
        if closing && shared.lock().pending.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that hands its bytes to the test, and can be held stuck.
    #[derive(Clone, Default)]
    struct Out {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_order_by_the_time_the_flusher_is_dropped() {
        let out = Out::default();
        let (writer, flusher) = start(out.clone()).unwrap();
        for i in 0..1000 {
            (&writer)
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(flusher);
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_stuck_reader_costs_dropped_lines_never_a_wait() {
        let out = Out::default();
        let stuck = out.gate.lock().unwrap();
        let (writer, flusher) = start(out.clone()).unwrap();
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        // The writer may take one batch before it blocks on the stuck output; the buffer holds
        // MAX_PENDING_BYTES more, and everything beyond is dropped at once.
        let lines = 3 * MAX_PENDING_BYTES / line.len();
        for _ in 0..lines {
            (&writer).write_all(&line).unwrap();
        }
        let dropped = writer.dropped();
        assert!(
            dropped as usize >= lines / 4,
            "{dropped} of {lines} dropped"
        );
        drop(stuck);
        drop(flusher);
        let written = out.bytes.lock().unwrap().len();
        assert!(written >= MAX_PENDING_BYTES / 2, "{written} bytes written");
    }
}
