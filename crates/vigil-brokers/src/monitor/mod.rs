//! `vigil monitor`: a Kafka consumer-group service over Vigil's topics.
//!
//! It reads the telemetry topics, the task audit log and the recommendations, and keeps:
//! per-vehicle, per-stream message counts and rates (from capture times, so a backlog
//! read late still shows the rate the vehicle produced at); ingest latency (capture →
//! publish on the vehicle) and end-to-end latency (frame capture → recommendation back
//! at the vehicle, joining each task's audit record with its recommendation by task id,
//! both stamped by the vehicle's clock); consumer lag per topic; the recommendation mix;
//! and a drift signal — the recommended classes against the class mix the model was
//! trained on, plus the share of low-confidence predictions.
//!
//! It only reads: it never creates topics nor writes to them. Its offsets are committed
//! under its consumer group, so a restarted monitor resumes where it stopped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use vigil_bus::{TransportError, topics};
use vigil_core::ObstacleClass;
use vigil_core::policy::Action;
use vigil_proto::v1::{self, envelope::Payload};

use crate::config::KafkaConfig;
use crate::kafka::{client_config, topic_name};

/// Below this confidence a prediction counts as low-confidence (a drift signal).
pub const LOW_CONFIDENCE: f32 = 0.6;
/// Latency samples kept for percentiles (the most recent).
const SAMPLES: usize = 20_000;
/// Tasks or recommendations waiting for their other half, at most.
const PENDING: usize = 100_000;
/// Vehicles told apart, at most: vehicle ids come from Kafka headers, which anyone who
/// may produce can set, so the ones after these are counted together as [`OTHER_VEHICLES`].
pub const MAX_VEHICLES: usize = 1024;
pub const OTHER_VEHICLES: &str = "(other)";
/// The latency histograms the monitor feeds (the `metrics` facade; the process's registry
/// serves them).
pub const INGEST_LATENCY_SECONDS: &str = "vigil_monitor_ingest_latency_seconds";
pub const END_TO_END_LATENCY_SECONDS: &str = "vigil_monitor_end_to_end_latency_seconds";

/// The class mix a model was trained on, to compare the recommended classes with.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReference {
    /// What the mix is, for people: e.g. "obstacle-classifier v1 training data (balanced)".
    pub source: String,
    /// Share per class name (sums to 1).
    pub shares: BTreeMap<String, f64>,
}

impl ClassReference {
    /// Equal shares over `classes` (a balanced training set).
    pub fn balanced(source: impl Into<String>, classes: &[String]) -> Self {
        let share = 1.0 / classes.len().max(1) as f64;
        Self { source: source.into(), shares: classes.iter().map(|c| (c.clone(), share)).collect() }
    }
}

/// What the monitor is told.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub group: String,
    /// A new group starts at the beginning of the topics (else at their end).
    pub from_beginning: bool,
    pub reference: Option<ClassReference>,
    /// Recommendation actions (`BRAKE_HARD`, …) that make a [`Trigger`].
    pub capture_on: Vec<Action>,
}

/// A recommendation whose action is one of the monitor's triggers: a moment of a drive
/// worth keeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The action's name (`BRAKE_HARD`).
    pub trigger: String,
    pub vehicle: String,
    /// The run its task id names (`<vehicle>/<run>/task/<n>`), when it names one.
    pub run: Option<String>,
    pub task_id: String,
    /// Capture time of the task's frame when its audit record was read first, else the
    /// recommendation's own time (the vehicle's clock either way).
    pub at_ns: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Telemetry(&'static str),
    Tasks,
    Recommendations,
}

/// A latency series: recent samples for percentiles, each also fed to the process's
/// histogram `name`.
#[derive(Debug, Clone, Default)]
struct Series {
    name: &'static str,
    count: u64,
    recent: VecDeque<f64>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self { name, count: 0, recent: VecDeque::new() }
    }

    fn add(&mut self, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        metrics::histogram!(self.name).record(seconds);
        self.count += 1;
        if self.recent.len() == SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(seconds);
    }

    fn summary(&self) -> LatencySummary {
        let mut v: Vec<f64> = self.recent.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if v.is_empty() {
                return 0.0;
            }
            v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        };
        LatencySummary { samples: self.count, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) }
    }
}

