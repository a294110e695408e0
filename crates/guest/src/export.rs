//! The [`export!`](crate::export!) macro and the runtime behind the exports it generates.

/// The ABI version this SDK implements (`modhost_abi_version` returns it; `docs/ABI.md`).
pub const ABI_VERSION: i32 = 1;

/// Declares the module: generates every ABI 1 export `docs/ABI.md` lists, on top of a
/// [`Module`](crate::Module) implementation.
///
/// - `export!(MyModule)` creates the instance with `MyModule::default()`;
/// - `export!(MyModule, MyModule::new("x"))` with the given expression;
/// - `export!(MyModule, snapshot)` and `export!(MyModule, MyModule::new("x"), snapshot)`
///   also export `snapshot` and `restore`, so the module's in-memory state moves to the new
///   version at a hot swap ([`Module::snapshot`](crate::Module::snapshot),
///   [`Module::restore`](crate::Module::restore)). Opt-in: a module without them swaps
///   without holding any request.
/// - `export!(MyModule, shared_nothing)` and `export!(MyModule, MyModule::new("x"),
///   shared_nothing)` also export the marker `modhost_shared_nothing`: the module keeps
///   nothing in its instance that another instance would need (its state, if any, is in
///   [`kv`](crate::kv)), so the server may run several instances of it side by side (by
///   default one per server thread, so a request need not wait for another's instance).
///   Not with `snapshot`: a module that hands in-memory state over is not shared-nothing.
///
/// The instance is created on the first call (`init`, normally) as an
/// [`Instance`](crate::Instance) (the module plus its [`Module::router`](crate::Module::router)
/// and [`Module::topics`](crate::Module::topics), built then and only then, and named with
/// the crate's package name for its error lines) and lives in the wasm instance's memory
/// from then on. Generated exports (only when compiling for `wasm32`; on
/// other targets the macro only checks that the type implements `Module` and that the
/// constructor has the right type, so `cargo test` works on the developer's machine):
///
/// | export | type | what it does |
/// |---|---|---|
/// | `modhost_abi_version` | `() -> i32` | returns [`ABI_VERSION`] (1) |
/// | `_initialize` | `() -> ()` | runs the module's static constructors (`__wasm_call_ctors`), once |
/// | `alloc` | `(len: i32) -> i32` | a buffer of `len` bytes for the host to write into |
/// | `dealloc` | `(ptr: i32, len: i32) -> ()` | frees a buffer from `alloc` or a `handle` response |
/// | `init` | `() -> ()` | subscribes to [`Module::topics`](crate::Module::topics), calls [`Module::init`](crate::Module::init); errors are logged at error level, naming the module and the export |
/// | `handle` | `(ptr: i32, len: i32) -> i64` | decodes the `HttpRequest` (taking ownership of the buffer), dispatches it with [`Module::router`](crate::Module::router) (by default to [`Module::handle`](crate::Module::handle)), returns `(ptr << 32) \| len` of the encoded `HttpResponse` |
/// | `on_message` | `(ptr: i32, len: i32) -> ()` | decodes the `Message`, calls the handler of [`Module::topics`](crate::Module::topics) or [`Module::on_message`](crate::Module::on_message); an error is logged like `init`'s |
/// | `on_messages` | `(ptr: i32, len: i32) -> ()` | decodes a `MessageBatch` one message at a time and hands each to what `on_message` calls, in order, writing each message's index into the batch's count field before its handler runs (`docs/ABI.md`) |
/// | `drain` | `() -> i32` | [`Module::drain`](crate::Module::drain), clamped to `i32::MAX` |
/// | `snapshot` (opt-in) | `() -> i64` | [`Module::snapshot`](crate::Module::snapshot); `(ptr << 32) \| len` of the state, `-1` (and a log line) on `Err` |
/// | `restore` (opt-in) | `(ptr: i32, len: i32) -> i32` | [`Module::restore`](crate::Module::restore) on the state (taking ownership of the buffer); `0`, or `1` (and a log line) on `Err` |
/// | `modhost_shared_nothing` (opt-in) | `() -> ()` | nothing; its presence is the declaration |
///
/// Use it once per module crate (the export names are global), at the crate root or
/// anywhere else. The crate must be a `cdylib` built for `wasm32-wasip1`.
///
/// Why a `macro_rules!` macro and not an attribute proc-macro: it needs no second crate, no
/// `syn`/`quote` in every module's build (proc-macro crates are compiled for the host and add
/// seconds to a cold build), its expansion is plain to read (`cargo expand`), and the trait
/// gives defaults and type errors with ordinary messages; an attribute would only save
/// writing one line.
#[macro_export]
macro_rules! export {
    (@exports $module:ty, $constructor:expr $(, $snapshot:ident)?) => {
        const _: () = {
            fn __modhost_construct() -> $module {
                $constructor
            }

            fn __modhost_instance() -> $crate::Instance<$module> {
                $crate::Instance::new(__modhost_construct()).named(::core::env!("CARGO_PKG_NAME"))
            }

            // Checked on every target, so a module's type errors show up in `cargo test` too.
            const _: fn() = || {
                fn is_module<M: $crate::Module>() {}
                is_module::<$module>();
                let _ = __modhost_instance;
            };

            #[cfg(target_family = "wasm")]
            ::std::thread_local! {
                static __MODHOST_INSTANCE: $crate::__private::Slot<$crate::Instance<$module>> =
                    const { $crate::__private::Slot::new() };
            }

            #[cfg(target_family = "wasm")]
            fn __modhost_with<R>(body: impl FnOnce(&mut $crate::Instance<$module>) -> R) -> R {
                __MODHOST_INSTANCE.with(|slot| slot.with(__modhost_instance, body))
            }

            /// ABI 1 marker.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub extern "C" fn modhost_abi_version() -> i32 {
                $crate::ABI_VERSION
            }

            /// WASI reactor initialisation: the module's static constructors.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub extern "C" fn _initialize() {
                $crate::__private::initialize();
            }

            /// A buffer of `len` bytes owned by the caller until passed back.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub extern "C" fn alloc(len: usize) -> *mut u8 {
                $crate::__private::alloc(len)
            }

            /// Frees a buffer.
            ///
            /// # Safety
            /// `ptr` and `len` come from `alloc` or a `handle` response, freed once.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: usize) {
                // SAFETY: the caller (the host) keeps the contract above.
                unsafe { $crate::__private::dealloc(ptr, len) }
            }

            /// `Module::topics` subscribed, then `Module::init`.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub extern "C" fn init() {
                __modhost_with(|instance| instance.init());
            }

            /// `Module::handle` on an encoded `HttpRequest`.
            ///
            /// # Safety
            /// `ptr`/`len` is a buffer from `alloc` holding the request; ownership passes here.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn handle(ptr: *mut u8, len: usize) -> i64 {
                // SAFETY: the caller (the host) keeps the contract above.
                let request = unsafe { $crate::__private::take(ptr, len) };
                let response =
                    __modhost_with(|instance| $crate::__private::handle(instance, &request));
                drop(request);
                $crate::__private::pack(response)
            }

            /// `Module::on_message` on an encoded `Message`.
            ///
            /// # Safety
            /// `ptr`/`len` is a buffer from `alloc` holding the message; ownership passes here.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn on_message(ptr: *mut u8, len: usize) {
                // SAFETY: the caller (the host) keeps the contract above.
                let message = unsafe { $crate::__private::take(ptr, len) };
                __modhost_with(|instance| $crate::__private::on_message(instance, &message));
            }

            /// `Module::on_message` on each message of an encoded `MessageBatch`, in order.
            ///
            /// # Safety
            /// `ptr`/`len` is a buffer from `alloc` holding the batch; ownership passes here.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn on_messages(ptr: *mut u8, len: usize) {
                // SAFETY: the caller (the host) keeps the contract above.
                let mut batch = unsafe { $crate::__private::take(ptr, len) };
                __modhost_with(|instance| $crate::__private::on_messages(instance, &mut batch));
            }

            /// `Module::drain`.
            #[cfg(target_family = "wasm")]
            #[unsafe(no_mangle)]
            pub extern "C" fn drain() -> i32 {
                __modhost_with(|instance| $crate::__private::drain(instance))
            }

            $($crate::export!(@$snapshot);)?
        };
    };
    // The opt-in state handoff exports, expanded inside the block above.
    (@snapshot) => {
        /// `Module::snapshot`: the state, packed like a `handle` response.
        #[cfg(target_family = "wasm")]
        #[unsafe(no_mangle)]
        pub extern "C" fn snapshot() -> i64 {
            match __modhost_with(|instance| $crate::__private::snapshot(instance.module_mut())) {
                Ok(state) => $crate::__private::pack(state),
                Err(code) => code,
            }
        }

        /// `Module::restore` on the state the previous version saved.
        ///
        /// # Safety
        /// `ptr`/`len` is a buffer from `alloc` holding the state; ownership passes here.
        #[cfg(target_family = "wasm")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn restore(ptr: *mut u8, len: usize) -> i32 {
            // SAFETY: the caller (the host) keeps the contract above.
            let state = unsafe { $crate::__private::take(ptr, len) };
            __modhost_with(|instance| $crate::__private::restore(instance.module_mut(), &state))
        }
    };
    // The shared-nothing marker, expanded inside the block above.
    (@shared_nothing) => {
        /// Marker, never called: any number of instances may serve this module.
        #[cfg(target_family = "wasm")]
        #[unsafe(no_mangle)]
        pub extern "C" fn modhost_shared_nothing() {}
    };
    ($module:ty) => {
        $crate::export!(@exports $module, <$module as ::core::default::Default>::default());
    };
    ($module:ty, shared_nothing) => {
        $crate::export!(
            @exports $module,
            <$module as ::core::default::Default>::default(),
            shared_nothing
        );
    };
    ($module:ty, $constructor:expr, shared_nothing) => {
        $crate::export!(@exports $module, $constructor, shared_nothing);
    };
    ($module:ty, snapshot) => {
        $crate::export!(
            @exports $module,
            <$module as ::core::default::Default>::default(),
            snapshot
        );
    };
    ($module:ty, $constructor:expr, snapshot) => {
        $crate::export!(@exports $module, $constructor, snapshot);
    };
    ($module:ty, $constructor:expr) => {
        $crate::export!(@exports $module, $constructor);
    };
}

