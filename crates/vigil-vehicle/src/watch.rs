//! The radar watch: objects only the radar reaches yet.
//!
//! The lidar confirms a small, low object (debris, an animal) at a few tens of metres,
//! and the camera crop is a handful of pixels before that; at 130 km/h the car needs
//! 81 m to stop. The radar sees such an object from 150 m, but one scan cannot tell it
//! from clutter. Persistence can: clutter and false alarms land anywhere, once, while a
//! real object comes back scan after scan where the road frame says it should be. The
//! watch keeps radar-only tracks in the road frame and believes one seen in at least
//! [`WATCH_MIN_HITS`] scans and [`WATCH_MIN_RATIO`] of those since it appeared.
//! What the car does about a believed object in its path is [`vigil_core::policy::caution`].

use std::collections::VecDeque;

use vigil_core::Nanos;
use vigil_core::policy::{PATH_HALF_WIDTH_M, required_decel};

use crate::detector::RadarObject;
use crate::tracker::Pose;

/// Scans an object must be seen in before it is believed (20 Hz: 0.4 s).
pub const WATCH_MIN_HITS: u32 = 8;
/// Share of the scans since it appeared that it must be seen in.
pub const WATCH_MIN_RATIO: f64 = 0.75;
/// Unseen this long, a watched object is dropped.
const MAX_GAP_NS: Nanos = 300_000_000;
/// Association gate: metres, plus this much per metre of range (azimuth noise grows
/// with range: 0.6° is 1.6 m across at 150 m).
const GATE_M: f64 = 1.5;
const GATE_PER_M: f64 = 0.02;
/// Observations kept per object.
const HISTORY: usize = 16;
/// Closing speeds below this are not closing, m/s.
const MIN_CLOSING: f64 = 0.5;
/// An object whose closing speed differs from the ego's own speed by more than this
/// moves along the road, m/s.
const STILL_MPS: f64 = 2.0;

/// A believed radar-only object in the ego path.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub id: u32,
    /// Vehicle frame, metres (lateral: the mean over its history, radar azimuth is noisy).
    pub x: f64,
    pub y: f64,
    pub range_m: f64,
    pub closing_mps: f64,
    pub required_decel_mps2: f64,
}

#[derive(Debug)]
struct Entry {
    id: u32,
    scans: u32,
    hits: u32,
    last_ns: Nanos,
    /// (capture time, road-frame x, y).
    history: VecDeque<(Nanos, f64, f64)>,
    /// Radar closing speed, smoothed.
    closing: f64,
}

impl Entry {
    fn believed(&self) -> bool {
        self.hits >= WATCH_MIN_HITS && self.hits as f64 >= WATCH_MIN_RATIO * self.scans as f64
    }

    /// Road-frame position predicted at `t`: along the road from a straight-line fit
    /// (it may be a car driving ahead), across it the mean (too noisy to fit a speed).
    fn predict(&self, t: Nanos) -> (f64, f64) {
        let n = self.history.len() as f64;
        let mean = |f: fn(&(Nanos, f64, f64)) -> f64| self.history.iter().map(f).sum::<f64>() / n;
        let (tm, xm, ym) = (mean(|p| p.0 as f64 * 1e-9), mean(|p| p.1), mean(|p| p.2));
        let var: f64 = self.history.iter().map(|p| (p.0 as f64 * 1e-9 - tm).powi(2)).sum();
        let slope = if var > 1e-6 {
            self.history.iter().map(|p| (p.0 as f64 * 1e-9 - tm) * (p.1 - xm)).sum::<f64>() / var
        } else {
            0.0
        };
        (xm + slope * (t as f64 * 1e-9 - tm), ym)
    }
}

/// Radar-only tracks, in the road frame.
#[derive(Debug, Default)]
pub struct RadarWatch {
    entries: Vec<Entry>,
    next_id: u32,
}

impl RadarWatch {
    /// One radar scan captured at `t` with the ego at `pose`; returns the believed
    /// objects that are ahead, closing, and in the ego path.
    pub fn update(&mut self, t: Nanos, pose: Pose, objects: &[RadarObject]) -> Vec<Watched> {
        self.entries.retain(|e| t - e.last_ns <= MAX_GAP_NS);
        for e in &mut self.entries {
            e.scans += 1;
        }
        let mut taken = vec![false; self.entries.len()];
        for o in objects {
            let (wx, wy) = pose.to_world(o.x, o.y);
            let gate = GATE_M + GATE_PER_M * o.x.hypot(o.y);
            let best = self
                .entries
                .iter()
                .enumerate()
                .filter(|(i, e)| !taken[*i] && e.last_ns < t)
                .map(|(i, e)| {
                    let (px, py) = e.predict(t);
                    (i, (px - wx).hypot(py - wy))
                })
                .filter(|(_, d)| *d < gate)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, _)) => {
                    taken[i] = true;
                    let e = &mut self.entries[i];
                    e.hits += 1;
                    e.last_ns = t;
                    e.closing += 0.3 * (o.closing - e.closing);
                    e.history.push_back((t, wx, wy));
                    if e.history.len() > HISTORY {
                        e.history.pop_front();
                    }
                }
                None => {
                    self.next_id += 1;
                    self.entries.push(Entry {
                        id: self.next_id,
                        scans: 1,
                        hits: 1,
                        last_ns: t,
                        history: VecDeque::from([(t, wx, wy)]),
                        closing: o.closing,
                    });
                    taken.push(true);
                }
            }
        }
        self.entries.iter().filter(|e| e.believed() && e.last_ns == t).filter_map(|e| in_path(e, t, pose)).collect()
    }
}