/// Latency percentiles, milliseconds, over the most recent samples.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    pub count: u64,
    pub bytes: u64,
    /// Messages per second of capture time (first to last message seen).
    pub rate_hz: f64,
    #[serde(skip)]
    first_ns: Option<i64>,
    #[serde(skip)]
    last_ns: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub reference: String,
    /// Total variation distance between the recommended classes and the reference mix:
    /// 0 = the same mix, 1 = disjoint.
    pub class_tvd: f64,
    pub mean_confidence: f64,
    /// Share of recommendations below [`LOW_CONFIDENCE`].
    pub low_confidence_share: f64,
}

/// What `vigil monitor` prints (and serves).
#[derive(Debug, Clone, Serialize)]
pub struct MonitorSnapshot {
    pub group: String,
    pub topics: Vec<String>,
    /// vehicle → stream → counts.
    pub vehicles: BTreeMap<String, BTreeMap<String, StreamStats>>,
    pub ingest_latency_ms: LatencySummary,
    pub end_to_end_latency_ms: LatencySummary,
    pub tasks_seen: u64,
    /// Tasks whose recommendation was seen too.
    pub tasks_answered: u64,
    pub recommendations: u64,
    pub by_action: BTreeMap<String, u64>,
    pub by_class: BTreeMap<String, u64>,
    pub drift: Option<Drift>,
    /// Consumer lag per topic (high watermark − position, summed over partitions).
    pub lag: BTreeMap<String, i64>,
    pub total_lag: i64,
    pub decode_errors: u64,
}

/// The consumer and what it has seen.
pub struct Monitor {
    consumer: BaseConsumer,
    cfg: MonitorConfig,
    seen: Seen,
}

/// What the monitor has read so far.
#[derive(Default)]
struct Seen {
    kinds: HashMap<String, Kind>,
    vehicles: BTreeMap<String, BTreeMap<String, StreamStats>>,
    ingest: Series,
    end_to_end: Series,
    /// task id → capture time of its frame (waiting for the recommendation).
    tasks: HashMap<String, i64>,
    /// task id → time the recommendation reached the vehicle (waiting for the task).
    answers: HashMap<String, i64>,
    tasks_seen: u64,
    tasks_answered: u64,
    by_action: BTreeMap<String, u64>,
    by_class: BTreeMap<String, u64>,
    confidence_sum: f64,
    low_confidence: u64,
    recommendations: u64,
    decode_errors: u64,
    lag: BTreeMap<String, i64>,
    capture_on: Vec<Action>,
    /// Triggers not yet taken ([`Monitor::take_triggers`]).
    triggers: Vec<Trigger>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("group", &self.cfg.group).finish()
    }
}

fn header(m: &impl Message, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn header_i64(m: &impl Message, key: &str) -> Option<i64> {
    header(m, key)?.parse().ok()
}

fn class_name(c: v1::ObstacleClass) -> &'static str {
    let c = match c {
        v1::ObstacleClass::Pedestrian => ObstacleClass::Pedestrian,
        v1::ObstacleClass::Cyclist => ObstacleClass::Cyclist,
        v1::ObstacleClass::Vehicle => ObstacleClass::Vehicle,
        v1::ObstacleClass::Debris => ObstacleClass::Debris,
        v1::ObstacleClass::Animal => ObstacleClass::Animal,
        _ => ObstacleClass::None,
    };
    c.name()
}

