//! The names under a prefix, declaring them, and deleting them.

use super::*;

/// Queue and exchange names under a prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub exchange: String,
    pub queue: String,
    pub dlx: String,
    pub dead: String,
    pub retry_prefix: String,
    pub reply_prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.tasks"),
            queue: format!("{prefix}.tasks.obstacle"),
            dlx: format!("{prefix}.tasks.dlx"),
            dead: format!("{prefix}.tasks.dead"),
            retry_prefix: format!("{prefix}.tasks.retry."),
            reply_prefix: format!("{prefix}.replies."),
        }
    }

    pub fn retry(&self, n: u32) -> String {
        format!("{}{n}", self.retry_prefix)
    }

    pub fn reply(&self, address: &str) -> String {
        format!("{}{address}", self.reply_prefix)
    }
}

pub(super) fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

pub(super) fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

/// Declares the exchanges and queues (idempotent; same arguments every time).
pub(super) async fn declare(ch: &Channel, cfg: &AmqpConfig, n: &Names) -> Result<(), TransportError> {
    let ex = ExchangeDeclareOptions { durable: true, ..Default::default() };
    for name in [&n.exchange, &n.dlx] {
        ch.exchange_declare(name.as_str().into(), ExchangeKind::Topic, ex, FieldTable::default())
            .await
            .map_err(|e| err(format!("declaring exchange `{name}`"), e))?;
    }
    let q_args = table(&[
        ("x-max-priority", AMQPValue::ShortShortUInt(cfg.max_priority)),
        ("x-max-length", AMQPValue::LongLongInt(cfg.queue_capacity as i64)),
        ("x-overflow", long("reject-publish")),
        ("x-dead-letter-exchange", long(&n.dlx)),
    ]);
    let hint = "(declared before with other arguments? delete it with `rabbitmqctl delete_queue`, or use another [amqp] prefix)";
    ch.queue_declare(n.queue.as_str().into(), durable(), q_args)
        .await
        .map_err(|e| err(format!("declaring queue `{}`", n.queue), format!("{e} {hint}")))?;
    ch.queue_bind(
        n.queue.as_str().into(),
        n.exchange.as_str().into(),
        "task.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("binding the task queue", e))?;
    let dead_args = table(&[
        ("x-max-length", AMQPValue::LongLongInt(100_000)),
        ("x-message-ttl", AMQPValue::LongLongInt(3_600_000)),
    ]);
    ch.queue_declare(n.dead.as_str().into(), durable(), dead_args)
        .await
        .map_err(|e| err(format!("declaring queue `{}`", n.dead), format!("{e} {hint}")))?;
    ch.queue_bind(
        n.dead.as_str().into(),
        n.dlx.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("binding the dead-letter queue", e))?;
    for attempt in 1..cfg.max_attempts.max(1) {
        let delay = cfg.retry_base_ms.saturating_mul(1 << (attempt - 1).min(20));
        let args = table(&[
            ("x-message-ttl", AMQPValue::LongLongInt(delay as i64)),
            ("x-dead-letter-exchange", long(&n.exchange)),
            ("x-dead-letter-routing-key", long(&format!("task.{}.retry", cfg.model))),
        ]);
        let name = n.retry(attempt);
        ch.queue_declare(name.as_str().into(), durable(), args)
            .await
            .map_err(|e| err(format!("declaring queue `{name}`"), format!("{e} {hint}")))?;
    }
    Ok(())
}

/// Deletes the queues and exchanges of `t`'s prefix (benchmarks and tests that made
/// their own). Errors are ignored: what is gone is gone.
pub async fn delete_topology(t: &AmqpTasks) {
    let Ok(ch) = t.channel().await else { return };
    delete_names(&ch, &t.inner.names, t.inner.cfg.max_attempts).await;
}

/// Connects to `cfg`'s broker and deletes the queues and exchanges under `cfg.prefix`
/// (the per-run prefixes of tests, once they pass). Reply queues expire on their own.
pub async fn delete_prefix(cfg: &AmqpConfig) -> Result<(), TransportError> {
    let url = amqp_url(cfg)?;
    let conn = super::connection(&url, cfg, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await.map_err(|e| err("RabbitMQ channel", e))?;
    delete_names(&ch, &Names::new(&cfg.prefix), cfg.max_attempts).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

pub(super) async fn delete_names(ch: &Channel, n: &Names, max_attempts: u32) {
    let mut queues = vec![n.queue.clone(), n.dead.clone()];
    queues.extend((1..max_attempts.max(1)).map(|i| n.retry(i)));
    for q in queues {
        let _ = ch.queue_delete(q.as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
    }
    for e in [&n.exchange, &n.dlx] {
        let _ = ch.exchange_delete(e.as_str().into(), lapin::options::ExchangeDeleteOptions::default()).await;
    }
}
