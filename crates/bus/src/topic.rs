//! Topic rules: what a published topic may be, and the two pattern forms a subscription may use.

use crate::error::BusError;

/// Why a topic is refused, shared by subscribe and publish.
const EMPTY: &str = "a topic may not be empty";
const BAD_STAR: &str =
    "\"*\" is only allowed as the whole topic or as a final \".*\" after a non-empty prefix";
const STAR_IN_PUBLISH: &str = "a published topic may not contain \"*\"";

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
    /// Parses a subscription topic.
    pub(crate) fn parse(topic: &str) -> Result<Filter, BusError> {
        if topic.is_empty() {
            return Err(invalid(topic, EMPTY));
        }
        if topic == "*" {
            return Ok(Filter::All);
        }
        match topic.strip_suffix('*') {
            None if !topic.contains('*') => Ok(Filter::Exact),
            Some(prefix) if prefix.len() > 1 && prefix.ends_with('.') && !prefix.contains('*') => {
                Ok(Filter::Prefix(prefix.to_owned()))
            }
            _ => Err(invalid(topic, BAD_STAR)),
        }
    }

    /// Whether a published topic is selected by this pattern. `Exact` filters are looked up by
    /// key, never through here, so they match nothing.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Filter::Exact => false,
            Filter::Prefix(prefix) => topic.len() > prefix.len() && topic.starts_with(prefix),
            Filter::All => true,
        }
    }
}

/// Checks the topic a message is published on: not empty, no `*`.
pub(crate) fn check_published(topic: &str) -> Result<(), BusError> {
    if topic.is_empty() {
        return Err(invalid(topic, EMPTY));
    }
    if topic.as_bytes().contains(&b'*') {
        return Err(invalid(topic, STAR_IN_PUBLISH));
    }
    Ok(())
}

fn invalid(topic: &str, reason: &'static str) -> BusError {
    BusError::InvalidTopic {
        topic: topic.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_topics_and_the_two_pattern_forms() {
        assert_eq!(Filter::parse("users.created").unwrap(), Filter::Exact);
        assert_eq!(Filter::parse("users").unwrap(), Filter::Exact);
        assert_eq!(Filter::parse("*").unwrap(), Filter::All);
        assert_eq!(
            Filter::parse("users.*").unwrap(),
            Filter::Prefix("users.".to_owned())
        );
        assert_eq!(
            Filter::parse("a.b.*").unwrap(),
            Filter::Prefix("a.b.".to_owned())
        );
    }

    #[test]
    fn refuses_empty_topics_and_stars_anywhere_else() {
        for topic in [
            "",
            "users*",
            "*.created",
            "a.*.b",
            "users.**",
            ".*",
            "**",
            "a*b",
            "users*.*",
        ] {
            let error = Filter::parse(topic).unwrap_err();
            assert!(
                matches!(&error, BusError::InvalidTopic { topic: refused, .. } if refused == topic),
                "{topic:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn prefix_pattern_needs_at_least_one_more_character() {
        let filter = Filter::parse("users.*").unwrap();
        assert!(filter.matches("users.created"));
        assert!(filter.matches("users.a.b"));
        assert!(filter.matches("users.x"));
        assert!(!filter.matches("users."));
        assert!(!filter.matches("users"));
        assert!(!filter.matches("usersx.created"));
        assert!(!filter.matches("other.users.created"));
    }

    #[test]
    fn star_matches_everything() {
        let filter = Filter::parse("*").unwrap();
        assert!(filter.matches("a"));
        assert!(filter.matches("users.created"));
    }

    #[test]
    fn published_topics_must_be_concrete() {
        assert!(check_published("users.created").is_ok());
        assert!(check_published("").is_err());
        assert!(check_published("users.*").is_err());
        assert!(check_published("*").is_err());
        let message = check_published("a*").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid topic \"a*\": a published topic may not contain \"*\""
        );
    }
}
