//! Query strings and percent-decoding (`application/x-www-form-urlencoded`, as browsers send).

use std::borrow::Cow;

/// Percent-decodes `input` (`%41` → `A`). A `%` not followed by two hex digits stays as it is;
/// bytes that are not UTF-8 after decoding become U+FFFD. `+` is left alone (it means a space
/// only in query strings: [`parse_query`] handles that).
///
/// ```
/// assert_eq!(guest::percent_decode("caf%C3%A9%20au%20lait"), "café au lait");
/// assert_eq!(guest::percent_decode("100%"), "100%");
/// ```
pub fn percent_decode(input: &str) -> Cow<'_, str> {
    decode(input, false)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn decode(input: &str, plus_is_space: bool) -> Cow<'_, str> {
    if !(input.contains('%') || plus_is_space && input.contains('+')) {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(index + 1).copied().and_then(hex),
                bytes.get(index + 2).copied().and_then(hex),
            )
        {
            out.push(high << 4 | low);
            index += 3;
            continue;
        }
        out.push(if plus_is_space && byte == b'+' {
            b' '
        } else {
            byte
        });
        index += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
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
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (
                decode(name, true).into_owned(),
                decode(value, true).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_handles_escapes_plus_and_junk() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2fb"), "a/b");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed("plain")));
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
