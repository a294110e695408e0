//! The [`Module`] trait (what a module does at each export the host calls) and [`Instance`]
//! (a module with its routes and topic handlers, built once).

use binary::Message;

use crate::bus::Topics;
use crate::error::Error;
use crate::http::{Request, Response};
use crate::log::{Level, log};
use crate::respond::IntoResponse;
use crate::router::Router;

/// A module: one value of this type lives in the instance, created on the first call (see
/// [`export!`](crate::export!)) and kept between calls, so its fields are the module's state.
/// Every method has a default, so implement only what the module does.
///
/// HTTP goes through [`Module::router`], messages through [`Module::topics`]: both tables are
/// built **once per instance**, when the instance is created, and kept in the [`Instance`]
/// beside the module. What no table handles reaches [`Module::handle`] /
/// [`Module::on_message`], so a module with one entry point (a middleware) implements only
/// `handle` and a module with routes only `router`.
///
/// The host serialises calls into one instance: `handle`, `on_message` and `drain` never run
/// at the same time, hence `&mut self` and no locks. State lives as long as the instance: a
/// new version starts from scratch, and so does an instance replaced after a trap.
pub trait Module: Sized + 'static {
    /// Runs once per instance, before any request or message and after the patterns of
    /// [`Module::topics`] were subscribed: subscribe to more topics here (the subscriptions
    /// go live when this version is swapped in), publish a greeting, read granted
    /// environment variables. A returned error is logged at error level (the load goes on);
    /// a panic fails the load and the old version keeps serving.
    fn init(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// The HTTP routes, built once per instance. The default has no routes and sends every
    /// request to [`Module::handle`]; a router of your own does that only if you add
    /// `.fallback(|module: &mut Self, request| module.handle(request).into_response())`.
    fn router() -> Router<Self> {
        Router::new().fallback(|module: &mut Self, request| module.handle(request).into_response())
    }

    /// Answers one HTTP request to `/m/{name}[/rest]` that [`Module::router`] sent here. The
    /// default answers `404`.
    ///
    /// Implement it with the same return type, `-> impl IntoResponse`; the body may return a
    /// [`Response`], text, [`guest::Result<T>`](crate::Result), ... (spelling out a concrete
    /// type instead compiles, with rustc's `refining_impl_trait` warning).
    fn handle(&mut self, request: Request) -> impl IntoResponse {
        let _ = request;
        Response::not_found().with_text("this module does not serve HTTP")
    }

    /// The message handlers by topic pattern, built once per instance; every pattern is
    /// subscribed before [`Module::init`] runs. The default has none. A pattern the bus would
    /// refuse (`users*`) panics when the table is built ([`Topics::on`]), so the module fails
    /// to load rather than keep a handler that never runs.
    fn topics() -> Topics<Self> {
        Topics::new()
    }

    /// Receives one bus message on a topic this module subscribed to (any kind; answer a
    /// `Request` with [`reply`](crate::reply)) that no pattern of [`Module::topics`] matched.
    /// A returned error is logged at error level. The default ignores the message.
    fn on_message(&mut self, message: Message) -> Result<(), Error> {
        let _ = message;
        Ok(())
    }

    /// Called repeatedly after this version was replaced, once it has finished every request
    /// and message already given to it: return how many milliseconds to wait before asking
    /// again, or `0` when there is nothing left to do. The host closes the version at `0` or
    /// at its drain timeout (5 s by default). The default is `0`.
    fn drain(&mut self) -> u32 {
        0
    }

    /// Saves the in-memory state for the next version, during a hot swap: called on this
    /// (the old) version after its drain, when the module opted in with
    /// [`export!(MyModule, snapshot)`](crate::export!) and the new version exports `restore`.
    /// The bytes are the module's own format (see [`crate::snapshot_json`]); the host carries
    /// them to the new version's [`Module::restore`] untouched. An `Err` cancels the swap: the
    /// new version is refused and this one keeps serving. The default saves nothing.
    fn snapshot(&mut self) -> Result<Vec<u8>, crate::Error> {
        Ok(Vec::new())
    }

    /// Takes over the state the previous version saved with [`Module::snapshot`]: called on
    /// every instance of this (the new) version after `init` and before any request or
    /// message. An `Err` refuses the swap: this version is discarded and the old one keeps
    /// serving with its state. The default accepts and ignores the bytes.
    fn restore(&mut self, state: &[u8]) -> Result<(), crate::Error> {
        let _ = state;
        Ok(())
    }
}

