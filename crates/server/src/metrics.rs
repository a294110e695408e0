//! `GET /_admin/metrics`: counters, gauges and histograms in the Prometheus text format
//! (version 0.0.4), for scraping. It gives per-module traffic, faults and call latency, swaps, the WebSocket relay, the bus,
//! and the process's own resident memory, open file descriptors and threads (from
//! `/proc/self` on Linux; left out elsewhere).

use std::fmt::Write as _;

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

/// Reads one figure of a module's status.
type ModuleFigure = fn(&crate::ModuleStatus) -> u64;

/// Renders every metric.
pub(crate) fn render(registry: &Registry, hub: &Hub, bus: &bus::Bus) -> String {
    let mut out = Metrics::default();
    let modules = registry.status();
    out.family(
        "modhost_module_loaded",
        "gauge",
        "1 if a version of the module is serving, 0 if it was refused and none is",
    );
    for module in &modules {
        out.sample(
            "modhost_module_loaded",
            &module.name,
            u64::from(module.version.is_some()),
        );
    }
    let counters: [(&str, &str, ModuleFigure); 6] = [
        (
            "modhost_module_requests_total",
            "HTTP requests handled, over all versions",
            |module| module.requests,
        ),
        (
            "modhost_module_errors_total",
            "HTTP requests that failed in the module, over all versions",
            |module| module.errors,
        ),
        (
            "modhost_module_traps_total",
            "traps, over all versions",
            |module| module.traps,
        ),
        (
            "modhost_module_swaps_total",
            "versions swapped in since start",
            |module| module.swaps,
        ),
        (
            "modhost_module_kv_operations_total",
            "key-value operations, over all versions",
            |module| module.kv_operations,
        ),
        (
            "modhost_module_kv_errors_total",
            "key-value operations answered with an error, over all versions",
            |module| module.kv_errors,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for module in &modules {
            out.sample(name, &module.name, value(module));
        }
    }
    out.family(
        "modhost_module_rejected",
        "gauge",
        "1 if the last version offered was refused (see /_admin/modules for why)",
    );
    for module in &modules {
        out.sample(
            "modhost_module_rejected",
            &module.name,
            u64::from(module.last_rejected.is_some()),
        );
    }
    out.family(
        "modhost_module_instances",
        "gauge",
        "instances in the serving version's pool",
    );
    for module in &modules {
        out.sample(
            "modhost_module_instances",
            &module.name,
            module.instances as u64,
        );
    }
    for (name, help, figure) in [
        (
            "modhost_module_kv_keys",
            "keys in the module's own key-value store",
            (|module| module.kv_keys) as fn(&crate::ModuleStatus) -> Option<u64>,
        ),
        (
            "modhost_module_kv_bytes",
            "bytes (keys + values) in the module's own key-value store",
            |module| module.kv_bytes,
        ),
    ] {
        out.family(name, "gauge", help);
        for module in &modules {
            if let Some(value) = figure(module) {
                out.sample(name, &module.name, value);
            }
        }
    }
    latency_metrics(&mut out, &registry.latencies().counts());
    if let Some(store) = registry.store() {
        store_metrics(&mut out, &store.stats());
    }
    outbound_metrics(&mut out, registry);
    out.family(
        "modhost_reloads_total",
        "counter",
        "module reloads (file events, SIGHUP, the admin API) by outcome",
    );
    for (outcome, count) in crate::registry::RELOAD_OUTCOMES
        .iter()
        .zip(registry.reload_counts())
    {
        let _ = writeln!(
            out.text,
            "modhost_reloads_total{{outcome=\"{outcome}\"}} {count}"
        );
    }
    let holds = registry.hold_stats();
    out.family(
        "modhost_swap_hold_seconds",
        "histogram",
        "how long swaps with a state handoff held new requests (drain + snapshot + restore)",
    );
    for (bound, count) in crate::registry::HOLD_BUCKETS.iter().zip(holds.buckets) {
        let _ = writeln!(
            out.text,
            "modhost_swap_hold_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out.text,
        "modhost_swap_hold_seconds_bucket{{le=\"+Inf\"}} {}",
        holds.count
    );
    let _ = writeln!(
        out.text,
        "modhost_swap_hold_seconds_sum {}",
        holds.sum_seconds
    );
    let _ = writeln!(out.text, "modhost_swap_hold_seconds_count {}", holds.count);
    out.single(
        "modhost_swap_held_requests_total",
        "counter",
        "requests that waited in the hold of a swap with a state handoff",
        holds.held_requests,
    );
    out.single(
        "modhost_modules_draining",
        "gauge",
        "retired versions still draining",
        registry.draining() as u64,
    );

    let ws = hub.stats();
    out.single(
        "modhost_ws_clients",
        "gauge",
        "WebSocket clients connected",
        ws.clients,
    );
    out.single(
        "modhost_ws_frames_total",
        "counter",
        "frames queued to WebSocket clients",
        ws.frames,
    );
    out.single(
        "modhost_ws_slow_disconnects_total",
        "counter",
        "WebSocket clients disconnected for being too slow",
        ws.slow_disconnects,
    );

    let bus = bus.stats();
    for (name, help, value) in [
        (
            "modhost_bus_published_total",
            "messages published",
            bus.published,
        ),
        (
            "modhost_bus_delivered_total",
            "messages delivered to subscribers",
            bus.delivered,
        ),
        (
            "modhost_bus_dropped_total",
            "messages dropped at a full subscriber",
            bus.dropped_full,
        ),
        (
            "modhost_bus_late_replies_total",
            "replies that came after their request timed out",
            bus.late_replies,
        ),
    ] {
        out.single(name, "counter", help, value);
    }

    if let Some(process) = ProcessStats::read() {
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "resident memory size in bytes",
            process.rss_bytes,
        );
        out.single(
            "process_open_fds",
            "gauge",
            "open file descriptors",
            process.open_fds,
        );
        out.single("process_threads", "gauge", "OS threads", process.threads);
    }
    out.text
}

/// Per-module HTTP call latency (`modhost_module_request_seconds`), one histogram per module
/// that has been called.
fn latency_metrics(
    out: &mut Metrics,
    modules: &std::collections::BTreeMap<String, crate::latency::LatencyCounts>,
) {
    let name = "modhost_module_request_seconds";
    out.family(
        name,
        "histogram",
        "time from queueing an HTTP call on the module to its answer (a middleware's calls count under the middleware)",
    );
    for (module, counts) in modules {
        // Module names are [A-Za-z0-9_-]: nothing to escape in a label value.
        for (bound, count) in crate::latency::LATENCY_BUCKETS
            .iter()
            .zip(counts.cumulative())
        {
            let _ = writeln!(
                out.text,
                "{name}_bucket{{module=\"{module}\",le=\"{bound}\"}} {count}"
            );
        }
        let count = counts.count();
        let _ = writeln!(
            out.text,
            "{name}_bucket{{module=\"{module}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out.text,
            "{name}_sum{{module=\"{module}\"}} {}",
            counts.sum_seconds()
        );
        let _ = writeln!(out.text, "{name}_count{{module=\"{module}\"}} {count}");
    }
}

/// The store's operation counts and its commit-latency histogram.
/// Reads one figure of a module's outbound counters for one host, as sample text.
type OutboundFigure = fn(&crate::OutboundHostStats) -> String;

/// Outbound HTTP by module and host: requests, errors, refusals, total and longest time.
fn outbound_metrics(out: &mut Metrics, registry: &Registry) {
    let stats = registry.outbound().stats();
    let families: [(&str, &str, &str, OutboundFigure); 5] = [
        (
            "modhost_outbound_requests_total",
            "counter",
            "outbound HTTP requests by module and host (answered, failed or refused)",
            |host| host.requests.to_string(),
        ),
        (
            "modhost_outbound_errors_total",
            "counter",
            "outbound HTTP requests that got no response (refusals included)",
            |host| host.errors.to_string(),
        ),
        (
            "modhost_outbound_refused_total",
            "counter",
            "outbound HTTP requests refused before any connection (bad URL, host not allowed, internal address)",
            |host| host.refused.to_string(),
        ),
        (
            "modhost_outbound_seconds_sum",
            "counter",
            "total time of outbound HTTP requests, in seconds",
            |host| host.latency_seconds_sum.to_string(),
        ),
        (
            "modhost_outbound_seconds_max",
            "gauge",
            "longest outbound HTTP request, in seconds",
            |host| host.latency_seconds_max.to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for (module, hosts) in &stats {
            for (host, counters) in hosts {
                // Hosts come from parsed URLs; escape what a label value must anyway.
                let host = host.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out.text,
                    "{name}{{module=\"{module}\",host=\"{host}\"}} {}",
                    value(counters)
                );
            }
        }
    }
}

fn store_metrics(out: &mut Metrics, stats: &state::StoreStats) {
    out.family(
        "modhost_kv_operations_total",
        "counter",
        "key-value store operations by kind, all modules",
    );
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
        let _ = writeln!(
            out.text,
            "modhost_kv_operations_total{{op=\"{op}\"}} {count}"
        );
    }
    out.single(
        "modhost_kv_errors_total",
        "counter",
        "key-value store operations that failed, all modules",
        stats.errors,
    );
    let name = "modhost_kv_commit_seconds";
    out.family(
        name,
        "histogram",
        "time to commit a key-value write transaction (with fsync when durable)",
    );
    for (bound, count) in &stats.commit_latency.buckets {
        let _ = writeln!(out.text, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let latency = &stats.commit_latency;
    let _ = writeln!(out.text, "{name}_bucket{{le=\"+Inf\"}} {}", latency.count);
    let _ = writeln!(out.text, "{name}_sum {}", latency.sum_seconds);
    let _ = writeln!(out.text, "{name}_count {}", latency.count);
}

#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, module: &str, value: u64) {
        // Module names are [A-Za-z0-9_-]: nothing to escape in a label value.
        let _ = writeln!(self.text, "{name}{{module=\"{module}\"}} {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.text, "{name} {value}");
    }
}
