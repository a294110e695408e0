//! `sender`: publishes bus events, on `init` and on HTTP calls, and asks questions with
//! request/reply.
//!
//! - On `init` it publishes `greetings.hello` with `sender started` (every new version says
//!   hello once).
//! - `POST /m/sender/send?topic=T` publishes the body on `T` (default `greetings.hello`) and
//!   answers `{"topic": T, "delivered": N}` (N = mailboxes reached).
//! - `POST /m/sender/ask?topic=T&timeout_ms=MS` sends the body as a request on `T` (default
//!   `users.get`, 500 ms) and answers the reply's payload; `502` for an `Error` reply,
//!   `504` for a timeout, `503` when nobody serves the topic.

use std::time::Duration;

use guest::{ErrorKind, Module, Request, Response, Router};

/// The topic `receiver` listens to (`greetings.*`).
const DEFAULT_TOPIC: &str = "greetings.hello";

#[derive(Debug, Default)]
struct Sender {
    sent: u64,
}

impl Sender {
    fn send(&mut self, request: Request) -> Response {
        let topic = request
            .query("topic")
            .unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
        match guest::publish(&topic, request.body()) {
            Ok(delivered) => {
                self.sent += 1;
                Response::json(&serde_json::json!({ "topic": topic, "delivered": delivered }))
            }
            Err(error) => Response::json_error(400, &error.to_string()),
        }
    }

    fn ask(&mut self, request: Request) -> Response {
        let topic = request
            .query("topic")
            .unwrap_or_else(|| "users.get".to_owned());
        let timeout_ms = match request.query("timeout_ms").map(|ms| ms.parse::<u64>()) {
            None => 500,
            Some(Ok(ms)) => ms,
            Some(Err(_)) => return Response::json_error(400, "timeout_ms must be a number"),
        };
        match guest::request(&topic, request.body(), Duration::from_millis(timeout_ms)) {
            Ok(reply) => Response::ok()
                .with_header("content-type", "application/json")
                .with_body(reply.payload),
            Err(error) => {
                let status = match error.kind() {
                    ErrorKind::ErrorReply(_) => 502,
                    ErrorKind::TimedOut => 504,
                    ErrorKind::NoSubscriber | ErrorKind::Overloaded => 503,
                    _ => 500,
                };
                Response::json_error(status, &error.to_string())
            }
        }
    }

    fn status(&mut self, _: Request) -> Response {
        Response::json(&serde_json::json!({ "sent": self.sent }))
    }
}

impl Module for Sender {
    fn init(&mut self) {
        match guest::publish(DEFAULT_TOPIC, "sender started") {
            Ok(delivered) => guest::info!("said hello to {delivered} mailboxes"),
            Err(error) => guest::warn!("{error}"),
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        Router::new()
            .get("/", Sender::status)
            .post("/send", Sender::send)
            .post("/ask", Sender::ask)
            .handle(self, request)
    }
}

guest::export!(Sender);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::testing;

    #[test]
    fn init_and_send_publish() {
        let mut sender = Sender::default();
        sender.init();
        let response = sender.handle(
            Request::new("POST", "/send")
                .with_query("topic=greetings.x")
                .with_body("hi"),
        );
        assert_eq!(response.status(), 200, "{response:?}");
        let published = testing::take_published();
        assert_eq!(published[0].payload, b"sender started");
        assert_eq!(
            (published[1].topic.as_str(), &published[1].payload[..]),
            ("greetings.x", &b"hi"[..])
        );
        let refused = sender.handle(Request::new("POST", "/send").with_query("topic=bad.*"));
        assert_eq!(refused.status(), 400);
    }

    #[test]
    fn ask_maps_reply_kinds_to_statuses() {
        let mut sender = Sender::default();
        let ask = |sender: &mut Sender, body: &str| {
            sender
                .handle(Request::new("POST", "/ask").with_body(body))
                .status()
        };
        assert_eq!(ask(&mut sender, "1"), 503);
        testing::set_responder(|request| match request.payload.as_slice() {
            b"1" => Ok(request.response(b"{}".to_vec())),
            b"late" => Err(ErrorKind::TimedOut),
            _ => Ok(request.error_reply("no")),
        });
        assert_eq!(ask(&mut sender, "1"), 200);
        assert_eq!(ask(&mut sender, "2"), 502);
        assert_eq!(ask(&mut sender, "late"), 504);
    }
}
