//! The live status page: `GET /_admin` (server-rendered HTML from `status.html`, inline CSS
//! and JS, no external assets), `GET /_admin/status` (the current snapshot as JSON) and
//! `GET /_admin/events` (a snapshot as a Server-Sent Event every 500 ms, and at once after a
//! reload or a drain).
//!
//! One sampler task builds each snapshot once and publishes it on a `watch` channel; every
//! event stream only reads the latest value, so a slow client skips snapshots instead of
//! queueing them, and blocks nothing. Streams are bounded ([`MAX_EVENT_STREAMS`]), end after
//! [`STREAM_LIFETIME`] (the browser reconnects) and end at shutdown. Nothing is sampled while
//! no stream is open.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::http::Body;
use crate::latency::LatencyCounts;
use crate::registry::{Registry, Rejection, SwapInfo};
use crate::ws::Hub;

/// How often an open event stream gets a snapshot.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(500);
/// Event streams open at once, at most; more are answered 503.
pub const MAX_EVENT_STREAMS: usize = 32;
/// An event stream ends after this long; the browser's `EventSource` reconnects (after the
/// `retry:` of one second), so a client that stopped reading holds its slot no longer.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// Rates and latency quantiles are taken over this much of the recent past.
const WINDOW: Duration = Duration::from_secs(5);

/// The body of `GET /_admin/events`.
pub(crate) type EventStream =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// One module in a snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ModuleRow {
    name: String,
    version: Option<String>,
    loaded_at: Option<u64>,
    load_ms: Option<f64>,
    instances: usize,
    requests: u64,
    requests_per_second: f64,
    errors: u64,
    traps: u64,
    /// Median call latency over the window (over all time before the first window).
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    subscriptions: Vec<String>,
    middleware: bool,
    swaps: u64,
    last_swap: Option<SwapInfo>,
    last_rejected: Option<Rejection>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct TopicRow {
    topic: String,
    subscribers: usize,
    delivered: u64,
    delivered_per_second: f64,
    dropped_full: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct BusRow {
    published: u64,
    delivered: u64,
    dropped_full: u64,
    published_per_second: f64,
    delivered_per_second: f64,
    topics: Vec<TopicRow>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct WsTopicRow {
    topic: String,
    clients: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
struct WsRow {
    clients: u64,
    frames: u64,
    frames_per_second: f64,
    slow_disconnects: u64,
    topics: Vec<WsTopicRow>,
}

/// Everything the page shows, at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Snapshot {
    /// Milliseconds since the Unix epoch.
    generated_at_ms: u64,
    /// What the rates and quantiles are taken over, in seconds.
    window_seconds: f64,
    modules: Vec<ModuleRow>,
    bus: BusRow,
    websocket: WsRow,
    draining: usize,
}

/// The counters rates are computed from, at one moment.
struct Sample {
    at: Instant,
    requests: BTreeMap<String, u64>,
    latency: BTreeMap<String, LatencyCounts>,
    published: u64,
    delivered: u64,
    topics: BTreeMap<String, u64>,
    frames: u64,
}

/// Per second, between two readings of a counter.
fn rate(now: u64, before: Option<u64>, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    match before {
        #[allow(clippy::cast_precision_loss)] // counters far below 2^52
        Some(before) if seconds > 0.0 => now.saturating_sub(before) as f64 / seconds,
        _ => 0.0,
    }
}

/// Builds a snapshot and remembers its counters in `window`.
fn build(registry: &Registry, hub: &Hub, window: &mut VecDeque<Sample>) -> Snapshot {
    let now = Instant::now();
    let statuses = registry.status();
    let latency = registry.latencies().counts();
    let bus = registry.bus().stats();
    let topics = registry.bus().topic_stats();
    let ws = hub.stats();
    let sample = Sample {
        at: now,
        requests: statuses
            .iter()
            .map(|status| (status.name.clone(), status.requests))
            .collect(),
        latency: latency.clone(),
        published: bus.published,
        delivered: bus.delivered,
        topics: topics
            .iter()
            .map(|topic| (topic.topic.clone(), topic.delivered))
            .collect(),
        frames: ws.frames,
    };
    while window.len() > 1 && window.get(1).is_some_and(|next| now - next.at >= WINDOW) {
        window.pop_front();
    }
    let oldest = window.front();
    let elapsed = oldest.map_or(Duration::ZERO, |oldest| now - oldest.at);
    let modules = statuses
        .into_iter()
        .map(|status| {
            let lifetime = latency.get(&status.name).copied().unwrap_or_default();
            // Before the first window, and for a module with no calls before it, the window
            // is the whole lifetime.
            let recent = match oldest.and_then(|oldest| oldest.latency.get(&status.name)) {
                Some(before) => lifetime.since(before),
                None => lifetime,
            };
            let milliseconds = |q| recent.quantile(q).map(|seconds| seconds * 1e3);
            ModuleRow {
                requests_per_second: rate(
                    status.requests,
                    oldest.map(|oldest| {
                        oldest
                            .requests
                            .get(&status.name)
                            .copied()
                            .unwrap_or_default()
                    }),
                    elapsed,
                ),
                p50_ms: milliseconds(0.5),
                p99_ms: milliseconds(0.99),
                name: status.name,
                version: status.version,
                loaded_at: status.loaded_at,
                load_ms: status.load_ms,
                instances: status.instances,
                requests: status.requests,
                errors: status.errors,
                traps: status.traps,
                subscriptions: status.subscriptions,
                middleware: status.middleware.is_some(),
                swaps: status.swaps,
                last_swap: status.last_swap,
                last_rejected: status.last_rejected,
            }
        })
        .collect();
    let bus_row = BusRow {
        published: bus.published,
        delivered: bus.delivered,
        dropped_full: bus.dropped_full,
        published_per_second: rate(
            bus.published,
            oldest.map(|oldest| oldest.published),
            elapsed,
        ),
        delivered_per_second: rate(
            bus.delivered,
            oldest.map(|oldest| oldest.delivered),
            elapsed,
        ),
        topics: topics
            .into_iter()
            .map(|topic| TopicRow {
                delivered_per_second: rate(
                    topic.delivered,
                    oldest.map(|oldest| oldest.topics.get(&topic.topic).copied().unwrap_or(0)),
                    elapsed,
                ),
                topic: topic.topic,
                subscribers: topic.subscribers,
                delivered: topic.delivered,
                dropped_full: topic.dropped_full,
            })
            .collect(),
    };
    let websocket = WsRow {
        clients: ws.clients,
        frames: ws.frames,
        frames_per_second: rate(ws.frames, oldest.map(|oldest| oldest.frames), elapsed),
        slow_disconnects: ws.slow_disconnects,
        topics: hub
            .topic_clients()
            .into_iter()
            .map(|(topic, clients)| WsTopicRow { topic, clients })
            .collect(),
    };
    window.push_back(sample);
    Snapshot {
        generated_at_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            }),
        window_seconds: elapsed.as_secs_f64(),
        modules,
        bus: bus_row,
        websocket,
        draining: registry.draining(),
    }
}

