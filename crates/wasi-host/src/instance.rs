//! One live instance: its `Store`, the wasmer instance, the WASI environment and the typed
//! exports, and the calls into it, each under a deadline, with failures classified.
//!
//! A `Store` is not `Send`: a [`Live`] is created on its worker thread and lives in that
//! worker's [`crate::worker::Slot`], whose mutex makes it usable from one thread at a time
//! (the worker, or a caller running a request inline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::{Envelope, HttpRequest, HttpResponse, Message};
use wasmer::{
    FunctionEnv, Imports, Instance, InstantiationError, Interrupter, RuntimeError, Store,
    TypedFunction,
};
use wasmer_wasix::{WasiEnv, WasiError, WasiFunctionEnv};

use crate::abi::{
    ABI_VERSION_EXPORT, AbiVersion, ON_MESSAGES_EXPORT, RESTORE_EXPORT, SNAPSHOT_EXPORT, Shape,
};
use crate::config::Grants;
use crate::error::{CallError, CallErrorKind, Frame, ImportFault, LoadError};
use crate::imports::{self, GuestEnv};
use crate::logs::{LogFile, LogSource};
use crate::memory;
use crate::shared::Shared;
use crate::watchdog::Watchdog;

/// Everything needed to create an instance of one module version; shared by its workers.
pub(crate) struct Blueprint {
    pub module: wasmer::Module,
    /// A clone of the host's engine carrying this module's memory limit.
    pub engine: wasmer::Engine,
    pub shape: Shape,
    pub shared: Arc<Shared>,
    pub runtime: Arc<dyn wasmer_wasix::Runtime + Send + Sync>,
    pub tokio: tokio::runtime::Handle,
    pub watchdog: Watchdog,
    pub grants: Grants,
    /// The directory grants, opened at load.
    pub dirs: Vec<Arc<crate::dirs::GrantedDir>>,
    /// Whether requests may skip the hop to a worker thread.
    pub inline: crate::worker::Inline,
}

impl Blueprint {
    fn name(&self) -> &str {
        &self.shared.name
    }
}

/// How an `on_messages` call failed, and where in the batch.
pub(crate) struct BatchFailure {
    pub error: CallError,
    /// The index of the message the guest was handling, from the batch's count field; the
    /// messages before it were handled.
    pub handling: Option<usize>,
}

/// How a guarded call failed before classification.
enum Failure {
    Runtime(RuntimeError),
    Call(CallError),
}

