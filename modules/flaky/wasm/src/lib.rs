//! `flaky`: answers `200 ok`, except that every 100th request of an instance traps (1%,
//! deterministically: requests 100, 200, ... counted from the instance's creation) — for soak
//! tests of trap containment. `GET /m/flaky/trap` traps every time.
//!
//! A trap throws the instance away and the host creates a fresh one, whose count starts again
//! at zero, so the rate stays 1% whatever the load.

use guest::{IntoResponse, Module, Request};

/// One request in this many traps.
const EVERY: u64 = 100;

#[derive(Debug, Default)]
struct Flaky {
    requests: u64,
}

impl Module for Flaky {
    fn handle(&mut self, request: Request) -> impl IntoResponse {
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
}
