//! The worker thread that owns one instance: it takes jobs from the module's inbox one at a
//! time (so an instance never runs two calls at once), replaces its instance after a trap or
//! a deadline, and runs the drain protocol when told to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::{HttpRequest, HttpResponse, Message};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};

use crate::abi::{RESTORE_EXPORT, SNAPSHOT_EXPORT};
use crate::error::{CallError, CallErrorKind, LoadError, SnapshotError, SnapshotErrorKind};
use crate::instance::{Blueprint, Live};
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
    jobs: Receiver<Job>,
    control: Receiver<Control>,
    live: Option<Live>,
    /// Between `Pause` and `Resume`: orders only, no jobs.
    paused: bool,
}

/// Starts a worker; returns once its instance has run `init` (or failed to).
pub(crate) fn spawn(
    blueprint: Arc<Blueprint>,
    index: usize,
    jobs: Receiver<Job>,
    control: Receiver<Control>,
) -> Result<std::thread::JoinHandle<()>, LoadError> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let name = blueprint.shared.name.clone();
    let thread_name = format!("mod:{name}#{index}");
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let live = match Live::create(&blueprint) {
                Ok(live) => {
                    let _ = ready_tx.send(Ok(()));
                    live
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            Worker {
                blueprint,
                jobs,
                control,
                live: Some(live),
                paused: false,
            }
            .run();
        })
        .map_err(|error| LoadError::Host {
            module: name.clone(),
            reason: format!("cannot start a worker thread: {error}"),
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(LoadError::Host {
                module: name,
                reason: "worker thread died during init".into(),
            })
        }
    }
}

impl Worker {
    fn shared(&self) -> &Shared {
        &self.blueprint.shared
    }

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
                recv(self.jobs) -> job => match job {
                    Ok(job) => self.run_job(job),
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
                    self.run_job(job);
                }
                return false;
            }
            Control::Pause { ack } => {
                self.paused = true;
                let _ = ack.send(());
            }
            Control::Resume { first } => {
                self.paused = false;
                for job in first {
                    self.run_job(job);
                }
            }
            Control::TakeQueued { reply } => {
                let queued: Vec<Job> = self.jobs.try_iter().collect();
                // Nobody waits any more (the caller timed out): run them here rather than
                // drop them.
                if let Err(returned) = reply.send(queued) {
                    for job in returned.into_inner() {
                        self.run_job(job);
                    }
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
        }
        true
    }

    fn unavailable(&self, export: &'static str, reason: &str) -> SnapshotError {
        SnapshotError {
            module: self.shared().name.clone(),
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
        let Some(live) = self.live.as_mut() else {
            return Err(self.unavailable(
                SNAPSHOT_EXPORT,
                "the instance is gone (a failed drain closed it), its state with it",
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
                self.after_failure(&error);
                Err(SnapshotError::from_call(
                    &blueprint.shared.name,
                    SNAPSHOT_EXPORT,
                    error,
                ))
            }
        }
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), SnapshotError> {
        let blueprint = self.blueprint.clone();
        let result = self
            .live(RESTORE_EXPORT)
            .and_then(|live| live.restore(&blueprint, state));
        match result {
            Ok(0) => Ok(()),
            Ok(code) => Err(SnapshotError {
                module: blueprint.shared.name.clone(),
                export: RESTORE_EXPORT,
                kind: SnapshotErrorKind::Refused { code },
            }),
            Err(error) => {
                self.after_failure(&error);
                Err(SnapshotError::from_call(
                    &blueprint.shared.name,
                    RESTORE_EXPORT,
                    error,
                ))
            }
        }
    }

    /// The live instance, re-created if a failed replacement left none.
    /// `export` names the call that needs it, for the error.
    fn live(&mut self, export: &'static str) -> Result<&mut Live, CallError> {
        if self.live.is_none() {
            self.replace();
        }
        let module = self.shared().name.clone();
        self.live.as_mut().ok_or(CallError::new(
            module,
            export,
            CallErrorKind::InstanceGone {
                reason: "re-creating the instance failed (see the log)".into(),
            },
        ))
    }

    fn replace(&mut self) {
        self.live = None;
        match Live::create(&self.blueprint) {
            Ok(live) => {
                Shared::bump(&self.shared().counters.replacements);
                self.live = Some(live);
            }
            Err(error) => {
                tracing::error!(module = %self.shared().name, version = %self.shared().version, "replacing the instance failed: {error}");
            }
        }
    }

    /// Counts a failure and replaces the instance when the guest's state can't be trusted.
    fn after_failure(&mut self, error: &CallError) {
        let counters = &self.blueprint.shared.counters;
        match error.kind {
            CallErrorKind::Trap { .. } => Shared::bump(&counters.traps),
            CallErrorKind::Deadline { .. } => Shared::bump(&counters.timeouts),
            _ => {}
        }
        if error.replaces_instance() {
            let backtrace: Vec<String> =
                error.backtrace().iter().map(ToString::to_string).collect();
            if backtrace.is_empty() {
                tracing::warn!(module = %self.shared().name, version = %self.shared().version, "{error}; replacing the instance");
            } else {
                tracing::warn!(module = %self.shared().name, version = %self.shared().version, backtrace = %backtrace.join("; "), "{error}; replacing the instance");
            }
            self.replace();
        }
    }

    fn run_job(&mut self, job: Job) {
        let blueprint = self.blueprint.clone();
        match job {
            Job::Handle { request, reply } => {
                Shared::bump(&blueprint.shared.counters.requests);
                let result = self
                    .live("handle")
                    .and_then(|live| live.handle(&blueprint, request));
                if let Err(error) = &result {
                    Shared::bump(&blueprint.shared.counters.request_errors);
                    self.after_failure(error);
                }
                let _ = reply.send(result);
            }
            Job::Message(message) => {
                Shared::bump(&blueprint.shared.counters.messages);
                if !blueprint.shape.has_on_message {
                    return;
                }
                let result = self
                    .live("on_message")
                    .and_then(|live| live.on_message(&blueprint, message));
                if let Err(error) = result {
                    Shared::bump(&blueprint.shared.counters.message_errors);
                    tracing::warn!(module = %blueprint.shared.name, version = %blueprint.shared.version, "on_message failed: {error}");
                    self.after_failure(&error);
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
                Ok(job) => self.run_job(job),
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
            self.run_job(job);
        }
        let blueprint = self.blueprint.clone();
        if !blueprint.shape.has_drain {
            return DrainOutcome::Done { polls: 0 };
        }
        let mut polls = 0;
        loop {
            polls += 1;
            let wait = match self.live("drain").and_then(|live| live.drain(&blueprint)) {
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
                    self.live = None;
                    return DrainOutcome::Failed(error);
                }
            };
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
