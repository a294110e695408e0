//! The host imports (namespace `env`): reading and writing guest memory with every pointer
//! and length checked, and turning guest mistakes into errors that name the module and the
//! import. One table, [`IMPORTS`], defines them and gives the types checked at load; return
//! codes are `binary::abi::Code`, topic rules `binary::topic`. See `docs/ABI.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::abi::Code;
use binary::topic::MAX_TOPIC_BYTES;
use binary::{
    DecodeOptions, Envelope, HttpRequest, KvRequest, KvResponse, Message, MessageBatch,
    OutboundErrorKind, OutboundResponse,
};
use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, FunctionType, HostFunction, Imports, Memory,
    RuntimeError, Store, TypedFunction, WasmTypeList, WithEnv,
};

use crate::error::{CallErrorKind, ImportFault};
use crate::logs::{LogLevel, LogSource};
use crate::memory;
use crate::shared::{Shared, SubscribeRefusal};

/// Per-instance data the imports see.
pub(crate) struct GuestEnv {
    pub shared: Arc<Shared>,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunction<i32, i32>>,
    /// The running call's deadline; bounds how long `request` and `http_send` may wait.
    pub deadline: Option<Instant>,
    /// `http_send` calls made by the running call (reset at each call).
    pub outbound_calls: u32,
}

/// Fails the running call with `error`: it travels inside wasmer's `RuntimeError` and the
/// caller gets it back by downcasting (`instance.rs`, `guarded`), not through a side slot.
fn fail(kind: CallErrorKind) -> RuntimeError {
    RuntimeError::user(Box::new(ImportFault(kind)))
}

