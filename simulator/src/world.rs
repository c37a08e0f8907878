//! The world: a straight road, the ego vehicle with kinematics, and obstacles moving
//! along their paths. Time is integer nanoseconds; nothing here reads the wall clock.

use vigil_core::{Nanos, ObstacleClass};

use crate::appearance::Appearance;
use crate::rng::Rng;
use crate::scenario::{EgoSpec, Road, Scenario};

/// What the ego is told to do. It holds until replaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EgoControl {
    /// Speed to reach, m/s.
    pub target_speed: f64,
    /// Deceleration to use when slowing, m/s² (clamped to the ego's limit).
    pub decel: f64,
    /// Lateral position to reach in the road frame, metres.
    pub target_y: f64,
}

#[derive(Debug, Clone)]
pub struct Ego {
    pub spec: EgoSpec,
    pub x: f64,
    pub y: f64,
    pub speed: f64,
    pub accel: f64,
    pub yaw: f64,
    pub control: EgoControl,
}

impl Ego {
    fn new(spec: &EgoSpec, y: f64) -> Self {
        let control = EgoControl { target_speed: spec.speed_mps, decel: spec.max_decel_mps2 * 0.4, target_y: y };
        Self { spec: spec.clone(), x: 0.0, y, speed: spec.speed_mps, accel: 0.0, yaw: 0.0, control }
    }

    fn step(&mut self, dt: f64) {
        let c = self.control;
        let dv = c.target_speed - self.speed;
        let a = if dv > 0.0 {
            (dv / dt).min(self.spec.max_accel_mps2)
        } else {
            (dv / dt).max(-c.decel.clamp(0.0, self.spec.max_decel_mps2))
        };
        self.accel = a;
        let v0 = self.speed;
        self.speed = (self.speed + a * dt).max(0.0);
        let v = 0.5 * (v0 + self.speed);
        let dy = c.target_y - self.y;
        // Lateral motion needs forward motion (no crabbing at standstill).
        let max_lat = self.spec.lateral_speed_mps.min(v * 0.5);
        let vy = (dy / dt).clamp(-max_lat, max_lat);
        self.yaw = if v > 0.1 { (vy / v).atan() } else { 0.0 };
        self.x += v * dt;
        self.y += vy * dt;
    }
}

/// One obstacle, with its path and appearance fixed at creation.
#[derive(Debug, Clone)]
pub struct Obstacle {
    pub id: u32,
    pub class: ObstacleClass,
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub appearance: Appearance,
    waypoints: Vec<(f64, f64)>,
    cumulative: Vec<f64>,
    speed: f64,
    start_ns: Nanos,
    static_heading: f64,
    // State at the current time.
    pub x: f64,
    pub y: f64,
    pub heading: f64,
    pub vx: f64,
    pub vy: f64,
    /// Metres travelled, drives walking and pedalling animations.
    pub travelled: f64,
}

impl Obstacle {
    fn update(&mut self, t: Nanos) {
        let moving_for = ((t - self.start_ns) as f64 * 1e-9).max(0.0);
        let s = self.speed * moving_for;
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let s = s.min(total);
        self.travelled = s;
        let n = self.waypoints.len();
        if n < 2 {
            let (x, y) = self.waypoints.first().copied().unwrap_or((0.0, 0.0));
            (self.x, self.y, self.heading, self.vx, self.vy) = (x, y, self.static_heading, 0.0, 0.0);
            return;
        }
        let seg = (1..n).find(|&i| self.cumulative[i] >= s).unwrap_or(n - 1);
        let (x0, y0) = self.waypoints[seg - 1];
        let (x1, y1) = self.waypoints[seg];
        let len = (self.cumulative[seg] - self.cumulative[seg - 1]).max(1e-9);
        let f = ((s - self.cumulative[seg - 1]) / len).clamp(0.0, 1.0);
        self.x = x0 + (x1 - x0) * f;
        self.y = y0 + (y1 - y0) * f;
        self.heading = (y1 - y0).atan2(x1 - x0);
        let moving = moving_for > 0.0 && s < total;
        let v = if moving { self.speed } else { 0.0 };
        self.vx = v * self.heading.cos();
        self.vy = v * self.heading.sin();
    }
}

