//! The vehicle node: actix actors from the sensor bus to the ego controls.
//!
//! ```text
//! zenoh ─▶ Ingest (one per stream) ─▶ TelemetrySpool ─▶ TelemetryLog
//!          │ camera pixels ─▶ FrameStore (once; the log record and tasks refer to it)
//!          └─▶ Fusion (tracks, TTC, lanes) ─▶ Dispatcher ─▶ TaskTransport
//!                 TaskTransport replies ─▶ RecommendationHandler ─▶ ControlCommand (to the ego)
//! ```
//!
//! Every actor reads the [`Clock`] it is given. Mailboxes are bounded and every hop uses
//! `send(..).await` inside `ctx.wait`, so a slow stage stops its upstream from pulling
//! (backpressure reaches the zenoh subscriber, whose bounded channel makes zenoh block
//! the publisher): nothing is dropped, memory stays bounded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio_stream::wrappers::ReceiverStream;
use vigil_bus::embedded::QueuedTask;
use vigil_bus::transport::reply_stream;
use vigil_bus::{
    BusSample, FrameStore, Reply, TaskTransport, TelemetryLog, TransportError, embedded::QueueError, frame_key, topics,
};
use vigil_core::policy::{Action, PATH_HALF_WIDTH_M, path_offset};
use vigil_core::{Clock, Nanos, RunId, VehicleId};
use vigil_proto::action_from_proto;
use vigil_proto::v1::{self, envelope::Payload};

use crate::detector::{CORRIDOR_HALF_WIDTH_M, CameraGeometry, TTC_HORIZON_S, detect};
use crate::spool::start_spool;
pub use crate::spool::{SpoolConfig, TelemetrySpool, ToLog};
use crate::tracker::{Pose, Track, Tracker};

/// Which input stream an ingest actor serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorKind {
    Lidar,
    Camera,
    Radar,
    /// The ego pose (localization). The simulator's ground-truth stream carries it; the
    /// node reads only its `ego` field, never the objects.
    Localization,
}

impl SensorKind {
    pub const ALL: [SensorKind; 4] =
        [SensorKind::Lidar, SensorKind::Camera, SensorKind::Radar, SensorKind::Localization];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            SensorKind::Lidar => "lidar",
            SensorKind::Camera => "camera",
            SensorKind::Radar => "radar",
            SensorKind::Localization => "localization",
        }
    }

    fn topic(self) -> &'static str {
        match self {
            SensorKind::Lidar => topics::LIDAR,
            SensorKind::Camera => topics::CAMERA,
            SensorKind::Radar => topics::RADAR,
            SensorKind::Localization => topics::GROUND_TRUTH,
        }
    }

    fn accepts(self, p: &Payload) -> bool {
        matches!(
            (self, p),
            (SensorKind::Lidar, Payload::Lidar(_))
                | (SensorKind::Camera, Payload::Camera(_))
                | (SensorKind::Radar, Payload::Radar(_))
                | (SensorKind::Localization, Payload::GroundTruth(_))
        )
    }

    /// Zenoh key expression of this stream for `vehicle`.
    pub fn key_expr(self, vehicle: &VehicleId) -> String {
        match self {
            SensorKind::Localization => format!("vigil/{vehicle}/groundtruth"),
            k => format!("vigil/{vehicle}/sensor/{}/*", k.name()),
        }
    }
}

/// Counters shared by the actors of every node in the process (and read by the runner).
#[derive(Debug, Default)]
pub struct NodeStats {
    pub ingested: [AtomicU64; 4],
    /// Frames that failed strict decoding or arrived on the wrong stream.
    pub rejected: AtomicU64,
    /// Sequence gaps seen by the ingest actors (frames the bus lost).
    pub gaps: AtomicU64,
    pub fused: AtomicU64,
    pub tasks_raised: AtomicU64,
    pub tasks_published: AtomicU64,
    /// Publishes refused by a full queue (shed: fallback applied at once).
    pub tasks_refused: AtomicU64,
    pub completed: AtomicU64,
    /// Deadline passed with no recommendation (or the publish was refused).
    pub fallback: AtomicU64,
    /// Of those, how many braked.
    pub fallback_braked: AtomicU64,
    /// Recommendations that arrived after their deadline.
    pub stale: AtomicU64,
    /// Recommendations for a task already answered (redelivery after a worker crash).
    pub duplicate: AtomicU64,
    /// Replies that are not recommendations for a task this node raised.
    pub unknown: AtomicU64,
    /// Tasks raised and not yet resolved.
    pub outstanding: AtomicI64,
    pub by_action: [AtomicU64; 6],
    /// Per task priority 0..=9: raised, completed, fallback.
    pub raised_by_priority: [AtomicU64; 10],
    pub completed_by_priority: [AtomicU64; 10],
    pub fallback_by_priority: [AtomicU64; 10],
    pub log_errors: AtomicU64,
    /// Telemetry records dropped because the telemetry spool was full (counted, never silent).
    pub telemetry_dropped: AtomicU64,
    /// Telemetry records waiting for the log, and their bytes.
    pub telemetry_queued: AtomicU64,
    pub telemetry_queued_bytes: AtomicU64,
    pub telemetry_peak_bytes: AtomicU64,
    /// Telemetry records the spool wrote to disk (the log was slow or down), the bytes on
    /// disk now and at most.
    pub telemetry_spilled: AtomicU64,
    pub telemetry_disk_bytes: AtomicU64,
    pub telemetry_peak_disk_bytes: AtomicU64,
    /// Times the log pushed back (its buffer full) and the forwarder waited.
    pub telemetry_log_waits: AtomicU64,
    /// Threats that fell back at once because the camera had no fresh frame or no box.
    pub no_camera: AtomicU64,
    /// Tracks that became a threat fusion may act on, and of those, how many it first
    /// acted on (a task or an immediate fallback) from a scan younger than the task
    /// budget. A threat first seen on an older scan was left unraised while the vehicle
    /// was busy: its task would be born expired. Equal when fusion keeps pace.
    pub threats_seen: AtomicU64,
    pub threats_raised: AtomicU64,
    /// Capture → fused, of every radar scan: how far fusion runs behind the sensors.
    pub fusion_lag: Latencies,
    /// Deadline → fallback applied, of every task that fell back (0 when it fell back
    /// before its deadline, as a refused publish does).
    pub fallback_after_deadline: Latencies,
    /// Detection → applied recommendation.
    pub latencies: Latencies,
    /// Worker-side time of each completed task (take → reply), from the recommendation.
    pub worker: Latencies,
    pub last_recommendation: Mutex<String>,
}

