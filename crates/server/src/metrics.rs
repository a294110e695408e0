//! `GET /_admin/metrics`: counters, gauges and histograms in the Prometheus text format
//! (version 0.0.4), for scraping. It gives per-module traffic, faults and call latency, swaps,
//! the WebSocket relay, the bus, the key-value store, outbound HTTP, the cluster connection
//! when clustered, and the process's own resident memory, open file descriptors and threads
//! (from `/proc/self` on Linux; left out elsewhere).
//!
//! The figures live where they are counted (atomics in the registry, the hub, the bus, the
//! store); a scrape reads them all into one [`Snapshot`] and the `prometheus-client` crate
//! writes the exposition (names, `_total` suffixes, label escaping, cumulative buckets).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::registry::Registry;
use crate::ws::Hub;

/// The process's resource use, as `/proc/self` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where there is no procfs.
    pub fn read() -> Option<ProcessStats> {
        let dir = "/proc/self";
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        Some(ProcessStats {
            rss_bytes: field("VmRSS:")? * 1024,
            open_fds: std::fs::read_dir(format!("{dir}/fd")).ok()?.count() as u64,
            threads: field("Threads:")?,
        })
    }
}

/// Everything one scrape shows, read at once.
#[derive(Debug)]
struct Snapshot {
    modules: Vec<crate::ModuleStatus>,
    latencies: BTreeMap<String, crate::latency::LatencyCounts>,
    store: Option<state::StoreStats>,
    outbound: BTreeMap<String, BTreeMap<String, crate::OutboundHostStats>>,
    reloads: [u64; crate::registry::RELOAD_OUTCOMES.len()],
    holds: crate::HoldStats,
    draining: usize,
    ws: crate::ws::HubStats,
    bus: bus::BusStats,
    process: Option<ProcessStats>,
    cluster: Option<cluster::ClusterStatus>,
}

/// Renders every metric.
pub(crate) fn render(
    registry: &Registry,
    hub: &Hub,
    bus: &bus::Bus,
    cluster: Option<&cluster::Cluster>,
) -> String {
    let snapshot = Snapshot {
        modules: registry.status(),
        latencies: registry.latencies().counts(),
        store: registry.store().map(|store| store.stats()),
        outbound: registry.outbound().stats(),
        reloads: registry.reload_counts(),
        holds: registry.hold_stats(),
        draining: registry.draining(),
        ws: hub.stats(),
        bus: bus.stats(),
        process: ProcessStats::read(),
        cluster: cluster.map(cluster::Cluster::status),
    };
    let mut exposition = prometheus_client::registry::Registry::default();
    exposition.register_collector(Box::new(snapshot));
    let mut text = String::new();
    // Writing into a `String` cannot fail, and every name and value here is well-formed.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &exposition);
    text
}

pub(crate) type Result = std::result::Result<(), std::fmt::Error>;

/// A sample's value: whole counts as integers, seconds as floats.
pub(crate) trait Value: EncodeCounterValue + EncodeGaugeValue + std::fmt::Debug {}

impl Value for u64 {}
impl Value for f64 {}

/// One family of samples: `name` is without the `_total` a counter gets on the wire.
pub(crate) fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> std::result::Result<MetricEncoder<'e>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

/// One sample of a family, with labels.
pub(crate) fn sample(
    family: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    kind: MetricType,
    value: impl Value,
) -> Result {
    let encoder = family.encode_family(&labels)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(encoder),
        _ => ConstGauge::new(value).encode(encoder),
    }
}

/// A family with one unlabelled sample.
pub(crate) fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Value,
) -> Result {
    let family = family(encoder, name, help, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(family),
        _ => ConstGauge::new(value).encode(family),
    }
}

/// A histogram from cumulative `(upper bound, count)` buckets; `count` is the `+Inf` bucket.
fn histogram(
    family: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    cumulative: impl IntoIterator<Item = (f64, u64)>,
    sum: f64,
    count: u64,
) -> Result {
    // The encoder wants each bucket's own count and adds them up itself.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = cumulative
        .into_iter()
        .map(|(bound, running)| {
            let own = running.saturating_sub(below);
            below = below.max(running);
            (bound, own)
        })
        .collect();
    let mut encoder = family.encode_family(&labels)?;
    encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
}

/// Reads one figure of a module's status.
type ModuleFigure = fn(&crate::ModuleStatus) -> Option<u64>;

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result {
        self.modules(&mut encoder)?;
        self.latency(&mut encoder)?;
        if let Some(store) = &self.store {
            store_metrics(&mut encoder, store)?;
        }
        self.outbound(&mut encoder)?;
        self.swaps(&mut encoder)?;
        self.relay_and_bus(&mut encoder)?;
        if let Some(process) = self.process {
            for (name, help, value) in [
                (
                    "process_resident_memory_bytes",
                    "resident memory size in bytes",
                    process.rss_bytes,
                ),
                (
                    "process_open_fds",
                    "open file descriptors",
                    process.open_fds,
                ),
                ("process_threads", "OS threads", process.threads),
            ] {
                single(&mut encoder, name, help, MetricType::Gauge, value)?;
            }
        }
        if let Some(cluster) = &self.cluster {
            crate::clustered::metrics(&mut encoder, cluster)?;
        }
        Ok(())
    }
}