/// Copies `len` bytes at `ptr` out of guest memory, or fails the call with a bad pointer.
fn read(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, RuntimeError> {
    let (env, store) = ctx.data_and_store_mut();
    let outcome = match &env.memory {
        None => Err("the module exports no memory".to_owned()),
        Some(memory) => memory::read(&memory.view(&store), what, ptr as u32, len as u32),
    };
    outcome.map_err(|detail| {
        fail(CallErrorKind::BadPointer {
            place: format!("import \"{import}\""),
            detail,
        })
    })
}

/// Reads a topic: length-checked before reading, UTF-8 required.
fn read_topic(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    ptr: i32,
    len: i32,
) -> Result<Option<String>, RuntimeError> {
    if len as u32 as usize > MAX_TOPIC_BYTES {
        refuse(
            ctx,
            import,
            &format!(
                "topic of {} bytes is longer than {MAX_TOPIC_BYTES}",
                len as u32
            ),
        );
        return Ok(None);
    }
    let bytes = read(ctx, import, "topic", ptr, len)?;
    match String::from_utf8(bytes) {
        Ok(topic) => Ok(Some(topic)),
        Err(_) => {
            refuse(ctx, import, "topic is not UTF-8");
            Ok(None)
        }
    }
}

/// Reads a payload or message, refusing (not failing) one over the message limit.
fn read_sized(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<Option<Vec<u8>>, RuntimeError> {
    let limit = ctx.data().shared.limits.max_message_bytes;
    if len as u32 as usize > limit {
        refuse(
            ctx,
            import,
            &format!(
                "{what} of {} bytes exceeds the limit of {limit} bytes",
                len as u32
            ),
        );
        return Ok(None);
    }
    read(ctx, import, what, ptr, len).map(Some)
}

/// Fails the running call when its deadline has already fired: an import-heavy guest stops
/// here, at its next import, rather than by a signal that could land inside wasmer's
/// host-call wrapper (`watchdog.rs`, `GRACE`). The caller classifies the failure as the
/// deadline.
fn on_time(import: &str) -> Result<(), RuntimeError> {
    if crate::watchdog::deadline_fired() {
        return Err(RuntimeError::new(format!(
            "import \"{import}\" called after the call's deadline"
        )));
    }
    Ok(())
}

/// Counts and logs a refused import call; the guest sees a return code (or nothing, for the
/// original ABI's void imports).
fn refuse(ctx: &FunctionEnvMut<'_, GuestEnv>, import: &str, reason: &str) {
    let shared = &ctx.data().shared;
    Shared::bump(&shared.counters.import_errors);
    tracing::warn!(module = %shared.name, version = %shared.version, "import \"{import}\" refused: {reason}");
}

fn publish(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    topic_ptr: i32,
    topic_len: i32,
    payload_ptr: i32,
    payload_len: i32,
) -> Result<(), RuntimeError> {
    on_time("publish")?;
    let Some(topic) = read_topic(&mut ctx, "publish", topic_ptr, topic_len)? else {
        return Ok(());
    };
    let Some(payload) = read_sized(&mut ctx, "publish", "payload", payload_ptr, payload_len)?
    else {
        return Ok(());
    };
    publish_checked(&ctx, "publish", Message::event(topic, payload));
    Ok(())
}

/// Publishes (or routes a reply); returns the number of mailboxes reached or a code.
fn publish_checked(ctx: &FunctionEnvMut<'_, GuestEnv>, import: &str, message: Message) -> i32 {
    let shared = &ctx.data().shared;
    let is_reply = message.kind.is_reply();
    let result = if is_reply {
        shared.bus.reply(message).map(i32::from)
    } else {
        shared
            .bus
            .publish(message)
            .map(|report| report.delivered.min(i32::MAX as usize) as i32)
    };
    match result {
        Ok(delivered) => {
            Shared::bump(&shared.counters.published);
            delivered
        }
        Err(bus::BusError::Closed) => Code::Closed.get(),
        Err(error) => {
            refuse(ctx, import, &error.to_string());
            Code::Invalid.get()
        }
    }
}

fn publish_message(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    ptr: i32,
    len: i32,
) -> Result<i32, RuntimeError> {
    on_time("publish_message")?;
    let Some(bytes) = read_sized(&mut ctx, "publish_message", "message", ptr, len)? else {
        return Ok(Code::Invalid.get());
    };
    let message = match Message::decode_with(
        &bytes,
        &DecodeOptions {
            max_size: bytes.len(),
        },
    ) {
        Ok(message) => message,
        Err(error) => {
            refuse(&ctx, "publish_message", &error.to_string());
            return Ok(Code::Invalid.get());
        }
    };
    Ok(publish_checked(&ctx, "publish_message", message))
}

/// `publish_batch(ptr, len, timeout_ms) -> i32`: publishes the messages of an encoded
/// `MessageBatch` in order, each only once every matching mailbox has room, waiting for room
/// up to `timeout_ms` in all and never past the running call's deadline
/// (`bus::Bus::publish_waiting`). Returns how many messages, from the first, were published
/// (the rest were offered to nobody), or a code: `-1` for a batch that does not decode, is
/// over `max_message_bytes` or holds an invalid topic (nothing is published), `-3` for a
/// closed bus before the first message.
fn publish_batch(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    ptr: i32,
    len: i32,
    timeout_ms: i32,
) -> Result<i32, RuntimeError> {
    const IMPORT: &str = "publish_batch";
    on_time(IMPORT)?;
    let Some(bytes) = read_sized(&mut ctx, IMPORT, "batch", ptr, len)? else {
        return Ok(Code::Invalid.get());
    };
    let messages = match MessageBatch::decode_with(
        &bytes,
        &DecodeOptions {
            max_size: bytes.len(),
        },
    ) {
        Ok(messages) => messages,
        Err(error) => {
            refuse(&ctx, IMPORT, &error.to_string());
            return Ok(Code::Invalid.get());
        }
    };
    drop(bytes);
    // All or nothing on validity: a bad topic anywhere refuses the whole batch.
    if let Some(error) = messages
        .iter()
        .filter(|message| !message.kind.is_reply())
        .find_map(|message| binary::topic::validate_topic(&message.topic).err())
    {
        refuse(&ctx, IMPORT, &error.to_string());
        return Ok(Code::Invalid.get());
    }
    let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    let mut until = Instant::now() + timeout;
    if let Some(deadline) = ctx.data().deadline {
        until = until.min(deadline);
    }
    let shared = &ctx.data().shared;
    blocking(|| publish_all(&ctx, shared, messages, until))
}

/// Runs `wait`, which may block until a mailbox has room. A call running inline on a tokio
/// worker thread (`worker::Inline`) first hands that thread's other tasks to another thread
/// (`block_in_place`), so the wait never stalls other connections; on a module's own worker
/// thread, or a current-thread runtime, it just runs.
fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// Publishes `messages` in order until one finds no room by `until`; returns how many went
/// out, or a code.
fn publish_all(
    ctx: &FunctionEnvMut<'_, GuestEnv>,
    shared: &Shared,
    messages: Vec<Message>,
    until: Instant,
) -> Result<i32, RuntimeError> {
    const IMPORT: &str = "publish_batch";
    let mut published = 0_i32;
    for message in messages {
        let outcome = if message.kind.is_reply() {
            shared.bus.reply(message).map(drop)
        } else {
            shared.bus.publish_waiting(message, until).map(drop)
        };
        match outcome {
            Ok(()) => {
                Shared::bump(&shared.counters.published);
                published += 1;
            }
            // Out of time: the rest stay with the guest.
            Err(bus::BusError::Full { .. }) => break,
            Err(bus::BusError::Closed) if published == 0 => return Ok(Code::Closed.get()),
            Err(bus::BusError::Closed) => break,
            Err(error) => {
                refuse(ctx, IMPORT, &error.to_string());
                break;
            }
        }
    }
    Ok(published)
}

fn subscribe_code(ctx: &FunctionEnvMut<'_, GuestEnv>, import: &str, topic: &str) -> i32 {
    match ctx.data().shared.subscribe(topic) {
        Ok(()) => 0,
        Err(SubscribeRefusal::TooMany(limit)) => {
            refuse(
                ctx,
                import,
                &format!("subscription to {topic:?}: the module already holds {limit} (its limit)"),
            );
            Code::Limit.get()
        }
        Err(SubscribeRefusal::Bus(bus::BusError::Closed)) => Code::Closed.get(),
        Err(SubscribeRefusal::Bus(error)) => {
            refuse(ctx, import, &error.to_string());
            Code::Invalid.get()
        }
    }
}

fn subscribe(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    topic_ptr: i32,
    topic_len: i32,
    _handler: i32,
) -> Result<(), RuntimeError> {
    on_time("subscribe")?;
    if let Some(topic) = read_topic(&mut ctx, "subscribe", topic_ptr, topic_len)? {
        subscribe_code(&ctx, "subscribe", &topic);
    }
    Ok(())
}

fn subscribe_topic(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    topic_ptr: i32,
    topic_len: i32,
    _handler: i32,
) -> Result<i32, RuntimeError> {
    on_time("subscribe_topic")?;
    Ok(
        match read_topic(&mut ctx, "subscribe_topic", topic_ptr, topic_len)? {
            Some(topic) => subscribe_code(&ctx, "subscribe_topic", &topic),
            None => Code::Invalid.get(),
        },
    )
}

fn unsubscribe(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    topic_ptr: i32,
    topic_len: i32,
) -> Result<i32, RuntimeError> {
    on_time("unsubscribe")?;
    Ok(
        match read_topic(&mut ctx, "unsubscribe", topic_ptr, topic_len)? {
            Some(topic) => match binary::topic::validate_pattern(&topic) {
                Ok(()) => i32::from(ctx.data().shared.unsubscribe(&topic)),
                Err(error) => {
                    refuse(&ctx, "unsubscribe", &error.to_string());
                    Code::Invalid.get()
                }
            },
            None => Code::Invalid.get(),
        },
    )
}

fn ws_broadcast(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    topic_ptr: i32,
    topic_len: i32,
    payload_ptr: i32,
    payload_len: i32,
) -> Result<(), RuntimeError> {
    on_time("ws_broadcast")?;
    let Some(topic) = read_topic(&mut ctx, "ws_broadcast", topic_ptr, topic_len)? else {
        return Ok(());
    };
    let Some(payload) = read_sized(
        &mut ctx,
        "ws_broadcast",
        "payload",
        payload_ptr,
        payload_len,
    )?
    else {
        return Ok(());
    };
    let shared = &ctx.data().shared;
    Shared::bump(&shared.counters.broadcasts);
    shared.broadcast.broadcast(&shared.name, &topic, &payload);
    Ok(())
}

fn log_line(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    level: LogLevel,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    on_time(import)?;
    // Read no more than the line limit: a log call can't make the host copy a huge buffer.
    let limit = ctx.data().shared.limits.max_log_line_bytes;
    let shown = (len as u32 as usize).min(limit) as i32;
    let bytes = read(ctx, import, "message", ptr, shown)?;
    // The rest must still be inside memory: a bad length is a bad pointer even if unread.
    if shown != len {
        let (env, store) = ctx.data_and_store_mut();
        let checked = match &env.memory {
            None => Err("the module exports no memory".to_owned()),
            Some(memory) => memory::check(&memory.view(&store), "message", ptr as u32, len as u32),
        };
        if let Err(detail) = checked {
            return Err(fail(CallErrorKind::BadPointer {
                place: format!("import \"{import}\""),
                detail,
            }));
        }
    }
    ctx.data().shared.log.line(level, LogSource::Import, &bytes);
    Ok(())
}

fn log(mut ctx: FunctionEnvMut<'_, GuestEnv>, ptr: i32, len: i32) -> Result<(), RuntimeError> {
    log_line(&mut ctx, "log", LogLevel::Info, ptr, len)
}

fn log_at(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    level: i32,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    log_line(&mut ctx, "log_at", LogLevel::from_abi(level), ptr, len)
}

fn request(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    ptr: i32,
    len: i32,
    timeout_ms: i32,
) -> Result<i64, RuntimeError> {
    on_time("request")?;
    let Some(bytes) = read_sized(&mut ctx, "request", "message", ptr, len)? else {
        return Ok(Code::Invalid.get_i64());
    };
    let message = match Message::decode_with(
        &bytes,
        &DecodeOptions {
            max_size: bytes.len(),
        },
    ) {
        Ok(message) => message,
        Err(error) => {
            refuse(&ctx, "request", &error.to_string());
            return Ok(Code::Invalid.get_i64());
        }
    };
    // Wait no longer than asked, and never past the running call's deadline.
    let mut timeout = Duration::from_millis(u64::from(timeout_ms.max(0) as u32));
    if let Some(deadline) = ctx.data().deadline {
        timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
    }
    let reply = match ctx.data().shared.bus.request(message, timeout) {
        Ok(reply) => reply,
        Err(bus::RequestError::Timeout { .. }) => return Ok(Code::Timeout.get_i64()),
        Err(bus::RequestError::NoResponders { .. }) => return Ok(Code::NoResponders.get_i64()),
        Err(bus::RequestError::Closed { .. }) => return Ok(Code::Closed.get_i64()),
        Err(bus::RequestError::MailboxesFull { .. }) => return Ok(Code::Busy.get_i64()),
        Err(bus::RequestError::Remote { topic, id, reason }) => {
            // An Error reply reaches the guest as the Error message it was.
            Message::new(topic, binary::MessageKind::Error, id, reason.into_bytes())
        }
        Err(error) => {
            refuse(&ctx, "request", &error.to_string());
            return Ok(Code::Invalid.get_i64());
        }
    };
    let encoded = reply.encode();
    let limit = ctx.data().shared.limits.max_message_bytes;
    if encoded.len() > limit {
        refuse(
            &ctx,
            "request",
            &format!(
                "reply of {} bytes exceeds the limit of {limit} bytes",
                encoded.len()
            ),
        );
        return Ok(Code::Invalid.get_i64());
    }
    give(&mut ctx, "request", &encoded)
}

/// Copies `bytes` into a buffer from the guest's allocator and returns `(ptr << 32) | len`
/// (the guest owns the buffer), or `INVALID` when the module exports no allocator.
fn give(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    bytes: &[u8],
) -> Result<i64, RuntimeError> {
    let Some(alloc) = ctx.data().alloc.clone() else {
        refuse(
            ctx,
            import,
            "the module exports no allocator to receive the answer",
        );
        return Ok(Code::Invalid.get_i64());
    };
    let guest_ptr = alloc.call(&mut ctx.as_store_mut(), bytes.len() as i32)?;
    write(ctx, import, guest_ptr, bytes)?;
    Ok((i64::from(guest_ptr as u32) << 32) | bytes.len() as i64)
}

/// `kv(req_ptr, req_len) -> i64`: one key-value operation. The answer is an encoded
/// `KvResponse` (an `Error` variant for refusals the store makes); a request that does not
/// decode or is over the request limit is `INVALID`.
fn kv(mut ctx: FunctionEnvMut<'_, GuestEnv>, ptr: i32, len: i32) -> Result<i64, RuntimeError> {
    on_time("kv")?;
    let limit = ctx.data().shared.limits.max_request_bytes;
    if len as u32 as usize > limit {
        refuse(
            &ctx,
            "kv",
            &format!(
                "request of {} bytes exceeds the limit of {limit} bytes",
                len as u32
            ),
        );
        return Ok(Code::Invalid.get_i64());
    }
    let bytes = read(&mut ctx, "kv", "request", ptr, len)?;
    let request = match KvRequest::decode_with(
        &bytes,
        &DecodeOptions {
            max_size: bytes.len(),
        },
    ) {
        Ok(request) => request,
        Err(error) => {
            refuse(&ctx, "kv", &error.to_string());
            return Ok(Code::Invalid.get_i64());
        }
    };
    let shared = ctx.data().shared.clone();
    Shared::bump(&shared.counters.kv_operations);
    let response = shared.kv.serve(request);
    if let KvResponse::Error { message, .. } = &response {
        Shared::bump(&shared.counters.kv_errors);
        tracing::debug!(module = %shared.name, version = %shared.version, "kv: {message}");
    }
    give(&mut ctx, "kv", &response.encode())
}

/// How long an outbound request may wait when the running call has no deadline (it always
/// has one in practice: every export runs under one).
const OUTBOUND_FALLBACK_WAIT: Duration = Duration::from_secs(30);

/// `http_send(req_ptr, req_len) -> i64`: one outbound HTTP request. The request is an
/// encoded `HttpRequest` whose `path` is an absolute URL; the answer is an encoded
/// `OutboundResponse` (the upstream's response, or an error kind and a message). A request
/// that does not decode or is over the request limit is `INVALID`.
fn http_send(
    mut ctx: FunctionEnvMut<'_, GuestEnv>,
    ptr: i32,
    len: i32,
) -> Result<i64, RuntimeError> {
    on_time("http_send")?;
    let limit = ctx.data().shared.limits.max_request_bytes;
    if len as u32 as usize > limit {
        refuse(
            &ctx,
            "http_send",
            &format!(
                "request of {} bytes exceeds the limit of {limit} bytes",
                len as u32
            ),
        );
        return Ok(Code::Invalid.get_i64());
    }
    let bytes = read(&mut ctx, "http_send", "request", ptr, len)?;
    let request = match HttpRequest::decode_with(
        &bytes,
        &DecodeOptions {
            max_size: bytes.len(),
        },
    ) {
        Ok(request) => request,
        Err(error) => {
            refuse(&ctx, "http_send", &error.to_string());
            return Ok(Code::Invalid.get_i64());
        }
    };
    let shared = ctx.data().shared.clone();
    Shared::bump(&shared.counters.outbound_requests);
    let calls = {
        let data = ctx.data_mut();
        data.outbound_calls = data.outbound_calls.saturating_add(1);
        data.outbound_calls
    };
    let cap = shared.limits.max_outbound_per_call;
    let response = match &shared.outbound {
        _ if calls > cap => OutboundResponse::error(
            OutboundErrorKind::Limit,
            format!(
                "module \"{}\": more than {cap} outbound requests in one call",
                shared.name
            ),
        ),
        None => OutboundResponse::error(
            OutboundErrorKind::Unavailable,
            format!(
                "module \"{}\": this host offers no outbound HTTP",
                shared.name
            ),
        ),
        Some(outbound) => {
            let deadline = ctx
                .data()
                .deadline
                .unwrap_or_else(|| Instant::now() + OUTBOUND_FALLBACK_WAIT);
            outbound.send(request, deadline)
        }
    };
    if let OutboundResponse::Error { message, .. } = &response {
        Shared::bump(&shared.counters.outbound_errors);
        tracing::debug!(module = %shared.name, version = %shared.version, "http_send: {message}");
    }
    give(&mut ctx, "http_send", &response.encode())
}

fn write(
    ctx: &mut FunctionEnvMut<'_, GuestEnv>,
    import: &str,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), RuntimeError> {
    let (env, store) = ctx.data_and_store_mut();
    let outcome = match &env.memory {
        None => Err("the module exports no memory".to_owned()),
        Some(memory) => memory::write(&memory.view(&store), "result", ptr as u32, bytes),
    };
    outcome.map_err(|detail| {
        fail(CallErrorKind::BadPointer {
            place: format!("import \"{import}\" (allocator result)"),
            detail,
        })
    })
}

/// One host import in namespace `env`: its name, its type (checked at load, before anything
/// runs: `abi::check`) and how to define it. Both come from the one Rust function, so the
/// type checked is the type defined.
pub(crate) struct Import {
    pub name: &'static str,
    pub ty: fn() -> FunctionType,
    pub define: fn(&mut Store, &FunctionEnv<GuestEnv>) -> Function,
}

/// The wasm type of a host function, from its Rust signature.
fn signature<Args, Rets, F>(_function: &F) -> FunctionType
where
    Args: WasmTypeList,
    Rets: WasmTypeList,
    F: HostFunction<GuestEnv, Args, Rets, WithEnv>,
{
    FunctionType::new(Args::wasm_types(), Rets::wasm_types())
}

macro_rules! import {
    ($function:ident) => {{
        fn ty() -> FunctionType {
            signature(&$function)
        }
        fn define(store: &mut Store, env: &FunctionEnv<GuestEnv>) -> Function {
            Function::new_typed_with_env(store, env, $function)
        }
        Import {
            name: stringify!($function),
            ty,
            define,
        }
    }};
}

/// Every host import. The first four are the original design's; the rest are ABI 1 additions
/// (available to every module). `docs/ABI.md` lists them.
pub(crate) const IMPORTS: &[Import] = &[
    import!(publish),
    import!(subscribe),
    import!(ws_broadcast),
    import!(log),
    import!(unsubscribe),
    import!(publish_message),
    import!(subscribe_topic),
    import!(request),
    import!(log_at),
    import!(kv),
    import!(http_send),
    import!(publish_batch),
];

/// Defines every `env` import in `imports`.
pub(crate) fn define(store: &mut Store, env: &FunctionEnv<GuestEnv>, imports: &mut Imports) {
    for import in IMPORTS {
        imports.define("env", import.name, (import.define)(store, env));
    }
}
