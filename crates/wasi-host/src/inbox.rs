//! A module's inbox: the bounded queue of jobs (HTTP requests, bus messages) its instances
//! take from, whose memory follows what is queued rather than its capacity.
//!
//! A bounded crossbeam channel allocates and initialises a slot per unit of capacity up front:
//! with the default 1024 jobs of ~130 bytes, 136 KiB per loaded module, idle or not. This is
//! an unbounded channel (blocks of 31 slots, allocated as jobs arrive and freed as they are
//! taken) behind a count of queued jobs that enforces the same bound: a send is refused as
//! full exactly when `capacity` jobs are queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendError, Sender, TryRecvError, TrySendError,
};

use crate::worker::Job;

/// A new inbox holding at most `capacity` jobs.
pub(crate) fn bounded(capacity: usize) -> (InboxSender, InboxReceiver) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        InboxSender {
            sender,
            queued: queued.clone(),
            capacity,
        },
        InboxReceiver { receiver, queued },
    )
}

/// The sending side: every caller and bus mailbox of the module.
#[derive(Clone)]
pub(crate) struct InboxSender {
    sender: Sender<Job>,
    /// Jobs sent (or being sent) and not yet taken; never above `capacity`.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl InboxSender {
    /// Queues `job` unless `capacity` jobs are queued already or every receiver is gone.
    // crossbeam's own `try_send` signature: a refused job comes back whole, not boxed.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(job));
        }
        self.sender.send(job).map_err(|SendError(job)| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(job)
        })
    }

    /// Most jobs it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a send would be refused as full now.
    pub(crate) fn is_full(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= self.capacity
    }

    /// Jobs queued now (a send in progress counts).
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether nothing is queued (a send in progress counts as queued).
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }
}

/// The receiving side, shared by the module's workers. Every job taken out must be counted
/// as taken: the methods here do it; a job received from [`InboxReceiver::channel`] in a
/// `select!` goes through [`InboxReceiver::taken`].
#[derive(Clone)]
pub(crate) struct InboxReceiver {
    receiver: Receiver<Job>,
    queued: Arc<AtomicUsize>,
}

impl InboxReceiver {
    /// The channel, for `crossbeam_channel::select!`; pass what it yields to
    /// [`InboxReceiver::taken`].
    pub(crate) fn channel(&self) -> &Receiver<Job> {
        &self.receiver
    }

    /// Counts a job received from [`InboxReceiver::channel`] as taken.
    pub(crate) fn taken(&self, job: Job) -> Job {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        job
    }

    pub(crate) fn try_recv(&self) -> Result<Job, TryRecvError> {
        self.receiver.try_recv().map(|job| self.taken(job))
    }

    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Job, RecvTimeoutError> {
        self.receiver
            .recv_timeout(timeout)
            .map(|job| self.taken(job))
    }

    /// Every job queued now, in order.
    pub(crate) fn take_all(&self) -> Vec<Job> {
        std::iter::from_fn(|| self.try_recv().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Job {
        Job::Message(binary::Message::event("topic", b"payload".to_vec()))
    }

    #[test]
    fn the_bound_holds_and_taking_a_job_makes_room() {
        let (sender, receiver) = bounded(2);
        assert!(sender.is_empty());
        sender.try_send(message()).unwrap();
        sender.try_send(message()).unwrap();
        assert!(sender.is_full());
        assert!(matches!(
            sender.try_send(message()),
            Err(TrySendError::Full(_))
        ));
        assert!(receiver.try_recv().is_ok());
        assert!(!sender.is_full());
        sender.try_send(message()).unwrap();
        let job = receiver.channel().recv().unwrap();
        receiver.taken(job);
        assert_eq!(receiver.take_all().len(), 1);
        assert!(sender.is_empty());
        assert!(matches!(receiver.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn a_closed_inbox_refuses_and_keeps_its_count() {
        let (sender, receiver) = bounded(1);
        drop(receiver);
        assert!(matches!(
            sender.try_send(message()),
            Err(TrySendError::Disconnected(_))
        ));
        assert!(sender.is_empty(), "a refused job is not counted");
    }
}
