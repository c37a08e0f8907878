//! A small multi-object tracker over fused candidates: nearest-neighbour association in
//! a gate around each track's predicted position, an alpha filter on velocity. Time is
//! the capture time of the frames, never the wall clock.

use vigil_core::Nanos;

use crate::detector::Candidate;

/// A candidate further than this from every prediction starts a new track, metres.
pub const GATE_M: f64 = 2.5;
/// Tracks not seen for this long are dropped.
pub const MAX_AGE_NS: Nanos = 500_000_000;
const ALPHA: f64 = 0.35;

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u32,
    pub x: f64,
    pub y: f64,
    /// Relative velocity in the vehicle frame, m/s.
    pub vx: f64,
    pub vy: f64,
    pub hits: u32,
    pub last_ns: Nanos,
    pub candidate: Candidate,
}

#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u32,
}

impl Tracker {
    /// Updates with the candidates of one radar scan; returns the tracks seen now.
    pub fn update(&mut self, t: Nanos, candidates: Vec<Candidate>) -> Vec<Track> {
        self.tracks.retain(|tr| t - tr.last_ns <= MAX_AGE_NS);
        let mut taken = vec![false; self.tracks.len()];
        let mut seen = Vec::new();
        for c in candidates {
            let best = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken[*i])
                .map(|(i, tr)| {
                    let dt = (t - tr.last_ns) as f64 * 1e-9;
                    (i, (tr.x + tr.vx * dt - c.x).hypot(tr.y + tr.vy * dt - c.y))
                })
                .filter(|(_, d)| *d < GATE_M)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, _)) => {
                    taken[i] = true;
                    let tr = &mut self.tracks[i];
                    let dt = (t - tr.last_ns) as f64 * 1e-9;
                    if dt > 1e-3 {
                        let (vx, vy) = ((c.x - tr.x) / dt, (c.y - tr.y) / dt);
                        if tr.hits == 1 {
                            (tr.vx, tr.vy) = (vx, vy);
                        } else {
                            tr.vx += ALPHA * (vx - tr.vx);
                            tr.vy += ALPHA * (vy - tr.vy);
                        }
                    }
                    (tr.x, tr.y, tr.last_ns) = (c.x, c.y, t);
                    tr.hits += 1;
                    tr.candidate = c;
                    seen.push(tr.clone());
                }
                None => {
                    self.next_id += 1;
                    let tr =
                        Track { id: self.next_id, x: c.x, y: c.y, vx: 0.0, vy: 0.0, hits: 1, last_ns: t, candidate: c };
                    self.tracks.push(tr.clone());
                    taken.push(true);
                    seen.push(tr);
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x: f64, y: f64) -> Candidate {
        Candidate {
            x,
            y,
            closing_speed: 10.0,
            time_to_collision_s: x / 10.0,
            lateral_offset_m: y,
            lidar_points: 10,
            width_m: 0.6,
            height_m: 1.7,
            threat: false,
            camera_box: None,
        }
    }

    #[test]
    fn keeps_ids_and_estimates_lateral_velocity() {
        let mut t = Tracker::default();
        let mut ids = Vec::new();
        for k in 0..20 {
            let now = k * 50_000_000;
            let s = k as f64 * 0.05;
            let seen = t.update(now, vec![cand(40.0 - 10.0 * s, -4.0 + 1.5 * s), cand(80.0 - 10.0 * s, 3.5)]);
            ids.push((seen[0].id, seen[1].id));
        }
        assert!(ids.iter().all(|p| *p == ids[0]), "{ids:?}");
        let seen = t.update(20 * 50_000_000, vec![cand(30.0, -2.5)]);
        assert!((seen[0].vy - 1.5).abs() < 0.2, "vy {}", seen[0].vy);
        assert!((seen[0].vx + 10.0).abs() < 0.5, "vx {}", seen[0].vx);
    }
}
