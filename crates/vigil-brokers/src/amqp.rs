//! The task plane in RabbitMQ (lapin 4).
//!
//! Reconnection is Vigil's own, not lapin's automatic recovery: in CI runs a vehicle's
//! connection once stayed down for good after a broker restart under lapin's recovery
//! (lapin issue #450 reports the same). A supervisor task watches the connection; when it
//! drops, publishes fail fast (the caller falls back), the supervisor reconnects with
//! backoff and declares the topology again, and each consumer subscribes again on the new
//! connection. Unacked deliveries of the lost connection are redelivered by the broker
//! and deduplicated by task id.
//!
//! Topology (all names start with the configured prefix, `vigil` by default):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `vigil.tasks` | topic exchange, durable | tasks, routing key `task.<model>.p<priority>` |
//! | `vigil.tasks.obstacle` | queue, durable | `x-max-priority`, `x-max-length` + `reject-publish`, dead letters to the DLX |
//! | `vigil.tasks.dlx` | topic exchange, durable | dead letters |
//! | `vigil.tasks.dead` | queue, durable | the dead-letter queue (bounded, 1 h TTL) |
//! | `vigil.tasks.retry.<n>` | queue, durable | retry `n` waits `retry_base_ms × 2^(n-1)`, then back to `vigil.tasks` |
//! | `vigil.replies.<address>` | queue | one per vehicle; replies by `reply_to` + `correlation_id` |
//!
//! Publishes wait for the publisher confirm; a full task queue nacks (`reject-publish`)
//! and the caller falls back at once. Each task carries a per-message `expiration` (its
//! remaining budget) besides the deadline the worker checks at take time. A failed
//! attempt goes to the next delay queue; after `max_attempts` it is dead-lettered with
//! its reason in the `x-vigil-reason` header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::runtime::Handle;
use vigil_bus::embedded::{DeadReason, QueueCounts, QueueError, QueuedTask};
use vigil_bus::transport::{
    Acker, BoxFuture, Reply, ReplyConsumer, Settle, TaskConsumer, TaskDelivery, TaskTransport, TransportError,
};
use vigil_core::{Clock, Nanos};

use crate::config::{AmqpConfig, Persistence};

/// How long a publish waits for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// AMQP's limit on a short string (names, ids).
pub const MAX_SHORT_STRING: usize = 255;
const H_DEADLINE: &str = "x-vigil-deadline-ns";
const H_ATTEMPT: &str = "x-vigil-attempt";
const H_REASON: &str = "x-vigil-reason";

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker { what: what.into(), reason: e.to_string() }
}

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

/// Transport-side counters (this process's view).
#[derive(Debug, Default)]
pub struct AmqpCounts {
    pub published: AtomicU64,
    pub refused_full: AtomicU64,
    pub delivered: AtomicU64,
    pub redelivered: AtomicU64,
    pub retried: AtomicU64,
    pub acked: AtomicU64,
    pub expired: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub duplicates: AtomicU64,
    pub queued: AtomicU64,
    pub peak_queued: AtomicU64,
    pub unacked: AtomicU64,
    pub recoveries: AtomicU64,
    /// Publishes that failed (broker down or recovering, or no confirm in time).
    pub publish_errors: AtomicU64,
    /// Retry publishes that failed, so the task was dead-lettered instead.
    pub retry_failed: AtomicU64,
    /// Deliveries handed back to the broker because no retry or dead letter could be published.
    pub settle_requeued: AtomicU64,
}

/// The RabbitMQ task plane.
#[derive(Debug, Clone)]
pub struct AmqpTasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    /// The connection now, `None` while the supervisor reconnects.
    live: RwLock<Option<Live>>,
    cfg: AmqpConfig,
    names: Names,
    clock: Arc<dyn Clock>,
    rt: Handle,
    counts: AmqpCounts,
}

/// One connection and its publishing channel (confirms on).
#[derive(Debug, Clone)]
struct Live {
    conn: Arc<Connection>,
    publish: Channel,
}