impl Snapshot {
    fn modules(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        use MetricType::{Counter, Gauge};
        let families: [(&str, &str, MetricType, ModuleFigure); 14] = [
            (
                "modhost_module_loaded",
                "1 if a version of the module is serving, 0 if it was refused and none is",
                Gauge,
                |module| Some(u64::from(module.version.is_some())),
            ),
            (
                "modhost_module_requests",
                "HTTP requests handled, over all versions",
                Counter,
                |module| Some(module.requests),
            ),
            (
                "modhost_module_inline_requests",
                "HTTP requests run on the thread that received them (the rest hopped to an instance's worker thread), over all versions",
                Counter,
                |module| Some(module.inline_requests),
            ),
            (
                "modhost_module_errors",
                "HTTP requests that failed in the module, over all versions",
                Counter,
                |module| Some(module.errors),
            ),
            (
                "modhost_module_traps",
                "traps, over all versions",
                Counter,
                |module| Some(module.traps),
            ),
            (
                "modhost_module_messages",
                "bus messages taken for delivery, over all versions",
                Counter,
                |module| Some(module.messages),
            ),
            (
                "modhost_module_message_errors",
                "bus messages whose delivery failed in the module, over all versions",
                Counter,
                |module| Some(module.message_errors),
            ),
            (
                "modhost_module_message_batches",
                "on_messages calls (several queued bus messages in one call), over all versions",
                Counter,
                |module| Some(module.message_batches),
            ),
            (
                "modhost_module_swaps",
                "versions swapped in since start",
                Counter,
                |module| Some(module.swaps),
            ),
            (
                "modhost_module_kv_operations",
                "key-value operations, over all versions",
                Counter,
                |module| Some(module.kv_operations),
            ),
            (
                "modhost_module_kv_errors",
                "key-value operations answered with an error, over all versions",
                Counter,
                |module| Some(module.kv_errors),
            ),
            (
                "modhost_module_rejected",
                "1 if the last version offered was refused (see /_admin/modules for why)",
                Gauge,
                |module| Some(u64::from(module.last_rejected.is_some())),
            ),
            (
                "modhost_module_instances",
                "instances in the serving version's pool",
                Gauge,
                |module| Some(module.instances as u64),
            ),
            (
                "modhost_module_kv_keys",
                "keys in the module's own key-value store",
                Gauge,
                |module| module.kv_keys,
            ),
        ];
        for (name, help, kind, figure) in families {
            let mut family = family(encoder, name, help, kind)?;
            for module in &self.modules {
                if let Some(value) = figure(module) {
                    sample(&mut family, &[("module", &module.name)], kind, value)?;
                }
            }
        }
        let mut bytes = family(
            encoder,
            "modhost_module_kv_bytes",
            "bytes (keys + values) in the module's own key-value store",
            Gauge,
        )?;
        for module in &self.modules {
            if let Some(value) = module.kv_bytes {
                sample(&mut bytes, &[("module", &module.name)], Gauge, value)?;
            }
        }
        Ok(())
    }

    /// Per-module HTTP call latency, one histogram per module that has been called.
    fn latency(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let mut family = family(
            encoder,
            "modhost_module_request_seconds",
            "time from queueing an HTTP call on the module to its answer (a middleware's calls count under the middleware)",
            MetricType::Histogram,
        )?;
        for (module, counts) in &self.latencies {
            histogram(
                &mut family,
                &[("module", module)],
                crate::latency::LATENCY_BUCKETS
                    .into_iter()
                    .zip(counts.cumulative()),
                counts.sum_seconds(),
                counts.count(),
            )?;
        }
        Ok(())
    }

