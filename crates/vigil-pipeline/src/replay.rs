//! `vigil replay`: a recorded drive through the same vehicle actors and vision workers,
//! on a replay clock, deterministically.
//!
//! The recorded telemetry (lidar, camera, radar, ground truth) is published on a zenoh
//! bus exactly where the sensors would, one capture instant at a time, in lockstep: the
//! clock ([`ManualClock`]) stands at the instant's recorded capture time while every frame
//! of it is ingested and every task it raised is answered or has fallen back, and moves
//! only to the next instant. No pipeline logic reads the wall clock, so the same input and
//! model give the same tasks and recommendations, bit for bit (`recommendations_digest`).
//! `speed` paces the instants to a multiple of real time; without it the replay runs as
//! fast as the pipeline allows.
//!
//! The report compares the replay's recommendations with those recorded at the time (same
//! task ids: detection and tracking do not depend on the model), and, where the drive
//! carries simulator ground truth, scores both against it: misses (an obstacle the model
//! called `none`), false alarms (a box over no obstacle that the model called one) and
//! wrong classes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{LogRecord, TaskTransport, TelemetryLog, TransportError, ZenohBus, ZenohConfig, topics};
use vigil_core::{Clock, Digest, ManualClock, Nanos, ObstacleClass, RunId, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_vehicle::node::{ControlCommand, NodeStats, RoadMap, SensorInputs, Stream};
use vigil_vision::batcher::BatcherConfig;
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::WorkerStats;

use crate::timeline::{TaskMark, Timeline};
use crate::{Actors, RunError, start_actors};

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

fn bad(what: impl Into<String>) -> RunError {
    RunError::Config(what.into())
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
    pub fn new(mut messages: Vec<Recorded>, vehicle: Option<&str>) -> Result<Self, RunError> {
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
    pub fn from_mcap(path: &Path, vehicle: Option<&str>) -> Result<Self, RunError> {
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
    ) -> Result<Self, RunError> {
        use vigil_brokers::kafka::{read_capture_window, topic_name};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RunError::Actors(e.to_string()))?;
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
            let records = records.map_err(|_| RunError::Actors(format!("the reader of `{logical}` panicked")))??;
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
    pub fn write_mcap(&self, path: &Path) -> Result<u64, RunError> {
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

fn header_of(bytes: &[u8]) -> Option<v1::Header> {
    use prost::Message as _;
    HeaderOnly::decode(bytes).ok()?.header
}

/// What `vigil replay` is told.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub model_dir: PathBuf,
    pub road: RoadMap,
    /// A multiple of real time; `None`: as fast as the pipeline goes.
    pub speed: Option<f64>,
    pub workers: usize,
    pub batcher: BatcherConfig,
    pub task_budget_ns: Nanos,
    /// Write labelled crops of every task here (the dataset format of `vigil train`).
    pub export_dataset: Option<PathBuf>,
    /// With ground truth in the drive, also export every visible object of every n-th
    /// camera frame (0: tasks only). Tasks alone are few; the objects are the bulk of a
    /// training set.
    pub export_objects_every: u64,
    /// Telemetry messages fed so far (of `Drive::frames`), for a progress bar.
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// The model a replay ran.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayModel {
    pub name: String,
    pub version: String,
    pub dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayTasks {
    pub raised: u64,
    pub completed: u64,
    pub fallback: u64,
}

/// Scores against ground truth.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Score {
    /// Tasks whose box matched a ground-truth object (or none) and that got a recommendation.
    pub labelled: u64,
    pub correct: u64,
    /// An obstacle predicted as `none`.
    pub misses: u64,
    /// No obstacle under the box, predicted as one.
    pub false_alarms: u64,
    /// An obstacle predicted as another obstacle class.
    pub wrong_class: u64,
}

/// One recommendation that changed.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub task_id: String,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
    pub truth: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayDiff {
    /// Recommendations recorded at the time.
    pub recorded: u64,
    /// Tasks with a recommendation both then and now.
    pub compared: u64,
    /// Of those, a different action or class.
    pub changed: u64,
    pub only_recorded: u64,
    pub only_replayed: u64,
    /// The first changes, in task order.
    pub examples: Vec<Change>,
    /// With simulator ground truth in the drive.
    pub ground_truth: Option<GroundTruthDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroundTruthDiff {
    pub recorded: Score,
    pub replayed: Score,
    /// Missed now, not then.
    pub new_misses: u64,
    pub new_false_alarms: u64,
    /// Missed then, not now.
    pub fixed_misses: u64,
    pub fixed_false_alarms: u64,
}

/// What `vigil replay --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub drive: String,
    pub vehicles: Vec<String>,
    pub model: ReplayModel,
    /// Frames replayed per stream.
    pub frames: BTreeMap<String, u64>,
    pub tasks: ReplayTasks,
    pub recommendations: u64,
    pub by_action: BTreeMap<String, u64>,
    /// Hash of the ordered (task id, action, class) list.
    pub recommendations_digest: String,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// sim_seconds / wall_seconds.
    pub speed_factor: f64,
    pub diff: ReplayDiff,
    /// Crops written with `export_dataset`.
    pub exported: u64,
    /// What `timeline_png` draws (not printed).
    #[serde(skip)]
    pub timeline: Timeline,
}

/// Keeps the task and recommendation records the vehicle writes (and counts the rest).
#[derive(Debug, Default)]
struct CaptureLog {
    kept: Mutex<Vec<(String, Vec<u8>)>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl TelemetryLog for CaptureLog {
    fn append(&self, r: LogRecord<'_>) -> Result<(), TransportError> {
        if r.topic == topics::TASKS || r.topic == topics::RECOMMENDATIONS {
            self.kept.lock().map_err(|_| TransportError::Closed)?.push((r.topic.to_string(), r.envelope.to_vec()));
        }
        *self.counts.lock().map_err(|_| TransportError::Closed)?.entry(r.topic.to_string()).or_insert(0) += 1;
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        Ok(self.counts.lock().map_err(|_| TransportError::Closed)?.clone())
    }
}

/// (task id, action, class, confidence) of a recommendation envelope.
fn recommendation(bytes: &[u8]) -> Option<v1::Recommendation> {
    match vigil_proto::decode_envelope(bytes).ok()?.payload? {
        Payload::Recommendation(r) => Some(r),
        _ => None,
    }
}

fn task(bytes: &[u8]) -> Option<(v1::Header, v1::ObstacleTask)> {
    let env = vigil_proto::decode_envelope(bytes).ok()?;
    match env.payload? {
        Payload::ObstacleTask(t) => Some((env.header.unwrap_or_default(), t)),
        _ => None,
    }
}

/// Orders task ids `<vehicle>/task/<n>` by vehicle, then number.
fn task_order(id: &str) -> (String, u64, String) {
    let (head, n) = id.rsplit_once('/').unwrap_or((id, ""));
    (head.to_string(), n.parse().unwrap_or(u64::MAX), id.to_string())
}

fn class_name(c: v1::ObstacleClass) -> &'static str {
    match c {
        v1::ObstacleClass::Pedestrian => ObstacleClass::Pedestrian.name(),
        v1::ObstacleClass::Cyclist => ObstacleClass::Cyclist.name(),
        v1::ObstacleClass::Vehicle => ObstacleClass::Vehicle.name(),
        v1::ObstacleClass::Debris => ObstacleClass::Debris.name(),
        v1::ObstacleClass::Animal => ObstacleClass::Animal.name(),
        _ => ObstacleClass::None.name(),
    }
}

fn iou(a: &v1::Box2d, b: &v1::Box2d) -> f32 {
    let w = (a.x_max.min(b.x_max) - a.x_min.max(b.x_min)).max(0.0);
    let h = (a.y_max.min(b.y_max) - a.y_min.max(b.y_min)).max(0.0);
    let inter = w * h;
    let area = |r: &v1::Box2d| (r.x_max - r.x_min).max(0.0) * (r.y_max - r.y_min).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A task's box against its frame's ground truth: the best-overlapping object's class
/// (IoU ≥ 0.3), else `none`.
fn truth_of(
    task: &v1::ObstacleTask,
    gt: &HashMap<(String, String, u64), v1::GroundTruth>,
    vehicle: &str,
) -> Option<String> {
    let g = gt.get(&(vehicle.to_string(), task.frame_sensor_id.clone(), task.frame_sequence))?;
    let b = task.camera_box.as_ref()?;
    let best = g
        .objects
        .iter()
        .filter_map(|o| o.camera_box.as_ref().map(|cb| (iou(b, cb), o.class())))
        .filter(|(v, _)| *v >= 0.3)
        .max_by(|x, y| x.0.total_cmp(&y.0));
    Some(best.map_or("none", |(_, c)| class_name(c)).to_string())
}

fn score(s: &mut Score, truth: &str, predicted: &str) {
    s.labelled += 1;
    match (truth == "none", predicted == "none") {
        _ if truth == predicted => s.correct += 1,
        (false, true) => s.misses += 1,
        (true, false) => s.false_alarms += 1,
        _ => s.wrong_class += 1,
    }
}

/// Replays `drive`; see the module docs.
pub fn replay(drive: &Drive, cfg: &ReplayConfig) -> Result<ReplayReport, RunError> {
    if let Some(s) = cfg.speed
        && !(s.is_finite() && s > 0.0)
    {
        return Err(bad(format!("--speed must be a positive multiple of real time, got {s}")));
    }
    if drive.frames() == 0 {
        return Err(bad(format!("drive {}: nothing to replay (no telemetry in that source or window)", drive.id)));
    }
    let wall_start = Instant::now();
    let model = Recogniser::load(&cfg.model_dir, &default_device())?;
    let model_info = ReplayModel {
        name: model.config.name.clone(),
        version: model.config.version.clone(),
        dir: cfg.model_dir.display().to_string(),
    };
    let start_ns = drive.messages.first().map_or(0, |m| m.capture_ns);
    let clock = Arc::new(ManualClock::new(start_ns));
    let log = Arc::new(CaptureLog::default());
    let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(1024, 3), clock.clone()));
    let frames = Arc::new(MemoryFrameStore::new(64 * drive.vehicles.len().max(1)));

    let bus = ZenohBus::open(&ZenohConfig::default())?;
    let publisher = bus.publisher()?;
    let mut inputs = Vec::new();
    for v in &drive.vehicles {
        let vehicle = VehicleId(v.clone());
        let mut streams = Vec::new();
        for kind in Stream::ALL {
            streams.push((kind, bus.subscribe(&kind.subscription(vehicle.as_str()), 64)?));
        }
        inputs.push((vehicle, SensorInputs(streams)));
    }
    let stats = Arc::new(NodeStats::default());
    let (control, control_rx) = std::sync::mpsc::channel::<ControlCommand>();
    let (system, actor_thread) = start_actors(Actors {
        inputs,
        // The recorded run's id: replayed task ids match the recorded ones, and a replay
        // of one drive gives one digest whatever else the log holds.
        run: drive.run.clone(),
        road: cfg.road,
        perception: true,
        task_budget_ns: cfg.task_budget_ns,
        workers: cfg.workers.max(1),
        model: Some(model),
        batcher: cfg.batcher,
        inject_latency: Duration::ZERO,
        faults: Arc::default(),
        clock: clock.clone(),
        log: log.clone(),
        frames,
        tasks: tasks.clone(),
        stats: stats.clone(),
        worker_stats: Arc::new(WorkerStats::default()),
        control,
        // Offline: nothing to keep a deadline against.
        priority: vigil_vehicle::priority::PriorityMode::Off,
        handles: None,
        spool: Default::default(),
    })?;

    // Feed, one capture instant at a time.
    let mut produced = [0u64; 4];
    let quiet = |produced: &[u64; 4]| {
        Stream::ALL.iter().all(|k| NodeStats::get(&stats.ingested[k.index()]) >= produced[k.index()])
            && NodeStats::get(&stats.fused) >= produced[Stream::Radar.index()]
            && stats.outstanding.load(Ordering::SeqCst) <= 0
    };
    let settle = |produced: &[u64; 4]| -> Result<(), RunError> {
        let waited = Instant::now();
        while !quiet(produced) {
            if waited.elapsed() > Duration::from_secs(30) {
                return Err(RunError::Actors(format!(
                    "the pipeline did not settle within 30 s at {} ns (ingested {:?} of {produced:?})",
                    clock.now_ns(),
                    Stream::ALL.map(|k| NodeStats::get(&stats.ingested[k.index()]))
                )));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    };
    let feed = drive.messages.iter().filter_map(|m| Stream::of_topic(&m.topic).map(|k| (k, m)));
    let mut instants: Vec<(Nanos, Vec<(Stream, &Recorded)>)> = Vec::new();
    for (k, m) in feed {
        match instants.last_mut() {
            Some((t, group)) if *t == m.capture_ns => group.push((k, m)),
            _ => instants.push((m.capture_ns, vec![(k, m)])),
        }
    }
    let paced_from = Instant::now();
    let mut controls = 0u64;
    for (t, group) in &instants {
        if let Some(speed) = cfg.speed {
            let due = paced_from + Duration::from_secs_f64(((t - start_ns).max(0) as f64 * 1e-9) / speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        clock.set(*t);
        // As in a lockstep run: the other frames of the instant first, then the radar
        // scans that trigger fusion.
        let (radar, rest): (Vec<_>, Vec<_>) = group.iter().partition(|(k, _)| *k == Stream::Radar);
        for part in [rest, radar] {
            for (k, m) in part {
                let h = header_of(&m.envelope).unwrap_or_default();
                produced[k.index()] += 1;
                publisher.put_blocking(&k.key(&h.vehicle_id, &h.sensor_id), m.envelope.clone())?;
                if let Some(p) = &cfg.progress {
                    p.fetch_add(1, Ordering::Relaxed);
                }
            }
            settle(&produced)?;
        }
        controls += control_rx.try_iter().count() as u64;
    }
    settle(&produced)?;
    let sim_seconds = instants.last().map_or(0.0, |(t, _)| (t - start_ns) as f64 * 1e-9);
    let wall_seconds = wall_start.elapsed().as_secs_f64();
    let _ = tasks.sweep_expired(clock.now_ns() + cfg.task_budget_ns)?;
    if !stats.drain_telemetry(Duration::from_secs(30)) {
        return Err(RunError::Actors("the replayed recommendations did not all reach the log within 30 s".into()));
    }
    system.stop();
    let _ = actor_thread.join();
    drop(publisher);
    let _ = bus.close();
    tracing::debug!(controls, "replay: commands decided");

    // Recommendations now and then, tasks now, ground truth.
    let kept = log.kept.lock().map(|k| k.clone()).unwrap_or_default();
    let mut replayed: BTreeMap<(String, u64, String), v1::Recommendation> = BTreeMap::new();
    let mut replay_tasks: Vec<(v1::Header, v1::ObstacleTask)> = Vec::new();
    for (topic, bytes) in &kept {
        if topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(bytes) {
                replayed.insert(task_order(&r.task_id), r);
            }
        } else if let Some(t) = task(bytes) {
            replay_tasks.push(t);
        }
    }
    let mut recorded: HashMap<String, v1::Recommendation> = HashMap::new();
    let mut gt: HashMap<(String, String, u64), v1::GroundTruth> = HashMap::new();
    // For the timeline: recorded task capture and recommendation publish times, and the
    // first vehicle's ground-truth objects in the camera's view.
    let mut recorded_task_ns: HashMap<String, Nanos> = HashMap::new();
    let mut recorded_answer_ns: HashMap<String, Nanos> = HashMap::new();
    let mut sightings: Vec<(u32, String, f64)> = Vec::new();
    let first_vehicle = drive.vehicles.first().cloned().unwrap_or_default();
    let secs = |ns: Nanos| (ns - start_ns) as f64 * 1e-9;
    for m in &drive.messages {
        if m.topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(&m.envelope) {
                if let Some(h) = header_of(&m.envelope) {
                    recorded_answer_ns.insert(r.task_id.clone(), h.publish_time_ns);
                }
                recorded.insert(r.task_id.clone(), r);
            }
        } else if m.topic == topics::TASKS {
            if let Some((h, t)) = task(&m.envelope) {
                recorded_task_ns.insert(t.task_id, h.capture_time_ns);
            }
        } else if m.topic == topics::GROUND_TRUTH
            && let Ok(env) = vigil_proto::decode_envelope(&m.envelope)
            && let Some(Payload::GroundTruth(g)) = env.payload
        {
            let v = env.header.map(|h| h.vehicle_id).unwrap_or_default();
            if v == first_vehicle && g.frame_sensor_id.starts_with("camera") {
                for o in g.objects.iter().filter(|o| o.camera_box.is_some()) {
                    sightings.push((o.object_id, class_name(o.class()).to_string(), secs(m.capture_ns)));
                }
            }
            gt.insert((v, g.frame_sensor_id.clone(), g.frame_sequence), g);
        }
    }

    let mut digest = Digest::new();
    let mut by_action: BTreeMap<String, u64> =
        vigil_core::policy::Action::ALL.iter().map(|a| (a.name().to_string(), 0)).collect();
    for r in replayed.values() {
        let action = vigil_proto::action_from_proto(r.action()).name();
        digest.update(r.task_id.as_bytes());
        digest.update(action.as_bytes());
        digest.update(class_name(r.class()).as_bytes());
        *by_action.entry(action.to_string()).or_default() += 1;
    }

    // The diff.
    let label = |r: &v1::Recommendation| {
        format!("{} {}", vigil_proto::action_from_proto(r.action()).name(), class_name(r.class()))
    };
    let tasks_by_id: HashMap<&str, &(v1::Header, v1::ObstacleTask)> =
        replay_tasks.iter().map(|t| (t.1.task_id.as_str(), t)).collect();
    let truth_for = |id: &str| tasks_by_id.get(id).and_then(|(h, t)| truth_of(t, &gt, &h.vehicle_id));
    let mut diff = ReplayDiff {
        recorded: recorded.len() as u64,
        compared: 0,
        changed: 0,
        only_recorded: 0,
        only_replayed: 0,
        examples: Vec::new(),
        ground_truth: None,
    };
    let mut all_ids: Vec<(String, u64, String)> =
        replayed.keys().cloned().chain(recorded.keys().map(|k| task_order(k))).collect();
    all_ids.sort();
    all_ids.dedup();
    let mut gtd = GroundTruthDiff {
        recorded: Score::default(),
        replayed: Score::default(),
        new_misses: 0,
        new_false_alarms: 0,
        fixed_misses: 0,
        fixed_false_alarms: 0,
    };
    for key in &all_ids {
        let id = key.2.as_str();
        let now = replayed.get(key);
        let then = recorded.get(id);
        match (then, now) {
            (Some(a), Some(b)) => {
                diff.compared += 1;
                if label(a) != label(b) {
                    diff.changed += 1;
                    if diff.examples.len() < 20 {
                        diff.examples.push(Change {
                            task_id: id.into(),
                            recorded: Some(label(a)),
                            replayed: Some(label(b)),
                            truth: truth_for(id),
                        });
                    }
                }
            }
            (Some(_), None) => diff.only_recorded += 1,
            (None, Some(_)) => diff.only_replayed += 1,
            (None, None) => {}
        }
        if let Some(truth) = truth_for(id) {
            let outcome = |r: Option<&v1::Recommendation>, s: &mut Score| {
                r.map(|r| {
                    let p = class_name(r.class());
                    score(s, &truth, p);
                    (truth != "none" && p == "none", truth == "none" && p != "none")
                })
            };
            let then_o = outcome(then, &mut gtd.recorded);
            let now_o = outcome(now, &mut gtd.replayed);
            if let (Some((miss_then, fa_then)), Some((miss_now, fa_now))) = (then_o, now_o) {
                gtd.new_misses += u64::from(miss_now && !miss_then);
                gtd.fixed_misses += u64::from(miss_then && !miss_now);
                gtd.new_false_alarms += u64::from(fa_now && !fa_then);
                gtd.fixed_false_alarms += u64::from(fa_then && !fa_now);
            }
        }
    }
    if !gt.is_empty() {
        diff.ground_truth = Some(gtd);
    }

    let timeline = Timeline {
        duration_s: sim_seconds,
        objects: Timeline::spans(sightings, 0.25),
        tasks: replay_tasks
            .iter()
            .map(|(h, t)| {
                let rec = replayed.get(&task_order(&t.task_id));
                let latency = recorded_task_ns
                    .get(&t.task_id)
                    .zip(recorded_answer_ns.get(&t.task_id))
                    .map(|(from, to)| (to - from) as f64 * 1e-6);
                TaskMark {
                    task_id: t.task_id.clone(),
                    t_s: secs(h.capture_time_ns),
                    action: rec.map(|r| vigil_proto::action_from_proto(r.action()).name().to_string()),
                    class: rec.map(|r| class_name(r.class()).to_string()),
                    truth: truth_of(t, &gt, &h.vehicle_id),
                    recorded_latency_ms: latency,
                }
            })
            .collect(),
    };

    let exported = match &cfg.export_dataset {
        Some(dir) => export(dir, drive, &replay_tasks, &replayed, &gt, cfg.export_objects_every)?,
        None => 0,
    };

    let frames: BTreeMap<String, u64> =
        Stream::ALL.iter().map(|k| (vigil_vehicle::node::stream_label(*k).to_string(), produced[k.index()])).collect();
    Ok(ReplayReport {
        drive: drive.id.clone(),
        vehicles: drive.vehicles.clone(),
        model: model_info,
        frames,
        tasks: ReplayTasks {
            raised: NodeStats::get(&stats.tasks_raised),
            completed: NodeStats::get(&stats.completed),
            fallback: NodeStats::get(&stats.fallback),
        },
        recommendations: replayed.len() as u64,
        by_action,
        recommendations_digest: digest.hex(),
        sim_seconds,
        wall_seconds,
        speed_factor: if wall_seconds > 0.0 { sim_seconds / wall_seconds } else { 0.0 },
        diff,
        exported,
        timeline,
    })
}

/// Ground-truth objects smaller than this (pixels, box height) or more hidden than
/// `MAX_OCCLUSION` are not exported: the simulator's training crops draw the same line.
const MIN_OBJECT_HEIGHT: f32 = vigil_sim::samples::MIN_BOX_HEIGHT;
const MAX_OCCLUSION: f32 = 0.45;

/// The camera frame a recorded message carries, when it carries its pixels inline.
fn camera_of(m: &Recorded) -> Option<v1::CameraFrame> {
    let env = vigil_proto::decode_envelope(&m.envelope).ok()?;
    match env.payload {
        Some(Payload::Camera(cam)) if matches!(cam.pixels, Some(v1::camera_frame::Pixels::Data(_))) => Some(cam),
        _ => None,
    }
}

/// The recogniser's input crop of box `b` in camera frame `cam` (inline pixels).
fn box_crop(cam: &v1::CameraFrame, b: &v1::Box2d) -> Option<vigil_vision::preprocess::Crop> {
    let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else { return None };
    vigil_vision::preprocess::crop(px, cam.width, cam.height, [b.x_min, b.y_min, b.x_max, b.y_max], [0.0, 0.0], 1.0)
        .ok()
}

/// Writes a labelled crop per replayed task: the label from ground truth where the drive
/// has it, else from the replayed recommendation; misses, false alarms and fallbacks
/// (deadline breaches) flagged and weighted up. With `objects_every > 0` and ground truth,
/// also a crop of every visible object of every n-th camera frame (source
/// `ground_truth`, flag `object`).
fn export(
    dir: &Path,
    drive: &Drive,
    tasks: &[(v1::Header, v1::ObstacleTask)],
    replayed: &BTreeMap<(String, u64, String), v1::Recommendation>,
    gt: &HashMap<(String, String, u64), v1::GroundTruth>,
    objects_every: u64,
) -> Result<u64, RunError> {
    use vigil_vision::dataset::{Label, write};
    // Camera frames by (vehicle, sensor, sequence).
    let mut cameras: HashMap<(String, String, u64), &Recorded> = HashMap::new();
    for m in drive.messages.iter().filter(|m| m.topic == topics::CAMERA) {
        if let Some(h) = header_of(&m.envelope) {
            cameras.insert((h.vehicle_id, h.sensor_id, h.sequence), m);
        }
    }
    let by_id: HashMap<&str, &v1::Recommendation> = replayed.values().map(|r| (r.task_id.as_str(), r)).collect();
    let mut items = Vec::new();
    for (h, t) in tasks {
        let key = (h.vehicle_id.clone(), t.frame_sensor_id.clone(), t.frame_sequence);
        let Some(cam) = cameras.get(&key).and_then(|m| camera_of(m)) else { continue };
        let Some(c) = t.camera_box.as_ref().and_then(|b| box_crop(&cam, b)) else { continue };
        let rec = by_id.get(t.task_id.as_str());
        let predicted = rec.map(|r| class_name(r.class()).to_string());
        let truth = truth_of(t, gt, &h.vehicle_id);
        let (class, source) = match (&truth, &predicted) {
            (Some(c), _) => (c.clone(), "ground_truth"),
            (None, Some(p)) => (p.clone(), "recommendation"),
            (None, None) => continue,
        };
        let mut flags = Vec::new();
        if rec.is_none() {
            flags.push("deadline_breach".to_string());
        }
        if let (Some(tr), Some(p)) = (&truth, &predicted) {
            if tr != "none" && p == "none" {
                flags.push("miss".to_string());
            } else if tr == "none" && p != "none" {
                flags.push("false_alarm".to_string());
            } else if tr != p {
                flags.push("wrong_class".to_string());
            }
        }
        let weight = if flags.is_empty() { 1.0 } else { 3.0 };
        let mut provenance = serde_json::Map::new();
        provenance.insert("drive".into(), drive.id.clone().into());
        provenance.insert("vehicle".into(), h.vehicle_id.clone().into());
        provenance.insert("task".into(), t.task_id.clone().into());
        provenance.insert("frame".into(), format!("{}#{}", t.frame_sensor_id, t.frame_sequence).into());
        if let Some(p) = &predicted {
            provenance.insert("predicted".into(), p.clone().into());
        }
        items.push((c, Label { file: String::new(), class, source: source.into(), weight, flags, provenance }));
    }
    if objects_every > 0 {
        let mut frames: Vec<(&(String, String, u64), &&Recorded)> = cameras.iter().collect();
        frames.sort_by_key(|(k, m)| (m.capture_ns, (*k).clone()));
        for ((vehicle, sensor, seq), m) in frames {
            if seq % objects_every != 0 {
                continue;
            }
            let Some(g) = gt.get(&(vehicle.clone(), sensor.clone(), *seq)) else { continue };
            let Some(cam) = camera_of(m) else { continue };
            for o in &g.objects {
                let Some(b) = o.camera_box.as_ref() else { continue };
                if b.y_max - b.y_min < MIN_OBJECT_HEIGHT || o.occlusion > MAX_OCCLUSION {
                    continue;
                }
                let Some(c) = box_crop(&cam, b) else { continue };
                let mut provenance = serde_json::Map::new();
                provenance.insert("drive".into(), drive.id.clone().into());
                provenance.insert("vehicle".into(), vehicle.clone().into());
                provenance.insert("frame".into(), format!("{sensor}#{seq}").into());
                provenance.insert("object".into(), o.object_id.into());
                let label = Label {
                    file: String::new(),
                    class: class_name(o.class()).to_string(),
                    source: "ground_truth".into(),
                    weight: 1.0,
                    flags: vec!["object".into()],
                    provenance,
                };
                items.push((c, label));
            }
        }
    }
    write(dir, &items)?;
    Ok(items.len() as u64)
}