impl Live {
    fn up(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

/// How long one connection attempt (TCP, handshake, topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a sampler's passive declare may wait.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the first connection attempt may take before the node drives on without
/// RabbitMQ (every threat falls back) and the supervisor keeps trying.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection attempt failed: the broker could not be reached (no answer, refused,
/// reset), which a vehicle drives through, or it answered and said no (credentials, a
/// vhost, a topology that differs), which is a mistake to report at once.
#[derive(Debug)]
enum OpenError {
    Unreachable(TransportError),
    Refused(TransportError),
}

impl OpenError {
    fn into_inner(self) -> TransportError {
        match self {
            OpenError::Unreachable(e) | OpenError::Refused(e) => e,
        }
    }
}

impl From<TransportError> for OpenError {
    fn from(e: TransportError) -> Self {
        OpenError::Refused(e)
    }
}

/// Connects, opens the publishing channel and declares the topology.
async fn open(url: &str, cfg: &AmqpConfig, names: &Names, rt: &Handle, within: Duration) -> Result<Live, OpenError> {
    let shown = redact(url);
    let props = ConnectionProperties::default().with_connection_name(format!("vigil-{}", std::process::id()).into());
    let u = url.to_string();
    let connecting = rt.spawn(async move { Connection::connect(&u, props).await });
    let conn = match tokio::time::timeout(within, connecting).await {
        Err(_) => {
            return Err(OpenError::Unreachable(err(
                format!("connecting to RabbitMQ at {shown}"),
                format!("no answer within {within:?}"),
            )));
        }
        Ok(joined) => match joined.map_err(|e| err("RabbitMQ connection task", e))? {
            Ok(conn) => conn,
            Err(e) => {
                let unreachable =
                    matches!(e.kind(), lapin::ErrorKind::IOError(_) | lapin::ErrorKind::MissingHeartbeatError);
                let e = err(
                    format!("connecting to RabbitMQ at {shown}"),
                    format!("{e} (is it running? `scripts/brokers.sh up`)"),
                );
                return Err(if unreachable { OpenError::Unreachable(e) } else { OpenError::Refused(e) });
            }
        },
    };
    let setup = async {
        let publish = conn.create_channel().await.map_err(|e| err("RabbitMQ channel", e))?;
        publish.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| err("confirm.select", e))?;
        declare(&publish, cfg, names).await?;
        Ok::<_, TransportError>(publish)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
        Ok(Ok(publish)) => Ok(Live { conn: Arc::new(conn), publish }),
        Ok(Err(e)) => {
            let _ = conn.close(200, "setup failed".into()).await;
            Err(OpenError::Refused(e))
        }
        Err(_) => Err(OpenError::Unreachable(err(
            "declaring the RabbitMQ topology",
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        ))),
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn header_i64(p: &BasicProperties, key: &str) -> Option<i64> {
    let h = p.headers().as_ref()?;
    match h.inner().get(key)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(*v as i64),
        AMQPValue::LongUInt(v) => Some(*v as i64),
        AMQPValue::ShortInt(v) => Some(*v as i64),
        AMQPValue::ShortUInt(v) => Some(*v as i64),
        AMQPValue::ShortShortInt(v) => Some(*v as i64),
        AMQPValue::ShortShortUInt(v) => Some(*v as i64),
        _ => None,
    }
}

/// The AMQP URL: the config's, else `VIGIL_AMQP_URL`. Never a default from code.
pub fn amqp_url(cfg: &AmqpConfig) -> Result<String, TransportError> {
    cfg.url.clone().or_else(|| std::env::var("VIGIL_AMQP_URL").ok()).ok_or_else(|| {
        err(
            "RabbitMQ",
            "no AMQP URL: pass --amqp URL, set [amqp] url in vigil.toml, or set VIGIL_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)",
        )
    })
}

/// Redacts the password of an AMQP URL for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl AmqpTasks {
    /// Connects, declares the topology and starts the supervisor (reconnection and the
    /// queue-depth sampler). `clock` sets each task's remaining budget; `rt` runs the
    /// connection. A broker that cannot be reached within a second is warned about and
    /// retried in the background: publishes fail fast (the vehicle falls back) and
    /// consumers subscribe once it answers. A broker that answers and refuses (a wrong
    /// URL, credentials, vhost or topology) is an error at once.
    pub async fn connect(cfg: &AmqpConfig, clock: Arc<dyn Clock>, rt: Handle) -> Result<Self, TransportError> {
        let url = amqp_url(cfg)?;
        url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            err(format!("RabbitMQ URL {}", redact(&url)), format!("{e} (e.g. amqp://user:pass@host:5672/%2f)"))
        })?;
        let names = Names::new(&cfg.prefix);
        let (live, down_since) = match open(&url, cfg, &names, &rt, FIRST_CONNECT_TIMEOUT).await {
            Ok(live) => (Some(live), None),
            Err(OpenError::Unreachable(e)) => {
                tracing::warn!(
                    error = %e,
                    "RabbitMQ is unreachable; driving on with every obstacle task falling back to the on-board policy, reconnecting with backoff"
                );
                (None, Some(std::time::Instant::now()))
            }
            Err(OpenError::Refused(e)) => return Err(e),
        };
        let me = Self {
            inner: Arc::new(Inner {
                url,
                live: RwLock::new(live),
                cfg: cfg.clone(),
                names,
                clock,
                rt,
                counts: AmqpCounts::default(),
            }),
        };
        me.spawn_supervisor(down_since);
        Ok(me)
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn amqp_counts(&self) -> &AmqpCounts {
        &self.inner.counts
    }