fn in_path(e: &Entry, t: Nanos, pose: Pose) -> Option<Watched> {
    let (wx, wy) = e.predict(t);
    let (x, y) = pose.to_vehicle(wx, wy);
    let closing = e.closing;
    let still = (pose.speed * y.atan2(x).cos() - closing).abs() < STILL_MPS;
    (x > 0.0 && y.abs() < PATH_HALF_WIDTH_M && closing > MIN_CLOSING && still).then(|| {
        let range_m = x.hypot(y);
        Watched { id: e.id, x, y, range_m, closing_mps: closing, required_decel_mps2: required_decel(range_m, closing) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the noise of these tests.
    struct Lcg(u64);

    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.unit().max(1e-12), self.unit());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    const SCAN: Nanos = 50_000_000;

    fn pose(k: i64, v: f64) -> Pose {
        Pose { x: v * (k * SCAN) as f64 * 1e-9, y: 0.0, yaw: 0.0, speed: v }
    }

    /// Radar-like noise: 0.25 m in range, 0.6° in azimuth, 5 % missed.
    fn seen(rng: &mut Lcg, x: f64, y: f64, closing: f64) -> Option<RadarObject> {
        if rng.unit() < 0.05 {
            return None;
        }
        let (r, a) = (x.hypot(y) + rng.normal() * 0.25, y.atan2(x) + rng.normal() * 0.6f64.to_radians());
        Some(RadarObject { x: r * a.cos(), y: r * a.sin(), closing })
    }

    fn clutter(rng: &mut Lcg, n: usize, v: f64) -> Vec<RadarObject> {
        (0..n)
            .map(|_| {
                let (r, a) = (5.0 + rng.unit() * 145.0, (rng.unit() - 0.5) * 90f64.to_radians());
                RadarObject { x: r * a.cos(), y: r * a.sin(), closing: v * a.cos() }
            })
            .collect()
    }

    #[test]
    fn debris_in_the_lane_is_believed_far_out_and_clutter_never() {
        let (v, mut rng, mut w) = (36.0, Lcg(7), RadarWatch::default());
        let mut first = None;
        for k in 0..40 {
            let ego = pose(k, v);
            let mut objects = clutter(&mut rng, 8, v);
            objects.extend(seen(&mut rng, 145.0 - ego.x, 0.2, v));
            for w in w.update(k * SCAN, ego, &objects) {
                assert!((w.x - (145.0 - ego.x)).abs() < 3.0 && w.y.abs() < 1.6, "only the debris: {w:?}");
                first.get_or_insert(w.range_m);
            }
        }
        let first = first.expect("the debris was believed");
        assert!(first > 120.0, "believed at {first:.0} m; stopping from 36 m/s takes 81 m");
    }

    #[test]
    fn a_parked_car_beside_the_lane_is_not_in_the_path() {
        let (v, mut rng, mut w) = (22.0, Lcg(11), RadarWatch::default());
        for k in 0..100 {
            let ego = pose(k, v);
            let objects: Vec<_> = seen(&mut rng, 140.0 - ego.x, -2.95, v).into_iter().collect();
            let out = w.update(k * SCAN, ego, &objects);
            assert!(out.is_empty(), "scan {k}: {out:?}");
        }
    }

    #[test]
    fn an_oncoming_car_is_left_to_the_lidar() {
        let (v, mut rng, mut w) = (13.9, Lcg(5), RadarWatch::default());
        for k in 0..60 {
            let ego = pose(k, v);
            let x = 150.0 - ego.x - 13.9 * (k as f64 * 0.05);
            // In the ego's lane by its radar position, but closing at twice the ego's speed.
            let objects: Vec<_> = seen(&mut rng, x, 0.5, 2.0 * v).into_iter().collect();
            assert!(w.update(k * SCAN, ego, &objects).is_empty(), "scan {k}");
        }
    }

    #[test]
    fn an_object_that_stops_coming_back_is_dropped() {
        let (v, mut rng, mut w) = (30.0, Lcg(3), RadarWatch::default());
        for k in 0..12 {
            w.update(
                k * SCAN,
                pose(k, v),
                &seen(&mut rng, 120.0 - v * k as f64 * 0.05, 0.0, v).into_iter().collect::<Vec<_>>(),
            );
        }
        assert!(w.entries.iter().any(|e| e.believed()));
        for k in 12..20 {
            assert!(w.update(k * SCAN, pose(k, v), &[]).is_empty());
        }
        assert!(w.entries.is_empty());
    }
}