impl From<RuntimeError> for Failure {
    fn from(error: RuntimeError) -> Failure {
        Failure::Runtime(error)
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Failure {
        Failure::Call(error)
    }
}

pub(crate) struct Live {
    store: Store,
    env: FunctionEnv<GuestEnv>,
    _wasi: Option<WasiFunctionEnv>,
    _instance: Instance,
    interrupter: Interrupter,
    memory: wasmer::Memory,
    init: Option<TypedFunction<(), ()>>,
    initialize: Option<TypedFunction<(), ()>>,
    handle_v0: Option<TypedFunction<(i32, i32), i32>>,
    handle_v1: Option<TypedFunction<(i32, i32), i64>>,
    on_message: Option<TypedFunction<(i32, i32), ()>>,
    on_messages: Option<TypedFunction<(i32, i32), ()>>,
    drain: Option<TypedFunction<(), i32>>,
    snapshot: Option<TypedFunction<(), i64>>,
    restore: Option<TypedFunction<(i32, i32), i32>>,
    alloc: Option<TypedFunction<i32, i32>>,
    dealloc: Option<TypedFunction<(i32, i32), ()>>,
}

fn typed<Args, Rets>(
    instance: &Instance,
    store: &Store,
    name: &str,
    present: bool,
) -> Option<TypedFunction<Args, Rets>>
where
    Args: wasmer::WasmTypeList,
    Rets: wasmer::WasmTypeList,
{
    // The types were checked in `abi::check`; a failure here can only mean "absent".
    present
        .then(|| instance.exports.get_typed_function(store, name).ok())
        .flatten()
}

impl Live {
    /// Instantiates, runs `_initialize`, checks the ABI version and runs `init`, all under the
    /// init deadline.
    pub(crate) fn create(blueprint: &Blueprint) -> Result<Live, LoadError> {
        let name = blueprint.name().to_owned();
        let host_error = |reason: String| LoadError::Host {
            module: name.clone(),
            reason,
        };
        let mut store = Store::new(blueprint.engine.clone());
        let interrupter = store.interrupter();
        let env = FunctionEnv::new(
            &mut store,
            GuestEnv {
                shared: blueprint.shared.clone(),
                memory: None,
                alloc: None,
                deadline: None,
                outbound_calls: 0,
            },
        );

        let (mut imports, mut wasi) = if blueprint.shape.uses_wasi {
            let _runtime = blueprint.tokio.enter();
            let log = &blueprint.shared.log;
            let mut builder = WasiEnv::builder(name.clone())
                .runtime(blueprint.runtime.clone())
                .stdin(Box::new(wasmer_wasix::virtual_fs::NullFile::default()))
                .stdout(Box::new(LogFile::new(log.clone(), LogSource::Stdout)))
                .stderr(Box::new(LogFile::new(log.clone(), LogSource::Stderr)));
            for (key, value) in &blueprint.grants.env {
                builder.add_env(key, value);
            }
            builder.add_args(blueprint.grants.args.iter());
            if !blueprint.dirs.is_empty() {
                let grant_error = |reason: String| LoadError::Grant {
                    module: name.clone(),
                    reason,
                };
                builder.set_mount_fs(crate::dirs::mount(&blueprint.dirs).map_err(grant_error)?);
                for dir in &blueprint.dirs {
                    let writable = !dir.read_only();
                    builder
                        .add_preopen_build(|preopen| {
                            preopen
                                .directory(dir.guest())
                                .alias(&dir.alias())
                                .read(true)
                                .write(writable)
                                .create(writable)
                        })
                        .map_err(|error| {
                            grant_error(format!("{}: {error}", dir.guest().display()))
                        })?;
                }
            }
            let wasi = builder
                .finalize(&mut store)
                .map_err(|error| host_error(format!("WASI environment: {error}")))?;
            let imports = wasi
                .import_object_for_all_wasi_versions(&mut store, &blueprint.module)
                .map_err(|error| host_error(format!("WASI imports: {error}")))?;
            (imports, Some(wasi))
        } else {
            (Imports::new(), None)
        };
        imports::define(&mut store, &env, &mut imports);

        let instance = Instance::new(&mut store, &blueprint.module, &imports).map_err(|error| {
            let reason = match &error {
                InstantiationError::Start(trap) => {
                    format!("start function trapped: {}", trap.message())
                }
                other => other.to_string(),
            };
            LoadError::Instantiate {
                module: name.clone(),
                reason,
            }
        })?;
        if let Some(wasi) = &mut wasi {
            wasi.initialize(&mut store, instance.clone())
                .map_err(|error| host_error(format!("WASI initialisation: {error}")))?;
        }
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|_| LoadError::MissingExport {
                module: name.clone(),
                export: "memory".into(),
                why: "the host reads and writes guest memory through it",
            })?
            .clone();

        let shape = &blueprint.shape;
        let alloc = shape
            .allocator
            .and_then(|export| typed(&instance, &store, export, true));
        {
            let data = env.as_mut(&mut store);
            data.memory = Some(memory.clone());
            data.alloc = alloc.clone();
        }
        let mut live = Live {
            init: typed(&instance, &store, "init", shape.has_init),
            initialize: typed(&instance, &store, "_initialize", shape.has_initialize),
            handle_v0: typed(
                &instance,
                &store,
                "handle",
                shape.has_handle && shape.abi == AbiVersion::V0,
            ),
            handle_v1: typed(
                &instance,
                &store,
                "handle",
                shape.has_handle && shape.abi == AbiVersion::V1,
            ),
            on_message: typed(&instance, &store, "on_message", shape.has_on_message),
            on_messages: typed(&instance, &store, ON_MESSAGES_EXPORT, shape.has_on_messages),
            drain: typed(&instance, &store, "drain", shape.has_drain),
            snapshot: typed(&instance, &store, SNAPSHOT_EXPORT, shape.has_snapshot),
            restore: typed(&instance, &store, RESTORE_EXPORT, shape.has_restore),
            dealloc: typed(&instance, &store, "dealloc", shape.has_dealloc),
            alloc,
            memory,
            store,
            env,
            _wasi: wasi,
            _instance: instance.clone(),
            interrupter,
        };

