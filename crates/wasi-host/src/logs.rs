//! Guest log lines: from the `log`/`log_at` imports and from WASI stdout/stderr
//! (line-buffered), tagged with module and version, rate-limited, sent to `tracing` and kept
//! in a small ring for status pages and tests.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite};
use wasmer_wasix::VirtualFile;

/// Lines kept per module.
const RING: usize = 256;

/// A log line's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// For developers.
    Debug,
    /// Normal operation (the `log` import and stdout).
    Info,
    /// Something odd (stderr).
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level for an ABI number (0 = trace … 4 = error); out of range is `Info`.
    pub fn from_abi(level: i32) -> LogLevel {
        match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The `log` / `log_at` imports.
    Import,
    /// WASI stdout.
    Stdout,
    /// WASI stderr.
    Stderr,
}

/// One guest log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// Origin.
    pub source: LogSource,
    /// The text, without its newline, cut to the module's `max_log_line_bytes`.
    pub text: String,
}

struct Window {
    started: Instant,
    lines: u32,
    dropped_reported: u64,
}

/// Per-module log state shared by its instances.
pub(crate) struct GuestLog {
    module: String,
    version: String,
    max_line: usize,
    per_second: u32,
    window: Mutex<Window>,
    ring: Mutex<VecDeque<LogLine>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl GuestLog {
    pub(crate) fn new(module: &str, version: &str, max_line: usize, per_second: u32) -> GuestLog {
        GuestLog {
            module: module.to_owned(),
            version: version.to_owned(),
            max_line,
            per_second,
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                dropped_reported: 0,
            }),
            // Grows to `RING` lines as the module logs: most modules log little or nothing.
            ring: Mutex::new(VecDeque::new()),
            dropped: Default::default(),
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn recent(&self) -> Vec<LogLine> {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Emits one line (bytes need not be UTF-8; they are shown lossily).
    pub(crate) fn line(&self, level: LogLevel, source: LogSource, bytes: &[u8]) {
        {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            if window.started.elapsed().as_secs() >= 1 {
                let dropped = self.dropped();
                if dropped > window.dropped_reported {
                    tracing::warn!(
                        module = %self.module,
                        version = %self.version,
                        "guest log rate limit: {} lines dropped (limit {}/s)",
                        dropped - window.dropped_reported,
                        self.per_second
                    );
                    window.dropped_reported = dropped;
                }
                window.started = Instant::now();
                window.lines = 0;
            }
            if window.lines >= self.per_second {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            window.lines += 1;
        }
        let cut = &bytes[..bytes.len().min(self.max_line)];
        let text = String::from_utf8_lossy(cut)
            .trim_end_matches('\r')
            .to_owned();
        let (module, version) = (&self.module, &self.version);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "modhost::guest", module = %module, version = %version, source = ?source, "{text}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "modhost::guest", module = %module, version = %version, source = ?source, "{text}")
            }
            LogLevel::Info => {
                tracing::info!(target: "modhost::guest", module = %module, version = %version, source = ?source, "{text}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "modhost::guest", module = %module, version = %version, source = ?source, "{text}")
            }
            LogLevel::Error => {
                tracing::error!(target: "modhost::guest", module = %module, version = %version, source = ?source, "{text}")
            }
        }
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(LogLine {
            level,
            source,
            text,
        });
    }
}

/// A WASI stdout/stderr that line-buffers into the module's [`GuestLog`].
pub(crate) struct LogFile {
    log: Arc<GuestLog>,
    level: LogLevel,
    source: LogSource,
    pending: Vec<u8>,
}

impl LogFile {
    pub(crate) fn new(log: Arc<GuestLog>, source: LogSource) -> LogFile {
        let level = if source == LogSource::Stderr {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        LogFile {
            log,
            level,
            source,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
            self.log
                .line(self.level, self.source, &self.pending[..newline]);
            self.pending.drain(..=newline);
        }
        // A line that never ends is cut at the limit rather than buffered forever.
        if self.pending.len() > self.log.max_line {
            self.log.line(self.level, self.source, &self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.log.line(self.level, self.source, &self.pending);
        }
    }
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AsyncSeek for LogFile {
    fn start_seek(self: Pin<&mut Self>, _position: io::SeekFrom) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "stdout/stderr can't seek",
        ))
    }
    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(0))
    }
}

impl AsyncWrite for LogFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for LogFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl VirtualFile for LogFile {
    fn last_accessed(&self) -> u64 {
        0
    }
    fn last_modified(&self) -> u64 {
        0
    }
    fn created_time(&self) -> u64 {
        0
    }
    fn size(&self) -> u64 {
        0
    }
    fn set_len(&mut self, _new_size: u64) -> wasmer_wasix::virtual_fs::Result<()> {
        Err(wasmer_wasix::FsError::PermissionDenied)
    }
    fn unlink(&mut self) -> wasmer_wasix::virtual_fs::Result<()> {
        Ok(())
    }
    fn poll_read_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
    fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}
