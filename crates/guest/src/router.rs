//! A tiny path router for a module's sub-paths (`/`, `/{id}`, `/{id}/posts`, `/files/{*rest}`).

use std::fmt;

use crate::http::{Request, Response};
use crate::query::percent_decode;
use crate::respond::IntoResponse;

/// Path parameters matched by a [`Pattern`], decoded, in pattern order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A path pattern: `/`-separated segments, each a literal, a `{name}` matching one non-empty
/// segment (a literal prefix or suffix around it is allowed: `/img-{id}.png`), or, last only,
/// a `{*name}` matching the rest of the path (possibly empty). `{{` and `}}` are literal braces.
///
/// Paths are compared after normalising: `""` is `/`, and one trailing `/` is ignored
/// (`/7/` matches `/{id}`). Literals compare exactly (case-sensitive); parameter values are
/// percent-decoded. Matching is the `matchit` crate's (the router axum uses).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    /// The pattern, and for a `{*rest}` pattern also its base (`true`: the rest is empty).
    tree: matchit::Router<bool>,
    /// The name of a trailing `{*name}`.
    rest: Option<String>,
}

/// `""` is `/`, and one trailing `/` (not the root's) is dropped.
fn normalise(path: &str) -> String {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// A trailing `/{*name}`: the name and the base it hangs off (`/files` for `/files/{*path}`).
fn split_rest(pattern: &str) -> Option<(&str, String)> {
    let (base, last) = pattern.rsplit_once('/')?;
    let name = last.strip_prefix("{*")?.strip_suffix('}')?;
    Some((name, normalise(base)))
}

/// Adds `pattern` (normalised) to `tree`; for a trailing `{*name}` also its base, so an empty
/// rest matches. Returns the rest's name.
///
/// # Panics
/// On a malformed pattern or one that conflicts with a pattern already in `tree`.
fn insert<T: Clone>(
    tree: &mut matchit::Router<T>,
    source: &str,
    pattern: &str,
    whole: T,
    base: T,
) -> Option<String> {
    let refuse = |error: matchit::InsertError| -> ! { panic!("route pattern {source:?}: {error}") };
    tree.insert(pattern, whole)
        .unwrap_or_else(|error| refuse(error));
    let (name, base_path) = split_rest(pattern)?;
    tree.insert(base_path, base)
        .unwrap_or_else(|error| refuse(error));
    Some(name.to_owned())
}

/// The decoded parameters of a match, plus an empty rest when the base of a `{*rest}` matched.
fn decoded(params: &matchit::Params<'_, '_>, empty_rest: Option<&str>) -> Params {
    let mut decoded: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (name.to_owned(), percent_decode(value).into_owned()))
        .collect();
    if let Some(name) = empty_rest {
        decoded.push((name.to_owned(), String::new()));
    }
    Params(decoded)
}

