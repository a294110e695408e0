//! Outbound HTTP for modules (the `http_send` import): each module's allow-list
//! (`allowed_hosts`), name resolution that refuses loopback and private addresses nobody
//! listed, HTTP/1.1 and HTTPS (rustls) on a small runtime of its own, redirects, size caps,
//! timeouts, a connection pool and a concurrency cap per module, and counters per module and
//! host. `wasi_host` calls it through [`wasi_host::Outbound`]; see `docs/ABI.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use binary::{Header, HttpRequest, HttpResponse, OutboundErrorKind, OutboundResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

/// Settings every module's outbound requests share (`[outbound]` in `modhost.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundConfig {
    /// PEM files of extra certificate authorities to trust for HTTPS, besides the bundled
    /// Mozilla root store (relative paths are under the root).
    pub ca_files: Vec<PathBuf>,
    /// Names (lowercase) answered without a DNS lookup, like an `/etc/hosts` of the outbound
    /// client (and curl's `--resolve`). The allow-list rules apply to these answers as to any
    /// other.
    pub resolve: BTreeMap<String, IpAddr>,
}

/// One module's outbound allow-list and limits (`allowed_hosts` and `outbound_*` in its
/// `modhost.toml` section). The default allows no host at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Hosts the module may reach. Empty: every outbound request is refused.
    pub allowed_hosts: Vec<HostPattern>,
    /// Redirects followed per request, each to an allowed host only (default 5).
    pub max_redirects: usize,
    /// Longest a TCP connect (and TLS handshake) may take (default 5 s).
    pub connect_timeout: Duration,
    /// Longest one request may take end to end, redirects included (default 10 s); the
    /// calling export's own deadline bounds it too.
    pub timeout: Duration,
    /// Largest response body accepted (default 4 MiB); a larger one is an error, not cut.
    pub max_response_bytes: usize,
    /// Outbound requests of the module in flight at once (default 16); more wait, within
    /// their own timeout, for a free place.
    pub max_concurrent: usize,
}

impl Default for OutboundPolicy {
    fn default() -> OutboundPolicy {
        OutboundPolicy {
            allowed_hosts: Vec::new(),
            max_redirects: 5,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 4 * 1024 * 1024,
            max_concurrent: 16,
        }
    }
}

