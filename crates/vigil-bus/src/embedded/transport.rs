//! [`TaskTransport`] over the in-process [`TaskQueue`]: the same semantics the workers
//! get from RabbitMQ (priority, deadline checked at take, ack/nack with redelivery,
//! dead letters, a bounded queue) plus per-`reply_to` reply channels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use vigil_core::{Clock, Nanos};

use super::task_queue::{QueueCounts, QueuedTask, TaskQueue};
use crate::transport::{
    Acker, BoxFuture, Reply, ReplyConsumer, Settle, TaskConsumer, TaskDelivery, TaskTransport, TransportError,
};

/// Replies waiting for a slow vehicle before the worker's `reply` waits (backpressure).
pub const REPLY_CAPACITY: usize = 1024;

type ReplyChannel = (mpsc::Sender<Reply>, Option<mpsc::Receiver<Reply>>);

/// The embedded task plane.
#[derive(Debug, Clone)]
pub struct EmbeddedTasks {
    queue: TaskQueue,
    clock: Arc<dyn Clock>,
    replies: Arc<Mutex<HashMap<String, ReplyChannel>>>,
}

impl EmbeddedTasks {
    /// `clock` decides deadlines at take time: the pipeline's clock.
    pub fn new(queue: TaskQueue, clock: Arc<dyn Clock>) -> Self {
        Self { queue, clock, replies: Arc::default() }
    }

    pub fn queue(&self) -> &TaskQueue {
        &self.queue
    }

    fn channel(&self, reply_to: &str) -> Result<mpsc::Sender<Reply>, TransportError> {
        let mut map = self.replies.lock().map_err(|_| TransportError::Closed)?;
        let entry = map.entry(reply_to.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(REPLY_CAPACITY);
            (tx, Some(rx))
        });
        Ok(entry.0.clone())
    }
}

#[derive(Debug)]
struct EmbeddedAcker {
    queue: TaskQueue,
    tag: u64,
}

impl Acker for EmbeddedAcker {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), TransportError>> {
        let r = match how {
            Settle::Ack => self.queue.ack(self.tag),
            Settle::Requeue => self.queue.nack(self.tag, true),
            Settle::DeadLetter(reason) => self.queue.dead_letter_delivery(self.tag, reason),
        };
        Box::pin(async move { Ok(r?) })
    }

    fn abandon(self: Box<Self>) {
        let _ = self.queue.recover(&[self.tag]);
    }
}

#[derive(Debug)]
struct EmbeddedConsumer {
    queue: TaskQueue,
    clock: Arc<dyn Clock>,
}

impl TaskConsumer for EmbeddedConsumer {
    fn next(&mut self) -> BoxFuture<'_, Result<TaskDelivery, TransportError>> {
        Box::pin(async move {
            let clock = self.clock.clone();
            let d = self.queue.take_async(move || clock.now_ns()).await?;
            let acker = Box::new(EmbeddedAcker { queue: self.queue.clone(), tag: d.tag });
            Ok(TaskDelivery::new(d.attempt, d.task, acker))
        })
    }
}

#[derive(Debug)]
struct EmbeddedReplies(mpsc::Receiver<Reply>);

impl ReplyConsumer for EmbeddedReplies {
    fn next(&mut self) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(async move { self.0.recv().await.ok_or(TransportError::Closed) })
    }
}

impl TaskTransport for EmbeddedTasks {
    fn publish(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), TransportError>> {
        let r = self.queue.publish(task);
        Box::pin(async move { Ok(r?) })
    }

    fn consume(&self, _consumer: &str) -> BoxFuture<'_, Result<Box<dyn TaskConsumer>, TransportError>> {
        let c: Box<dyn TaskConsumer> =
            Box::new(EmbeddedConsumer { queue: self.queue.clone(), clock: self.clock.clone() });
        Box::pin(async move { Ok(c) })
    }

    fn reply(&self, reply_to: &str, reply: Reply) -> BoxFuture<'_, Result<(), TransportError>> {
        let tx = self.channel(reply_to);
        // In-process: there is no broker to vouch for who sent it.
        let reply = Reply { publisher: None, ..reply };
        Box::pin(async move { tx?.send(reply).await.map_err(|_| TransportError::Closed) })
    }

    fn replies(&self, reply_to: &str) -> BoxFuture<'_, Result<Box<dyn ReplyConsumer>, TransportError>> {
        let rx = (|| {
            self.channel(reply_to)?;
            let mut map = self.replies.lock().map_err(|_| TransportError::Closed)?;
            let rx = map.get_mut(reply_to).and_then(|e| e.1.take()).ok_or_else(|| TransportError::Broker {
                what: format!("reply queue `{reply_to}`"),
                source: "already has a consumer (exclusive)".into(),
            })?;
            Ok::<_, TransportError>(Box::new(EmbeddedReplies(rx)) as Box<dyn ReplyConsumer>)
        })();
        Box::pin(async move { rx })
    }

    fn counts(&self) -> Result<QueueCounts, TransportError> {
        Ok(self.queue.counts()?)
    }

    fn sweep_expired(&self, now_ns: Nanos) -> Result<u64, TransportError> {
        Ok(self.queue.sweep_expired(now_ns)?)
    }
}
