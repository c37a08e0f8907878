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

use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use vigil_bus::{LogRecord, TelemetryLog, TransportError, topics};
use vigil_proto::v1;

use crate::config::KafkaConfig;
use crate::store::ObjectFrameStore;

/// The Kafka topic for one of Vigil's logical log topics ([`topics`]).
pub fn topic_name(prefix: &str, logical: &str) -> String {
    let rest = logical.strip_prefix(topics::PREFIX).unwrap_or(logical);
    if logical == topics::TASKS { format!("{prefix}.tasks.audit") } else { format!("{prefix}{rest}") }
}

/// Every topic Vigil writes.
pub fn all_topics(prefix: &str) -> Vec<String> {
    topics::ALL.iter().map(|t| topic_name(prefix, t)).collect()
}

fn broker_err(what: impl Into<String>, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker { what: what.into(), reason: e.to_string() }
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

/// The telemetry producer's settings: idempotent, `acks=all`, compression, linger,
/// bounded queue, message size. The log and the benchmarks' bare producers share them.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("queue.buffering.max.messages", cfg.queue_max_messages.to_string())
        .set("message.max.bytes", cfg.max_message_bytes.to_string());
    c
}

/// The Kafka headers of a telemetry record: the envelope's metadata (read from its
/// header alone), with the capture and publish times.
pub fn record_headers(envelope: &[u8], run: &str, capture_ns: i64, publish_ns: i64) -> OwnedHeaders {
    let meta = HeaderOnly::decode(envelope).ok().and_then(|h| h.header).unwrap_or_default();
    OwnedHeaders::new_with_capacity(9)
        .insert(Header { key: "run_id", value: Some(run) })
        .insert(Header { key: "vehicle_id", value: Some(meta.vehicle_id.as_str()) })
        .insert(Header { key: "sensor_id", value: Some(meta.sensor_id.as_str()) })
        .insert(Header { key: "sequence", value: Some(&meta.sequence.to_string()) })
        .insert(Header { key: "capture_time_ns", value: Some(&capture_ns.to_string()) })
        .insert(Header { key: "publish_time_ns", value: Some(&publish_ns.to_string()) })
        .insert(Header { key: "correlation_id", value: Some(meta.correlation_id.as_str()) })
        .insert(Header { key: "content_type", value: Some(meta.content_type.as_str()) })
        .insert(Header { key: "schema_version", value: Some(&meta.schema_version.to_string()) })
}

/// Counters of the log producer.
#[derive(Debug, Default)]
pub struct KafkaLogStats {
    /// Envelopes handed to the producer, each counted once however often it is re-sent.
    pub sent: AtomicU64,
    /// Envelopes the broker acknowledged. Equal to `sent` after a clean `close`.
    pub delivered: AtomicU64,
    /// Deliveries that failed and were re-sent (not counted again in `sent`).
    pub retried: AtomicU64,
    /// Times `append` found the producer queue full and waited.
    pub queue_full_waits: AtomicU64,
    /// Envelopes sent as a reference to the frame store.
    pub claim_checked: AtomicU64,
    pub bytes: AtomicU64,
    per_topic: Mutex<BTreeMap<String, u64>>,
    failed: Mutex<Vec<OwnedMessage>>,
}

/// Producer context: counts deliveries and keeps failures for a re-send.
#[derive(Debug, Clone)]
pub struct LogContext(Arc<KafkaLogStats>);

impl ClientContext for LogContext {}

impl ProducerContext for LogContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut t) = self.0.per_topic.lock() {
                    match t.get_mut(m.topic()) {
                        Some(n) => *n += 1,
                        None => {
                            t.insert(m.topic().to_string(), 1);
                        }
                    }
                }
            }
            Err((e, m)) => {
                tracing::warn!(topic = m.topic(), error = %e, "telemetry delivery failed; will re-send");
                if let Ok(mut f) = self.0.failed.lock() {
                    f.push(m.detach());
                }
            }
        }
    }
}

/// Metadata of an envelope, decoded without touching its payload.
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<v1::Header>,
}

/// The Kafka telemetry log.
pub struct KafkaLog {
    producer: ThreadedProducer<LogContext>,
    cfg: KafkaConfig,
    store: Option<ObjectFrameStore>,
    stats: Arc<KafkaLogStats>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog").field("brokers", &self.cfg.brokers).field("prefix", &self.cfg.topic_prefix).finish()
    }
}

