//! The baseline servers, run as child processes (`loadgen serve hello|users`) with the
//! same process setup as `modhost serve`: a multi-threaded tokio runtime with every driver,
//! hyper's HTTP/1.1 connection builder with the same limits, `TCP_NODELAY`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Answers every request with `200 ok`: what `/m/bench` does, without a module.
    Hello,
    /// `GET/POST /m/users`: the users module's list and create, natively.
    Users,
    /// `GET /?url=U`: fetches `U` with a pooled hyper client and answers its status and body,
    /// what the `proxy` module does with outbound HTTP, natively.
    Proxy,
}

/// The native proxy's HTTP client: hyper-util's pooled client over plain TCP.
type ProxyClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// Fetches the `url` query parameter and relays its status, content type and body.
async fn proxy(client: &ProxyClient, query: Option<&str>) -> http::Response<Full<Bytes>> {
    let url = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("url="))
        .map(|url| binary::url::form_decode(url).into_owned());
    let Some(url) = url else {
        return json_error(400, "add ?url=<absolute URL>");
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return json_error(400, "the URL does not parse");
    };
    let mut request = http::Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = uri;
    match client.request(request).await {
        Ok(upstream) => {
            let status = upstream.status().as_u16();
            match upstream.into_body().collect().await {
                Ok(body) => response(
                    status,
                    "text/plain; charset=utf-8",
                    body.to_bytes().to_vec(),
                ),
                Err(error) => json_error(502, &error.to_string()),
            }
        }
        Err(error) => json_error(502, &error.to_string()),
    }
}

/// A user, as the users module keeps it (`modules/users/wasm/src/lib.rs`).
#[derive(Debug, Clone, Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    email: String,
}

#[derive(Debug, Default)]
struct Users {
    users: BTreeMap<u64, User>,
    last_id: u64,
}

fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn json_error(status: u16, message: &str) -> http::Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    response(status, "application/json", body)
}

/// The module's list and create, on the same data structures and with the same serde work.
fn users(state: &Mutex<Users>, method: &http::Method, body: &[u8]) -> http::Response<Full<Bytes>> {
    let Ok(mut users) = state.lock() else {
        return json_error(500, "poisoned");
    };
    match *method {
        http::Method::GET => {
            let list: Vec<&User> = users.users.values().collect();
            match serde_json::to_vec(&list) {
                Ok(body) => response(200, "application/json", body),
                Err(error) => json_error(500, &error.to_string()),
            }
        }
        http::Method::POST => {
            let new: NewUser = match serde_json::from_slice(body) {
                Ok(new) => new,
                Err(error) => return json_error(400, &format!("invalid JSON body: {error}")),
            };
            let email = new.email.trim().to_ascii_lowercase();
            if new.name.trim().is_empty() || !email.contains('@') {
                return json_error(400, "invalid user");
            }
            if users.users.values().any(|user| user.email == email) {
                return json_error(409, &format!("email {email:?} is already used"));
            }
            users.last_id += 1;
            let user = User {
                id: users.last_id,
                name: new.name.trim().to_owned(),
                email,
            };
            let body = serde_json::to_vec(&user).unwrap_or_default();
            users.users.insert(user.id, user);
            response(201, "application/json", body)
        }
        _ => json_error(405, "method not allowed"),
    }
}

async fn handle(
    baseline: Baseline,
    state: Arc<Mutex<Users>>,
    client: Arc<ProxyClient>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(match baseline {
        Baseline::Hello => response(200, "text/plain; charset=utf-8", b"ok".to_vec()),
        Baseline::Proxy => proxy(&client, request.uri().query()).await,
        Baseline::Users => {
            let (parts, body) = request.into_parts();
            match body.collect().await {
                Ok(body) => users(&state, &parts.method, &body.to_bytes()),
                Err(error) => json_error(400, &error.to_string()),
            }
        }
    })
}

/// Serves `baseline` on `listen` until the process is killed; prints the bound address
/// on standard output first.
pub fn serve(baseline: Baseline, listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!("{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(Users::default()));
        let client: Arc<ProxyClient> = Arc::new(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let client = client.clone();
            let service = hyper::service::service_fn(move |request| {
                handle(baseline, state.clone(), client.clone(), request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    })
}
