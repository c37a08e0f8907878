//! Pictures for people: camera frames with ground-truth boxes, and a bird's-eye view of
//! a lidar sweep with radar detections and obstacle boxes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vigil_proto::v1::{self, envelope::Payload};

use crate::sim::{SimMessage, Stream};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot write snapshot {path}: {message}")]
    Write { path: String, message: String },
    #[error(transparent)]
    Plot(#[from] vigil_plot::PlotError),
}

pub use vigil_plot::Canvas;

/// Annotation colour and label per class (annotation only: the rendered scene has no
/// colour code).
pub fn class_style(class: i32) -> ([u8; 3], &'static str) {
    match v1::ObstacleClass::try_from(class).unwrap_or(v1::ObstacleClass::Unspecified) {
        v1::ObstacleClass::Pedestrian => ([255, 60, 60], "PED"),
        v1::ObstacleClass::Cyclist => ([255, 200, 0], "CYC"),
        v1::ObstacleClass::Vehicle => ([0, 200, 255], "VEH"),
        v1::ObstacleClass::Debris => ([255, 120, 0], "DEB"),
        v1::ObstacleClass::Animal => ([200, 80, 255], "ANI"),
        _ => ([255, 255, 255], "?"),
    }
}

/// Collects vehicle 0's frames during a run and writes the pictures at the end.
#[derive(Debug, Default)]
pub struct Snapshotter {
    camera_every: u64,
    cameras: Vec<(v1::CameraFrame, u64)>,
    lidar: Option<(v1::LidarScan, u64, i64)>,
    lidar_target: u64,
    radar: Option<v1::RadarScan>,
    truths: HashMap<(String, u64), v1::GroundTruth>,
}

impl Snapshotter {
    /// Keeps about `count` camera frames spread over `camera_frames`, and the lidar sweep
    /// nearest the middle of `lidar_frames`.
    pub fn new(count: u64, camera_frames: u64, lidar_frames: u64) -> Self {
        Self {
            camera_every: (camera_frames / count.max(1)).max(1),
            lidar_target: lidar_frames / 2,
            ..Default::default()
        }
    }

    pub fn observe(&mut self, msg: &SimMessage) {
        let seq = msg.sequence();
        match &msg.envelope.payload {
            Some(Payload::Camera(c)) if (seq + self.camera_every / 2).is_multiple_of(self.camera_every) => {
                self.cameras.push((c.clone(), seq))
            }
            Some(Payload::Lidar(l)) if seq == self.lidar_target => self.lidar = Some((l.clone(), seq, msg.capture_ns)),
            Some(Payload::Radar(r)) if self.lidar.as_ref().is_some_and(|(_, _, t)| msg.capture_ns == *t) => {
                self.radar = Some(r.clone())
            }
            Some(Payload::GroundTruth(gt)) => {
                let key = (gt.frame_sensor_id.clone(), gt.frame_sequence);
                let wanted = (key.0.starts_with("camera") && self.cameras.last().is_some_and(|c| c.1 == key.1))
                    || (key.0.starts_with("lidar") && key.1 == self.lidar_target);
                if wanted && msg.kind == Stream::GroundTruth {
                    self.truths.insert(key, gt.clone());
                }
            }
            _ => {}
        }
    }