/// A bounded latency store: an HDR histogram (3 significant digits, 1 µs to 1 h), so a
/// process that runs for months keeps the same few kilobytes.
#[derive(Debug)]
pub struct Latencies(Mutex<hdrhistogram::Histogram<u64>>);

impl Default for Latencies {
    fn default() -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 low, 3 digits).
        #[allow(clippy::expect_used)]
        let h = hdrhistogram::Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid bounds");
        Self(Mutex::new(h))
    }
}

/// What a [`Latencies`] held at one moment.
#[derive(Debug, Clone)]
pub struct LatencyMark(Option<hdrhistogram::Histogram<u64>>);

/// Percentiles of a [`Latencies`], milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

impl Latencies {
    pub fn record(&self, ns: Nanos) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(ns.max(1) as u64);
        }
    }

    pub fn summary_ms(&self) -> LatencySummary {
        let Ok(h) = self.0.lock() else { return LatencySummary::default() };
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |v: u64| v as f64 * 1e-6;
        LatencySummary {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            samples: h.len(),
        }
    }

    /// Every recorded value, seconds, with how often it was recorded (for Prometheus buckets).
    /// A mark to measure a window from: [`Latencies::since`].
    pub fn mark(&self) -> LatencyMark {
        LatencyMark(self.0.lock().ok().map(|h| h.clone()))
    }

    /// The percentiles of what was recorded after `mark` was taken.
    pub fn since(&self, mark: &LatencyMark) -> LatencySummary {
        let Ok(h) = self.0.lock() else { return LatencySummary::default() };
        let mut window = h.clone();
        drop(h);
        if let Some(before) = &mark.0
            && window.subtract(before).is_err()
        {
            return LatencySummary::default();
        }
        Latencies(Mutex::new(window)).summary_ms()
    }

    pub fn weighted_seconds(&self) -> Vec<(f64, u64)> {
        let Ok(h) = self.0.lock() else { return Vec::new() };
        h.iter_recorded().map(|v| (v.value_iterated_to() as f64 * 1e-9, v.count_at_value())).collect()
    }
}

impl NodeStats {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }

    /// Telemetry records handed to the spool and not yet appended to the log.
    pub fn telemetry_pending(&self) -> u64 {
        self.telemetry_queued.load(Ordering::SeqCst)
    }

    /// Waits until the telemetry spool has handed everything to the log, or `limit`
    /// passes; returns whether it drained.
    pub fn drain_telemetry(&self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while self.telemetry_pending() > 0 {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::SeqCst);
}

/// What the handler tells the ego to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlCommand {
    pub vehicle: VehicleId,
    pub task_id: String,
    pub action: Action,
    /// When it was decided, on the node's clock.
    pub at_ns: Nanos,
    pub fallback: bool,
}

impl ControlCommand {
    /// Zenoh key of `vehicle`'s control channel (vehicle node → the ego's controller).
    pub fn key_expr(vehicle: &VehicleId) -> String {
        format!("vigil/{vehicle}/control")
    }

    /// The command as an encoded `vigil.v1.Envelope` (payload `ControlCommand`).
    pub fn encode(&self) -> Vec<u8> {
        let payload = Payload::Control(v1::ControlCommand {
            task_id: self.task_id.clone(),
            action: vigil_proto::action_to_proto(self.action) as i32,
            decided_at_ns: self.at_ns,
            fallback: self.fallback,
        });
        let header = v1::Header {
            schema_version: vigil_proto::SCHEMA_VERSION,
            vehicle_id: self.vehicle.0.clone(),
            sensor_id: "control".into(),
            sequence: 0,
            capture_time_ns: self.at_ns,
            publish_time_ns: self.at_ns,
            correlation_id: self.task_id.clone(),
            content_type: vigil_proto::content_type(&payload).into(),
        };
        vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) })
    }

    /// Decodes (strictly) what [`ControlCommand::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, vigil_proto::DecodeError> {
        let env = vigil_proto::decode_envelope(bytes)?;
        let vehicle = VehicleId(env.header.map(|h| h.vehicle_id).unwrap_or_default());
        match env.payload {
            Some(Payload::Control(c)) => Ok(Self {
                vehicle,
                action: action_from_proto(v1::Action::try_from(c.action).unwrap_or(v1::Action::Unspecified)),
                task_id: c.task_id,
                at_ns: c.decided_at_ns,
                fallback: c.fallback,
            }),
            _ => Err(vigil_proto::DecodeError::InvalidField {
                field: "payload",
                reason: "expected a ControlCommand on the control channel".into(),
            }),
        }
    }
}

