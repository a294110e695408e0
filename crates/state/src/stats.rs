//! Operation counters and the commit-latency histogram: atomics written on every call, read
//! without locks by [`Store::stats`](crate::Store::stats).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency buckets, in seconds (50 µs to 1 s, Prometheus' 1-2.5-5
/// steps). Commits slower than the last bound count only in `+Inf` (the histogram's `count`).
pub const COMMIT_LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A snapshot of a store's counters since it was opened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreStats {
    /// `get` calls.
    pub get: u64,
    /// `set` calls.
    pub set: u64,
    /// `delete` calls.
    pub delete: u64,
    /// `exists` calls.
    pub exists: u64,
    /// `list` calls.
    pub list: u64,
    /// `increment` calls.
    pub increment: u64,
    /// `compare_and_swap` calls.
    pub cas: u64,
    /// `batch` calls.
    pub batch: u64,
    /// Calls of any kind (including `usage`) that returned an error.
    pub errors: u64,
    /// Write transactions committed.
    pub commits: u64,
    /// How long commits took.
    pub commit_latency: LatencyHistogram,
}

/// A Prometheus-style histogram: cumulative bucket counts, the sum and the count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyHistogram {
    /// `(upper_bound_seconds, cumulative_count)`, bounds from [`COMMIT_LATENCY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations (the `+Inf` bucket).
    pub count: u64,
}

/// Which counter a call bumps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Get,
    Set,
    Delete,
    Exists,
    List,
    Increment,
    Cas,
    Batch,
    Usage,
}

/// The live counters behind [`StoreStats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    ops: [AtomicU64; 9],
    errors: AtomicU64,
    buckets: [AtomicU64; COMMIT_LATENCY_BUCKETS.len()],
    commit_nanos: AtomicU64,
    commits: AtomicU64,
}

impl Recorder {
    pub(crate) fn call<T, E>(&self, op: Op, result: Result<T, E>) -> Result<T, E> {
        self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    pub(crate) fn commit(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = COMMIT_LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        let op = |op: Op| self.ops[op as usize].load(Ordering::Relaxed);
        let mut cumulative = 0;
        let buckets = COMMIT_LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let commits = self.commits.load(Ordering::Relaxed);
        StoreStats {
            get: op(Op::Get),
            set: op(Op::Set),
            delete: op(Op::Delete),
            exists: op(Op::Exists),
            list: op(Op::List),
            increment: op(Op::Increment),
            cas: op(Op::Cas),
            batch: op(Op::Batch),
            errors: self.errors.load(Ordering::Relaxed),
            commits,
            commit_latency: LatencyHistogram {
                buckets,
                sum_seconds: Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed))
                    .as_secs_f64(),
                // A commit bumps its bucket before `commits`: a snapshot taken in between
                // must still show `count` >= every bucket.
                count: commits.max(cumulative),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_an_inf_count() {
        let recorder = Recorder::default();
        recorder.commit(Duration::from_micros(10));
        recorder.commit(Duration::from_micros(300));
        recorder.commit(Duration::from_secs(2));
        let stats = recorder.snapshot();
        assert_eq!(stats.commits, 3);
        let histogram = stats.commit_latency;
        assert_eq!(histogram.count, 3);
        assert_eq!(histogram.buckets[0], (0.000_05, 1));
        assert_eq!(histogram.buckets[3], (0.000_5, 2));
        assert_eq!(histogram.buckets.last(), Some(&(1.0, 2)));
        assert!((histogram.sum_seconds - 2.000_31).abs() < 1e-9);
    }

    #[test]
    fn calls_and_errors_are_counted() {
        let recorder = Recorder::default();
        let _ = recorder.call(Op::Get, Ok::<(), ()>(()));
        let _ = recorder.call(Op::Get, Err::<(), ()>(()));
        let _ = recorder.call(Op::Usage, Err::<(), ()>(()));
        let stats = recorder.snapshot();
        assert_eq!((stats.get, stats.errors, stats.set), (2, 2, 0));
    }
}
