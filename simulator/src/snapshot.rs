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
}

/// An RGB8 image to draw on.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self { width, height, pixels: fill.iter().copied().cycle().take(width * height * 3).collect() }
    }

    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3], thickness: i64) {
        let (x0, y0, x1, y1) = (x0.round() as i64, y0.round() as i64, x1.round() as i64 - 1, y1.round() as i64 - 1);
        for t in 0..thickness {
            for x in x0..=x1 {
                self.set(x, y0 + t, c);
                self.set(x, y1 - t, c);
            }
            for y in y0..=y1 {
                self.set(x0 + t, y, c);
                self.set(x1 - t, y, c);
            }
        }
    }

    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.set((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64, c);
        }
    }

    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: [u8; 3]) {
        let ri = r.ceil() as i64;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if (dx * dx + dy * dy) as f64 <= r * r {
                    self.set(cx.round() as i64 + dx, cy.round() as i64 + dy, c);
                }
            }
        }
    }

    /// Draws upper-case text with a 3×5 pixel font, scaled.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            let bits = glyph(ch);
            for row in 0..5 {
                for col in 0..3 {
                    if bits >> (14 - (row * 3 + col)) & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.set(x + (k as i64 * 4 + col) * scale + sx, y + row * scale + sy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn write_png(&self, path: &Path) -> Result<(), SnapshotError> {
        let err = |message: String| SnapshotError::Write { path: path.display().to_string(), message };
        let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
        w.write_image_data(&self.pixels).map_err(|e| err(e.to_string()))
    }
}

fn glyph(c: char) -> u16 {
    match c.to_ascii_uppercase() {
        'A' => 0b010_101_111_101_101,
        'B' => 0b110_101_110_101_110,
        'C' => 0b011_100_100_100_011,
        'D' => 0b110_101_101_101_110,
        'E' => 0b111_100_110_100_111,
        'H' => 0b101_101_111_101_101,
        'I' => 0b111_010_010_010_111,
        'M' => 0b101_111_111_101_101,
        'N' => 0b110_101_101_101_101,
        'P' => 0b110_101_110_100_100,
        'R' => 0b110_101_110_101_101,
        'S' => 0b011_100_010_001_110,
        'T' => 0b111_010_010_010_010,
        'V' => 0b101_101_101_101_010,
        'Y' => 0b101_101_010_010_010,
        '0' => 0b111_101_101_101_111,
        '1' => 0b010_110_010_010_111,
        '2' => 0b110_001_010_100_111,
        '3' => 0b110_001_010_001_110,
        '4' => 0b101_101_111_001_001,
        '5' => 0b111_100_110_001_110,
        '6' => 0b011_100_111_101_111,
        '7' => 0b111_001_010_010_010,
        '8' => 0b111_101_111_101_111,
        '9' => 0b111_101_111_001_110,
        'F' => 0b111_100_110_100_100,
        'G' => 0b011_100_101_101_011,
        'J' => 0b001_001_001_101_010,
        'K' => 0b101_101_110_101_101,
        'L' => 0b100_100_100_100_111,
        'O' => 0b010_101_101_101_010,
        'Q' => 0b010_101_101_110_011,
        'U' => 0b101_101_101_101_111,
        'W' => 0b101_101_111_111_101,
        'X' => 0b101_101_010_101_101,
        'Z' => 0b111_001_010_100_111,
        ':' => 0b000_010_000_010_000,
        '/' => 0b001_001_010_100_100,
        '(' => 0b010_100_100_100_010,
        ')' => 0b010_001_001_001_010,
        '.' => 0b000_000_000_000_010,
        '-' => 0b000_000_111_000_000,
        '+' => 0b000_010_111_010_000,
        '=' => 0b000_111_000_111_000,
        '%' => 0b101_001_010_100_101,
        '<' => 0b001_010_100_010_001,
        '>' => 0b100_010_001_010_100,
        ',' => 0b000_000_000_010_100,
        _ => 0,
    }
}

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
    for (x, y, z, intensity, _) in vigil_proto::unpack_points(&scan.points) {
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

#[cfg(test)]
mod tests {
    use super::glyph;

    /// Every character the plots print has a glyph, and no two glyphs look alike (a
    /// missing one draws as a blank, as '+' did on the latency histogram).
    #[test]
    fn the_pixel_font_covers_what_the_plots_print_and_tells_glyphs_apart() {
        let chars: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/().-+=%<>,".chars().collect();
        for &c in &chars {
            assert_ne!(glyph(c), 0, "no glyph for {c:?}");
            assert_eq!(glyph(c), glyph(c.to_ascii_lowercase()), "{c:?} differs by case");
        }
        for (i, &a) in chars.iter().enumerate() {
            for &b in &chars[i + 1..] {
                assert_ne!(glyph(a), glyph(b), "{a:?} and {b:?} share a glyph");
            }
        }
        assert_eq!(glyph(' '), 0);
    }
}
