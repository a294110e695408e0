//! `users`: an HTTP JSON API over users kept in the module's durable key-value store.
//!
//! - `GET /m/users` lists users (a page of `?limit=` users, 100 by default, with a `link`
//!   header to the next page), `POST /m/users` creates one from `{"name": .., "email": ..}`
//!   (400 with `{"error": ..}` when invalid, 409 when the email is taken),
//!   `GET /m/users/{id}` reads one, `DELETE /m/users/{id}` deletes one.
//! - Creating and deleting publish `users.created` / `users.deleted` with the user as JSON.
//! - It answers bus requests on `users.get` (payload: the id) with the user as JSON, or an
//!   `Error` reply.
//! - `GET /m/users/version` returns [`VERSION`]: change it, save, and watch the server swap
//!   the new version in.
//!
//! The users live in `guest::kv`, not in the instance: they survive a hot swap, a trap, a
//! restart of the server, and every instance of a pool sees the same ones. Keys:
//! `user/<id, 20 digits>` holds the user as JSON (zero-padded, so listing is in id order),
//! `email/<address>` holds the id that owns the address, `next_id` the last id handed out.
//! An email is claimed with a create-if-absent in the same batch that writes the user, so two
//! concurrent creates of one address cannot both succeed.

use guest::kv::{self, Batch};
use guest::{HttpError, Message, MessageKind, Module, Request, Response, Router, Topics};
use serde::{Deserialize, Serialize};

/// What `GET /m/users/version` answers.
const VERSION: &str = "1";

/// Longest accepted name, in characters.
const MAX_NAME: usize = 100;

/// Longest accepted email address, in bytes (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// Users per `GET /m/users` page, by default and at most.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The module keeps nothing in memory: every handler reads and writes the store.
#[derive(Debug, Default)]
struct Users;

fn user_key(id: u64) -> String {
    format!("user/{id:020}")
}

fn email_key(email: &str) -> String {
    format!("email/{email}")
}

