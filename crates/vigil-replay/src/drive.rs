//! A recorded drive: its messages in capture order, read from MCAP or Kafka, and the id
//! that names it the same from either.

use std::path::Path;
use std::time::Duration;

use vigil_bus::topics;
use vigil_core::{Digest, Nanos, RunId};
use vigil_proto::v1;
use vigil_proto::wire::Stream;

use crate::{ReplayError, bad};

/// One recorded message: the log topic (`vigil.telemetry.lidar`, …), the capture time,
/// the envelope as recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub topic: String,
    pub capture_ns: Nanos,
    pub envelope: Vec<u8>,
}

/// A drive to replay: its id and its messages in capture order.
#[derive(Debug, Clone)]
pub struct Drive {
    /// `<vehicle>@<first capture ns>`: the same drive read from Kafka or from MCAP has
    /// the same id.
    pub id: String,
    /// The run that recorded it (from its task ids); a replay raises its tasks under the
    /// same run, so replayed and recorded task ids match.
    pub run: RunId,
    pub vehicles: Vec<String>,
    pub messages: Vec<Recorded>,
}

/// The run of a task id `<vehicle>/<run>/task/<n>`.
fn run_of_task(task_id: &str) -> Option<RunId> {
    let mut parts = task_id.rsplit('/');
    let (_, word, run) = (parts.next()?, parts.next()?, parts.next()?);
    if word != "task" {
        return None;
    }
    RunId::parse(run).ok()
}

/// 12 hex digits that tell apart drives of the same vehicles starting at the same time
/// (simulated drives all start at the scenario epoch): a hash of the drive's first
/// ground-truth message, else its first radar, lidar or camera message. Ground truth and
/// radar are small and never claim-checked, so their bytes are the same whether the drive
/// is read from Kafka or from MCAP (`cli_replay` compares the ids).
fn fingerprint(sorted: &[Recorded]) -> String {
    let first = [topics::GROUND_TRUTH, topics::RADAR, topics::LIDAR, topics::CAMERA]
        .iter()
        .find_map(|topic| sorted.iter().find(|m| m.topic == *topic));
    let mut d = Digest::new();
    if let Some(m) = first {
        d.update(m.topic.as_bytes());
        d.update(&m.envelope);
    }
    d.hex()[..12].to_string()
}

impl Drive {
    /// A drive from recorded messages (any order): keeps Vigil's log topics, `vehicle`'s
    /// messages only when given, and sorts them by capture time (stable).
    pub fn new(mut messages: Vec<Recorded>, vehicle: Option<&str>) -> Result<Self, ReplayError> {
        let keep = |t: &str| Stream::of_topic(t).is_some() || t == topics::RECOMMENDATIONS || t == topics::TASKS;
        messages.retain(|m| keep(&m.topic));
        let mut vehicles = std::collections::BTreeSet::new();
        let mut kept = Vec::with_capacity(messages.len());
        // At-least-once delivery may have logged a message twice (a re-send after a
        // broker restart): the copies have the same header.
        let mut seen = std::collections::HashSet::new();
        for m in messages {
            let h = header_of(&m.envelope)
                .ok_or_else(|| bad(format!("a recorded `{}` message has no decodable header", m.topic)))?;
            if vehicle.is_some_and(|v| v != h.vehicle_id) {
                continue;
            }
            let key = (m.topic.clone(), h.sensor_id.clone(), h.sequence, h.correlation_id.clone(), h.publish_time_ns);
            if !seen.insert((h.vehicle_id.clone(), key)) {
                continue;
            }
            vehicles.insert(h.vehicle_id);
            kept.push(m);
        }
        kept.sort_by_key(|m| m.capture_ns);
        let vehicles: Vec<String> = vehicles.into_iter().collect();
        // A drive without tasks (perception off) has nothing to match by task id.
        let run = kept
            .iter()
            .filter(|m| m.topic == topics::TASKS)
            .find_map(|m| header_of(&m.envelope).and_then(|h| run_of_task(&h.correlation_id)))
            .unwrap_or_else(|| RunId::reproducible(0));
        let first = kept.iter().find(|m| Stream::of_topic(&m.topic).is_some()).map(|m| m.capture_ns);
        let id = match first {
            Some(t) => format!("{}@{t}-{}", vehicles.join("+"), fingerprint(&kept)),
            None => format!("{}@empty", vehicle.unwrap_or("all")),
        };
        Ok(Self { id, run, vehicles, messages: kept })
    }

