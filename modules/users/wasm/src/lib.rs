//! `users`: an HTTP JSON API over users kept in module memory.
//!
//! - `GET /m/users` lists users, `POST /m/users` creates one from `{"name": .., "email": ..}`
//!   (400 with `{"error": ..}` when invalid, 409 when the email is taken),
//!   `GET /m/users/{id}` reads one, `DELETE /m/users/{id}` deletes one.
//! - Creating and deleting publish `users.created` / `users.deleted` with the user as JSON.
//! - It answers bus requests on `users.get` (payload: the id) with the user as JSON, or an
//!   `Error` reply.
//! - `GET /m/users/version` returns [`VERSION`]: change it, save, and watch the server swap
//!   the new version in.
//!
//! State lives in the instance: a new version (or an instance replaced after a trap) starts
//! empty.

use std::collections::BTreeMap;

use guest::{HttpError, Message, MessageKind, Module, Request, Response, Router, Topics};
use serde::{Deserialize, Serialize};

/// What `GET /m/users/version` answers.
const VERSION: &str = "1";

/// Longest accepted name, in characters.
const MAX_NAME: usize = 100;

/// Longest accepted email address, in bytes (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

#[derive(Debug, Clone, Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// The body of `POST /m/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    email: String,
}

#[derive(Debug, Default)]
struct Users {
    users: BTreeMap<u64, User>,
    last_id: u64,
}

/// Checks a new user: a 400 saying what is wrong.
fn validate(new: &NewUser) -> guest::Result<()> {
    let name = new.name.trim();
    if name.is_empty() {
        return Err(HttpError::bad_request("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(HttpError::bad_request(format!(
            "name must be at most {MAX_NAME} characters"
        )));
    }
    let email = new.email.trim();
    let valid_email = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
        }
        None => false,
    };
    if !valid_email || email.len() > MAX_EMAIL || email.contains(char::is_whitespace) {
        return Err(HttpError::bad_request(format!(
            "email {:?} is not a valid address",
            new.email
        )));
    }
    Ok(())
}

/// Publishes an event, logging (not failing the request) when the bus refuses it.
fn announce(topic: &str, user: &User) {
    let payload = serde_json::to_vec(user).unwrap_or_default();
    if let Err(error) = guest::publish(topic, payload) {
        guest::warn!("{error}");
    }
}

impl Users {
    fn id(request: &Request) -> guest::Result<u64> {
        let id = request.param("id").unwrap_or_default();
        id.parse()
            .map_err(|_| HttpError::bad_request(format!("{id:?} is not a user id")))
    }

    fn missing(id: u64) -> HttpError {
        HttpError::not_found(format!("no user {id}"))
    }

    fn list(&mut self, _: Request) -> Response {
        Response::json(&self.users.values().collect::<Vec<_>>())
    }

    fn create(&mut self, request: Request) -> guest::Result<Response> {
        let new: NewUser = request.json()?;
        validate(&new)?;
        let email = new.email.trim().to_ascii_lowercase();
        if self.users.values().any(|user| user.email == email) {
            return Err(HttpError::conflict(format!(
                "email {email:?} is already used"
            )));
        }
        self.last_id += 1;
        let user = User {
            id: self.last_id,
            name: new.name.trim().to_owned(),
            email,
        };
        guest::info!("created user {} ({})", user.id, user.name);
        announce("users.created", &user);
        let response = Response::created()
            .with_header("location", format!("/m/users/{}", user.id))
            .with_json(&user);
        self.users.insert(user.id, user);
        Ok(response)
    }

    fn get(&mut self, request: Request) -> guest::Result<Response> {
        let id = Users::id(&request)?;
        let user = self.users.get(&id).ok_or_else(|| Users::missing(id))?;
        Ok(Response::json(user))
    }

    fn delete(&mut self, request: Request) -> guest::Result<()> {
        let id = Users::id(&request)?;
        let user = self.users.remove(&id).ok_or_else(|| Users::missing(id))?;
        guest::info!("deleted user {id}");
        announce("users.deleted", &user);
        Ok(())
    }