    /// Whether the connection is up (false while it reconnects).
    pub fn connected(&self) -> bool {
        self.live().is_some_and(|l| l.up())
    }

    /// Messages now in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<u32, TransportError> {
        let ch = self.channel().await?;
        let q = ch
            .queue_declare(self.inner.names.dead.as_str().into(), passive(), FieldTable::default())
            .await
            .map_err(|e| err("dead-letter queue depth", e))?;
        Ok(q.message_count())
    }

    fn live(&self) -> Option<Live> {
        self.inner.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new channel on the connection now.
    async fn channel(&self) -> Result<Channel, TransportError> {
        let live = self.live().ok_or_else(|| err("RabbitMQ channel", "not connected (reconnecting)"))?;
        live.conn.create_channel().await.map_err(|e| err("RabbitMQ channel", e))
    }

    /// A new channel once the connection is up again (consumers re-subscribing).
    async fn channel_when_up(&self) -> Channel {
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(live) = self.live().filter(Live::up)
                && let Ok(Ok(ch)) = tokio::time::timeout(CONNECT_TIMEOUT, live.conn.create_channel()).await
            {
                return ch;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Watches the connection every 100 ms: reconnects (backoff 100 ms → 2 s) when it is
    /// lost, and samples the task queue's depth while it is up. Every wait is bounded,
    /// so a broker that stops answering cannot stall the watch.
    fn spawn_supervisor(&self, mut down_since: Option<std::time::Instant>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.rt.spawn(async move {
            let mut sampler: Option<Channel> = None;
            let mut backoff = Duration::from_millis(100);
            let mut sample_after = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(inner) = weak.upgrade() else { return };
                let me = AmqpTasks { inner };
                let live = me.live();
                if !live.as_ref().is_some_and(Live::up) {
                    if down_since.is_none() {
                        tracing::warn!("RabbitMQ connection lost; reconnecting");
                        down_since = Some(std::time::Instant::now());
                        if let Some(old) = me.inner.live.write().unwrap_or_else(|e| e.into_inner()).take() {
                            // Best effort: the socket is usually gone already.
                            me.inner.rt.spawn(async move {
                                let _ =
                                    tokio::time::timeout(SAMPLE_TIMEOUT, old.conn.close(200, "reconnecting".into()))
                                        .await;
                            });
                        }
                        sampler = None;
                    }
                    match open(&me.inner.url, &me.inner.cfg, &me.inner.names, &me.inner.rt, CONNECT_TIMEOUT).await {
                        Ok(new) => {
                            *me.inner.live.write().unwrap_or_else(|e| e.into_inner()) = Some(new);
                            me.inner.counts.recoveries.fetch_add(1, Ordering::Relaxed);
                            let after = down_since.take().map(|t| t.elapsed()).unwrap_or_default();
                            tracing::info!(after_ms = after.as_millis() as u64, "RabbitMQ connection recovered");
                            backoff = Duration::from_millis(100);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e.into_inner(), "RabbitMQ reconnect attempt failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                    continue;
                }
                if tokio::time::Instant::now() < sample_after {
                    continue;
                }
                if sampler.as_ref().is_none_or(|c| !c.status().connected()) {
                    sampler = me.channel().await.ok();
                }
                let Some(c) = &sampler else { continue };
                let declare = c.queue_declare(me.inner.names.queue.as_str().into(), passive(), FieldTable::default());
                match tokio::time::timeout(SAMPLE_TIMEOUT, declare).await {
                    Ok(Ok(q)) => {
                        let n = q.message_count() as u64;
                        me.inner.counts.queued.store(n, Ordering::Relaxed);
                        me.inner.counts.peak_queued.fetch_max(n, Ordering::Relaxed);
                    }
                    // The queue was deleted (a benchmark's teardown) or the channel is
                    // stuck: close it and look again in 2 s.
                    _ => {
                        sample_after = tokio::time::Instant::now() + Duration::from_secs(2);
                        if let Some(c) = sampler.take() {
                            let _ = tokio::time::timeout(SAMPLE_TIMEOUT, c.close(200, "sampler".into())).await;
                        }
                    }
                }
            }
        });
    }

    /// `basic.qos` and `basic.consume` on the task queue.
    async fn subscribe_tasks(&self, channel: &Channel, tag: &str) -> Result<lapin::Consumer, TransportError> {
        channel
            .basic_qos(self.inner.cfg.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| err("basic.qos", e))?;
        channel
            .basic_consume(
                self.inner.names.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| err(format!("consuming `{}`", self.inner.names.queue), e))
    }

    /// Declares a vehicle's reply queue and consumes it.
    async fn subscribe_replies(&self, channel: &Channel, queue: &str) -> Result<lapin::Consumer, TransportError> {
        // Not durable: replies are worthless after a restart; it outlives a short
        // disconnect and is removed a minute after its vehicle is gone.
        let args = table(&[("x-expires", AMQPValue::LongLongInt(60_000))]);
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
            .await
            .map_err(|e| err(format!("declaring reply queue `{queue}`"), e))?;
        channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, exclusive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|e| err(format!("consuming `{queue}`"), e))
    }

    async fn subscribe(&self, channel: &Channel, to: &Subscription) -> Result<lapin::Consumer, TransportError> {
        match to {
            Subscription::Tasks { tag } => self.subscribe_tasks(channel, tag).await,
            Subscription::Replies { queue } => self.subscribe_replies(channel, queue).await,
        }
    }

    /// Subscribes now while the connection is up (a refusal is the caller's error); while
    /// it is down, the consumer subscribes on its first `next` once it is back.
    async fn subscribe_if_up(&self, to: &Subscription) -> Result<Subscribed, TransportError> {
        if !self.connected() {
            return Ok(None);
        }
        let channel = self.channel().await?;
        let consumer = self.subscribe(&channel, to).await?;
        Ok(Some((channel, consumer)))
    }

    /// After a consumer ended (`end`: its last item), waits for the supervisor to
    /// reconnect and subscribes again, retrying until it succeeds. The broker requeues
    /// what the lost channel held unacked.
    async fn resubscribe(
        &self,
        to: &Subscription,
        end: Option<Result<lapin::message::Delivery, lapin::Error>>,
    ) -> (Channel, lapin::Consumer) {
        match end {
            Some(Err(e)) => {
                tracing::warn!(error = %e, consumer = to.what(), "consumer interrupted; subscribing again after reconnect")
            }
            Some(Ok(_)) => {}
            None if self.connected() => tracing::warn!(consumer = to.what(), "consumer ended; subscribing again"),
            None => tracing::debug!(consumer = to.what(), "subscribing once RabbitMQ answers"),
        }
        loop {
            let channel = self.channel_when_up().await;
            match self.subscribe(&channel, to).await {
                Ok(consumer) => {
                    tracing::info!(consumer = to.what(), "consumer subscribed again");
                    return (channel, consumer);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "subscribing again failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn persistence(&self, priority: u8) -> Persistence {
        if priority >= self.inner.cfg.urgent_priority { self.inner.cfg.urgent } else { self.inner.cfg.routine }
    }

    /// Publishes and waits for the confirm. Fails fast while the connection is down or
    /// recovering: a task is worthless after its deadline, so the caller falls back (the
    /// vehicle) or leaves the delivery unacked for the broker to redeliver (a worker)
    /// rather than wait. The connection recovers on its own in the background.
    async fn publish_confirmed(
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
    async fn publish_routed(
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

    async fn publish_with(
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
    fn task_properties(&self, task: &QueuedTask, attempt: u32, expire: bool, reason: Option<&str>) -> BasicProperties {
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
            .with_headers(table(&headers));
        if expire && task.deadline_ns != Nanos::MAX {
            let remaining_ms = ((task.deadline_ns - self.inner.clock.now_ns()).max(1) as u64).div_ceil(1_000_000);
            props.with_expiration(remaining_ms.to_string().into())
        } else {
            props
        }
    }

    fn routing_key(&self, priority: u8) -> String {
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
    async fn retry_or_dead(&self, task: &QueuedTask, attempt: u32) -> Result<(), TransportError> {
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

    async fn dead_letter(&self, task: &QueuedTask, attempt: u32, reason: &str) -> Result<(), TransportError> {
        let props = self.task_properties(task, attempt, false, Some(reason));
        self.publish_routed(&self.inner.names.dlx, &self.routing_key(task.priority), &task.payload, props).await?;
        self.inner.counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if reason == "expired" {
            self.inner.counts.expired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

/// Declares the exchanges and queues (idempotent; same arguments every time).
async fn declare(ch: &Channel, cfg: &AmqpConfig, n: &Names) -> Result<(), TransportError> {
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

#[derive(Debug)]
struct AmqpAcker {
    tasks: AmqpTasks,
    acker: lapin::Acker,
    task: QueuedTask,
    attempt: u32,
}

impl AmqpAcker {
    async fn ack(&self) -> Result<(), TransportError> {
        self.tasks.inner.counts.unacked.fetch_sub(1, Ordering::Relaxed);
        // After a connection loss the broker has requeued it already: acking fails, and
        // the redelivery is deduplicated by task id.
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e) => {
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
    async fn requeue_after(&self, e: TransportError) -> TransportError {
        self.tasks.inner.counts.unacked.fetch_sub(1, Ordering::Relaxed);
        self.tasks.inner.counts.settle_requeued.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(task = %self.task.task_id, error = %e, "retry or dead-letter publish failed; handed back to the broker");
        if let Err(n) = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
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
            let _ = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
        });
    }
}

/// What a consumer is subscribed to, so that it can subscribe again after a reconnect.
enum Subscription {
    Tasks { tag: String },
    Replies { queue: String },
}

impl Subscription {
    fn what(&self) -> &'static str {
        match self {
            Subscription::Tasks { .. } => "tasks",
            Subscription::Replies { .. } => "replies",
        }
    }
}

/// A subscription's channel and consumer; `None` until the broker first answers.
type Subscribed = Option<(Channel, lapin::Consumer)>;

struct AmqpConsumer {
    tasks: AmqpTasks,
    to: Subscription,
    on: Subscribed,
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
                let attempt =
                    header_i64(&d.properties, H_ATTEMPT).unwrap_or(1).max(1) as u32 + u32::from(d.redelivered);
                if attempt > 1 {
                    counts.redelivered.fetch_add(1, Ordering::Relaxed);
                }
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
                return Ok(TaskDelivery::new(attempt, task, acker));
            }
        })
    }
}

struct AmqpReplies {
    tasks: AmqpTasks,
    to: Subscription,
    on: Subscribed,
}

impl std::fmt::Debug for AmqpReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpReplies").field("channel", &self.on.as_ref().map(|(c, _)| c.id())).finish()
    }
}

/// The next delivery, or the end of a consumer that is gone or was never subscribed.
async fn next_delivery(on: &mut Subscribed) -> Option<Result<lapin::message::Delivery, lapin::Error>> {
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
                        let correlation_id =
                            d.properties.correlation_id().as_ref().map(|s| s.to_string()).unwrap_or_default();
                        return Ok(Reply { correlation_id, payload: d.data });
                    }
                    end => self.on = Some(self.tasks.resubscribe(&self.to, end).await),
                }
            }
        })
    }
}