/// One `allowed_hosts` entry: `[scheme://]host[:port]`, where `host` is a name, an IP address
/// (`[…]` for IPv6) or `*.` followed by a domain, which matches its subdomains (not the domain
/// itself). No scheme: both `http` and `https`; no port: any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<Scheme>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// A name (lowercase) or an address, exactly.
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix` (lowercase).
    Subdomains(String),
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPattern, String> {
        let entry = text.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some((other, _)) => {
                return Err(format!("{text:?}: scheme {other:?} is not http or https"));
            }
            None => (None, entry),
        };
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(format!(
                "{text:?} is not [scheme://]host[:port] (no path, query or user)"
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| {
            format!("{text:?} is not [scheme://]host[:port] (a bad port or IPv6 address)")
        })?;
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(domain) if valid_name(domain) => HostMatch::Subdomains(domain.to_owned()),
            Some(_) => return Err(format!("{text:?}: \"*.\" must be followed by a domain")),
            None if host.parse::<IpAddr>().is_ok() || valid_name(&host) => HostMatch::Exact(host),
            None => return Err(format!("{text:?}: {host:?} is not a host name or address")),
        };
        Ok(HostPattern { scheme, host, port })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{}://", scheme.name())?;
        }
        match &self.host {
            HostMatch::Exact(host) if host.contains(':') => write!(f, "[{host}]")?,
            HostMatch::Exact(host) => write!(f, "{host}")?,
            HostMatch::Subdomains(domain) => write!(f, "*.{domain}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A DNS name as the allow-list takes it: labels of letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port).
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((text, None)),
    }
}

impl HostPattern {
    fn matches(&self, target: &Target) -> bool {
        self.scheme.is_none_or(|scheme| scheme == target.scheme)
            && self.port.is_none_or(|port| port == target.port)
            && match &self.host {
                HostMatch::Exact(host) => *host == target.host,
                HostMatch::Subdomains(domain) => target
                    .host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            }
    }

    /// Whether this entry names `target`'s host itself (not through `*.`), or `address`: what
    /// lets a request reach a loopback or private address.
    fn lists(&self, target: &Target, address: IpAddr) -> bool {
        self.scheme.is_none_or(|scheme| scheme == target.scheme)
            && self.port.is_none_or(|port| port == target.port)
            && match &self.host {
                HostMatch::Exact(host) => {
                    *host == target.host || host.parse::<IpAddr>().ok() == Some(address)
                }
                HostMatch::Subdomains(_) => false,
            }
    }
}

/// Addresses a name must be listed for: loopback, private, link-local, carrier-grade NAT,
/// unspecified, broadcast and multicast (and the IPv6 equivalents, IPv4-mapped included).
fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || (a == 100 && (64..128).contains(&b))
        || a == 0
}

/// Where one request goes: the parsed absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: Scheme,
    /// Lowercase name, or an address without brackets.
    host: String,
    port: u16,
    /// Origin-form: `/path?query`.
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, Failure> {
        let invalid = |reason: &str| {
            Failure::new(OutboundErrorKind::Invalid, format!("URL {url:?} {reason}"))
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("does not parse"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(invalid(&format!(
                    "has scheme {other:?}: only http and https are allowed"
                )));
            }
            None => return Err(invalid("is not absolute (scheme://host/path)")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("carries credentials: pass them in a header"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("has no host"));
        }
        let port = authority
            .port_u16()
            .unwrap_or_else(|| scheme.default_port());
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned());
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            format!("/{path_and_query}")
        };
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// `host[:port]` as a label and in messages (the port when it is not the default).
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.name(),
            self.authority(),
            self.path_and_query
        )
    }

    /// The target a `Location` header points to, relative to this one.
    fn follow(&self, location: &str) -> Result<Target, Failure> {
        if location.contains("://") {
            return Target::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Target::parse(&format!("{}://{rest}", self.scheme.name()));
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let directory = &base[..base.rfind('/').map_or(0, |slash| slash + 1)];
            format!("{directory}{location}")
        };
        Target::parse(&format!(
            "{}://{}{path}",
            self.scheme.name(),
            self.authority()
        ))
    }
}

/// Why a request got no response, before it becomes an [`OutboundResponse::Error`].
#[derive(Debug)]
struct Failure {
    kind: OutboundErrorKind,
    message: String,
    /// Refused before any connection (by the URL, the allow-list or the resolved address).
    refused: bool,
}

impl Failure {
    fn new(kind: OutboundErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            refused: false,
        }
    }
}

/// Headers the client sets itself or that belong to one connection; a module's own are
/// dropped.
const HOP_BY_HOP: [&str; 10] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Counters of one (module, host) pair, for `/_admin/modules` and `/_admin/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct OutboundHostStats {
    /// Requests made (answered, failed or refused).
    pub requests: u64,
    /// Requests that got no response (refusals included).
    pub errors: u64,
    /// Requests refused before any connection (a bad URL, a host not allowed, an internal
    /// address nobody listed).
    pub refused: u64,
    /// Total time of the requests, in seconds.
    pub latency_seconds_sum: f64,
    /// Longest request, in seconds.
    pub latency_seconds_max: f64,
}

/// Hosts counted separately per module; the rest are counted under [`OTHER_HOSTS`].
const MAX_HOSTS_PER_MODULE: usize = 256;

/// The host label of requests past [`MAX_HOSTS_PER_MODULE`].
const OTHER_HOSTS: &str = "(other)";

/// How long before the calling export's deadline an outbound request gives up.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// Idle connections kept per (scheme, host, address) of a module.
const MAX_IDLE_PER_HOST: usize = 8;

