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

use guest::{ErrorKind, HttpError, Module, Request, Response, Router};

/// The topic `receiver` listens to (`greetings.*`).
const DEFAULT_TOPIC: &str = "greetings.hello";

#[derive(Debug, Default)]
struct Sender {
    sent: u64,
}

impl Sender {
    fn send(&mut self, request: Request) -> guest::Result<Response> {
        let topic = request
            .query("topic")
            .unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
        let delivered = guest::publish(&topic, request.body())
            .map_err(|error| HttpError::bad_request(error.to_string()))?;
        self.sent += 1;
        Ok(Response::json(
            &serde_json::json!({ "topic": topic, "delivered": delivered }),
        ))
    }

    fn ask(&mut self, request: Request) -> guest::Result<Response> {
        let topic = request
            .query("topic")
            .unwrap_or_else(|| "users.get".to_owned());
        let timeout_ms = match request.query("timeout_ms") {
            None => 500,
            Some(ms) => ms
                .parse()
                .map_err(|_| HttpError::bad_request("timeout_ms must be a number"))?,
        };
        let reply = guest::request(&topic, request.body(), Duration::from_millis(timeout_ms))
            .map_err(|error| {
                let status = match error.kind() {
                    ErrorKind::ErrorReply(_) => 502,
                    ErrorKind::TimedOut => 504,
                    ErrorKind::NoSubscriber | ErrorKind::Overloaded => 503,
                    _ => 500,
                };
                HttpError::new(status, error.to_string())
            })?;
        Ok(Response::ok()
            .with_header("content-type", "application/json")
            .with_body(reply.payload))
    }

    fn status(&mut self, _: Request) -> Response {
        Response::json(&serde_json::json!({ "sent": self.sent }))
    }
}

impl Module for Sender {
    fn init(&mut self) -> Result<(), guest::Error> {
        let delivered = guest::publish(DEFAULT_TOPIC, "sender started")?;
        guest::info!("said hello to {delivered} mailboxes");
        Ok(())
    }

    fn router() -> Router<Sender> {
        Router::new()
            .get("/", Sender::status)
            .post("/send", Sender::send)
            .post("/ask", Sender::ask)
    }
}

guest::export!(Sender);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::{Instance, testing};

    #[test]
    fn init_and_send_publish() {
        let mut sender = Instance::new(Sender::default());
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
        assert_eq!(
            refused.body_text(),
            r#"{"error":"publish \"bad.*\": refused as invalid input (code -1)"}"#
        );
        let status = sender.handle(Request::new("GET", ""));
        assert_eq!(status.body_text(), r#"{"sent":1}"#);
    }

    #[test]
    fn ask_maps_reply_kinds_to_statuses() {
        let mut sender = Instance::new(Sender::default());
        let ask = |sender: &mut Instance<Sender>, body: &str| {
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
        let bad = sender.handle(Request::new("POST", "/ask").with_query("timeout_ms=x"));
        assert_eq!(
            bad.body_text(),
            r#"{"error":"timeout_ms must be a number"}"#
        );
    }
}