/// Lanes the vehicle knows from its map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoadMap {
    pub lanes: u32,
    pub lane_width_m: f64,
}

/// Vehicle node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub vehicle: VehicleId,
    /// This process's run: task ids and frame keys carry it.
    pub run: RunId,
    /// Deadline = capture time + this.
    pub task_budget_ns: Nanos,
    /// With no recommendation by the deadline, brake if the TTC is below this.
    pub fallback_ttc_s: f64,
    /// A threat whose newest camera frame is older than this (or 1.5 camera periods, if
    /// longer) gets the fallback at once instead of a task on a stale crop.
    pub max_camera_age_ns: Nanos,
    /// Telemetry waiting for the log: memory, then disk, then dropped (counted).
    pub spool: SpoolConfig,
    /// Off: ingest and log only, no detection and no tasks.
    pub perception: bool,
    pub mailbox: usize,
    pub road: RoadMap,
}

impl NodeConfig {
    pub fn new(vehicle: VehicleId, run: RunId, road: RoadMap) -> Self {
        Self {
            vehicle,
            run,
            task_budget_ns: DEFAULT_TASK_BUDGET_NS,
            fallback_ttc_s: 3.0,
            max_camera_age_ns: 150_000_000,
            spool: SpoolConfig::default(),
            perception: true,
            mailbox: 16,
            road,
        }
    }
}

/// A task's deadline is its capture time plus this, unless configured.
pub const DEFAULT_TASK_BUDGET_NS: Nanos = 100_000_000;

/// What a node needs from the outside.
#[derive(Debug, Clone)]
pub struct NodeDeps {
    pub clock: Arc<dyn Clock>,
    pub log: Arc<dyn TelemetryLog>,
    pub frames: Arc<dyn FrameStore>,
    pub tasks: Arc<dyn TaskTransport>,
    pub control: std::sync::mpsc::Sender<ControlCommand>,
    pub stats: Arc<NodeStats>,
}

/// One decoded frame moving through the node.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: SensorKind,
    pub envelope: Arc<v1::Envelope>,
    pub ingest_ns: Nanos,
    /// Camera frames: the stored pixels workers fetch (set by ingest once stored).
    pub frame_ref: Option<v1::BlobRef>,
}

impl Message for Frame {
    type Result = ();
}

impl Frame {
    fn header(&self) -> Option<&v1::Header> {
        self.envelope.header.as_ref()
    }
    fn capture_ns(&self) -> Nanos {
        self.header().map_or(0, |h| h.capture_time_ns)
    }
}

// ---------------------------------------------------------------- telemetry (the bulk plane)

// ---------------------------------------------------------------- ingest

/// Validates and stamps one sensor stream; hands each frame to the telemetry spool and
/// to fusion (camera frames stored first: a task refers to them by key).
#[derive(Debug)]
pub struct Ingest {
    kind: SensorKind,
    vehicle: VehicleId,
    run: RunId,
    clock: Arc<dyn Clock>,
    stats: Arc<NodeStats>,
    telemetry: TelemetrySpool,
    frames: Arc<dyn FrameStore>,
    fusion: Option<Addr<Fusion>>,
    next_seq: HashMap<String, u64>,
    mailbox: usize,
}