/// Typical body sizes per class: (length, width, height) ranges.
fn body_size(class: ObstacleClass, rng: &mut Rng, variant: u8) -> (f64, f64, f64) {
    match class {
        ObstacleClass::Pedestrian => (rng.range(0.3, 0.45), rng.range(0.45, 0.6), rng.range(1.5, 1.9)),
        ObstacleClass::Cyclist => (rng.range(1.6, 1.8), rng.range(0.5, 0.65), rng.range(1.6, 1.85)),
        ObstacleClass::Vehicle => {
            if variant % 3 == 2 {
                (rng.range(4.6, 5.3), rng.range(1.9, 2.05), rng.range(1.75, 2.1))
            } else {
                (rng.range(4.1, 4.8), rng.range(1.72, 1.9), rng.range(1.38, 1.55))
            }
        }
        ObstacleClass::Debris => (rng.range(0.5, 1.4), rng.range(0.5, 1.4), rng.range(0.25, 0.6)),
        ObstacleClass::Animal => {
            let s = rng.range(0.0, 1.0);
            (0.7 + 1.1 * s, 0.28 + 0.2 * s, 0.55 + 0.8 * s)
        }
        ObstacleClass::None => (0.5, 0.5, 0.5),
    }
}

/// The simulated world of one vehicle.
#[derive(Debug, Clone)]
pub struct World {
    pub road: Road,
    pub ego: Ego,
    pub obstacles: Vec<Obstacle>,
    pub time_ns: Nanos,
    pub light: f64,
    pub camera_noise: f64,
    pub guard_rails: bool,
    /// First time the ego body touched an obstacle, if ever.
    pub collision: Option<(Nanos, u32)>,
    /// Smallest gap between the ego front and an obstacle in its corridor, metres.
    pub min_gap_m: f64,
    /// Closing speed at the collision (ego speed less the obstacle's along the ego's
    /// heading), m/s.
    pub impact_mps: Option<f64>,
    /// When the ego was first commanded to a stop (a brake), ns from the start.
    pub first_brake_ns: Option<Nanos>,
}

/// Physics step bound, nanoseconds.
pub const MAX_STEP_NS: Nanos = 10_000_000;

impl World {
    pub fn new(scenario: &Scenario, rng: &mut Rng) -> Self {
        let road = scenario.road.clone();
        let ego = Ego::new(&scenario.ego, road.lane_center(road.ego_lane));
        let env = &scenario.environment;
        let light = rng.range(env.light[0], env.light[1].max(env.light[0] + 1e-9));
        let camera_noise = rng.range(env.camera_noise[0], env.camera_noise[1].max(env.camera_noise[0] + 1e-9));
        let mut obstacles = Vec::new();
        for (i, spec) in scenario.obstacles.iter().enumerate() {
            let j = &spec.jitter;
            let sym = |rng: &mut Rng, a: f64| if a > 0.0 { rng.range(-a, a) } else { 0.0 };
            let dx = sym(rng, j.along_m);
            let dy = sym(rng, j.lateral_m);
            let dt = sym(rng, j.time_s);
            let speed = spec.speed_mps * (1.0 + sym(rng, j.speed)).max(0.1);
            let mut waypoints = vec![(spec.start[0] + dx, spec.start[1] + dy)];
            waypoints.extend(spec.path.iter().map(|p| (p[0] + dx, p[1] + dy)));
            let mut cumulative = vec![0.0];
            for w in waypoints.windows(2) {
                let d = ((w[1].0 - w[0].0).powi(2) + (w[1].1 - w[0].1).powi(2)).sqrt();
                cumulative.push(cumulative.last().copied().unwrap_or(0.0) + d);
            }
            let class: ObstacleClass = spec.class.into();
            let appearance = Appearance::random(class, rng);
            let (length, width, height) = body_size(class, rng, appearance.variant);
            let mut o = Obstacle {
                id: i as u32 + 1,
                class,
                length,
                width,
                height,
                appearance,
                waypoints,
                cumulative,
                speed,
                start_ns: (((spec.start_time_s + dt).max(0.0)) * 1e9) as Nanos,
                static_heading: spec.heading_deg.to_radians(),
                x: 0.0,
                y: 0.0,
                heading: 0.0,
                vx: 0.0,
                vy: 0.0,
                travelled: 0.0,
            };
            o.update(0);
            obstacles.push(o);
        }
        Self {
            road,
            ego,
            obstacles,
            time_ns: 0,
            light,
            camera_noise,
            guard_rails: env.guard_rails,
            collision: None,
            min_gap_m: f64::INFINITY,
            impact_mps: None,
            first_brake_ns: None,
        }
    }

    /// Commands the ego (the closed loop).
    pub fn command(&mut self, control: EgoControl) {
        if control.target_speed == 0.0 && self.first_brake_ns.is_none() {
            self.first_brake_ns = Some(self.time_ns);
        }
        self.ego.control = control;
    }

    /// Integrates up to time `t` in steps of at most [`MAX_STEP_NS`].
    pub fn advance_to(&mut self, t: Nanos) {
        while self.time_ns < t {
            let step = (t - self.time_ns).min(MAX_STEP_NS);
            self.ego.step(step as f64 * 1e-9);
            self.time_ns += step;
            for o in &mut self.obstacles {
                o.update(self.time_ns);
            }
            self.check_contacts();
        }
    }

