//! The spinning lidar: rays cast against the ground plane, obstacle boxes and guard
//! rails, with range noise, dropout and intensity by material and distance.

use vigil_core::ObstacleClass;
use vigil_proto::pack_point;

use crate::rng::Rng;
use crate::sensors::LidarConfig;
use crate::world::World;

#[derive(Debug, Clone)]
pub struct LidarModel {
    pub cfg: LidarConfig,
    /// (cos, sin) of each beam's elevation.
    beams: Vec<(f64, f64)>,
    /// (cos, sin) of each column's azimuth, from -π.
    columns: Vec<(f64, f64)>,
}

/// A box in the sensor frame: centre, yaw, half extents, z range, reflectivity.
#[derive(Debug, Clone, Copy)]
struct Target {
    cx: f64,
    cy: f64,
    cos: f64,
    sin: f64,
    hx: f64,
    hy: f64,
    z0: f64,
    z1: f64,
    reflectivity: f32,
    /// Column range [from, to] (inclusive) that can hit it; wraps when from > to.
    cols: (usize, usize),
}

fn reflectivity(class: ObstacleClass) -> f32 {
    match class {
        ObstacleClass::Vehicle => 0.55,
        ObstacleClass::Pedestrian => 0.25,
        ObstacleClass::Cyclist => 0.35,
        ObstacleClass::Debris => 0.3,
        ObstacleClass::Animal => 0.2,
        ObstacleClass::None => 0.1,
    }
}

impl LidarModel {
    pub fn new(cfg: &LidarConfig) -> Self {
        let n = cfg.beams.max(1);
        let beams = (0..n)
            .map(|i| {
                let f = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
                let el = (cfg.lower_fov_deg + f * (cfg.upper_fov_deg - cfg.lower_fov_deg)).to_radians();
                (el.cos(), el.sin())
            })
            .collect();
        let columns = (0..cfg.columns)
            .map(|j| {
                let az = -std::f64::consts::PI + j as f64 * std::f64::consts::TAU / cfg.columns as f64;
                (az.cos(), az.sin())
            })
            .collect();
        Self { cfg: cfg.clone(), beams, columns }
    }

    fn column_of(&self, az: f64) -> usize {
        let n = self.cfg.columns as f64;
        (((az + std::f64::consts::PI) / std::f64::consts::TAU * n).floor().rem_euclid(n)) as usize
    }

    fn targets(&self, world: &World) -> Vec<Target> {
        let [mx, my, mz] = self.cfg.mount;
        let mut boxes: Vec<(f64, f64, f64, f64, f64, f64, f32)> = world
            .obstacles
            .iter()
            .map(|o| {
                let (x, y, yaw) = world.obstacle_in_ego(o);
                (x - mx, y - my, yaw, o.length / 2.0, o.width / 2.0, o.height, reflectivity(o.class))
            })
            .collect();
        if world.guard_rails {
            for edge in [
                world.road.right_edge() - world.road.shoulder_m * 0.5,
                world.road.left_edge() + world.road.shoulder_m * 0.5,
            ] {
                let (x, y) = world.to_ego(world.ego.x + 50.0, edge);
                boxes.push((x - mx, y - my, -world.ego.yaw, 150.0, 0.05, 0.8, 0.7));
            }
        }
        boxes
            .into_iter()
            .filter(|b| b.0.hypot(b.1) - b.3.hypot(b.4) < self.cfg.range_m)
            .map(|(cx, cy, yaw, hx, hy, height, reflectivity)| {
                let (sin, cos) = yaw.sin_cos();
                let r = hx.hypot(hy);
                let d = cx.hypot(cy);
                let cols = if d <= r * 1.05 + 0.5 {
                    (0, self.columns.len() - 1)
                } else {
                    let az = cy.atan2(cx);
                    let half = (r / d).min(1.0).asin() + 0.01;
                    (self.column_of(az - half), self.column_of(az + half))
                };
                Target { cx, cy, cos, sin, hx, hy, z0: -mz, z1: height - mz, reflectivity, cols }
            })
            .collect()
    }

