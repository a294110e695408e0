//! The worker thread that keeps one instance: it takes jobs from the module's inbox one at a
//! time, replaces its instance after a trap or a deadline, and runs the drain protocol when
//! told to. The instance lives in a [`Slot`] whose mutex keeps it to one call at a time,
//! whichever thread makes the call: the worker, or a caller running a request inline
//! ([`Inline`], [`crate::LoadedModule::try_handle`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use binary::{Envelope, HttpRequest, HttpResponse, Message, MessageBatch};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};

use crate::abi::{ON_MESSAGES_EXPORT, RESTORE_EXPORT, SNAPSHOT_EXPORT};
use crate::error::{CallError, CallErrorKind, LoadError, SnapshotError, SnapshotErrorKind};
use crate::inbox::InboxReceiver;
use crate::instance::{BatchFailure, Blueprint, Live};
use crate::shared::Shared;

/// Work for a module's instances, queued in its bounded inbox.
pub(crate) enum Job {
    /// An HTTP request; the reply goes back on the oneshot.
    Handle {
        request: HttpRequest,
        reply: tokio::sync::oneshot::Sender<Result<HttpResponse, CallError>>,
    },
    /// A bus delivery for `on_message`.
    Message(Message),
}

impl Job {
    /// The export the job calls.
    pub(crate) fn export(&self) -> &'static str {
        match self {
            Job::Handle { .. } => "handle",
            Job::Message(_) => "on_message",
        }
    }
}

/// Most encoded bytes one `on_messages` call hands over (less when `max_message_bytes` is
/// less); a message that does not fit starts the next batch.
const BATCH_BYTES: usize = 256 * 1024;
/// The share of `message_deadline` a batch may be expected to take at the module's recent
/// pace per message: batches are sized to fill at most a quarter of the deadline they run
/// under.
const BATCH_DEADLINE_SHARE: u32 = 4;

/// A call that ends within this is cheap enough to run on the caller's thread.
const INLINE_BUDGET: Duration = Duration::from_micros(500);
/// Calls in a row within [`INLINE_BUDGET`] before requests run inline.
const INLINE_STREAK: u32 = 32;

/// Whether an HTTP request may run inline, on the thread of the task that made it, instead of
/// hopping to the worker thread and back (two thread wake-ups per request). Only for modules
/// whose calls are short: a module that imports something that waits (outbound HTTP, a bus
/// request, WASI's `poll_oneoff` and friends) never runs inline, and the others only after
/// [`INLINE_STREAK`] calls in a row within [`INLINE_BUDGET`]; one slower call sends the module
/// back to its worker until it has been quick that many times again. So a slow module keeps
/// its calls off the server's I/O threads, and a module that turns slow holds one of them for
/// at most one call (bounded by its deadline).
pub(crate) struct Inline {
    eligible: bool,
    streak: AtomicU32,
}

impl Inline {
    pub(crate) fn new(eligible: bool) -> Inline {
        Inline {
            eligible,
            streak: AtomicU32::new(0),
        }
    }

    /// Whether the next request may run inline.
    pub(crate) fn ready(&self) -> bool {
        self.eligible && self.streak.load(Ordering::Relaxed) >= INLINE_STREAK
    }