impl KafkaLog {
    /// A producer for Vigil's topics. `store` takes envelopes over the claim-check size
    /// (without one they must fit the broker's limit).
    pub fn new(cfg: &KafkaConfig, store: Option<ObjectFrameStore>) -> Result<Self, TransportError> {
        let stats = Arc::new(KafkaLogStats::default());
        let producer: ThreadedProducer<LogContext> = producer_config(cfg)
            .create_with_context(LogContext(stats.clone()))
            .map_err(|e| broker_err(format!("Kafka producer for {}", cfg.brokers), e))?;
        Ok(Self { producer, cfg: cfg.clone(), store, stats })
    }

    pub fn brokers(&self) -> &str {
        &self.cfg.brokers
    }

    pub fn stats(&self) -> &KafkaLogStats {
        &self.stats
    }

    /// Messages waiting in the producer (queued or in flight) and the queue's bound.
    pub fn queue_fill(&self) -> (u64, u64) {
        (self.producer.in_flight_count().max(0) as u64, self.cfg.queue_max_messages as u64)
    }

    /// Replaces the inline pixels of a big camera envelope by a reference to the store.
    /// Only camera frames are claim-checked: other envelopes are not decoded here (a
    /// 64-beam lidar sweep is over the claim-check size and fits the broker's limit). A
    /// vehicle that stored the frame for its tasks sends the reference already, and the
    /// same blob serves both.
    fn claim_check(&self, logical_topic: &str, run: &str, envelope: &[u8]) -> Result<Option<Vec<u8>>, TransportError> {
        if logical_topic != topics::CAMERA || envelope.len() <= self.cfg.claim_check_bytes {
            return Ok(None);
        }
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let mut env = vigil_proto::decode_envelope(envelope).map_err(|e| broker_err("claim check", e))?;
        let header = env.header.clone().unwrap_or_default();
        let Some(v1::envelope::Payload::Camera(cam)) = env.payload.as_mut() else {
            return Ok(None);
        };
        let Some(v1::camera_frame::Pixels::Data(pixels)) = cam.pixels.take() else {
            return Ok(None);
        };
        let key = vigil_bus::frame_key(&header.vehicle_id, run, &header.sensor_id, header.sequence);
        let size = pixels.len() as u64;
        let (uri, sha256) = store.put_bytes(&key, pixels)?;
        cam.pixels = Some(v1::camera_frame::Pixels::Blob(v1::BlobRef { uri, size, sha256 }));
        self.stats.claim_checked.fetch_add(1, Ordering::Relaxed);
        Ok(Some(vigil_proto::encode_envelope(&env)))
    }

    fn send_owned(&self, m: &OwnedMessage) -> Result<(), TransportError> {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(m.topic());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(p) = m.payload() {
            rec = rec.payload(p);
        }
        if let Some(h) = m.headers() {
            rec = rec.headers(h.clone());
        }
        if let Some(ts) = m.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        self.send_record(rec)
    }

