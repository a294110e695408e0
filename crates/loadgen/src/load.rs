//! The load generator: a fixed number of keep-alive HTTP/1.1 connections, each sending one
//! request after another for a fixed time, latencies in an HdrHistogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// One request the connections repeat.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address (loopback).
    pub addr: SocketAddr,
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Target {
    /// `GET path` on `addr`.
    pub fn get(addr: SocketAddr, path: &str) -> Target {
        Target {
            addr,
            method: http::Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Target {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn request(&self) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(http::header::HOST, self.addr.to_string());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        Ok(builder.body(Full::new(self.body.clone()))?)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Connections.
    pub concurrency: usize,
    /// Measured seconds (after warm-up).
    pub seconds: f64,
    /// Responses received in the measured window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Responses with a status outside 200-299.
    pub non_2xx: u64,
    /// Connect, send or receive failures.
    pub socket_errors: u64,
}

/// A connection's counters.
struct Tally {
    histogram: Histogram<u64>,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 120_000_000, 3).context("creating a histogram")
}

/// A keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, target: &Target) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(target.request()?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// One request on a fresh connection: for setup and control calls.
pub async fn once(target: &Target) -> anyhow::Result<(u16, Bytes)> {
    let mut connection = Connection::open(target.addr).await?;
    connection.send(target).await
}

/// Runs `concurrency` connections against `target` for `warmup` (not measured) then
/// `duration`.
pub async fn run(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let target = target.clone();
        let stop = stop.clone();
        let measuring = measuring.clone();
        let mut connection = Connection::open(target.addr).await?;
        tasks.spawn(async move {
            let mut tally = Tally {
                histogram: histogram()?,
                requests: 0,
                non_2xx: 0,
                socket_errors: 0,
            };
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = connection.send(&target).await;
                let elapsed = started.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    if result.is_err() {
                        connection = Connection::open(target.addr).await?;
                    }
                    continue;
                }
                match result {
                    Ok((status, _)) => {
                        tally.requests += 1;
                        if !(200..300).contains(&status) {
                            tally.non_2xx += 1;
                        }
                        tally.histogram.saturating_record(
                            u64::try_from(elapsed.as_micros())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        );
                    }
                    Err(_) => {
                        tally.socket_errors += 1;
                        match Connection::open(target.addr).await {
                            Ok(fresh) => connection = fresh,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            anyhow::Ok(tally)
        });
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally {
        histogram: histogram()?,
        requests: 0,
        non_2xx: 0,
        socket_errors: 0,
    };
    let deadline = Duration::from_secs(30);
    while let Some(joined) = tokio::time::timeout(deadline, tasks.join_next())
        .await
        .context("a connection did not stop within 30 s")?
    {
        let tally = joined??;
        total.histogram.add(&tally.histogram)?;
        total.requests += tally.requests;
        total.non_2xx += tally.non_2xx;
        total.socket_errors += tally.socket_errors;
    }
    Ok(LoadResult {
        concurrency,
        seconds,
        requests: total.requests,
        rps: total.requests as f64 / seconds,
        p50_us: total.histogram.value_at_quantile(0.50),
        p90_us: total.histogram.value_at_quantile(0.90),
        p99_us: total.histogram.value_at_quantile(0.99),
        max_us: total.histogram.max(),
        non_2xx: total.non_2xx,
        socket_errors: total.socket_errors,
    })
}
