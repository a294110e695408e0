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

use guest::{Message, MessageKind, Module, Request, Response, Router};
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

/// Checks a new user; the message is what the client sees in the 400.
fn validate(new: &NewUser) -> Result<(), String> {
    let name = new.name.trim();
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("name must be at most {MAX_NAME} characters"));
    }
    let email = new.email.trim();
    let valid_email = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
        }
        None => false,
    };
    if !valid_email || email.len() > MAX_EMAIL || email.contains(char::is_whitespace) {
        return Err(format!("email {:?} is not a valid address", new.email));
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
    fn id(request: &Request) -> Result<u64, Response> {
        let id = request.param("id").unwrap_or_default();
        id.parse()
            .map_err(|_| Response::json_error(400, &format!("{id:?} is not a user id")))
    }

    fn missing(id: u64) -> Response {
        Response::json_error(404, &format!("no user {id}"))
    }

    fn list(&mut self, _: Request) -> Response {
        Response::json(&self.users.values().collect::<Vec<_>>())
    }

    fn create(&mut self, request: Request) -> Response {
        let new: NewUser = match request.json() {
            Ok(new) => new,
            Err(response) => return response,
        };
        if let Err(message) = validate(&new) {
            return Response::json_error(400, &message);
        }
        let email = new.email.trim().to_ascii_lowercase();
        if self.users.values().any(|user| user.email == email) {
            return Response::json_error(409, &format!("email {email:?} is already used"));
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
        response
    }

    fn get(&mut self, request: Request) -> Response {
        match Users::id(&request) {
            Ok(id) => match self.users.get(&id) {
                Some(user) => Response::json(user),
                None => Users::missing(id),
            },
            Err(response) => response,
        }
    }

    fn delete(&mut self, request: Request) -> Response {
        match Users::id(&request) {
            Ok(id) => match self.users.remove(&id) {
                Some(user) => {
                    guest::info!("deleted user {id}");
                    announce("users.deleted", &user);
                    Response::no_content()
                }
                None => Users::missing(id),
            },
            Err(response) => response,
        }
    }

    fn version(&mut self, _: Request) -> Response {
        Response::text(VERSION)
    }

    /// Answers a `users.get` request: payload = the id as text.
    fn answer(&self, request: &Message) {
        let id = String::from_utf8_lossy(&request.payload);
        let found = id
            .trim()
            .parse()
            .ok()
            .and_then(|id: u64| self.users.get(&id));
        let sent = match found {
            Some(user) => guest::reply(request, serde_json::to_vec(user).unwrap_or_default()),
            None => guest::reply_error(request, format!("no user {id}")),
        };
        if let Err(error) = sent {
            guest::warn!("{error}");
        }
    }
}

impl Module for Users {
    fn init(&mut self) {
        if let Err(error) = guest::subscribe("users.get") {
            guest::error!("{error}");
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        Router::new()
            .get("/", Users::list)
            .post("/", Users::create)
            .get("/version", Users::version)
            .get("/{id}", Users::get)
            .delete("/{id}", Users::delete)
            .handle(self, request)
    }

    fn on_message(&mut self, message: Message) {
        if message.topic == "users.get" && message.kind == MessageKind::Request {
            self.answer(&message);
        }
    }
}

guest::export!(Users);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::testing;

    fn post(users: &mut Users, body: &str) -> Response {
        users.handle(Request::new("POST", "").with_body(body))
    }

    #[test]
    fn create_get_list_delete() {
        let mut users = Users::default();
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
        assert_eq!(users.handle(Request::new("GET", "/1")).status(), 404);
        assert_eq!(users.handle(Request::new("GET", "/x")).status(), 400);
    }

    #[test]
    fn validation_errors_are_400_and_duplicates_409() {
        let mut users = Users::default();
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
        assert_eq!(
            post(&mut users, r#"{"name":"B","email":"A@b.c"}"#).status(),
            409
        );
    }

    #[test]
    fn bus_requests_are_answered() {
        let mut users = Users::default();
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
