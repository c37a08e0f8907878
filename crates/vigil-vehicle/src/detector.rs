//! Radar proposes, lidar confirms, the camera is asked.
//!
//! Radar detections are grouped into objects (within `CLUSTER_M` of each other) in the
//! vehicle frame. A stopped car and a guard-rail reflection both close at ego speed, so
//! radar alone cannot tell an obstacle from clutter: a candidate counts only when the
//! lidar sweep holds at least `MIN_LIDAR_POINTS` above-ground points inside a gate
//! around it (`CONFIRM_ALONG_M` in range, `CONFIRM_ACROSS_M` across). Confirmed objects get a time to collision (range over
//! closing speed), a lateral offset from the ego path, a threat flag (in the corridor
//! and closing within the horizon) and their box in the camera image.

use vigil_proto::v1;

pub const CLUSTER_M: f64 = 1.5;
/// Lidar support gate around a radar object: along the range (radar scatters over the
/// body, lidar sees the near face) and across it.
pub const CONFIRM_ALONG_M: f64 = 3.0;
pub const CONFIRM_ACROSS_M: f64 = 1.2;
pub const MIN_LIDAR_POINTS: usize = 3;
/// Points this high above the ground count as an object (not road).
pub const MIN_POINT_HEIGHT_M: f64 = 0.25;
/// Half-width of the corridor checked for threats, metres.
pub const CORRIDOR_HALF_WIDTH_M: f64 = 2.2;
/// Objects closing within this many seconds are threats.
pub const TTC_HORIZON_S: f64 = 6.0;

/// An object both radar and lidar see.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Vehicle frame, metres.
    pub x: f64,
    pub y: f64,
    /// Closing speed along the line of sight, m/s (positive = closing).
    pub closing_speed: f64,
    /// Seconds, `f64::INFINITY` when not closing.
    pub time_to_collision_s: f64,
    pub lateral_offset_m: f64,
    /// Lidar points supporting it, and their extent (for the camera box).
    pub lidar_points: usize,
    pub width_m: f64,
    pub height_m: f64,
    pub threat: bool,
    /// The box in the camera image, when it projects into it.
    pub camera_box: Option<[f32; 4]>,
}

/// Camera geometry needed to project a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraGeometry {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub width: u32,
    pub height: u32,
    /// Mount in the vehicle frame.
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl CameraGeometry {
    pub fn from_frame(frame: &v1::CameraFrame) -> Option<Self> {
        let i = frame.intrinsics.as_ref()?;
        let p = frame.sensor_pose.unwrap_or_default();
        Some(Self {
            fx: i.fx,
            fy: i.fy,
            cx: i.cx,
            cy: i.cy,
            width: frame.width,
            height: frame.height,
            x: p.x,
            y: p.y,
            z: p.z,
        })
    }

    /// Image box of an upright object at (x, y) on the ground, `w` wide and `h` tall.
    pub fn project(&self, x: f64, y: f64, w: f64, h: f64) -> Option<[f32; 4]> {
        let d = x - self.x;
        if d < 1.0 {
            return None;
        }
        let y = y - self.y;
        let u0 = self.cx - self.fx * (y + w / 2.0) / d;
        let u1 = self.cx - self.fx * (y - w / 2.0) / d;
        let v0 = self.cy - self.fy * (h - self.z) / d;
        let v1 = self.cy + self.fy * self.z / d;
        let (wf, hf) = (self.width as f64, self.height as f64);
        let b = [u0.max(0.0), v0.max(0.0), u1.min(wf), v1.min(hf)];
        (b[2] - b[0] >= 2.0 && b[3] - b[1] >= 2.0).then(|| b.map(|v| v as f32))
    }
}

fn pose(p: &Option<v1::Pose>) -> (f64, f64, f64) {
    p.as_ref().map_or((0.0, 0.0, 0.0), |p| (p.x, p.y, p.z))
}

/// A cluster of radar detections in the vehicle frame: position and mean closing speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadarObject {
    pub x: f64,
    pub y: f64,
    /// m/s, positive = closing.
    pub closing: f64,
}

