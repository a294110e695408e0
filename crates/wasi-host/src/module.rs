//! [`LoadedModule`]: one loaded version of a module — its pool of worker threads, its inbox,
//! its bus subscriptions — and the calls, drain and close the server drives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use binary::{HttpRequest, HttpResponse, Message};
use crossbeam_channel::{Sender, TrySendError};

use crate::abi::AbiVersion;
use crate::error::CallError;
use crate::instance::Blueprint;
use crate::logs::LogLine;
use crate::shared::{ModuleStats, Shared};
use crate::worker::{Control, DrainOutcome, Job};

struct WorkerHandle {
    control: Sender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) struct Inner {
    pub blueprint: Arc<Blueprint>,
    pub jobs: Sender<Job>,
    pub capacity: usize,
    workers: Mutex<Vec<WorkerHandle>>,
    closed: AtomicBool,
    loaded_at: SystemTime,
    load_time: Duration,
    compile: crate::host::CompileSource,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop the workers without waiting for them.
        for worker in self
            .workers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = worker.control.send(Control::Stop);
        }
    }
}

/// One loaded version of a module: a pool of instances (each on its own thread) behind one
/// bounded inbox. Cheap to clone; the workers stop when [`LoadedModule::close`] is called or
/// the last clone is dropped.
#[derive(Clone)]
pub struct LoadedModule {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("abi", &self.abi())
            .finish_non_exhaustive()
    }
}

/// The result of [`LoadedModule::drain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Each instance's outcome, in pool order.
    pub instances: Vec<DrainOutcome>,
    /// Wall time the drain took.
    pub elapsed: Duration,
}

impl DrainReport {
    /// Whether every instance finished its drain before the timeout. `false` is a warning,
    /// not an error: the version is closed anyway.
    pub fn completed(&self) -> bool {
        self.instances
            .iter()
            .all(|outcome| matches!(outcome, DrainOutcome::Done { .. }))
    }
}

