//! The scripted stand-in for the `http_send` import in `cargo test`: answers per URL, a
//! record of what was sent, and no network.

use std::cell::RefCell;
use std::collections::BTreeMap;

use binary::{Envelope, HttpRequest, OutboundErrorKind, OutboundResponse};

#[derive(Default)]
struct Script {
    answers: BTreeMap<String, OutboundResponse>,
    sent: Vec<HttpRequest>,
}

thread_local! {
    static SCRIPT: RefCell<Script> = RefCell::new(Script::default());
}

/// Forgets every scripted answer and recorded request on this thread.
pub(crate) fn reset() {
    SCRIPT.with(|script| *script.borrow_mut() = Script::default());
}

/// Answers every outbound request to `url` (the full URL, query included, as sent) with
/// `response` on this thread, until scripted again or [`crate::testing::reset`].
pub fn script_http(url: &str, response: impl Into<binary::HttpResponse>) {
    let answer = OutboundResponse::Response(response.into());
    SCRIPT.with(|script| script.borrow_mut().answers.insert(url.to_owned(), answer));
}

/// Answers every outbound request to `url` on this thread with an error of `kind`, as the
/// host would for a refusal or a failure.
pub fn script_http_error(url: &str, kind: OutboundErrorKind, message: &str) {
    let answer = OutboundResponse::error(kind, message);
    SCRIPT.with(|script| script.borrow_mut().answers.insert(url.to_owned(), answer));
}

/// The outbound requests sent on this thread since the last call, in order (`path` is the
/// URL, `query` what [`crate::Request::with_query`] set).
pub fn take_http_sent() -> Vec<HttpRequest> {
    SCRIPT.with(|script| std::mem::take(&mut script.borrow_mut().sent))
}

/// The stand-in for the `http_send` import.
pub(crate) fn serve(request: &[u8]) -> Result<Vec<u8>, i32> {
    let request = HttpRequest::decode(request).map_err(|_| binary::abi::Code::Invalid.get())?;
    let url = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let answer = SCRIPT.with(|script| {
        let mut script = script.borrow_mut();
        script.sent.push(request);
        script.answers.get(&url).cloned()
    });
    let answer = answer.unwrap_or_else(|| {
        OutboundResponse::error(
            OutboundErrorKind::Denied,
            format!("no scripted answer for {url} (guest::testing::script_http): the test host allows no other"),
        )
    });
    Ok(answer.encode())
}
