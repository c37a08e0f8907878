//! The scenario text of each generated cell, a function per kind of cell.

use std::fmt::Write as _;

use super::{EGO_W, Family, LANE_W};

/// Where a static target starts: 6 s time to reach, at least 30 m.
fn ahead(v: f64) -> f64 {
    (6.0 * v).max(30.0).round()
}

/// A crossing: from `y0` to `y1` at `speed`, timed to be at the ego's lane centre when the
/// ego gets to `x`; returns the start time, seconds.
fn crossing_start(x: f64, v_ego: f64, y0: f64, speed: f64) -> f64 {
    ((x - 2.5) / v_ego - y0.abs() / speed).max(0.0)
}

/// How far from the ego's lane centre a crossing hazard starts to move, metres: at least
/// `min_abs`, and far enough that it is moving for the time a car needs to stop from
/// `v_ego` at 8 m/s² plus a second and a fifth to see it move and decide.
fn approach(min_abs: f64, speed: f64, v_ego: f64) -> f64 {
    min_abs.max(speed * (v_ego / 8.0 + 1.2))
}

pub(super) struct Toml(String);

impl Toml {
    fn head(family: Family, speed_kmh: u32, duration_s: f64) -> Self {
        let mut s = String::new();
        let _ = writeln!(s, "name = \"{}-{speed_kmh}kmh\"", family.name());
        let _ = writeln!(s, "description = \"Safety matrix: {} at {speed_kmh} km/h.\"", family.name());
        let _ = writeln!(s, "duration_s = {duration_s:.1}");
        Self(s)
    }

    fn section(&mut self, text: &str) -> &mut Self {
        self.0.push('\n');
        self.0.push_str(text);
        self.0.push('\n');
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn obstacle(
        &mut self,
        class: &str,
        start: [f64; 2],
        path: &[[f64; 2]],
        speed: f64,
        start_time: f64,
        heading: f64,
        jitter: &str,
    ) -> &mut Self {
        let mut o = format!("[[obstacles]]\nclass = \"{class}\"\nstart = [{:.2}, {:.2}]\n", start[0], start[1]);
        if !path.is_empty() {
            let pts: Vec<String> = path.iter().map(|p| format!("[{:.2}, {:.2}]", p[0], p[1])).collect();
            let _ = writeln!(o, "path = [{}]\nspeed_mps = {speed:.3}", pts.join(", "));
        }
        if start_time > 0.0 {
            let _ = writeln!(o, "start_time_s = {start_time:.3}");
        }
        if heading != 0.0 {
            let _ = writeln!(o, "heading_deg = {heading:.1}");
        }
        if !jitter.is_empty() {
            let _ = writeln!(o, "jitter = {{ {jitter} }}");
        }
        self.section(o.trim_end())
    }
}

/// The scenario text of a generated cell.
pub(super) fn scenario_toml(family: Family, speed_kmh: u32, v: f64) -> String {
    let c = Ctx::new(family, speed_kmh, v);
    match family {
        Family::CcrStationary(overlap) => ccr_stationary(&c, overlap),
        Family::CcrMoving => ccr_moving(&c),
        Family::PedestrianNearSide | Family::NightPedestrian => pedestrian_near_side(&c),
        Family::PedestrianFarSide => pedestrian_far_side(&c),
        Family::ChildBehindCar => child_behind_car(&c),
        Family::PedestrianAlongLane => pedestrian_along(&c),
        Family::CyclistCrossing => cyclist_crossing(&c),
        Family::CyclistAlongLane => cyclist_along(&c),
        Family::HighwayStoppedCar | Family::HighwayDebris => highway(&c),
        Family::Animal => animal(&c),
        Family::LowLightStoppedCar => low_light_car(&c),
        Family::SidewalkPedestrians => sidewalk_pedestrians(&c),
        Family::ParkedCars => parked_cars(&c),
        Family::OncomingTraffic => oncoming(&c),
        Family::Overtaking => overtaking(&c),
        // An added cell carries its own file; generated, it is an empty road.
        Family::Added { .. } => empty_road(&c),
        Family::RailsAndClutter => rails_and_clutter(&c),
    }
}

/// What every cell's generator needs.
struct Ctx {
    family: Family,
    speed_kmh: u32,
    v: f64,
    x: f64,
    reach: f64,
    right_walk: f64,
    left_walk: f64,
    still: &'static str,
    moving: &'static str,
    ego: String,
}

impl Ctx {
    fn new(family: Family, speed_kmh: u32, v: f64) -> Self {
        let x = ahead(v);
        Self {
            family,
            speed_kmh,
            v,
            x,
            reach: x / v,
            right_walk: -LANE_W / 2.0 - 1.5,
            // The left sidewalk of a two-lane road.
            left_walk: 1.5 * LANE_W + 1.5,
            still: "along_m = 3.0, lateral_m = 0.1",
            moving: "along_m = 2.0, lateral_m = 0.1, time_s = 0.15, speed = 0.05",
            ego: format!("[ego]\nspeed_mps = {v:.3}"),
        }
    }
}

fn ccr_stationary(c: &Ctx, overlap: u8) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 3.0);
    t.section(&c.ego);
    let offset = (1.0 - overlap as f64 / 100.0) * EGO_W;
    t.obstacle("vehicle", [c.x, offset], &[], 0.0, 0.0, 0.0, "along_m = 3.0");
    t.0
}