    fn send_record(&self, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<(), TransportError> {
        let started = Instant::now();
        let limit = Duration::from_millis(self.cfg.queue_full_timeout_ms);
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.stats.queue_full_waits.fetch_add(1, Ordering::Relaxed);
                    if started.elapsed() > limit {
                        return Err(TransportError::Backlog {
                            topic: back.topic.to_string(),
                            reason: format!(
                                "the producer queue stayed full ({} messages) for {limit:?}: the broker at {} is not keeping up or is down",
                                self.cfg.queue_max_messages, self.cfg.brokers
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, back)) => {
                    return Err(TransportError::Log { topic: back.topic.to_string(), reason: e.to_string() });
                }
            }
        }
    }

    fn resend_failed(&self) -> Result<usize, TransportError> {
        let failed = std::mem::take(&mut *self.stats.failed.lock().map_err(|_| TransportError::Closed)?);
        let n = failed.len();
        let mut left = failed.into_iter();
        while let Some(m) = left.next() {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.send_owned(&m) {
                // Kept for the next try, ahead of any failure reported since.
                let mut failed = self.stats.failed.lock().map_err(|_| TransportError::Closed)?;
                let newer = std::mem::take(&mut *failed);
                failed.push(m);
                failed.extend(left);
                failed.extend(newer);
                return Err(e);
            }
        }
        Ok(n)
    }
}

impl TelemetryLog for KafkaLog {
    fn append(&self, record: LogRecord<'_>) -> Result<(), TransportError> {
        self.resend_failed()?;
        let topic = topic_name(&self.cfg.topic_prefix, record.topic);
        let checked = self.claim_check(record.topic, record.run, record.envelope)?;
        let payload: &[u8] = checked.as_deref().unwrap_or(record.envelope);
        let mut headers = record_headers(record.envelope, record.run, record.capture_ns, record.publish_ns);
        if let Some((scenario, seed)) = &self.cfg.simulated {
            headers = headers
                .insert(Header { key: "scenario", value: Some(scenario.as_str()) })
                .insert(Header { key: "seed", value: Some(&seed.to_string()) });
        }
        self.stats.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
            .key(record.key.as_bytes())
            .payload(payload)
            // The Kafka timestamp is the producer's wall time (librdkafka's default), not
            // the capture time: retention counts from it, and a simulated drive's capture
            // times start on a fixed past date that retention would delete at once. The
            // capture time travels in the `capture_time_ns` header.
            .headers(headers);
        self.send_record(rec)?;
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Waits on librdkafka's count of records queued, in flight or awaiting their
            // delivery report (served by the producer's polling thread). `flush` would do
            // the same but polls from this thread too, in 100 ms waits that return late.
            while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.resend_failed()? == 0 && self.producer.in_flight_count() == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(TransportError::Log {
                    topic: self.cfg.topic_prefix.clone(),
                    reason: format!("{} messages still undelivered after 60 s", self.producer.in_flight_count()),
                });
            }
        }
        Ok(self.stats.per_topic.lock().map(|t| t.clone()).unwrap_or_default())
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads a topic's records (all partitions) whose Kafka timestamp (append wall time)
/// lies in `[from_ms, to_ms)`, up to the high watermark at the time of the call. The start
/// offsets come from the broker's offsets-for-times; records are filtered by timestamp
/// as well, so a broker that answers the lookup loosely still yields exactly the window.
pub fn read_window(
    cfg: &KafkaConfig,
    topic: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, TransportError> {
    let mut c = client_config(cfg);
    c.set("group.id", format!("vigil-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create().map_err(|e| broker_err("Kafka consumer", e))?;
    let meta =
        consumer.fetch_metadata(Some(topic), timeout).map_err(|e| broker_err(format!("metadata of `{topic}`"), e))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(broker_err(format!("topic `{topic}`"), "does not exist (or has no partitions)"));
    }
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| broker_err(format!("watermarks of {topic}/{p}"), e))?;
        ends.insert(p, high);
        // With a window start, offsets-for-times below moves this.
        tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(|e| broker_err("partition list", e))?;
    }
    if let Some(from) = from_ms {
        let mut q = TopicPartitionList::new();
        for &p in &partitions {
            q.add_partition_offset(topic, p, Offset::Offset(from)).map_err(|e| broker_err("partition list", e))?;
        }
        let found = consumer.offsets_for_times(q, timeout).map_err(|e| broker_err("offsets-for-times", e))?;
        for el in found.elements() {
            let off = match el.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // No record at or after the time: start at the end (nothing to read).
                _ => Offset::Offset(ends[&el.partition()]),
            };
            tpl.set_partition_offset(topic, el.partition(), off).map_err(|e| broker_err("partition list", e))?;
        }
    }
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for el in tpl.elements() {
        if let Offset::Offset(o) = el.offset()
            && o < ends[&el.partition()]
        {
            remaining.insert(el.partition(), o);
        }
    }
    consumer.assign(&tpl).map_err(|e| broker_err("assign", e))?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(broker_err(format!("reading `{topic}`"), format!("timed out with {remaining:?} left")));
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.map_err(|e| broker_err(format!("reading `{topic}`"), e))?;
        let p = m.partition();
        let ts = m.timestamp().to_millis();
        if m.offset() >= ends[&p] {
            continue; // written after the call began
        }
        if m.offset() + 1 >= ends[&p] {
            remaining.remove(&p);
        }
        let in_window = ts.is_none_or(|t| from_ms.is_none_or(|f| t >= f) && to_ms.is_none_or(|e| t < e));
        if !in_window {
            continue;
        }
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(ConsumedRecord {
            topic: topic.to_string(),
            partition: p,
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            timestamp_ms: ts,
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        });
    }
    Ok(out)
}