/// The outbound client of the whole server: one runtime, one TLS configuration, one name
/// table; [`OutboundHub::for_module`] gives each module its own allow-list, limits, pool
/// and concurrency cap.
pub struct OutboundHub {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
    resolve: BTreeMap<String, IpAddr>,
    stats: Arc<Mutex<BTreeMap<(String, String), OutboundHostStats>>>,
    modules: Mutex<HashMap<String, Arc<ModuleState>>>,
}

impl fmt::Debug for OutboundHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundHub").finish_non_exhaustive()
    }
}

impl Drop for OutboundHub {
    fn drop(&mut self) {
        // The hub may be dropped inside an async context, where dropping a runtime panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Idle connections are kept per scheme, host name (the TLS name) and address.
type PoolKey = (Scheme, String, SocketAddr);

/// The pool and the concurrency cap of one module, kept across its versions.
struct ModuleState {
    policy: OutboundPolicy,
    permits: Arc<tokio::sync::Semaphore>,
    idle: Mutex<HashMap<PoolKey, Vec<SendRequest<Full<Bytes>>>>>,
}

impl OutboundHub {
    /// Starts the outbound runtime (one worker thread) and reads the extra CA files.
    pub fn new(config: &OutboundConfig, root: &std::path::Path) -> anyhow::Result<OutboundHub> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("modhost-outbound")
            .enable_all()
            .build()
            .context("starting the outbound HTTP runtime")?;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for file in &config.ca_files {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                root.join(file)
            };
            let certificates = read_certificates(&path)?;
            for certificate in certificates {
                roots.add(certificate).with_context(|| {
                    format!(
                        "outbound ca_files: {}: a certificate is not usable",
                        path.display()
                    )
                })?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(OutboundHub {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            tls: Arc::new(tls),
            resolve: config.resolve.clone(),
            stats: Arc::default(),
            modules: Mutex::default(),
        })
    }

    /// The client module `name` gets, under `policy`. A module keeps its pool and
    /// concurrency cap across versions while its policy stays the same.
    pub fn for_module(
        self: &Arc<OutboundHub>,
        name: &str,
        policy: &OutboundPolicy,
    ) -> Arc<dyn wasi_host::Outbound> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match modules.get(name) {
            Some(state) if state.policy == *policy => state.clone(),
            _ => {
                let state = Arc::new(ModuleState {
                    policy: policy.clone(),
                    permits: Arc::new(tokio::sync::Semaphore::new(policy.max_concurrent.max(1))),
                    idle: Mutex::default(),
                });
                modules.insert(name.to_owned(), state.clone());
                state
            }
        };
        Arc::new(ModuleClient {
            module: name.to_owned(),
            hub: self.clone(),
            state,
        })
    }

    /// Counters by module, then by host (`host[:port]`; `-` for a URL with no usable host;
    /// `(other)` for hosts past the first 256 of a module).
    pub fn stats(&self) -> BTreeMap<String, BTreeMap<String, OutboundHostStats>> {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_module: BTreeMap<String, BTreeMap<String, OutboundHostStats>> = BTreeMap::new();
        for ((module, host), counters) in stats.iter() {
            by_module
                .entry(module.clone())
                .or_default()
                .insert(host.clone(), *counters);
        }
        by_module
    }

    fn record(&self, module: &str, host: &str, elapsed: Duration, failure: Option<&Failure>) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (module.to_owned(), host.to_owned());
        // A module picks the hosts it asks for, refused ones included: past a bound, new ones
        // are counted together so the table cannot grow without limit.
        if !stats.contains_key(&key)
            && stats.keys().filter(|(name, _)| name == module).count() >= MAX_HOSTS_PER_MODULE
        {
            key.1 = OTHER_HOSTS.to_owned();
        }
        let entry = stats.entry(key).or_default();
        entry.requests += 1;
        let seconds = elapsed.as_secs_f64();
        entry.latency_seconds_sum += seconds;
        entry.latency_seconds_max = entry.latency_seconds_max.max(seconds);
        if let Some(failure) = failure {
            entry.errors += 1;
            if failure.refused {
                entry.refused += 1;
            }
        }
    }
}

