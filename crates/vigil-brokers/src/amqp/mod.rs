//! The task plane in RabbitMQ (lapin 4).
//!
//! Reconnection is Vigil's own, not lapin's automatic recovery, which can leave a
//! connection down for good after a broker restart (lapin issue #450). A supervisor task
//! watches the connection; when it drops, publishes fail fast (the caller falls back),
//! the supervisor reconnects with backoff and declares the topology again, and each
//! consumer subscribes again on the new connection. Unacked deliveries of the lost
//! connection are redelivered by the broker and deduplicated by task id.
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

mod connection;
mod delivery;
mod publish;
mod topology;

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
use vigil_bus::task::{DeadReason, QueueCounts, QueueError, QueuedTask};
use vigil_bus::transport::{
    Acker, BoxFuture, Reply, ReplyConsumer, Settle, TaskConsumer, TaskDelivery, TaskTransport, TransportError,
};
use vigil_core::{Clock, Nanos};

use crate::broker_err as err;
use crate::config::{AmqpConfig, Persistence};

use self::delivery::{AmqpConsumer, AmqpReplies, Subscribed, Subscription};
pub use self::topology::{Names, delete_prefix, delete_topology};
use self::topology::{declare, passive};

/// How long a publish waits for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// AMQP's limit on a short string (names, ids).
pub const MAX_SHORT_STRING: usize = 255;
const H_DEADLINE: &str = "x-vigil-deadline-ns";
const H_ATTEMPT: &str = "x-vigil-attempt";
const H_REASON: &str = "x-vigil-reason";
/// A reply's HMAC under the reply key (`vigil_bus::trust`).
const H_MAC: &str = "x-vigil-mac";

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
    /// Acks and nacks the broker did not take (logged; it redelivers when the channel closes).
    pub settle_failed: AtomicU64,
}

/// The RabbitMQ task plane.
#[derive(Debug, Clone)]
pub struct AmqpTasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    /// The user the URL connects as: replies carry it as `user_id`, which the broker
    /// checks, so a vehicle knows a worker sent them.
    user: String,
    /// Signs replies, where the deployment shares a reply key.
    reply_key: Option<vigil_bus::trust::ReplyKey>,
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
    let (u, tls) = (url.to_string(), tls_config(cfg)?);
    let connecting = rt.spawn(async move {
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connect_with_config(&u, props, tls, runtime).await
    });
    let conn = match tokio::time::timeout(within, connecting).await {
        Err(_) => {
            return Err(OpenError::Unreachable(err(
                format!("connecting to RabbitMQ at {shown}"),
                format!("no answer within {within:?}"),
            )));
        }
        Ok(joined) => match joined.map_err(|e| err("RabbitMQ connection task", e.to_string()))? {
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

fn header_str(p: &BasicProperties, key: &str) -> Option<String> {
    match p.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
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

/// The AMQP URL: the config's `url`, else the file `url_file` names, else `VIGIL_AMQP_URL`.
/// Never a default from code.
pub fn amqp_url(cfg: &AmqpConfig) -> Result<String, TransportError> {
    if cfg.url.is_none()
        && let Some(path) = &cfg.url_file
    {
        let shown = path.display();
        let size = std::fs::metadata(path).map_err(|e| err(format!("AMQP URL file {shown}"), e.to_string()))?.len();
        if size > 4096 {
            return Err(err(format!("AMQP URL file {shown}"), format!("{size} bytes; it should hold one URL")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("AMQP URL file {shown}"), e.to_string()))?;
        return Ok(text.trim().to_string());
    }
    cfg.url.clone().or_else(|| std::env::var("VIGIL_AMQP_URL").ok()).ok_or_else(|| {
        err(
            "RabbitMQ",
            "no AMQP URL: pass --amqp URL, set [amqp] url in vigil.toml, or set VIGIL_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)",
        )
    })
}

pub use crate::config::redact;

/// The TLS settings of `cfg`, read from their files now.
fn tls_config(cfg: &AmqpConfig) -> Result<lapin::tcp::OwnedTLSConfig, TransportError> {
    let read = |what: &str, path: &std::path::Path| {
        vigil_core::bounded::read_text(path, 1 << 20).map_err(|e| {
            err(format!("RabbitMQ TLS {what} {}", path.display()), format!("{e} (a PEM file; see vigil.example.toml)"))
        })
    };
    let cert_chain = cfg.tls_ca_file.as_deref().map(|p| read("CA file", p)).transpose()?;
    let identity = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(c), Some(k)) => Some(lapin::tcp::OwnedIdentity::PKCS8 {
            pem: read("certificate", c)?.into_bytes(),
            key: read("key", k)?.into_bytes(),
        }),
        (None, None) => None,
        _ => return Err(err("RabbitMQ TLS", "tls_cert_file and tls_key_file go together: set both or neither")),
    };
    Ok(lapin::tcp::OwnedTLSConfig { identity, cert_chain })
}

/// Connects to `url` with `cfg`'s TLS settings.
pub(crate) async fn connection(
    url: &str,
    cfg: &AmqpConfig,
    props: ConnectionProperties,
) -> Result<Connection, TransportError> {
    let tls = tls_config(cfg)?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| err("RabbitMQ runtime", e))?;
    Connection::connect_with_config(url, props, tls, runtime)
        .await
        .map_err(|e| err(format!("connecting to RabbitMQ at {}", redact(url)), e))
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
        let reply_to = reply_to.to_string();
        Box::pin(async move {
            let mut props = BasicProperties::default()
                .with_correlation_id(reply.correlation_id.as_str().into())
                .with_user_id(self.inner.user.as_str().into())
                .with_delivery_mode(1);
            if let Some(key) = &self.inner.reply_key {
                let mac = key.sign(&reply_to, &reply.correlation_id, &reply.payload);
                props = props.with_headers(table(&[(H_MAC, long(&mac))]));
            }
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
