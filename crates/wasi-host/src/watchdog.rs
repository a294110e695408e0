//! The CPU limit: one watchdog thread per host interrupts a guest call that runs past its
//! deadline, using wasmer's `experimental-host-interrupt` (a signal to the worker thread).
//!
//! Chosen over fuel metering (`wasmer-middlewares`) because metering costs +50–75% on
//! compute-heavy guests and needs an engine per compile, while an interrupt costs a map
//! insert/remove per call and stops a spinning guest within a millisecond. An interrupt is
//! only seen when control is in wasm code. A guest sleeping in WASI (`poll_oneoff`,
//! `thread_sleep`, a futex wait) sleeps through [`DeadlineTasks::sleep_now`], which wakes
//! when the call's deadline fires, so the next interrupt lands in wasm code; our own imports
//! bound their waits themselves.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmer::Interrupter;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::runtime::task_manager::{TaskWasm, VirtualTaskManager};
use wasmer_wasix::{WasiThreadError, runtime::SpawnType};

/// How often an expired call is interrupted again while it keeps running (a signal can be
/// missed when it lands between entering and running wasm code).
const RETRY: Duration = Duration::from_millis(20);
/// How long after its deadline fires a call may still end through a host import (which
/// refuses to run once the deadline fired, see [`deadline_fired`]) before it is interrupted
/// with a signal.
///
/// The signal is for guests spinning in wasm code. It must not land while the thread is in
/// wasmer's host-call wrapper: that wrapper runs on the wasm stack and looks the store up
/// under a lock before switching stacks, and the trap handler would unwind the guest out of
/// that lock or out of `malloc` (seen as a deadlock in `malloc` and as heap corruption under
/// a flood of import calls). A guest that calls imports ends at its next import instead; only
/// a guest that made none for this long gets the signal.
const GRACE: Duration = Duration::from_millis(10);
/// The idle wake-up period; arming a deadline later than the next wake-up needs no notify.
const IDLE: Duration = Duration::from_millis(100);

struct Armed {
    deadline: Instant,
    interrupter: Interrupter,
    fired: Arc<Fired>,
}

/// Whether the deadline of the call running on this thread has fired. Host imports check it
/// first and fail the call instead of running, so an import-heavy guest stops without a
/// signal (see [`GRACE`]).
pub(crate) fn deadline_fired() -> bool {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|fired| fired.is_set())
    })
}

/// Whether a call's deadline has fired, and a way to wake the call's WASI sleeps when it does.
#[derive(Default)]
struct Fired {
    flag: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Fired {
    fn fire(&self) {
        self.flag.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

thread_local! {
    /// The deadline armed on this thread (a module worker runs one call at a time).
    static CURRENT: RefCell<Option<Arc<Fired>>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct State {
    next_token: u64,
    armed: HashMap<u64, Armed>,
    /// When the watchdog thread will next look, if it is waiting.
    sleeping_until: Option<Instant>,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

/// Handle to the watchdog thread; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Watchdog {
    inner: Arc<Inner>,
    _stopper: Arc<Stopper>,
}

struct Stopper(Arc<Inner>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shutdown = true;
        self.0.wake.notify_all();
    }
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

/// One armed deadline; dropping it disarms.
pub(crate) struct Guard {
    token: u64,
    fired: Arc<Fired>,
    inner: Arc<Inner>,
}

impl Guard {
    /// Disarms and reports whether the deadline fired.
    pub(crate) fn disarm(self) -> bool {
        self.fired.is_set()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if current
                .as_ref()
                .is_some_and(|armed| Arc::ptr_eq(armed, &self.fired))
            {
                *current = None;
            }
        });
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .armed
            .remove(&self.token);
    }
}

impl Watchdog {
    pub(crate) fn start() -> std::io::Result<Watchdog> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread_inner = inner.clone();
        std::thread::Builder::new()
            .name("modhost-watchdog".into())
            .spawn(move || run(&thread_inner))?;
        Ok(Watchdog {
            _stopper: Arc::new(Stopper(inner.clone())),
            inner,
        })
    }

    /// Arms `deadline` for the store behind `interrupter`, whose guest runs on this thread.
    pub(crate) fn arm(&self, deadline: Instant, interrupter: Interrupter) -> Guard {
        let fired = Arc::new(Fired::default());
        CURRENT.with(|current| *current.borrow_mut() = Some(fired.clone()));
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let token = state.next_token;
        state.next_token += 1;
        state.armed.insert(
            token,
            Armed {
                deadline,
                interrupter,
                fired: fired.clone(),
            },
        );
        let notify = state.sleeping_until.is_none_or(|until| deadline < until);
        drop(state);
        if notify {
            self.inner.wake.notify_one();
        }
        Guard {
            token,
            fired,
            inner: self.inner.clone(),
        }
    }
}

fn run(inner: &Inner) {
    let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        let mut next = now + IDLE;
        for armed in state.armed.values_mut() {
            if armed.deadline <= now {
                if armed.fired.is_set() {
                    // Still running GRACE after the fire: a guest spinning in wasm code.
                    armed.interrupter.interrupt();
                    armed.deadline = now + RETRY;
                } else {
                    armed.fired.fire();
                    armed.deadline = now + GRACE;
                }
            }
            next = next.min(armed.deadline);
        }
        state.sleeping_until = Some(next);
        let wait = next.saturating_duration_since(Instant::now());
        state = inner
            .wake
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        state.sleeping_until = None;
    }
}

/// The WASI runtime's task manager: tokio's, except that a sleep started by a guest call
/// (`poll_oneoff`, `thread_sleep`, futex waits) ends early when that call's deadline fires.
/// The guest then runs wasm code again, where the watchdog's interrupt stops it, instead of
/// holding its instance for as long as it asked to sleep.
#[derive(Debug)]
pub(crate) struct DeadlineTasks(pub(crate) TokioTaskManager);

impl VirtualTaskManager for DeadlineTasks {
    fn build_memory(
        &self,
        store: &mut wasmer::StoreMut<'_>,
        spawn_type: SpawnType,
    ) -> Result<Option<wasmer::Memory>, WasiThreadError> {
        self.0.build_memory(store, spawn_type)
    }

    fn sleep_now(&self, time: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let sleep = self.0.sleep_now(time);
        let Some(fired) = CURRENT.with(|current| current.borrow().clone()) else {
            return sleep;
        };
        Box::pin(async move {
            let woken = fired.wake.notified();
            // Checked after `notified()` exists: a fire in between is not missed (and the
            // watchdog fires again every `RETRY` while the call runs, in any case).
            if fired.is_set() {
                return;
            }
            tokio::select! {
                () = sleep => {}
                () = woken => {}
            }
        })
    }

    fn task_shared(
        &self,
        task: Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>,
    ) -> Result<(), WasiThreadError> {
        self.0.task_shared(task)
    }

    fn task_wasm(&self, task: TaskWasm) -> Result<(), WasiThreadError> {
        self.0.task_wasm(task)
    }

    fn task_dedicated(
        &self,
        task: Box<dyn FnOnce() + Send + 'static>,
    ) -> Result<(), WasiThreadError> {
        self.0.task_dedicated(task)
    }

    fn thread_parallelism(&self) -> Result<usize, WasiThreadError> {
        self.0.thread_parallelism()
    }

    fn spawn_with_module(
        &self,
        module: wasmer::Module,
        task: Box<dyn FnOnce(wasmer::Module) + Send + 'static>,
    ) -> Result<(), WasiThreadError> {
        self.0.spawn_with_module(module, task)
    }
}
