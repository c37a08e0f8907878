//! What the matrix shows: per cell, perception on against the control; a score in the
//! spirit of Euro NCAP's; the gates; a table and a heatmap.

use serde::Serialize;

use crate::cells::Family;
use crate::run::{CellRun, Drive};

/// One cell, summarised over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct CellSummary {
    pub id: String,
    pub family: Family,
    pub speed_kmh: u32,
    pub hazardous: bool,
    pub source: String,
    pub seeds: usize,
    pub collisions: usize,
    /// The control (perception off): a hazardous cell it does not collide in proves nothing.
    pub control_collisions: usize,
    pub impact_kmh_max: Option<f64>,
    /// Mean over seeds of the speed taken off before the impact (the whole speed when
    /// avoided), km/h.
    pub speed_reduction_kmh: f64,
    pub min_gap_m: Option<f64>,
    /// Mean distance of the first detection, metres.
    pub first_detection_m: Option<f64>,
    /// Stopping distance at this speed (8 m/s², 0.3 s to react), for comparison.
    pub stopping_distance_m: f64,
    /// Mean time from the first detection to the first command to stop.
    pub detect_to_brake_s: Option<f64>,
    pub brake: u64,
    pub brake_hard: u64,
    pub fallback_brakes: u64,
    pub stops: usize,
    pub km: f64,
    /// Nuisance cells: (BRAKE + BRAKE_HARD + fallback brakes) per 10 km.
    pub brakes_per_10km: f64,
    /// 0..=1: avoidance and speed reduction (hazardous), 1 less penalties (nuisance).
    pub points: f64,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, s) = v.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| s / n as f64)
}

/// Stopping distance from `kmh` at 8 m/s² after 0.3 s.
pub fn stopping_distance_m(kmh: f64) -> f64 {
    let v = kmh / 3.6;
    0.3 * v + v * v / 16.0
}

impl CellSummary {
    pub fn of(c: &CellRun) -> Self {
        let on = &c.on;
        let v0 = c.speed_kmh as f64;
        let reduction = |d: &Drive| if d.collision { (v0 - d.impact_kmh.unwrap_or(v0)).max(0.0) } else { v0 };
        let km = on.iter().map(|d| d.distance_m).sum::<f64>() / 1000.0;
        let brake = on.iter().map(|d| d.brake).sum();
        let brake_hard = on.iter().map(|d| d.brake_hard).sum();
        let fallback_brakes = on.iter().map(|d| d.fallback_brakes).sum();
        let stops = on.iter().filter(|d| d.stopped).count();
        let brakes_per_10km = if km > 0.0 { (brake + brake_hard + fallback_brakes) as f64 / km * 10.0 } else { 0.0 };
        let speed_reduction_kmh = mean(on.iter().map(reduction)).unwrap_or(0.0);
        let points = if c.hazardous {
            // NCAP's spirit: full points for avoidance, else in proportion to the speed taken off.
            mean(on.iter().map(|d| reduction(d) / v0)).unwrap_or(0.0)
        } else {
            // A nuisance cell loses for every stop and hard brake, and for brakes beyond
            // one per 10 km.
            let per_drive = on.len().max(1) as f64;
            (1.0 - (stops as f64 + brake_hard as f64) / per_drive - (brakes_per_10km - 1.0).max(0.0) * 0.1).max(0.0)
        };
        Self {
            id: c.id.clone(),
            family: c.family,
            speed_kmh: c.speed_kmh,
            hazardous: c.hazardous,
            source: c.source.clone(),
            seeds: on.len(),
            collisions: on.iter().filter(|d| d.collision).count(),
            control_collisions: c.off.iter().filter(|d| d.collision).count(),
            impact_kmh_max: on.iter().filter_map(|d| d.impact_kmh).reduce(f64::max),
            speed_reduction_kmh,
            min_gap_m: on.iter().filter_map(|d| d.min_gap_m).reduce(f64::min),
            first_detection_m: mean(on.iter().filter_map(|d| d.first_detection_m)),
            stopping_distance_m: stopping_distance_m(v0),
            detect_to_brake_s: mean(on.iter().filter_map(|d| d.detect_to_brake_s)),
            brake,
            brake_hard,
            fallback_brakes,
            stops,
            km,
            brakes_per_10km,
            points,
        }
    }

