//! `flaky`: answers `200 ok`, except that every 100th request of an instance traps (1%,
//! deterministically: requests 100, 200, ... counted from the instance's creation) — for soak
//! tests of trap containment. `GET /m/flaky/trap` traps every time.
//!
//! A trap throws the instance away and the host creates a fresh one, whose count starts again
//! at zero, so the rate stays 1% whatever the load.
//!
//! On the bus it subscribes to `flaky.in` and passes each message's payload on to
//! `flaky.seen`, in the order received, except a payload of `trap`, which traps — for tests
//! of message delivery around traps (what was passed on survives the instance).
//! `GET /m/flaky/seen` answers how many messages this instance passed on.

use guest::{IntoResponse, Message, Module, Request, Topics};

/// One request in this many traps.
const EVERY: u64 = 100;

#[derive(Debug, Default)]
struct Flaky {
    requests: u64,
    /// Messages this instance passed on.
    seen: u64,
}

impl Flaky {
    fn pass_on(&mut self, message: Message) -> Result<(), guest::Error> {
        if message.payload == b"trap" {
            panic!("flaky: message traps on purpose");
        }
        guest::publish("flaky.seen", &message.payload)?;
        self.seen += 1;
        Ok(())
    }
}

impl Module for Flaky {
    fn topics() -> Topics<Flaky> {
        Topics::new().on("flaky.in", Flaky::pass_on)
    }

    fn handle(&mut self, request: Request) -> impl IntoResponse {
        if request.path() == "/seen" {
            return self.seen.to_string();
        }
        self.requests += 1;
        if request.path() == "/trap" {
            panic!("flaky: trap requested");
        }
        if self.requests.is_multiple_of(EVERY) {
            panic!("flaky: request {} traps on purpose", self.requests);
        }
        format!("ok {}", self.requests)
    }
}

guest::export!(Flaky);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn one_in_a_hundred_traps() {
        let mut flaky = Instance::new(Flaky::default());
        for request in 1..EVERY {
            let response = flaky.handle(Request::new("GET", ""));
            assert_eq!(response.status(), 200);
            assert_eq!(response.body_text(), format!("ok {request}"));
        }
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            flaky.handle(Request::new("GET", ""))
        }));
        assert!(trapped.is_err());
    }

    #[test]
    fn passes_messages_on_and_traps_on_trap() {
        let mut flaky = Instance::new(Flaky::default());
        flaky.init();
        assert_eq!(guest::testing::subscriptions(), ["flaky.in"]);
        flaky.on_message(Message::event("flaky.in", b"1".to_vec()));
        let published = guest::testing::take_published();
        assert_eq!(published.len(), 1);
        assert_eq!(
            (published[0].topic.as_str(), published[0].payload.as_slice()),
            ("flaky.seen", b"1".as_slice())
        );
        assert_eq!(flaky.handle(Request::new("GET", "/seen")).body_text(), "1");
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            flaky.on_message(Message::event("flaky.in", b"trap".to_vec()))
        }));
        assert!(trapped.is_err());
    }
}
