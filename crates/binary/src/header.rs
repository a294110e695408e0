//! The reserved `x-modhost-*` header names of the middleware convention (`docs/middleware.md`),
//! shared by the server that runs the pipeline and the guest SDK that answers or passes.

/// Every header whose name starts with this (any case) is reserved for the server and the
/// middleware convention; the server drops client-sent ones before the first stage.
pub const RESERVED_PREFIX: &str = "x-modhost-";

/// The response header that makes a middleware's response a pass; its value is
/// [`PASS_VALUE`].
pub const PASS: &str = "x-modhost-pass";

/// The value of [`PASS`] on a pass (any other value makes the response an answer).
pub const PASS_VALUE: &str = "1";

/// The request header the server sets for every stage: the target module's name.
pub const TARGET: &str = "x-modhost-target";

/// On a pass response, `x-modhost-set-<name>: <value>` sets request header `<name>` for the
/// later stages.
pub const SET_PREFIX: &str = "x-modhost-set-";

/// Whether `name` is reserved (starts with [`RESERVED_PREFIX`], in any case).
///
/// ```
/// assert!(binary::header::is_reserved("X-Modhost-Target"));
/// assert!(!binary::header::is_reserved("x-modhost"));
/// ```
pub fn is_reserved(name: &str) -> bool {
    name.get(..RESERVED_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(RESERVED_PREFIX))
}

/// The name of the header a pass response uses to set request header `name` (lower-cased).
///
/// ```
/// assert_eq!(binary::header::set_header_name("X-User"), "x-modhost-set-x-user");
/// ```
pub fn set_header_name(name: &str) -> String {
    format!("{SET_PREFIX}{}", name.to_ascii_lowercase())
}

/// For a header on a pass response: the request header it sets (lower-cased), or `None` when
/// it is not an `x-modhost-set-<name>` header or `<name>` is empty or itself reserved.
///
/// ```
/// use binary::header::set_target;
///
/// assert_eq!(set_target("X-Modhost-Set-X-User").as_deref(), Some("x-user"));
/// assert_eq!(set_target("x-modhost-set-x-modhost-target"), None);
/// assert_eq!(set_target("content-type"), None);
/// ```
pub fn set_target(response_header: &str) -> Option<String> {
    let name = response_header.to_ascii_lowercase();
    let set = name.strip_prefix(SET_PREFIX)?;
    (!set.is_empty() && !is_reserved(set)).then(|| set.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_reserved() {
        for name in [PASS, TARGET, SET_PREFIX] {
            assert!(is_reserved(name), "{name}");
            assert!(name.starts_with(RESERVED_PREFIX));
        }
        assert!(is_reserved("X-MODHOST-ANYTHING"));
        assert!(!is_reserved("x-modhos"));
        assert!(!is_reserved("x-modhost"));
        assert!(!is_reserved("x-user"));
        assert!(!is_reserved("é-modhost-x"));
    }

    #[test]
    fn set_headers_round_trip() {
        assert_eq!(
            set_target(&set_header_name("X-Request-Id")).as_deref(),
            Some("x-request-id")
        );
        assert_eq!(set_target("x-modhost-set-"), None);
        assert_eq!(set_target("x-modhost-set-X-MODHOST-pass"), None);
        assert_eq!(set_target(PASS), None);
    }
}