impl TaskTransport for AmqpTasks {
    fn publish(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let props = self.task_properties(&task, 1, true, None);
            let rk = self.routing_key(task.priority);
            match self.publish_confirmed(&self.inner.names.exchange, &rk, &task.payload, props).await? {
                Confirmation::Nack(_) => {
                    self.inner.counts.refused_full.fetch_add(1, Ordering::Relaxed);
                    Err(QueueError::Full { capacity: self.inner.cfg.queue_capacity as usize }.into())
                }
                _ => {
                    self.inner.counts.published.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            }
        })
    }

    fn consume(&self, consumer: &str) -> BoxFuture<'_, Result<Box<dyn TaskConsumer>, TransportError>> {
        let tag = format!("{consumer}-{}", std::process::id());
        Box::pin(async move {
            let to = Subscription::Tasks { tag };
            let on = self.subscribe_if_up(&to).await?;
            Ok(Box::new(AmqpConsumer { tasks: self.clone(), to, on }) as Box<dyn TaskConsumer>)
        })
    }

    fn reply(&self, reply_to: &str, reply: Reply) -> BoxFuture<'_, Result<(), TransportError>> {
        let queue = self.inner.names.reply(reply_to);
        Box::pin(async move {
            let props = BasicProperties::default()
                .with_correlation_id(reply.correlation_id.as_str().into())
                .with_delivery_mode(1);
            match self.publish_confirmed("", &queue, &reply.payload, props).await? {
                Confirmation::Nack(_) => Err(err(format!("reply to `{queue}`"), "refused by the broker")),
                _ => Ok(()),
            }
        })
    }

    fn replies(&self, reply_to: &str) -> BoxFuture<'_, Result<Box<dyn ReplyConsumer>, TransportError>> {
        let queue = self.inner.names.reply(reply_to);
        Box::pin(async move {
            let to = Subscription::Replies { queue };
            let on = self.subscribe_if_up(&to).await?;
            Ok(Box::new(AmqpReplies { tasks: self.clone(), to, on }) as Box<dyn ReplyConsumer>)
        })
    }

    fn counts(&self) -> Result<QueueCounts, TransportError> {
        let c = &self.inner.counts;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(QueueCounts {
            published: g(&c.published),
            refused_full: g(&c.refused_full),
            delivered: g(&c.delivered),
            redelivered: g(&c.redelivered),
            acked: g(&c.acked),
            expired: g(&c.expired),
            dead_lettered: g(&c.dead_lettered),
            queued: g(&c.queued),
            unacked: g(&c.unacked),
            peak_queued: g(&c.peak_queued),
        })
    }

    fn sweep_expired(&self, _now_ns: Nanos) -> Result<u64, TransportError> {
        // The broker expires queued tasks itself (per-message expiration → the DLX).
        Ok(0)
    }
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
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .map_err(|e| err(format!("connecting to RabbitMQ at {}", redact(&url)), e))?;
    let ch = conn.create_channel().await.map_err(|e| err("RabbitMQ channel", e))?;
    delete_names(&ch, &Names::new(&cfg.prefix), cfg.max_attempts).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn delete_names(ch: &Channel, n: &Names, max_attempts: u32) {
    let mut queues = vec![n.queue.clone(), n.dead.clone()];
    queues.extend((1..max_attempts.max(1)).map(|i| n.retry(i)));
    for q in queues {
        let _ = ch.queue_delete(q.as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
    }
    for e in [&n.exchange, &n.dlx] {
        let _ = ch.exchange_delete(e.as_str().into(), lapin::options::ExchangeDeleteOptions::default()).await;
    }
}