/// What the generated exports call. Not a public API: it may change with any release.
#[doc(hidden)]
pub mod __private {
    use std::alloc::Layout;
    use std::cell::RefCell;

    use binary::{Envelope, HttpRequest, Message, MessageBatchReader};

    use crate::{Instance, Level, Module, Request, Response};

    /// The module instance, created on first use.
    pub struct Slot<M>(RefCell<Option<M>>);

    impl<M> Slot<M> {
        /// An empty slot.
        pub const fn new() -> Slot<M> {
            Slot(RefCell::new(None))
        }

        /// Runs `body` on the instance, creating it with `make` first if needed.
        pub fn with<R>(&self, make: fn() -> M, body: impl FnOnce(&mut M) -> R) -> R {
            let Ok(mut slot) = self.0.try_borrow_mut() else {
                // Only possible if an export is called while another one runs, which the host
                // never does: a trap is the honest answer.
                panic!("modhost guest: an export was entered while another one was running");
            };
            body(slot.get_or_insert_with(make))
        }
    }

    impl<M> Default for Slot<M> {
        fn default() -> Slot<M> {
            Slot::new()
        }
    }

    impl<M> std::fmt::Debug for Slot<M> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Slot")
        }
    }

    /// The layout of every buffer crossing the boundary: `len` bytes (at least 1, so no
    /// zero-size allocation), byte-aligned. `Vec<u8>` with capacity `len.max(1)` has it too.
    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len.max(1), 1) {
            Ok(layout) => layout,
            Err(_) => panic!("modhost guest: cannot allocate {len} bytes"),
        }
    }

    /// The `alloc` export.
    pub fn alloc(len: usize) -> *mut u8 {
        let layout = layout(len);
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        ptr
    }

    /// The `dealloc` export.
    ///
    /// # Safety
    /// `ptr` came from [`alloc`]`(len)` (or is a `pack`ed response of `len` bytes) and is
    /// freed only once.
    pub unsafe fn dealloc(ptr: *mut u8, len: usize) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: per the contract, `ptr` was allocated with exactly this layout.
        unsafe { std::alloc::dealloc(ptr, layout(len)) }
    }

    /// Takes ownership of a buffer the host filled: `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` came from [`alloc`]`(len)`, holds `len` initialised bytes, and nothing else uses
    /// it any more.
    pub unsafe fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
        if ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: `alloc(len)` allocated `len.max(1)` bytes with alignment 1, which is the
        // layout of a `Vec<u8>` of that capacity; the first `len` bytes are initialised.
        unsafe { Vec::from_raw_parts(ptr, len, len.max(1)) }
    }

    /// Leaks `bytes` as a buffer that [`dealloc`]`(ptr, len)` frees, and returns
    /// `(ptr << 32) | len`. Pointers stay below 2 GiB (the memory limit), so the result is
    /// never negative.
    #[cfg(target_family = "wasm")]
    pub fn pack(bytes: Vec<u8>) -> i64 {
        let len = bytes.len();
        let ptr = if len == 0 {
            alloc(0)
        } else {
            // A boxed slice has capacity == len: the layout `dealloc(ptr, len)` uses.
            Box::into_raw(bytes.into_boxed_slice()).cast::<u8>()
        };
        ((ptr as usize as u64) << 32 | len as u64) as i64
    }

    /// `_initialize`: runs `__wasm_call_ctors` once, as wasi-libc's reactor `crt1` does.
    pub fn initialize() {
        #[cfg(target_family = "wasm")]
        {
            use std::sync::atomic::{AtomicBool, Ordering};

            unsafe extern "C" {
                // Synthesised by wasm-ld: calls the static constructors of every linked
                // object (Rust code has none of its own; C dependencies and wasi-libc may).
                fn __wasm_call_ctors();
            }
            static DONE: AtomicBool = AtomicBool::new(false);
            if !DONE.swap(true, Ordering::Relaxed) {
                // SAFETY: called once, before any other guest code, as the reactor ABI asks.
                unsafe { __wasm_call_ctors() }
            }
        }
    }

    /// `handle`: decode, [`Instance::handle`], encode. An undecodable request (a host bug) is
    /// answered with a `400` saying why.
    pub fn handle<M: Module>(instance: &mut Instance<M>, bytes: &[u8]) -> Vec<u8> {
        let response = match HttpRequest::decode(bytes) {
            Ok(http) => instance.handle(Request::from(http)),
            Err(error) => Response::bad_request()
                .with_text(format!("modhost guest: undecodable request: {error}")),
        };
        response.into_http().encode()
    }

    /// `on_message`: decode, [`Instance::on_message`]. An undecodable message is logged and
    /// dropped.
    pub fn on_message<M: Module>(instance: &mut Instance<M>, bytes: &[u8]) {
        match Message::decode(bytes) {
            Ok(message) => instance.on_message(message),
            Err(error) => crate::log(
                Level::Error,
                &format!("modhost guest: undecodable message dropped: {error}"),
            ),
        }
    }

    /// `on_messages`: each message of the `MessageBatch` in `bytes`, decoded one at a time,
    /// to [`Instance::on_message`], in order. Before a message's handler runs, its index goes
    /// into the batch's count field (the first 8 bytes, little-endian): if the handler traps
    /// or runs out of time, the host reads there which message failed, counts the ones before
    /// it as delivered and hands the ones after it to the next instance. An undecodable
    /// message (a host bug) is logged and ends the batch.
    pub fn on_messages<M: Module>(instance: &mut Instance<M>, bytes: &mut [u8]) {
        let undecodable = |error: &dyn std::fmt::Display| {
            crate::log(
                Level::Error,
                &format!("modhost guest: undecodable message batch, rest dropped: {error}"),
            );
        };
        let Some((progress, body)) = bytes.split_first_chunk_mut::<8>() else {
            return undecodable(&"shorter than its count");
        };
        let count = u64::from_le_bytes(*progress);
        let reader = match MessageBatchReader::new(count, body) {
            Ok(reader) => reader,
            Err(error) => return undecodable(&error),
        };
        for (index, message) in (0_u64..).zip(reader) {
            match message {
                Ok(message) => {
                    *progress = index.to_le_bytes();
                    instance.on_message(message);
                }
                Err(error) => return undecodable(&error),
            }
        }
    }

    /// `drain`: [`Instance::drain`] clamped into the export's `i32`.
    pub fn drain<M: Module>(instance: &mut Instance<M>) -> i32 {
        i32::try_from(instance.drain()).unwrap_or(i32::MAX)
    }

    /// `snapshot`: [`Module::snapshot`]; an `Err` is logged and becomes `-1`.
    pub fn snapshot<M: Module>(module: &mut M) -> Result<Vec<u8>, i64> {
        module.snapshot().map_err(|error| {
            crate::log(Level::Error, &format!("modhost guest: {error}"));
            -1
        })
    }

    /// `restore`: [`Module::restore`]; `0`, or `1` with the error logged.
    pub fn restore<M: Module>(module: &mut M, state: &[u8]) -> i32 {
        match module.restore(state) {
            Ok(()) => 0,
            Err(error) => {
                crate::log(Level::Error, &format!("modhost guest: {error}"));
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use binary::{Envelope, HttpRequest, HttpResponse, Message};

    use super::__private;
    use crate::{Error, Instance, IntoResponse, Level, Module, Request, testing};

    #[derive(Default)]
    struct Counter {
        inits: u32,
        seen: Vec<String>,
        pending: u32,
    }

    impl Module for Counter {
        fn init(&mut self) -> Result<(), Error> {
            self.inits += 1;
            crate::subscribe("bad.*.topic")
        }

        fn handle(&mut self, request: Request) -> impl IntoResponse {
            format!("{} {} {}", request.method(), request.path(), self.inits)
        }

        fn on_message(&mut self, message: Message) -> Result<(), Error> {
            self.seen.push(message.topic.clone());
            match message.topic.as_str() {
                "fail" => crate::publish("bad.*", b""),
                _ => Ok(0),
            }
            .map(drop)
        }

        fn drain(&mut self) -> u32 {
            self.pending
        }
    }

    // The macro must expand on the host target too (it only type-checks there).
    crate::export!(Counter);
    crate::export!(
        Counter,
        Counter {
            inits: 10,
            ..Counter::default()
        }
    );
    crate::export!(Counter, snapshot);
    crate::export!(Counter, Counter::default(), snapshot);

    #[derive(Default)]
    struct Stateful {
        count: u32,
    }

    impl Module for Stateful {
        fn snapshot(&mut self) -> Result<Vec<u8>, crate::Error> {
            Ok(self.count.to_le_bytes().to_vec())
        }

        fn restore(&mut self, state: &[u8]) -> Result<(), crate::Error> {
            let bytes: [u8; 4] = state
                .try_into()
                .map_err(|_| crate::Error::state("restore", "expected 4 bytes"))?;
            self.count = u32::from_le_bytes(bytes);
            Ok(())
        }
    }

    #[test]
    fn snapshot_and_restore_call_the_module_and_log_failures() {
        let mut old = Stateful { count: 41 };
        let state = __private::snapshot(&mut old).unwrap();
        let mut new = Stateful::default();
        assert_eq!(__private::restore(&mut new, &state), 0);
        assert_eq!(new.count, 41);
        assert_eq!(__private::restore(&mut new, b"xy"), 1);
        assert_eq!(new.count, 41, "a refused restore changes nothing");
        let logs = testing::take_logs();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert_eq!(logs[0].1, "modhost guest: restore: expected 4 bytes");
        // The defaults: nothing saved, anything accepted.
        let mut plain = Counter::default();
        assert_eq!(__private::snapshot(&mut plain), Ok(Vec::new()));
        assert_eq!(__private::restore(&mut plain, b"whatever"), 0);
    }

    #[test]
    fn handle_decodes_dispatches_and_encodes() {
        let mut module = Instance::new(Counter::default());
        let request = HttpRequest::new("GET", "/7").encode();
        let response = HttpResponse::decode(&__private::handle(&mut module, &request)).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"GET /7 0");
        let garbage = __private::handle(&mut module, b"\x01");
        let response = HttpResponse::decode(&garbage).unwrap();
        assert_eq!(response.status, 400);
        assert!(String::from_utf8_lossy(&response.body).contains("undecodable request"));
    }

    #[test]
    fn init_and_on_message_log_the_errors_they_return() {
        let mut module = Instance::new(Counter::default()).named("counter");
        module.init();
        module.on_message(Message::event("fail", vec![]));
        let logs = testing::take_logs();
        assert_eq!(
            logs,
            [
                (
                    Level::Error,
                    "module \"counter\": export \"init\" failed: subscribe \"bad.*.topic\": \
                     refused as invalid input (code -1)"
                        .to_owned()
                ),
                (
                    Level::Error,
                    "module \"counter\": export \"on_message\" on topic \"fail\" failed: \
                     publish \"bad.*\": refused as invalid input (code -1)"
                        .to_owned()
                )
            ]
        );
        let mut unnamed = Instance::new(Counter::default());
        unnamed.init();
        assert!(
            testing::take_logs()[0]
                .1
                .starts_with("export \"init\" failed: ")
        );
    }

    #[test]
    fn on_message_decodes_or_logs() {
        let mut module = Instance::new(Counter::default());
        __private::on_message(&mut module, &Message::event("a.b", vec![1]).encode());
        __private::on_message(&mut module, b"junk");
        assert_eq!(module.module().seen, ["a.b"]);
        let logs = testing::take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, Level::Error);
        assert!(
            logs[0].1.contains("undecodable message dropped"),
            "{logs:?}"
        );
    }

    #[test]
    fn on_messages_hands_each_message_over_in_order_and_marks_progress() {
        let mut module = Instance::new(Counter::default());
        let mut batch = binary::MessageBatch::new();
        for topic in ["a.1", "a.2", "a.3"] {
            batch.push_event(topic, b"x");
        }
        let mut bytes = batch.as_bytes().to_vec();
        __private::on_messages(&mut module, &mut bytes);
        assert_eq!(module.module().seen, ["a.1", "a.2", "a.3"]);
        assert_eq!(
            bytes[..8],
            2_u64.to_le_bytes(),
            "the count field holds the index of the last message handled"
        );
        assert!(testing::take_logs().is_empty());

        // A broken batch: what decodes is handled, the rest is logged and dropped.
        let mut truncated = batch.as_bytes()[..batch.as_bytes().len() - 1].to_vec();
        __private::on_messages(&mut module, &mut truncated);
        assert_eq!(module.module().seen.len(), 5);
        __private::on_messages(&mut module, &mut [1, 2]);
        let logs = testing::take_logs();
        assert_eq!(logs.len(), 2, "{logs:?}");
        assert!(
            logs.iter().all(|(level, text)| *level == Level::Error
                && text.contains("undecodable message batch"))
        );
    }

    #[test]
    fn drain_is_clamped() {
        let mut module = Instance::new(Counter {
            pending: u32::MAX,
            ..Counter::default()
        });
        assert_eq!(__private::drain(&mut module), i32::MAX);
        module.module_mut().pending = 250;
        assert_eq!(__private::drain(&mut module), 250);
    }

    #[test]
    fn the_slot_creates_the_instance_once_and_keeps_it() {
        let slot = __private::Slot::<Counter>::new();
        fn make() -> Counter {
            Counter {
                inits: 100,
                ..Counter::default()
            }
        }
        slot.with(make, |module| module.inits += 1);
        slot.with(make, |module| module.inits += 1);
        assert_eq!(slot.with(make, |module| module.inits), 102);
    }

    #[test]
    #[should_panic(expected = "entered while another one was running")]
    fn reentering_the_slot_traps() {
        let slot = __private::Slot::<Counter>::new();
        slot.with(Counter::default, |_| {
            slot.with(Counter::default, |_| {});
        });
    }

    #[test]
    fn buffers_round_trip_through_alloc_take_and_dealloc() {
        for len in [0usize, 1, 17, 4096] {
            let ptr = __private::alloc(len);
            assert!(!ptr.is_null());
            // SAFETY: `ptr` has room for `len.max(1)` bytes.
            unsafe { std::ptr::write_bytes(ptr, 0xab, len) };
            // SAFETY: from `alloc(len)`, `len` bytes initialised, not used again.
            let owned = unsafe { __private::take(ptr, len) };
            assert_eq!(owned, vec![0xab; len]);
        }
        let ptr = __private::alloc(8);
        // SAFETY: from `alloc(8)`, freed once.
        unsafe { __private::dealloc(ptr, 8) };
        // SAFETY: null is ignored.
        unsafe { __private::dealloc(std::ptr::null_mut(), 8) };
    }
}