    /// Writes `camera-NNNN.png` files and `bev.png` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SnapshotError::Write { path: dir.display().to_string(), message: e.to_string() })?;
        let mut written = Vec::new();
        for (frame, seq) in &self.cameras {
            let Some(v1::camera_frame::Pixels::Data(data)) = &frame.pixels else { continue };
            let mut canvas =
                Canvas { width: frame.width as usize, height: frame.height as usize, pixels: data.clone() };
            let gt = self.truths.iter().find(|((s, q), _)| s.starts_with("camera") && q == seq).map(|(_, g)| g);
            for o in gt.map(|g| g.objects.as_slice()).unwrap_or(&[]) {
                if let Some(b) = &o.camera_box {
                    let (c, label) = class_style(o.class);
                    canvas.rect(b.x_min as f64, b.y_min as f64, b.x_max as f64, b.y_max as f64, c, 2);
                    let dist = o.r#box.as_ref().map_or(0.0, |b| b.x);
                    canvas.text(b.x_min as i64, b.y_min as i64 - 13, &format!("{label} {dist:.0}M"), c, 2);
                }
            }
            let path = dir.join(format!("camera-{seq:04}.png"));
            canvas.write_png(&path)?;
            written.push(path);
        }
        if let Some((scan, seq, _)) = &self.lidar {
            let gt = self
                .truths
                .get(&("lidar/top".to_string(), *seq))
                .or_else(|| self.truths.iter().find(|((s, q), _)| s.starts_with("lidar") && q == seq).map(|(_, g)| g));
            let canvas = bird_eye(scan, self.radar.as_ref(), gt);
            let path = dir.join("bev.png");
            canvas.write_png(&path)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// A top-down view, ego at the bottom centre, 0.1 m per pixel, 80 m ahead.
pub fn bird_eye(scan: &v1::LidarScan, radar: Option<&v1::RadarScan>, gt: Option<&v1::GroundTruth>) -> Canvas {
    let (w, h) = (600usize, 900usize);
    let scale = 10.0; // px per metre
    let mut c = Canvas::new(w, h, [12, 12, 16]);
    let to_px = |x: f64, y: f64| (w as f64 / 2.0 - y * scale, h as f64 - 60.0 - x * scale);
    // Range rings every 10 m.
    for r in (10..=80).step_by(10) {
        for k in 0..720 {
            let a = k as f64 / 720.0 * std::f64::consts::TAU;
            let (px, py) = to_px(r as f64 * a.cos(), r as f64 * a.sin());
            c.set(px as i64, py as i64, [40, 40, 50]);
        }
        let (px, py) = to_px(r as f64, 0.0);
        c.text(px as i64 + 4, py as i64 - 6, &format!("{r}"), [90, 90, 110], 2);
    }
    let (lx, ly, lz) = scan.sensor_pose.as_ref().map_or((0.0, 0.0, 0.0), |p| (p.x, p.y, p.z));
    let raw = vigil_proto::points::raw_points(scan).unwrap_or_default();
    for (x, y, z, intensity, _) in vigil_proto::unpack_points(&raw) {
        let (x, y, z) = (x as f64 + lx, y as f64 + ly, z as f64 + lz);
        let above = z > 0.15;
        let col = if above {
            [80, 255, 120]
        } else {
            let g = (60.0 + 400.0 * intensity) as u8;
            [g, g, g]
        };
        let (px, py) = to_px(x, y);
        c.set(px as i64, py as i64, col);
    }
    if let Some(gt) = gt {
        for o in &gt.objects {
            let Some(b) = &o.r#box else { continue };
            let (col, label) = class_style(o.class);
            let (s, co) = b.yaw.sin_cos();
            let corners = [(1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)].map(|(a, d)| {
                let (dx, dy) = (a * b.length / 2.0, d * b.width / 2.0);
                to_px(b.x + co * dx - s * dy, b.y + s * dx + co * dy)
            });
            for i in 0..4 {
                let (p, q) = (corners[i], corners[(i + 1) % 4]);
                c.line(p.0, p.1, q.0, q.1, col);
            }
            let (px, py) = to_px(b.x, b.y);
            c.text(px as i64 + 12, py as i64 - 5, label, col, 2);
        }
    }
    if let Some(r) = radar {
        let (rx, ry) = r.sensor_pose.as_ref().map_or((0.0, 0.0), |p| (p.x, p.y));
        for d in &r.detections {
            let (x, y) = (rx + (d.range * d.azimuth.cos()) as f64, ry + (d.range * d.azimuth.sin()) as f64);
            let (px, py) = to_px(x, y);
            c.disc(px, py, 4.0, [255, 40, 200]);
            // Range-rate as a short tick toward the sensor (closing) or away.
            let len = (d.range_rate as f64).clamp(-20.0, 20.0) * 1.5;
            let (ux, uy) = (d.azimuth.cos() as f64, d.azimuth.sin() as f64);
            let (qx, qy) = to_px(x + ux * len / scale, y + uy * len / scale);
            c.line(px, py, qx, qy, [255, 40, 200]);
        }
    }
    let (ex, ey) = to_px(0.0, 0.0);
    c.rect(ex - 9.5, ey - 23.0, ex + 9.5, ey + 23.0, [255, 255, 255], 2);
    c.text(10, 10, "LIDAR   RADAR   BOXES", [200, 200, 200], 2);
    c.rect(60.0, 10.0, 70.0, 20.0, [80, 255, 120], 5);
    c.disc(140.0, 15.0, 5.0, [255, 40, 200]);
    c
}
