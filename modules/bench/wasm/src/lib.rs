//! `bench`: answers every request with `200 ok` and does nothing else — the floor for
//! benchmarks of the request path (HTTP → host → guest → back).

use guest::{Module, Request, Response};

#[derive(Debug, Default)]
struct Bench;

impl Module for Bench {
    fn handle(&mut self, _: Request) -> Response {
        Response::text("ok")
    }
}

guest::export!(Bench);
