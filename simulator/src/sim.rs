//! One simulated vehicle: its world, its sensor suite and the message streams it emits,
//! and the fleet runner that simulates K vehicles as fast as the machine allows.

use std::sync::Arc;

use vigil_core::{Digest, Nanos, VehicleId, derive_seed};
use vigil_proto::encode_envelope;
use vigil_proto::v1::{self, envelope::Payload};
pub use vigil_proto::wire::Stream;
use vigil_proto::wire::header;

use crate::camera::{CameraModel, Projection};
use crate::lidar::LidarModel;
use crate::radar::RadarModel;
use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::sensors::Mount;
use crate::world::World;

/// A message as a hardware driver would publish it.
#[derive(Debug, Clone)]
pub struct SimMessage {
    pub kind: Stream,
    /// Zenoh key expression: `vigil/<vehicle>/sensor/<kind>/<name>` (ground truth:
    /// `vigil/<vehicle>/groundtruth`).
    pub key: Arc<str>,
    pub capture_ns: Nanos,
    pub envelope: v1::Envelope,
}

impl SimMessage {
    pub fn encode(&self) -> Vec<u8> {
        encode_envelope(&self.envelope)
    }
    pub fn sequence(&self) -> u64 {
        self.envelope.header.as_ref().map_or(0, |h| h.sequence)
    }
}

#[derive(Debug, Clone)]
struct SensorStream {
    kind: Stream,
    sensor_id: String,
    key: Arc<str>,
    rate_hz: f64,
    total: u64,
    next: u64,
    /// Modelled driver latency from capture to publish.
    latency_ns: Nanos,
}

impl SensorStream {
    fn time_of(&self, k: u64) -> Nanos {
        (k as f64 * 1e9 / self.rate_hz).round() as Nanos
    }
    fn next_time(&self) -> Option<Nanos> {
        (self.next < self.total).then(|| self.time_of(self.next))
    }
}

/// How many frames a sensor at `rate_hz` captures in `[0, duration)`.
pub fn frame_count(rate_hz: f64, duration_ns: Nanos) -> u64 {
    let n = duration_ns as f64 * rate_hz / 1e9;
    if (n - n.round()).abs() < 1e-6 { n.round() as u64 } else { n.ceil() as u64 }
}

fn pose(m: Mount) -> v1::Pose {
    v1::Pose { x: m[0], y: m[1], z: m[2], roll: 0.0, pitch: 0.0, yaw: 0.0 }
}

/// One vehicle of the simulation.
#[derive(Debug)]
pub struct VehicleSim {
    pub vehicle: VehicleId,
    pub world: World,
    scenario: Scenario,
    lidar: Option<(LidarModel, u64)>,
    render_threads: usize,
    camera: Option<CameraModel>,
    radar: Option<(RadarModel, Rng)>,
    streams: Vec<SensorStream>,
    gt_key: Arc<str>,
    gt_seq: u64,
    start_ns: Nanos,
    pixels: Vec<u8>,
}

impl VehicleSim {
    /// Vehicle `index` of a fleet whose base seed is `seed`.
    pub fn new(scenario: &Scenario, index: usize, seed: u64, duration_ns: Nanos) -> Self {
        let vehicle = VehicleId::simulated(index);
        let vseed = derive_seed(seed, index as u64);
        let mut rng = Rng::new(vseed);
        let world = World::new(scenario, &mut rng);
        let s = &scenario.sensors;
        let mut streams = Vec::new();
        let mut add = |kind, name: &str, rate_hz: f64, latency_ns| {
            streams.push(SensorStream {
                kind,
                sensor_id: kind.sensor_id(name),
                key: kind.key(vehicle.as_str(), &kind.sensor_id(name)).into(),
                rate_hz,
                total: frame_count(rate_hz, duration_ns),
                next: 0,
                latency_ns,
            })
        };
        if s.lidar.enabled {
            add(Stream::Lidar, &s.lidar.name, s.lidar.rate_hz, 8_000_000);
        }
        if s.camera.enabled {
            add(Stream::Camera, &s.camera.name, s.camera.rate_hz, 12_000_000);
        }
        if s.radar.enabled {
            add(Stream::Radar, &s.radar.name, s.radar.rate_hz, 4_000_000);
        }
        Self {
            gt_key: Stream::GroundTruth.key(vehicle.as_str(), "").into(),
            vehicle,
            world,
            scenario: scenario.clone(),
            lidar: s.lidar.enabled.then(|| (LidarModel::new(&s.lidar), derive_seed(vseed, 101))),
            render_threads: 1,
            camera: s.camera.enabled.then(|| CameraModel::new(&s.camera, derive_seed(vseed, 102))),
            radar: s.radar.enabled.then(|| (RadarModel::new(&s.radar), Rng::new(derive_seed(vseed, 103)))),
            streams,
            gt_seq: 0,
            start_ns: scenario.environment.start_time_ns,
            pixels: Vec::new(),
        }
    }

