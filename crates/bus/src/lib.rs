//! modhost's in-process publish/subscribe hub: a [`Bus`] routes each [`binary::Message`] to the
//! subscriptions whose topic matches (`users.created` exactly, `users.*`, or `*`: the rules of
//! `binary::topic`, which the host and the guest SDK share), through a
//! bounded mailbox per subscriber, and carries request/reply exchanges with a timeout.
//!
//! Guarantees: order is kept per publisher and subscriber; [`Bus::publish`] never blocks on a
//! subscriber, so a slow or stuck one delays nobody: its mailbox fills and further messages for
//! it are dropped and counted ([`PublishReport`], [`SubscriptionStats`], [`BusStats`]), never
//! lost silently ([`Bus::publish_waiting`] instead waits, sleeping, until every matching
//! mailbox has room, up to a deadline); a panicking handler ends only that call; [`Bus::handover`] moves traffic from
//! one set of subscriptions to another so that no message goes to both or to neither.
//!
//! A subscriber is either a handler run on its own thread ([`Bus::subscribe`]) or a
//! [`Mailbox`] offered messages on the publisher's thread ([`Bus::subscribe_mailbox`],
//! [`Bus::subscribe_channel`]), which lets one consumer own a single inbox fed by many topics.
//!
//! The bus does not persist or retry, and it knows nothing about WebAssembly or HTTP. It
//! crosses process boundaries only through a [`Bridge`] set on it (cluster mode): published
//! messages are handed to the bridge after local delivery, requests nobody local answers go to
//! it, and messages from other processes come in through [`Bus::publish_bridged`] and
//! [`Bus::request_local`], which never reach the bridge again.
//!
//! ```
//! use std::time::Duration;
//! use binary::Message;
//!
//! let bus = bus::Bus::new();
//!
//! // Events: a channel subscription on a pattern.
//! let (subscription, inbox) = bus.subscribe_channel("users.*")?;
//! let report = bus.publish(Message::event("users.created", b"7".to_vec()))?;
//! assert_eq!(report.delivered, 1);
//! assert_eq!(inbox.recv_timeout(Duration::from_secs(5))?.payload, b"7");
//! assert_eq!(bus.topics(), ["users.*"]);
//! subscription.cancel();
//!
//! // Request/reply: a handler that answers on its own thread.
//! let responder = bus.clone();
//! let _echo = bus.subscribe("echo", move |request| {
//!     let _ = responder.reply(request.response(request.payload.clone()));
//! })?;
//! let reply = bus.request(Message::event("echo", b"hi".to_vec()), Duration::from_secs(5))?;
//! assert_eq!(reply.payload, b"hi");
//!
//! // The handler holds a clone of the bus; close() ends it all.
//! bus.close();
//! assert_eq!(bus.publish(Message::event("users.created", vec![])).unwrap_err().to_string(),
//!            "bus is closed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod bridge;
mod bus;
mod error;
mod handover;
mod hash;
mod mailbox;
mod registry;
mod request;
mod subscription;
#[cfg(test)]
mod test_support;
mod topic;

pub use bridge::Bridge;
pub use bus::{Bus, BusConfig, BusStats, DEFAULT_MAILBOX_CAPACITY, PublishReport, TopicStats};
pub use error::{BusError, RequestError};
pub use mailbox::{Mailbox, Offer};
pub use subscription::{Subscription, SubscriptionStats};