    /// Starts where `previous` (the version this one replaces) stands: a module whose calls
    /// were short keeps running inline across a swap instead of sending its first
    /// [`INLINE_STREAK`] requests through the new version's worker thread. One slow call of
    /// the new version sends it back to its worker, as for any module.
    pub(crate) fn inherit(&self, previous: &Inline) {
        if self.eligible && previous.eligible {
            self.streak
                .store(previous.streak.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Counts one finished `handle` call.
    fn record(&self, elapsed: Duration) {
        if !self.eligible {
            return;
        }
        let streak = self.streak.load(Ordering::Relaxed);
        if elapsed > INLINE_BUDGET {
            if streak != 0 {
                self.streak.store(0, Ordering::Relaxed);
            }
        } else if streak < INLINE_STREAK {
            self.streak.store(streak + 1, Ordering::Relaxed);
        }
    }
}

/// One instance and whether it takes calls, shared by its worker thread and the callers that
/// run requests inline; the mutex keeps the instance to one call at a time.
#[derive(Default)]
pub(crate) struct Slot(Mutex<SlotState>);

#[derive(Default)]
pub(crate) struct SlotState {
    /// `None` while a failed call's replacement is pending or a failed drain closed it.
    live: Option<Live>,
    /// Between `Pause` and `Resume`: orders only, no calls.
    paused: bool,
}

// SAFETY: `Live` holds a wasmer `Store`, which is `!Send` only because of what wasmer keeps
// for a call *in progress* (the on-called hook, which this crate never sets, and the lock of an
// async store, which it never makes). The per-thread state of a call — wasmer's store context
// and its interrupt registration (`store/context.rs`, `interrupt_registry`), our watchdog's
// `CURRENT` — is installed on the calling thread when the call starts and removed when it
// returns; wasmer itself resumes stores on other threads on that basis. A `SlotState` is only
// reached through its `Slot`'s mutex, so its `Live` is used by one thread at a time and moves
// between threads only between calls, together with every handle into its store (instance,
// exports, memory, environments).
unsafe impl Send for SlotState {}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `handle` on this instance on the calling thread, if the instance is free, live and
    /// not paused; otherwise gives the request back. `renew` is asked to replace an instance
    /// a failed call left unusable (the caller must not spend its time on that).
    pub(crate) fn try_handle_inline(
        &self,
        blueprint: &Blueprint,
        request: HttpRequest,
        renew: impl FnOnce(),
    ) -> Result<Result<HttpResponse, CallError>, HttpRequest> {
        let Ok(mut state) = self.0.try_lock() else {
            return Err(request);
        };
        if state.paused || state.live.is_none() {
            return Err(request);
        }
        Shared::bump(&blueprint.shared.counters.inline_requests);
        let result = handle(blueprint, &mut state.live, request, false);
        let renewed = state.live.is_none();
        drop(state);
        if renewed {
            renew();
        }
        Ok(result)
    }
}

/// Orders for one worker, outside the shared inbox.
pub(crate) enum Control {
    /// Finish queued jobs, then poll `drain()` until it returns 0 or `until` passes.
    Drain {
        until: Instant,
        reply: Sender<DrainOutcome>,
    },
    /// Finish queued jobs and exit.
    Stop,
    /// Stop taking jobs from the inbox (they wait there) until `Resume`; orders still run.
    /// The hot swap with a state handoff pauses both versions (`docs/ABI.md`).
    Pause { ack: Sender<()> },
    /// Run `first`, then take jobs from the inbox again.
    Resume { first: Vec<Job> },
    /// Hand back every job waiting in the shared inbox (sent to a paused worker, so nothing
    /// else takes them).
    TakeQueued { reply: Sender<Vec<Job>> },
    /// Call `snapshot()` on this worker's instance.
    Snapshot {
        reply: Sender<Result<Vec<u8>, SnapshotError>>,
    },
    /// Call `restore(state)` on this worker's instance.
    Restore {
        state: Arc<[u8]>,
        reply: Sender<Result<(), SnapshotError>>,
    },
    /// Replace the instance if a call made inline left none.
    Renew,
}

/// How one instance's drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// `drain()` returned 0 (or the module has no `drain`).
    Done {
        /// Times `drain()` was called.
        polls: u32,
    },
    /// The drain timeout passed while the guest still asked for time.
    TimedOut {
        /// Times `drain()` was called.
        polls: u32,
        /// The last wait it asked for, in milliseconds.
        last_requested_ms: u32,
    },
    /// `drain()` failed (trap, deadline); the instance is closed anyway.
    Failed(CallError),
}

pub(crate) struct Worker {
    blueprint: Arc<Blueprint>,
    jobs: InboxReceiver,
    control: Receiver<Control>,
    slot: Arc<Slot>,
    /// Between `Pause` and `Resume`: orders only, no jobs (the slot says the same to inline
    /// callers).
    paused: bool,
    /// Most messages the next `on_messages` call may take, from the module's recent pace
    /// ([`BatchSize`]).
    batch: BatchSize,
}

/// How many queued messages one `on_messages` call takes: `max_message_batch`, fewer when the
/// module's recent calls were slow, so that a batch is expected to fill at most
/// 1/[`BATCH_DEADLINE_SHARE`] of the `message_deadline` it runs under. Every delivery, batched
/// or single, updates the pace; a module that turns fast again gets full batches back.
struct BatchSize {
    max: usize,
    /// The time a batch may be expected to take.
    budget: Duration,
    current: usize,
}

impl BatchSize {
    fn new(max: usize, deadline: Duration) -> BatchSize {
        let max = max.max(1);
        BatchSize {
            max,
            budget: deadline / BATCH_DEADLINE_SHARE,
            current: max,
        }
    }

