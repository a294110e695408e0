//! Topic syntax and matching: what a published topic may be, the three forms a subscription
//! pattern may take (exact, `prefix.*`, `*`), and which topics a pattern selects.
//!
//! The bus, the host's imports, the guest SDK and its test host all call these functions, so
//! a pattern a module may declare is exactly a pattern the bus accepts.

use std::fmt;

/// Longest topic or pattern, in bytes. The host checks a guest's topic length against it
/// before reading the topic out of guest memory.
pub const MAX_TOPIC_BYTES: usize = 1024;

/// A parsed subscription pattern, borrowing the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern<'a> {
    /// Exactly this topic (it contains no `*`).
    Exact(&'a str),
    /// `prefix.*`: every topic that starts with the prefix (kept here with its final `.`) and
    /// has at least one more byte.
    Prefix(&'a str),
    /// `*`: every topic.
    All,
}

impl<'a> Pattern<'a> {
    /// Parses a subscription pattern: not empty, at most [`MAX_TOPIC_BYTES`], and `*` only as
    /// the whole pattern or as a final `.*` after a non-empty prefix.
    ///
    /// ```
    /// use binary::topic::Pattern;
    ///
    /// assert_eq!(Pattern::parse("users.*")?, Pattern::Prefix("users."));
    /// assert_eq!(Pattern::parse("*")?, Pattern::All);
    /// assert!(Pattern::parse("users*").is_err());
    /// # Ok::<(), binary::topic::TopicError>(())
    /// ```
    pub fn parse(pattern: &'a str) -> Result<Pattern<'a>, TopicError> {
        check_length(pattern)?;
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        match pattern.strip_suffix('*') {
            None if !pattern.contains('*') => Ok(Pattern::Exact(pattern)),
            Some(prefix) if prefix.len() > 1 && prefix.ends_with('.') && !prefix.contains('*') => {
                Ok(Pattern::Prefix(prefix))
            }
            _ => Err(TopicError::new(pattern, TopicErrorKind::MisplacedStar)),
        }
    }

    /// Whether the published `topic` is selected by this pattern.
    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Exact(exact) => *exact == topic,
            Pattern::Prefix(prefix) => topic.len() > prefix.len() && topic.starts_with(prefix),
            Pattern::All => true,
        }
    }
}

/// Checks a subscription pattern (see [`Pattern::parse`]).
pub fn validate_pattern(pattern: &str) -> Result<(), TopicError> {
    Pattern::parse(pattern).map(|_| ())
}

/// Checks the topic a message is published on: not empty, at most [`MAX_TOPIC_BYTES`], no
/// `*` anywhere.
///
/// ```
/// assert!(binary::topic::validate_topic("users.created").is_ok());
/// assert_eq!(
///     binary::topic::validate_topic("users.*").unwrap_err().to_string(),
///     "invalid topic \"users.*\": a published topic may not contain \"*\""
/// );
/// ```
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_length(topic)?;
    if topic.as_bytes().contains(&b'*') {
        return Err(TopicError::new(topic, TopicErrorKind::StarInTopic));
    }
    Ok(())
}

/// Whether `topic` is selected by the subscription `pattern`; an invalid pattern selects
/// nothing.
///
/// ```
/// use binary::topic::matches;
///
/// assert!(matches("users.*", "users.created"));
/// assert!(!matches("users.*", "users."));
/// assert!(!matches("users.*", "users"));
/// assert!(matches("*", "anything"));
/// assert!(!matches("users*", "users*"), "not a pattern the bus accepts");
/// ```
pub fn matches(pattern: &str, topic: &str) -> bool {
    Pattern::parse(pattern).is_ok_and(|pattern| pattern.matches(topic))
}

fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::new(topic, TopicErrorKind::Empty));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::new(
            topic,
            TopicErrorKind::TooLong { len: topic.len() },
        ));
    }
    Ok(())
}

/// Why a topic or pattern was refused. Displays like
/// `invalid topic "a.*.b": "*" is only allowed as the whole topic or as a final ".*" after a
/// non-empty prefix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic {}: {kind}", Shown(&self.topic))]
pub struct TopicError {
    topic: String,
    kind: TopicErrorKind,
}

