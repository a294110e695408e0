//! [`LoadedModule`]: one loaded version of a module — its pool of worker threads, its inbox,
//! its bus subscriptions — and the calls, drain and close the server drives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use binary::{HttpRequest, HttpResponse, Message};
use crossbeam_channel::{Sender, TrySendError};

use crate::abi::AbiVersion;
use crate::abi::{RESTORE_EXPORT, SNAPSHOT_EXPORT};
use crate::error::{CallError, CallErrorKind, SnapshotError, SnapshotErrorKind};
use crate::inbox::InboxSender;
use crate::instance::Blueprint;
use crate::logs::LogLine;
use crate::shared::{ModuleStats, Shared};
use crate::worker::{Control, DrainOutcome, Job, Slot};

struct WorkerHandle {
    control: Sender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) struct Inner {
    pub blueprint: Arc<Blueprint>,
    pub jobs: InboxSender,
    workers: Mutex<Vec<WorkerHandle>>,
    /// Each instance's slot with its worker's order channel, in pool order: what a request
    /// run inline needs, without the lock of `workers`.
    slots: Vec<(Arc<Slot>, Sender<Control>)>,
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

/// Where [`LoadedModule::try_handle`] left a request: waiting for a worker's reply, or done.
enum Queued {
    Waiting(
        tokio::sync::oneshot::Receiver<Result<HttpResponse, CallError>>,
        LoadedModule,
    ),
    Done(Result<Result<HttpResponse, CallError>, HttpRequest>),
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

/// Jobs taken out of a paused version's inbox by [`LoadedModule::take_queued`], to be run
/// first by the version that replaces it ([`LoadedModule::resume`]).
#[derive(Default)]
pub struct QueuedJobs(Vec<Job>);

impl QueuedJobs {
    /// How many jobs (HTTP requests and bus messages).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for QueuedJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedJobs")
            .field("len", &self.0.len())
            .finish()
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
        jobs: InboxSender,
        workers: Vec<(Sender<Control>, std::thread::JoinHandle<()>, Arc<Slot>)>,
        load_time: Duration,
        compile: crate::host::CompileSource,
    ) -> LoadedModule {
        let slots = workers
            .iter()
            .map(|(control, _, slot)| (slot.clone(), control.clone()))
            .collect();
        let workers = workers
            .into_iter()
            .map(|(control, thread, _)| WorkerHandle {
                control,
                thread: Some(thread),
            })
            .collect();
        LoadedModule {
            inner: Arc::new(Inner {
                blueprint,
                jobs,
                workers: Mutex::new(workers),
                slots,
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

    /// Jobs (HTTP requests and bus messages) waiting in the inbox, not yet taken by an
    /// instance.
    pub fn queued(&self) -> usize {
        self.inner.jobs.len()
    }

    /// Whether [`LoadedModule::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn submit(&self, job: Job) -> Result<(), CallError> {
        let export = job.export();
        if self.is_closed() {
            return Err(self.error(export, CallErrorKind::Closed));
        }
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Shared::bump(&self.shared().counters.overloaded);
                Err(self.error(
                    export,
                    CallErrorKind::Overloaded {
                        capacity: self.inner.jobs.capacity(),
                    },
                ))
            }
            Err(TrySendError::Disconnected(_)) => Err(self.error(export, CallErrorKind::Closed)),
        }
    }

    fn error(&self, export: &'static str, kind: CallErrorKind) -> CallError {
        CallError::new(self.name(), export, kind)
    }

    fn lost(&self, export: &'static str) -> CallError {
        self.error(
            export,
            CallErrorKind::InstanceGone {
                reason: "the worker stopped before replying".into(),
            },
        )
    }

    /// Runs `handle` with the request on one of the instances, without blocking the calling
    /// task's thread.
    pub async fn handle(&self, request: HttpRequest) -> Result<HttpResponse, CallError> {
        let (reply, response) = tokio::sync::oneshot::channel();
        self.submit(Job::Handle { request, reply })?;
        response.await.map_err(|_| self.lost("handle"))?
    }

    /// Like [`LoadedModule::handle`], but a request this version refuses because it is closed
    /// (it never reached an instance) comes back as `Err(request)`, so a caller can retry it
    /// on the version that replaced this one without cloning every request up front.
    ///
    /// The request is queued (or refused, or run) before this function returns, not when the
    /// future is first polled: a caller that orders its submissions against a hot swap's hold
    /// can rely on that. A request to a module whose calls are short may run right here, on
    /// the calling thread, when an instance is free (see `docs/ARCHITECTURE.md`).
    pub fn try_handle(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<Result<HttpResponse, CallError>, HttpRequest>> + Send + 'static
    {
        let queued = if self.is_closed() {
            Queued::Done(Err(request))
        } else {
            match self.try_inline(request) {
                Ok(result) => Queued::Done(Ok(result)),
                Err(request) => self.queue(request),
            }
        };
        async move {
            match queued {
                Queued::Waiting(response, module) => Ok(response
                    .await
                    .unwrap_or_else(|_| Err(module.lost("handle")))),
                Queued::Done(result) => result,
            }
        }
    }

    /// Queues `request` for a worker.
    fn queue(&self, request: HttpRequest) -> Queued {
        let (reply, response) = tokio::sync::oneshot::channel();
        match self.inner.jobs.try_send(Job::Handle { request, reply }) {
            Ok(()) => Queued::Waiting(response, self.clone()),
            Err(TrySendError::Full(_)) => {
                Shared::bump(&self.shared().counters.overloaded);
                Queued::Done(Ok(Err(self.error(
                    "handle",
                    CallErrorKind::Overloaded {
                        capacity: self.inner.jobs.capacity(),
                    },
                ))))
            }
            Err(TrySendError::Disconnected(Job::Handle { request, .. })) => {
                Queued::Done(Err(request))
            }
            Err(TrySendError::Disconnected(Job::Message(_))) => {
                Queued::Done(Ok(Err(self.error("on_message", CallErrorKind::Closed))))
            }
        }
    }

    /// Runs the request on a free instance on this thread, skipping the hop to its worker
    /// and back, when the module's calls are short ([`crate::worker::Inline`]) and nothing
    /// waits in its inbox (queued work keeps its turn); otherwise hands the request back.
    fn try_inline(
        &self,
        request: HttpRequest,
    ) -> Result<Result<HttpResponse, CallError>, HttpRequest> {
        let blueprint = &self.inner.blueprint;
        if !blueprint.inline.ready() || !self.inner.jobs.is_empty() {
            return Err(request);
        }
        let mut request = request;
        for (slot, control) in &self.inner.slots {
            match slot.try_handle_inline(blueprint, request, || {
                let _ = control.send(Control::Renew);
            }) {
                Ok(result) => return Ok(result),
                Err(returned) => request = returned,
            }
        }
        Err(request)
    }

    /// Like [`LoadedModule::handle`], blocking the calling thread. Don't call it from async
    /// code.
    pub fn handle_blocking(&self, request: HttpRequest) -> Result<HttpResponse, CallError> {
        let (reply, response) = tokio::sync::oneshot::channel();
        self.submit(Job::Handle { request, reply })?;
        response.blocking_recv().map_err(|_| self.lost("handle"))?
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
    /// and this version's start, so no message goes to both or to neither. This version also
    /// takes over `old`'s standing for inline calls ([`crate::worker::Inline::inherit`]).
    pub fn take_over_from(&self, old: &LoadedModule) -> Result<(), bus::BusError> {
        if Arc::ptr_eq(&self.inner, &old.inner) {
            return Ok(());
        }
        self.inner
            .blueprint
            .inline
            .inherit(&old.inner.blueprint.inline);
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

    /// Whether this version exports `snapshot` (can hand its in-memory state to a successor).
    pub fn exports_snapshot(&self) -> bool {
        self.inner.blueprint.shape.has_snapshot
    }

    /// Whether this version exports `restore` (can take a predecessor's state over).
    pub fn exports_restore(&self) -> bool {
        self.inner.blueprint.shape.has_restore
    }

    /// How long an order may wait behind the call an instance is running.
    fn busy_grace(&self) -> Duration {
        let limits = &self.shared().limits;
        limits
            .handle_deadline
            .max(limits.message_deadline)
            .max(limits.drain_call_deadline)
            + Duration::from_secs(1)
    }

    /// Sends an order to the first instance (`first_only`) or to every one, and collects
    /// the replies in pool order; `None` for an instance that did not answer within `wait`.
    fn order_each<T>(
        &self,
        first_only: bool,
        wait: Duration,
        order: impl Fn(crossbeam_channel::Sender<T>) -> Control,
    ) -> Vec<Option<T>> {
        let receivers: Vec<_> = {
            let workers = self
                .inner
                .workers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = if first_only { 1 } else { workers.len() };
            workers
                .iter()
                .take(count)
                .map(|worker| {
                    let (reply, answer) = crossbeam_channel::bounded(1);
                    let sent = worker.control.send(order(reply)).is_ok();
                    (sent, answer)
                })
                .collect()
        };
        let until = Instant::now() + wait;
        receivers
            .into_iter()
            .map(|(sent, answer)| {
                let left = until.saturating_duration_since(Instant::now());
                sent.then(|| answer.recv_timeout(left).ok()).flatten()
            })
            .collect()
    }

    /// Stops every instance from taking jobs: requests and bus messages queued from now on
    /// wait in the inbox until [`LoadedModule::resume`] (or are taken out by
    /// [`LoadedModule::take_queued`]). Returns once each instance has finished the call it
    /// was running. Part of the hot swap with a state handoff (`docs/ABI.md`).
    pub fn pause(&self) -> Result<(), CallError> {
        let answers = self.order_each(false, self.busy_grace(), |ack| Control::Pause { ack });
        if answers.iter().all(Option::is_some) {
            Ok(())
        } else {
            Err(self.lost(SNAPSHOT_EXPORT))
        }
    }

    /// Takes every job waiting in a [paused](LoadedModule::pause) version's inbox, in order.
    pub fn take_queued(&self) -> QueuedJobs {
        let answers = self.order_each(true, self.busy_grace(), |reply| Control::TakeQueued {
            reply,
        });
        QueuedJobs(answers.into_iter().flatten().flatten().collect())
    }

    /// Lets every instance take jobs again; the first instance runs `first` (jobs taken from
    /// the version this one replaces) before anything else.
    pub fn resume(&self, first: QueuedJobs) {
        let workers = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut first = Some(first.0);
        for worker in workers.iter() {
            let jobs = first.take().unwrap_or_default();
            if let Err(returned) = worker.control.send(Control::Resume { first: jobs }) {
                // That worker is gone: hand its jobs to the next one.
                if let Control::Resume { first: jobs } = returned.into_inner() {
                    first = Some(jobs);
                }
            }
        }
    }

    /// Calls `snapshot()` on the first instance of the pool (instance 0: with `instances >
    /// 1` the others' state is not handed over, which is why a module that keeps state in
    /// memory should run one instance) and wraps the state in a [`binary::Snapshot`]
    /// envelope naming this module and version. Blocks.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let unavailable = |reason: &str| SnapshotError {
            module: self.name().to_owned(),
            export: SNAPSHOT_EXPORT,
            kind: SnapshotErrorKind::Unavailable {
                reason: reason.to_owned(),
            },
        };
        if !self.exports_snapshot() {
            return Err(unavailable("the module does not export it"));
        }
        if self.is_closed() {
            return Err(unavailable("the version is closed"));
        }
        let wait = self.shared().limits.snapshot_deadline + self.busy_grace();
        let answer = self
            .order_each(true, wait, |reply| Control::Snapshot { reply })
            .into_iter()
            .next()
            .flatten();
        let state = answer.ok_or_else(|| unavailable("the instance did not answer"))??;
        Ok(binary::Snapshot::new(self.name(), self.version(), state).encode())
    }

    /// Checks a snapshot envelope (it decodes, its checksum holds, it is this module's, the
    /// state is within [`crate::Limits::max_snapshot_bytes`]) and calls `restore(state)` on
    /// every instance of the pool, in parallel. Blocks. Call it before the version takes
    /// traffic; any error means the version must not replace its predecessor. Returns the
    /// size of the state (the guest's payload) on success.
    pub fn restore(&self, envelope: &[u8]) -> Result<usize, SnapshotError> {
        let error = |kind| SnapshotError {
            module: self.name().to_owned(),
            export: RESTORE_EXPORT,
            kind,
        };
        if !self.exports_restore() {
            return Err(error(SnapshotErrorKind::Unavailable {
                reason: "the module does not export it".into(),
            }));
        }
        if self.is_closed() {
            return Err(error(SnapshotErrorKind::Unavailable {
                reason: "the version is closed".into(),
            }));
        }
        let limit = self.shared().limits.max_snapshot_bytes;
        // Room for the envelope's own fields around the largest state allowed.
        let options = binary::DecodeOptions {
            max_size: limit.saturating_add(64 * 1024),
        };
        let snapshot = binary::Snapshot::decode_with(envelope, &options)
            .map_err(|decode| error(SnapshotErrorKind::Envelope(decode)))?;
        if snapshot.module != self.name() {
            return Err(error(SnapshotErrorKind::OtherModule {
                found: snapshot.module,
            }));
        }
        if snapshot.payload.len() > limit {
            return Err(error(SnapshotErrorKind::TooLarge {
                size: snapshot.payload.len(),
                limit,
            }));
        }
        let size = snapshot.payload.len();
        let state: Arc<[u8]> = snapshot.payload.into();
        let wait = self.shared().limits.snapshot_deadline + self.busy_grace();
        let answers = self.order_each(false, wait, |reply| Control::Restore {
            state: state.clone(),
            reply,
        });
        for answer in answers {
            match answer {
                Some(result) => result?,
                None => {
                    return Err(error(SnapshotErrorKind::Unavailable {
                        reason: "an instance did not answer".into(),
                    }));
                }
            }
        }
        Ok(size)
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
                    None => DrainOutcome::Failed(self.lost("drain")),
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
