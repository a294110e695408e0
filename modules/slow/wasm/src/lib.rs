//! `slow`: keeps pending work and asks for more time in `drain()` until it is done — the drain
//! demonstration.
//!
//! `POST /m/slow/work?ms=300` (or `GET`) records a piece of work that finishes `ms`
//! milliseconds from now (1..=60000, default 300) and answers `202`. `GET /m/slow` shows what
//! is pending. When this version is replaced, the host polls `drain()`: it returns the
//! milliseconds until the last piece finishes, then `0`, so the old version stays alive
//! exactly as long as its work needs (up to the server's drain timeout, 5 s by default).

use std::time::{Duration, Instant};

use guest::{HttpError, Module, Request, Response, Router};

const DEFAULT_MS: u64 = 300;
const MAX_MS: u64 = 60_000;

#[derive(Debug, Default)]
struct Slow {
    /// When each pending piece of work is done.
    pending: Vec<Instant>,
    started: u64,
}

impl Slow {
    /// Forgets finished work; returns the milliseconds until the rest is done, rounded up
    /// (0 = nothing pending).
    fn remaining_ms(&mut self) -> u64 {
        let now = Instant::now();
        self.pending.retain(|done| *done > now);
        let longest = self
            .pending
            .iter()
            .map(|done| done.duration_since(now))
            .max();
        longest.map_or(0, |left| {
            u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
        })
    }

    fn work(&mut self, request: Request) -> guest::Result<Response> {
        let ms = match request.query("ms").map(|ms| ms.parse::<u64>()) {
            None => DEFAULT_MS,
            Some(Ok(ms)) if (1..=MAX_MS).contains(&ms) => ms,
            _ => {
                let message = format!("ms must be a number in 1..={MAX_MS}");
                return Err(HttpError::bad_request(message));
            }
        };
        self.pending
            .push(Instant::now() + Duration::from_millis(ms));
        self.started += 1;
        let remaining = self.remaining_ms();
        Ok(Response::accepted().with_json(&serde_json::json!({
            "pending": self.pending.len(),
            "done_in_ms": remaining,
        })))
    }

    fn status(&mut self, _: Request) -> Response {
        let remaining = self.remaining_ms();
        Response::json(&serde_json::json!({
            "pending": self.pending.len(),
            "done_in_ms": remaining,
            "started": self.started,
        }))
    }
}

impl Module for Slow {
    fn router() -> Router<Slow> {
        Router::new()
            .get("/", Slow::status)
            .post("/work", Slow::work)
            .get("/work", Slow::work)
    }

    fn drain(&mut self) -> u32 {
        let remaining = self.remaining_ms();
        if remaining > 0 {
            guest::info!(
                "draining: {} pieces of work left, ask again in {remaining} ms",
                self.pending.len()
            );
        } else {
            guest::info!("drained: nothing left to do");
        }
        u32::try_from(remaining).unwrap_or(u32::MAX)
    }
}

guest::export!(Slow);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn drain_asks_for_time_until_the_work_is_done() {
        let mut slow = Instance::new(Slow::default());
        assert_eq!(slow.drain(), 0);
        let response = slow.handle(Request::new("POST", "/work").with_query("ms=50"));
        assert_eq!(response.status(), 202, "{response:?}");
        let first = slow.drain();
        assert!((1..=50).contains(&first), "{first}");
        std::thread::sleep(Duration::from_millis(u64::from(first)));
        assert_eq!(slow.drain(), 0);
        let refused = slow.handle(Request::new("GET", "/work").with_query("ms=0"));
        assert_eq!(refused.status(), 400);
        assert_eq!(
            refused.body_text(),
            r#"{"error":"ms must be a number in 1..=60000"}"#
        );
    }
}
