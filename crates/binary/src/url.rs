//! Percent-decoding, with the one rule per use: in a path `+` is a `+`
//! ([`percent_decode`]); in a query string `+` is a space, as in
//! `application/x-www-form-urlencoded` ([`form_decode`], [`query_pairs`]). The server (reading
//! `/ws?topic=`) and the guest SDK (router parameters, `Request::query`) both decode with these.
//! The decoding itself is the `percent-encoding` and `form_urlencoded` crates'; this module
//! fixes which rule applies where.

use std::borrow::Cow;

/// Percent-decodes a path segment (`%41` → `A`); `+` stays `+`. A `%` not followed by two hex
/// digits stays as it is; bytes that are not UTF-8 after decoding become U+FFFD.
///
/// ```
/// assert_eq!(binary::url::percent_decode("caf%C3%A9%20au%20lait"), "café au lait");
/// assert_eq!(binary::url::percent_decode("1+1"), "1+1");
/// assert_eq!(binary::url::percent_decode("100%"), "100%");
/// ```
pub fn percent_decode(input: &str) -> Cow<'_, str> {
    decode(input, false)
}

/// Percent-decodes a query-string name or value: like [`percent_decode`], and `+` is a space.
///
/// ```
/// assert_eq!(binary::url::form_decode("Ada+Lovelace%21"), "Ada Lovelace!");
/// ```
pub fn form_decode(input: &str) -> Cow<'_, str> {
    decode(input, true)
}

/// Splits a query string (without the `?`) into decoded `(name, value)` pairs, in order
/// ([`form_decode`]). A name without `=` has the value `""`; empty pieces (`a=1&&b=2`) are
/// skipped; repeated names are kept.
///
/// ```
/// let pairs: Vec<_> = binary::url::query_pairs("name=Ada+Lovelace&tag=a%26b&flag").collect();
/// assert_eq!(pairs, [("name".into(), "Ada Lovelace".into()), ("tag".into(), "a&b".into()),
///                    ("flag".into(), "".into())]);
/// ```
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

fn decode(input: &str, plus_is_space: bool) -> Cow<'_, str> {
    if plus_is_space && input.contains('+') {
        return Cow::Owned(
            percent_encoding::percent_decode_str(&input.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    percent_encoding::percent_decode_str(input).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_vectors_hold() {
        let vectors: Vec<_> = crate::vectors::percent().collect();
        assert!(vectors.len() > 15);
        for (kind, encoded, decoded) in vectors {
            let got = match kind {
                "path" => percent_decode(encoded),
                "query" => form_decode(encoded),
                other => panic!("unknown kind {other:?}"),
            };
            assert_eq!(got, decoded, "{kind} {encoded:?}");
        }
    }

    #[test]
    fn paths_keep_plus_and_junk() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2fb"), "a/b");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%+1"), "%+1", "only hex digits, no sign");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn queries_turn_plus_into_space() {
        assert_eq!(form_decode("a%20b+c%2x%"), "a b c%2x%");
        assert_eq!(form_decode("%2B+"), "+ ");
        assert!(matches!(form_decode("plain"), Cow::Borrowed("plain")));
        let pairs: Vec<(String, String)> = query_pairs("a=1&&b=&c&a=2&d=x=y&e=%3D+%2B")
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        assert_eq!(
            pairs,
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
        assert_eq!(query_pairs("").count(), 0);
    }
}
