//! The small traits the pipeline's actors talk through. The embedded transports
//! ([`crate::embedded`]) implement them in-process; Kafka and RabbitMQ implement them
//! against real brokers. Actors hold `Arc<dyn …>` and never know which one they have.
//!
//! - [`TelemetryLog`]: the durable, replayable log (Kafka topics; an MCAP file).
//! - [`TaskTransport`]: obstacle tasks with priority, deadline, ack/nack and dead letters,
//!   and the reply path for recommendations (RabbitMQ `reply_to` + `correlation_id`).
//! - [`FrameStore`]: big payloads by reference (the claim-check pattern).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use vigil_core::Nanos;

use crate::task::{DeadReason, QueueCounts, QueueError, QueuedTask};

/// A boxed, sendable future (object-safe async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A broker client's error, typed where the broker crate defines it.
pub type BrokerSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("telemetry log `{topic}`: {reason}")]
    Log { topic: String, reason: String },
    /// The log's buffer stayed full (its broker slow or down): the same record may be
    /// tried again later.
    #[error("telemetry log `{topic}`: {reason}")]
    Backlog { topic: String, reason: String },
    #[error("frame store: {0}")]
    Frame(String),
    /// A broker client failed doing `what`. The source keeps the client's own error
    /// (`vigil_brokers::BrokerError`: lapin's, rdkafka's, the object store's) for whoever
    /// needs to look inside.
    #[error("{what}: {source}")]
    Broker { what: String, source: BrokerSource },
    /// The request itself cannot be carried (a name over the broker's limit): retrying
    /// cannot help.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("the transport is closed")]
    Closed,
}

pub use vigil_proto::wire::topics;

/// One record for the log: an encoded `vigil.v1.Envelope`.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    pub topic: &'a str,
    /// Partition key: the vehicle id.
    pub key: &'a str,
    /// The run (process) that wrote it: with the vehicle, it names the drive.
    pub run: &'a str,
    pub capture_ns: Nanos,
    pub publish_ns: Nanos,
    pub envelope: &'a [u8],
}

/// The durable telemetry log. `append` must not block for long (producers buffer);
/// `close` flushes everything and reports messages written per topic.
pub trait TelemetryLog: Send + Sync + fmt::Debug {
    fn append(&self, record: LogRecord<'_>) -> Result<(), TransportError>;
    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError>;
}

/// Big payloads (camera frames) stored once and passed around by reference.
pub trait FrameStore: Send + Sync + fmt::Debug {
    /// Stores `bytes` under `key`; returns the reference a task or a log record carries.
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<vigil_proto::v1::BlobRef, TransportError>;
    /// Stores an RGB8 image's pixels under `key`; a durable store keeps them compactly
    /// (losslessly) and [`FrameStore::get`] gives the RGB8 bytes back.
    fn put_rgb8(
        &self,
        key: &str,
        pixels: Vec<u8>,
        _width: u32,
        _height: u32,
    ) -> Result<vigil_proto::v1::BlobRef, TransportError> {
        self.put(key, pixels)
    }
    fn get(&self, uri: &str) -> Result<Arc<Vec<u8>>, TransportError>;
    /// Whether a reference outlives this process, so that a durable log may carry it in
    /// place of the bytes (an object store) or must keep the bytes inline (memory).
    fn durable(&self) -> bool;
}

/// The frame-store key of one camera frame's pixels: unique per vehicle process run, so a
/// later drive of the same vehicle never overwrites an earlier one.
pub fn frame_key(vehicle: &str, run: &str, sensor_id: &str, sequence: u64) -> String {
    format!("{vehicle}/{run}/{}/{sequence}.rgb", sensor_id.replace('/', "_"))
}

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// Back to the queue for another attempt (dead-lettered after the retry limit).
    Requeue,
    /// Straight to the dead-letter queue.
    DeadLetter(DeadReason),
}

/// The transport side of one delivery.
pub trait Acker: Send + fmt::Debug {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), TransportError>>;
    /// Called when a delivery is dropped unsettled (a worker died mid-task): the task
    /// must come back (RabbitMQ does this when the channel closes).
    fn abandon(self: Box<Self>);
}