        // One deadline covers `_initialize`, the version check and `init`.
        let started = Instant::now();
        let init_deadline = blueprint.shared.limits.init_deadline;
        let remaining = || init_deadline.saturating_sub(started.elapsed());
        let init_error = |source| LoadError::Init {
            module: name.clone(),
            source,
        };
        // `_initialize` first: it starts a language runtime (Go's refuses every other export
        // until it has run) and runs the C/Rust constructors.
        if let Some(initialize) = live.initialize.clone() {
            live.guarded(blueprint, "_initialize", remaining(), |live| {
                Ok(initialize.call(&mut live.store)?)
            })
            .map_err(init_error)?;
        }
        if shape.abi == AbiVersion::V1 {
            let marker: TypedFunction<(), i32> =
                typed(&instance, &live.store, ABI_VERSION_EXPORT, true)
                    .ok_or_else(|| host_error("ABI marker vanished".into()))?;
            let version = live
                .guarded(blueprint, ABI_VERSION_EXPORT, remaining(), |live| {
                    Ok(marker.call(&mut live.store)?)
                })
                .map_err(init_error)?;
            if version != AbiVersion::V1.number() {
                return Err(LoadError::UnsupportedAbi {
                    module: name,
                    version,
                });
            }
        }
        live.guarded(blueprint, "init", remaining(), |live| {
            if let Some(init) = live.init.clone() {
                init.call(&mut live.store)?;
            }
            Ok(())
        })
        .map_err(init_error)?;
        Ok(live)
    }

