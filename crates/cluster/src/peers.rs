//! The other nodes of the cluster, as their heartbeats describe them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a node announces on `modhost.<cluster>.heartbeat` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// The node's name.
    pub node: String,
    /// The node's id (name plus a random suffix).
    pub id: String,
    /// Modules loaded on it.
    pub modules: Vec<String>,
    /// Bus topics and patterns with a live subscription on it: where requests can go.
    pub topics: Vec<String>,
    /// It reads several bus events in one NATS message (`Modhost-Batch`). Absent (false) in
    /// the heartbeats of versions that predate batches: while such a node is heard from,
    /// nobody sends batches.
    #[serde(default)]
    pub batches: bool,
}

/// One other node, as `/_admin/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The node's name.
    pub node: String,
    /// The node's id.
    pub id: String,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    /// Modules loaded on it.
    pub modules: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    table: Mutex<HashMap<String, (Instant, Heartbeat)>>,
}

impl Peers {
    pub(crate) fn seen(&self, heartbeat: Heartbeat) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.insert(heartbeat.id.clone(), (Instant::now(), heartbeat));
    }

    pub(crate) fn prune(&self, timeout: Duration) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.retain(|_, (seen, _)| seen.elapsed() <= timeout);
    }

    /// Live peers, sorted by name then id.
    pub(crate) fn list(&self, timeout: Duration) -> Vec<PeerStatus> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut peers: Vec<PeerStatus> = table
            .values()
            .filter(|(seen, _)| seen.elapsed() <= timeout)
            .map(|(seen, heartbeat)| PeerStatus {
                node: heartbeat.node.clone(),
                id: heartbeat.id.clone(),
                last_seen_ms: u64::try_from(seen.elapsed().as_millis()).unwrap_or(u64::MAX),
                modules: heartbeat.modules.clone(),
            })
            .collect();
        peers.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
        peers
    }

    /// Whether every live peer reads batched bus events (true with no peers).
    pub(crate) fn all_read_batches(&self, timeout: Duration) -> bool {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .values()
            .all(|(seen, heartbeat)| heartbeat.batches || seen.elapsed() > timeout)
    }

    /// Ids of live peers with a subscription matching `topic`, most recently heard first.
    pub(crate) fn responders(&self, topic: &str, timeout: Duration) -> Vec<String> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<(Instant, String)> = table
            .values()
            .filter(|(seen, heartbeat)| {
                seen.elapsed() <= timeout
                    && heartbeat
                        .topics
                        .iter()
                        .any(|pattern| binary::topic::matches(pattern, topic))
            })
            .map(|(seen, heartbeat)| (*seen, heartbeat.id.clone()))
            .collect();
        found.sort_by_key(|found| std::cmp::Reverse(found.0));
        found.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            node: id.to_owned(),
            id: id.to_owned(),
            modules: vec![],
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            batches: true,
        }
    }

    #[test]
    fn batches_go_out_only_while_every_live_peer_reads_them() {
        let peers = Peers::default();
        let timeout = Duration::from_secs(60);
        assert!(peers.all_read_batches(timeout), "alone");
        peers.seen(heartbeat("new", &[]));
        assert!(peers.all_read_batches(timeout));
        // A heartbeat of an older version has no `batches` field.
        let old: Heartbeat =
            serde_json::from_str(r#"{"node":"old","id":"old-1","modules":[],"topics":[]}"#)
                .unwrap();
        assert!(!old.batches);
        peers.seen(old);
        assert!(!peers.all_read_batches(timeout));
        // Once it is no longer heard from, batches go out again.
        assert!(peers.all_read_batches(Duration::ZERO));
    }

    #[test]
    fn responders_are_the_live_peers_whose_patterns_match() {
        let peers = Peers::default();
        peers.seen(heartbeat("a", &["users.get"]));
        peers.seen(heartbeat("b", &["users.*"]));
        peers.seen(heartbeat("c", &["orders.new"]));
        let timeout = Duration::from_secs(60);
        let mut found = peers.responders("users.get", timeout);
        found.sort();
        assert_eq!(found, ["a", "b"]);
        assert_eq!(peers.responders("users.put", timeout), ["b"]);
        assert!(peers.responders("nobody", timeout).is_empty());
        assert_eq!(peers.list(timeout).len(), 3);
        // Nobody heard from within the timeout is listed or asked.
        assert!(peers.responders("users.get", Duration::ZERO).is_empty());
        peers.prune(Duration::ZERO);
        assert!(peers.list(timeout).is_empty());
    }
}
