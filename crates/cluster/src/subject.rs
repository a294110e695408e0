//! The wire vocabulary of cluster mode: subjects, headers and which topics fit a subject.
//!
//! Every subject starts with `modhost.<cluster>.`; the rest is fixed here and documented in
//! `docs/wire-format.md`.

/// The header naming the node that sent a message (its id, `<node name>-<suffix>`).
pub const ORIGIN: &str = "Modhost-Origin";
/// The header of a forwarded call or request: milliseconds the sender still waits.
pub const TIMEOUT_MS: &str = "Modhost-Timeout-Ms";
/// The header of a bus event: the sending node's sequence number for it (decimal, from 1), so
/// a node that receives it through two of its subscriptions delivers it once.
pub const SEQ: &str = "Modhost-Seq";
/// The header of a bus message that carries several events (a `MessageBatch`): their count,
/// decimal, at least 2 and at most [`MAX_BATCH`]. They are numbered from its [`SEQ`] on.
pub const BATCH: &str = "Modhost-Batch";
/// The most events one bus message may carry.
pub const MAX_BATCH: usize = 256;
/// The header of a failed request reply: `no-responders`, `timeout`, `busy` or `closed`.
pub const ERROR: &str = "Modhost-Error";

/// The subject bus events on `topic` travel on, or `None` when the topic cannot be a NATS
/// subject (an empty token, e.g. `a..b` or a leading or trailing `.`, a `>` token, or bytes
/// outside visible ASCII): such messages stay local and are counted as not bridged.
pub fn bus(cluster: &str, topic: &str) -> Option<String> {
    fits(topic).then(|| format!("modhost.{cluster}.bus.{topic}"))
}

/// The subscription that receives every bus event of `cluster`.
pub fn bus_all(cluster: &str) -> String {
    format!("modhost.{cluster}.bus.>")
}

/// The NATS subscription that receives the bus events a local subscription `pattern` selects:
/// `*` becomes `modhost.<cluster>.bus.>`, `prefix.*` becomes `modhost.<cluster>.bus.prefix.>`
/// and a topic its own subject. `None` for a pattern that selects no topic that can travel
/// (an invalid pattern, or a prefix that is not a subject).
pub fn bus_interest(cluster: &str, pattern: &str) -> Option<String> {
    match binary::topic::Pattern::parse(pattern).ok()? {
        binary::topic::Pattern::All => Some(bus_all(cluster)),
        binary::topic::Pattern::Prefix(prefix) => {
            let prefix = prefix.strip_suffix('.')?;
            fits(prefix).then(|| format!("modhost.{cluster}.bus.{prefix}.>"))
        }
        binary::topic::Pattern::Exact(topic) => bus(cluster, topic),
    }
}

/// The subscriptions of `interests` (results of [`bus_interest`]) that no other one of them
/// covers, so that every subject matches at most one of them: `a.>` covers `a.b` and `a.b.>`,
/// and `>` covers everything.
pub fn bus_cover(interests: &std::collections::BTreeSet<String>) -> Vec<String> {
    let covers = |wide: &str, narrow: &str| {
        wide != narrow
            && wide
                .strip_suffix('>')
                .is_some_and(|stem| stem.ends_with('.') && narrow.starts_with(stem))
    };
    interests
        .iter()
        .filter(|narrow| !interests.iter().any(|wide| covers(wide, narrow)))
        .cloned()
        .collect()
}

/// The topic of a bus subject of `cluster`, if it is one.
pub fn bus_topic<'a>(cluster: &str, subject: &'a str) -> Option<&'a str> {
    strip(subject, cluster, "bus")
}

/// The subject `ws_broadcast` payloads on `topic` travel on (`None` as for [`bus`]).
pub fn ws(cluster: &str, topic: &str) -> Option<String> {
    fits(topic).then(|| format!("modhost.{cluster}.ws.{topic}"))
}

/// The subscription that receives every WebSocket broadcast of `cluster`.
pub fn ws_all(cluster: &str) -> String {
    format!("modhost.{cluster}.ws.>")
}

/// The WebSocket topic of a ws subject of `cluster`, if it is one.
pub fn ws_topic<'a>(cluster: &str, subject: &'a str) -> Option<&'a str> {
    strip(subject, cluster, "ws")
}