    /// Runs `body` under a deadline and classifies how it failed.
    fn guarded<R>(
        &mut self,
        blueprint: &Blueprint,
        export: &'static str,
        deadline: Duration,
        body: impl FnOnce(&mut Live) -> Result<R, Failure>,
    ) -> Result<R, CallError> {
        let at = Instant::now() + deadline;
        {
            let data = self.env.as_mut(&mut self.store);
            data.deadline = Some(at);
            data.outbound_calls = 0;
        }
        let guard = blueprint.watchdog.arm(at, self.interrupter.clone());
        let result = body(self);
        let fired = guard.disarm();
        let module = blueprint.name().to_owned();
        match result {
            // Finished, but past the deadline: typically a WASI sleep the deadline cut short,
            // after which the guest's idea of time is wrong. Counted as a deadline, and the
            // instance (which may still have an interrupt pending) is replaced.
            Ok(_) if fired => Err(CallError::new(
                module,
                export,
                CallErrorKind::Deadline { deadline },
            )),
            Ok(value) => Ok(value),
            Err(Failure::Call(error)) => Err(error),
            // An import failed the call with a typed error (a bad pointer, say).
            Err(Failure::Runtime(error)) if error.downcast_ref::<ImportFault>().is_some() => {
                let kind = match error.downcast::<ImportFault>() {
                    Ok(ImportFault(kind)) => kind,
                    Err(error) => CallErrorKind::Abi {
                        detail: error.message(),
                    },
                };
                Err(CallError::new(module, export, kind))
            }
            Err(Failure::Runtime(_)) if fired => Err(CallError::new(
                module,
                export,
                CallErrorKind::Deadline { deadline },
            )),
            Err(Failure::Runtime(error)) => {
                let message = match error.downcast_ref::<WasiError>() {
                    Some(WasiError::Exit(code)) => format!("the guest called exit({})", code.raw()),
                    _ => error.message(),
                };
                let backtrace = error
                    .trace()
                    .iter()
                    .map(|frame| Frame {
                        function: frame
                            .function_name()
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("func[{}]", frame.func_index())),
                        module: frame.module_name().to_owned(),
                        offset: frame.module_offset(),
                    })
                    .collect();
                Err(CallError::new(
                    module,
                    export,
                    CallErrorKind::Trap { message, backtrace },
                ))
            }
        }
    }

    fn write_guest(
        &mut self,
        module: &str,
        export: &'static str,
        bytes: &[u8],
    ) -> Result<(i32, i32), Failure> {
        let Some(alloc) = self.alloc.clone() else {
            return Err(CallError::new(
                module,
                export,
                CallErrorKind::NotExported { name: "alloc" },
            )
            .into());
        };
        let len = bytes.len() as i32;
        let ptr = alloc.call(&mut self.store, len)?;
        let view = self.memory.view(&self.store);
        memory::write(&view, "input", ptr as u32, bytes).map_err(|detail| {
            CallError::new(
                module,
                export,
                CallErrorKind::BadPointer {
                    place: format!("export \"{export}\" input (allocator returned {ptr})"),
                    detail,
                },
            )
        })?;
        Ok((ptr, len))
    }

    fn read_guest(
        &self,
        module: &str,
        export: &'static str,
        ptr: u32,
        len: u32,
    ) -> Result<Vec<u8>, CallError> {
        let view = self.memory.view(&self.store);
        memory::read(&view, "result", ptr, len).map_err(|detail| {
            CallError::new(
                module,
                export,
                CallErrorKind::BadPointer {
                    place: format!("export \"{export}\" result"),
                    detail,
                },
            )
        })
    }

    /// Takes the `(ptr << 32) | len` buffer an export returned: checks the length against
    /// `limit` (`what` names it in the error), copies the bytes out and hands the buffer back
    /// to the guest's `dealloc` when it has one.
    fn take_result(
        &mut self,
        module: &str,
        export: &'static str,
        what: &'static str,
        packed: i64,
        limit: usize,
    ) -> Result<Vec<u8>, Failure> {
        let (ptr, len) = ((packed >> 32) as u32, packed as u32);
        if len as usize > limit {
            return Err(CallError::new(
                module,
                export,
                CallErrorKind::TooLarge {
                    what,
                    size: len as usize,
                    limit,
                },
            )
            .into());
        }
        let bytes = self.read_guest(module, export, ptr, len)?;
        if let Some(dealloc) = self.dealloc.clone() {
            dealloc.call(&mut self.store, ptr as i32, len as i32)?;
        }
        Ok(bytes)
    }

    pub(crate) fn handle(
        &mut self,
        blueprint: &Blueprint,
        request: HttpRequest,
    ) -> Result<HttpResponse, CallError> {
        let limits = &blueprint.shared.limits;
        let module = blueprint.name();
        match blueprint.shape.abi {
            AbiVersion::V1 => {
                let bytes = request.encode();
                if bytes.len() > limits.max_request_bytes {
                    return Err(CallError::new(
                        module,
                        "handle",
                        CallErrorKind::TooLarge {
                            what: "request",
                            size: bytes.len(),
                            limit: limits.max_request_bytes,
                        },
                    ));
                }
                let Some(handle) = self.handle_v1.clone() else {
                    return Err(CallError::new(
                        module,
                        "handle",
                        CallErrorKind::NotExported { name: "handle" },
                    ));
                };
                let max_response = limits.max_response_bytes;
                self.guarded(blueprint, "handle", limits.handle_deadline, |live| {
                    let (ptr, len) = live.write_guest(module, "handle", &bytes)?;
                    let packed = handle.call(&mut live.store, ptr, len)?;
                    if packed < 0 {
                        return Err(CallError::new(
                            module,
                            "handle",
                            CallErrorKind::Abi {
                                detail: format!("returned error code {packed}"),
                            },
                        )
                        .into());
                    }
                    let out =
                        live.take_result(module, "handle", "response", packed, max_response)?;
                    HttpResponse::decode_with(
                        &out,
                        &binary::DecodeOptions {
                            max_size: max_response,
                        },
                    )
                    .map_err(|error| {
                        CallError::new(
                            module,
                            "handle",
                            CallErrorKind::Abi {
                                detail: error.to_string(),
                            },
                        )
                        .into()
                    })
                })
            }
            AbiVersion::V0 => {
                let Some(handle) = self.handle_v0.clone() else {
                    return Err(CallError::new(
                        module,
                        "handle",
                        CallErrorKind::NotExported { name: "handle" },
                    ));
                };
                let path = if request.path.is_empty() {
                    "/"
                } else {
                    &request.path
                };
                let query = if request.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", request.query)
                };
                let input = format!("{}\n{path}{query}\n", request.method);
                let max_response = limits.max_response_bytes;
                self.guarded(blueprint, "handle", limits.handle_deadline, |live| {
                    let (ptr, len) = live.write_guest(module, "handle", input.as_bytes())?;
                    let out = handle.call(&mut live.store, ptr, len)? as u32;
                    let body = live.read_c_string(module, out, max_response)?;
                    Ok(HttpResponse::new(200, body)
                        .with_header("content-type", "text/plain; charset=utf-8"))
                })
            }
        }
    }

    /// Reads NUL-terminated bytes at `ptr` (the original ABI's response), at most `limit`.
    fn read_c_string(&self, module: &str, ptr: u32, limit: usize) -> Result<Vec<u8>, CallError> {
        let view = self.memory.view(&self.store);
        match memory::read_c_string(&view, "string", ptr, limit) {
            Ok(memory::CString::Found(body)) => Ok(body),
            Ok(memory::CString::TooLong(size)) => Err(CallError::new(
                module,
                "handle",
                CallErrorKind::TooLarge {
                    what: "response",
                    size,
                    limit,
                },
            )),
            Err(detail) => Err(CallError::new(
                module,
                "handle",
                CallErrorKind::BadPointer {
                    place: "export \"handle\" result".into(),
                    detail,
                },
            )),
        }
    }

    pub(crate) fn on_message(
        &mut self,
        blueprint: &Blueprint,
        message: Message,
    ) -> Result<(), CallError> {
        let module = blueprint.name();
        let limits = &blueprint.shared.limits;
        let Some(on_message) = self.on_message.clone() else {
            return Err(CallError::new(
                module,
                "on_message",
                CallErrorKind::NotExported { name: "on_message" },
            ));
        };
        let bytes = match blueprint.shape.abi {
            AbiVersion::V1 => message.encode(),
            AbiVersion::V0 => message.payload,
        };
        if bytes.len() > limits.max_message_bytes {
            return Err(CallError::new(
                module,
                "on_message",
                CallErrorKind::TooLarge {
                    what: "message",
                    size: bytes.len(),
                    limit: limits.max_message_bytes,
                },
            ));
        }
        self.guarded(blueprint, "on_message", limits.message_deadline, |live| {
            let (ptr, len) = live.write_guest(module, "on_message", &bytes)?;
            on_message.call(&mut live.store, ptr, len)?;
            Ok(())
        })
    }

    /// Calls `on_messages(ptr, len)` on an encoded `binary::MessageBatch` of `count` messages
    /// (at most `max_message_bytes`), under one `message_deadline`. On failure, also says
    /// which message the guest was handling: the value it left in the batch's count field,
    /// when that names one of the batch's messages (`None`: the guest never got to its first
    /// handler, or left the field unreadable).
    pub(crate) fn on_messages(
        &mut self,
        blueprint: &Blueprint,
        batch: &[u8],
        count: usize,
    ) -> Result<(), BatchFailure> {
        let module = blueprint.name();
        let limits = &blueprint.shared.limits;
        let not_started = |error| BatchFailure {
            error,
            handling: None,
        };
        let Some(on_messages) = self.on_messages.clone() else {
            return Err(not_started(CallError::new(
                module,
                ON_MESSAGES_EXPORT,
                CallErrorKind::NotExported {
                    name: ON_MESSAGES_EXPORT,
                },
            )));
        };
        if batch.len() > limits.max_message_bytes {
            return Err(not_started(CallError::new(
                module,
                ON_MESSAGES_EXPORT,
                CallErrorKind::TooLarge {
                    what: "message batch",
                    size: batch.len(),
                    limit: limits.max_message_bytes,
                },
            )));
        }
        let mut written = None;
        let result = self.guarded(
            blueprint,
            ON_MESSAGES_EXPORT,
            limits.message_deadline,
            |live| {
                let (ptr, len) = live.write_guest(module, ON_MESSAGES_EXPORT, batch)?;
                written = Some(ptr as u32);
                on_messages.call(&mut live.store, ptr, len)?;
                Ok(())
            },
        );
        result.map_err(|error| {
            // The memory outlives a trap: the instance is only dropped after this.
            let handling = written
                .and_then(|ptr| self.read_guest(module, ON_MESSAGES_EXPORT, ptr, 8).ok())
                .and_then(|field| <[u8; 8]>::try_from(field.as_slice()).ok())
                .map(u64::from_le_bytes)
                .filter(|&index| index < count as u64)
                .map(|index| index as usize);
            BatchFailure { error, handling }
        })
    }

    /// Calls `drain()`: the milliseconds the guest wants to wait before being asked again.
    pub(crate) fn drain(&mut self, blueprint: &Blueprint) -> Result<u32, CallError> {
        let Some(drain) = self.drain.clone() else {
            return Ok(0);
        };
        let deadline = blueprint.shared.limits.drain_call_deadline;
        self.guarded(blueprint, "drain", deadline, |live| {
            Ok(drain.call(&mut live.store)? as u32)
        })
    }

    /// Calls `snapshot()` and copies the state out of guest memory (then `dealloc`s it, if
    /// exported). `Ok(Err(code))` is the guest declining with a negative code.
    pub(crate) fn snapshot(
        &mut self,
        blueprint: &Blueprint,
    ) -> Result<Result<Vec<u8>, i64>, CallError> {
        let module = blueprint.name();
        let Some(snapshot) = self.snapshot.clone() else {
            return Err(CallError::new(
                module,
                SNAPSHOT_EXPORT,
                CallErrorKind::NotExported {
                    name: SNAPSHOT_EXPORT,
                },
            ));
        };
        let limits = &blueprint.shared.limits;
        let limit = limits.max_snapshot_bytes;
        self.guarded(
            blueprint,
            SNAPSHOT_EXPORT,
            limits.snapshot_deadline,
            |live| {
                let packed = snapshot.call(&mut live.store)?;
                if packed < 0 {
                    return Ok(Err(packed));
                }
                let state = live.take_result(module, SNAPSHOT_EXPORT, "state", packed, limit)?;
                Ok(Ok(state))
            },
        )
    }

    /// Writes `state` into a buffer from the guest's allocator and calls `restore(ptr, len)`;
    /// returns what it returned (0 = accepted).
    pub(crate) fn restore(
        &mut self,
        blueprint: &Blueprint,
        state: &[u8],
    ) -> Result<i32, CallError> {
        let module = blueprint.name();
        let Some(restore) = self.restore.clone() else {
            return Err(CallError::new(
                module,
                RESTORE_EXPORT,
                CallErrorKind::NotExported {
                    name: RESTORE_EXPORT,
                },
            ));
        };
        let deadline = blueprint.shared.limits.snapshot_deadline;
        self.guarded(blueprint, RESTORE_EXPORT, deadline, |live| {
            let (ptr, len) = live.write_guest(module, RESTORE_EXPORT, state)?;
            Ok(restore.call(&mut live.store, ptr, len)?)
        })
    }
}