impl Monitor {
    /// Joins the consumer group on `cfg`'s topics. Fails when none of Vigil's topics
    /// exist under the prefix (a wrong prefix or broker reads as an error, not as silence).
    pub fn connect(kafka: &KafkaConfig, cfg: MonitorConfig) -> Result<Self, TransportError> {
        let mut c = client_config(kafka);
        c.set("group.id", &cfg.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", if cfg.from_beginning { "earliest" } else { "latest" })
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = c.create().map_err(|e| crate::broker_err("Kafka consumer", e))?;
        let mut kinds = HashMap::new();
        for s in vigil_proto::wire::Stream::ALL {
            kinds.insert(topic_name(&kafka.topic_prefix, s.topic()), Kind::Telemetry(s.name()));
        }
        kinds.insert(topic_name(&kafka.topic_prefix, topics::TASKS), Kind::Tasks);
        kinds.insert(topic_name(&kafka.topic_prefix, topics::RECOMMENDATIONS), Kind::Recommendations);
        let meta = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| crate::broker_err(format!("Kafka metadata from {}", kafka.brokers), e))?;
        let present: Vec<String> =
            meta.topics().iter().map(|t| t.name().to_string()).filter(|n| kinds.contains_key(n)).collect();
        if present.is_empty() {
            return Err(crate::broker_err(
                format!("Kafka at {}", kafka.brokers),
                format!(
                    "none of Vigil's topics exist under the prefix `{}` (e.g. {}); check --kafka and the topic prefix ([kafka] topic_prefix, VIGIL_KAFKA_TOPIC_PREFIX), or run a vehicle first",
                    kafka.topic_prefix,
                    topic_name(&kafka.topic_prefix, topics::RADAR)
                ),
            ));
        }
        kinds.retain(|k, _| present.contains(k));
        let names: Vec<&str> = present.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| crate::broker_err("subscribing", e))?;
        let capture_on = cfg.capture_on.clone();
        Ok(Self {
            consumer,
            cfg,
            seen: Seen {
                kinds,
                capture_on,
                ingest: Series::new(INGEST_LATENCY_SECONDS),
                end_to_end: Series::new(END_TO_END_LATENCY_SECONDS),
                ..Seen::default()
            },
        })
    }

    /// Reads records for `for_`; returns how many.
    pub fn poll(&mut self, for_: Duration) -> Result<u64, TransportError> {
        let end = Instant::now() + for_;
        let mut n = 0;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                None => {}
                Some(Ok(m)) => {
                    n += 1;
                    self.seen.record(&m);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "monitor: consumer error"),
            }
        }
        Ok(n)
    }

    /// The triggers read since the last call, oldest first.
    pub fn take_triggers(&mut self) -> Vec<Trigger> {
        std::mem::take(&mut self.seen.triggers)
    }

    /// The newest capture time of `vehicle`'s telemetry read so far.
    pub fn newest_capture(&self, vehicle: &str) -> Option<i64> {
        self.seen.vehicles.get(vehicle)?.values().filter_map(|s| s.last_ns).max()
    }

    /// Consumer lag per topic: high watermark − the group's position (or the low
    /// watermark where it has not read a partition yet).
    pub fn refresh_lag(&mut self) -> Result<i64, TransportError> {
        let assignment = self.consumer.assignment().map_err(|e| crate::broker_err("assignment", e))?;
        let positions = self.consumer.position().unwrap_or_else(|_| TopicPartitionList::new());
        let mut lag: BTreeMap<String, i64> = self.seen.kinds.keys().map(|t| (t.clone(), 0)).collect();
        for el in assignment.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(5))
                .map_err(|e| crate::broker_err(format!("watermarks of {}/{}", el.topic(), el.partition()), e))?;
            let at = match positions.find_partition(el.topic(), el.partition()).map(|p| p.offset()) {
                Some(Offset::Offset(o)) => o,
                _ if self.cfg.from_beginning => low,
                _ => high,
            };
            *lag.entry(el.topic().to_string()).or_default() += (high - at).max(0);
        }
        self.seen.lag = lag;
        Ok(self.seen.lag.values().sum())
    }

    /// Whether the group has partitions assigned (after the first rebalance).
    pub fn assigned(&self) -> bool {
        self.consumer.assignment().map(|a| a.count() > 0).unwrap_or(false)
    }

    pub fn snapshot(&self) -> MonitorSnapshot {
        let drift = self.cfg.reference.as_ref().filter(|_| self.seen.recommendations > 0).map(|r| {
            let total = self.seen.recommendations as f64;
            let mut names: Vec<&String> = r.shares.keys().chain(self.seen.by_class.keys()).collect();
            names.sort();
            names.dedup();
            let tvd = 0.5
                * names
                    .iter()
                    .map(|n| {
                        let seen = self.seen.by_class.get(*n).copied().unwrap_or(0) as f64 / total;
                        (seen - r.shares.get(*n).copied().unwrap_or(0.0)).abs()
                    })
                    .sum::<f64>();
            Drift {
                reference: r.source.clone(),
                class_tvd: tvd,
                mean_confidence: self.seen.confidence_sum / total,
                low_confidence_share: self.seen.low_confidence as f64 / total,
            }
        });
        let mut by_action: BTreeMap<String, u64> = Action::ALL.iter().map(|a| (a.name().to_string(), 0)).collect();
        by_action.extend(self.seen.by_action.clone());
        MonitorSnapshot {
            group: self.cfg.group.clone(),
            topics: self.seen.kinds.keys().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
            vehicles: self.seen.vehicles.clone(),
            ingest_latency_ms: self.seen.ingest.summary(),
            end_to_end_latency_ms: self.seen.end_to_end.summary(),
            tasks_seen: self.seen.tasks_seen,
            tasks_answered: self.seen.tasks_answered,
            recommendations: self.seen.recommendations,
            by_action,
            by_class: self.seen.by_class.clone(),
            drift,
            lag: self.seen.lag.clone(),
            total_lag: self.seen.lag.values().sum(),
            decode_errors: self.seen.decode_errors,
        }
    }
}

