//! The forward radar: one or more detections per object in view, range-rate from the
//! relative velocity along the line of sight, RCS by class, plus stationary clutter
//! (guard rails, road furniture) and false alarms.

use vigil_core::ObstacleClass;
use vigil_proto::v1::RadarDetection;

use crate::rng::Rng;
use crate::sensors::RadarConfig;
use crate::world::World;

#[derive(Debug, Clone)]
pub struct RadarModel {
    pub cfg: RadarConfig,
}

/// Mean radar cross-section by class, dBsm.
pub fn rcs_db(class: ObstacleClass) -> f32 {
    match class {
        ObstacleClass::Vehicle => 10.0,
        ObstacleClass::Cyclist => 2.0,
        ObstacleClass::Pedestrian => -5.0,
        ObstacleClass::Animal => -3.0,
        ObstacleClass::Debris => -8.0,
        ObstacleClass::None => -15.0,
    }
}

impl RadarModel {
    pub fn new(cfg: &RadarConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    pub fn scan(&self, world: &World, clutter_mean: f64, rng: &mut Rng) -> Vec<RadarDetection> {
        let [mx, my, mz] = self.cfg.mount;
        let half_fov = (self.cfg.hfov_deg / 2.0).to_radians();
        let ego_v = world.ego.speed;
        let (sy, cy) = world.ego.yaw.sin_cos();
        let mut out = Vec::new();
        for o in &world.obstacles {
            let (x, y, _) = world.obstacle_in_ego(o);
            let (x, y) = (x - mx, y - my);
            let r = x.hypot(y);
            let az = y.atan2(x);
            if r > self.cfg.range_m || az.abs() > half_fov || x <= 0.5 {
                continue;
            }
            if rng.f64() < self.cfg.miss_probability {
                continue;
            }
            // Relative velocity in the ego frame.
            let (ovx, ovy) = (cy * o.vx + sy * o.vy, -sy * o.vx + cy * o.vy);
            let (rvx, rvy) = (ovx - ego_v, ovy);
            let n = match o.class {
                ObstacleClass::Vehicle => 1 + rng.below(3),
                ObstacleClass::Cyclist => 1 + rng.below(2),
                _ => 1,
            };
            for _ in 0..n {
                // Scatter points over the visible face.
                let px = x - o.length.min(o.width) * 0.5 * rng.f64() * 0.5;
                let py = y + (rng.f64() - 0.5) * o.width.max(0.3);
                let pr = px.hypot(py);
                let paz = py.atan2(px);
                let los = (px / pr, py / pr);
                let rr = rvx * los.0 + rvy * los.1;
                out.push(RadarDetection {
                    range: (pr + rng.normal() * self.cfg.range_noise_m) as f32,
                    azimuth: (paz + rng.normal() * self.cfg.azimuth_noise_deg.to_radians()) as f32,
                    elevation: ((o.height * 0.5 - mz).atan2(pr) + rng.normal() * 0.01) as f32,
                    range_rate: (rr + rng.normal() * self.cfg.range_rate_noise_mps) as f32,
                    rcs: rcs_db(o.class) + (rng.normal() * 2.5) as f32,
                });
            }
        }
        // Clutter: stationary returns (closing at ego speed along the line of sight)
        // and a few false alarms with random Doppler.
        let mut clutter = rng.poisson(clutter_mean);
        if world.guard_rails {
            clutter += 2 + rng.below(4);
        }
        for _ in 0..clutter {
            let r = rng.range(5.0, self.cfg.range_m);
            let az = rng.range(-half_fov, half_fov);
            let stationary = rng.chance(0.8);
            let rr = if stationary { -ego_v * az.cos() } else { rng.range(-30.0, 10.0) };
            out.push(RadarDetection {
                range: r as f32,
                azimuth: az as f32,
                elevation: (rng.normal() * 0.05) as f32,
                range_rate: (rr + rng.normal() * self.cfg.range_rate_noise_mps) as f32,
                rcs: (rng.range(-20.0, 5.0)) as f32,
            });
        }
        out
    }
}
