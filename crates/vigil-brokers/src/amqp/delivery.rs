//! Deliveries as the transport traits see them: settle-once ackers and the task and
//! reply consumers that survive a reconnect.

use super::*;

#[derive(Debug)]
pub(super) struct AmqpAcker {
    pub(super) tasks: AmqpTasks,
    pub(super) acker: lapin::Acker,
    pub(super) task: QueuedTask,
    pub(super) attempt: u32,
}

impl AmqpAcker {
    pub(super) async fn ack(&self) -> Result<(), TransportError> {
        self.tasks.inner.counts.unacked.fetch_sub(1, Ordering::Relaxed);
        // After a connection loss the broker has requeued it already: acking fails, and
        // the redelivery is deduplicated by task id.
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.tasks.inner.counts.settle_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task = %self.task.task_id, error = %e, "ack failed (the broker will redeliver)");
                Ok(())
            }
        }
    }
}

impl AmqpAcker {
    /// The retry or dead-letter publish failed: hand the delivery back to the broker
    /// (nack with requeue; it comes back as a redelivery, one attempt on), so it is
    /// neither lost nor left unsettled holding the consumer's prefetch.
    pub(super) async fn requeue_after(&self, e: TransportError) -> TransportError {
        self.tasks.inner.counts.unacked.fetch_sub(1, Ordering::Relaxed);
        self.tasks.inner.counts.settle_requeued.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(task = %self.task.task_id, error = %e, "retry or dead-letter publish failed; handed back to the broker");
        if let Err(n) = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
            self.tasks.inner.counts.settle_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(task = %self.task.task_id, error = %n, "nack failed too (the broker redelivers when the channel closes)");
        }
        e
    }
}

impl Acker for AmqpAcker {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let counts = &self.tasks.inner.counts;
            match how {
                Settle::Ack => {
                    self.ack().await?;
                    counts.acked.fetch_add(1, Ordering::Relaxed);
                }
                Settle::Requeue => {
                    if let Err(e) = self.tasks.retry_or_dead(&self.task, self.attempt).await {
                        // No delay queue took it: dead-letter it (kept, with the reason)
                        // rather than requeue it at the head, where it would come straight
                        // back and starve the tasks behind it.
                        tracing::warn!(task = %self.task.task_id, error = %e, "retry publish failed; dead-lettering");
                        if let Err(e) = self.tasks.dead_letter(&self.task, self.attempt, "retry-failed").await {
                            return Err(self.requeue_after(e).await);
                        }
                        counts.retry_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.ack().await?;
                }
                Settle::DeadLetter(reason) => {
                    let why = match reason {
                        DeadReason::Expired => "expired",
                        DeadReason::Rejected => "rejected",
                        DeadReason::MaxAttempts => "max-attempts",
                        DeadReason::Displaced => "displaced",
                    };
                    if let Err(e) = self.tasks.dead_letter(&self.task, self.attempt, why).await {
                        return Err(self.requeue_after(e).await);
                    }
                    self.ack().await?;
                }
            }
            Ok(())
        })
    }

    fn abandon(self: Box<Self>) {
        let rt = self.tasks.inner.rt.clone();
        rt.spawn(async move {
            self.tasks.inner.counts.unacked.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
                self.tasks.inner.counts.settle_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task = %self.task.task_id, error = %e, "abandoned delivery not handed back (the broker redelivers when the channel closes)");
            }
        });
    }
}

/// What a consumer is subscribed to, so that it can subscribe again after a reconnect.
pub(super) enum Subscription {
    Tasks { tag: String },
    Replies { queue: String },
}

impl Subscription {
    pub(super) fn what(&self) -> &'static str {
        match self {
            Subscription::Tasks { .. } => "tasks",
            Subscription::Replies { .. } => "replies",
        }
    }
}

/// A subscription's channel and consumer; `None` until the broker first answers.
pub(super) type Subscribed = Option<(Channel, lapin::Consumer)>;

pub(super) struct AmqpConsumer {
    pub(super) tasks: AmqpTasks,
    pub(super) to: Subscription,
    pub(super) on: Subscribed,
}

