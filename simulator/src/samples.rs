//! Labelled camera frames for training and evaluating the obstacle recogniser.
//!
//! Each sample is a fresh random scene (road layout, light, noise, distractors that may
//! partly occlude) rendered by the same camera model the simulator publishes with, and a
//! box around one target: an obstacle of the requested class seen from a random side at
//! a random distance, or — for `None` — a region where a false detection would point
//! (road texture, lane marks, kerb, grass, a radar ghost's footprint) that overlaps no
//! obstacle.

use vigil_core::{ObstacleClass, derive_seed};

use crate::camera::CameraModel;
use crate::rng::Rng;
use crate::scenario::{ClassName, EgoSpec, Environment, Jitter, ObstacleSpec, Road, Scenario};
use crate::sensors::{CameraConfig, SensorSuite};
use crate::world::World;

/// One rendered frame and the labelled box of interest.
#[derive(Debug, Clone)]
pub struct LabelledFrame {
    pub class: ObstacleClass,
    pub width: u32,
    pub height: u32,
    /// RGB8, row-major.
    pub pixels: Vec<u8>,
    /// x_min, y_min, x_max, y_max in pixels.
    pub bbox: [f32; 4],
    /// Distance to the target, metres.
    pub distance: f64,
    pub occlusion: f32,
}

/// Smallest target box height kept, pixels (farther objects are left to the tracker).
pub const MIN_BOX_HEIGHT: f32 = 14.0;

fn class_name(c: ObstacleClass) -> Option<ClassName> {
    Some(match c {
        ObstacleClass::Pedestrian => ClassName::Pedestrian,
        ObstacleClass::Cyclist => ClassName::Cyclist,
        ObstacleClass::Vehicle => ClassName::Vehicle,
        ObstacleClass::Debris => ClassName::Debris,
        ObstacleClass::Animal => ClassName::Animal,
        ObstacleClass::None => return None,
    })
}

/// Renders labelled frames; reuse one per thread.
#[derive(Debug)]
pub struct SampleGenerator {
    camera: CameraModel,
    cfg: CameraConfig,
}

impl Default for SampleGenerator {
    fn default() -> Self {
        Self::new(&CameraConfig::default())
    }
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    inter / (area(a) + area(b) - inter).max(1e-6)
}

impl SampleGenerator {
    pub fn new(cfg: &CameraConfig) -> Self {
        Self { camera: CameraModel::new(cfg, 1), cfg: cfg.clone() }
    }

    fn random_obstacle(rng: &mut Rng, class: ClassName, x: f64, y: f64) -> ObstacleSpec {
        let heading = rng.pick(&[0.0, 90.0, 180.0, 270.0]) + rng.range(-25.0, 25.0);
        let moving = rng.chance(0.5) && class != ClassName::Debris;
        let (path, speed) = if moving {
            let h = f64::to_radians(heading);
            (vec![[x + 50.0 * h.cos(), y + 50.0 * h.sin()]], rng.range(0.5, 3.0))
        } else {
            (Vec::new(), 0.0)
        };
        ObstacleSpec {
            class,
            start: [x, y],
            path,
            speed_mps: speed,
            start_time_s: 0.0,
            heading_deg: heading,
            jitter: Jitter::default(),
        }
    }

    fn scene(&self, rng: &mut Rng, target: Option<(ClassName, f64, f64)>) -> Scenario {
        let lanes = 1 + rng.below(3) as u32;
        let road = Road {
            lanes,
            lane_width_m: rng.range(3.0, 3.8),
            ego_lane: rng.below(lanes as usize) as u32,
            shoulder_m: rng.range(1.0, 5.0),
        };
        let mut obstacles = Vec::new();
        if let Some((class, x, y)) = target {
            obstacles.push(Self::random_obstacle(rng, class, x, y));
        }
        let all = [ClassName::Pedestrian, ClassName::Cyclist, ClassName::Vehicle, ClassName::Debris, ClassName::Animal];
        for _ in 0..rng.below(3) {
            let x = rng.range(5.0, 70.0);
            let y = rng.range(-0.5, 0.5) * x;
            let class = rng.pick(&all);
            obstacles.push(Self::random_obstacle(rng, class, x, y));
        }
        Scenario {
            name: "sample".into(),
            description: String::new(),
            duration_s: 1.0,
            road,
            ego: EgoSpec { speed_mps: 0.0, ..EgoSpec::default() },
            environment: Environment { light: [0.5, 1.2], camera_noise: [1.5, 9.0], ..Environment::default() },
            obstacles,
            sensors: SensorSuite { camera: self.cfg.clone(), ..SensorSuite::default() },
        }
    }