struct Inner {
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    window: Mutex<VecDeque<Sample>>,
    latest: watch::Sender<Arc<Snapshot>>,
    streams: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

/// The snapshots: built on demand and, while an event stream is open, by the sampler task.
#[derive(Clone)]
pub(crate) struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// Builds the first snapshot and starts the sampler; both stop when `stopped` turns true
    /// (or its sender goes).
    pub(crate) fn start(
        registry: Arc<Registry>,
        hub: Arc<Hub>,
        stopped: watch::Receiver<bool>,
    ) -> Feed {
        let mut window = VecDeque::new();
        let first = build(&registry, &hub, &mut window);
        let (latest, _) = watch::channel(Arc::new(first));
        let feed = Feed {
            inner: Arc::new(Inner {
                registry,
                hub,
                window: Mutex::new(window),
                latest,
                streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
                stopped,
            }),
        };
        tokio::spawn(sample(Arc::downgrade(&feed.inner)));
        feed
    }

    /// Builds a snapshot now, publishes it to the streams and returns it.
    pub(crate) fn refresh(&self) -> Arc<Snapshot> {
        refresh(&self.inner)
    }

    /// The current snapshot as JSON (built now).
    pub(crate) fn latest_json(&self) -> String {
        serde_json::to_string(&*self.refresh())
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }

    /// A new event stream, or `Err(open)` when [`MAX_EVENT_STREAMS`] are open already.
    pub(crate) fn stream(&self) -> Result<EventStream, usize> {
        let permit = self
            .inner
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| MAX_EVENT_STREAMS)?;
        let snapshots = self.inner.latest.subscribe();
        let mut stopped = self.inner.stopped.clone();
        stopped.borrow_and_update();
        // A fresh snapshot, which is also this stream's first event.
        self.refresh();
        let state = StreamState {
            snapshots,
            stopped,
            ends: tokio::time::Instant::now() + STREAM_LIFETIME,
            first: true,
            _permit: permit,
        };
        let stream = futures_util::stream::unfold(state, next_event).boxed();
        Ok(StreamBody::new(stream))
    }
}

fn refresh(inner: &Inner) -> Arc<Snapshot> {
    let snapshot = {
        let mut window = inner.window.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::new(build(&inner.registry, &inner.hub, &mut window))
    };
    inner.latest.send_replace(snapshot.clone());
    snapshot
}