    /// Lets the camera use `n` threads per frame (for runs with fewer vehicles than cores).
    pub fn set_render_threads(&mut self, n: usize) {
        self.render_threads = n.max(1);
        if let Some(c) = self.camera.as_mut() {
            c.threads = n.max(1);
        }
    }

    /// Capture time (vehicle clock) of the first frame.
    pub fn start_ns(&self) -> Nanos {
        self.start_ns
    }

    /// Simulation time of the next capture, if any remain.
    pub fn next_event_ns(&self) -> Option<Nanos> {
        self.streams.iter().filter_map(SensorStream::next_time).min()
    }

    fn header(
        &self,
        sensor_id: &str,
        sequence: u64,
        capture_ns: Nanos,
        latency_ns: Nanos,
        payload: &Payload,
    ) -> v1::Header {
        v1::Header {
            sequence,
            capture_time_ns: capture_ns,
            publish_time_ns: capture_ns + latency_ns,
            correlation_id: format!("{}/{}/{}", self.vehicle, sensor_id, sequence),
            ..header(self.vehicle.as_str(), sensor_id, payload)
        }
    }

    /// Advances to the next capture time and appends every message captured then
    /// (each sensor frame followed by its ground truth). Returns that time, or `None`
    /// when the run is over.
    pub fn step(&mut self, out: &mut Vec<SimMessage>) -> Option<Nanos> {
        let t = self.next_event_ns()?;
        self.world.advance_to(t);
        let capture_ns = self.start_ns + t;
        for i in 0..self.streams.len() {
            if self.streams[i].next_time() != Some(t) {
                continue;
            }
            let seq = self.streams[i].next;
            self.streams[i].next += 1;
            let (kind, latency) = (self.streams[i].kind, self.streams[i].latency_ns);
            let sensor_id = self.streams[i].sensor_id.clone();
            let (payload, projections) = self.capture(kind, seq);
            let header = self.header(&sensor_id, seq, capture_ns, latency, &payload);
            out.push(SimMessage {
                kind,
                key: self.streams[i].key.clone(),
                capture_ns,
                envelope: v1::Envelope { header: Some(header), payload: Some(payload) },
            });
            let gt = Payload::GroundTruth(self.ground_truth(&sensor_id, seq, &projections));
            let gt_header = self.header("groundtruth", self.gt_seq, capture_ns, latency, &gt);
            self.gt_seq += 1;
            out.push(SimMessage {
                kind: Stream::GroundTruth,
                key: self.gt_key.clone(),
                capture_ns,
                envelope: v1::Envelope { header: Some(gt_header), payload: Some(gt) },
            });
        }
        Some(t)
    }

    fn capture(&mut self, kind: Stream, seq: u64) -> (Payload, Vec<Projection>) {
        let s = &self.scenario.sensors;
        match kind {
            Stream::Lidar => {
                let (model, seed) = self.lidar.as_ref().expect("lidar stream implies lidar model");
                let (points, point_count) = model.sweep(&self.world, derive_seed(*seed, seq), self.render_threads);
                let scan = v1::LidarScan {
                    sensor_pose: Some(pose(s.lidar.mount)),
                    beams: s.lidar.beams,
                    columns: s.lidar.columns,
                    point_count,
                    points,
                    encoding: v1::PointEncoding::Xyzir as i32,
                };
                (Payload::Lidar(scan), Vec::new())
            }
            Stream::Camera => {
                let cam = self.camera.as_mut().expect("camera stream implies camera model");
                let projections = cam.render(&self.world, seq, &mut self.pixels);
                let frame = v1::CameraFrame {
                    width: s.camera.width,
                    height: s.camera.height,
                    encoding: v1::PixelEncoding::Rgb8 as i32,
                    intrinsics: Some(v1::CameraIntrinsics { fx: cam.fx, fy: cam.fy, cx: cam.cx, cy: cam.cy }),
                    sensor_pose: Some(pose(s.camera.mount)),
                    pixels: Some(v1::camera_frame::Pixels::Data(std::mem::take(&mut self.pixels))),
                };
                (Payload::Camera(frame), projections)
            }
            Stream::Radar => {
                let (model, rng) = self.radar.as_mut().expect("radar stream implies radar model");
                let detections = model.scan(&self.world, self.scenario.environment.radar_clutter_per_scan, rng);
                (Payload::Radar(v1::RadarScan { sensor_pose: Some(pose(s.radar.mount)), detections }), Vec::new())
            }
            Stream::GroundTruth => unreachable!("ground truth is not a capture stream"),
        }
    }

