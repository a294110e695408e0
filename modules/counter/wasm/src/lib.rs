//! `counter`: a counter kept in memory and handed to the next version at every hot swap —
//! the snapshot/restore demonstration.
//!
//! `POST /m/counter` adds one and answers the new value; `GET /m/counter` answers the value;
//! `GET /m/counter/version` answers [`VERSION`]; `GET /m/counter/state` the whole state as
//! JSON. The module opts into the state handoff with `guest::export!(Counter, snapshot)`:
//! when a new version replaces this one, the server holds new requests, lets this version
//! finish what it was given, calls `snapshot` here and `restore` on the new version, and only
//! then sends traffic to it, so the count never goes back to 0 and no increment is lost.
//! State lives in one instance: run it with `instances = 1` (the default).

use guest::{Module, Request, Response, Router};

/// Changed by hand (or by a test) to tell versions apart.
pub const VERSION: &str = "1";

/// Everything that survives a swap, saved as JSON. A new version may add fields with
/// `#[serde(default)]`; removing or retyping one makes `restore` refuse the old state, and
/// the swap with it (the old version keeps serving).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// Increments acknowledged so far.
    count: u64,
    /// Swaps this state has been handed through.
    #[serde(default)]
    handoffs: u64,
}

#[derive(Debug, Default)]
struct Counter {
    state: State,
}

impl Counter {
    fn increment(&mut self, _: Request) -> Response {
        self.state.count += 1;
        Response::text(self.state.count.to_string())
    }

    fn value(&mut self, _: Request) -> Response {
        Response::text(self.state.count.to_string())
    }

    fn version(&mut self, _: Request) -> &'static str {
        VERSION
    }

    fn state(&mut self, _: Request) -> Response {
        Response::json(&self.state)
    }
}

impl Module for Counter {
    fn router() -> Router<Counter> {
        Router::new()
            .get("/", Counter::value)
            .post("/", Counter::increment)
            .get("/version", Counter::version)
            .get("/state", Counter::state)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, guest::Error> {
        guest::snapshot_json(&self.state)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), guest::Error> {
        let mut state: State = guest::restore_json(state)?;
        state.handoffs += 1;
        guest::info!(
            "restored count {} (handoff {})",
            state.count,
            state.handoffs
        );
        self.state = state;
        Ok(())
    }
}

guest::export!(Counter, snapshot);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn the_count_survives_a_snapshot_and_restore() {
        let mut old = Instance::new(Counter::default());
        for _ in 0..3 {
            old.handle(Request::new("POST", ""));
        }
        let saved = old.module_mut().snapshot().unwrap();
        let mut new = Instance::new(Counter::default());
        new.module_mut().restore(&saved).unwrap();
        assert_eq!(new.handle(Request::new("GET", "")).body_text(), "3");
        assert_eq!(new.module().state.handoffs, 1);
        assert!(new.module_mut().restore(b"not json").is_err());
        assert_eq!(
            new.module().state.count,
            3,
            "a refused state changes nothing"
        );
    }
}
