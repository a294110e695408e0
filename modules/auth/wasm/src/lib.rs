//! `auth`: a middleware (`rule.txt` = `users`, in front of `users` only) that answers `401`
//! unless the request carries `authorization: Bearer <token>` with the right token, and
//! passes it on otherwise.
//!
//! The token comes from the environment variable `AUTH_TOKEN`, which the server grants per
//! module (`modhost.toml`: `[modules.auth] env = { AUTH_TOKEN = "..." }`); modules see no
//! environment by default, and then the token is [`DEFAULT_TOKEN`] — fine for a demo, never
//! for production.

use guest::{HttpError, IntoResponse, Module, Request, Response};

/// The token when `AUTH_TOKEN` is not granted.
const DEFAULT_TOKEN: &str = "letmein";

#[derive(Debug)]
struct Auth {
    token: String,
}

impl Auth {
    fn from_env() -> Auth {
        let token = std::env::var("AUTH_TOKEN")
            .ok()
            .filter(|token| !token.is_empty())
            .unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
        Auth { token }
    }
}

/// Compares without stopping at the first difference, so timing doesn't reveal how much of a
/// guess was right.
fn same(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
}

impl Module for Auth {
    fn init(&mut self) -> Result<(), guest::Error> {
        if self.token == DEFAULT_TOKEN {
            guest::warn!("AUTH_TOKEN is not granted: using the default token");
        }
        Ok(())
    }

    fn handle(&mut self, request: Request) -> impl IntoResponse {
        let reason = match request.bearer_token() {
            Some(token) if same(token.as_bytes(), self.token.as_bytes()) => {
                return Ok(Response::pass());
            }
            Some(_) => "wrong token",
            None => "missing bearer token",
        };
        guest::info!(
            "refused {} /m/{}{}: {reason}",
            request.method(),
            request.target().unwrap_or("?"),
            request.path()
        );
        Err(HttpError::new(401, reason).with_header("www-authenticate", "Bearer realm=\"modhost\""))
    }
}

guest::export!(Auth, Auth::from_env(), shared_nothing);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::Instance;

    #[test]
    fn only_the_right_token_passes() {
        let mut auth = Instance::new(Auth {
            token: "s3cret".into(),
        });
        let with = |value: &str| Request::new("GET", "").with_header("authorization", value);
        assert!(auth.handle(with("Bearer s3cret")).is_pass());
        for refused in [
            with("Bearer s3cre"),
            with("Bearer s3cret2"),
            with("Basic s3cret"),
            Request::new("GET", ""),
        ] {
            let response = auth.handle(refused);
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"modhost\"")
            );
            assert_eq!(response.header("content-type"), Some("application/json"));
        }
        let missing = auth.handle(Request::new("GET", ""));
        assert_eq!(missing.body_text(), r#"{"error":"missing bearer token"}"#);
        let wrong = auth.handle(with("Bearer nope"));
        assert_eq!(wrong.body_text(), r#"{"error":"wrong token"}"#);
    }

    #[test]
    fn the_default_token_applies_without_a_grant() {
        // The test process may have AUTH_TOKEN set; only check the fallback logic's shape.
        let auth = Auth::from_env();
        assert!(!auth.token.is_empty());
    }
}