    /// Capture times of the first and last telemetry message (`None` when empty).
    pub fn span(&self) -> Option<(Nanos, Nanos)> {
        let mut t = self.messages.iter().filter(|m| Stream::of_topic(&m.topic).is_some()).map(|m| m.capture_ns);
        let first = t.next()?;
        Some((first, t.next_back().unwrap_or(first)))
    }

    /// Telemetry messages.
    pub fn frames(&self) -> usize {
        self.messages.iter().filter(|m| Stream::of_topic(&m.topic).is_some()).count()
    }

    /// The messages of an MCAP file written by `vigil run --record`, `vigil sim --record`
    /// or `vigil record`.
    pub fn from_mcap(path: &Path, vehicle: Option<&str>) -> Result<Self, ReplayError> {
        let all = vigil_bus::embedded::recorder::read_all(path)
            .map_err(|e| bad(format!("cannot read the recording: {e}")))?;
        let messages =
            all.into_iter().map(|(topic, t, envelope)| Recorded { topic, capture_ns: t, envelope }).collect();
        Self::new(messages, vehicle)
    }

    /// `vehicle`'s drive in Kafka (one run's with `run`; every vehicle's of that run when
    /// `vehicle` is `None`), captured in `[from_ns, to_ns)`: telemetry, the task
    /// audit log and the recommendations, with claim-checked camera frames fetched back
    /// from the frame store (sha256 verified) and inlined.
    pub fn from_kafka(
        brokers: &vigil_brokers::BrokerConfig,
        vehicle: Option<&str>,
        run: Option<&str>,
        from_ns: Option<Nanos>,
        to_ns: Option<Nanos>,
    ) -> Result<Self, ReplayError> {
        use vigil_brokers::kafka::{read_capture_window, topic_name};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ReplayError::Replay(e.to_string()))?;
        let store = vigil_brokers::store::ObjectFrameStore::open(&brokers.frames.url, rt.handle().clone())?;
        let logicals: Vec<&str> =
            Stream::ALL.iter().map(|s| s.topic()).chain([topics::RECOMMENDATIONS, topics::TASKS]).collect();
        // The topics are read side by side, one consumer each (a read mostly waits on the
        // broker), and joined in topic order, so the drive is the same as read one by one.
        let read: Vec<_> = std::thread::scope(|s| {
            let readers: Vec<_> = logicals
                .iter()
                .map(|logical| {
                    let topic = topic_name(&brokers.kafka.topic_prefix, logical);
                    s.spawn(move || {
                        read_capture_window(
                            &brokers.kafka,
                            &topic,
                            vehicle,
                            run,
                            from_ns,
                            to_ns,
                            Duration::from_secs(60),
                            Duration::from_secs(120),
                        )
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join()).collect()
        });
        let mut messages = Vec::new();
        for (logical, records) in logicals.iter().zip(read) {
            let records = records.map_err(|_| ReplayError::Replay(format!("the reader of `{logical}` panicked")))??;
            for r in records {
                let capture_ns = r.headers.get("capture_time_ns").and_then(|c| c.parse().ok()).unwrap_or(0);
                let envelope =
                    if *logical == topics::CAMERA { store.inline_claim_checked(r.payload)? } else { r.payload };
                messages.push(Recorded { topic: logical.to_string(), capture_ns, envelope });
            }
        }
        Self::new(messages, vehicle)
    }

    /// Writes the drive to an MCAP file (the format of `vigil run --record`); returns the
    /// number of messages.
    pub fn write_mcap(&self, path: &Path) -> Result<u64, ReplayError> {
        let err = |e: vigil_bus::embedded::recorder::RecordError| bad(e.to_string());
        let mut rec = vigil_bus::embedded::recorder::McapRecorder::create(path).map_err(err)?;
        for m in &self.messages {
            let publish = header_of(&m.envelope).map_or(m.capture_ns, |h| h.publish_time_ns);
            rec.write(&m.topic, m.capture_ns, publish, &m.envelope).map_err(err)?;
        }
        rec.finish().map_err(err)
    }
}

/// Metadata of an envelope, decoded without its payload.
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<v1::Header>,
}

pub(crate) fn header_of(bytes: &[u8]) -> Option<v1::Header> {
    use prost::Message as _;
    HeaderOnly::decode(bytes).ok()?.header
}
