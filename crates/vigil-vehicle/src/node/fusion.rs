//! Fusion: radar, lidar and camera into tracks; threats into obstacle tasks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use vigil_core::policy::{Action, PATH_HALF_WIDTH_M, caution, path_offset};
use vigil_core::{Clock, Nanos, RunId, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};

use super::dispatcher::Dispatcher;
use super::handler::RecommendationHandler;
use super::stats::{NodeStats, inc};
use super::{Frame, NodeConfig, NodeDeps, Stream};
use crate::detector::{CORRIDOR_HALF_WIDTH_M, CameraGeometry, TTC_HORIZON_S, detect, radar_objects};
use crate::tracker::{Pose, Track, Tracker};
use crate::watch::{RadarWatch, Watched};

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
    /// Radar-only objects the lidar cannot confirm yet, and the caution last sent for each.
    watch: RadarWatch,
    cautioned: HashMap<u32, (Action, Nanos)>,
    /// Where the confirmed tracks of the latest scan are (a watched object among them is theirs).
    confirmed: Vec<(f64, f64)>,
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
    /// Closest the track comes to the ego path centre ([`path_offset`]), metres.
    pub offset_m: f64,
}

impl Message for NoCamera {
    type Result = ();
}

/// Fusion to the handler: a believed radar-only object in the path asks for `action`
/// ([`vigil_core::policy::caution`]).
#[derive(Debug, Clone, Copy)]
pub struct Caution {
    pub watch_id: u32,
    pub action: Action,
    pub range_m: f64,
    pub required_decel_mps2: f64,
}

impl Message for Caution {
    type Result = ();
}

/// A caution is sent again for the same object only this often unless it escalates.
const CAUTION_REPEAT_NS: Nanos = 500_000_000;