    fn ground_truth(&self, sensor_id: &str, seq: u64, projections: &[Projection]) -> v1::GroundTruth {
        let w = &self.world;
        let (sy, cy) = w.ego.yaw.sin_cos();
        let ego_vx = w.ego.speed * w.ego.yaw.cos();
        let ego_vy = w.ego.speed * w.ego.yaw.sin();
        let objects = w
            .obstacles
            .iter()
            .map(|o| {
                let (x, y, yaw) = w.obstacle_in_ego(o);
                let (rvx, rvy) = (o.vx - ego_vx, o.vy - ego_vy);
                let p = projections.iter().find(|p| p.object_id == o.id);
                v1::GroundTruthObject {
                    object_id: o.id,
                    class: class_to_proto(o.class) as i32,
                    r#box: Some(v1::Box3d {
                        x,
                        y,
                        z: o.height / 2.0,
                        length: o.length,
                        width: o.width,
                        height: o.height,
                        yaw,
                    }),
                    vx: cy * rvx + sy * rvy,
                    vy: -sy * rvx + cy * rvy,
                    camera_box: p.map(|p| v1::Box2d {
                        x_min: p.bbox[0],
                        y_min: p.bbox[1],
                        x_max: p.bbox[2],
                        y_max: p.bbox[3],
                    }),
                    occlusion: p.map_or(1.0, |p| p.occlusion),
                }
            })
            .collect();
        v1::GroundTruth {
            frame_sensor_id: sensor_id.to_string(),
            frame_sequence: seq,
            ego: Some(v1::EgoState {
                x: w.ego.x,
                y: w.ego.y,
                speed: w.ego.speed,
                acceleration: w.ego.accel,
                yaw: w.ego.yaw,
            }),
            objects,
        }
    }
}

pub use vigil_proto::class_to_proto;

/// Counts from simulating one or more vehicles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub lidar_frames: u64,
    pub camera_frames: u64,
    pub radar_frames: u64,
    pub ground_truth: u64,
    pub lidar_points: u64,
    pub bytes: u64,
}

impl SimStats {
    fn add(&mut self, o: &SimStats) {
        self.lidar_frames += o.lidar_frames;
        self.camera_frames += o.camera_frames;
        self.radar_frames += o.radar_frames;
        self.ground_truth += o.ground_truth;
        self.lidar_points += o.lidar_points;
        self.bytes += o.bytes;
    }

    /// Records one message.
    pub fn count(&mut self, msg: &SimMessage, encoded_len: usize) {
        self.bytes += encoded_len as u64;
        match (&msg.kind, &msg.envelope.payload) {
            (Stream::Lidar, Some(Payload::Lidar(l))) => {
                self.lidar_frames += 1;
                self.lidar_points += l.point_count as u64;
            }
            (Stream::Camera, _) => self.camera_frames += 1,
            (Stream::Radar, _) => self.radar_frames += 1,
            _ => self.ground_truth += 1,
        }
    }
}

/// Result of a fleet run.
#[derive(Debug, Clone)]
pub struct FleetRun {
    pub stats: SimStats,
    /// Digest over every generated message's bytes, vehicle by vehicle, in order.
    pub digest: String,
}

