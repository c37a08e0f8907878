//! The matrix as pictures: a heatmap (one row per family, one column per speed, coloured
//! by outcome) and the detection range per cell against the stopping distance.

use std::path::Path;

use vigil_plot::Canvas;

use crate::SafetyError;
use crate::cells::Family;
use crate::report::{Grade, SafetyReport, stopping_distance_m};

const SPEEDS: [u32; 14] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 115, 120, 130];

fn colour(g: Grade) -> [u8; 3] {
    match g {
        Grade::Pass => [60, 170, 80],
        Grade::Partial => [240, 180, 40],
        Grade::Fail => [210, 50, 50],
    }
}

/// Rows: the generated families, then every added scenario. Columns: speeds. Each square
/// says collisions/seeds (hazards) or brakes (nuisance).
pub fn heatmap(r: &SafetyReport, path: &Path) -> Result<(), SafetyError> {
    let mut rows: Vec<String> = Family::ALL.iter().map(|f| f.name().to_uppercase()).collect();
    for c in r.cells.iter().filter(|c| c.source != "generated") {
        rows.push(c.id.to_uppercase());
    }
    let (left, top, cw, ch) = (230usize, 70usize, 62usize, 26usize);
    let (w, h) = (left + cw * SPEEDS.len() + 20, top + ch * rows.len() + 60);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    c.text(10, 10, &format!("SAFETY MATRIX: SCORE {:.1}, {} SEEDS", r.score, r.seeds), [0, 0, 0], 2);
    c.text(
        10,
        34,
        "GREEN: AVOIDED / NO BRAKE. AMBER: IMPACT <= 20 KM/H / BRAKES. RED: COLLISION / HARD BRAKE, STOP",
        [60, 60, 60],
        1,
    );
    for (k, v) in SPEEDS.iter().enumerate() {
        c.text((left + k * cw + 14) as i64, (top - 16) as i64, &format!("{v}"), [0, 0, 0], 2);
    }
    for (i, name) in rows.iter().enumerate() {
        let y = top + i * ch;
        c.text(8, (y + 8) as i64, name, [0, 0, 0], 2);
        for cell in r.cells.iter().filter(|cell| {
            if cell.source == "generated" {
                cell.family.name().to_uppercase() == *name
            } else {
                cell.id.to_uppercase() == *name
            }
        }) {
            let Some(k) = SPEEDS.iter().position(|&v| v >= cell.speed_kmh) else { continue };
            let x = left + k * cw;
            c.rect(
                x as f64 + 1.0,
                y as f64 + 1.0,
                (x + cw) as f64 - 2.0,
                (y + ch) as f64 - 2.0,
                colour(cell.grade()),
                14,
            );
            let label = if cell.hazardous {
                format!("{}/{}", cell.collisions, cell.seeds)
            } else {
                format!("{}", cell.brake + cell.brake_hard + cell.fallback_brakes)
            };
            c.text((x + 8) as i64, (y + 8) as i64, &label, [255, 255, 255], 2);
        }
    }
    c.text((left + cw * SPEEDS.len() / 2 - 40) as i64, (top + ch * rows.len() + 16) as i64, "EGO KM/H", [0, 0, 0], 2);
    Ok(c.write_png(path)?)
}

/// Dot colours of the detection plot, by class.
const CLASSES: [(&str, [u8; 3]); 6] = [
    ("vehicle", [40, 90, 200]),
    ("pedestrian", [230, 130, 20]),
    ("cyclist", [140, 60, 180]),
    ("animal", [120, 80, 40]),
    ("debris", [20, 150, 150]),
    ("other", [120, 120, 120]),
];

/// First-detection distance per hazardous cell (dots, coloured by the hazard's class)
/// against the stopping distance the speed needs (the line): a dot under the line, ringed
/// in red, was seen too late to stop.
pub fn detection_range(r: &SafetyReport, path: &Path) -> Result<(), SafetyError> {
    let (w, h, left, bottom, top) = (900usize, 520usize, 70.0, 460.0, 50.0);
    let right = w as f64 - 20.0;
    let max_m = r.cells.iter().filter_map(|c| c.first_detection_m).fold(stopping_distance_m(130.0), f64::max) * 1.1;
    let x_of = |kmh: f64| left + kmh / 140.0 * (right - left);
    let y_of = |m: f64| bottom - (m / max_m).clamp(0.0, 1.0) * (bottom - top);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    c.text(10, 10, "FIRST DETECTION DISTANCE BY CLASS (DOTS) VS STOPPING DISTANCE (LINE), M", [0, 0, 0], 2);
    c.line(left, top, left, bottom, [0, 0, 0]);
    c.line(left, bottom, right, bottom, [0, 0, 0]);
    for k in 0..=5 {
        let m = max_m * k as f64 / 5.0;
        c.text(10, y_of(m) as i64 - 5, &format!("{m:.0}"), [0, 0, 0], 2);
    }
    for v in (0..=140).step_by(20) {
        c.text(x_of(v as f64) as i64 - 8, bottom as i64 + 10, &format!("{v}"), [0, 0, 0], 2);
    }
    for (i, (name, colour)) in CLASSES.iter().enumerate() {
        let y = top + 8.0 + 18.0 * i as f64;
        c.disc(left + 20.0, y, 5.0, *colour);
        c.text((left + 32.0) as i64, y as i64 - 5, &name.to_uppercase(), [0, 0, 0], 2);
    }
    let mut prev = None;
    for v in 0..=140 {
        let p = (x_of(v as f64), y_of(stopping_distance_m(v as f64)));
        if let Some((x0, y0)) = prev {
            c.line(x0, y0, p.0, p.1, [40, 40, 40]);
        }
        prev = Some(p);
    }
    for cell in r.cells.iter().filter(|c| c.hazardous) {
        let Some(d) = cell.first_detection_m else { continue };
        let class = cell.family.class().unwrap_or("other");
        let colour = CLASSES.iter().find(|(n, _)| *n == class).map_or([0, 0, 0], |(_, c)| *c);
        let (x, y) = (x_of(cell.speed_kmh as f64), y_of(d));
        if d < cell.stopping_distance_m {
            c.disc(x, y, 7.0, [210, 50, 50]);
        }
        c.disc(x, y, 5.0, colour);
    }
    c.text((w / 2) as i64 - 40, bottom as i64 + 32, "EGO KM/H", [0, 0, 0], 2);
    Ok(c.write_png(path)?)
}