/// A task the fusion actor wants answered.
#[derive(Debug, Clone)]
pub struct RaiseTask {
    pub task: v1::ObstacleTask,
    pub capture_ns: Nanos,
    pub detected_ns: Nanos,
    pub track_id: u32,
    pub ttc_s: f64,
    /// Closest the track comes to the ego path centre, metres (a fallback brakes only
    /// for what is in the path).
    pub offset_m: f64,
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

/// A lane is free only of what could be in it within this long, seconds.
pub const LANE_CHANGE_LOOKAHEAD_S: f64 = 5.0;

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
    pub(super) fn new(
        cfg: NodeConfig,
        deps: &NodeDeps,
        dispatcher: Addr<Dispatcher>,
        handler: Addr<RecommendationHandler>,
    ) -> Self {
        Self {
            cfg,
            clock: deps.clock.clone(),
            stats: deps.stats.clone(),
            dispatcher,
            handler,
            tracker: Tracker::default(),
            watch: RadarWatch::default(),
            cautioned: HashMap::new(),
            confirmed: Vec::new(),
            lidar: None,
            camera: None,
            camera_period_ns: 0,
            ego: None,
            in_flight: HashSet::new(),
            threats: HashSet::new(),
            next_task: 0,
        }
    }

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
        // Near, or closing fast enough to be alongside before the lane change ends (an
        // oncoming car 100 m out at a combined 44 m/s is 2.3 s away).
        let blocks = |t: &Track| t.x > -15.0 && (t.x < 70.0 || -t.vx * LANE_CHANGE_LOOKAHEAD_S > t.x - 15.0);
        !tracks.iter().any(|t| blocks(t) && (t.y - centre).abs() < w / 2.0 + 0.8)
    }

    fn on_radar(&mut self, f: &Frame) {
        let Some(Payload::Radar(radar)) = f.envelope.payload.as_ref() else { return };
        let objects = radar_objects(radar);
        let capture = f.capture_ns();
        self.track(capture, &objects);
        let watched = self.watch.update(capture, self.pose_at(capture), &objects);
        self.caution(capture, watched);
    }

    /// Sends the handler a caution for each believed radar-only object in the path that
    /// no confirmed track accounts for.
    fn caution(&mut self, capture: Nanos, watched: Vec<Watched>) {
        self.cautioned.retain(|_, (_, at)| capture - *at < 4 * CAUTION_REPEAT_NS);
        for w in watched {
            let confirmed = self.confirmed.iter().any(|(x, y)| (x - w.x).hypot(y - w.y) < 3.0 + 0.02 * w.range_m);
            let action = caution(w.required_decel_mps2);
            if confirmed || action == Action::Continue {
                continue;
            }
            if let Some((last, at)) = self.cautioned.get(&w.id)
                && (*last == action || *last == Action::Brake)
                && capture - at < CAUTION_REPEAT_NS
            {
                continue;
            }
            self.cautioned.insert(w.id, (action, capture));
            self.stats.first_task.get_or_init(|| (capture, w.x));
            self.handler.do_send(Caution {
                watch_id: w.id,
                action,
                range_m: w.range_m,
                required_decel_mps2: w.required_decel_mps2,
            });
        }
    }

    /// Lidar-confirmed candidates into tracks; threats into tasks.
    fn track(&mut self, capture: Nanos, objects: &[crate::detector::RadarObject]) {
        let Some(lidar_env) = self.lidar.as_ref() else { return };
        let Some(Payload::Lidar(lidar)) = lidar_env.payload.as_ref() else { return };
        let camera = self.camera.clone();
        let candidates = detect(objects, lidar, camera.as_ref().map(|c| &c.geometry));
        // Positions come from the lidar support, so the tracker runs on lidar time: a
        // radar scan that reuses the last sweep adds no velocity evidence.
        let lidar_ns = lidar_env.header.as_ref().map_or(capture, |h| h.capture_time_ns);
        let pose = self.pose_at(lidar_ns);
        let held = self.tracker.held();
        let tracks = self.tracker.update(lidar_ns, pose, candidates);
        if self.tracker.held() > held {
            inc(&self.stats.scans_held);
        }
        self.confirmed = tracks.iter().map(|t| (t.x, t.y)).collect();
        self.threats.retain(|id| tracks.iter().any(|t| t.id == *id));
        let lanes = (self.lane_free(&tracks, 1.0), self.lane_free(&tracks, -1.0));
        for t in &tracks {
            let Some((ttc, offset)) = self.actionable(t) else { continue };
            let on_time = self.clock.now_ns().saturating_sub(capture) < self.cfg.task_budget_ns;
            if self.threats.insert(t.id) {
                inc(&self.stats.threats_seen);
                if on_time {
                    inc(&self.stats.threats_raised);
                }
            }
            if self.in_flight.contains(&t.id) {
                continue;
            }
            self.in_flight.insert(t.id);
            let max_age = self.cfg.max_camera_age_ns.max(self.camera_period_ns.saturating_mul(3) / 2);
            let fresh = camera.as_ref().filter(|cam| capture.saturating_sub(cam.capture_ns) <= max_age);
            match (fresh, t.candidate.camera_box) {
                (Some(cam), Some(b)) => self.raise(t, (ttc, offset), capture, cam, b, lanes),
                _ => self.handler.do_send(NoCamera { track_id: t.id, ttc_s: ttc, offset_m: offset }),
            }
        }
    }

    /// The time to collision of a track fusion may act on: a threat in the ego corridor,
    /// old enough for its velocity to be trusted unless it is in the path and close now.
    fn actionable(&self, t: &Track) -> Option<(f64, f64)> {
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
        let urgent_now = t.y.abs() < PATH_HALF_WIDTH_M + c.width_m / 2.0 && ttc < EARLY_TTC_S;
        (threat && (t.hits >= MIN_HITS_FOR_VELOCITY || urgent_now)).then_some((ttc, offset))
    }

    /// Sends the dispatcher a task on the track's camera crop.
    fn raise(
        &mut self,
        t: &Track,
        risk: (f64, f64),
        capture: Nanos,
        cam: &CameraRef,
        b: [f32; 4],
        lanes: (bool, bool),
    ) {
        let (ttc, offset_m) = risk;
        self.next_task += 1;
        let task = v1::ObstacleTask {
            task_id: task_id(&self.cfg.vehicle, &self.cfg.run, self.next_task),
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
            left_lane_free: lanes.0,
            right_lane_free: lanes.1,
            attempt: 0,
        };
        inc(&self.stats.tasks_raised);
        inc(&self.stats.raised_by_priority[priority_for_ttc(ttc).min(9) as usize]);
        self.stats.outstanding.fetch_add(1, Ordering::SeqCst);
        let raise = RaiseTask {
            task,
            capture_ns: capture,
            detected_ns: self.clock.now_ns(),
            track_id: t.id,
            ttc_s: ttc,
            offset_m,
        };
        self.stats.first_task.get_or_init(|| (capture, t.x));
        // The dispatcher never waits on the broker, so its mailbox stays short.
        self.dispatcher.do_send(raise);
    }
}

/// A task's id: `<vehicle>/<run>/task/<n>`, unique across processes and restarts.
pub fn task_id(vehicle: &VehicleId, run: &RunId, n: u64) -> String {
    format!("{vehicle}/{run}/task/{n}")
}

/// Where a vehicle's recommendations go back (RabbitMQ `reply_to`).
pub fn reply_address(vehicle: &VehicleId) -> String {
    vigil_bus::reply_address(vehicle.as_str())
}

impl Handler<Frame> for Fusion {
    type Result = ();
    fn handle(&mut self, f: Frame, _: &mut Self::Context) {
        match f.kind {
            Stream::Lidar => self.lidar = Some(f.envelope.clone()),
            Stream::Camera => {
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
            Stream::GroundTruth => {
                if let Some(Payload::GroundTruth(gt)) = f.envelope.payload.as_ref()
                    && let Some(ego) = gt.ego
                    && self.ego.as_ref().is_none_or(|(t, _)| *t <= f.capture_ns())
                {
                    self.ego = Some((f.capture_ns(), ego));
                }
            }
            Stream::Radar => {
                self.stats.fusion_lag.record(self.clock.now_ns().saturating_sub(f.capture_ns()));
                self.on_radar(&f);
                // After any task it raised is counted as outstanding (lockstep runners
                // wait for fused == radar frames and outstanding == 0).
                inc(&self.stats.fused);
                self.stats.progress.moved();
            }
        }
    }
}