fn read_certificates(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject as _;
    let certificates = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("outbound ca_files: reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("outbound ca_files: {} is not PEM", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("outbound ca_files: {} holds no certificate", path.display());
    }
    Ok(certificates)
}

/// One module's view of the hub: what `wasi_host` calls.
struct ModuleClient {
    module: String,
    hub: Arc<OutboundHub>,
    state: Arc<ModuleState>,
}

impl fmt::Debug for ModuleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleClient")
            .field("module", &self.module)
            .field("policy", &self.state.policy)
            .finish_non_exhaustive()
    }
}

impl wasi_host::Outbound for ModuleClient {
    fn send(&self, request: HttpRequest, deadline: Instant) -> OutboundResponse {
        let started = Instant::now();
        let url = if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        let label =
            Target::parse(&url).map_or_else(|_| "-".to_owned(), |target| target.authority());
        let outcome = self.send_within(request, url, deadline);
        self.hub.record(
            &self.module,
            &label,
            started.elapsed(),
            outcome.as_ref().err(),
        );
        match outcome {
            Ok(response) => OutboundResponse::Response(response),
            Err(failure) => {
                tracing::info!(module = %self.module, host = %label, kind = failure.kind.name(), "outbound request failed: {}", failure.message);
                OutboundResponse::Error {
                    kind: failure.kind,
                    message: failure.message,
                }
            }
        }
    }
}

