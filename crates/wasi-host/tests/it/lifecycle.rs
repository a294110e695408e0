//! Load/close life cycle and the async call path.

use binary::HttpRequest;
use wasi_host::{CallError, CallErrorKind, Host};

use crate::wat_modules::{ORIGINAL_ABI, load};

#[test]
fn async_callers_get_replies_without_blocking_the_runtime() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "legacy", ORIGINAL_ABI).unwrap();
    // A current-thread runtime: if `handle` blocked the thread, the second call could not
    // even be submitted before the first finished; both complete either way.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, second) = runtime.block_on(async {
        tokio::join!(
            module.handle(HttpRequest::new("GET", "/a")),
            module.handle(HttpRequest::new("GET", "/b"))
        )
    });
    assert_eq!(first.unwrap().body, b"v0 says: GET\n/a\n");
    assert_eq!(second.unwrap().body, b"v0 says: GET\n/b\n");
}

#[test]
fn a_closed_version_refuses_new_calls() {
    let host = Host::standalone().unwrap();
    let module = load(&host, "legacy", ORIGINAL_ABI).unwrap();
    module.close();
    module.close();
    assert!(module.is_closed());
    let error = module
        .handle_blocking(HttpRequest::new("GET", "/"))
        .unwrap_err();
    assert_eq!(
        error,
        CallError::new("legacy", "handle", CallErrorKind::Closed)
    );
}
