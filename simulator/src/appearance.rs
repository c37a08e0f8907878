//! How an obstacle looks: colours drawn from palettes shared across classes (a red car,
//! a red jacket and a red crate are all possible), a shape variant and an animation
//! phase. The class shows in the silhouette, never in a colour code.

use vigil_core::ObstacleClass;

use crate::rng::Rng;

pub type Rgb = [f32; 3];

#[derive(Debug, Clone, PartialEq)]
pub struct Appearance {
    pub variant: u8,
    pub primary: Rgb,
    pub secondary: Rgb,
    pub tertiary: Rgb,
    /// Animation phase offset (walking, pedalling, gait), radians.
    pub phase: f64,
}

/// A broad palette used for paint, clothing and cargo alike.
const COMMON: &[Rgb] = &[
    [0.92, 0.92, 0.90], // white
    [0.08, 0.08, 0.09], // black
    [0.62, 0.63, 0.66], // silver
    [0.38, 0.39, 0.41], // grey
    [0.72, 0.10, 0.10], // red
    [0.12, 0.22, 0.62], // blue
    [0.10, 0.14, 0.30], // navy
    [0.16, 0.42, 0.20], // green
    [0.88, 0.76, 0.16], // yellow
    [0.90, 0.45, 0.10], // orange
    [0.42, 0.27, 0.14], // brown
    [0.78, 0.70, 0.55], // beige
    [0.55, 0.20, 0.50], // purple
    [0.30, 0.60, 0.70], // teal
];

const SKIN: &[Rgb] = &[[0.93, 0.76, 0.62], [0.80, 0.60, 0.45], [0.60, 0.42, 0.30], [0.38, 0.25, 0.17]];

const FUR: &[Rgb] = &[
    [0.45, 0.30, 0.17],
    [0.30, 0.20, 0.12],
    [0.70, 0.55, 0.35],
    [0.50, 0.50, 0.50],
    [0.10, 0.09, 0.08],
    [0.88, 0.86, 0.82],
    [0.62, 0.40, 0.20],
];

fn jitter(rng: &mut Rng, palette: &[Rgb], amount: f32) -> Rgb {
    let c = palette[rng.below(palette.len())];
    let k = 1.0 + (rng.f64() as f32 - 0.5) * amount;
    let mut out = [0.0; 3];
    for (o, v) in out.iter_mut().zip(c) {
        *o = (v * k + (rng.f64() as f32 - 0.5) * amount * 0.3).clamp(0.0, 1.0);
    }
    out
}

impl Appearance {
    pub fn random(class: ObstacleClass, rng: &mut Rng) -> Self {
        let common = |rng: &mut Rng| jitter(rng, COMMON, 0.25);
        let (variant, primary, secondary, tertiary) = match class {
            ObstacleClass::Pedestrian => (rng.below(3) as u8, common(rng), common(rng), jitter(rng, SKIN, 0.15)),
            ObstacleClass::Cyclist => (rng.below(2) as u8, common(rng), common(rng), common(rng)),
            ObstacleClass::Vehicle => (rng.below(3) as u8, common(rng), common(rng), common(rng)),
            ObstacleClass::Debris => (rng.below(4) as u8, common(rng), common(rng), common(rng)),
            ObstacleClass::Animal => {
                let body = jitter(rng, FUR, 0.25);
                let belly = if rng.chance(0.5) { jitter(rng, FUR, 0.2) } else { body };
                (rng.below(3) as u8, body, belly, common(rng))
            }
            ObstacleClass::None => (0, common(rng), common(rng), common(rng)),
        };
        Self { variant, primary, secondary, tertiary, phase: rng.range(0.0, std::f64::consts::TAU) }
    }
}