impl ModuleClient {
    fn send_within(
        &self,
        request: HttpRequest,
        url: String,
        deadline: Instant,
    ) -> Result<HttpResponse, Failure> {
        let policy = &self.state.policy;
        // Give up a little before the call's deadline, so the guest is back in its own code,
        // with an error to handle, when the deadline fires (the watchdog then stops it at its
        // next import, or interrupts it), rather than still inside this import.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN);
        let (wait, by_deadline) = if left < policy.timeout {
            (left, true)
        } else {
            (policy.timeout, false)
        };
        let exchange = Exchange {
            module: self.module.clone(),
            hub: self.hub.clone(),
            state: self.state.clone(),
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.hub.handle.spawn(async move {
            let outcome = tokio::time::timeout(wait, exchange.run(request, url)).await;
            let _ = sender.send(outcome);
        });
        let late = || {
            let message = if by_deadline {
                format!(
                    "module \"{}\": no response before the calling export's deadline",
                    self.module
                )
            } else {
                format!(
                    "module \"{}\": no response within the outbound timeout of {} ms",
                    self.module,
                    policy.timeout.as_millis()
                )
            };
            Failure::new(OutboundErrorKind::Timeout, message)
        };
        // The task ends itself at `wait` too (dropping its connection); this side does not
        // wait longer even if the outbound runtime is late.
        match receiver.recv_timeout(wait) {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => Err(late()),
        }
    }
}

/// One request's run on the outbound runtime.
struct Exchange {
    module: String,
    hub: Arc<OutboundHub>,
    state: Arc<ModuleState>,
}

/// Statuses that redirect, with whether the method and body are kept (307, 308).
fn redirect(status: u16) -> Option<bool> {
    match status {
        301..=303 => Some(false),
        307 | 308 => Some(true),
        _ => None,
    }
}

impl Exchange {
    async fn run(self, request: HttpRequest, url: String) -> Result<HttpResponse, Failure> {
        let policy = &self.state.policy;
        let mut target = Target::parse(&url).map_err(|failure| self.refused(failure))?;
        let mut method = http::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            self.refused(Failure::new(
                OutboundErrorKind::Invalid,
                format!("method {:?} is not an HTTP method", request.method),
            ))
        })?;
        let mut body = Bytes::from(request.body);
        let headers = request.headers;
        self.check_allowed(&target, None)?;
        let _permit = self
            .state
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| {
                Failure::new(
                    OutboundErrorKind::Unavailable,
                    "the outbound client is closed",
                )
            })?;
        let mut redirects = 0;
        loop {
            let address = self.resolve(&target).await?;
            let response = self
                .exchange(&target, address, &method, &headers, body.clone())
                .await?;
            let location = response.header("location").map(str::to_owned);
            let (Some(keep_method), Some(location)) = (redirect(response.status), location) else {
                return Ok(response);
            };
            if redirects >= policy.max_redirects {
                return Err(Failure::new(
                    OutboundErrorKind::Limit,
                    format!(
                        "module \"{}\": {} redirected more than {} times",
                        self.module, url, policy.max_redirects
                    ),
                ));
            }
            redirects += 1;
            let next = target.follow(&location).map_err(|failure| {
                Failure::new(
                    failure.kind,
                    format!("redirect from {}: {}", target.url(), failure.message),
                )
            })?;
            self.check_allowed(&next, Some(&target))?;
            if !keep_method && method != http::Method::HEAD {
                method = http::Method::GET;
                body = Bytes::new();
            }
            target = next;
        }
    }

    fn refused(&self, failure: Failure) -> Failure {
        Failure {
            kind: failure.kind,
            message: format!(
                "module \"{}\": outbound request refused: {}",
                self.module, failure.message
            ),
            refused: true,
        }
    }

    fn check_allowed(&self, target: &Target, from: Option<&Target>) -> Result<(), Failure> {
        if self
            .state
            .policy
            .allowed_hosts
            .iter()
            .any(|pattern| pattern.matches(target))
        {
            return Ok(());
        }
        let what = match from {
            Some(from) => format!("redirect from {} to {}", from.url(), target.url()),
            None => target.url(),
        };
        Err(self.refused(Failure::new(
            OutboundErrorKind::Denied,
            format!(
                "host \"{}\" ({} port {}) is not in its allowed_hosts ({what})",
                target.authority(),
                target.scheme.name(),
                target.port
            ),
        )))
    }

    /// The address to connect to: looked up once, checked, and used as it is (no second
    /// lookup that could answer differently).
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, Failure> {
        let candidates: Vec<IpAddr> = if let Ok(address) = target.host.parse::<IpAddr>() {
            vec![address]
        } else if let Some(address) = self.hub.resolve.get(&target.host) {
            vec![*address]
        } else {
            let lookup = tokio::time::timeout(
                self.state.policy.connect_timeout,
                tokio::net::lookup_host((target.host.as_str(), target.port)),
            )
            .await
            .map_err(|_| {
                Failure::new(
                    OutboundErrorKind::Timeout,
                    format!("resolving \"{}\" timed out", target.host),
                )
            })?
            .map_err(|error| {
                Failure::new(
                    OutboundErrorKind::Connect,
                    format!("\"{}\" does not resolve: {error}", target.host),
                )
            })?;
            lookup.map(|address| address.ip()).collect()
        };
        let policy = &self.state.policy;
        let mut refused = None;
        for address in candidates {
            if !is_internal(address)
                || policy
                    .allowed_hosts
                    .iter()
                    .any(|pattern| pattern.lists(target, address))
            {
                return Ok(SocketAddr::new(address, target.port));
            }
            refused.get_or_insert(address);
        }
        Err(match refused {
            Some(address) => self.refused(Failure::new(
                OutboundErrorKind::Denied,
                format!(
                    "host \"{}\" resolves to the internal address {address}, which its allowed_hosts does not list",
                    target.host
                ),
            )),
            None => Failure::new(
                OutboundErrorKind::Connect,
                format!("\"{}\" resolves to no address", target.host),
            ),
        })
    }

    /// A connection from the pool, or a new one.
    async fn connection(
        &self,
        target: &Target,
        address: SocketAddr,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), Failure> {
        let key = (target.scheme, target.host.clone(), address);
        loop {
            let idle = self
                .state
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&key)
                .and_then(Vec::pop);
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok((sender, true));
                    }
                }
                None => break,
            }
        }
        let connect_timeout = self.state.policy.connect_timeout;
        let connected = async {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|error| {
                    Failure::new(
                        OutboundErrorKind::Connect,
                        format!("connecting to {} ({address}): {error}", target.authority()),
                    )
                })?;
            let _ = stream.set_nodelay(true);
            match target.scheme {
                Scheme::Http => handshake(TokioIo::new(stream), target).await,
                Scheme::Https => {
                    let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                        .map_err(|_| {
                            Failure::new(
                                OutboundErrorKind::Invalid,
                                format!("\"{}\" is not a TLS server name", target.host),
                            )
                        })?;
                    let stream = tokio_rustls::TlsConnector::from(self.hub.tls.clone())
                        .connect(name, stream)
                        .await
                        .map_err(|error| {
                            Failure::new(
                                OutboundErrorKind::Tls,
                                format!(
                                    "TLS handshake with {} failed: {error}",
                                    target.authority()
                                ),
                            )
                        })?;
                    handshake(TokioIo::new(stream), target).await
                }
            }
        };
        let sender = tokio::time::timeout(connect_timeout, connected)
            .await
            .map_err(|_| {
                Failure::new(
                    OutboundErrorKind::Timeout,
                    format!(
                        "connecting to {} ({address}) took longer than {} ms",
                        target.authority(),
                        connect_timeout.as_millis()
                    ),
                )
            })??;
        Ok((sender, false))
    }

    async fn exchange(
        &self,
        target: &Target,
        address: SocketAddr,
        method: &http::Method,
        headers: &[Header],
        body: Bytes,
    ) -> Result<HttpResponse, Failure> {
        let request = rebuild(method, target, headers, body.clone())?;
        let (mut sender, reused) = self.connection(target, address).await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            // A pooled connection the upstream closed meanwhile: once more, on a new one.
            Err(error) if reused && (error.is_canceled() || error.is_closed()) => {
                let (mut fresh, _) = self.connection_new(target, address).await?;
                let retry = rebuild(method, target, headers, body)?;
                fresh
                    .send_request(retry)
                    .await
                    .map_err(|error| http_failure(target, &error))?
            }
            Err(error) => return Err(http_failure(target, &error)),
        };
        let (parts, mut incoming) = response.into_parts();
        let cap = self.state.policy.max_response_bytes;
        let too_large = |size: String| {
            Failure::new(
                OutboundErrorKind::TooLarge,
                format!(
                    "the response from {} is larger than {cap} bytes ({size})",
                    target.url()
                ),
            )
        };
        if let Some(length) = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            && length > cap as u64
        {
            return Err(too_large(format!("content-length {length}")));
        }
        let mut collected = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|error| http_failure(target, &error))?;
            if let Ok(data) = frame.into_data() {
                if collected.len() + data.len() > cap {
                    return Err(too_large("a longer body".to_owned()));
                }
                collected.extend_from_slice(&data);
            }
        }
        if !sender.is_closed() {
            let mut idle = self
                .state
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = idle
                .entry((target.scheme, target.host.clone(), address))
                .or_default();
            if slot.len() < MAX_IDLE_PER_HOST {
                slot.push(sender);
            }
        }
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| Header::new(name.as_str(), value.as_bytes().to_vec()))
                .collect(),
            body: collected,
        })
    }

    /// A new connection, never a pooled one.
    async fn connection_new(
        &self,
        target: &Target,
        address: SocketAddr,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), Failure> {
        self.state
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(target.scheme, target.host.clone(), address));
        self.connection(target, address).await
    }
}

