//! Broker settings: the `[kafka]`, `[amqp]` and `[frames]` tables of `vigil.toml`.
//! Nothing here holds a credential or a vhost: the AMQP URL and any Kafka SASL settings
//! come from the file or the environment (`VIGIL_AMQP_URL`, `VIGIL_KAFKA_BROKERS`, …).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Kafka (or any Kafka-protocol broker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic names start with this: `<prefix>.telemetry.radar`, `<prefix>.recommendations`, …
    pub topic_prefix: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic retention (`retention.ms`); drives are replayable for this long.
    pub retention_ms: i64,
    /// `lz4` or `zstd` (zstd needs librdkafka built with it), or `none`.
    pub compression: String,
    /// The producer's queue bound (`queue.buffering.max.messages`); a full queue makes
    /// `append` wait (counted), never drop.
    pub queue_max_messages: u32,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// Envelopes bigger than this travel as a reference to the frame store (claim check).
    pub claim_check_bytes: usize,
    /// The broker's message size limit (`message.max.bytes`).
    pub max_message_bytes: usize,
    /// How long `append` waits for room in a full producer queue before it fails.
    pub queue_full_timeout_ms: u64,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`,
    /// `"sasl.mechanisms" = "SCRAM-SHA-512"`, `"ssl.ca.location" = "/etc/ca.pem"`.
    pub properties: BTreeMap<String, String>,
    /// A simulated drive's scenario and seed, written as record headers so that
    /// `vigil drives` can name them (set by `vigil run`, never by a file).
    #[serde(skip)]
    pub simulated: Option<(String, u64)>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "vigil".into(),
            partitions: 3,
            replication: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            compression: "lz4".into(),
            queue_max_messages: 10_000,
            linger_ms: 5,
            claim_check_bytes: 256 * 1024,
            max_message_bytes: 1_000_000,
            queue_full_timeout_ms: 10_000,
            properties: BTreeMap::new(),
            simulated: None,
        }
    }
}

/// How a task class is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// delivery_mode 1: kept in memory, lost if the broker restarts.
    Transient,
    /// delivery_mode 2: written to the broker's disk before it is confirmed.
    Persistent,
}

/// RabbitMQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost` or `amqps://…` (TLS through the system's
    /// OpenSSL; `SSL_CERT_FILE` points it at a private CA). No default: from the file or
    /// `VIGIL_AMQP_URL`.
    pub url: Option<String>,
    /// Exchange and queue names start with this: `<prefix>.tasks`, `<prefix>.tasks.dlx`, …
    pub prefix: String,
    /// Unacked tasks a worker holds at once (`basic.qos`). 1 by default: tasks a worker
    /// has prefetched are out of the priority queue, so an urgent task published after
    /// them would wait behind them (seen in the `priority_capacity…` test with 4).
    pub prefetch: u16,
    /// `x-max-priority` of the task queue.
    pub max_priority: u8,
    /// `x-max-length` of the task queue; publishes beyond are refused (`reject-publish`)
    /// and the vehicle falls back at once.
    pub queue_capacity: u32,
    /// Deliveries of a task before it is dead-lettered.
    pub max_attempts: u32,
    /// Retry n waits `retry_base_ms × 2^(n-1)` in a TTL delay queue.
    pub retry_base_ms: u64,
    /// Tasks at or above this priority (TTC under ~1.5 s) are `urgent`.
    pub urgent_priority: u8,
    /// Persistence of urgent tasks.
    pub urgent: Persistence,
    /// Persistence of the other tasks.
    pub routine: Persistence,
    /// The model name in routing keys (`task.<model>.p<priority>`).
    pub model: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "vigil".into(),
            prefetch: 1,
            max_priority: 9,
            queue_capacity: 256,
            max_attempts: 3,
            retry_base_ms: 10,
            urgent_priority: 7,
            // Chosen from `vigil bench amqp` (figures in crates/vigil-brokers/README.md):
            // a task is worthless after its 100 ms deadline, so waiting for the disk buys
            // nothing for any class; a broker restart makes the vehicle fall back instead.
            urgent: Persistence::Transient,
            routine: Persistence::Transient,
            model: "obstacle-classifier".into(),
        }
    }
}

/// The claim-check store for big payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramesConfig {
    /// `file:///abs/dir` (default `file:///var/tmp/vigil-frames`) or `s3://bucket/prefix`.
    pub url: String,
}

impl Default for FramesConfig {
    fn default() -> Self {
        Self { url: "file:///var/tmp/vigil-frames/".into() }
    }
}

/// Everything the broker transports need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub kafka: KafkaConfig,
    pub amqp: AmqpConfig,
    pub frames: FramesConfig,
}
