//! Class silhouettes for the camera. Each sprite answers "what colour is the object at
//! (a, b)?" where `a` is metres along the object's apparent width (positive = the way it
//! faces, for side views) and `b` is metres above the ground. Shapes carry the class:
//! limbs and heads, wheels and cabins, frames and riders, legs and tails.

use vigil_core::ObstacleClass;

use crate::appearance::{Appearance, Rgb};

/// What the camera sees of an object: which way it is seen and its apparent size.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// True when seen from the side (moving or standing across the line of sight).
    pub side: bool,
    /// Apparent width, metres.
    pub width: f32,
    pub height: f32,
    /// Animation angle (gait, pedals), radians.
    pub anim: f32,
}

#[inline]
fn seg(px: f32, py: f32, ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let (dx, dy) = (bx - ax, by - ay);
    let t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).max(1e-6)).clamp(0.0, 1.0);
    let (qx, qy) = (ax + t * dx - px, ay + t * dy - py);
    (qx * qx + qy * qy).sqrt()
}

#[inline]
fn circle(px: f32, py: f32, cx: f32, cy: f32, r: f32) -> bool {
    (px - cx) * (px - cx) + (py - cy) * (py - cy) < r * r
}

#[inline]
fn ellipse(px: f32, py: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> bool {
    let (x, y) = ((px - cx) / rx, (py - cy) / ry);
    x * x + y * y < 1.0
}

const TYRE: Rgb = [0.06, 0.06, 0.06];
const RIM: Rgb = [0.55, 0.56, 0.58];
const GLASS: Rgb = [0.10, 0.13, 0.17];
const HAIR: Rgb = [0.12, 0.08, 0.05];
const TAIL_LIGHT: Rgb = [0.75, 0.05, 0.05];
const PLATE: Rgb = [0.85, 0.85, 0.80];

fn darker(c: Rgb, k: f32) -> Rgb {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// The colour of `class` at (a, b), or `None` where the object is not.
pub fn sample(class: ObstacleClass, app: &Appearance, view: &View, a: f32, b: f32) -> Option<Rgb> {
    match class {
        ObstacleClass::Pedestrian => pedestrian(app, view, a, b),
        ObstacleClass::Cyclist => cyclist(app, view, a, b),
        ObstacleClass::Vehicle => vehicle(app, view, a, b),
        ObstacleClass::Debris => debris(app, view, a, b),
        ObstacleClass::Animal => animal(app, view, a, b),
        ObstacleClass::None => None,
    }
}

fn pedestrian(app: &Appearance, v: &View, a: f32, b: f32) -> Option<Rgb> {
    let h = v.height;
    let s = h / 1.75;
    let r = 0.11 * s;
    let head_y = h - r;
    if circle(a, b, 0.0, head_y, r) {
        return Some(if b > head_y + r * 0.35 { HAIR } else { app.tertiary });
    }
    let hip = 0.52 * h;
    let shoulder = h - 2.2 * r;
    let neck = h - 2.0 * r;
    if b > shoulder - 0.02 && b < neck && a.abs() < 0.05 * s {
        return Some(app.tertiary);
    }
    let swing = v.anim.sin();
    // Torso (a dress variant widens towards the hip).
    let torso_half = if app.variant == 1 { 0.17 * s + (shoulder - b).max(0.0) * 0.25 } else { 0.17 * s };
    let torso_bottom = if app.variant == 1 { hip - 0.22 * s } else { hip };
    if b >= torso_bottom && b <= shoulder && a.abs() < torso_half {
        return Some(app.primary);
    }
    // Backpack variant.
    if app.variant == 2 && v.side && a < -0.12 * s && a > -0.3 * s && b > hip + 0.1 && b < shoulder - 0.05 {
        return Some(darker(app.secondary, 0.6));
    }
    if v.side {
        let stride = 0.32 * s * swing;
        let arm = 0.2 * s * swing;
        let d_arm = seg(a, b, 0.0, shoulder - 0.03, -arm, hip - 0.08 * s);
        if d_arm < 0.045 * s {
            return Some(app.primary);
        }
        for sign in [1.0f32, -1.0] {
            if seg(a, b, 0.0, hip, sign * stride, 0.04) < 0.07 * s {
                return Some(app.secondary);
            }
        }
    } else {
        for sign in [1.0f32, -1.0] {
            let x = sign * 0.085 * s;
            if (a - x).abs() < 0.07 * s && b < hip {
                return Some(app.secondary);
            }
            let ax = sign * 0.22 * s;
            if seg(a, b, sign * 0.16 * s, shoulder - 0.03, ax, hip - 0.05) < 0.045 * s {
                return Some(if b < hip + 0.02 { app.tertiary } else { app.primary });
            }
        }
    }
    None
}

fn cyclist(app: &Appearance, v: &View, a: f32, b: f32) -> Option<Rgb> {
    let s = v.height / 1.75;
    if v.side {
        let l = v.width;
        let rw = 0.34;
        let (rear, front) = (-(l / 2.0 - rw), l / 2.0 - rw);
        for c in [rear, front] {
            let d = ((a - c) * (a - c) + (b - rw) * (b - rw)).sqrt();
            if (d - rw).abs() < 0.045 {
                return Some(TYRE);
            }
            if d < 0.04 {
                return Some(RIM);
            }
        }
        let seat = (-0.15, 0.88);
        let bar = (front - 0.08, 1.02);
        let crank = (0.0, 0.33);
        // Rider.
        let shoulder = (0.12 * s, 1.38 * s);
        if circle(a, b, shoulder.0 + 0.1, shoulder.1 + 0.16 * s, 0.11 * s) {
            return Some(if b > shoulder.1 + 0.2 * s { app.secondary } else { [0.85, 0.68, 0.55] });
        }
        if seg(a, b, seat.0, seat.1 + 0.05, shoulder.0, shoulder.1) < 0.12 * s {
            return Some(app.primary);
        }
        if seg(a, b, shoulder.0, shoulder.1 - 0.03, bar.0, bar.1 + 0.03) < 0.04 {
            return Some(app.primary);
        }
        let foot = (crank.0 + 0.17 * v.anim.cos(), crank.1 + 0.17 * v.anim.sin());
        let knee = ((seat.0 + foot.0) / 2.0 + 0.18, (seat.1 + foot.1) / 2.0 + 0.12);
        if seg(a, b, seat.0, seat.1, knee.0, knee.1) < 0.07 || seg(a, b, knee.0, knee.1, foot.0, foot.1) < 0.055 {
            return Some(darker(app.secondary, 0.7));
        }
        // Frame.
        let frame = app.tertiary;
        let t = 0.028;
        if seg(a, b, rear, rw, crank.0, crank.1) < t
            || seg(a, b, rear, rw, seat.0, seat.1) < t
            || seg(a, b, crank.0, crank.1, seat.0, seat.1) < t
            || seg(a, b, crank.0, crank.1, bar.0 - 0.05, bar.1 - 0.12) < t
            || seg(a, b, seat.0, seat.1 - 0.05, bar.0 - 0.05, bar.1 - 0.12) < t
            || seg(a, b, front, rw, bar.0, bar.1) < t
        {
            return Some(frame);
        }
        None
    } else {
        let half = v.width / 2.0;
        if a.abs() < 0.035 && b < 0.68 {
            return Some(TYRE);
        }
        if (b - 1.02).abs() < 0.025 && a.abs() < half * 0.9 {
            return Some(app.tertiary);
        }
        let head_y = 1.55 * s;
        if circle(a, b, 0.0, head_y, 0.11 * s) {
            return Some(if b > head_y + 0.03 { app.secondary } else { [0.85, 0.68, 0.55] });
        }
        if a.abs() < 0.18 * s && b > 0.9 && b < 1.42 * s {
            return Some(app.primary);
        }
        for sign in [1.0f32, -1.0] {
            if seg(a, b, sign * 0.16 * s, 1.35 * s, sign * half * 0.85, 1.04) < 0.04 {
                return Some(app.primary);
            }
            let knee = 0.55 + 0.12 * (v.anim + if sign > 0.0 { 0.0 } else { std::f32::consts::PI }).sin();
            if (a - sign * 0.11).abs() < 0.055 && b > 0.25 && b < 0.95 && b < knee + 0.4 {
                return Some(darker(app.secondary, 0.7));
            }
        }
        None
    }
}

fn vehicle(app: &Appearance, v: &View, a: f32, b: f32) -> Option<Rgb> {
    let h = v.height;
    let paint = app.primary;
    let tall = app.variant == 2;
    if v.side {
        let l = v.width;
        let half = l / 2.0;
        let rw = 0.33;
        let axle = half - 0.85;
        for c in [-axle, axle] {
            let d2 = (a - c) * (a - c) + (b - rw) * (b - rw);
            if d2 < rw * rw {
                return Some(if d2 < 0.17 * 0.17 { RIM } else { TYRE });
            }
        }
        let belt = if tall { 0.55 * h } else { 0.6 * h };
        let body_bottom = 0.22;
        // Rounded nose and tail.
        let nose = a.abs() > half - 0.25 && (b - (body_bottom + belt) / 2.0).abs() > (belt - body_bottom) / 2.0 - 0.08;
        if b >= body_bottom && b <= belt && a.abs() < half && !nose {
            // Wheel arches.
            for c in [-axle, axle] {
                if (a - c) * (a - c) + (b - rw) * (b - rw) < (rw + 0.06) * (rw + 0.06) {
                    return Some(darker(paint, 0.35));
                }
            }
            if (b - belt * 0.55).abs() < 0.015 && a.abs() < half - 0.3 {
                return Some(darker(paint, 0.6));
            }
            return Some(paint);
        }
        if b > belt && b < h {
            let f = (b - belt) / (h - belt);
            let (front_slope, rear_slope) = if tall { (0.5, 0.15) } else { (1.3, 0.7) };
            let lo = -half + 0.35 + rear_slope * f;
            let hi = half - 1.0 - front_slope * f;
            if a > lo && a < hi {
                let edge = (a - lo).min(hi - a).min(h - b) < 0.07;
                let pillar = (a - (lo + hi) / 2.0).abs() < 0.06;
                return Some(if edge || pillar { paint } else { GLASS });
            }
        }
        None
    } else {
        let half = v.width / 2.0;
        let belt = if tall { 0.55 * h } else { 0.62 * h };
        if b < 0.3 && a.abs() > half - 0.3 && a.abs() < half - 0.02 {
            return Some(TYRE);
        }
        if b >= 0.2 && b <= belt && a.abs() < half {
            if b < 0.32 {
                return Some(darker(paint, 0.55));
            }
            if a.abs() < 0.26 && b > 0.34 && b < 0.46 {
                return Some(PLATE);
            }
            if b > belt - 0.16 && b < belt - 0.04 && a.abs() > half - 0.32 && a.abs() < half - 0.04 {
                return Some(TAIL_LIGHT);
            }
            return Some(paint);
        }
        if b > belt && b < h {
            let f = (b - belt) / (h - belt);
            let w = half * (0.94 - if tall { 0.06 } else { 0.2 } * f);
            if a.abs() < w {
                let frame = w - a.abs() < 0.08 || h - b < 0.06 || b - belt < 0.05;
                return Some(if frame { paint } else { GLASS });
            }
        }
        None
    }
}

fn debris(app: &Appearance, v: &View, a: f32, b: f32) -> Option<Rgb> {
    let (half, h) = (v.width / 2.0, v.height);
    let p = app.phase as f32;
    match app.variant {
        0 => {
            // A lumpy pile: sacks, rocks, a heap of cargo.
            let x = a / half;
            let y = b / h;
            let theta = y.atan2(x);
            let r = 1.0 + 0.16 * (3.0 * theta + p).sin() + 0.08 * (7.0 * theta + 2.0 * p).sin();
            if x * x + y * y < r * r * 0.85 {
                let shade = 0.7 + 0.3 * y;
                return Some(darker(app.primary, shade));
            }
            None
        }
        1 => {
            // A crate or box, lying skewed.
            let skew = 0.15 * p.sin();
            let ax = a - skew * b;
            if ax.abs() < half * 0.9 && b < h {
                let edge = half * 0.9 - ax.abs() < 0.04 || h - b < 0.04 || b < 0.03;
                let strap = (ax - (b - h / 2.0) * 0.8).abs() < 0.03;
                return Some(if edge || strap { darker(app.primary, 0.5) } else { app.primary });
            }
            None
        }
        2 => {
            // A lost tyre, standing.
            let r = h.min(half) * 0.95;
            let d2 = a * a + (b - r) * (b - r);
            if d2 < r * r && d2 > (0.55 * r) * (0.55 * r) {
                return Some(TYRE);
            }
            if d2 <= (0.55 * r) * (0.55 * r) && d2 > (0.3 * r) * (0.3 * r) {
                return Some(RIM);
            }
            None
        }
        _ => {
            // Scattered planks or pipes.
            for k in 0..3 {
                let y = h * (0.15 + 0.3 * k as f32);
                let tilt = 0.25 * (p + k as f32 * 1.7).sin();
                let off = half * 0.3 * (p * 2.0 + k as f32).cos();
                if (b - y - tilt * (a - off)).abs() < h * 0.12 && (a - off).abs() < half * 0.9 {
                    return Some(if k == 1 { app.secondary } else { app.primary });
                }
            }
            None
        }
    }
}

fn animal(app: &Appearance, v: &View, a: f32, b: f32) -> Option<Rgb> {
    let h = v.height;
    let gait = v.anim;
    if v.side {
        let l = v.width;
        let body_y = 0.68 * h;
        if ellipse(a, b, -0.05 * l, body_y, 0.36 * l, 0.17 * h) {
            return Some(if b < body_y - 0.08 * h { app.secondary } else { app.primary });
        }
        // Neck and head.
        let head = (0.4 * l, 0.93 * h);
        if seg(a, b, 0.24 * l, body_y + 0.04 * h, head.0 - 0.02 * l, head.1 - 0.03 * h) < 0.07 * h.max(0.5) {
            return Some(app.primary);
        }
        if ellipse(a, b, head.0 + 0.04 * l, head.1 - 0.01 * h, 0.11 * l, 0.075 * h) {
            return Some(if a > head.0 + 0.12 * l { darker(app.primary, 0.5) } else { app.primary });
        }
        if seg(a, b, head.0 - 0.04 * l, head.1 + 0.04 * h, head.0 - 0.07 * l, head.1 + 0.13 * h) < 0.025 * h.max(0.5) {
            return Some(darker(app.primary, 0.8));
        }
        if app.variant == 0 && seg(a, b, head.0 - 0.02 * l, head.1 + 0.04 * h, head.0 - 0.06 * l, h) < 0.015 {
            return Some(darker(app.primary, 0.5));
        }
        // Tail.
        if seg(a, b, -0.4 * l, body_y + 0.05 * h, -0.5 * l, body_y - 0.12 * h) < 0.03 * h.max(0.5) {
            return Some(app.primary);
        }
        // Legs.
        for (i, x) in [-0.3f32, -0.2, 0.18, 0.27].iter().enumerate() {
            let swing = 0.06 * l * (gait + i as f32 * 1.6).sin();
            if seg(a, b, x * l, body_y - 0.05 * h, x * l + swing, 0.0) < 0.028 * l.max(0.6) {
                return Some(darker(app.primary, 0.8));
            }
        }
        None
    } else {
        let w = v.width;
        if ellipse(a, b, 0.0, 0.66 * h, 0.5 * w, 0.18 * h) {
            return Some(app.primary);
        }
        if ellipse(a, b, 0.0, 0.88 * h, 0.32 * w, 0.1 * h) {
            return Some(app.primary);
        }
        for sign in [1.0f32, -1.0] {
            if app.variant != 1 && seg(a, b, sign * 0.15 * w, 0.95 * h, sign * 0.35 * w, 1.0 * h) < 0.03 {
                return Some(darker(app.primary, 0.6));
            }
            if (a - sign * 0.3 * w).abs() < 0.09 * w && b < 0.55 * h {
                return Some(darker(app.secondary, 0.8));
            }
        }
        None
    }
}