    /// Outbound HTTP by module and host: requests, errors, refusals, total and longest time.
    fn outbound(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        type Count = fn(&crate::OutboundHostStats) -> u64;
        type Seconds = fn(&crate::OutboundHostStats) -> f64;
        use MetricType::{Counter, Gauge};
        let counts: [(&str, &str, Count); 3] = [
            (
                "modhost_outbound_requests",
                "outbound HTTP requests by module and host (answered, failed or refused)",
                |host| host.requests,
            ),
            (
                "modhost_outbound_errors",
                "outbound HTTP requests that got no response (refusals included)",
                |host| host.errors,
            ),
            (
                "modhost_outbound_refused",
                "outbound HTTP requests refused before any connection (bad URL, host not allowed, internal address)",
                |host| host.refused,
            ),
        ];
        for (name, help, figure) in counts {
            let mut family = family(encoder, name, help, Counter)?;
            for (module, hosts) in &self.outbound {
                for (host, counters) in hosts {
                    let labels = [("module", module.as_str()), ("host", host.as_str())];
                    sample(&mut family, &labels, Counter, figure(counters))?;
                }
            }
        }
        let seconds: [(&str, &str, MetricType, Seconds); 2] = [
            (
                "modhost_outbound_seconds",
                "total time of outbound HTTP requests, in seconds",
                Counter,
                |host| host.latency_seconds_sum,
            ),
            (
                "modhost_outbound_seconds_max",
                "longest outbound HTTP request, in seconds",
                Gauge,
                |host| host.latency_seconds_max,
            ),
        ];
        for (name, help, kind, figure) in seconds {
            let mut family = family(encoder, name, help, kind)?;
            for (module, hosts) in &self.outbound {
                for (host, counters) in hosts {
                    let labels = [("module", module.as_str()), ("host", host.as_str())];
                    sample(&mut family, &labels, kind, figure(counters))?;
                }
            }
        }
        Ok(())
    }

    /// Reloads by outcome, the holds of swaps with a state handoff, draining versions.
    fn swaps(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let mut reloads = family(
            encoder,
            "modhost_reloads",
            "module reloads (file events, SIGHUP, the admin API) by outcome",
            MetricType::Counter,
        )?;
        for (outcome, count) in crate::registry::RELOAD_OUTCOMES.iter().zip(self.reloads) {
            sample(
                &mut reloads,
                &[("outcome", outcome)],
                MetricType::Counter,
                count,
            )?;
        }
        let holds = &self.holds;
        let mut hold = family(
            encoder,
            "modhost_swap_hold_seconds",
            "how long swaps with a state handoff held new requests (drain + snapshot + restore)",
            MetricType::Histogram,
        )?;
        histogram(
            &mut hold,
            &[],
            crate::registry::HOLD_BUCKETS.into_iter().zip(holds.buckets),
            holds.sum_seconds,
            holds.count,
        )?;
        single(
            encoder,
            "modhost_swap_held_requests",
            "requests that waited in the hold of a swap with a state handoff",
            MetricType::Counter,
            holds.held_requests,
        )?;
        single(
            encoder,
            "modhost_modules_draining",
            "retired versions still draining",
            MetricType::Gauge,
            self.draining as u64,
        )
    }

    /// The WebSocket relay and the bus.
    fn relay_and_bus(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        use MetricType::{Counter, Gauge};
        let ws = self.ws;
        let bus = self.bus;
        for (name, help, kind, value) in [
            (
                "modhost_ws_clients",
                "WebSocket clients connected",
                Gauge,
                ws.clients,
            ),
            (
                "modhost_ws_frames",
                "frames queued to WebSocket clients",
                Counter,
                ws.frames,
            ),
            (
                "modhost_ws_slow_disconnects",
                "WebSocket clients disconnected for being too slow",
                Counter,
                ws.slow_disconnects,
            ),
            (
                "modhost_bus_published",
                "messages published",
                Counter,
                bus.published,
            ),
            (
                "modhost_bus_delivered",
                "messages delivered to subscribers",
                Counter,
                bus.delivered,
            ),
            (
                "modhost_bus_dropped",
                "messages dropped at a full subscriber",
                Counter,
                bus.dropped_full,
            ),
            (
                "modhost_bus_late_replies",
                "replies that came after their request timed out",
                Counter,
                bus.late_replies,
            ),
        ] {
            single(encoder, name, help, kind, value)?;
        }
        Ok(())
    }
}

/// The store's operation counts and its commit-latency histogram.
fn store_metrics(encoder: &mut DescriptorEncoder<'_>, stats: &state::StoreStats) -> Result {
    let mut operations = family(
        encoder,
        "modhost_kv_operations",
        "key-value store operations by kind, all modules",
        MetricType::Counter,
    )?;
    for (op, count) in [
        ("get", stats.get),
        ("set", stats.set),
        ("delete", stats.delete),
        ("exists", stats.exists),
        ("list", stats.list),
        ("increment", stats.increment),
        ("cas", stats.cas),
        ("batch", stats.batch),
    ] {
        sample(&mut operations, &[("op", op)], MetricType::Counter, count)?;
    }
    single(
        encoder,
        "modhost_kv_errors",
        "key-value store operations that failed, all modules",
        MetricType::Counter,
        stats.errors,
    )?;
    let latency = &stats.commit_latency;
    let mut commits = family(
        encoder,
        "modhost_kv_commit_seconds",
        "time to commit a key-value write transaction (with fsync when durable)",
        MetricType::Histogram,
    )?;
    histogram(
        &mut commits,
        &[],
        latency.buckets.iter().copied(),
        latency.sum_seconds,
        latency.count,
    )
}