impl TopicError {
    fn new(topic: &str, kind: TopicErrorKind) -> TopicError {
        TopicError {
            topic: topic.to_owned(),
            kind,
        }
    }

    /// The refused topic or pattern.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &TopicErrorKind {
        &self.kind
    }
}

/// What is wrong with a topic or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicErrorKind {
    /// It is empty.
    Empty,
    /// It is longer than [`MAX_TOPIC_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A pattern uses `*` other than as the whole pattern or a final `.*` after a non-empty
    /// prefix (`users*`, `.*`, `a.*.b`).
    MisplacedStar,
    /// A published topic contains `*`.
    StarInTopic,
}

impl fmt::Display for TopicErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicErrorKind::Empty => f.write_str("a topic may not be empty"),
            TopicErrorKind::TooLong { len } => write!(
                f,
                "a topic of {len} bytes is longer than {MAX_TOPIC_BYTES} bytes"
            ),
            TopicErrorKind::MisplacedStar => f.write_str(
                "\"*\" is only allowed as the whole topic or as a final \".*\" after a non-empty prefix",
            ),
            TopicErrorKind::StarInTopic => f.write_str("a published topic may not contain \"*\""),
        }
    }
}

/// A topic in a message, quoted; an over-long one is cut so an error line stays short.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        if self.0.len() <= MAX_TOPIC_BYTES {
            return write!(f, "{:?}", self.0);
        }
        let mut end = SHOWN;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}...", &self.0[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared vectors (`crate::vectors::topics`): the bus and the guest SDK run the same
    /// lines.
    #[test]
    fn the_shared_vectors_hold() {
        let mut checked = 0;
        for fields in crate::vectors::topics() {
            let line = fields.join(" ");
            match fields[..] {
                ["pattern", pattern] => assert!(validate_pattern(pattern).is_ok(), "{line}"),
                ["!pattern", pattern] => assert!(validate_pattern(pattern).is_err(), "{line}"),
                ["topic", topic] => assert!(validate_topic(topic).is_ok(), "{line}"),
                ["!topic", topic] => assert!(validate_topic(topic).is_err(), "{line}"),
                ["match", pattern, topic] => assert!(matches(pattern, topic), "{line}"),
                ["!match", pattern, topic] => assert!(!matches(pattern, topic), "{line}"),
                _ => panic!("bad vector line {line:?}"),
            }
            checked += 1;
        }
        assert!(checked > 30, "{checked}");
    }

    #[test]
    fn parses_exact_topics_and_the_two_pattern_forms() {
        assert_eq!(
            Pattern::parse("users.created").unwrap(),
            Pattern::Exact("users.created")
        );
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::All);
        assert_eq!(Pattern::parse("a.b.*").unwrap(), Pattern::Prefix("a.b."));
    }

    #[test]
    fn empty_and_over_long_topics_are_refused() {
        assert_eq!(
            validate_topic("").unwrap_err().kind(),
            &TopicErrorKind::Empty
        );
        assert_eq!(
            validate_pattern("").unwrap_err().to_string(),
            "invalid topic \"\": a topic may not be empty"
        );
        let longest = "a".repeat(MAX_TOPIC_BYTES);
        assert!(validate_topic(&longest).is_ok());
        assert!(validate_pattern(&longest).is_ok());
        let long = "é".repeat(MAX_TOPIC_BYTES);
        let error = validate_topic(&long).unwrap_err();
        assert_eq!(
            error.kind(),
            &TopicErrorKind::TooLong {
                len: 2 * MAX_TOPIC_BYTES
            }
        );
        assert_eq!(error.topic(), long);
        assert_eq!(
            error.to_string(),
            format!(
                "invalid topic {:?}...: a topic of 2048 bytes is longer than 1024 bytes",
                "é".repeat(32)
            )
        );
    }

    #[test]
    fn messages_say_what_is_wrong() {
        assert_eq!(
            validate_pattern("users*").unwrap_err().to_string(),
            "invalid topic \"users*\": \"*\" is only allowed as the whole topic or as a final \".*\" after a non-empty prefix"
        );
        assert_eq!(
            validate_topic("a*").unwrap_err().to_string(),
            "invalid topic \"a*\": a published topic may not contain \"*\""
        );
    }
}