    /// Green, amber or red for the heatmap and the table.
    pub fn grade(&self) -> Grade {
        if self.hazardous {
            match (self.collisions, self.impact_kmh_max) {
                (0, _) => Grade::Pass,
                (_, Some(i)) if i <= 20.0 => Grade::Partial,
                _ => Grade::Fail,
            }
        } else if self.brake_hard > 0 || self.stops > 0 {
            Grade::Fail
        } else if self.brakes_per_10km > 1.0 {
            Grade::Partial
        } else {
            Grade::Pass
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    Pass,
    Partial,
    Fail,
}

/// Every cell, the score and the gates.
#[derive(Debug, Clone, Serialize)]
pub struct SafetyReport {
    pub seeds: u64,
    pub cells: Vec<CellSummary>,
    /// 0..=100: the hazardous cells' mean points less nuisance penalties, so two builds or
    /// two models compare with one number (the table is behind it).
    pub score: f64,
    pub hazard_points: f64,
    pub nuisance_points: f64,
    pub wall_seconds: f64,
    /// What the gates found wrong; empty: every gate holds.
    pub failures: Vec<String>,
    /// How far out each class of hazard was first acted on, against what stopping needs.
    pub detection_by_class: Vec<ClassRange>,
    pub drives: Vec<CellRun>,
}

impl SafetyReport {
    pub fn of(runs: Vec<CellRun>, seeds: u64, wall_seconds: f64) -> Self {
        let cells: Vec<CellSummary> = runs.iter().map(CellSummary::of).collect();
        let hazard_points = mean(cells.iter().filter(|c| c.hazardous).map(|c| c.points)).unwrap_or(1.0);
        let nuisance_points = mean(cells.iter().filter(|c| !c.hazardous).map(|c| c.points)).unwrap_or(1.0);
        // Hazards weigh 80 %, nuisance 20 %: braking for nothing is a safety problem too.
        let score = 100.0 * (0.8 * hazard_points + 0.2 * nuisance_points);
        let failures = gates(&cells);
        let detection_by_class = ClassRange::of(&cells);
        Self {
            seeds,
            cells,
            score,
            hazard_points,
            nuisance_points,
            wall_seconds,
            failures,
            detection_by_class,
            drives: runs,
        }
    }
}

/// Detection range of one class of hazard over its cells.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRange {
    pub class: &'static str,
    pub cells: usize,
    /// Mean first-detection distance over the cells, metres.
    pub mean_m: f64,
    /// The smallest first-detection distance over stopping distance (< 1: seen too late).
    pub min_margin: f64,
}

impl ClassRange {
    fn of(cells: &[CellSummary]) -> Vec<Self> {
        let mut out: Vec<ClassRange> = Vec::new();
        for c in cells.iter().filter(|c| c.hazardous) {
            let (Some(class), Some(d)) = (c.family.class(), c.first_detection_m) else { continue };
            let margin = d / c.stopping_distance_m.max(1e-9);
            match out.iter_mut().find(|r| r.class == class) {
                Some(r) => {
                    r.mean_m += (d - r.mean_m) / (r.cells + 1) as f64;
                    r.cells += 1;
                    r.min_margin = r.min_margin.min(margin);
                }
                None => out.push(ClassRange { class, cells: 1, mean_m: d, min_margin: margin }),
            }
        }
        out
    }
}

/// Above 80 km/h a collision is allowed only this slow, km/h.
pub const MAX_IMPACT_KMH_ABOVE_80: f64 = 20.0;

/// The gates: no collision up to 80 km/h, and none faster than 20 km/h above; the
/// control collides in every hazardous cell (else the cell proves nothing); no hard
/// brake and no stop in a nuisance cell.
fn gates(cells: &[CellSummary]) -> Vec<String> {
    let mut f = Vec::new();
    for c in cells {
        if c.hazardous && c.speed_kmh <= 80 && c.collisions > 0 {
            f.push(format!("{}: {} of {} drives collided (none allowed up to 80 km/h)", c.id, c.collisions, c.seeds));
        }
        if let Some(v) = c.impact_kmh_max.filter(|v| c.hazardous && c.speed_kmh > 80 && *v > MAX_IMPACT_KMH_ABOVE_80) {
            f.push(format!(
                "{}: an impact at {v:.0} km/h (at most {MAX_IMPACT_KMH_ABOVE_80} allowed above 80 km/h)",
                c.id
            ));
        }
        if c.hazardous && c.control_collisions < c.seeds {
            f.push(format!(
                "{}: the control (perception off) collided in {} of {} drives; the cell proves nothing where it does not",
                c.id, c.control_collisions, c.seeds
            ));
        }
        if !c.hazardous && (c.brake_hard > 0 || c.stops > 0) {
            f.push(format!("{}: {} BRAKE_HARD and {} stops with nothing in the path", c.id, c.brake_hard, c.stops));
        }
    }
    f
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// The table, one line per cell.
pub fn table(r: &SafetyReport) -> String {
    let mut out = format!(
        "{:<28} {:>5} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>6} {:>6} {:>5} {:>8} {:>6}\n",
        "cell",
        "grade",
        "coll",
        "control",
        "impact",
        "v-red",
        "detect",
        "stop-d",
        "det>brk",
        "brake",
        "hard",
        "stops",
        "brk/10km",
        "points"
    );
    for c in &r.cells {
        out.push_str(&format!(
            "{:<28} {:>5} {:>7} {:>7} {:>7} {:>8.1} {:>8} {:>7.1} {:>7} {:>6} {:>6} {:>5} {:>8.2} {:>6.2}\n",
            c.id,
            match c.grade() {
                Grade::Pass => "ok",
                Grade::Partial => "part",
                Grade::Fail => "FAIL",
            },
            format!("{}/{}", c.collisions, c.seeds),
            format!("{}/{}", c.control_collisions, c.seeds),
            opt(c.impact_kmh_max, 1),
            c.speed_reduction_kmh,
            opt(c.first_detection_m, 1),
            c.stopping_distance_m,
            opt(c.detect_to_brake_s, 2),
            c.brake,
            c.brake_hard,
            c.stops,
            c.brakes_per_10km,
            c.points
        ));
    }
    for k in &r.detection_by_class {
        out.push_str(&format!(
            "detection {:<10} {:>2} cells: first seen {:>5.1} m on average, at least {:.1}x the stopping distance\n",
            k.class, k.cells, k.mean_m, k.min_margin
        ));
    }
    out.push_str(&format!(
        "score {:.1} (hazards {:.3}, nuisance {:.3}); {} seeds, {:.0} s\n",
        r.score, r.hazard_points, r.nuisance_points, r.seeds, r.wall_seconds
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(collision: bool, impact: Option<f64>, brake_hard: u64, stopped: bool) -> Drive {
        Drive {
            seed: 1,
            collision,
            impact_kmh: impact,
            min_gap_m: None,
            first_detection_m: Some(40.0),
            detect_to_brake_s: Some(0.1),
            brake: 0,
            brake_hard,
            cautions: 0,
            fallback_brakes: 0,
            stopped,
            distance_m: 500.0,
        }
    }

    fn cell(family: Family, speed: u32, on: Vec<Drive>, off: Vec<Drive>) -> CellRun {
        CellRun {
            id: format!("{}-{speed}kmh", family.name()),
            family,
            speed_kmh: speed,
            hazardous: family.hazardous(),
            source: "generated".into(),
            on,
            off,
        }
    }

    #[test]
    fn points_reward_avoidance_then_speed_taken_off() {
        let avoided = CellSummary::of(&cell(
            Family::CcrMoving,
            50,
            vec![drive(false, None, 1, true)],
            vec![drive(true, Some(50.0), 0, false)],
        ));
        assert_eq!((avoided.points, avoided.grade()), (1.0, Grade::Pass));
        let slowed = CellSummary::of(&cell(
            Family::HighwayDebris,
            100,
            vec![drive(true, Some(20.0), 1, true), drive(false, None, 1, true)],
            vec![drive(true, Some(100.0), 0, false); 2],
        ));
        assert!((slowed.points - 0.9).abs() < 1e-9, "{}", slowed.points);
        assert_eq!(slowed.grade(), Grade::Partial);
    }

    #[test]
    fn the_gates_catch_a_collision_a_toothless_cell_and_a_nuisance_stop() {
        let r = SafetyReport::of(
            vec![
                cell(
                    Family::CcrStationary(100),
                    50,
                    vec![drive(true, Some(30.0), 1, true)],
                    vec![drive(true, Some(50.0), 0, false)],
                ),
                cell(
                    Family::PedestrianNearSide,
                    20,
                    vec![drive(false, None, 1, true)],
                    vec![drive(false, None, 0, false)],
                ),
                cell(Family::ParkedCars, 30, vec![drive(false, None, 1, true)], vec![drive(false, None, 0, false)]),
                cell(
                    Family::HighwayStoppedCar,
                    130,
                    vec![drive(true, Some(15.0), 1, true)],
                    vec![drive(true, Some(130.0), 0, false)],
                ),
                cell(
                    Family::HighwayDebris,
                    115,
                    vec![drive(true, Some(35.0), 1, true)],
                    vec![drive(true, Some(115.0), 0, false)],
                ),
            ],
            1,
            1.0,
        );
        let f = r.failures.join("\n");
        assert!(f.contains("ccrs-100-50kmh: 1 of 1 drives collided"), "{f}");
        assert!(f.contains("ped-near-20kmh: the control"), "{f}");
        assert!(f.contains("nuisance-parked-30kmh: 1 BRAKE_HARD and 1 stops"), "{f}");
        assert!(!f.contains("highway-car"), "above 80 km/h an impact under 20 km/h is allowed: {f}");
        assert!(f.contains("highway-debris-115kmh: an impact at 35 km/h"), "{f}");
        let vehicles = r.detection_by_class.iter().find(|k| k.class == "vehicle").expect("a vehicle row");
        assert_eq!(vehicles.cells, 2);
        assert!(r.score < 100.0 && r.score > 0.0, "{}", r.score);
    }
}