    fn version(&mut self, _: Request) -> &'static str {
        VERSION
    }

    /// Answers a `users.get` request: payload = the id as text.
    fn answer(&mut self, request: Message) -> Result<(), guest::Error> {
        if request.kind != MessageKind::Request {
            return Ok(());
        }
        let id = String::from_utf8_lossy(&request.payload);
        let found = id
            .trim()
            .parse()
            .ok()
            .and_then(|id: u64| self.users.get(&id));
        match found {
            Some(user) => guest::reply(&request, serde_json::to_vec(user).unwrap_or_default()),
            None => guest::reply_error(&request, format!("no user {id}")),
        }?;
        Ok(())
    }
}

impl Module for Users {
    fn router() -> Router<Users> {
        Router::new()
            .get("/", Users::list)
            .post("/", Users::create)
            .get("/version", Users::version)
            .get("/{id}", Users::get)
            .delete("/{id}", Users::delete)
    }

    fn topics() -> Topics<Users> {
        Topics::new().on("users.get", Users::answer)
    }
}

guest::export!(Users);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::{Instance, testing};

    fn post(users: &mut Instance<Users>, body: &str) -> Response {
        users.handle(Request::new("POST", "").with_body(body))
    }

    #[test]
    fn create_get_list_delete() {
        let mut users = Instance::new(Users::default());
        let created = post(&mut users, r#"{"name":" Ada ","email":"Ada@example.org"}"#);
        assert_eq!(created.status(), 201, "{created:?}");
        assert_eq!(created.header("location"), Some("/m/users/1"));
        assert_eq!(
            created.body_text(),
            r#"{"id":1,"name":"Ada","email":"ada@example.org"}"#
        );
        let events = testing::take_published();
        assert_eq!(events[0].topic, "users.created");
        assert_eq!(users.handle(Request::new("GET", "/1")).status(), 200);
        assert_eq!(
            users
                .handle(Request::new("GET", ""))
                .body_text()
                .matches("\"id\"")
                .count(),
            1
        );
        assert_eq!(users.handle(Request::new("DELETE", "/1")).status(), 204);
        assert_eq!(testing::take_published()[0].topic, "users.deleted");
        let missing = users.handle(Request::new("GET", "/1"));
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.body_text(), r#"{"error":"no user 1"}"#);
        assert_eq!(missing.header("content-type"), Some("application/json"));
        let bad = users.handle(Request::new("GET", "/x"));
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.body_text(), r#"{"error":"\"x\" is not a user id"}"#);
        let version = users.handle(Request::new("GET", "/version"));
        assert_eq!(version.body_text(), VERSION);
        assert_eq!(
            version.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn validation_errors_are_400_and_duplicates_409() {
        let mut users = Instance::new(Users::default());
        for body in [
            r#"{"name":"","email":"a@b.c"}"#,
            r#"{"name":"A","email":"nope"}"#,
            r#"{"name":"A","email":"a@b"}"#,
            r#"{"name":"A"}"#,
            r#"{"name":"A","email":"a@b.c","admin":true}"#,
            "not json",
        ] {
            let response = post(&mut users, body);
            assert_eq!(response.status(), 400, "{body}: {response:?}");
            assert!(
                response.body_text().starts_with(r#"{"error":"#),
                "{response:?}"
            );
        }
        assert_eq!(
            post(&mut users, r#"{"name":"A","email":"a@b.c"}"#).status(),
            201
        );
        let taken = post(&mut users, r#"{"name":"B","email":"A@b.c"}"#);
        assert_eq!(taken.status(), 409);
        assert_eq!(
            taken.body_text(),
            r#"{"error":"email \"a@b.c\" is already used"}"#
        );
    }

    #[test]
    fn bus_requests_are_answered() {
        let mut users = Instance::new(Users::default());
        users.init();
        assert_eq!(testing::subscriptions(), ["users.get"]);
        post(&mut users, r#"{"name":"Ada","email":"ada@example.org"}"#);
        testing::take_published();
        users.on_message(Message::request("users.get", 5, b"1".to_vec()));
        users.on_message(Message::request("users.get", 6, b"2".to_vec()));
        let replies = testing::take_published();
        assert_eq!((replies[0].kind, replies[0].id), (MessageKind::Response, 5));
        assert_eq!((replies[1].kind, replies[1].id), (MessageKind::Error, 6));
        assert_eq!(replies[1].payload, b"no user 2");
    }
}