impl Actor for Ingest {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Ingest {
    /// Moves a camera frame's pixels into the frame store, leaving the reference in their
    /// place: the one blob that the frame's log record and any task on it refer to.
    fn store_pixels(&self, envelope: &mut v1::Envelope) -> Option<v1::BlobRef> {
        let h = envelope.header.clone().unwrap_or_default();
        let Some(Payload::Camera(cam)) = envelope.payload.as_mut() else { return None };
        let pixels = match cam.pixels.take() {
            Some(v1::camera_frame::Pixels::Data(p)) => p,
            other => {
                cam.pixels = other;
                return None;
            }
        };
        let key = frame_key(self.vehicle.as_str(), self.run.as_str(), &h.sensor_id, h.sequence);
        match self.frames.put(&key, pixels) {
            Ok(blob) => {
                cam.pixels = Some(v1::camera_frame::Pixels::Blob(blob.clone()));
                Some(blob)
            }
            Err(e) => {
                tracing::error!(error = %e, "frame store put failed; no task can use this frame");
                None
            }
        }
    }
}

impl StreamHandler<BusSample> for Ingest {
    fn handle(&mut self, sample: BusSample, ctx: &mut Self::Context) {
        let envelope = match vigil_proto::decode_envelope(&sample.payload) {
            Ok(e) if e.payload.as_ref().is_some_and(|p| self.kind.accepts(p)) => e,
            Ok(_) => {
                inc(&self.stats.rejected);
                tracing::warn!(key = %sample.key, stream = self.kind.name(), "wrong payload for this stream; dropped and counted");
                return;
            }
            Err(e) => {
                inc(&self.stats.rejected);
                tracing::warn!(key = %sample.key, error = %e, "undecodable frame; dropped and counted");
                return;
            }
        };
        let h = envelope.header.clone().unwrap_or_default();
        let next = self.next_seq.entry(h.sensor_id.clone()).or_insert(h.sequence);
        if h.sequence > *next {
            self.stats.gaps.fetch_add(h.sequence - *next, Ordering::SeqCst);
        }
        *next = h.sequence + 1;
        inc(&self.stats.ingested[self.kind.index()]);
        let mut envelope = envelope;
        let mut bytes = sample.payload;
        let frame_ref = match self.kind == SensorKind::Camera && self.fusion.is_some() {
            true => self.store_pixels(&mut envelope),
            false => None,
        };
        if frame_ref.is_some() && self.frames.durable() {
            // The log record refers to the stored pixels rather than carrying a second copy.
            bytes = vigil_proto::encode_envelope(&envelope);
        }
        self.telemetry.push(ToLog {
            topic: self.kind.topic(),
            capture_ns: h.capture_time_ns,
            publish_ns: h.publish_time_ns,
            envelope: Arc::new(bytes),
        });
        let Some(fusion) = self.fusion.clone() else { return };
        let frame = Frame { kind: self.kind, envelope: Arc::new(envelope), ingest_ns: self.clock.now_ns(), frame_ref };
        ctx.wait(
            async move {
                let _ = fusion.send(frame).await;
            }
            .into_actor(self),
        );
    }
}

// ---------------------------------------------------------------- fusion

#[derive(Debug, Clone)]
struct CameraRef {
    blob: v1::BlobRef,
    layout: v1::FrameLayout,
    capture_ns: Nanos,
    sensor_id: String,
    sequence: u64,
    geometry: CameraGeometry,
}

/// Fuses radar, lidar and camera into tracks and raises obstacle tasks.
#[derive(Debug)]
pub struct Fusion {
    cfg: NodeConfig,
    clock: Arc<dyn Clock>,
    stats: Arc<NodeStats>,
    dispatcher: Addr<Dispatcher>,
    handler: Addr<RecommendationHandler>,
    tracker: Tracker,
    lidar: Option<Arc<v1::Envelope>>,
    camera: Option<CameraRef>,
    /// Capture interval of the camera, as last seen (a slow camera is not a stale one).
    camera_period_ns: Nanos,
    /// Latest ego pose from localization: (capture time, pose).
    ego: Option<(Nanos, v1::EgoState)>,
    /// Tracks with a task or fallback in flight (settled by the handler's [`TrackSettled`]).
    in_flight: HashSet<u32>,
    /// Live tracks that were ever an actionable threat (counted once each).
    threats: HashSet<u32>,
    next_task: u64,
}

/// The handler to fusion: this track's task has ended; it may raise another.
#[derive(Debug, Clone, Copy)]
pub struct TrackSettled(pub u32);

impl Message for TrackSettled {
    type Result = ();
}

impl Handler<TrackSettled> for Fusion {
    type Result = ();
    fn handle(&mut self, m: TrackSettled, _: &mut Self::Context) {
        self.in_flight.remove(&m.0);
    }
}

/// Fusion to the handler: a threat with no usable camera crop (no frame, a stale one, or
/// no box): fall back now rather than ask a worker about an old picture.
#[derive(Debug, Clone, Copy)]
pub struct NoCamera {
    pub track_id: u32,
    pub ttc_s: f64,
}

impl Message for NoCamera {
    type Result = ();
}

/// A task the fusion actor wants answered.
#[derive(Debug, Clone)]
pub struct RaiseTask {
    pub task: v1::ObstacleTask,
    pub capture_ns: Nanos,
    pub detected_ns: Nanos,
    pub track_id: u32,
    pub ttc_s: f64,
}

impl Message for RaiseTask {
    type Result = ();
}

impl Actor for Fusion {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
    }
}

/// A track younger than [`MIN_HITS_FOR_VELOCITY`] raises a task only when it is in the
/// path and closer than this, seconds (low debris is seen late and intermittently).
pub const EARLY_TTC_S: f64 = 3.0;

/// Lidar sweeps a track needs before its velocity is trusted and it may raise a task.
pub const MIN_HITS_FOR_VELOCITY: u32 = 3;

/// Priority 1..9 from time to collision: under 1 s is 9, each further second one less.
pub fn priority_for_ttc(ttc_s: f64) -> u8 {
    if !ttc_s.is_finite() {
        return 1;
    }
    (9.0 - ttc_s.max(0.0).floor()).clamp(1.0, 9.0) as u8
}

impl Fusion {
    /// The ego pose at `t`, dead-reckoned from the latest localization fix.
    fn pose_at(&self, t: Nanos) -> Pose {
        let Some((t0, e)) = self.ego.as_ref() else { return Pose::default() };
        let dt = (t - t0) as f64 * 1e-9;
        let (s, c) = e.yaw.sin_cos();
        Pose { x: e.x + e.speed * c * dt, y: e.y + e.speed * s * dt, yaw: e.yaw, speed: e.speed }
    }

    fn lane_free(&self, tracks: &[Track], side: f64) -> bool {
        let w = self.cfg.road.lane_width_m;
        let ego_y = self.ego.as_ref().map_or(0.0, |e| e.1.y);
        let target = ego_y + side * w;
        let lane = (target / w).round();
        if lane < 0.0 || lane >= self.cfg.road.lanes as f64 || (target - lane * w).abs() > w / 2.0 {
            return false;
        }
        let centre = side * w;
        !tracks.iter().any(|t| t.x > -15.0 && t.x < 70.0 && (t.y - centre).abs() < w / 2.0 + 0.8)
    }