    /// Counts a delivery of `count` messages that took `elapsed`.
    fn record(&mut self, count: usize, elapsed: Duration) {
        let per_message = elapsed / count.max(1) as u32;
        let fits = if per_message.is_zero() {
            self.max
        } else {
            usize::try_from(self.budget.as_nanos() / per_message.as_nanos()).unwrap_or(self.max)
        };
        self.current = fits.clamp(1, self.max);
    }

    fn get(&self) -> usize {
        self.current
    }
}

/// Creates `slot`'s instance (instantiate, `_initialize`, `init`) on the calling thread, then
/// starts the worker that serves it; an error when the instance could not be made.
///
/// The instance is made here rather than on the worker thread so the worker's stack only ever
/// holds calls: instantiation and the WASI environment's set-up run deep, and every page of
/// stack a thread has touched stays resident for its life (about 40 KiB per instance).
/// A [`Live`] may move to another thread between calls (see [`SlotState`]).
pub(crate) fn spawn(
    blueprint: Arc<Blueprint>,
    index: usize,
    jobs: InboxReceiver,
    control: Receiver<Control>,
    slot: Arc<Slot>,
) -> Result<std::thread::JoinHandle<()>, LoadError> {
    let name = blueprint.shared.name.clone();
    let live = Live::create(&blueprint)?;
    slot.lock().live = Some(live);
    let kept = slot.clone();
    std::thread::Builder::new()
        .name(format!("mod:{name}#{index}"))
        .spawn(move || {
            let kept = slot.clone();
            let limits = &blueprint.shared.limits;
            let batch = BatchSize::new(limits.max_message_batch, limits.message_deadline);
            Worker {
                blueprint,
                jobs,
                control,
                slot,
                paused: false,
                batch,
            }
            .run();
            // The worker is done (stopped, or its inbox closed): the instance goes with it,
            // not with the last handle to the module.
            kept.lock().live = None;
        })
        .map_err(|error| {
            kept.lock().live = None;
            LoadError::Host {
                module: name,
                reason: format!("cannot start a worker thread: {error}"),
            }
        })
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.paused {
                let order = self.control.recv().unwrap_or(Control::Stop);
                if !self.obey(order) {
                    return;
                }
                continue;
            }
            select! {
                recv(self.control) -> order => {
                    if !self.obey(order.unwrap_or(Control::Stop)) {
                        return;
                    }
                }
                recv(self.jobs.channel()) -> job => match job {
                    Ok(job) => {
                        let job = self.jobs.taken(job);
                        self.run_with_queued(job);
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Carries out one order; `false` means exit.
    fn obey(&mut self, order: Control) -> bool {
        match order {
            Control::Drain { until, reply } => {
                let outcome = self.drain(until);
                let _ = reply.send(outcome);
            }
            Control::Stop => {
                while let Ok(job) = self.jobs.try_recv() {
                    self.run_with_queued(job);
                }
                return false;
            }
            Control::Pause { ack } => {
                // Taking the lock waits for an inline call in progress.
                self.slot.lock().paused = true;
                self.paused = true;
                let _ = ack.send(());
            }
            Control::Resume { first } => {
                self.run_in_order(first);
                self.slot.lock().paused = false;
                self.paused = false;
            }
            Control::TakeQueued { reply } => {
                let queued: Vec<Job> = self.jobs.take_all();
                // Nobody waits any more (the caller timed out): run them here rather than
                // drop them.
                if let Err(returned) = reply.send(queued) {
                    self.run_in_order(returned.into_inner());
                }
            }
            Control::Snapshot { reply } => {
                let result = self.snapshot();
                let _ = reply.send(result);
            }
            Control::Restore { state, reply } => {
                let result = self.restore(&state);
                let _ = reply.send(result);
            }
            Control::Renew => {
                let mut state = self.slot.lock();
                if state.live.is_none() {
                    replace(&self.blueprint, &mut state.live);
                }
            }
        }
        true
    }

    fn unavailable(&self, export: &'static str, reason: &str) -> SnapshotError {
        SnapshotError {
            module: self.blueprint.shared.name.clone(),
            export,
            kind: SnapshotErrorKind::Unavailable {
                reason: reason.to_owned(),
            },
        }
    }

    /// `snapshot()` on the instance as it is: never on a fresh replacement, whose state
    /// would be empty.
    fn snapshot(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let blueprint = self.blueprint.clone();
        let mut state = self.slot.lock();
        let Some(live) = state.live.as_mut() else {
            return Err(self.unavailable(
                SNAPSHOT_EXPORT,
                "the instance is gone (a failed drain or call closed it), its state with it",
            ));
        };
        match live.snapshot(&blueprint) {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(code)) => Err(SnapshotError {
                module: blueprint.shared.name.clone(),
                export: SNAPSHOT_EXPORT,
                kind: SnapshotErrorKind::Failed { code },
            }),
            Err(error) => {
                after_failure(&blueprint, &mut state.live, &error, true);
                Err(SnapshotError::from_call(
                    &blueprint.shared.name,
                    SNAPSHOT_EXPORT,
                    error,
                ))
            }
        }
    }

    fn restore(&mut self, saved: &[u8]) -> Result<(), SnapshotError> {
        let blueprint = self.blueprint.clone();
        let mut state = self.slot.lock();
        let result = live(&blueprint, &mut state.live, RESTORE_EXPORT)
            .and_then(|live| live.restore(&blueprint, saved));
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(SnapshotError {
                module: blueprint.shared.name.clone(),
                export: RESTORE_EXPORT,
                kind: SnapshotErrorKind::Refused { code },
            }),
            Err(error) => {
                after_failure(&blueprint, &mut state.live, &error, true);
                Err(SnapshotError::from_call(
                    &blueprint.shared.name,
                    RESTORE_EXPORT,
                    error,
                ))
            }
        }
    }

    /// Runs `job`. A message for a module that takes batches (`on_messages`) takes with it
    /// the messages queued right behind it, up to the batch size, and they go to the guest in
    /// one call; the first job that is not a message ends the run and runs after it. So the
    /// inbox's order holds, and the worker keeps no job once this returns: a `Pause`, a
    /// `TakeQueued` or a drain sees every job it has not run still in the inbox.
    fn run_with_queued(&mut self, job: Job) {
        let blueprint = &self.blueprint;
        let limit = self.batch.get();
        let Job::Message(first) = job else {
            return self.run_job(job);
        };
        if !blueprint.shape.has_on_messages || limit < 2 {
            return self.run_job(Job::Message(first));
        }
        let mut messages = vec![first];
        let mut next = None;
        while messages.len() < limit {
            match self.jobs.try_recv() {
                Ok(Job::Message(message)) => messages.push(message),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.deliver(messages);
        if let Some(job) = next {
            self.run_job(job);
        }
    }

    /// Runs `jobs` in order (jobs handed over from the version this one replaces), runs of
    /// messages in batches as [`Worker::run_with_queued`] does.
    fn run_in_order(&mut self, jobs: Vec<Job>) {
        let batches = self.blueprint.shape.has_on_messages;
        let mut run = Vec::new();
        for job in jobs {
            match job {
                Job::Message(message) if batches => {
                    run.push(message);
                    if run.len() >= self.batch.get() {
                        self.deliver(std::mem::take(&mut run));
                    }
                }
                other => {
                    if !run.is_empty() {
                        self.deliver(std::mem::take(&mut run));
                    }
                    self.run_job(other);
                }
            }
        }
        if !run.is_empty() {
            self.deliver(run);
        }
    }

    fn run_job(&mut self, job: Job) {
        match job {
            Job::Handle { request, reply } => {
                let mut state = self.slot.lock();
                let result = handle(&self.blueprint, &mut state.live, request, true);
                drop(state);
                let _ = reply.send(result);
            }
            Job::Message(message) => {
                let counters = &self.blueprint.shared.counters;
                Shared::bump(&counters.messages);
                if self.blueprint.shape.has_on_message {
                    self.deliver_one(message);
                }
            }
        }
    }

    /// One `on_message` call (the message is already counted in `messages`).
    fn deliver_one(&mut self, message: Message) {
        let blueprint = &self.blueprint;
        let started = Instant::now();
        let mut state = self.slot.lock();
        let result = live(blueprint, &mut state.live, "on_message")
            .and_then(|live| live.on_message(blueprint, message));
        if let Err(error) = result {
            Shared::bump(&blueprint.shared.counters.message_errors);
            tracing::warn!(module = %blueprint.shared.name, version = %blueprint.shared.version, "on_message failed: {error}");
            after_failure(blueprint, &mut state.live, &error, true);
        }
        drop(state);
        self.batch.record(1, started.elapsed());
    }

    /// Hands `messages` to the guest in order: runs of them that fit [`BATCH_BYTES`] in one
    /// `on_messages` call each, a run of one (or a message too large for a batch) to
    /// `on_message`.
    ///
    /// When a batch call fails (trap, deadline, bad pointer), the messages before the one the
    /// guest was handling count as delivered, that one as failed (`message_errors`), and the
    /// rest go on to the fresh instance: each message is handled at most once, and none is
    /// dropped. When the guest failed before its first handler (say its allocator trapped on
    /// the batch), every message of the batch goes to `on_message` one by one instead.
    fn deliver(&mut self, messages: Vec<Message>) {
        let blueprint = self.blueprint.clone();
        let counters = &blueprint.shared.counters;
        counters
            .messages
            .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let budget = BATCH_BYTES.min(blueprint.shared.limits.max_message_bytes);
        let mut queue = std::collections::VecDeque::from(messages);
        let mut batch = MessageBatch::new();
        let mut taken = Vec::new();
        while let Some(first) = queue.pop_front() {
            batch.clear();
            taken.clear();
            batch.push(&first);
            taken.push(first);
            while let Some(message) = queue.front() {
                if batch.as_bytes().len() + message.encoded_len() > budget {
                    break;
                }
                batch.push(message);
                taken.extend(queue.pop_front());
            }
            if taken.len() == 1 || batch.as_bytes().len() > budget {
                for message in taken.drain(..) {
                    self.deliver_one(message);
                }
                continue;
            }
            Shared::bump(&counters.message_batches);
            let started = Instant::now();
            let mut state = self.slot.lock();
            let result = match live(&blueprint, &mut state.live, ON_MESSAGES_EXPORT) {
                Ok(live) => live.on_messages(&blueprint, batch.as_bytes(), taken.len()),
                Err(error) => Err(BatchFailure {
                    error,
                    handling: None,
                }),
            };
            let elapsed = started.elapsed();
            let Err(BatchFailure { error, handling }) = result else {
                drop(state);
                self.batch.record(taken.len(), elapsed);
                continue;
            };
            after_failure(&blueprint, &mut state.live, &error, true);
            drop(state);
            let count = taken.len();
            let shared = &blueprint.shared;
            match handling {
                Some(index) => {
                    Shared::bump(&counters.message_errors);
                    self.batch.record(index + 1, elapsed);
                    tracing::warn!(
                        module = %shared.name,
                        version = %shared.version,
                        topic = %taken[index].topic,
                        "on_messages failed on message {} of {count}: {error}; {index} before it were delivered, the {} after it go to the next call",
                        index + 1,
                        count - index - 1,
                    );
                    for message in taken.drain(index + 1..).rev() {
                        queue.push_front(message);
                    }
                }
                None => {
                    self.batch.record(1, elapsed);
                    tracing::warn!(
                        module = %shared.name,
                        version = %shared.version,
                        "on_messages failed before its first message: {error}; the {count} messages go to on_message one by one",
                    );
                    for message in taken.drain(..) {
                        self.deliver_one(message);
                    }
                }
            }
        }
    }

    /// Serves jobs until `until` (or until the inbox stays empty that long).
    fn serve_until(&mut self, until: Instant) {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.jobs.recv_timeout(left) {
                Ok(job) => self.run_with_queued(job),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    return;
                }
            }
        }
    }

    fn drain(&mut self, until: Instant) -> DrainOutcome {
        while let Ok(job) = self.jobs.try_recv() {
            self.run_with_queued(job);
        }
        let blueprint = self.blueprint.clone();
        if !blueprint.shape.has_drain {
            return DrainOutcome::Done { polls: 0 };
        }
        let mut polls = 0;
        loop {
            polls += 1;
            let mut state = self.slot.lock();
            let outcome =
                live(&blueprint, &mut state.live, "drain").and_then(|live| live.drain(&blueprint));
            let wait = match outcome {
                Ok(0) => return DrainOutcome::Done { polls },
                Ok(wait) => wait,
                Err(error) => {
                    // The instance is about to close: count the failure, don't replace it.
                    let counters = &blueprint.shared.counters;
                    match &error.kind {
                        CallErrorKind::Trap { .. } => Shared::bump(&counters.traps),
                        CallErrorKind::Deadline { .. } => Shared::bump(&counters.timeouts),
                        _ => {}
                    }
                    state.live = None;
                    return DrainOutcome::Failed(error);
                }
            };
            drop(state);
            let wake = Instant::now() + Duration::from_millis(u64::from(wait));
            self.serve_until(wake.min(until));
            if Instant::now() >= until {
                return DrainOutcome::TimedOut {
                    polls,
                    last_requested_ms: wait,
                };
            }
        }
    }
}

/// The live instance, re-created if a failed replacement left none. `export` names the call
/// that needs it, for the error.
fn live<'a>(
    blueprint: &Blueprint,
    live: &'a mut Option<Live>,
    export: &'static str,
) -> Result<&'a mut Live, CallError> {
    if live.is_none() {
        replace(blueprint, live);
    }
    live.as_mut().ok_or(CallError::new(
        blueprint.shared.name.clone(),
        export,
        CallErrorKind::InstanceGone {
            reason: "re-creating the instance failed (see the log)".into(),
        },
    ))
}

