//! The telemetry log in Kafka, through rdkafka only (so it runs unchanged against
//! Apache Kafka and any Kafka-protocol broker).
//!
//! - Topics `<prefix>.telemetry.{lidar,camera,radar,groundtruth}`, `<prefix>.recommendations`
//!   and `<prefix>.tasks.audit`, created with partitions and retention from config.
//! - Key = vehicle id (a vehicle's stream stays ordered in one partition); idempotent
//!   producer, `acks=all`, lz4; Kafka headers carry the envelope metadata.
//! - Camera envelopes over `claim_check_bytes` go to the frame store and travel as a `BlobRef`
//!   (uri + size + sha256): a camera frame does not fit the broker's ~1 MB limit. A vehicle
//!   with perception has stored the pixels already and sends the reference.
//! - A failed delivery is re-sent, never dropped silently; the producer queue is bounded
//!   and its fill is visible in [`KafkaLogStats`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use vigil_bus::{FrameStore, LogRecord, TelemetryLog, TransportError, topics};
use vigil_proto::v1;

use crate::broker_err;
use crate::config::KafkaConfig;
use crate::store::ObjectFrameStore;

mod log;
mod read;
pub mod window;

pub use self::log::{KafkaLog, KafkaLogStats, LogContext, producer_config, record_headers};
pub use self::read::{ConsumedRecord, DriveSummary, list_drives, read_capture_window, read_window};

/// The Kafka topic for one of Vigil's logical log topics ([`topics`]).
pub fn topic_name(prefix: &str, logical: &str) -> String {
    let rest = logical.strip_prefix(topics::PREFIX).unwrap_or(logical);
    if logical == topics::TASKS { format!("{prefix}.tasks.audit") } else { format!("{prefix}{rest}") }
}

/// Every topic Vigil writes.
pub fn all_topics(prefix: &str) -> Vec<String> {
    topics::ALL.iter().map(|t| topic_name(prefix, t)).collect()
}

/// The client settings shared by producers, consumers and the admin client.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Creates Vigil's topics (partitions and retention from config); existing ones are kept.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<(), TransportError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg).create().map_err(|e| broker_err(format!("Kafka admin client for {}", cfg.brokers), e))?;
    let names = all_topics(&cfg.topic_prefix);
    let retention = cfg.retention_ms.to_string();
    let max_bytes = cfg.max_message_bytes.to_string();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, cfg.partitions, TopicReplication::Fixed(cfg.replication))
                .set("retention.ms", &retention)
                .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| {
        broker_err(
            format!("creating topics on {}", cfg.brokers),
            format!("{e} (is the broker up? `scripts/brokers.sh up` starts one)"),
        )
    })?;
    for r in results {
        if let Err((name, code)) = r
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(broker_err(format!("creating topic `{name}`"), code));
        }
    }
    Ok(())
}

/// How long a starting process waits for Kafka before it says it is driving without it.
pub const KAFKA_FIRST_ANSWER: Duration = Duration::from_secs(1);

/// Creates the topics without holding up the start: a vehicle drives with Kafka down
/// (its telemetry waits in the producer and the spool). Waits up to
/// [`KAFKA_FIRST_ANSWER`]; past that it warns, once, and keeps trying in the background
/// with backoff (1 s doubling to 30 s) until the topics exist. Returns whether they
/// were ready in time.
pub fn ensure_topics_in_background(cfg: &KafkaConfig, rt: &tokio::runtime::Handle) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let brokers = cfg.brokers.clone();
    let cfg = cfg.clone();
    rt.spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // One attempt against a broker that is down can hang for the client's socket
            // timeout; a fresh one finds a broker that has just come up.
            let tried = tokio::time::timeout(Duration::from_secs(5), ensure_topics(&cfg)).await;
            match tried.unwrap_or_else(|_| Err(broker_err(format!("creating topics on {}", cfg.brokers), "no answer in 5 s"))) {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(brokers = %cfg.brokers, attempt, "Kafka answered: topics ready, spooled telemetry flows");
                    }
                    let _ = tx.send(());
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "Kafka topics not created yet; telemetry is held until they are");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    let ready = rx.recv_timeout(KAFKA_FIRST_ANSWER).is_ok();
    if !ready {
        tracing::warn!(
            %brokers,
            "Kafka did not answer within {KAFKA_FIRST_ANSWER:?}: driving on, telemetry is held in the producer and the spool until it does"
        );
    }
    ready
}

/// Deletes topics (a benchmark's own, when it is done); ones already gone are fine.
pub async fn delete_topics(cfg: &KafkaConfig, names: &[String]) -> Result<(), TransportError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(cfg).create().map_err(|e| broker_err(format!("Kafka admin client for {}", cfg.brokers), e))?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .delete_topics(&names, &opts)
        .await
        .map_err(|e| broker_err(format!("deleting topics on {}", cfg.brokers), e))?;
    for r in results {
        if let Err((name, code)) = r
            && code != RDKafkaErrorCode::UnknownTopicOrPartition
        {
            return Err(broker_err(format!("deleting topic `{name}`"), code));
        }
    }
    Ok(())
}