/// The user with `id` and the revision of its entry, if it exists.
fn load(id: u64) -> guest::Result<Option<(User, u64)>> {
    let Some(entry) = kv::get_entry(&user_key(id))? else {
        return Ok(None);
    };
    let user = serde_json::from_slice(&entry.value)
        .map_err(|error| HttpError::internal(format!("user {id} is stored damaged: {error}")))?;
    Ok(Some((user, entry.revision)))
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

    /// A page of users in id order: `?limit=N` (1 to 1000, default 100), and a `link` header
    /// with the next page's `?cursor=` while more follow.
    fn list(&mut self, request: Request) -> guest::Result<Response> {
        let limit = match request.query("limit") {
            Some(limit) => limit
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE).contains(limit))
                .ok_or_else(|| {
                    HttpError::bad_request(format!("limit must be 1 to {MAX_PAGE}, not {limit:?}"))
                })?,
            None => DEFAULT_PAGE,
        };
        let cursor = match request.query("cursor") {
            Some(hex) => Some(
                from_hex(&hex).ok_or_else(|| HttpError::bad_request("the cursor is not valid"))?,
            ),
            None => None,
        };
        let page =
            kv::list("user/", cursor.as_deref(), limit).map_err(|error| match error.kind() {
                guest::ErrorKind::Kv {
                    kind: guest::KvErrorKind::BadCursor,
                    ..
                } => HttpError::bad_request("the cursor is not valid"),
                _ => HttpError::from(error),
            })?;
        let mut users = Vec::with_capacity(page.keys.len());
        for key in &page.keys {
            if let Some(user) = kv::get_json::<User>(key)? {
                users.push(user);
            }
        }
        let response = Response::json(&users);
        Ok(match page.cursor {
            Some(next) => response.with_header(
                "link",
                format!(
                    "</m/users?limit={limit}&cursor={}>; rel=\"next\"",
                    to_hex(&next)
                ),
            ),
            None => response,
        })
    }

    fn create(&mut self, request: Request) -> guest::Result<Response> {
        let new: NewUser = request.json()?;
        validate(&new)?;
        let email = new.email.trim().to_ascii_lowercase();
        let taken = |email: &str| HttpError::conflict(format!("email {email:?} is already used"));
        if kv::exists(&email_key(&email))? {
            return Err(taken(&email));
        }
        let id = u64::try_from(kv::increment("next_id", 1)?)
            .map_err(|_| HttpError::internal("the id counter is negative"))?;
        let user = User {
            id,
            name: new.name.trim().to_owned(),
            email,
        };
        let json = serde_json::to_vec(&user).map_err(HttpError::from)?;
        // Claim the address and write the user together: all or nothing.
        let written = Batch::new()
            .create(&email_key(&user.email), id.to_string())
            .set(&user_key(id), &json)
            .commit()?;
        if !written.applied() {
            return Err(taken(&user.email));
        }
        guest::info!("created user {} ({})", user.id, user.name);
        announce("users.created", &user);
        Ok(Response::created()
            .with_header("location", format!("/m/users/{id}"))
            .with_json(&user))
    }

    fn get(&mut self, request: Request) -> guest::Result<Response> {
        let id = Users::id(&request)?;
        let (user, _) = load(id)?.ok_or_else(|| Users::missing(id))?;
        Ok(Response::json(&user))
    }

    fn delete(&mut self, request: Request) -> guest::Result<()> {
        let id = Users::id(&request)?;
        let (user, revision) = load(id)?.ok_or_else(|| Users::missing(id))?;
        // Only if nobody changed or deleted it meanwhile; the address is freed with it.
        let deleted = Batch::new()
            .compare_and_swap(&user_key(id), Some(revision), None)
            .delete(&email_key(&user.email))
            .commit()?;
        if !deleted.applied() {
            return Err(Users::missing(id));
        }
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
        let found = match id.trim().parse::<u64>() {
            Ok(id) => kv::get(&user_key(id))?,
            Err(_) => None,
        };
        match found {
            Some(json) => guest::reply(&request, json),
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

guest::export!(Users, shared_nothing);

#[cfg(test)]
mod tests {
    use super::*;
    use guest::{Instance, testing};

    fn post(users: &mut Instance<Users>, body: &str) -> Response {
        users.handle(Request::new("POST", "").with_body(body))
    }

    #[test]
    fn create_get_list_delete() {
        let mut users = Instance::new(Users);
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
        let mut users = Instance::new(Users);
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
    fn the_list_is_paged() {
        let mut users = Instance::new(Users);
        for index in 0..5 {
            let body = format!(r#"{{"name":"U{index}","email":"u{index}@example.org"}}"#);
            assert_eq!(post(&mut users, &body).status(), 201);
        }
        let first = users.handle(Request::new("GET", "").with_query("limit=2"));
        assert_eq!(first.body_text().matches("\"id\"").count(), 2);
        let link = first.header("link").unwrap().to_owned();
        let next = link
            .strip_prefix("</m/users?")
            .and_then(|rest| rest.split_once('>'))
            .unwrap()
            .0;
        let second = users.handle(Request::new("GET", "").with_query(next));
        assert!(second.body_text().starts_with(r#"[{"id":3,"#), "{second:?}");
        let all = users.handle(Request::new("GET", ""));
        assert_eq!(all.body_text().matches("\"id\"").count(), 5);
        assert_eq!(all.header("link"), None);
        for bad in ["limit=0", "limit=1001", "limit=x", "cursor=zz", "cursor=00"] {
            let response = users.handle(Request::new("GET", "").with_query(bad));
            assert_eq!(response.status(), 400, "{bad}: {response:?}");
        }
    }

    #[test]
    fn users_outlive_the_instance() {
        let mut first = Instance::new(Users);
        post(&mut first, r#"{"name":"Ada","email":"ada@example.org"}"#);
        drop(first);
        // A new instance (a swap, a trap, a restart) reads the same store.
        let mut second = Instance::new(Users);
        assert_eq!(second.handle(Request::new("GET", "/1")).status(), 200);
        let taken = post(&mut second, r#"{"name":"Ada","email":"ADA@example.org"}"#);
        assert_eq!(taken.status(), 409);
        let next = post(&mut second, r#"{"name":"Bob","email":"bob@example.org"}"#);
        assert_eq!(next.header("location"), Some("/m/users/2"));
        // A deleted user frees the address; ids are never reused.
        assert_eq!(second.handle(Request::new("DELETE", "/1")).status(), 204);
        let again = post(&mut second, r#"{"name":"Ada","email":"ada@example.org"}"#);
        assert_eq!(again.header("location"), Some("/m/users/3"));
    }

    #[test]
    fn bus_requests_are_answered() {
        let mut users = Instance::new(Users);
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