fn replace(blueprint: &Blueprint, live: &mut Option<Live>) {
    *live = None;
    match Live::create(blueprint) {
        Ok(fresh) => {
            Shared::bump(&blueprint.shared.counters.replacements);
            *live = Some(fresh);
        }
        Err(error) => {
            tracing::error!(module = %blueprint.shared.name, version = %blueprint.shared.version, "replacing the instance failed: {error}");
        }
    }
}

/// Counts a failure and, when the guest's state can't be trusted, drops the instance:
/// replaced at once (`replace_now`), or left for the worker's `Renew`.
fn after_failure(
    blueprint: &Blueprint,
    live: &mut Option<Live>,
    error: &CallError,
    replace_now: bool,
) {
    let counters = &blueprint.shared.counters;
    match error.kind {
        CallErrorKind::Trap { .. } => Shared::bump(&counters.traps),
        CallErrorKind::Deadline { .. } => Shared::bump(&counters.timeouts),
        _ => {}
    }
    if error.replaces_instance() {
        let shared = &blueprint.shared;
        let backtrace: Vec<String> = error.backtrace().iter().map(ToString::to_string).collect();
        if backtrace.is_empty() {
            tracing::warn!(module = %shared.name, version = %shared.version, "{error}; replacing the instance");
        } else {
            tracing::warn!(module = %shared.name, version = %shared.version, backtrace = %backtrace.join("; "), "{error}; replacing the instance");
        }
        if replace_now {
            replace(blueprint, live);
        } else {
            *live = None;
        }
    }
}