    fn on_radar(&mut self, f: &Frame) {
        let (Some(Payload::Radar(radar)), Some(lidar_env)) = (f.envelope.payload.as_ref(), self.lidar.as_ref()) else {
            return;
        };
        let Some(Payload::Lidar(lidar)) = lidar_env.payload.as_ref() else { return };
        let camera = self.camera.clone();
        let candidates = detect(radar, lidar, camera.as_ref().map(|c| &c.geometry));
        let capture = f.capture_ns();
        // Positions come from the lidar support, so the tracker runs on lidar time: a
        // radar scan that reuses the last sweep adds no velocity evidence.
        let lidar_ns = lidar_env.header.as_ref().map_or(capture, |h| h.capture_time_ns);
        let pose = self.pose_at(lidar_ns);
        let tracks = self.tracker.update(lidar_ns, pose, candidates);
        self.threats.retain(|id| tracks.iter().any(|t| t.id == *id));
        let (left, right) = (self.lane_free(&tracks, 1.0), self.lane_free(&tracks, -1.0));
        for t in &tracks {
            let c = &t.candidate;
            // Radar range rate averages every detection in the cluster (clutter beside a
            // receding car closes at ego speed); once tracked, the track's own motion decides.
            let closing = if t.hits >= MIN_HITS_FOR_VELOCITY { -t.vx } else { c.closing_speed };
            let ttc = if closing > 0.3 { t.x.hypot(t.y) / closing } else { f64::INFINITY };
            let offset = path_offset(t.y, t.vy, ttc);
            let threat = t.x > 0.0 && ttc < TTC_HORIZON_S && offset < CORRIDOR_HALF_WIDTH_M + c.width_m / 2.0;
            tracing::trace!(
                track = t.id,
                hits = t.hits,
                x = t.x,
                y = t.y,
                vx = t.vx,
                vy = t.vy,
                ttc,
                offset,
                threat,
                boxed = c.camera_box.is_some(),
                "track"
            );
            // A young track may ask only when it is in the path now and closing fast.
            let urgent_now = t.y.abs() < PATH_HALF_WIDTH_M + c.width_m / 2.0 && ttc < EARLY_TTC_S;
            if !threat || (t.hits < MIN_HITS_FOR_VELOCITY && !urgent_now) {
                continue;
            }
            let on_time = self.clock.now_ns() - capture < self.cfg.task_budget_ns;
            if self.threats.insert(t.id) {
                inc(&self.stats.threats_seen);
                if on_time {
                    inc(&self.stats.threats_raised);
                }
            }
            if self.in_flight.contains(&t.id) {
                continue;
            }
            let max_age = self.cfg.max_camera_age_ns.max(self.camera_period_ns.saturating_mul(3) / 2);
            let fresh = camera.as_ref().filter(|cam| capture - cam.capture_ns <= max_age);
            let (Some(cam), Some(b)) = (fresh, c.camera_box) else {
                self.in_flight.insert(t.id);
                self.handler.do_send(NoCamera { track_id: t.id, ttc_s: ttc });
                continue;
            };
            self.in_flight.insert(t.id);
            self.next_task += 1;
            let task_id = task_id(&self.cfg.vehicle, &self.cfg.run, self.next_task);
            let task = v1::ObstacleTask {
                task_id,
                priority: priority_for_ttc(ttc) as u32,
                deadline_ns: capture + self.cfg.task_budget_ns,
                frame_sensor_id: cam.sensor_id.clone(),
                frame_sequence: cam.sequence,
                frame_ref: Some(cam.blob.clone()),
                frame_layout: Some(cam.layout),
                camera_box: Some(v1::Box2d { x_min: b[0], y_min: b[1], x_max: b[2], y_max: b[3] }),
                track: Some(v1::TrackSummary {
                    track_id: t.id,
                    x: t.x,
                    y: t.y,
                    vx: t.vx,
                    vy: t.vy,
                    time_to_collision_s: if ttc.is_finite() { ttc } else { 0.0 },
                    closing: ttc.is_finite(),
                    lateral_offset_m: t.y,
                    seen_by_radar: true,
                    seen_by_lidar: true,
                }),
                reply_to: reply_address(&self.cfg.vehicle),
                left_lane_free: left,
                right_lane_free: right,
                attempt: 0,
            };
            inc(&self.stats.tasks_raised);
            inc(&self.stats.raised_by_priority[priority_for_ttc(ttc).min(9) as usize]);
            self.stats.outstanding.fetch_add(1, Ordering::SeqCst);
            let raise =
                RaiseTask { task, capture_ns: capture, detected_ns: self.clock.now_ns(), track_id: t.id, ttc_s: ttc };
            // The dispatcher never waits on the broker, so its mailbox stays short.
            self.dispatcher.do_send(raise);
        }
    }
}

/// A task's id: `<vehicle>/<run>/task/<n>`, unique across processes and restarts.
pub fn task_id(vehicle: &VehicleId, run: &RunId, n: u64) -> String {
    format!("{vehicle}/{run}/task/{n}")
}

/// Where a vehicle's recommendations go back (RabbitMQ `reply_to`).
pub fn reply_address(vehicle: &VehicleId) -> String {
    format!("vigil.replies.{vehicle}")
}