fn rebuild(
    method: &http::Method,
    target: &Target,
    headers: &[Header],
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, Failure> {
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(target.path_and_query.as_str())
        .header(http::header::HOST, target.authority());
    for header in headers {
        if !HOP_BY_HOP
            .iter()
            .any(|name| header.name.eq_ignore_ascii_case(name))
        {
            builder = builder.header(header.name.as_str(), header.value.as_slice());
        }
    }
    builder.body(Full::new(body)).map_err(|error| {
        Failure::new(
            OutboundErrorKind::Invalid,
            format!("request to {} is not valid HTTP: {error}", target.url()),
        )
    })
}

async fn handshake<T>(io: TokioIo<T>, target: &Target) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| http_failure(target, &error))?;
    tokio::spawn(async move {
        // Ends when the connection closes; an error here surfaces in the request it broke.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Classifies a hyper error: a reset or refused connection, or broken HTTP.
fn http_failure(target: &Target, error: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Failure::new(
                OutboundErrorKind::Connect,
                format!("{}: the connection failed: {io}", target.url()),
            );
        }
        source = current.source();
    }
    let kind = if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        OutboundErrorKind::Connect
    } else {
        OutboundErrorKind::Protocol
    };
    Failure::new(kind, format!("{}: {error}", target.url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn patterns_parse_and_print_back() {
        for text in [
            "api.example.org",
            "127.0.0.1:8081",
            "*.internal.example",
            "https://api.example.org",
            "http://[::1]:9000",
        ] {
            assert_eq!(pattern(text).to_string(), text);
        }
        for bad in [
            "",
            "ftp://x.org",
            "x.org/path",
            "x.org:99999",
            "*.",
            "a b",
            "user@x.org",
            "::1",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let any = pattern("api.example.org");
        assert!(any.matches(&target("http://api.example.org/x")));
        assert!(any.matches(&target("https://API.example.org:8443/x")));
        assert!(!any.matches(&target("http://example.org/")));
        let with_port = pattern("127.0.0.1:8081");
        assert!(with_port.matches(&target("http://127.0.0.1:8081/")));
        assert!(!with_port.matches(&target("http://127.0.0.1:8082/")));
        let tls_only = pattern("https://api.example.org");
        assert!(!tls_only.matches(&target("http://api.example.org/")));
        let wildcard = pattern("*.internal.example");
        assert!(wildcard.matches(&target("http://a.internal.example/")));
        assert!(wildcard.matches(&target("http://a.b.internal.example/")));
        assert!(!wildcard.matches(&target("http://internal.example/")));
        assert!(!wildcard.matches(&target("http://evilinternal.example/")));
        assert!(pattern("[::1]").matches(&target("http://[::1]:5/")));
    }

    #[test]
    fn internal_addresses_need_a_listing_by_name_or_address() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let api = target("http://api.test/");
        assert!(is_internal(loopback));
        assert!(is_internal("10.1.2.3".parse().unwrap()));
        assert!(is_internal("::ffff:192.168.0.1".parse().unwrap()));
        assert!(is_internal("fd00::1".parse().unwrap()));
        assert!(!is_internal("93.184.216.34".parse().unwrap()));
        assert!(pattern("api.test").lists(&api, loopback));
        assert!(!pattern("*.test").lists(&api, loopback));
        assert!(pattern("127.0.0.1").lists(&api, loopback));
    }

    #[test]
    fn urls_parse_with_clear_errors_and_redirects_resolve() {
        let parsed = target("https://Example.org:8443/a/b?c=1");
        assert_eq!(parsed.host, "example.org");
        assert_eq!(parsed.port, 8443);
        assert_eq!(parsed.path_and_query, "/a/b?c=1");
        assert_eq!(target("http://x.org").path_and_query, "/");
        for (bad, reason) in [
            ("not a url", "does not parse"),
            ("ftp://x.org/", "only http and https"),
            ("/relative", "is not absolute"),
            ("http://user:pw@x.org/", "credentials"),
        ] {
            let failure = Target::parse(bad).unwrap_err();
            assert_eq!(failure.kind, OutboundErrorKind::Invalid);
            assert!(failure.message.contains(reason), "{}", failure.message);
        }
        let base = target("http://x.org:81/a/b?q");
        assert_eq!(base.follow("/c").unwrap().url(), "http://x.org:81/c");
        assert_eq!(base.follow("c").unwrap().url(), "http://x.org:81/a/c");
        assert_eq!(base.follow("//y.org/d").unwrap().url(), "http://y.org/d");
        assert_eq!(
            base.follow("https://z.org/e").unwrap().url(),
            "https://z.org/e"
        );
    }
}