/// One `handle` call, counted, timed for [`Inline`], with a failure handled as
/// [`after_failure`] says.
fn handle(
    blueprint: &Blueprint,
    slot_live: &mut Option<Live>,
    request: HttpRequest,
    replace_now: bool,
) -> Result<HttpResponse, CallError> {
    Shared::bump(&blueprint.shared.counters.requests);
    let started = Instant::now();
    let result =
        live(blueprint, slot_live, "handle").and_then(|live| live.handle(blueprint, request));
    blueprint.inline.record(started.elapsed());
    if let Err(error) = &result {
        Shared::bump(&blueprint.shared.counters.request_errors);
        after_failure(blueprint, slot_live, error, replace_now);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_run_inline_only_after_a_streak_of_short_calls() {
        let inline = Inline::new(true);
        for _ in 0..INLINE_STREAK - 1 {
            inline.record(Duration::from_micros(10));
        }
        assert!(!inline.ready(), "one call short of the streak");
        inline.record(Duration::from_micros(10));
        assert!(inline.ready());
        inline.record(INLINE_BUDGET + Duration::from_micros(1));
        assert!(
            !inline.ready(),
            "one slow call sends the module back to its worker"
        );
        for _ in 0..INLINE_STREAK {
            inline.record(INLINE_BUDGET);
        }
        assert!(inline.ready(), "calls at the budget count as short");
    }

    #[test]
    fn batches_shrink_when_messages_are_slow_and_grow_back() {
        // A 4 s deadline: a batch may be expected to take 1 s.
        let mut size = BatchSize::new(256, Duration::from_secs(4));
        assert_eq!(size.get(), 256);
        size.record(10, Duration::from_millis(100));
        assert_eq!(size.get(), 100, "10 ms a message: 100 fit in 1 s");
        size.record(3, Duration::from_secs(6));
        assert_eq!(size.get(), 1, "2 s a message: one at a time");
        size.record(1, Duration::from_micros(5));
        assert_eq!(
            size.get(),
            256,
            "fast again: full batches, never more than the limit"
        );
        size.record(256, Duration::ZERO);
        assert_eq!(size.get(), 256);
        assert_eq!(BatchSize::new(0, Duration::from_secs(5)).get(), 1);
    }

    #[test]
    fn a_module_that_waits_never_runs_inline() {
        let inline = Inline::new(false);
        for _ in 0..INLINE_STREAK * 2 {
            inline.record(Duration::from_micros(1));
        }
        assert!(!inline.ready());
    }
}
