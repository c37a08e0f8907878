//! The pinhole camera: renders sky, distant hills, road, lane marks and obstacle
//! silhouettes into an RGB8 image, with lighting, fog and sensor noise, and reports
//! where each obstacle landed (2D box and occlusion) for ground truth.

use crate::appearance::Rgb;
use crate::rng::hash32;
use crate::sensors::CameraConfig;
use crate::sprites::{self, View};
use crate::world::World;

/// Where an obstacle appears in a rendered frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub object_id: u32,
    /// Tight box of the drawn silhouette: x_min, y_min, x_max, y_max (pixels, max exclusive).
    pub bbox: [f32; 4],
    /// Fraction hidden by nearer objects or cut by the image border.
    pub occlusion: f32,
}

#[derive(Debug, Clone)]
pub struct CameraModel {
    pub cfg: CameraConfig,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    hills: Vec<f32>,
    ids: Vec<u8>,
    /// Pre-drawn sensor noise (unit scale).
    noise: Vec<[f32; 3]>,
    /// Threads used to draw the background (the output does not depend on it).
    pub threads: usize,
}

const NOISE_LEN: usize = 1 << 16;

struct Noise {
    table: Vec<[f32; 3]>,
    offset: usize,
    k: f32,
}

impl Noise {
    #[inline(always)]
    fn at(&self, i: usize) -> [f32; 3] {
        let n = self.table[(i + self.offset) & (NOISE_LEN - 1)];
        [n[0] * self.k, n[1] * self.k, n[2] * self.k]
    }
}

/// Shades one pixel: lighting was applied by the caller, noise and quantisation here.
#[inline(always)]
fn put(out: &mut [u8], idx: usize, c: [f32; 3], n: &[f32; 3]) {
    shade_px(&mut out[idx * 3..idx * 3 + 3], c, n);
}

#[inline(always)]
fn shade_px(o: &mut [u8], c: [f32; 3], n: &[f32; 3]) {
    o[0] = (c[0] * 255.0 + n[0]).clamp(0.0, 255.0) as u8;
    o[1] = (c[1] * 255.0 + n[1]).clamp(0.0, 255.0) as u8;
    o[2] = (c[2] * 255.0 + n[2]).clamp(0.0, 255.0) as u8;
}

