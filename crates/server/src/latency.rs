//! Per-module latency histograms: how long each HTTP call on a module took, from queueing it
//! to its answer, in fixed buckets counted with atomics (no lock on the request path). They
//! feed `modhost_module_request_seconds` in `/_admin/metrics` and the p50/p99 of the status
//! page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

/// Upper bounds, in seconds, of the `modhost_module_request_seconds` histogram buckets (a
/// last `+Inf` bucket follows them).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Buckets including the last, unbounded one.
const SLOTS: usize = LATENCY_BUCKETS.len() + 1;

/// One module's histogram, shared by every version of it.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Calls per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Counts one call that took `elapsed`.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn counts(&self) -> LatencyCounts {
        LatencyCounts {
            buckets: std::array::from_fn(|slot| self.buckets[slot].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A reading of one histogram: calls per bucket (not cumulative, the last is `+Inf`) and the
/// total time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatencyCounts {
    /// Calls per bucket of [`LATENCY_BUCKETS`], then the `+Inf` bucket.
    pub buckets: [u64; SLOTS],
    /// Total time of those calls, in nanoseconds.
    pub sum_nanos: u64,
}

impl LatencyCounts {
    /// Calls counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Total time of the calls, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        Duration::from_nanos(self.sum_nanos).as_secs_f64()
    }

    /// Cumulative counts per upper bound of [`LATENCY_BUCKETS`], as Prometheus wants them.
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS.len()] {
        let mut running = 0;
        std::array::from_fn(|slot| {
            running += self.buckets[slot];
            running
        })
    }

    /// What was counted since `earlier`, a reading of the same histogram.
    pub fn since(&self, earlier: &LatencyCounts) -> LatencyCounts {
        LatencyCounts {
            buckets: std::array::from_fn(|slot| {
                self.buckets[slot].saturating_sub(earlier.buckets[slot])
            }),
            sum_nanos: self.sum_nanos.saturating_sub(earlier.sum_nanos),
        }
    }

    /// The `q` quantile (0..=1) in seconds, interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does; the largest finite bound when it falls in the
    /// `+Inf` bucket; `None` with no calls.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (slot, &in_bucket) in self.buckets.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let reached = (below + in_bucket) as f64;
            if in_bucket > 0 && reached >= rank {
                let Some(&upper) = LATENCY_BUCKETS.get(slot) else {
                    return LATENCY_BUCKETS.last().copied();
                };
                let lower = if slot == 0 {
                    0.0
                } else {
                    LATENCY_BUCKETS[slot - 1]
                };
                #[allow(clippy::cast_precision_loss)]
                let fraction = (rank - below as f64) / in_bucket as f64;
                return Some(lower + (upper - lower) * fraction);
            }
            below += in_bucket;
        }
        LATENCY_BUCKETS.last().copied()
    }
}

/// Every module's histogram, by name. A name's histogram outlives swaps and unloads, like the
/// other per-module totals.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    modules: ArcSwap<BTreeMap<String, Arc<Latency>>>,
}

impl Latencies {
    /// Counts one call on `module`.
    pub(crate) fn observe(&self, module: &str, elapsed: Duration) {
        if let Some(latency) = self.modules.load().get(module) {
            latency.observe(elapsed);
            return;
        }
        let mut created = None;
        self.modules.rcu(|modules| {
            let mut modules = BTreeMap::clone(modules);
            let latency = modules.entry(module.to_owned()).or_default().clone();
            created = Some(latency);
            modules
        });
        if let Some(latency) = created {
            latency.observe(elapsed);
        }
    }

    /// A reading of every module's histogram, by name.
    pub(crate) fn counts(&self) -> BTreeMap<String, LatencyCounts> {
        self.modules
            .load()
            .iter()
            .map(|(name, latency)| (name.clone(), latency.counts()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_the_first_bucket_that_holds_them() {
        let latencies = Latencies::default();
        latencies.observe("a", Duration::from_micros(100));
        latencies.observe("a", Duration::from_micros(250));
        latencies.observe("a", Duration::from_millis(3));
        latencies.observe("a", Duration::from_secs(60));
        latencies.observe("b", Duration::from_millis(1));
        let counts = latencies.counts();
        let a = counts["a"];
        assert_eq!(a.count(), 4);
        assert_eq!(a.buckets[0], 2, "≤ 0.25 ms, the bound itself included");
        assert_eq!(a.buckets[4], 1, "3 ms is in (2.5 ms, 5 ms]");
        assert_eq!(a.buckets[SLOTS - 1], 1, "60 s is over every bound");
        assert_eq!(a.cumulative()[0], 2);
        assert_eq!(a.cumulative()[LATENCY_BUCKETS.len() - 1], 3);
        assert!(
            (a.sum_seconds() - 60.003_35).abs() < 1e-9,
            "{}",
            a.sum_seconds()
        );
        assert_eq!(counts["b"].count(), 1);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut counts = LatencyCounts::default();
        assert_eq!(counts.quantile(0.5), None, "no calls");
        // 100 calls in (1 ms, 2.5 ms]: the median is half-way through that bucket.
        counts.buckets[3] = 100;
        let median = counts.quantile(0.5).unwrap();
        assert!((median - 0.001_75).abs() < 1e-12, "{median}");
        // One slow call over every bound: p99 stays in the fast bucket, p100 is capped.
        counts.buckets[SLOTS - 1] = 1;
        assert!(counts.quantile(0.99).unwrap() <= 0.002_5);
        assert_eq!(counts.quantile(1.0), Some(10.0));
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let latency = Latency::default();
        latency.observe(Duration::from_millis(30));
        let before = latency.counts();
        latency.observe(Duration::from_micros(10));
        let window = latency.counts().since(&before);
        assert_eq!(window.count(), 1);
        assert_eq!(window.buckets[0], 1);
        assert!(window.quantile(0.99).unwrap() <= 0.000_25);
    }
}