/// A module with its [`Router`] and [`Topics`], built once: what the exports generated by
/// [`export!`](crate::export!) call, and what a unit test drives to go the same way.
///
/// ```
/// use guest::{Instance, Module, Request, Router};
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl Module for Hello {
///     fn router() -> Router<Hello> {
///         Router::new().get("/{name}", |_, request| {
///             format!("hello {}", request.param("name").unwrap_or_default())
///         })
///     }
/// }
///
/// let mut hello = Instance::new(Hello);
/// assert_eq!(hello.handle(Request::new("GET", "/ada")).body_text(), "hello ada");
/// assert_eq!(hello.handle(Request::new("GET", "/")).status(), 404);
/// ```
pub struct Instance<M: Module> {
    module: M,
    router: Router<M>,
    topics: Topics<M>,
    name: Option<&'static str>,
}

impl<M: Module> Instance<M> {
    /// Wraps `module`, building its router and topic table.
    pub fn new(module: M) -> Instance<M> {
        Instance {
            module,
            router: M::router(),
            topics: M::topics(),
            name: None,
        }
    }

    /// Names the module in the error lines [`Instance::init`] and [`Instance::on_message`]
    /// log (`export!` passes the crate's package name).
    pub fn named(mut self, name: &'static str) -> Instance<M> {
        self.name = Some(name);
        self
    }

    /// The module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The module, mutably.
    pub fn module_mut(&mut self) -> &mut M {
        &mut self.module
    }

    /// The `init` export: subscribes to every pattern of [`Module::topics`], then calls
    /// [`Module::init`]. Errors are logged, not returned.
    pub fn init(&mut self) {
        if let Err(error) = self.topics.subscribe_all() {
            self.log_failure("export \"init\"", &error);
        }
        if let Err(error) = self.module.init() {
            self.log_failure("export \"init\"", &error);
        }
    }

    /// The `handle` export: the request through the router.
    pub fn handle(&mut self, request: Request) -> Response {
        self.router.handle(&mut self.module, request)
    }

    /// The `on_message` export: the first handler of [`Module::topics`] whose pattern matches
    /// the topic, else [`Module::on_message`]. An error is logged with the topic.
    pub fn on_message(&mut self, message: Message) {
        let topic = message.topic.clone();
        let result = match self.topics.find(&topic) {
            Some(handler) => handler(&mut self.module, message),
            None => self.module.on_message(message),
        };
        if let Err(error) = result {
            let what = format!("export \"on_message\" on topic \"{topic}\"");
            self.log_failure(&what, &error);
        }
    }

    /// The `drain` export: [`Module::drain`].
    pub fn drain(&mut self) -> u32 {
        self.module.drain()
    }

    /// Logs `module "users": export "init" failed: <error>` at error level (`what` names
    /// the export); without a name, the line starts at `export`.
    fn log_failure(&self, what: &str, error: &Error) {
        let text = match self.name {
            Some(name) => format!("module \"{name}\": {what} failed: {error}"),
            None => format!("{what} failed: {error}"),
        };
        log(Level::Error, &text);
    }
}

impl<M: Module + std::fmt::Debug> std::fmt::Debug for Instance<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.module)
            .field("router", &self.router)
            .field("topics", &self.topics)
            .finish()
    }
}
