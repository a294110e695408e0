//! The shared test vectors of [`crate::topic`] and [`crate::url`], read once here so every
//! crate that follows those rules (the bus, the guest SDK, the host, the server) tests itself
//! against the same lines. Test support, not part of the wire format.

/// `crates/binary/test_data/topics.txt`, one vector per item as its space-separated words:
/// `["pattern", p]`, `["!pattern", p]`, `["topic", t]`, `["!topic", t]`, `["match", p, t]`,
/// `["!match", p, t]` (comments and blank lines skipped).
pub fn topics() -> impl Iterator<Item = Vec<&'static str>> {
    include_str!("../test_data/topics.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(' ').collect())
}

/// `crates/binary/test_data/percent.txt` as `(kind, encoded, decoded)`, where `kind` is
/// `path` ([`crate::url::percent_decode`]) or `query` ([`crate::url::form_decode`]).
///
/// # Panics
/// On a line without exactly three tab-separated fields (a broken vector file).
pub fn percent() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    include_str!("../test_data/percent.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "bad vector line {line:?}");
            (fields[0], fields[1], fields[2])
        })
}
