//! The producer side: the telemetry log, its record headers and delivery counters.

use super::*;

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
    let meta = vigil_proto::header_of(envelope).unwrap_or_default();
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
        let mut env = vigil_proto::decode_envelope(envelope).map_err(|e| broker_err("claim check", e.to_string()))?;
        let header = env.header.clone().unwrap_or_default();
        let Some(v1::envelope::Payload::Camera(cam)) = env.payload.as_mut() else {
            return Ok(None);
        };
        let Some(v1::camera_frame::Pixels::Data(pixels)) = cam.pixels.take() else {
            return Ok(None);
        };
        let key = vigil_bus::frame_key(&header.vehicle_id, run, &header.sensor_id, header.sequence);
        let blob = if cam.encoding == v1::PixelEncoding::Rgb8 as i32 {
            store.put_rgb8(&key, pixels, cam.width, cam.height)?
        } else {
            store.put(&key, pixels)?
        };
        cam.pixels = Some(v1::camera_frame::Pixels::Blob(blob));
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
