//! `receiver`: subscribes to `greetings.*` in `init` and relays every message it receives to
//! browsers with `ws_broadcast`, on the message's own topic (`/ws?topic=greetings.hello`).
//!
//! `GET /m/receiver` answers how many messages it relayed and the last few payloads.

use std::collections::VecDeque;

use guest::{IntoResponse, Message, Module, Request, Response, Topics};

/// How many payloads `GET /m/receiver` shows.
const KEEP: usize = 10;

#[derive(Debug, Default)]
struct Receiver {
    received: u64,
    last: VecDeque<String>,
}

impl Receiver {
    fn relay(&mut self, message: Message) -> Result<(), guest::Error> {
        self.received += 1;
        if self.last.len() == KEEP {
            self.last.pop_front();
        }
        self.last
            .push_back(String::from_utf8_lossy(&message.payload).into_owned());
        guest::debug!(
            "relaying {} ({} bytes)",
            message.topic,
            message.payload.len()
        );
        guest::ws_broadcast(&message.topic, &message.payload);
        Ok(())
    }
}

impl Module for Receiver {
    /// The subscriptions and their handlers, in one table.
    fn topics() -> Topics<Receiver> {
        Topics::new().on("greetings.*", Receiver::relay)
    }

    fn handle(&mut self, request: Request) -> impl IntoResponse {
        match (request.method(), request.path()) {
            ("GET", "" | "/") => Response::json(&serde_json::json!({
                "received": self.received,
                "last": self.last,
            })),
            _ => Response::not_found(),
        }
    }

    fn on_message(&mut self, _: Message) -> Result<(), guest::Error> {
        guest::debug!("ignored a message on a topic without a handler");
        Ok(())
    }
}

guest::export!(Receiver);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::{Instance, testing};

    #[test]
    fn subscribes_and_relays() {
        let mut receiver = Instance::new(Receiver::default());
        receiver.init();
        assert_eq!(testing::subscriptions(), ["greetings.*"]);
        receiver.on_message(Message::event("greetings.hello", b"hi".to_vec()));
        receiver.on_message(Message::event("other", b"no".to_vec()));
        assert_eq!(
            testing::take_broadcasts(),
            [("greetings.hello".to_owned(), b"hi".to_vec())]
        );
        let status = receiver.handle(Request::new("GET", ""));
        assert_eq!(status.body_text(), r#"{"last":["hi"],"received":1}"#);
        assert_eq!(receiver.handle(Request::new("POST", "")).status(), 404);
    }
}
