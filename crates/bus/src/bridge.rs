//! [`Bridge`]: the one hook that lets a bus reach past its process (cluster mode).

use std::time::Duration;

use binary::Message;

use crate::error::RequestError;

/// Carries a bus's traffic to other processes and back. Set once with [`crate::Bus::set_bridge`];
/// a bus without one (the default) pays a single atomic load per publish for the hook.
///
/// Messages that arrive from other processes are handed to the bus with
/// [`crate::Bus::publish_bridged`] and [`crate::Bus::request_local`], which deliver locally
/// and never come back to the bridge, so nothing loops and nothing is delivered twice.
pub trait Bridge: Send + Sync + 'static {
    /// A message was published on this bus and delivered to the local subscribers (an event
    /// or any other non-reply kind, not a request made with [`crate::Bus::request`]). Called on
    /// the publisher's thread, in publish order: it must not block.
    fn published(&self, message: &Message);

    /// [`crate::Bus::request`] found no local subscriber for `message.topic`: answer it
    /// elsewhere, waiting at most `timeout`. The reply keeps `message.id`. Return
    /// [`RequestError::NoResponders`] when no other process has a responder either.
    fn request(&self, message: Message, timeout: Duration) -> Result<Message, RequestError>;
}
