//! The [`Module`] trait: what a module does at each export the host calls.

use binary::Message;

use crate::http::{Request, Response};

/// A module: one value of this type lives in the instance, created on the first call (see
/// [`export!`](crate::export!)) and kept between calls, so its fields are the module's state.
/// Every method has a default, so implement only what the module does.
///
/// The host serialises calls into one instance: `handle`, `on_message` and `drain` never run
/// at the same time, hence `&mut self` and no locks. State lives as long as the instance: a
/// new version starts from scratch, and so does an instance replaced after a trap.
pub trait Module: 'static {
    /// Runs once per instance, before any request or message: subscribe to topics here
    /// (the subscriptions go live when this version is swapped in), publish a greeting, read
    /// granted environment variables. A panic here fails the load; the old version keeps
    /// serving.
    fn init(&mut self) {}

    /// Answers one HTTP request to `/m/{name}[/rest]`. The default answers `404`.
    fn handle(&mut self, request: Request) -> Response {
        let _ = request;
        Response::not_found().with_text("this module does not serve HTTP")
    }

    /// Receives one bus message on a topic this module subscribed to (any kind; answer a
    /// `Request` with [`reply`](crate::reply)). The default ignores it.
    fn on_message(&mut self, message: Message) {
        let _ = message;
    }

    /// Called repeatedly after this version was replaced, once it has finished every request
    /// and message already given to it: return how many milliseconds to wait before asking
    /// again, or `0` when there is nothing left to do. The host closes the version at `0` or
    /// at its drain timeout (5 s by default). The default is `0`.
    fn drain(&mut self) -> u32 {
        0
    }

    /// Saves the in-memory state for the next version, during a hot swap: called on this
    /// (the old) version after its drain, when the module opted in with
    /// [`export!(MyModule, snapshot)`](crate::export!) and the new version exports `restore`.
    /// The bytes are the module's own format (see [`crate::snapshot_json`]); the host carries
    /// them to the new version's [`Module::restore`] untouched. An `Err` cancels the swap: the
    /// new version is refused and this one keeps serving. The default saves nothing.
    fn snapshot(&mut self) -> Result<Vec<u8>, crate::Error> {
        Ok(Vec::new())
    }

    /// Takes over the state the previous version saved with [`Module::snapshot`]: called on
    /// every instance of this (the new) version after `init` and before any request or
    /// message. An `Err` refuses the swap: this version is discarded and the old one keeps
    /// serving with its state. The default accepts and ignores the bytes.
    fn restore(&mut self, state: &[u8]) -> Result<(), crate::Error> {
        let _ = state;
        Ok(())
    }
}