impl Handler<Frame> for Fusion {
    type Result = ();
    fn handle(&mut self, f: Frame, _: &mut Self::Context) {
        match f.kind {
            SensorKind::Lidar => self.lidar = Some(f.envelope.clone()),
            SensorKind::Camera => {
                if let (Some(Payload::Camera(cam)), Some(blob), Some(h)) =
                    (f.envelope.payload.as_ref(), f.frame_ref.clone(), f.header())
                    && let Some(geometry) = CameraGeometry::from_frame(cam)
                {
                    if let Some(prev) = &self.camera
                        && f.capture_ns() > prev.capture_ns
                    {
                        self.camera_period_ns = f.capture_ns() - prev.capture_ns;
                    }
                    self.camera = Some(CameraRef {
                        blob,
                        layout: v1::FrameLayout { width: cam.width, height: cam.height, encoding: cam.encoding },
                        capture_ns: f.capture_ns(),
                        sensor_id: h.sensor_id.clone(),
                        sequence: h.sequence,
                        geometry,
                    });
                }
            }
            SensorKind::Localization => {
                if let Some(Payload::GroundTruth(gt)) = f.envelope.payload.as_ref()
                    && let Some(ego) = gt.ego
                    && self.ego.as_ref().is_none_or(|(t, _)| *t <= f.capture_ns())
                {
                    self.ego = Some((f.capture_ns(), ego));
                }
            }
            SensorKind::Radar => {
                self.stats.fusion_lag.record(self.clock.now_ns() - f.capture_ns());
                self.on_radar(&f);
                // After any task it raised is counted as outstanding (lockstep runners
                // wait for fused == radar frames and outstanding == 0).
                inc(&self.stats.fused);
            }
        }
    }
}

// ---------------------------------------------------------------- dispatcher

/// Publishes tasks to the task transport and logs them; registers each with the handler
/// first. Publishes run side by side: a confirm slower than a task's budget holds neither
/// fusion nor the next task (the handler's deadline check falls back on time).
#[derive(Debug)]
pub struct Dispatcher {
    vehicle: VehicleId,
    clock: Arc<dyn Clock>,
    tasks: Arc<dyn TaskTransport>,
    telemetry: TelemetrySpool,
    stats: Arc<NodeStats>,
    handler: Addr<RecommendationHandler>,
    sequence: u64,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

/// The handler learns of a task before it can be answered.
#[derive(Debug, Clone)]
pub struct Outstanding {
    pub task_id: String,
    pub track_id: u32,
    pub deadline_ns: Nanos,
    pub detected_ns: Nanos,
    pub ttc_s: f64,
    pub priority: u8,
    /// The publish was refused: resolve by fallback now.
    pub refused: bool,
}

impl Message for Outstanding {
    type Result = ();
}

impl Handler<RaiseTask> for Dispatcher {
    type Result = ();
    fn handle(&mut self, r: RaiseTask, ctx: &mut Self::Context) {
        let payload = Payload::ObstacleTask(r.task.clone());
        let now = self.clock.now_ns();
        let header = v1::Header {
            schema_version: vigil_proto::SCHEMA_VERSION,
            vehicle_id: self.vehicle.0.clone(),
            sensor_id: "fusion".into(),
            sequence: self.sequence,
            capture_time_ns: r.capture_ns,
            publish_time_ns: now,
            correlation_id: r.task.task_id.clone(),
            content_type: vigil_proto::content_type(&payload).into(),
        };
        self.sequence += 1;
        let bytes = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        self.telemetry.push(ToLog {
            topic: topics::TASKS,
            capture_ns: r.capture_ns,
            publish_ns: now,
            envelope: Arc::new(bytes.clone()),
        });
        let queued = QueuedTask {
            task_id: r.task.task_id.clone(),
            priority: r.task.priority as u8,
            deadline_ns: r.task.deadline_ns,
            payload: bytes,
        };
        let outstanding = Outstanding {
            task_id: r.task.task_id.clone(),
            track_id: r.track_id,
            deadline_ns: r.task.deadline_ns,
            detected_ns: r.detected_ns,
            ttc_s: r.ttc_s,
            priority: (r.task.priority as u8).min(9),
            refused: false,
        };
        // Registered before the publish (mailboxes are FIFO): a reply cannot overtake it.
        self.handler.do_send(outstanding.clone());
        let (tasks, handler, stats) = (self.tasks.clone(), self.handler.clone(), self.stats.clone());
        ctx.spawn(
            async move {
                match tasks.publish(queued).await {
                    Ok(()) => inc(&stats.tasks_published),
                    Err(e) => {
                        inc(&stats.tasks_refused);
                        if !matches!(e, TransportError::Queue(QueueError::Full { .. })) {
                            tracing::error!(error = %e, "task publish failed; falling back");
                        }
                        handler.do_send(Outstanding { refused: true, ..outstanding });
                    }
                }
            }
            .into_actor(self),
        );
    }
}

// ---------------------------------------------------------------- recommendation handler

/// How long an applied action holds against a weaker one, nanoseconds.
pub const HOLD_NS: Nanos = 1_000_000_000;

fn urgency(a: Action) -> u8 {
    match a {
        Action::BrakeHard => 4,
        Action::Brake => 3,
        Action::SteerLeft | Action::SteerRight => 2,
        Action::SlowDown => 1,
        Action::Continue => 0,
    }
}

/// Applies recommendations (deduplicated, deadline-guarded) and the fallback policy.
#[derive(Debug)]
pub struct RecommendationHandler {
    cfg: NodeConfig,
    clock: Arc<dyn Clock>,
    tasks: Arc<dyn TaskTransport>,
    telemetry: TelemetrySpool,
    stats: Arc<NodeStats>,
    control: std::sync::mpsc::Sender<ControlCommand>,
    fusion: Recipient<TrackSettled>,
    outstanding: HashMap<String, Outstanding>,
    /// Tasks resolved (answered or fallen back), kept a while after their deadline to
    /// tell a stale or duplicate reply from an unknown one.
    resolved: Resolved,
    current: Option<(Action, Nanos)>,
}

/// How a task ended, for classifying late replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Answered,
    TimedOut,
}

