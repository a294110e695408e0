//! [`ClusterConfig`]: which NATS server, which cluster, which node, and the wire limits.

use std::time::Duration;

use crate::error::ClusterError;

/// How a node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Nodes with the same cluster name form one application (default `modhost`); several
    /// clusters can share a NATS server. A subject token: letters, digits, `-`, `_`.
    pub cluster_name: String,
    /// This node's name (default: `node-<pid>`), shown to the other nodes. Same syntax as the
    /// cluster name. The node's id on the wire is the name plus a random suffix, so two
    /// processes with the same name are still told apart.
    pub node_name: String,
    /// How often this node announces itself (default 1 s).
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is no longer listed (default 3 s).
    pub heartbeat_timeout: Duration,
    /// Largest bus or WebSocket message carried, envelope included (default 1 MiB). Larger
    /// local ones are counted as not bridged; larger ones from the wire are dropped and
    /// counted.
    pub max_message_bytes: usize,
    /// Messages waiting to go out to NATS (default 8192); a local publish that finds the
    /// queue full is counted as not bridged.
    pub outbound_queue: usize,
}

impl ClusterConfig {
    /// A config for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            cluster_name: "modhost".to_owned(),
            node_name: format!("node-{}", std::process::id()),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
            max_message_bytes: 1024 * 1024,
            outbound_queue: 8192,
        }
    }

    /// Checks the names (they become subject tokens) and the URL.
    pub fn validate(&self) -> Result<(), ClusterError> {
        for (what, value) in [
            ("cluster name", &self.cluster_name),
            ("node name", &self.node_name),
        ] {
            if !valid_token(value) {
                return Err(ClusterError::Config(format!(
                    "invalid {what} {value:?}: 1-64 letters, digits, '-' or '_'"
                )));
            }
        }
        if self.url.trim().is_empty() {
            return Err(ClusterError::Config("empty NATS URL".to_owned()));
        }
        Ok(())
    }
}

/// Whether `name` may be a cluster or node name: 1-64 ASCII letters, digits, `-` or `_`.
pub fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Whether `id` may be a node id on the wire: a name plus a suffix, at most 80 bytes of the
/// same characters.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_subject_tokens() {
        let mut config = ClusterConfig::new("nats://127.0.0.1:4222");
        assert!(config.validate().is_ok());
        assert!(config.node_name.starts_with("node-"));
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            config.cluster_name = bad.to_owned();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("invalid cluster name"), "{bad:?}: {error}");
        }
        config.cluster_name = "shop_1-a".to_owned();
        config.node_name = "web.1".to_owned();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("invalid node name")
        );
        config.node_name = "web-1".to_owned();
        config.url = " ".to_owned();
        assert!(config.validate().is_err());
        assert!(valid_id("web-1-0a1b2c3d"));
        assert!(!valid_id("web-1.x"));
    }
}