impl Seen {
    fn record(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(&kind) = self.kinds.get(m.topic()) else { return };
        let capture = header_i64(m, "capture_time_ns");
        let publish = header_i64(m, "publish_time_ns");
        match kind {
            Kind::Telemetry(stream) => {
                let vehicle = header(m, "vehicle_id")
                    .or_else(|| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
                    .unwrap_or_default();
                let vehicle = if self.vehicles.len() < MAX_VEHICLES || self.vehicles.contains_key(&vehicle) {
                    vehicle
                } else {
                    OTHER_VEHICLES.to_string()
                };
                let s = self.vehicles.entry(vehicle).or_default().entry(stream.to_string()).or_default();
                s.count += 1;
                s.bytes += m.payload_len() as u64;
                if let Some(c) = capture {
                    s.first_ns = Some(s.first_ns.map_or(c, |f| f.min(c)));
                    s.last_ns = Some(s.last_ns.map_or(c, |l| l.max(c)));
                    let span = (s.last_ns.unwrap_or(c) - s.first_ns.unwrap_or(c)) as f64 / 1e9;
                    // n messages over the span between the first and the last: n−1 intervals.
                    s.rate_hz = if span > 0.0 { (s.count - 1) as f64 / span } else { 0.0 };
                }
                if let (Some(c), Some(p)) = (capture, publish) {
                    self.ingest.add(p.saturating_sub(c) as f64 / 1e9);
                }
            }
            Kind::Tasks => {
                self.tasks_seen += 1;
                let (Some(id), Some(c)) = (header(m, "correlation_id"), capture) else {
                    self.decode_errors += 1;
                    return;
                };
                match self.answers.remove(&id) {
                    Some(at) => self.answered(at.saturating_sub(c)),
                    None => bounded_insert(&mut self.tasks, id, c),
                }
            }
            Kind::Recommendations => self.recommendation(m, publish),
        }
    }

    fn recommendation(&mut self, m: &rdkafka::message::BorrowedMessage<'_>, publish: Option<i64>) {
        let (header, rec) = match m.payload().map(vigil_proto::decode_envelope) {
            Some(Ok(v1::Envelope { header, payload: Some(Payload::Recommendation(r)) })) => (header, r),
            _ => {
                self.decode_errors += 1;
                return;
            }
        };
        self.recommendations += 1;
        let action = vigil_proto::action_from_proto(rec.action());
        if self.capture_on.contains(&action)
            && let Some(h) = &header
        {
            let at_ns = self.tasks.get(&rec.task_id).copied().unwrap_or(h.capture_time_ns);
            self.triggers.push(Trigger {
                trigger: action.name().to_string(),
                vehicle: h.vehicle_id.clone(),
                run: vigil_bus::embedded::recorder::run_of_task(&rec.task_id).map(str::to_string),
                task_id: rec.task_id.clone(),
                at_ns,
            });
        }
        *self.by_action.entry(action.name().to_string()).or_default() += 1;
        *self.by_class.entry(class_name(rec.class()).to_string()).or_default() += 1;
        self.confidence_sum += rec.confidence as f64;
        if rec.confidence < LOW_CONFIDENCE {
            self.low_confidence += 1;
        }
        let Some(at) = publish else { return };
        match self.tasks.remove(&rec.task_id) {
            Some(c) => self.answered(at.saturating_sub(c)),
            None => bounded_insert(&mut self.answers, rec.task_id, at),
        }
    }

    fn answered(&mut self, ns: i64) {
        self.tasks_answered += 1;
        self.end_to_end.add(ns as f64 / 1e9);
    }
}

fn bounded_insert(map: &mut HashMap<String, i64>, k: String, v: i64) {
    if map.len() >= PENDING {
        // Halves never joined (a task answered before the monitor started, or a
        // fallback): forget them rather than grow without bound.
        map.clear();
    }
    map.insert(k, v);
}