/// Where calls to `module` go (a queue group: one node that has it answers each call).
pub fn call(cluster: &str, module: &str) -> String {
    format!("modhost.{cluster}.call.{module}")
}

/// The queue group of every node's call subscriptions.
pub fn call_group(cluster: &str) -> String {
    format!("modhost.{cluster}.call")
}

/// Where bus requests for the node with id `node_id` go.
pub fn request(cluster: &str, node_id: &str) -> String {
    format!("modhost.{cluster}.req.{node_id}")
}

/// A subject nobody subscribes to: the NATS server answers a request on it with "no
/// responders" itself, after it processed everything the node sent before — the round trip
/// that confirms the node's new subscriptions (a client flush only writes them out).
pub fn sync(cluster: &str, node_id: &str) -> String {
    format!("modhost.{cluster}.sync.{node_id}")
}

/// Where nodes announce themselves.
pub fn heartbeat(cluster: &str) -> String {
    format!("modhost.{cluster}.heartbeat")
}

fn strip<'a>(subject: &'a str, cluster: &str, kind: &str) -> Option<&'a str> {
    let rest = subject.strip_prefix("modhost.")?.strip_prefix(cluster)?;
    let rest = rest
        .strip_prefix('.')?
        .strip_prefix(kind)?
        .strip_prefix('.')?;
    (!rest.is_empty()).then_some(rest)
}

/// Whether a topic can be the tail of a subject: non-empty tokens of visible ASCII, none of
/// them `>` (the bus already refuses `*` in a published topic).
pub fn fits(topic: &str) -> bool {
    !topic.is_empty()
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'*')
        && topic
            .split('.')
            .all(|token| !token.is_empty() && token != ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_subjects_and_back() {
        let subject = bus("app", "users.created").unwrap();
        assert_eq!(subject, "modhost.app.bus.users.created");
        assert_eq!(bus_topic("app", &subject), Some("users.created"));
        assert_eq!(bus_topic("other", &subject), None);
        assert_eq!(bus_topic("ap", &subject), None);
        assert_eq!(ws_topic("app", &subject), None);
        assert_eq!(ws_topic("app", "modhost.app.ws.chat"), Some("chat"));
        assert_eq!(bus_topic("app", "modhost.app.bus."), None);
    }

    #[test]
    fn patterns_map_to_subscriptions_and_overlaps_are_removed() {
        let interest = |pattern: &str| bus_interest("app", pattern);
        assert_eq!(interest("*").as_deref(), Some("modhost.app.bus.>"));
        assert_eq!(
            interest("users.*").as_deref(),
            Some("modhost.app.bus.users.>")
        );
        assert_eq!(interest("a.b.*").as_deref(), Some("modhost.app.bus.a.b.>"));
        assert_eq!(interest("a.b").as_deref(), Some("modhost.app.bus.a.b"));
        for pattern in ["a..*", "a..b", "a*", "", "é.*"] {
            assert_eq!(interest(pattern), None, "{pattern:?}");
        }
        let set = |patterns: &[&str]| -> std::collections::BTreeSet<String> {
            patterns
                .iter()
                .filter_map(|pattern| interest(pattern))
                .collect()
        };
        assert_eq!(
            bus_cover(&set(&["a.b", "a.*", "a.b.*", "ab.c", "b.c", "a.b.c"])),
            [
                "modhost.app.bus.a.>",
                "modhost.app.bus.ab.c",
                "modhost.app.bus.b.c"
            ]
        );
        assert_eq!(bus_cover(&set(&["a.b", "*", "x.*"])), ["modhost.app.bus.>"]);
        // A topic whose last token starts with `>` is a literal, not a wildcard.
        assert_eq!(
            bus_cover(&set(&["a.>b", "a.>b.c"])),
            ["modhost.app.bus.a.>b", "modhost.app.bus.a.>b.c"]
        );
        assert!(bus_cover(&set(&[])).is_empty());
    }

    #[test]
    fn topics_that_are_not_subjects_stay_local() {
        for topic in ["a..b", ".a", "a.", "a b", "a.>", ">", "é", "a\tb", ""] {
            assert!(bus("app", topic).is_none(), "{topic:?}");
            assert!(!fits(topic), "{topic:?}");
        }
        for topic in ["a", "a.b.c", "a-b_c:d/e", "a.>b"] {
            assert!(fits(topic), "{topic:?}");
        }
    }
}
