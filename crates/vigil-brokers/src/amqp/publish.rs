//! Publishing with confirms: tasks, retries after a delay, dead letters.

use super::*;

impl AmqpTasks {
    pub(super) fn persistence(&self, priority: u8) -> Persistence {
        if priority >= self.inner.cfg.urgent_priority { self.inner.cfg.urgent } else { self.inner.cfg.routine }
    }

    /// Publishes and waits for the confirm. Fails fast while the connection is down or
    /// recovering: a task is worthless after its deadline, so the caller falls back (the
    /// vehicle) or leaves the delivery unacked for the broker to redeliver (a worker)
    /// rather than wait. The connection recovers on its own in the background.
    pub(super) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<Confirmation, TransportError> {
        self.publish_with(exchange, routing_key, payload, props, false).await
    }

    /// Publishes a message that must reach a queue (a retry, a dead letter): a negative
    /// confirm or a message the broker returns as unroutable is an error, never an ack.
    pub(super) async fn publish_routed(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<(), TransportError> {
        match self.publish_with(exchange, routing_key, payload, props, true).await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                Err(err(format!("publishing to `{exchange}` `{routing_key}`"), "unroutable: no queue took it"))
            }
            Confirmation::Nack(_) => {
                Err(err(format!("publishing to `{exchange}` `{routing_key}`"), "refused by the broker"))
            }
            Confirmation::NotRequested => Ok(()),
        }
    }

    pub(super) async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<Confirmation, TransportError> {
        let what = || format!("publishing to `{exchange}` `{routing_key}`");
        // lapin panics on a short string over 255 bytes: refuse it here instead.
        for (field, v) in [
            ("exchange", Some(exchange)),
            ("routing key", Some(routing_key)),
            ("message id", props.message_id().as_ref().map(|s| s.as_str())),
            ("correlation id", props.correlation_id().as_ref().map(|s| s.as_str())),
        ] {
            if let Some(v) = v
                && v.len() > MAX_SHORT_STRING
            {
                return Err(TransportError::Invalid {
                    what: what().chars().take(120).collect(),
                    reason: format!("the {field} is {} bytes; AMQP allows {MAX_SHORT_STRING}", v.len()),
                });
            }
        }
        let Some(live) = self.live().filter(Live::up) else {
            self.inner.counts.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(err(what(), "RabbitMQ unreachable (reconnecting)"));
        };
        let ch = &live.publish;
        let publish = async {
            let opts = BasicPublishOptions { mandatory, ..Default::default() };
            ch.basic_publish(exchange.into(), routing_key.into(), opts, payload, props).await?.await
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                self.inner.counts.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(err(what(), format!("{e} (RabbitMQ unreachable or recovering)")))
            }
            Err(_) => {
                self.inner.counts.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(err(what(), format!("no publisher confirm within {CONFIRM_TIMEOUT:?}")))
            }
        }
    }

    /// Properties of a task message. `expire`: set the per-message expiration to the
    /// remaining budget (not in delay queues, whose TTL is the backoff, nor in the DLQ).
    pub(super) fn task_properties(
        &self,
        task: &QueuedTask,
        attempt: u32,
        expire: bool,
        reason: Option<&str>,
    ) -> BasicProperties {
        let mode = match self.persistence(task.priority) {
            Persistence::Transient => 1,
            Persistence::Persistent => 2,
        };
        let mut headers = vec![(H_ATTEMPT, AMQPValue::LongUInt(attempt))];
        if task.deadline_ns != Nanos::MAX {
            headers.push((H_DEADLINE, AMQPValue::LongLongInt(task.deadline_ns)));
        }
        if let Some(r) = reason {
            headers.push((H_REASON, long(r)));
        }
        let props = BasicProperties::default()
            .with_message_id(task.task_id.as_str().into())
            .with_priority(task.priority.min(self.inner.cfg.max_priority))
            .with_delivery_mode(mode)
            .with_content_type("application/x-protobuf; messageType=vigil.v1.Envelope".into())
            // The broker vouches for the publisher, so a worker can tell which vehicle asked.
            .with_user_id(self.inner.user.as_str().into())
            .with_headers(table(&headers));
        if expire && task.deadline_ns != Nanos::MAX {
            let remaining_ms =
                (task.deadline_ns.saturating_sub(self.inner.clock.now_ns()).max(1) as u64).div_ceil(1_000_000);
            props.with_expiration(remaining_ms.to_string().into())
        } else {
            props
        }
    }

    pub(super) fn routing_key(&self, priority: u8) -> String {
        format!("task.{}.p{priority}", self.inner.cfg.model)
    }

    /// Publishes raw bytes as a task (tests and drills: a poison task).
    pub async fn publish_raw(&self, task_id: &str, priority: u8, body: &[u8]) -> Result<(), TransportError> {
        let props = BasicProperties::default()
            .with_message_id(task_id.into())
            .with_priority(priority)
            .with_headers(table(&[(H_ATTEMPT, AMQPValue::LongUInt(1))]));
        let rk = self.routing_key(priority);
        match self.publish_confirmed(&self.inner.names.exchange, &rk, body, props).await? {
            Confirmation::Nack(_) => Err(QueueError::Full { capacity: self.inner.cfg.queue_capacity as usize }.into()),
            _ => Ok(()),
        }
    }

    /// Sends a failed delivery to its next delay queue, or to the DLX after the last attempt.
    pub(super) async fn retry_or_dead(&self, task: &QueuedTask, attempt: u32) -> Result<(), TransportError> {
        if attempt >= self.inner.cfg.max_attempts {
            return self.dead_letter(task, attempt, "max-attempts").await;
        }
        // The delay queue's own TTL sets the backoff; no per-message expiration there
        // (the deadline is checked again at take time).
        let props = self.task_properties(task, attempt + 1, false, None);
        self.publish_routed("", &self.inner.names.retry(attempt), &task.payload, props).await?;
        self.inner.counts.retried.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn dead_letter(
        &self,
        task: &QueuedTask,
        attempt: u32,
        reason: &str,
    ) -> Result<(), TransportError> {
        let props = self.task_properties(task, attempt, false, Some(reason));
        self.publish_routed(&self.inner.names.dlx, &self.routing_key(task.priority), &task.payload, props).await?;
        self.inner.counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if reason == "expired" {
            self.inner.counts.expired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