fn ccr_moving(c: &Ctx) -> String {
    let target = 20.0 / 3.6;
    let gap = (6.0 * (c.v - target)).max(20.0);
    let duration = gap / (c.v - target) + 3.0;
    let mut t = Toml::head(c.family, c.speed_kmh, duration);
    t.section(&c.ego);
    t.obstacle(
        "vehicle",
        [gap, 0.0],
        &[[gap + target * duration + 50.0, 0.0]],
        target,
        0.0,
        0.0,
        "along_m = 3.0, speed = 0.05",
    );
    t.0
}

fn pedestrian_near_side(c: &Ctx) -> String {
    let speed = 5.0 / 3.6;
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 4.0);
    t.section(&c.ego);
    if c.family == Family::NightPedestrian {
        t.section("[environment]\nlight = [0.15, 0.25]");
    }
    let from = -approach(-c.right_walk, speed, c.v);
    let start = crossing_start(c.x, c.v, from, speed);
    t.obstacle("pedestrian", [c.x, from], &[[c.x, LANE_W + 3.0]], speed, start, 0.0, c.moving);
    t.0
}

fn pedestrian_far_side(c: &Ctx) -> String {
    let speed = 8.0 / 3.6;
    let from = approach(c.left_walk, speed, c.v);
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 4.0);
    t.section(&c.ego);
    t.obstacle(
        "pedestrian",
        [c.x, from],
        &[[c.x, c.right_walk - 2.0]],
        speed,
        crossing_start(c.x, c.v, from, speed),
        0.0,
        c.moving,
    );
    t.0
}

fn child_behind_car(c: &Ctx) -> String {
    let speed = 5.0 / 3.6;
    let from = -LANE_W / 2.0 - 1.0;
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 4.0);
    t.section(&c.ego);
    t.obstacle("vehicle", [c.x + 3.5, -LANE_W / 2.0 - 1.1], &[], 0.0, 0.0, 0.0, "");
    t.obstacle(
        "pedestrian",
        [c.x, from],
        &[[c.x, LANE_W + 2.0]],
        speed,
        crossing_start(c.x, c.v, from, speed),
        0.0,
        "time_s = 0.15, speed = 0.05",
    );
    t.0
}

fn pedestrian_along(c: &Ctx) -> String {
    let speed = 5.0 / 3.6;
    let gap = (6.0 * (c.v - speed)).max(30.0);
    let duration = gap / (c.v - speed) + 3.0;
    let mut t = Toml::head(c.family, c.speed_kmh, duration);
    t.section(&c.ego);
    t.obstacle("pedestrian", [gap, 0.2], &[[gap + speed * duration + 20.0, 0.2]], speed, 0.0, 0.0, c.moving);
    t.0
}

fn cyclist_crossing(c: &Ctx) -> String {
    let speed = 15.0 / 3.6;
    let from = -approach(LANE_W / 2.0 + 3.0, speed, c.v);
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 4.0);
    t.section(&c.ego);
    t.obstacle(
        "cyclist",
        [c.x, from],
        &[[c.x, LANE_W + 4.0]],
        speed,
        crossing_start(c.x, c.v, from, speed),
        0.0,
        c.moving,
    );
    t.0
}

