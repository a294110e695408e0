//! `logger`: a middleware (`rule.txt` = `*`, in front of every module) that logs each request
//! and passes it on, tagging it with an `x-request-id` header the later stages can read.
//!
//! See `guest::middleware` for the pass convention.

use guest::{IntoResponse, Module, Request, Response};

#[derive(Debug, Default)]
struct Logger {
    seen: u64,
}

impl Module for Logger {
    fn handle(&mut self, request: Request) -> impl IntoResponse {
        self.seen += 1;
        let target = request.target().unwrap_or("?");
        let query = match request.raw_query() {
            "" => String::new(),
            query => format!("?{query}"),
        };
        guest::info!(
            "#{} {} /m/{target}{}{query} ({} bytes)",
            self.seen,
            request.method(),
            request.path(),
            request.body().len()
        );
        Response::pass().with_request_header("x-request-id", self.seen.to_string())
    }
}

guest::export!(Logger);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::{Instance, Level, testing};

    #[test]
    fn logs_and_passes() {
        let mut logger = Instance::new(Logger::default());
        let request = Request::new("GET", "/7")
            .with_query("a=1")
            .with_header("x-modhost-target", "users");
        let response = logger.handle(request);
        assert!(response.is_pass());
        assert_eq!(response.header("x-modhost-set-x-request-id"), Some("1"));
        assert_eq!(
            testing::take_logs(),
            [(Level::Info, "#1 GET /m/users/7?a=1 (0 bytes)".to_owned())]
        );
    }
}