/// How long past its deadline a resolved task is remembered, and how many at most (a
/// reply later than either is counted unknown instead of stale).
const RESOLVED_MEMORY_NS: Nanos = 10_000_000_000;
const RESOLVED_CAPACITY: usize = 16_384;

/// Resolved task ids in the order they were resolved, pruned from the front: the cost of
/// forgetting is the number forgotten, not the number held (a scan of every id each
/// deadline check grew the p99 with the task rate in the soak bench).
#[derive(Debug, Default)]
struct Resolved {
    ids: HashMap<String, Resolution>,
    order: std::collections::VecDeque<(Nanos, String)>,
}

impl Resolved {
    fn insert(&mut self, id: &str, deadline_ns: Nanos, how: Resolution) {
        if self.ids.insert(id.to_string(), how).is_none() {
            self.order.push_back((deadline_ns, id.to_string()));
        }
    }

    fn get(&self, id: &str) -> Option<Resolution> {
        self.ids.get(id).copied()
    }

    /// Forgets what is older than the memory or beyond the capacity. Deadlines arrive
    /// nearly in order; an out-of-order one waits behind the front.
    fn prune(&mut self, now_ns: Nanos) {
        while let Some((deadline, _)) = self.order.front() {
            if *deadline + RESOLVED_MEMORY_NS > now_ns && self.order.len() <= RESOLVED_CAPACITY {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
}

impl Actor for RecommendationHandler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        let tasks = self.tasks.clone();
        let address = reply_address(&self.cfg.vehicle);
        ctx.wait(async move { tasks.replies(&address).await }.into_actor(self).map(|r, _, ctx| match r {
            Ok(consumer) => {
                ctx.add_stream(reply_stream(consumer));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot consume recommendations; every task will fall back");
            }
        }));
        ctx.run_interval(Duration::from_millis(2), |act, _| act.check_deadlines());
    }
}

impl RecommendationHandler {
    fn resolve(&mut self, task_id: &str, how: Resolution) -> Option<Outstanding> {
        let o = self.outstanding.remove(task_id)?;
        self.resolved.insert(task_id, o.deadline_ns, how);
        Some(o)
    }

    /// The task's end state is counted and its control (if any) sent: it is no longer
    /// outstanding, and its track may raise a new task.
    fn finish(&mut self, o: &Outstanding) {
        self.fusion.do_send(TrackSettled(o.track_id));
        self.stats.outstanding.fetch_sub(1, Ordering::SeqCst);
    }

    fn apply(&mut self, task_id: &str, action: Action, fallback: bool) {
        let now = self.clock.now_ns();
        if action == Action::Continue {
            return;
        }
        if let Some((cur, at)) = self.current
            && urgency(action) < urgency(cur)
            && now - at < HOLD_NS
        {
            return;
        }
        self.current = Some((action, now));
        let _ = self.control.send(ControlCommand {
            vehicle: self.cfg.vehicle.clone(),
            task_id: task_id.into(),
            action,
            at_ns: now,
            fallback,
        });
    }

    fn fallback(&mut self, o: &Outstanding) {
        self.stats.fallback_after_deadline.record((self.clock.now_ns() - o.deadline_ns).max(0));
        inc(&self.stats.fallback);
        inc(&self.stats.fallback_by_priority[o.priority as usize]);
        if o.ttc_s < self.cfg.fallback_ttc_s {
            inc(&self.stats.fallback_braked);
            self.apply(&o.task_id, Action::Brake, true);
        }
    }