impl LoadedModule {
    pub(crate) fn new(
        blueprint: Arc<Blueprint>,
        jobs: Sender<Job>,
        capacity: usize,
        workers: Vec<(Sender<Control>, std::thread::JoinHandle<()>)>,
        load_time: Duration,
        compile: crate::host::CompileSource,
    ) -> LoadedModule {
        let workers = workers
            .into_iter()
            .map(|(control, thread)| WorkerHandle {
                control,
                thread: Some(thread),
            })
            .collect();
        LoadedModule {
            inner: Arc::new(Inner {
                blueprint,
                jobs,
                capacity,
                workers: Mutex::new(workers),
                closed: AtomicBool::new(false),
                loaded_at: SystemTime::now(),
                load_time,
                compile,
            }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.blueprint.shared
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The version: the first 16 hex digits of the SHA-256 of the `.wasm` bytes.
    pub fn version(&self) -> &str {
        &self.shared().version
    }

    /// The ABI the module speaks.
    pub fn abi(&self) -> AbiVersion {
        self.inner.blueprint.shape.abi
    }

    /// Whether the module exports `handle` (is HTTP-routable).
    pub fn has_handle(&self) -> bool {
        self.inner.blueprint.shape.has_handle
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.inner.loaded_at
    }

    /// How long compiling (or the cache load), instantiating and `init` took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// Where the compiled code came from.
    pub fn compile_source(&self) -> crate::host::CompileSource {
        self.inner.compile
    }

    /// Instances in the pool.
    pub fn instances(&self) -> usize {
        self.inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Counters since load.
    pub fn stats(&self) -> ModuleStats {
        self.shared().stats()
    }

    /// Keys and bytes in the module's own key-value store (`None` without a store, or when
    /// the store could not be read).
    pub fn kv_usage(&self) -> Option<state::Usage> {
        self.shared().kv.own_usage()
    }

    /// The most recent guest log lines (up to 256).
    pub fn recent_logs(&self) -> Vec<LogLine> {
        self.shared().log.recent()
    }

    /// Topics the module is subscribed to, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        let table = self
            .shared()
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table.by_topic.keys().cloned().collect()
    }

    /// Whether the module's subscriptions receive messages (see [`LoadedModule::go_live`]).
    pub fn is_live(&self) -> bool {
        self.shared()
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
    }

    /// Whether [`LoadedModule::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn submit(&self, job: Job) -> Result<(), CallError> {
        let module = self.name().to_owned();
        if self.is_closed() {
            return Err(CallError::Closed { module });
        }
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Shared::bump(&self.shared().counters.overloaded);
                Err(CallError::Overloaded {
                    module,
                    capacity: self.inner.capacity,
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(CallError::Closed { module }),
        }
    }

    fn lost(&self) -> CallError {
        CallError::InstanceGone {
            module: self.name().to_owned(),
            reason: "the worker stopped before replying".into(),
        }
    }

    /// Runs `handle` with the request on one of the instances, without blocking the calling
    /// task's thread.
    pub async fn handle(&self, request: HttpRequest) -> Result<HttpResponse, CallError> {
        let (reply, response) = tokio::sync::oneshot::channel();
        self.submit(Job::Handle { request, reply })?;
        response.await.map_err(|_| self.lost())?
    }

    /// Like [`LoadedModule::handle`], but a request this version refuses because it is closed
    /// (it never reached an instance) comes back as `Err(request)`, so a caller can retry it
    /// on the version that replaced this one without cloning every request up front.
    pub async fn try_handle(
        &self,
        request: HttpRequest,
    ) -> Result<Result<HttpResponse, CallError>, HttpRequest> {
        if self.is_closed() {
            return Err(request);
        }
        let (reply, response) = tokio::sync::oneshot::channel();
        match self.inner.jobs.try_send(Job::Handle { request, reply }) {
            Ok(()) => Ok(response.await.unwrap_or_else(|_| Err(self.lost()))),
            Err(TrySendError::Full(_)) => {
                Shared::bump(&self.shared().counters.overloaded);
                Ok(Err(CallError::Overloaded {
                    module: self.name().to_owned(),
                    capacity: self.inner.capacity,
                }))
            }
            Err(TrySendError::Disconnected(Job::Handle { request, .. })) => Err(request),
            Err(TrySendError::Disconnected(Job::Message(_))) => Ok(Err(CallError::Closed {
                module: self.name().to_owned(),
            })),
        }
    }

    /// Like [`LoadedModule::handle`], blocking the calling thread. Don't call it from async
    /// code.
    pub fn handle_blocking(&self, request: HttpRequest) -> Result<HttpResponse, CallError> {
        let (reply, response) = tokio::sync::oneshot::channel();
        self.submit(Job::Handle { request, reply })?;
        response.blocking_recv().map_err(|_| self.lost())?
    }

    /// Queues a message for `on_message` directly, bypassing the bus.
    pub fn deliver(&self, message: Message) -> Result<(), CallError> {
        self.submit(Job::Message(message))
    }

    /// Makes this version's bus subscriptions (recorded as dormant during `init`) live, for a
    /// module that replaces nothing. Subscriptions made later are live at once.
    pub fn go_live(&self) -> Result<(), bus::BusError> {
        let mut table = self
            .shared()
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let activate: Vec<&bus::Subscription> = table.by_topic.values().collect();
        self.shared().bus.handover(&[], &activate)?;
        table.live = true;
        Ok(())
    }

    /// The swap step of the handoff protocol: under one bus lock, `old`'s subscriptions stop
    /// and this version's start, so no message goes to both or to neither.
    pub fn take_over_from(&self, old: &LoadedModule) -> Result<(), bus::BusError> {
        if Arc::ptr_eq(&self.inner, &old.inner) {
            return Ok(());
        }
        let mut old_table = old
            .shared()
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut new_table = self
            .shared()
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        {
            let retire: Vec<&bus::Subscription> = old_table.by_topic.values().collect();
            let activate: Vec<&bus::Subscription> = new_table.by_topic.values().collect();
            self.shared().bus.handover(&retire, &activate)?;
        }
        new_table.live = true;
        old_table.live = false;
        old_table.by_topic.clear();
        Ok(())
    }

    /// Finishes queued work, then polls every instance's `drain()` until it returns 0 or
    /// `timeout` passes. Blocks; call it from a blocking context.
    pub fn drain(&self, timeout: Duration) -> DrainReport {
        let started = Instant::now();
        let until = started + timeout;
        let replies: Vec<_> = {
            let workers = self
                .inner
                .workers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            workers
                .iter()
                .map(|worker| {
                    let (reply, outcome) = crossbeam_channel::bounded(1);
                    let sent = worker.control.send(Control::Drain { until, reply }).is_ok();
                    (sent, outcome)
                })
                .collect()
        };
        let instances = replies
            .into_iter()
            .map(|(sent, outcome)| {
                // A drain call can overrun `until` by at most its own deadline.
                let grace = self.shared().limits.drain_call_deadline + Duration::from_secs(1);
                let wait = until.saturating_duration_since(Instant::now()) + grace;
                match sent.then(|| outcome.recv_timeout(wait).ok()).flatten() {
                    Some(outcome) => outcome,
                    None => DrainOutcome::Failed(self.lost()),
                }
            })
            .collect();
        DrainReport {
            instances,
            elapsed: started.elapsed(),
        }
    }

    /// Stops taking calls, cancels the subscriptions, lets the workers finish what is queued
    /// and waits for them to exit. Idempotent.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let subscriptions = {
            let mut table = self
                .shared()
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            table.live = false;
            std::mem::take(&mut table.by_topic)
        };
        drop(subscriptions);
        let threads: Vec<_> = {
            let mut workers = self
                .inner
                .workers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            workers
                .iter_mut()
                .filter_map(|worker| {
                    let _ = worker.control.send(Control::Stop);
                    worker.thread.take()
                })
                .collect()
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}
