//! [`ClusterError`] (joining) and [`ForwardError`] (a call to a module on another node).

use std::time::Duration;

/// Why a node could not start its cluster bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A setting is invalid.
    #[error("cluster config: {0}")]
    Config(String),
    /// The NATS client refused the options or a subscription.
    #[error("NATS: {0}")]
    Nats(String),
}

/// Why a call forwarded to another node got no answer from a module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardError {
    /// No node in the cluster serves the module.
    #[error("no node in the cluster serves module \"{module}\"")]
    NoNode {
        /// The module.
        module: String,
    },
    /// The node serving it did not answer in time.
    #[error("module \"{module}\" on another node did not answer within {after:?}")]
    Timeout {
        /// The module.
        module: String,
        /// The time that passed.
        after: Duration,
    },
    /// This node is not connected to NATS.
    #[error("module \"{module}\" is not loaded here and the cluster is not reachable")]
    Disconnected {
        /// The module.
        module: String,
    },
    /// The request is larger than the NATS server carries.
    #[error("request to module \"{module}\" is {size} bytes, over the cluster's limit of {limit}")]
    TooLarge {
        /// The module.
        module: String,
        /// The encoded request's size.
        size: usize,
        /// The NATS server's `max_payload`.
        limit: usize,
    },
    /// The answer was not a valid response envelope.
    #[error("module \"{module}\": invalid answer from another node: {reason}")]
    BadReply {
        /// The module.
        module: String,
        /// What was wrong with it.
        reason: String,
    },
}
