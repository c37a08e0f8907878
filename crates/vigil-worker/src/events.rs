//! The worker's internal events, in the vector style: each counts itself in
//! [`WorkerStats`] and logs in one call, so a counter and its log line cannot drift apart.

use std::fmt::Display;
use std::sync::atomic::Ordering;

use vigil_bus::Settle;

use crate::WorkerStats;

/// Something that happened inside a worker: counted, then logged.
pub(crate) trait InternalEvent {
    fn emit(self, stats: &WorkerStats);
}

/// A task that can never be processed (bad frame reference, bad box): dead-lettered.
pub(crate) struct TaskMalformed<'a> {
    pub worker: &'a str,
    pub task: &'a str,
    pub error: &'a dyn Display,
}

impl InternalEvent for TaskMalformed<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.malformed.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(worker = %self.worker, task = %self.task, error = %self.error, "malformed task; dead-lettered");
    }
}

/// A task its publisher had no right to send (another vehicle's credentials, nobody
/// vouched): dead-lettered unanswered.
pub(crate) struct TaskUntrusted<'a> {
    pub worker: &'a str,
    pub task: &'a str,
    pub publisher: Option<&'a str>,
    pub error: &'a dyn Display,
}

impl InternalEvent for TaskUntrusted<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.untrusted.fetch_add(1, Ordering::SeqCst);
        let publisher = self.publisher.unwrap_or("-");
        tracing::warn!(worker = %self.worker, task = %self.task, publisher, error = %self.error, "untrusted task; dead-lettered");
    }
}

/// A task that failed for a reason that may pass (the frame store slow): requeued.
pub(crate) struct TaskRetried<'a> {
    pub worker: &'a str,
    pub task: &'a str,
    pub attempt: u32,
    pub error: &'a dyn Display,
}

impl InternalEvent for TaskRetried<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.rejected.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(worker = %self.worker, task = %self.task, attempt = self.attempt, error = %self.error,
            "cannot process task; requeued for a retry");
    }
}

/// A reply the transport cannot carry (a name over the broker's limit): dead-lettered.
pub(crate) struct ReplyUncarriable<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for ReplyUncarriable<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.malformed.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(error = %self.error, "the reply cannot be carried; task dead-lettered");
    }
}

/// A panic caught mid-task: the task is requeued and the worker restarts.
pub(crate) struct WorkerPanicked<'a> {
    pub worker: &'a str,
    pub task: &'a str,
    pub stage: &'a str,
}

impl InternalEvent for WorkerPanicked<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.panics.fetch_add(1, Ordering::SeqCst);
        tracing::error!(worker = %self.worker, task = %self.task, stage = self.stage,
            "worker panicked mid-task; requeued, restarting");
    }
}

/// The supervisor restarts a stopped worker.
pub(crate) struct WorkerRestarted<'a> {
    pub worker: &'a str,
}

impl InternalEvent for WorkerRestarted<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.restarts.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(worker = %self.worker, "restarting after a failure");
    }
}

/// Settling a delivery failed; the transport handed it back to the broker, which
/// redelivers it.
pub(crate) struct SettleFailed<'a> {
    pub task: &'a str,
    pub how: Settle,
    pub error: &'a dyn Display,
}

impl InternalEvent for SettleFailed<'_> {
    fn emit(self, stats: &WorkerStats) {
        stats.settle_failures.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(task = %self.task, how = ?self.how, error = %self.error, "settling a delivery failed");
    }
}