/// Simulates `vehicles` vehicles to the end as fast as possible, spread over `threads`
/// threads. `observe` sees every message with its vehicle index and encoded bytes
/// (snapshots, recording); with one thread it sees them in vehicle order. The digest
/// does not depend on the thread count.
pub fn run_fleet(
    scenario: &Scenario,
    seed: u64,
    duration_ns: Nanos,
    vehicles: usize,
    threads: usize,
    mut observe: impl FnMut(usize, &SimMessage, &[u8]) + Send,
) -> FleetRun {
    let render_threads = (threads / vehicles.max(1)).max(1);
    let threads = threads.clamp(1, vehicles.max(1));
    let mut results: Vec<(SimStats, String)> = vec![(SimStats::default(), String::new()); vehicles];
    let observe = std::sync::Mutex::new(&mut observe);
    std::thread::scope(|scope| {
        let chunks: Vec<Vec<(usize, &mut (SimStats, String))>> = {
            let mut c: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, r) in results.iter_mut().enumerate() {
                c[i % threads].push((i, r));
            }
            c
        };
        for chunk in chunks {
            let observe = &observe;
            scope.spawn(move || {
                for (index, slot) in chunk {
                    let mut sim = VehicleSim::new(scenario, index, seed, duration_ns);
                    sim.set_render_threads(render_threads);
                    let mut digest = Digest::new();
                    let mut stats = SimStats::default();
                    let mut batch = Vec::new();
                    while sim.step(&mut batch).is_some() {
                        for msg in batch.drain(..) {
                            let bytes = msg.encode();
                            digest.update(&bytes);
                            stats.count(&msg, bytes.len());
                            if let Ok(mut f) = observe.lock() {
                                (*f)(index, &msg, &bytes);
                            }
                        }
                    }
                    *slot = (stats, digest.hex());
                }
            });
        }
    });
    let mut total = SimStats::default();
    let mut digest = Digest::new();
    for (stats, d) in &results {
        total.add(stats);
        digest.update(d.as_bytes());
    }
    FleetRun { stats: total, digest: digest.hex() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_follow_rates() {
        assert_eq!(frame_count(10.0, 10_000_000_000), 100);
        assert_eq!(frame_count(30.0, 10_000_000_000), 300);
        assert_eq!(frame_count(20.0, 1_000_000_000), 20);
        assert_eq!(frame_count(10.0, 1_050_000_000), 11);
        assert_eq!(frame_count(10.0, 0), 0);
    }

    #[test]
    fn short_run_is_deterministic_and_seed_sensitive() {
        let s = Scenario::builtin("pedestrian-crossing").expect("built-in");
        let a = run_fleet(&s, 7, 300_000_000, 2, 2, |_, _, _| {});
        let b = run_fleet(&s, 7, 300_000_000, 2, 1, |_, _, _| {});
        let c = run_fleet(&s, 8, 300_000_000, 2, 2, |_, _, _| {});
        assert_eq!(a.digest, b.digest, "thread count must not change the bytes");
        assert_ne!(a.digest, c.digest);
        assert_eq!(a.stats.lidar_frames, 2 * 3);
        assert_eq!(a.stats.camera_frames, 2 * 6);
        assert_eq!(a.stats.radar_frames, 2 * 6);
        assert_eq!(a.stats.ground_truth, 2 * 15);
    }

    #[test]
    fn every_message_decodes_strictly_with_gapless_sequences() {
        let s = Scenario::builtin("urban-dense").expect("built-in");
        let mut sim = VehicleSim::new(&s, 0, 1, 500_000_000);
        let mut batch = Vec::new();
        let mut seqs: std::collections::HashMap<String, u64> = Default::default();
        while sim.step(&mut batch).is_some() {}
        assert!(!batch.is_empty());
        for m in &batch {
            let env = vigil_proto::decode_envelope(&m.encode()).expect("strict decode");
            let h = env.header.expect("header");
            let next = seqs.entry(h.sensor_id.clone()).or_insert(0);
            assert_eq!(h.sequence, *next, "{}", h.sensor_id);
            *next += 1;
        }
    }

    #[test]
    fn camera_ground_truth_boxes_cover_visible_obstacles() {
        let s = Scenario::builtin("stopped-vehicle").expect("built-in");
        let mut sim = VehicleSim::new(&s, 0, 3, 2_000_000_000);
        let mut batch = Vec::new();
        while sim.step(&mut batch).is_some() {}
        let mut boxed = 0;
        for m in batch.iter().filter(|m| m.kind == Stream::GroundTruth) {
            let Some(Payload::GroundTruth(gt)) = &m.envelope.payload else { continue };
            if !gt.frame_sensor_id.starts_with("camera") {
                assert!(gt.objects.iter().all(|o| o.camera_box.is_none()));
                continue;
            }
            for o in &gt.objects {
                if let (Some(b), Some(bx)) = (&o.camera_box, &o.r#box) {
                    assert!(b.x_min < b.x_max && b.y_min < b.y_max);
                    assert!(bx.x > 0.0, "a boxed object is in front of the camera");
                    boxed += 1;
                }
            }
        }
        assert!(boxed > 20, "expected the stopped car boxed in most frames, got {boxed}");
    }
}