    /// Casts one sweep; returns (packed points, point count). Noise and dropout are
    /// drawn per column from `seed`, so the result does not depend on `threads`.
    pub fn sweep(&self, world: &World, seed: u64, threads: usize) -> (Vec<u8>, u32) {
        let targets = self.targets(world);
        let n = self.columns.len();
        if threads <= 1 {
            return self.columns_range(&targets, seed, 0, n);
        }
        let mid = n / 2;
        let (a, b) = std::thread::scope(|scope| {
            let t = &targets;
            let h = scope.spawn(move || self.columns_range(t, seed, mid, n));
            let a = self.columns_range(t, seed, 0, mid);
            (a, h.join().unwrap_or_default())
        });
        let (mut points, count) = a;
        points.extend_from_slice(&b.0);
        (points, count + b.1)
    }

    fn columns_range(&self, targets: &[Target], seed: u64, from: usize, to: usize) -> (Vec<u8>, u32) {
        let mz = self.cfg.mount[2];
        let range = self.cfg.range_m;
        let mut out = Vec::with_capacity((to - from) * self.beams.len() * 14);
        let mut count = 0u32;
        let mut active: Vec<&Target> = Vec::with_capacity(targets.len());
        for j in from..to {
            let (ca, sa) = self.columns[j];
            let mut rng = Rng::new(vigil_core::derive_seed(seed, j as u64));
            active.clear();
            active.extend(targets.iter().filter(|t| {
                let (a, b) = t.cols;
                if a <= b { j >= a && j <= b } else { j >= a || j <= b }
            }));
            for (ring, &(ce, se)) in self.beams.iter().enumerate() {
                let (dx, dy, dz) = (ce * ca, ce * sa, se);
                let mut best = range;
                let mut refl = 0.0f32;
                if dz < -1e-6 {
                    let t = mz / -dz;
                    if t < best {
                        best = t;
                        refl = 0.12;
                    }
                }
                for t in &active {
                    if let Some(hit) = ray_box(dx, dy, dz, t)
                        && hit < best
                    {
                        best = hit;
                        refl = t.reflectivity;
                    }
                }
                if refl == 0.0 {
                    continue;
                }
                if rng.f64() < self.cfg.dropout {
                    continue;
                }
                let r = (best + rng.normal() * self.cfg.range_noise_m).max(0.0);
                let intensity = (refl * (1.0 - (r / range) as f32 * 0.6)).clamp(0.0, 1.0);
                pack_point(&mut out, (r * dx) as f32, (r * dy) as f32, (r * dz) as f32, intensity, ring as u16);
                count += 1;
            }
        }
        (out, count)
    }
}

/// Distance along a unit ray from the sensor origin to an oriented box, if it hits.
#[inline]
fn ray_box(dx: f64, dy: f64, dz: f64, t: &Target) -> Option<f64> {
    // Ray origin (0,0,0) relative to the box centre, rotated into the box frame.
    let (ox, oy) = (-t.cx, -t.cy);
    let lox = t.cos * ox + t.sin * oy;
    let loy = -t.sin * ox + t.cos * oy;
    let ldx = t.cos * dx + t.sin * dy;
    let ldy = -t.sin * dx + t.cos * dy;
    let mut tmin: f64 = 0.0;
    let mut tmax = f64::INFINITY;
    for (o, d, lo, hi) in [(lox, ldx, -t.hx, t.hx), (loy, ldy, -t.hy, t.hy), (0.0, dz, t.z0, t.z1)] {
        if d.abs() < 1e-12 {
            if o < lo || o > hi {
                return None;
            }
        } else {
            let (a, b) = ((lo - o) / d, (hi - o) / d);
            let (a, b) = if a < b { (a, b) } else { (b, a) };
            tmin = tmin.max(a);
            tmax = tmax.min(b);
            if tmin > tmax {
                return None;
            }
        }
    }
    (tmin > 0.0).then_some(tmin)
}