    /// Transforms a road-frame point into the ego frame (x forward, y left).
    pub fn to_ego(&self, x: f64, y: f64) -> (f64, f64) {
        let (s, c) = self.ego.yaw.sin_cos();
        let dx = x - self.ego.x;
        let dy = y - self.ego.y;
        (c * dx + s * dy, -s * dx + c * dy)
    }

    /// The ego-frame pose of an obstacle: (x, y, yaw relative to ego).
    pub fn obstacle_in_ego(&self, o: &Obstacle) -> (f64, f64, f64) {
        let (x, y) = self.to_ego(o.x, o.y);
        (x, y, o.heading - self.ego.yaw)
    }

    /// Whether the ego has stopped.
    pub fn ego_stopped(&self) -> bool {
        self.ego.speed < 0.05
    }

    fn check_contacts(&mut self) {
        let half_l = self.ego.spec.length_m / 2.0;
        let half_w = self.ego.spec.width_m / 2.0;
        for i in 0..self.obstacles.len() {
            let o = &self.obstacles[i];
            let (ox, oy, oyaw) = self.obstacle_in_ego(o);
            let (s, c) = oyaw.sin_cos();
            // Obstacle half extents projected on the ego axes (a bounding box of the OBB).
            let ex = (o.length / 2.0 * c).abs() + (o.width / 2.0 * s).abs();
            let ey = (o.length / 2.0 * s).abs() + (o.width / 2.0 * c).abs();
            let lateral_overlap = oy.abs() < half_w + ey;
            if lateral_overlap && ox > 0.0 {
                let gap = (ox - ex - half_l).max(0.0);
                self.min_gap_m = self.min_gap_m.min(gap);
            }
            if lateral_overlap && ox.abs() < half_l + ex && self.collision.is_none() {
                self.collision = Some((self.time_ns, o.id));
                let (ys, yc) = self.ego.yaw.sin_cos();
                self.impact_mps = Some((self.ego.speed - (o.vx * yc + o.vy * ys)).max(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::builtin("stopped-vehicle").expect("built-in")
    }

    #[test]
    fn ego_drives_and_brakes_within_limits() {
        let s = scenario();
        let mut w = World::new(&s, &mut Rng::new(1));
        w.advance_to(1_000_000_000);
        assert!((w.ego.x - s.ego.speed_mps).abs() < 0.01, "x = {}", w.ego.x);
        w.command(EgoControl { target_speed: 0.0, decel: 100.0, target_y: w.ego.y });
        w.advance_to(2_000_000_000);
        // Clamped to max_decel: from 16.7 m/s at 8 m/s² it takes ~2.1 s to stop.
        assert!(w.ego.speed > 16.7 - 8.0 - 0.01 && w.ego.speed < 16.7 - 8.0 + 0.01, "v = {}", w.ego.speed);
        w.advance_to(4_000_000_000);
        assert!(w.ego_stopped());
    }

    #[test]
    fn uncontrolled_ego_hits_the_stopped_vehicle_and_braking_avoids_it() {
        let s = scenario();
        let mut w = World::new(&s, &mut Rng::new(3));
        w.advance_to(12_000_000_000);
        assert!(w.collision.is_some());
        let mut w = World::new(&s, &mut Rng::new(3));
        w.advance_to(1_000_000_000);
        w.command(EgoControl { target_speed: 0.0, decel: 8.0, target_y: w.ego.y });
        w.advance_to(12_000_000_000);
        assert!(w.collision.is_none());
        assert!(w.min_gap_m > 1.0 && w.min_gap_m < 80.0, "gap {}", w.min_gap_m);
    }

    #[test]
    fn steering_changes_lane() {
        let s = scenario();
        let mut w = World::new(&s, &mut Rng::new(3));
        w.command(EgoControl { target_speed: 16.7, decel: 3.0, target_y: 3.5 });
        w.advance_to(4_000_000_000);
        assert!((w.ego.y - 3.5).abs() < 0.01, "y = {}", w.ego.y);
        assert!(w.collision.is_none());
    }

    #[test]
    fn obstacles_follow_their_paths() {
        let s = Scenario::builtin("pedestrian-crossing").expect("built-in");
        let mut w = World::new(&s, &mut Rng::new(9));
        let y0 = w.obstacles[0].y;
        w.advance_to(3_000_000_000);
        let p = &w.obstacles[0];
        assert!(p.y > y0 + 2.0, "pedestrian moved from {y0} to {}", p.y);
        assert!(p.vy > 1.0);
    }
}