impl CameraModel {
    pub fn new(cfg: &CameraConfig, seed: u64) -> Self {
        let f = cfg.focal();
        let w = cfg.width as usize;
        // Distant hills / tree line: a smooth random profile above the horizon.
        let s = seed as u32;
        let hills = (0..w)
            .map(|u| {
                let x = u as f32 / w as f32;
                let p = (s % 1000) as f32 * 0.01;
                (0.025 + 0.015 * (x * 9.0 + p).sin() + 0.01 * (x * 23.0 + 2.0 * p).sin() + 0.004 * (x * 71.0 + p).sin())
                    * cfg.height as f32
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            fx: f,
            fy: f,
            cx: cfg.width as f64 / 2.0,
            cy: cfg.height as f64 / 2.0,
            hills,
            threads: 1,
            ids: vec![0; w * cfg.height as usize],
            noise: (0..NOISE_LEN as u32)
                .map(|i| {
                    let h = hash32(i ^ 0xa511_e9b3);
                    // Triangular luminance noise plus a little chroma noise.
                    let n = ((h & 0xff) as f32 + ((h >> 8) & 0xff) as f32 - 255.0) / 255.0 * 1.7;
                    let c = |k: u32| ((h >> k) & 0x1f) as f32 / 31.0 - 0.5;
                    [n + c(16) * 0.6, n + c(21) * 0.6, n + c(26) * 0.6]
                })
                .collect(),
        }
    }

    /// Renders the current state of `world` into `out` (resized to width × height × 3).
    pub fn render(&mut self, world: &World, frame: u64, out: &mut Vec<u8>) -> Vec<Projection> {
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        out.clear();
        out.resize(w * h * 3, 0);
        // The noise pattern shifts every frame; its amplitude is the world's.
        let noise = Noise {
            table: std::mem::take(&mut self.noise),
            offset: hash32(frame as u32 ^ 0x5bd1_e995) as usize,
            k: world.camera_noise as f32,
        };
        // Sky rows cost about a third of ground rows: balance the two halves by cost.
        let split = if self.threads > 1 { (self.cy + (h as f64 - self.cy) * 0.3) as usize } else { h };
        let (top, bottom) = out.split_at_mut(split * w * 3);
        if split < h {
            std::thread::scope(|scope| {
                scope.spawn(|| self.background(world, bottom, split, &noise));
                self.background(world, top, 0, &noise);
            });
        } else {
            self.background(world, top, 0, &noise);
        }
        let projections = self.obstacles(world, out, &noise);
        self.noise = noise.table;
        projections
    }

    /// One row above the horizon, `up` pixels over it: sky graded from the horizon to the
    /// zenith, hills in front.
    #[inline]
    fn sky_row(&self, row: &mut [u8], up: f32, [horizon, zenith, hill]: [Rgb; 3], base: usize, noise: &Noise) {
        let sky = mix(horizon, zenith, (up / self.cy as f32).min(1.0));
        for (u, (px, hill_h)) in row.chunks_exact_mut(3).zip(&self.hills).enumerate() {
            let c = if up < *hill_h { mix(hill, horizon, (up / hill_h) * 0.5) } else { sky };
            shade_px(px, c, &noise.at(base + u));
        }
    }

    /// Draws sky, hills and ground into `out`, which holds the rows from `first_row` on.
    fn background(&self, world: &World, out: &mut [u8], first_row: usize, noise: &Noise) {
        let w = self.cfg.width as usize;
        let rows = out.len() / (w * 3);
        let light = world.light as f32;
        let lit = |c: Rgb| [c[0] * light, c[1] * light, c[2] * light];
        let cam_h = self.cfg.mount[2];
        let (mx, my) = (self.cfg.mount[0], self.cfg.mount[1]);
        let road = &world.road;
        let (right, left) = (road.right_edge() as f32, road.left_edge() as f32);
        let (shoulder_r, shoulder_l) = (right - road.shoulder_m as f32, left + road.shoulder_m as f32);
        let lw = road.lane_width_m as f32;
        let lanes = road.lanes as f32;
        let (sy, cyaw) = world.ego.yaw.sin_cos();
        let (ex, ey) = (world.ego.x, world.ego.y);
        let horizon = lit([0.78, 0.82, 0.86]);
        let zenith = lit([0.35, 0.52, 0.80]);
        let hill = lit([0.22, 0.30, 0.22]);
        let mark = lit([0.85, 0.85, 0.82]);
        for r in 0..rows {
            let v = first_row + r;
            let base = v * w;
            let local = r * w;
            let dv = v as f64 + 0.5 - self.cy;
            if dv <= 0.0 {
                self.sky_row(&mut out[local * 3..(local + w) * 3], -dv as f32, [horizon, zenith, hill], base, noise);
                continue;
            }
            let d = self.fy * cam_h / dv; // forward distance of this row on the ground
            let fog = (1.0 - (-d / 220.0).exp()) as f32;
            let per_px = d / self.fx;
            let fwd = d + mx;
            // World position at u = 0 and its step per pixel, relative to the ego.
            let lat0 = self.cx * per_px + my;
            let wx0 = (ex + fwd * cyaw - lat0 * sy) as f32;
            let wy0 = (ey + fwd * sy + lat0 * cyaw) as f32;
            let (dwx, dwy) = ((per_px * sy) as f32, (-per_px * cyaw) as f32);
            let mark_half = 0.08 + per_px as f32 * 0.3;
            let asphalt = mix(lit([0.30, 0.30, 0.31]), horizon, fog);
            let kerb = mix(lit([0.55, 0.54, 0.51]), horizon, fog);
            let grass = mix(lit([0.20, 0.36, 0.16]), horizon, fog);
            let mark = mix(mark, horizon, fog);
            let tex_amp = [0.04 * light * (1.0 - fog), 0.05 * light * (1.0 - fog), 0.06 * light * (1.0 - fog)];
            let row = &mut out[local * 3..(local + w) * 3];
            for (u, px) in row.chunks_exact_mut(3).enumerate() {
                let wx = wx0 + dwx * u as f32;
                let wy = wy0 + dwy * u as f32;
                let tex = (hash32(
                    ((wx * 3.0) as i32 as u32).wrapping_mul(73_856_093)
                        ^ ((wy * 3.0) as i32 as u32).wrapping_mul(19_349_663),
                ) & 0xff) as f32
                    / 255.0
                    - 0.5;
                let c: Rgb = if wy >= right && wy <= left {
                    // wy >= right here, so truncation is floor (no libm call).
                    let k = (((wy - right) / lw + 0.5) as i32) as f32;
                    let on_mark = (wy - (right + k * lw)).abs() < mark_half;
                    if on_mark
                        && (k <= 0.0 || k >= lanes || {
                            let f = wx * (1.0 / 9.0);
                            f - f.floor() < 1.0 / 3.0
                        })
                    {
                        mark
                    } else {
                        let t = tex * tex_amp[0];
                        [asphalt[0] + t, asphalt[1] + t, asphalt[2] + t]
                    }
                } else if wy >= shoulder_r && wy <= shoulder_l {
                    let t = tex * tex_amp[1];
                    [kerb[0] + t, kerb[1] + t, kerb[2] + t]
                } else {
                    let t = tex * tex_amp[2];
                    [grass[0] + t, grass[1] + t * 1.2, grass[2]]
                };
                shade_px(px, c, &noise.at(base + u));
            }
        }
    }

    fn obstacles(&mut self, world: &World, out: &mut [u8], noise: &Noise) -> Vec<Projection> {
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        let cam_h = self.cfg.mount[2];
        let (mx, my) = (self.cfg.mount[0], self.cfg.mount[1]);
        self.ids.iter_mut().for_each(|x| *x = 0);
        let mut order: Vec<(f64, usize)> = world
            .obstacles
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let (x, y, _) = world.obstacle_in_ego(o);
                ((x - mx).hypot(y - my), i)
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut drawn: Vec<Drawn> = Vec::new();
        for (_, i) in order {
            let o = &world.obstacles[i];
            let (ox, oy, rel_yaw) = world.obstacle_in_ego(o);
            let (x, y) = (ox - mx, oy - my);
            if x < 1.0 {
                continue;
            }
            let side = rel_yaw.sin().abs() > 0.5;
            let wa = if side { o.length } else { o.width };
            // Facing in the image: moving left in the world is moving left in the image.
            let facing: f32 = if rel_yaw.sin() > 0.0 { -1.0 } else { 1.0 };
            let anim = (o.appearance.phase
                + o.travelled * if matches!(o.class, vigil_core::ObstacleClass::Cyclist) { 2.9 } else { 4.2 })
                as f32;
            let view = View { side, width: wa as f32, height: o.height as f32, anim };
            let u0 = self.cx - self.fx * (y + wa / 2.0) / x;
            let u1 = self.cx - self.fx * (y - wa / 2.0) / x;
            let v0 = self.cy - self.fy * (o.height - cam_h) / x;
            let v1 = self.cy + self.fy * cam_h / x;
            let full_area = (u1 - u0) * (v1 - v0);
            let (iu0, iu1) = (u0.floor().max(0.0) as usize, (u1.ceil().max(0.0) as usize).min(w));
            let (iv0, iv1) = (v0.floor().max(0.0) as usize, (v1.ceil().max(0.0) as usize).min(h));
            if iu0 >= iu1 || iv0 >= iv1 {
                continue;
            }
            let clipped_area = (u1.min(w as f64) - u0.max(0.0)).max(0.0) * (v1.min(h as f64) - v0.max(0.0)).max(0.0);
            let slot = (drawn.len() + 1).min(255) as u8;
            let mut d = Drawn { id: o.id, count: 0, full_area, clipped_area, bbox: [usize::MAX, usize::MAX, 0, 0] };
            let xa = x as f32;
            for v in iv0..iv1 {
                let b = (cam_h - (v as f64 + 0.5 - self.cy) * x / self.fy) as f32;
                let shade = (0.8 + 0.3 * (b / o.height as f32).clamp(0.0, 1.0)) * world.light as f32;
                for u in iu0..iu1 {
                    let lat = (self.cx - (u as f64 + 0.5)) as f32 * xa / self.fx as f32;
                    let a = (y as f32 - lat) * facing;
                    if let Some(c) = sprites::sample(o.class, &o.appearance, &view, a, b) {
                        let idx = v * w + u;
                        put(out, idx, [c[0] * shade, c[1] * shade, c[2] * shade], &noise.at(idx));
                        self.ids[idx] = slot;
                        d.count += 1;
                        d.bbox = [d.bbox[0].min(u), d.bbox[1].min(v), d.bbox[2].max(u + 1), d.bbox[3].max(v + 1)];
                    }
                }
            }
            if d.count > 0 {
                drawn.push(d);
            }
        }
        projections(&drawn, &self.ids)
    }
}

/// An obstacle as drawn: its pixels, its box, its area on and off the image.
struct Drawn {
    id: u32,
    count: u32,
    full_area: f64,
    clipped_area: f64,
    bbox: [usize; 4],
}

/// The drawn obstacles with their occlusion: the share of their pixels still showing in
/// `ids` (later, nearer obstacles overwrite) times the share of their area in the image.
fn projections(drawn: &[Drawn], ids: &[u8]) -> Vec<Projection> {
    let mut visible = vec![0u32; drawn.len() + 1];
    for &id in ids {
        visible[id as usize] += 1;
    }
    drawn
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let vis = visible[(k + 1).min(255)] as f64 / d.count as f64;
            let inside = if d.full_area > 0.0 { d.clipped_area / d.full_area } else { 0.0 };
            Projection {
                object_id: d.id,
                bbox: [d.bbox[0] as f32, d.bbox[1] as f32, d.bbox[2] as f32, d.bbox[3] as f32],
                occlusion: (1.0 - vis.min(1.0) * inside.min(1.0)).clamp(0.0, 1.0) as f32,
            }
        })
        .collect()
}

#[inline]
fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}