/// Reads the records of `topic` captured in `[from_ns, to_ns)` (the `capture_time_ns`
/// header, on the vehicle clock) and, when given, keyed by `vehicle`.
///
/// Kafka indexes time by append time, and a record is appended after it is captured: the
/// broker's offsets-for-times lookup at `from − slack` (slack: the most the vehicle's clock
/// may run ahead of the broker's) is a start that skips no record of the window. Every
/// record from there is filtered by its capture time, so the window is exact whatever the
/// lookup answers — a drive recorded on a simulated clock, whose capture times lie before
/// every append time, is read from the start and filtered the same way.
#[allow(clippy::too_many_arguments)]
pub fn read_capture_window(
    cfg: &KafkaConfig,
    topic: &str,
    vehicle: Option<&str>,
    run: Option<&str>,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    slack: Duration,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, TransportError> {
    let from_ms = from_ns.map(|f| f.div_euclid(1_000_000) - slack.as_millis() as i64);
    let records = read_window(cfg, topic, from_ms, None, timeout)?;
    Ok(records
        .into_iter()
        .filter(|r| vehicle.is_none_or(|v| r.key.as_deref() == Some(v)))
        .filter(|r| run.is_none_or(|d| r.headers.get("run_id").map(String::as_str) == Some(d)))
        .filter(|r| {
            let capture = r.headers.get("capture_time_ns").and_then(|c| c.parse::<i64>().ok());
            capture.is_some_and(|c| from_ns.is_none_or(|f| c >= f) && to_ns.is_none_or(|t| c < t))
        })
        .collect())
}

/// One drive in Kafka: one vehicle process's run (`run_id` header) of one vehicle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriveSummary {
    /// The run id (what `--drive` takes).
    pub drive: String,
    pub vehicle: String,
    pub first_capture_ns: i64,
    pub last_capture_ns: i64,
    /// The scenario and seed of a simulated drive (`vigil run`); absent otherwise.
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    /// Messages per logical stream (`lidar`, `camera`, `radar`, `groundtruth`, `tasks`,
    /// `recommendations`).
    pub messages: BTreeMap<String, u64>,
}

/// Every drive in Vigil's topics, oldest first. Reads each topic once (headers decide;
/// camera records are claim-checked, so small). Records written before run ids existed
/// are grouped under the drive `unknown`.
pub fn list_drives(cfg: &KafkaConfig, timeout: Duration) -> Result<Vec<DriveSummary>, TransportError> {
    let mut drives: BTreeMap<(String, String), DriveSummary> = BTreeMap::new();
    for l in topics::ALL {
        let topic = topic_name(&cfg.topic_prefix, l);
        let records = match read_window(cfg, &topic, None, None, timeout) {
            Ok(r) => r,
            // A topic not created yet holds no drive.
            Err(TransportError::Broker { reason, .. }) if reason.contains("does not exist") => continue,
            Err(e) => return Err(e),
        };
        let stream = l.rsplit('.').next().unwrap_or(l).to_string();
        for r in records {
            let run = r.headers.get("run_id").cloned().unwrap_or_else(|| "unknown".into());
            let vehicle = r.key.clone().unwrap_or_default();
            let capture: i64 = r.headers.get("capture_time_ns").and_then(|c| c.parse().ok()).unwrap_or(0);
            let d = drives.entry((run.clone(), vehicle.clone())).or_insert_with(|| DriveSummary {
                drive: run,
                vehicle,
                first_capture_ns: i64::MAX,
                last_capture_ns: i64::MIN,
                scenario: None,
                seed: None,
                messages: BTreeMap::new(),
            });
            if d.scenario.is_none() {
                d.scenario = r.headers.get("scenario").cloned();
                d.seed = r.headers.get("seed").and_then(|s| s.parse().ok());
            }
            if l != topics::RECOMMENDATIONS && l != topics::TASKS {
                d.first_capture_ns = d.first_capture_ns.min(capture);
                d.last_capture_ns = d.last_capture_ns.max(capture);
            }
            *d.messages.entry(stream.clone()).or_default() += 1;
        }
    }
    let mut out: Vec<DriveSummary> = drives.into_values().collect();
    for d in &mut out {
        if d.first_capture_ns == i64::MAX {
            (d.first_capture_ns, d.last_capture_ns) = (0, 0);
        }
    }
    // Run ids are UUIDv7 (time-ordered); the first capture breaks ties and orders the rest.
    out.sort_by(|a, b| (a.first_capture_ns, &a.drive, &a.vehicle).cmp(&(b.first_capture_ns, &b.drive, &b.vehicle)));
    Ok(out)
}
