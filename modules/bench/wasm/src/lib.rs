//! `bench`: the fixture of `cargo xtask bench`. `GET /m/bench` answers `200 ok` and does
//! nothing else — the floor for benchmarks of the request path (HTTP → host → guest → back).
//!
//! The other routes serve the other scenarios (docs/PERFORMANCE.md):
//! - `GET /m/bench/version` answers [`MARKER`]. The harness rewrites its digits in a copy of
//!   the `.wasm` (same length, so nothing else moves) to make versions it can tell apart by
//!   their answers: the hot-swap scenario.
//! - `POST /m/bench/subscribe?topic=T` subscribes to `T`; `GET /m/bench/received` answers how
//!   many messages and payload bytes arrived in `on_message`: the bus scenarios.
//! - `POST /m/bench/publish?topic=T&n=N&size=S` publishes `N` events of `S` bytes on `T`,
//!   retrying a message while every subscriber's mailbox is full, and answers
//!   `published retries`; with `&retry=0` it publishes each once, whether or not a local
//!   subscriber took it (for subscribers on other nodes, which the count does not see). With
//!   `&batch=B` it sends them `B` at a time with `guest::publish_batch`, which waits for
//!   mailbox room in the host instead, and answers `published partial` (batch calls that
//!   published less than all of their messages).
//! - `GET /m/bench/kv/{key}` reads a key of the module's store (404 when absent) and
//!   `PUT /m/bench/kv/{key}` writes the body there: the state scenario.
//!
//! The module is declared shared-nothing (`guest::export!(Bench, shared_nothing)`), so the
//! server runs an instance per request thread: its HTTP routes keep nothing in the instance.
//! The bus counters behind `/received` do, one count per instance; the scenarios that read
//! them run the receiving copy with `instances = 1`.

use std::time::Duration;

use guest::{IntoResponse, Message, MessageBatch, Module, Request, Response};

/// What `GET /m/bench/version` answers; the harness patches the trailing digits.
const MARKER: &str = "modhost-bench-version-000000";

/// Give up on a message after this many attempts against full mailboxes.
const MAX_RETRIES: u64 = 10_000_000;

/// How long one `publish_batch` call may wait for mailbox room.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Bench {
    received: u64,
    received_bytes: u64,
}

fn number(request: &Request, name: &str, default: u64) -> u64 {
    request
        .query(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

impl Bench {
    fn publish(request: &Request) -> Response {
        let Some(topic) = request.query("topic") else {
            return Response::bad_request();
        };
        let count = number(request, "n", 1);
        let payload = vec![0x5a_u8; usize::try_from(number(request, "size", 64)).unwrap_or(64)];
        let batch = number(request, "batch", 0);
        if batch > 0 {
            return Bench::publish_batches(&topic, &payload, count, batch);
        }
        let retry = number(request, "retry", 1) != 0;
        let mut retries = 0_u64;
        let mut published = 0_u64;
        while published < count {
            match guest::publish(&topic, &payload) {
                Ok(reached) if reached > 0 || !retry => published += 1,
                Ok(_) | Err(_) if retries < MAX_RETRIES => retries += 1,
                _ => break,
            }
        }
        Response::text(format!("{published} {retries}"))
    }

    /// `count` events in batches of `batch`; a batch that published only part is resent
    /// from where it stopped, and one that published nothing ends the run.
    fn publish_batches(topic: &str, payload: &[u8], count: u64, batch: u64) -> Response {
        let mut published = 0_u64;
        let mut partial = 0_u64;
        let mut messages = MessageBatch::new();
        while published < count {
            messages.clear();
            for _ in 0..batch.min(count - published) {
                messages.push_event(topic, payload);
            }
            match guest::publish_batch(&messages, BATCH_TIMEOUT) {
                Ok(sent) if sent == messages.len() => published += sent as u64,
                Ok(sent) if sent > 0 => {
                    published += sent as u64;
                    partial += 1;
                }
                Ok(_) => break,
                Err(error) => return Response::text(error.to_string()).with_status(500),
            }
        }
        Response::text(format!("{published} {partial}"))
    }

    fn kv(method: &str, key: &str, request: &Request) -> Response {
        let outcome = match method {
            "GET" => guest::kv::get(key).map(|value| match value {
                Some(value) => Response::new(200).with_body(value),
                None => Response::not_found(),
            }),
            "PUT" => guest::kv::set(key, request.body()).map(|_| Response::no_content()),
            _ => return Response::new(405),
        };
        outcome.unwrap_or_else(|error| Response::text(error.to_string()).with_status(500))
    }
}

impl Module for Bench {
    fn handle(&mut self, request: Request) -> impl IntoResponse {
        match (request.method(), request.path()) {
            (_, "" | "/") => Response::text("ok"),
            ("GET", "/version") => Response::text(MARKER),
            ("GET", "/received") => {
                Response::text(format!("{} {}", self.received, self.received_bytes))
            }
            ("POST", "/subscribe") => match request.query("topic").map(|t| guest::subscribe(&t)) {
                Some(Ok(())) => Response::text("subscribed"),
                _ => Response::bad_request(),
            },
            ("POST", "/publish") => Bench::publish(&request),
            (method, path) if path.starts_with("/kv/") => Bench::kv(method, &path[4..], &request),
            _ => Response::not_found(),
        }
    }

    fn on_message(&mut self, message: Message) -> Result<(), guest::Error> {
        self.received += 1;
        self.received_bytes += message.payload.len() as u64;
        Ok(())
    }
}

guest::export!(Bench, shared_nothing);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn answers_the_scenarios_routes() {
        let mut bench = Instance::new(Bench::default());
        let call = |bench: &mut Instance<Bench>, method: &str, path: &str, query: &str| {
            let response = bench.handle(Request::new(method, path).with_query(query));
            (response.status(), response.body_text())
        };
        assert_eq!(call(&mut bench, "GET", "", ""), (200, "ok".to_owned()));
        assert_eq!(
            call(&mut bench, "GET", "/version", ""),
            (200, MARKER.to_owned())
        );
        assert_eq!(
            call(&mut bench, "POST", "/subscribe", ""),
            (400, String::new())
        );
        assert_eq!(
            call(&mut bench, "POST", "/subscribe", "topic=a.*.b"),
            (400, String::new())
        );
        assert_eq!(
            call(&mut bench, "POST", "/subscribe", "topic=bench.x"),
            (200, "subscribed".to_owned())
        );
        assert_eq!(
            call(&mut bench, "POST", "/publish", ""),
            (400, String::new())
        );
        assert_eq!(
            call(&mut bench, "POST", "/publish", "topic=bench.y&n=5&size=3&batch=2"),
            (200, "5 0".to_owned())
        );
        let published = guest::testing::take_published();
        assert_eq!(published.len(), 5);
        assert!(published.iter().all(|message| message.topic == "bench.y"
            && message.payload == [0x5a; 3]));
        assert_eq!(
            call(&mut bench, "GET", "/nothing", ""),
            (404, String::new())
        );
        bench.on_message(Message::event("bench.x", vec![0; 5]));
        assert_eq!(
            call(&mut bench, "GET", "/received", ""),
            (200, "1 5".to_owned())
        );
    }
}