impl std::fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConsumer").field("channel", &self.on.as_ref().map(|(c, _)| c.id())).finish()
    }
}

impl TaskConsumer for AmqpConsumer {
    fn next(&mut self) -> BoxFuture<'_, Result<TaskDelivery, TransportError>> {
        Box::pin(async move {
            loop {
                let d = match next_delivery(&mut self.on).await {
                    Some(Ok(d)) => d,
                    // The connection or channel is gone (or was never up): subscribe
                    // again once the supervisor has reconnected.
                    end => {
                        self.on = Some(self.tasks.resubscribe(&self.to, end).await);
                        continue;
                    }
                };
                let counts = &self.tasks.inner.counts;
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                counts.unacked.fetch_add(1, Ordering::Relaxed);
                let attempt = attempt_of(header_i64(&d.properties, H_ATTEMPT), d.redelivered);
                if attempt > 1 {
                    counts.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                // RabbitMQ refuses a publish whose user_id is not its connection's user.
                let publisher = d.properties.user_id().as_ref().map(|s| s.to_string());
                let task = QueuedTask {
                    task_id: d.properties.message_id().as_ref().map(|s| s.to_string()).unwrap_or_default(),
                    priority: d.properties.priority().unwrap_or(0),
                    // No deadline header: nothing to expire against (the worker still
                    // validates the body).
                    deadline_ns: header_i64(&d.properties, H_DEADLINE).unwrap_or(Nanos::MAX),
                    payload: d.data,
                };
                let acker =
                    Box::new(AmqpAcker { tasks: self.tasks.clone(), acker: d.acker, task: task.clone(), attempt });
                return Ok(TaskDelivery::new(attempt, task, acker).published_by(publisher));
            }
        })
    }
}

/// The delivery's attempt: the attempt header (anyone who can publish sets it, so any
/// value, clamped to `1..=u32::MAX`) plus one when the broker redelivered it.
fn attempt_of(header: Option<i64>, redelivered: bool) -> u32 {
    let sent = u32::try_from(header.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
    sent.saturating_add(u32::from(redelivered))
}

pub(super) struct AmqpReplies {
    pub(super) tasks: AmqpTasks,
    pub(super) to: Subscription,
    pub(super) on: Subscribed,
}

impl std::fmt::Debug for AmqpReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpReplies").field("channel", &self.on.as_ref().map(|(c, _)| c.id())).finish()
    }
}

/// The next delivery, or the end of a consumer that is gone or was never subscribed.
pub(super) async fn next_delivery(on: &mut Subscribed) -> Option<Result<lapin::message::Delivery, lapin::Error>> {
    match on {
        Some((_, consumer)) => consumer.next().await,
        None => None,
    }
}

impl ReplyConsumer for AmqpReplies {
    fn next(&mut self) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(async move {
            loop {
                match next_delivery(&mut self.on).await {
                    Some(Ok(d)) => {
                        let p = &d.properties;
                        let correlation_id = p.correlation_id().as_ref().map(|s| s.to_string()).unwrap_or_default();
                        return Ok(Reply {
                            correlation_id,
                            // RabbitMQ refuses a publish whose user_id is not its connection's user.
                            publisher: p.user_id().as_ref().map(|s| s.to_string()),
                            mac: header_str(p, H_MAC),
                            payload: d.data,
                        });
                    }
                    end => self.on = Some(self.tasks.resubscribe(&self.to, end).await),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::attempt_of;

    #[test]
    fn an_attempt_header_of_any_value_gives_an_attempt_in_range() {
        assert_eq!(attempt_of(None, false), 1);
        assert_eq!(attempt_of(Some(2), true), 3);
        assert_eq!(attempt_of(Some(-5), false), 1);
        assert_eq!(attempt_of(Some(i64::MAX), true), u32::MAX);
        assert_eq!(attempt_of(Some(i64::from(u32::MAX)), true), u32::MAX);
        assert_eq!(attempt_of(Some(i64::from(u32::MAX) + 1), false), u32::MAX);
    }
}