impl Pattern {
    /// Parses `pattern`.
    ///
    /// # Panics
    /// On a malformed pattern (an unclosed `{`, an empty name, `{*rest}` not last, two
    /// parameters in one segment): patterns are constants in the module's source, so this is
    /// a programming error, found by the first request (or a unit test).
    pub fn parse(pattern: &str) -> Pattern {
        let mut tree = matchit::Router::new();
        let rest = insert(&mut tree, pattern, &normalise(pattern), false, true);
        Pattern {
            source: pattern.to_owned(),
            tree,
            rest,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parameters if `path` matches.
    ///
    /// ```
    /// use guest::Pattern;
    ///
    /// let pattern = Pattern::parse("/{id}/posts/{*rest}");
    /// let params = pattern.matches("/7/posts/2024/hello%20world").unwrap();
    /// assert_eq!(params.get("id"), Some("7"));
    /// assert_eq!(params.get("rest"), Some("2024/hello world"));
    /// assert!(pattern.matches("/7").is_none());
    /// ```
    pub fn matches(&self, path: &str) -> Option<Params> {
        let path = normalise(path);
        let matched = self.tree.at(&path).ok()?;
        let empty_rest = (*matched.value).then_some(self.rest.as_deref()).flatten();
        Some(decoded(&matched.params, empty_rest))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

type Handler<M> = Box<dyn Fn(&mut M, Request) -> Response>;

struct Route<M> {
    method: String,
    pattern: String,
    handler: Handler<M>,
}

/// The routes of one pattern (normalised), in the order they were added.
struct Group {
    pattern: String,
    /// The name of a trailing `{*name}`.
    rest: Option<String>,
    routes: Vec<usize>,
}

/// Routes a request to a handler by method and sub-path; `404` when no pattern matches, `405`
/// (with an `allow` header) when a pattern matches but not the method. `HEAD` is served by a
/// `GET` route. The most specific pattern that matches the path wins, whatever the order
/// routes were added in: a literal segment before a `{param}`, a `{param}` before a `{*rest}`
/// (the `matchit` crate's rules, as in axum); among that pattern's routes, the first added for
/// the method serves. Two patterns that match the same paths (`/{id}` and `/{name}`) are
/// refused with a panic when the second is added, like a malformed one.
///
/// Handlers get the module and the [`Request`], whose [`Request::param`] holds the matched
/// parameters, and return anything [`IntoResponse`]: a [`Response`], text, `()` (`204`),
/// [`Json`](crate::Json), `(status, T)`, or [`guest::Result<T>`](crate::Result) to use `?`.
/// A module returns its router from [`Module::router`](crate::Module::router), which the
/// generated exports call once per instance.
///
/// Return a named type from a method used as a handler: `fn f(&mut self, ..) -> impl
/// IntoResponse` borrows `self` in its result (Rust 2024 captures every lifetime), which a
/// handler can't; write `-> impl IntoResponse + use<>` if you want an opaque type.
///
/// ```
/// use guest::{HttpError, Instance, Module, Request, Response, Router};
///
/// #[derive(Default)]
/// struct Notes { notes: Vec<String> }
///
/// impl Notes {
///     fn list(&mut self, _: Request) -> String {
///         self.notes.join("\n")
///     }
///     fn add(&mut self, request: Request) -> guest::Result<Response> {
///         self.notes.push(request.text()?.to_owned());
///         Ok(Response::created())
///     }
///     fn get(&mut self, request: Request) -> guest::Result<String> {
///         // `?` on a plain `ParseIntError` would answer 500: say what the client got wrong.
///         let index: usize = request.param("index").unwrap_or_default().parse()
///             .map_err(|_| HttpError::bad_request("the index is a number"))?;
///         let note = self.notes.get(index).ok_or_else(|| HttpError::not_found("no such note"))?;
///         Ok(note.clone())
///     }
/// }
///
/// impl Module for Notes {
///     fn router() -> Router<Notes> {
///         Router::new()
///             .get("/", Notes::list)
///             .post("/", Notes::add)
///             .get("/{index}", Notes::get)
///     }
/// }
///
/// let mut notes = Instance::new(Notes::default());
/// assert_eq!(notes.handle(Request::new("POST", "").with_body("hello")).status(), 201);
/// assert_eq!(notes.handle(Request::new("GET", "/0")).body_text(), "hello");
/// assert_eq!(notes.handle(Request::new("GET", "/1")).status(), 404);
/// assert_eq!(notes.handle(Request::new("GET", "/x")).status(), 400);
/// assert_eq!(notes.handle(Request::new("DELETE", "/0")).status(), 405);
/// ```
pub struct Router<M> {
    routes: Vec<Route<M>>,
    groups: Vec<Group>,
    /// Pattern → (group, whether the match is a `{*rest}`'s base, i.e. the rest is empty).
    tree: matchit::Router<(usize, bool)>,
    fallback: Option<Handler<M>>,
}

impl<M> Router<M> {
    /// A router with no routes.
    pub fn new() -> Router<M> {
        Router {
            routes: Vec::new(),
            groups: Vec::new(),
            tree: matchit::Router::new(),
            fallback: None,
        }
    }

    /// Sends every request no route's pattern matches to `handler` instead of answering
    /// `404` (a pattern that matches with another method still answers `405`).
    pub fn fallback<R: IntoResponse>(
        mut self,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.fallback = Some(Box::new(move |module, request| {
            handler(module, request).into_response()
        }));
        self
    }

    /// Whether no route and no fallback was added.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.fallback.is_none()
    }

    /// Adds a route for `method` (`"*"` = any method) and `pattern` (see [`Pattern`]).
    ///
    /// # Panics
    /// On a malformed pattern (see [`Pattern::parse`]) or one that matches the same paths as
    /// another pattern already added.
    pub fn route<R: IntoResponse>(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        let normalised = normalise(pattern);
        let index = self.routes.len();
        match self
            .groups
            .iter_mut()
            .find(|group| group.pattern == normalised)
        {
            Some(group) => group.routes.push(index),
            None => {
                let group = self.groups.len();
                let rest = insert(
                    &mut self.tree,
                    pattern,
                    &normalised,
                    (group, false),
                    (group, true),
                );
                self.groups.push(Group {
                    pattern: normalised,
                    rest,
                    routes: vec![index],
                });
            }
        }
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_owned(),
            handler: Box::new(move |module, request| handler(module, request).into_response()),
        });
        self
    }

    /// Adds a `GET` route (also serving `HEAD`).
    pub fn get<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("GET", pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("POST", pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("PATCH", pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Adds a route for every method.
    pub fn any<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(&mut M, Request) -> R + 'static,
    ) -> Self {
        self.route("*", pattern, handler)
    }

    /// Dispatches `request` to the route that matches it.
    pub fn handle(&self, module: &mut M, mut request: Request) -> Response {
        let path = normalise(request.path());
        let Ok(matched) = self.tree.at(&path) else {
            if let Some(fallback) = &self.fallback {
                return fallback(module, request);
            }
            return Response::not_found()
                .with_text(format!("no route for {} {path}", request.method()));
        };
        let (group, empty_rest) = *matched.value;
        let group = &self.groups[group];
        let method = request.method();
        let serving = group
            .routes
            .iter()
            .map(|&index| &self.routes[index])
            .find(|route| {
                route.method == "*"
                    || route.method == method
                    || (method == "HEAD" && route.method == "GET")
            });
        if let Some(route) = serving {
            let rest = empty_rest.then_some(group.rest.as_deref()).flatten();
            request.set_params(decoded(&matched.params, rest));
            return (route.handler)(module, request);
        }
        let mut allowed: Vec<&str> = Vec::new();
        for &index in &group.routes {
            let method = self.routes[index].method.as_str();
            if !allowed.contains(&method) {
                allowed.push(method);
            }
        }
        Response::method_not_allowed()
            .with_header("allow", allowed.join(", "))
            .with_text(format!("{} is not allowed here", request.method()))
    }
}

impl<M> Default for Router<M> {
    fn default() -> Self {
        Router::new()
    }
}

impl<M> fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|route| format!("{} {}", route.method, route.pattern)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        Pattern::parse(pattern).matches(path).map(|params| {
            params
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn root_matches_empty_and_slash() {
        for path in ["", "/"] {
            assert_eq!(params("/", path), Some(vec![]), "{path:?}");
            assert_eq!(params("", path), Some(vec![]), "{path:?}");
        }
        assert_eq!(params("/", "/7"), None);
    }

    #[test]
    fn params_match_one_nonempty_segment_and_decode() {
        assert_eq!(params("/{id}", "/7"), Some(pairs(&[("id", "7")])));
        assert_eq!(params("/{id}", "/7/"), Some(pairs(&[("id", "7")])));
        assert_eq!(params("/{id}", "/a%2Fb"), Some(pairs(&[("id", "a/b")])));
        assert_eq!(params("/{id}", "/a+b"), Some(pairs(&[("id", "a+b")])));
        assert_eq!(params("/{id}", "/"), None);
        assert_eq!(params("/{id}", "/7/x"), None);
        assert_eq!(
            params("/{user}/posts/{post}", "/ada/posts/3"),
            Some(pairs(&[("user", "ada"), ("post", "3")]))
        );
        assert_eq!(params("/{user}/posts/{post}", "/ada/post/3"), None);
        assert_eq!(params("/{a}/{b}", "//x"), None);
    }

    #[test]
    fn rest_takes_the_remainder_even_empty() {
        assert_eq!(
            params("/files/{*path}", "/files/a/b"),
            Some(pairs(&[("path", "a/b")]))
        );
        assert_eq!(
            params("/files/{*path}", "/files"),
            Some(pairs(&[("path", "")]))
        );
        assert_eq!(params("/{*all}", ""), Some(pairs(&[("all", "")])));
        assert_eq!(params("/files/{*path}", "/other/a"), None);
    }

    #[test]
    fn literals_are_case_sensitive() {
        assert!(params("/Work", "/work").is_none());
        assert!(params("/work", "/work").is_some());
    }

    #[test]
    #[should_panic(expected = "route pattern \"/{*rest}/x\"")]
    fn rest_must_be_last() {
        Pattern::parse("/{*rest}/x");
    }

    #[test]
    #[should_panic(expected = "route pattern \"/{}\"")]
    fn empty_parameter_names_are_refused() {
        Pattern::parse("/{}");
    }

    #[test]
    #[should_panic(expected = "route pattern \"/a{b\"")]
    fn stray_braces_are_refused() {
        Pattern::parse("/a{b");
    }

    #[test]
    #[should_panic(expected = "route pattern \"/{name}\"")]
    fn patterns_matching_the_same_paths_are_refused() {
        let _ = Router::<()>::new()
            .get("/{id}", |_, _| ())
            .delete("/{name}", |_, _| ());
    }

    #[test]
    fn the_most_specific_pattern_wins_whatever_the_order() {
        let router = Router::<()>::new()
            .get("/{id}", |_, _| "id")
            .get("/version", |_, _| "version")
            .get("/files/{*rest}", |_, _| "rest")
            .get("/files/readme", |_, _| "readme")
            .get("/img/{name}.png", |_, _| "image");
        let call = |path: &str| {
            router
                .handle(&mut (), Request::new("GET", path))
                .body_text()
        };
        assert_eq!(call("/version"), "version");
        assert_eq!(call("/7"), "id");
        assert_eq!(call("/files/readme"), "readme");
        assert_eq!(call("/files/a/b"), "rest");
        assert_eq!(call("/files"), "rest");
        assert_eq!(call("/img/cat.png"), "image");
        assert_eq!(call("/img/cat.gif"), "no route for GET /img/cat.gif");
    }

    #[test]
    fn router_dispatches_by_method_and_path() {
        let router = Router::<Vec<String>>::new()
            .get("/", |log, _| {
                log.push("list".into());
                Response::ok()
            })
            .post("/", |log, _| {
                log.push("create".into());
                Response::created()
            })
            .get("/{id}", |log, request| {
                log.push(format!("get {}", request.param("id").unwrap_or("?")));
                Response::ok()
            })
            .delete("/{id}", |log, request| {
                log.push(format!("delete {}", request.param("id").unwrap_or("?")));
                Response::no_content()
            })
            .any("/echo/{*rest}", |_, request| {
                Response::text(format!(
                    "{} {}",
                    request.method(),
                    request.param("rest").unwrap_or("")
                ))
            });
        let mut log = Vec::new();
        let mut call =
            |method: &str, path: &str| router.handle(&mut log, Request::new(method, path));
        assert_eq!(call("GET", "").status(), 200);
        assert_eq!(call("POST", "/").status(), 201);
        assert_eq!(call("GET", "/7").status(), 200);
        assert_eq!(call("HEAD", "/8").status(), 200);
        assert_eq!(call("DELETE", "/7").status(), 204);
        assert_eq!(call("PATCH", "/x/y/z").status(), 404);
        let echoed = call("PUT", "/echo/a/b");
        assert_eq!(echoed.body_text(), "PUT a/b");
        let refused = call("PUT", "/7");
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.header("allow"), Some("GET, DELETE"));
        let missing = call("GET", "/7/x");
        assert_eq!(missing.body_text(), "no route for GET /7/x");
        assert_eq!(log, ["list", "create", "get 7", "get 8", "delete 7"]);
    }

    #[test]
    fn handlers_return_anything_into_response_and_the_fallback_takes_the_rest() {
        struct Count(u32);
        impl Count {
            // An opaque return type must not capture `&mut self`'s lifetime (see `Router`).
            fn bump(&mut self, _: Request) -> impl IntoResponse + use<> {
                self.0 += 1;
                (201, format!("now {}", self.0))
            }
            fn fail(&mut self, _: Request) -> crate::Result<()> {
                Err(crate::HttpError::conflict("busy"))
            }
        }
        let router = Router::new()
            .post("/", Count::bump)
            .delete("/", Count::fail)
            .fallback(|_: &mut Count, request| format!("fallback {}", request.path()));
        let mut count = Count(0);
        let bumped = router.handle(&mut count, Request::new("POST", ""));
        assert_eq!((bumped.status(), bumped.body_text()), (201, "now 1".into()));
        let failed = router.handle(&mut count, Request::new("DELETE", "/"));
        assert_eq!(failed.body_text(), r#"{"error":"busy"}"#);
        let other = router.handle(&mut count, Request::new("GET", "/x"));
        assert_eq!(other.body_text(), "fallback /x");
        assert_eq!(
            router.handle(&mut count, Request::new("GET", "/")).status(),
            405
        );
        assert!(Router::<Count>::new().is_empty());
    }
}
