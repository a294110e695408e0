//! The bus's view of a subscription pattern. The rules themselves (what a topic or pattern may
//! be, what a pattern selects) are `binary::topic`'s; this keeps a parsed pattern owned.

use binary::topic::Pattern;

use crate::error::BusError;

/// What a subscription topic selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Exactly this topic.
    Exact,
    /// `prefix.*`: every topic that starts with `prefix.` (kept here, dot included) and has at
    /// least one more character.
    Prefix(String),
    /// `*`: every topic.
    All,
}

impl Filter {
    /// Parses a subscription topic ([`binary::topic::Pattern::parse`]).
    pub(crate) fn parse(topic: &str) -> Result<Filter, BusError> {
        Ok(match Pattern::parse(topic)? {
            Pattern::Exact(_) => Filter::Exact,
            Pattern::Prefix(prefix) => Filter::Prefix(prefix.to_owned()),
            Pattern::All => Filter::All,
        })
    }

    /// Whether a published topic is selected by this pattern. `Exact` filters are looked up by
    /// key, never through here, so they match nothing.
    #[inline]
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Filter::Exact => false,
            Filter::Prefix(prefix) => Pattern::Prefix(prefix).matches(topic),
            Filter::All => true,
        }
    }
}

/// Checks the topic a message is published on ([`binary::topic::validate_topic`]).
pub(crate) fn check_published(topic: &str) -> Result<(), BusError> {
    Ok(binary::topic::validate_topic(topic)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bus;
    use binary::Message;

    #[test]
    fn parses_exact_topics_and_the_two_pattern_forms() {
        assert_eq!(Filter::parse("users.created").unwrap(), Filter::Exact);
        assert_eq!(Filter::parse("*").unwrap(), Filter::All);
        assert_eq!(
            Filter::parse("a.b.*").unwrap(),
            Filter::Prefix("a.b.".to_owned())
        );
        let error = Filter::parse("users*").unwrap_err();
        assert!(
            matches!(&error, BusError::InvalidTopic(refused) if refused.topic() == "users*"),
            "{error:?}"
        );
    }

    /// The vectors `binary::topic` is tested with, through the bus's own entry points:
    /// subscribe, publish and delivery.
    #[test]
    fn the_bus_follows_the_shared_topic_vectors() {
        let bus = Bus::new();
        for fields in binary::vectors::topics() {
            let line = fields.join(" ");
            match fields[..] {
                ["pattern", pattern] => assert!(bus.subscribe_channel(pattern).is_ok(), "{line}"),
                ["!pattern", pattern] => {
                    assert!(
                        matches!(
                            bus.subscribe_channel(pattern),
                            Err(BusError::InvalidTopic(_))
                        ),
                        "{line}"
                    )
                }
                ["topic", topic] => {
                    assert!(bus.publish(Message::event(topic, vec![])).is_ok(), "{line}")
                }
                ["!topic", topic] => assert!(
                    matches!(
                        bus.publish(Message::event(topic, vec![])),
                        Err(BusError::InvalidTopic(_))
                    ),
                    "{line}"
                ),
                [expectation @ ("match" | "!match"), pattern, topic] => {
                    let bus = Bus::new();
                    let delivered = match bus.subscribe_channel(pattern) {
                        Ok((_subscription, inbox)) => {
                            bus.publish(Message::event(topic, vec![])).is_ok()
                                && inbox.try_recv().is_ok()
                        }
                        Err(_) => false,
                    };
                    assert_eq!(delivered, expectation == "match", "{line}");
                }
                _ => panic!("bad vector line {line:?}"),
            }
        }
    }

    #[test]
    fn over_long_topics_are_refused() {
        let bus = Bus::new();
        let long = "a".repeat(binary::topic::MAX_TOPIC_BYTES + 1);
        assert!(bus.subscribe_channel(&long).is_err());
        assert!(bus.publish(Message::event(long, vec![])).is_err());
    }
}
