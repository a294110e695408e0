//! The CPU limit: one watchdog thread per host interrupts a guest call that runs past its
//! deadline, using wasmer's `experimental-host-interrupt` (a signal to the worker thread).
//!
//! Chosen over fuel metering (`wasmer-middlewares`) because metering costs +50–75% on
//! compute-heavy guests and needs an engine per compile, while an interrupt costs a map
//! insert/remove per call and stops a spinning guest within a millisecond. An interrupt is
//! only seen when control is in wasm code: a guest blocked inside a host import is stopped
//! when the import returns (our imports bound their own waits).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmer::Interrupter;

/// How often an expired call is interrupted again while it keeps running (a signal can be
/// missed when it lands between entering and running wasm code).
const RETRY: Duration = Duration::from_millis(20);
/// The idle wake-up period; arming a deadline later than the next wake-up needs no notify.
const IDLE: Duration = Duration::from_millis(100);

struct Armed {
    deadline: Instant,
    interrupter: Interrupter,
    fired: Arc<AtomicBool>,
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
    fired: Arc<AtomicBool>,
    inner: Arc<Inner>,
}

impl Guard {
    /// Disarms and reports whether the deadline fired.
    pub(crate) fn disarm(self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
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

    /// Arms `deadline` for the store behind `interrupter`.
    pub(crate) fn arm(&self, deadline: Instant, interrupter: Interrupter) -> Guard {
        let fired = Arc::new(AtomicBool::new(false));
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
                armed.fired.store(true, Ordering::Release);
                armed.interrupter.interrupt();
                armed.deadline = now + RETRY;
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