/// A task handed to a worker. Settle it exactly once; dropping it unsettled requeues it.
#[derive(Debug)]
pub struct TaskDelivery {
    /// 1 for the first delivery, 2 for the first redelivery, …
    pub attempt: u32,
    pub task: QueuedTask,
    /// Who published it, as the transport vouches (RabbitMQ's validated `user_id`);
    /// `None` where it cannot vouch.
    pub publisher: Option<String>,
    acker: Option<Box<dyn Acker>>,
}

impl TaskDelivery {
    pub fn new(attempt: u32, task: QueuedTask, acker: Box<dyn Acker>) -> Self {
        Self { attempt, task, publisher: None, acker: Some(acker) }
    }

    /// The same delivery, with the publisher the transport vouches for.
    pub fn published_by(mut self, publisher: Option<String>) -> Self {
        self.publisher = publisher;
        self
    }

    pub async fn settle(mut self, how: Settle) -> Result<(), TransportError> {
        match self.acker.take() {
            Some(a) => a.settle(how).await,
            None => Ok(()),
        }
    }
}

impl Drop for TaskDelivery {
    fn drop(&mut self) {
        if let Some(a) = self.acker.take() {
            a.abandon();
        }
    }
}

/// A recommendation (or any reply) travelling back to the vehicle that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The task id the reply answers.
    pub correlation_id: String,
    pub payload: Vec<u8>,
    /// Who published it, as the transport vouches (RabbitMQ's `user_id`, which the broker
    /// checks against the connection's user); `None` where it cannot vouch. Set by the
    /// receiving side only: a sender's value is not carried.
    pub publisher: Option<String>,
    /// HMAC-SHA256 over the reply under the reply key (hex), where the sender holds one
    /// ([`crate::trust::ReplyKey`]).
    pub mac: Option<String>,
}

impl Reply {
    pub fn new(correlation_id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { correlation_id: correlation_id.into(), payload, publisher: None, mac: None }
    }
}

/// Where a vehicle's recommendations come back: its reply queue is named by its id, and
/// a worker replies to no other address than that of the vehicle that sent the task.
pub fn reply_address(vehicle: &str) -> String {
    vehicle.to_string()
}

/// A stream of deliveries for one consumer (one worker).
pub trait TaskConsumer: Send + fmt::Debug {
    fn next(&mut self) -> BoxFuture<'_, Result<TaskDelivery, TransportError>>;
}

/// A stream of replies for one `reply_to` address.
pub trait ReplyConsumer: Send + fmt::Debug {
    fn next(&mut self) -> BoxFuture<'_, Result<Reply, TransportError>>;
}

/// The task plane: publish, consume with ack/nack, reply, and the counts behind the report.
pub trait TaskTransport: Send + Sync + fmt::Debug {
    /// Publishes a task. A full queue refuses it ([`QueueError::Full`]): the caller sheds load.
    fn publish(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), TransportError>>;
    fn consume(&self, consumer: &str) -> BoxFuture<'_, Result<Box<dyn TaskConsumer>, TransportError>>;
    fn reply(&self, reply_to: &str, reply: Reply) -> BoxFuture<'_, Result<(), TransportError>>;
    fn replies(&self, reply_to: &str) -> BoxFuture<'_, Result<Box<dyn ReplyConsumer>, TransportError>>;
    /// Queue-side counts (published, acked, expired, dead-lettered, …).
    fn counts(&self) -> Result<QueueCounts, TransportError>;
    /// Dead-letters every queued task whose deadline is before `now_ns` (end of a run).
    fn sweep_expired(&self, now_ns: Nanos) -> Result<u64, TransportError>;
}

/// Turns a consumer into a `Stream` (for `ctx.add_stream`).
pub fn delivery_stream(
    consumer: Box<dyn TaskConsumer>,
) -> impl futures_util::Stream<Item = Result<TaskDelivery, TransportError>> + Send {
    futures_util::stream::unfold(consumer, |mut c| async move {
        match c.next().await {
            Err(TransportError::Closed) => None,
            other => Some((other, c)),
        }
    })
}

/// Turns a reply consumer into a `Stream`.
pub fn reply_stream(
    consumer: Box<dyn ReplyConsumer>,
) -> impl futures_util::Stream<Item = Result<Reply, TransportError>> + Send {
    futures_util::stream::unfold(consumer, |mut c| async move {
        let item = c.next().await;
        match item {
            Err(TransportError::Closed) => None,
            other => Some((other, c)),
        }
    })
}
