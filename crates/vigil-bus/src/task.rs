//! The task vocabulary every task transport shares (the embedded queue and RabbitMQ
//! alike): what is queued, why a task was dead-lettered, why a publish was refused, and
//! the counts that always balance.

use vigil_core::Nanos;

/// Highest priority accepted (RabbitMQ `x-max-priority`).
pub const MAX_PRIORITY: u8 = 9;

/// A task as queued: opaque payload plus what the queue needs to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub task_id: String,
    pub priority: u8,
    /// The task is worthless after this time (vehicle clock).
    pub deadline_ns: Nanos,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadReason {
    /// The deadline had passed when a consumer took it.
    Expired,
    /// A consumer rejected it without requeue.
    Rejected,
    /// It was redelivered `max_attempts` times without an ack.
    MaxAttempts,
    /// The queue was full and a more urgent task took its place.
    Displaced,
}

/// Why a queue refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("task queue is full ({capacity} tasks): publish refused, retry later or shed load")]
    Full { capacity: usize },
    #[error("priority {0} is above the maximum {MAX_PRIORITY}")]
    Priority(u8),
    #[error("unknown delivery tag {0} (already acked, nacked or recovered)")]
    UnknownTag(u64),
    #[error("the task queue lock was poisoned by a panicking thread")]
    Poisoned,
}

/// Counters; `published == acked + dead_lettered + queued + unacked` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub published: u64,
    pub refused_full: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub queued: u64,
    pub unacked: u64,
    /// Most tasks ever queued at once (never above the capacity).
    pub peak_queued: u64,
}