/// The radar scan's detections grouped into objects (greedy, [`CLUSTER_M`]).
pub fn radar_objects(radar: &v1::RadarScan) -> Vec<RadarObject> {
    let (rx, ry, _) = pose(&radar.sensor_pose);
    let mut dets: Vec<(f64, f64, f64)> = radar
        .detections
        .iter()
        .filter(|d| d.range.is_finite() && d.azimuth.is_finite() && d.range_rate.is_finite())
        .map(|d| {
            let (r, a) = (d.range as f64, d.azimuth as f64);
            (rx + r * a.cos(), ry + r * a.sin(), -(d.range_rate as f64))
        })
        .collect();
    dets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut clusters: Vec<Vec<(f64, f64, f64)>> = Vec::new();
    for d in dets {
        match clusters.iter_mut().find(|c| c.iter().any(|e| (e.0 - d.0).hypot(e.1 - d.1) < CLUSTER_M)) {
            Some(c) => c.push(d),
            None => clusters.push(vec![d]),
        }
    }
    clusters
        .into_iter()
        .map(|c| {
            let n = c.len() as f64;
            let (x, y, closing) = c.iter().fold((0.0, 0.0, 0.0), |a, e| (a.0 + e.0 / n, a.1 + e.1 / n, a.2 + e.2 / n));
            RadarObject { x, y, closing }
        })
        .collect()
}

/// Lidar points this close to the support join it (one body), metres.
pub const JOIN_M: f64 = 0.8;
/// How far across the support may grow from the radar object, metres.
const GROW_ACROSS_M: f64 = 3.0;

/// The lidar support of a radar object at (x, y): the points in its gate, grown by
/// neighbours to the whole body, so the extent does not depend on where the noisy radar
/// azimuth put the gate (a car cut in half by it jitters across by half its width).
fn grow(points: &[(f64, f64, f64)], x: f64, y: f64) -> Vec<(f64, f64, f64)> {
    let (mut support, mut rest): (Vec<_>, Vec<_>) = points
        .iter()
        .filter(|p| (p.0 - x).abs() < CONFIRM_ALONG_M + JOIN_M && (p.1 - y).abs() < GROW_ACROSS_M)
        .partition(|p| (p.0 - x).abs() < CONFIRM_ALONG_M && (p.1 - y).abs() < CONFIRM_ACROSS_M);
    if support.len() < MIN_LIDAR_POINTS {
        return support;
    }
    let mut next = 0;
    while next < support.len() && !rest.is_empty() {
        let q = support[next];
        let (near, far): (Vec<_>, Vec<_>) = rest.into_iter().partition(|p| (p.0 - q.0).hypot(p.1 - q.1) < JOIN_M);
        support.extend(near);
        rest = far;
        next += 1;
    }
    support
}

/// Fuses one radar scan's objects with the lidar sweep nearest in time.
pub fn detect(objects: &[RadarObject], lidar: &v1::LidarScan, camera: Option<&CameraGeometry>) -> Vec<Candidate> {
    // Above-ground lidar points in the vehicle frame.
    let (lx, ly, lz) = pose(&lidar.sensor_pose);
    let raw = match vigil_proto::points::raw_points(lidar) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(error = %e, "lidar sweep left out of fusion");
            return Vec::new();
        }
    };
    let points: Vec<(f64, f64, f64)> = vigil_proto::unpack_points(&raw)
        .map(|(x, y, z, _, _)| (x as f64 + lx, y as f64 + ly, z as f64 + lz))
        .filter(|p| p.2 > MIN_POINT_HEIGHT_M)
        .collect();
    let mut out = Vec::new();
    for &RadarObject { x, y, closing } in objects {
        let support = grow(&points, x, y);
        if support.len() < MIN_LIDAR_POINTS {
            continue;
        }
        let (ymin, ymax) = support.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
        let height = support.iter().fold(0f64, |a, p| a.max(p.2));
        // Centre on the lidar support (radar scatters over the visible face): along the
        // range its mean, the near face; across it the middle of its extent, since the
        // mean drifts toward the side facing the ego as a passing car shows more of it
        // (a false lateral speed toward the path).
        let x = support.iter().map(|p| p.0).sum::<f64>() / support.len() as f64;
        let y = (ymin + ymax) / 2.0;
        // Two radar clusters on one body grow to the same support: one object.
        if out.iter().any(|c: &Candidate| (c.x - x).abs() < 0.5 && (c.y - y).abs() < 0.5) {
            continue;
        }
        let ttc = if closing > 0.3 { (x.hypot(y) / closing).max(0.0) } else { f64::INFINITY };
        let width = (ymax - ymin).max(0.3);
        let threat = y.abs() < CORRIDOR_HALF_WIDTH_M + width / 2.0 && ttc < TTC_HORIZON_S && x > 0.0;
        let camera_box = camera.and_then(|g| g.project(x, y, width * 1.1 + 0.2, height * 1.1));
        out.push(Candidate {
            x,
            y,
            closing_speed: closing,
            time_to_collision_s: ttc,
            lateral_offset_m: y,
            lidar_points: support.len(),
            width_m: width,
            height_m: height,
            threat,
            camera_box,
        });
    }
    out
}