    /// A labelled frame for `class`, reproducible from `seed`.
    pub fn sample(&mut self, class: ObstacleClass, seed: u64) -> LabelledFrame {
        for attempt in 0..64u64 {
            let mut rng = Rng::new(derive_seed(seed, attempt));
            if let Some(s) = self.try_sample(class, &mut rng, seed.wrapping_add(attempt)) {
                return s;
            }
        }
        // Practically unreachable; a None sample is always constructible from the sky.
        self.try_sample(ObstacleClass::None, &mut Rng::new(seed), seed).unwrap_or_else(|| LabelledFrame {
            class: ObstacleClass::None,
            width: self.cfg.width,
            height: self.cfg.height,
            pixels: vec![0; (self.cfg.width * self.cfg.height * 3) as usize],
            bbox: [0.0, 0.0, 16.0, 16.0],
            distance: 0.0,
            occlusion: 0.0,
        })
    }

    fn try_sample(&mut self, class: ObstacleClass, rng: &mut Rng, frame: u64) -> Option<LabelledFrame> {
        let half_fov = (self.cfg.hfov_deg / 2.0).to_radians();
        let target = class_name(class).map(|c| {
            let x = rng.range(6.0, 42.0);
            let y = rng.range(-0.85, 0.85) * x * half_fov.tan();
            (c, x, y)
        });
        let scenario = self.scene(rng, target);
        let world = World::new(&scenario, &mut Rng::new(rng.next_u64()));
        let mut pixels = Vec::new();
        let projections = self.camera.render(&world, frame, &mut pixels);
        let (w, h) = (self.cfg.width, self.cfg.height);
        let (bbox, distance, occlusion) = match target {
            Some(_) => {
                let p = projections.iter().find(|p| p.object_id == 1)?;
                let o = &world.obstacles[0];
                if p.bbox[3] - p.bbox[1] < MIN_BOX_HEIGHT || p.occlusion > 0.45 {
                    return None;
                }
                (p.bbox, world.to_ego(o.x, o.y).0, p.occlusion)
            }
            None => {
                // Where a false detection would point: a ground footprint of object size.
                let x = rng.range(6.0, 60.0);
                let y = rng.range(-0.9, 0.9) * x * half_fov.tan();
                let (bw, bh) = (rng.range(0.4, 2.2), rng.range(0.3, 1.9));
                let f = self.camera.fx;
                let (cx, cy, cam_h) = (self.camera.cx, self.camera.cy, self.cfg.mount[2]);
                let d = x - self.cfg.mount[0];
                let u0 = cx - f * (y + bw / 2.0) / d;
                let u1 = cx - f * (y - bw / 2.0) / d;
                let v1 = cy + f * cam_h / d;
                let v0 = cy - f * (bh - cam_h) / d;
                let bbox = [u0.max(0.0) as f32, v0.max(0.0) as f32, u1.min(w as f64) as f32, v1.min(h as f64) as f32];
                if bbox[2] - bbox[0] < 6.0 || bbox[3] - bbox[1] < MIN_BOX_HEIGHT * 0.7 {
                    return None;
                }
                if projections.iter().any(|p| iou(&p.bbox, &bbox) > 0.05) {
                    return None;
                }
                (bbox, x, 0.0)
            }
        };
        Some(LabelledFrame { class, width: w, height: h, pixels, bbox, distance, occlusion })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_reproducible_and_labelled() {
        let mut g = SampleGenerator::default();
        for (i, class) in ObstacleClass::ALL.into_iter().enumerate() {
            let a = g.sample(class, 100 + i as u64);
            let b = g.sample(class, 100 + i as u64);
            assert_eq!(a.class, class);
            assert_eq!(a.pixels, b.pixels);
            assert_eq!(a.bbox, b.bbox);
            assert!(a.bbox[3] - a.bbox[1] >= MIN_BOX_HEIGHT * 0.7, "{class}: {:?}", a.bbox);
            assert!(a.bbox[0] < a.bbox[2] && a.bbox[2] <= a.width as f32);
        }
    }
}