fn cyclist_along(c: &Ctx) -> String {
    let speed = 15.0 / 3.6;
    let gap = (6.0 * (c.v - speed)).max(30.0);
    let duration = gap / (c.v - speed) + 3.0;
    let mut t = Toml::head(c.family, c.speed_kmh, duration);
    t.section(&c.ego);
    t.obstacle("cyclist", [gap, 0.3], &[[gap + speed * duration + 30.0, 0.3]], speed, 0.0, 0.0, c.moving);
    t.0
}

fn highway(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 3.0);
    t.section("[road]\nlanes = 3\nego_lane = 1");
    t.section(&c.ego);
    t.section("[environment]\nguard_rails = true\nradar_clutter_per_scan = 3.0");
    let class = if c.family == Family::HighwayDebris { "debris" } else { "vehicle" };
    let heading = if c.family == Family::HighwayDebris { 15.0 } else { 0.0 };
    t.obstacle(class, [c.x, LANE_W], &[], 0.0, 0.0, heading, c.still);
    t.0
}

/// A deer trots out of the verge at 9 km/h (one darting at 25 km/h from the shoulder
/// would be in the path 0.8 s after it moved, closer than any car stops from 80 km/h: a
/// cell no perception could pass).
fn animal(c: &Ctx) -> String {
    let speed = 2.5;
    let from = -approach(6.0, speed, c.v);
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 4.0);
    t.section(&c.ego);
    t.section("[environment]\nlight = [0.5, 0.9]");
    t.obstacle(
        "animal",
        [c.x, from],
        &[[c.x, LANE_W + 5.0]],
        speed,
        crossing_start(c.x, c.v, from, speed),
        0.0,
        c.moving,
    );
    t.0
}

fn low_light_car(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, c.reach + 3.0);
    t.section(&c.ego);
    t.section("[environment]\nlight = [0.25, 0.35]\ncamera_noise = [9.0, 13.0]");
    t.obstacle("vehicle", [c.x, 0.0], &[], 0.0, 0.0, 0.0, c.still);
    t.0
}

fn sidewalk_pedestrians(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, 12.0);
    t.section(&c.ego);
    for k in 0..4 {
        let along = 30.0 + 35.0 * k as f64;
        let (y, dir) = if k % 2 == 0 { (c.right_walk, 1.0) } else { (c.left_walk, -1.0) };
        t.obstacle(
            "pedestrian",
            [along, y],
            &[[along + dir * 40.0, y]],
            1.4,
            0.0,
            0.0,
            "along_m = 5.0, lateral_m = 0.3",
        );
    }
    t.0
}

fn parked_cars(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, 12.0);
    t.section(&c.ego);
    for k in 0..4 {
        t.obstacle(
            "vehicle",
            [35.0 + 30.0 * k as f64, -LANE_W / 2.0 - 1.2],
            &[],
            0.0,
            0.0,
            0.0,
            "along_m = 4.0, lateral_m = 0.15",
        );
    }
    t.0
}

fn oncoming(c: &Ctx) -> String {
    let speed = c.v;
    let mut t = Toml::head(c.family, c.speed_kmh, 10.0);
    t.section(&c.ego);
    for k in 0..3 {
        let from = 80.0 + 70.0 * k as f64;
        t.obstacle(
            "vehicle",
            [from, LANE_W],
            &[[from - 2.0 * speed * 10.0, LANE_W]],
            speed,
            0.0,
            0.0,
            "along_m = 5.0, lateral_m = 0.2, speed = 0.1",
        );
    }
    t.0
}

fn overtaking(c: &Ctx) -> String {
    let speed = c.v + 20.0 / 3.6;
    let mut t = Toml::head(c.family, c.speed_kmh, 10.0);
    t.section(&c.ego);
    t.obstacle(
        "vehicle",
        [-25.0, LANE_W],
        &[[speed * 12.0, LANE_W]],
        speed,
        0.0,
        0.0,
        "along_m = 3.0, lateral_m = 0.2, speed = 0.05",
    );
    t.0
}

fn empty_road(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, 10.0);
    t.section(&c.ego);
    t.0
}

fn rails_and_clutter(c: &Ctx) -> String {
    let mut t = Toml::head(c.family, c.speed_kmh, 10.0);
    t.section("[road]\nlanes = 3\nego_lane = 1");
    t.section(&c.ego);
    t.section("[environment]\nguard_rails = true\nradar_clutter_per_scan = 4.0");
    t.0
}