/// The sampler: while a stream is open, a snapshot every [`SNAPSHOT_INTERVAL`] and one at
/// once after every reload or drain. Ends with the server (or when the feed is gone).
async fn sample(inner: std::sync::Weak<Inner>) {
    let (mut stopped, changes_of) = match inner.upgrade() {
        Some(inner) => (inner.stopped.clone(), inner.registry.clone()),
        None => return,
    };
    let changes: &Notify = changes_of.changes();
    let mut tick = tokio::time::interval(SNAPSHOT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = stopped.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
            () = changes.notified() => {}
        }
        let Some(inner) = inner.upgrade() else { break };
        if inner.streams.available_permits() < MAX_EVENT_STREAMS {
            refresh(&inner);
        }
    }
}

struct StreamState {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stopped: watch::Receiver<bool>,
    ends: tokio::time::Instant,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

/// The next event of a stream: the latest snapshot once it changes; `None` (the end) at
/// shutdown, when the feed is gone, or after [`STREAM_LIFETIME`].
async fn next_event(
    mut state: StreamState,
) -> Option<(Result<Frame<Bytes>, Infallible>, StreamState)> {
    if *state.stopped.borrow() {
        return None;
    }
    let mut text = String::new();
    if state.first {
        state.first = false;
        // Reconnect a second after the stream ends.
        text.push_str("retry: 1000\n");
    }
    tokio::select! {
        changed = state.snapshots.changed() => changed.ok()?,
        _ = state.stopped.changed() => return None,
        () = tokio::time::sleep_until(state.ends) => return None,
    }
    let snapshot = state.snapshots.borrow_and_update().clone();
    let json = serde_json::to_string(&*snapshot).ok()?;
    // serde_json escapes newlines inside strings: the JSON is one `data:` line.
    let _ = write!(text, "event: snapshot\ndata: {json}\n\n");
    Some((Ok(Frame::data(Bytes::from(text))), state))
}

/// `GET /_admin`: the page, with the tables filled in from a snapshot built now.
pub(crate) fn page(feed: &Feed) -> Response<Body> {
    let snapshot = feed.refresh();
    let html = render(&snapshot);
    let mut response = Response::new(Body::new(Bytes::from(html)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Everything is inline; the page may talk only to this server.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    response
}

/// The page template: `<!--modules-->`, `<!--topics-->`, `<!--ws-->` and `<!--summary-->`
/// are replaced by the rows the page's script also renders from each event.
const TEMPLATE: &str = include_str!("status.html");

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// `HH:MM:SS` (UTC) of a time in seconds since the Unix epoch.
fn clock(epoch_seconds: u64) -> String {
    let seconds = epoch_seconds % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn milliseconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.2}"))
}

/// The last-swap cell: what the page's `swapText` writes too.
fn swap_text(swap: &SwapInfo) -> String {
    let mut text = format!("{} → {} at {}", swap.old, swap.new, clock(swap.at));
    match (swap.held_ms, swap.drain_ms) {
        (Some(held), _) => {
            let _ = write!(text, ", held {held:.1} ms");
        }
        (None, Some(drain)) => {
            let _ = write!(text, ", drained in {drain:.1} ms");
        }
        (None, None) => text.push_str(", draining"),
    }
    text
}

/// The last-refused cell: what the page's `refusedText` writes too.
fn refused_text(rejection: &Rejection) -> String {
    format!(
        "{} at {}: {}",
        rejection.version,
        clock(rejection.at),
        rejection.reason
    )
}

fn cell(out: &mut String, field: &str, class: &str, text: &str) {
    let _ = write!(
        out,
        "<td data-field=\"{field}\" class=\"{class}\">{}</td>",
        escape(text)
    );
}

/// The tables' rows and the summary line, as the page's script renders them.
fn render(snapshot: &Snapshot) -> String {
    let mut modules = String::new();
    for module in &snapshot.modules {
        let _ = write!(modules, "<tr data-module=\"{}\">", escape(&module.name));
        let name = if module.middleware {
            format!("{} (middleware)", module.name)
        } else {
            module.name.clone()
        };
        cell(&mut modules, "name", "", &name);
        cell(
            &mut modules,
            "version",
            "mono",
            module.version.as_deref().unwrap_or("not loaded"),
        );
        cell(
            &mut modules,
            "loaded_at",
            "",
            &module.loaded_at.map(clock).unwrap_or_default(),
        );
        cell(
            &mut modules,
            "load_ms",
            "num",
            &milliseconds(module.load_ms),
        );
        cell(
            &mut modules,
            "instances",
            "num",
            &module.instances.to_string(),
        );
        cell(
            &mut modules,
            "requests_per_second",
            "num",
            &format!("{:.1}", module.requests_per_second),
        );
        cell(
            &mut modules,
            "requests",
            "num",
            &module.requests.to_string(),
        );
        let fault = |count: u64| if count > 0 { "num bad" } else { "num" };
        cell(
            &mut modules,
            "errors",
            fault(module.errors),
            &module.errors.to_string(),
        );
        cell(
            &mut modules,
            "traps",
            fault(module.traps),
            &module.traps.to_string(),
        );
        cell(&mut modules, "p50_ms", "num", &milliseconds(module.p50_ms));
        cell(&mut modules, "p99_ms", "num", &milliseconds(module.p99_ms));
        cell(
            &mut modules,
            "last_swap",
            "",
            &module.last_swap.as_ref().map(swap_text).unwrap_or_default(),
        );
        cell(
            &mut modules,
            "last_rejected",
            "bad",
            &module
                .last_rejected
                .as_ref()
                .map(refused_text)
                .unwrap_or_default(),
        );
        modules.push_str("</tr>\n");
    }
    let mut topics = String::new();
    for topic in &snapshot.bus.topics {
        let _ = write!(topics, "<tr data-topic=\"{}\">", escape(&topic.topic));
        cell(&mut topics, "topic", "mono", &topic.topic);
        let subscribers: Vec<&str> = snapshot
            .modules
            .iter()
            .filter(|module| module.subscriptions.contains(&topic.topic))
            .map(|module| module.name.as_str())
            .collect();
        cell(&mut topics, "modules", "", &subscribers.join(", "));
        cell(
            &mut topics,
            "subscribers",
            "num",
            &topic.subscribers.to_string(),
        );
        cell(
            &mut topics,
            "delivered_per_second",
            "num",
            &format!("{:.1}", topic.delivered_per_second),
        );
        cell(
            &mut topics,
            "delivered",
            "num",
            &topic.delivered.to_string(),
        );
        cell(
            &mut topics,
            "dropped_full",
            if topic.dropped_full > 0 {
                "num bad"
            } else {
                "num"
            },
            &topic.dropped_full.to_string(),
        );
        topics.push_str("</tr>\n");
    }
    let mut ws = String::new();
    for topic in &snapshot.websocket.topics {
        let _ = write!(ws, "<tr data-ws-topic=\"{}\">", escape(&topic.topic));
        cell(&mut ws, "topic", "mono", &topic.topic);
        cell(&mut ws, "clients", "num", &topic.clients.to_string());
        ws.push_str("</tr>\n");
    }
    let summary = format!(
        "bus: {:.1} published/s, {:.1} delivered/s, {} dropped · WebSocket: {} clients, {:.1} frames/s, {} cut off as slow · {} versions draining",
        snapshot.bus.published_per_second,
        snapshot.bus.delivered_per_second,
        snapshot.bus.dropped_full,
        snapshot.websocket.clients,
        snapshot.websocket.frames_per_second,
        snapshot.websocket.slow_disconnects,
        snapshot.draining,
    );
    TEMPLATE
        .replace("<!--modules-->", &modules)
        .replace("<!--topics-->", &topics)
        .replace("<!--ws-->", &ws)
        .replace("<!--summary-->", &escape(&summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400 + 3_600 * 13 + 60 * 7 + 9), "13:07:09");
    }

    #[test]
    fn rates_are_per_second_and_never_negative() {
        assert_eq!(rate(30, Some(10), Duration::from_secs(2)), 10.0);
        assert_eq!(rate(5, Some(10), Duration::from_secs(2)), 0.0, "a reset");
        assert_eq!(
            rate(30, None, Duration::from_secs(2)),
            0.0,
            "no earlier reading"
        );
        assert_eq!(rate(30, Some(10), Duration::ZERO), 0.0);
    }

    #[test]
    fn cells_describe_swaps_and_refusals() {
        let mut swap = SwapInfo {
            old: "aaaa".to_owned(),
            new: "bbbb".to_owned(),
            at: 3_600,
            handoff: "plain",
            held_ms: None,
            held_requests: 0,
            state_bytes: None,
            drain_ms: None,
        };
        assert_eq!(swap_text(&swap), "aaaa → bbbb at 01:00:00, draining");
        swap.drain_ms = Some(2.04);
        assert_eq!(
            swap_text(&swap),
            "aaaa → bbbb at 01:00:00, drained in 2.0 ms"
        );
        let rejection = Rejection {
            version: "cccc".to_owned(),
            reason: "not <wasm>".to_owned(),
            at: 61,
        };
        assert_eq!(refused_text(&rejection), "cccc at 00:01:01: not <wasm>");
    }
}