    fn check_deadlines(&mut self) {
        let now = self.clock.now_ns();
        let due: Vec<String> =
            self.outstanding.values().filter(|o| o.deadline_ns < now).map(|o| o.task_id.clone()).collect();
        for id in due {
            if let Some(o) = self.resolve(&id, Resolution::TimedOut) {
                tracing::debug!(task = %id, "deadline passed with no recommendation: fallback");
                self.fallback(&o);
                self.finish(&o);
            }
        }
        self.resolved.prune(now);
    }
}

impl Handler<NoCamera> for RecommendationHandler {
    type Result = ();
    fn handle(&mut self, m: NoCamera, _: &mut Self::Context) {
        inc(&self.stats.no_camera);
        tracing::debug!(track = m.track_id, ttc = m.ttc_s, "threat with no fresh camera crop: fallback");
        if m.ttc_s < self.cfg.fallback_ttc_s {
            self.apply(&format!("{}/{}/no-camera/{}", self.cfg.vehicle, self.cfg.run, m.track_id), Action::Brake, true);
        }
        self.fusion.do_send(TrackSettled(m.track_id));
    }
}

impl Handler<Outstanding> for RecommendationHandler {
    type Result = ();
    fn handle(&mut self, o: Outstanding, _: &mut Self::Context) {
        if o.refused {
            if let Some(o) = self.resolve(&o.task_id, Resolution::TimedOut) {
                self.fallback(&o);
                self.finish(&o);
            }
        } else {
            self.outstanding.insert(o.task_id.clone(), o);
        }
    }
}

impl StreamHandler<Result<Reply, TransportError>> for RecommendationHandler {
    fn handle(&mut self, reply: Result<Reply, TransportError>, _: &mut Self::Context) {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reply stream error");
                return;
            }
        };
        let rec = match vigil_proto::decode_envelope(&reply.payload) {
            Ok(v1::Envelope { payload: Some(Payload::Recommendation(r)), .. }) => r,
            _ => {
                inc(&self.stats.unknown);
                return;
            }
        };
        let now = self.clock.now_ns();
        let Some(o) = self.outstanding.get(&rec.task_id).cloned() else {
            match self.resolved.get(&rec.task_id) {
                // Its deadline passed first: the fallback already acted.
                Some(Resolution::TimedOut) => inc(&self.stats.stale),
                Some(Resolution::Answered) => inc(&self.stats.duplicate),
                None => inc(&self.stats.unknown),
            }
            return;
        };
        if now > o.deadline_ns {
            self.resolve(&rec.task_id, Resolution::TimedOut);
            inc(&self.stats.stale);
            self.fallback(&o);
            self.finish(&o);
            return;
        }
        self.resolve(&rec.task_id, Resolution::Answered);
        inc(&self.stats.completed);
        inc(&self.stats.completed_by_priority[o.priority as usize]);
        let action = action_from_proto(rec.action());
        inc(&self.stats.by_action[Action::ALL.iter().position(|a| *a == action).unwrap_or(5)]);
        self.stats.latencies.record(now - o.detected_ns);
        self.stats.worker.record(rec.inference_ns);
        if let Ok(mut last) = self.stats.last_recommendation.lock() {
            *last = format!("{} {} ({:.0}%)", action.name(), rec.class().as_str_name(), rec.confidence * 100.0);
        }
        self.telemetry.push(ToLog {
            topic: topics::RECOMMENDATIONS,
            capture_ns: now,
            publish_ns: now,
            envelope: Arc::new(reply.payload),
        });
        self.apply(&rec.task_id, action, false);
        self.finish(&o);
    }
}

// ---------------------------------------------------------------- wiring

/// The zenoh channels feeding one node, one per [`SensorKind`].
#[derive(Debug)]
pub struct SensorInputs(pub Vec<(SensorKind, tokio::sync::mpsc::Receiver<BusSample>)>);

/// Addresses of a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub fusion: Option<Addr<Fusion>>,
    pub dispatcher: Option<Addr<Dispatcher>>,
    pub handler: Option<Addr<RecommendationHandler>>,
}

/// Starts one vehicle node: fusion, dispatcher and handler on the current arbiter (the
/// urgent plane), the ingest actors on `io` (decoding megabyte frames there keeps it off
/// the path from detection to action), the telemetry spooler on `bulk` and its forwarder
/// on `forward`, where a slow log can block nothing else. Call inside a running actix
/// `System`.
pub fn start_node(
    cfg: NodeConfig,
    deps: NodeDeps,
    inputs: SensorInputs,
    io: &ArbiterHandle,
    bulk: &ArbiterHandle,
    forward: &ArbiterHandle,
) -> NodeHandle {
    let telemetry =
        start_spool(cfg.spool.clone(), &cfg.vehicle, &cfg.run, deps.log.clone(), deps.stats.clone(), bulk, forward);
    let (fusion, dispatcher, handler) = if cfg.perception {
        // Fusion and the handler hold each other's address: fusion's context first.
        let fusion_ctx: Context<Fusion> = Context::new();
        let handler = RecommendationHandler {
            cfg: cfg.clone(),
            clock: deps.clock.clone(),
            tasks: deps.tasks.clone(),
            telemetry: telemetry.clone(),
            stats: deps.stats.clone(),
            control: deps.control.clone(),
            fusion: fusion_ctx.address().recipient(),
            outstanding: HashMap::new(),
            resolved: Resolved::default(),
            current: None,
        }
        .start();
        let dispatcher = Dispatcher {
            vehicle: cfg.vehicle.clone(),
            clock: deps.clock.clone(),
            tasks: deps.tasks.clone(),
            telemetry: telemetry.clone(),
            stats: deps.stats.clone(),
            handler: handler.clone(),
            sequence: 0,
        }
        .start();
        let dispatcher_addr = dispatcher.clone();
        let fusion = fusion_ctx.run(Fusion {
            cfg: cfg.clone(),
            clock: deps.clock.clone(),
            stats: deps.stats.clone(),
            dispatcher,
            handler: handler.clone(),
            tracker: Tracker::default(),
            lidar: None,
            camera: None,
            camera_period_ns: 0,
            ego: None,
            in_flight: HashSet::new(),
            threats: HashSet::new(),
            next_task: 0,
        });
        (Some(fusion), Some(dispatcher_addr), Some(handler))
    } else {
        (None, None, None)
    };
    for (kind, rx) in inputs.0 {
        let ingest = Ingest {
            kind,
            vehicle: cfg.vehicle.clone(),
            run: cfg.run.clone(),
            clock: deps.clock.clone(),
            stats: deps.stats.clone(),
            telemetry: telemetry.clone(),
            frames: deps.frames.clone(),
            fusion: fusion.clone(),
            next_seq: HashMap::new(),
            mailbox: cfg.mailbox,
        };
        Ingest::start_in_arbiter(io, move |ctx| {
            ctx.add_stream(ReceiverStream::new(rx));
            ingest
        });
    }
    NodeHandle { fusion, dispatcher, handler }
}
