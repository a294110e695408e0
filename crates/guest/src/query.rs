//! Query strings and percent-decoding (`application/x-www-form-urlencoded`, as browsers send),
//! by `binary::url`'s rules.

use std::borrow::Cow;

/// Percent-decodes a path segment (`%41` → `A`): [`binary::url::percent_decode`]. A `%` not
/// followed by two hex digits stays as it is; bytes that are not UTF-8 after decoding become
/// U+FFFD. `+` is left alone (it means a space only in query strings: [`parse_query`] handles
/// that).
///
/// ```
/// assert_eq!(guest::percent_decode("caf%C3%A9%20au%20lait"), "café au lait");
/// assert_eq!(guest::percent_decode("100%"), "100%");
/// ```
pub fn percent_decode(input: &str) -> Cow<'_, str> {
    binary::url::percent_decode(input)
}

/// Splits a query string (without the `?`) into decoded `(name, value)` pairs, in order.
/// `+` is a space; a name without `=` has the value `""`; empty pieces (`a=1&&b=2`) are
/// skipped. Repeated names are kept: the first is what [`crate::Request::query`] returns.
///
/// ```
/// let pairs = guest::parse_query("name=Ada+Lovelace&tag=a%26b&flag");
/// assert_eq!(pairs, [
///     ("name".to_owned(), "Ada Lovelace".to_owned()),
///     ("tag".to_owned(), "a&b".to_owned()),
///     ("flag".to_owned(), String::new()),
/// ]);
/// ```
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    binary::url::query_pairs(query)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pattern, Request};

    /// The SDK decodes router parameters as paths and `Request::query` as a query, by the
    /// vectors the server's `/ws?topic=` is also tested with.
    #[test]
    fn router_parameters_and_queries_follow_the_shared_vectors() {
        for (kind, encoded, decoded) in binary::vectors::percent() {
            let got = match kind {
                "path" => Pattern::parse("/{p}")
                    .matches(&format!("/{encoded}"))
                    .and_then(|params| params.get("p").map(str::to_owned)),
                "query" => Request::new("GET", "")
                    .with_query(format!("x=1&p={encoded}"))
                    .query("p"),
                other => panic!("unknown kind {other:?}"),
            };
            assert_eq!(got.as_deref(), Some(decoded), "{kind} {encoded:?}");
        }
    }

    #[test]
    fn queries_split_into_decoded_pairs() {
        assert!(parse_query("").is_empty());
        assert_eq!(
            parse_query("a=1&&b=&c&a=2&d=x=y&e=%3D+%2B"),
            [
                ("a", "1"),
                ("b", ""),
                ("c", ""),
                ("a", "2"),
                ("d", "x=y"),
                ("e", "= +"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
    }
}
