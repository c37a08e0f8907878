//! Embedded transports: in-process stand-ins with the broker semantics Vigil relies on,
//! so the whole pipeline runs on a laptop. They are a first-class mode with their own
//! tests, not mocks of the brokers.

pub mod frames;
pub mod log;
pub mod playback;
pub mod recorder;
pub mod task_queue;
pub mod transport;

pub use frames::MemoryFrameStore;
pub use log::EmbeddedLog;
pub use task_queue::{DeadLetter, DeadReason, Delivery, QueueCounts, QueueError, QueuedTask, TaskQueue};
pub use transport::EmbeddedTasks;
