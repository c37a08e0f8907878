//! Fusion: radar, lidar and camera into tracks; threats into obstacle tasks.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use vigil_core::policy::{PATH_HALF_WIDTH_M, path_offset};
use vigil_core::{Clock, Nanos, RunId, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};

use super::dispatcher::Dispatcher;
use super::handler::RecommendationHandler;
use super::stats::{NodeStats, inc};
use super::{Frame, NodeConfig, NodeDeps, Stream};
use crate::detector::{CORRIDOR_HALF_WIDTH_M, CameraGeometry, TTC_HORIZON_S, detect};
use crate::tracker::{Pose, Track, Tracker};

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
        let lanes = (self.lane_free(&tracks, 1.0), self.lane_free(&tracks, -1.0));
        for t in &tracks {
            let Some(ttc) = self.actionable(t) else { continue };
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
            self.in_flight.insert(t.id);
            let max_age = self.cfg.max_camera_age_ns.max(self.camera_period_ns.saturating_mul(3) / 2);
            let fresh = camera.as_ref().filter(|cam| capture - cam.capture_ns <= max_age);
            match (fresh, t.candidate.camera_box) {
                (Some(cam), Some(b)) => self.raise(t, ttc, capture, cam, b, lanes),
                _ => self.handler.do_send(NoCamera { track_id: t.id, ttc_s: ttc }),
            }
        }
    }

    /// The time to collision of a track fusion may act on: a threat in the ego corridor,
    /// old enough for its velocity to be trusted unless it is in the path and close now.
    fn actionable(&self, t: &Track) -> Option<f64> {
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
        (threat && (t.hits >= MIN_HITS_FOR_VELOCITY || urgent_now)).then_some(ttc)
    }

    /// Sends the dispatcher a task on the track's camera crop.
    fn raise(&mut self, t: &Track, ttc: f64, capture: Nanos, cam: &CameraRef, b: [f32; 4], lanes: (bool, bool)) {
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
        let raise =
            RaiseTask { task, capture_ns: capture, detected_ns: self.clock.now_ns(), track_id: t.id, ttc_s: ttc };
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
    format!("vigil.replies.{vehicle}")
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
                self.stats.fusion_lag.record(self.clock.now_ns() - f.capture_ns());
                self.on_radar(&f);
                // After any task it raised is counted as outstanding (lockstep runners
                // wait for fused == radar frames and outstanding == 0).
                inc(&self.stats.fused);
            }
        }
    }
}
