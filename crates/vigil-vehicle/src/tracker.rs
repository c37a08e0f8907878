//! A small multi-object tracker over fused candidates: nearest-neighbour association in
//! a gate around each track's predicted position, an alpha filter on velocity. Time is
//! the capture time of the frames, never the wall clock.

use std::collections::VecDeque;

use vigil_core::Nanos;

use crate::detector::Candidate;

/// A candidate further than this from every prediction starts a new track, metres.
pub const GATE_M: f64 = 2.5;
/// Tracks not seen for this long are dropped.
pub const MAX_AGE_NS: Nanos = 1_000_000_000;
/// Observations kept per track (10 Hz sweeps: 1 s), and the recent ones a crossing
/// object's lateral speed is read from (0.6 s).
const HISTORY: usize = 10;
const SHORT_HISTORY: usize = 6;
/// Faster than this along the road (m/s, road frame), a track is a car driving.
const ALONG_MPS: f64 = 5.0;
/// Lateral speeds below this are centroid jitter, m/s, plus this much per metre of
/// range: a lidar column is 0.35° wide, so the extent of a car 80 m out moves in 0.5 m
/// steps and a fit over 0.6 s reads ±0.8 m/s that is not there.
pub const LATERAL_DEADBAND: f64 = 0.4;
pub const LATERAL_DEADBAND_PER_M: f64 = 0.012;
/// Plausible relative speeds; an association jump beyond these is noise, m/s.
const MAX_SPEED: f64 = 60.0;
const MAX_LATERAL: f64 = 5.0;

/// The ego pose in the road frame (from localization) when a sweep was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pose {
    pub x: f64,
    pub y: f64,
    pub yaw: f64,
    pub speed: f64,
}

impl Pose {
    /// Vehicle frame to road frame.
    pub fn to_world(self, x: f64, y: f64) -> (f64, f64) {
        let (s, c) = self.yaw.sin_cos();
        (self.x + c * x - s * y, self.y + s * x + c * y)
    }

    /// Road frame to vehicle frame.
    pub fn to_vehicle(self, wx: f64, wy: f64) -> (f64, f64) {
        let (s, c) = self.yaw.sin_cos();
        let (dx, dy) = (wx - self.x, wy - self.y);
        (c * dx + s * dy, -s * dx + c * dy)
    }
}

/// Tracks live in the road frame, so the ego's own motion (a lane change included) does
/// not show up as object motion. `x`, `y` are the latest position in the vehicle frame;
/// `vx` is the closing-relevant velocity relative to the ego (x axis), `vy` the object's
/// own lateral velocity over the road.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u32,
    pub x: f64,
    pub y: f64,
    /// Relative velocity in the vehicle frame, m/s.
    pub vx: f64,
    pub vy: f64,
    /// Road-frame velocity along the road.
    pub wvx: f64,
    pub hits: u32,
    pub last_ns: Nanos,
    pub candidate: Candidate,
    /// The last few (time, x, y, near-edge y) observations, road frame.
    pub history: VecDeque<Obs>,
}

/// One observation: (time, x, y of the centre, y of the edge nearest the ego's path).
/// The lateral speed is read from the near edge: as the ego passes a parked car its far
/// side drops out of view and the centre of what is seen slides toward the path, but
/// the near side stays where it is.
pub type Obs = (Nanos, f64, f64, f64);

/// Least-squares velocity over the history (robust to the jitter of a lidar centroid
/// where a frame-to-frame difference is not); lateral speeds under
/// the deadband count as zero.
fn fit_velocity(h: &VecDeque<Obs>, deadband: f64) -> (f64, f64) {
    let all: Vec<_> = h.iter().copied().collect();
    let Some((vx, _)) = slopes(&all) else { return (0.0, 0.0) };
    // A car driving along the road turns slowly: its lateral speed is read over the whole
    // history. Anything else may start to cross at any moment: over the last few sweeps.
    // Until it has a whole history, a driving car's lateral speed is not known (0).
    let vy = match vx.abs() > ALONG_MPS {
        true if all.len() < HISTORY => 0.0,
        true => slopes(&all).map_or(0.0, |(_, vy)| vy),
        false => slopes(&all[all.len().saturating_sub(SHORT_HISTORY)..]).map_or(0.0, |(_, vy)| vy),
    };
    (vx.clamp(-MAX_SPEED, MAX_SPEED), if vy.abs() < deadband { 0.0 } else { vy.clamp(-MAX_LATERAL, MAX_LATERAL) })
}

/// Least-squares slopes of x and the near edge's y over time, or none with fewer than two instants.
fn slopes(h: &[Obs]) -> Option<(f64, f64)> {
    let t0 = h.first()?.0;
    let n = h.len() as f64;
    let ts: Vec<f64> = h.iter().map(|p| (p.0 - t0) as f64 * 1e-9).collect();
    let tm = ts.iter().sum::<f64>() / n;
    let var: f64 = ts.iter().map(|t| (t - tm).powi(2)).sum();
    if var < 1e-9 {
        return None;
    }
    let slope = |f: fn(&Obs) -> f64| {
        let m = h.iter().map(f).sum::<f64>() / n;
        h.iter().zip(&ts).map(|(p, t)| (t - tm) * (f(p) - m)).sum::<f64>() / var
    };
    Some((slope(|p| p.1), slope(|p| p.3)))
}

#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u32,
    /// The latest scan time taken.
    now: Option<Nanos>,
    /// A scan far from `now`, held until the next one says whether the clock jumped.
    jump: Option<Nanos>,
    held: u64,
}

impl Tracker {
    /// Updates with the candidates of one radar scan; returns the tracks seen now.
    ///
    /// A scan stamped more than [`MAX_AGE_NS`] from the tracker's time, either way, is
    /// held and not used: one stamp far in the future would otherwise age every track
    /// out and leave the next true scans looking older than the tracks it started,
    /// freezing them. The clock is believed to have jumped when the next scan agrees with
    /// the held one; the tracks then start again at the new time.
    pub fn update(&mut self, t: Nanos, pose: Pose, candidates: Vec<Candidate>) -> Vec<Track> {
        if let Some(now) = self.now
            && t.abs_diff(now) > MAX_AGE_NS.unsigned_abs()
        {
            match self.jump {
                Some(j) if t.abs_diff(j) <= MAX_AGE_NS.unsigned_abs() => {
                    tracing::warn!(from = now, to = t, "the scan clock jumped; tracks start again");
                    self.tracks.clear();
                    self.now = Some(t);
                }
                _ => {
                    self.held += 1;
                    tracing::warn!(scan = t, tracker = now, "scan stamped far from the others held, not used");
                    self.jump = Some(t);
                    return Vec::new();
                }
            }
        }
        self.jump = None;
        self.now = Some(self.now.map_or(t, |n| n.max(t)));
        self.tracks.retain(|tr| t.saturating_sub(tr.last_ns) <= MAX_AGE_NS);
        let mut taken = vec![false; self.tracks.len()];
        let mut seen = Vec::new();
        for c in candidates {
            let (wx, wy) = pose.to_world(c.x, c.y);
            let half = c.width_m / 2.0;
            let near = if c.y.abs() > half { c.y - c.y.signum() * half } else { c.y };
            let wnear = pose.to_world(c.x, near).1;
            let best = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken[*i])
                .map(|(i, tr)| {
                    let dt = t.saturating_sub(tr.last_ns) as f64 * 1e-9;
                    let (px, py) = tr.history.back().map_or((wx, wy), |h| (h.1, h.2));
                    (i, (px + tr.wvx * dt - wx).hypot(py + tr.vy * dt - wy))
                })
                .filter(|(_, d)| *d < GATE_M)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, _)) => {
                    taken[i] = true;
                    let tr = &mut self.tracks[i];
                    tr.candidate = c.clone();
                    if t.saturating_sub(tr.last_ns) < 1_000_000 {
                        // Same sweep again: nothing new about this track.
                        seen.push(tr.clone());
                        continue;
                    }
                    tr.history.push_back((t, wx, wy, wnear));
                    while tr.history.len() > HISTORY {
                        tr.history.pop_front();
                    }
                    let deadband = LATERAL_DEADBAND + LATERAL_DEADBAND_PER_M * c.x.abs();
                    (tr.wvx, tr.vy) = fit_velocity(&tr.history, deadband);
                    tr.vx = tr.wvx - pose.speed * pose.yaw.cos();
                    (tr.x, tr.y, tr.last_ns) = (c.x, c.y, t);
                    tr.hits += 1;
                    seen.push(tr.clone());
                }
                None => {
                    self.next_id += 1;
                    let history = std::iter::once((t, wx, wy, wnear)).collect();
                    let tr = Track {
                        id: self.next_id,
                        x: c.x,
                        y: c.y,
                        vx: -pose.speed,
                        vy: 0.0,
                        wvx: 0.0,
                        hits: 1,
                        last_ns: t,
                        candidate: c,
                        history,
                    };
                    self.tracks.push(tr.clone());
                    taken.push(true);
                    seen.push(tr);
                }
            }
        }
        seen
    }

    /// Scans held for being stamped far from the others (a lie, or a clock that jumped).
    pub fn held(&self) -> u64 {
        self.held
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
            let pose = Pose { x: 10.0 * s, y: 0.0, yaw: 0.0, speed: 10.0 };
            let seen = t.update(now, pose, vec![cand(40.0 - 10.0 * s, -4.0 + 1.5 * s), cand(80.0 - 10.0 * s, 3.5)]);
            ids.push((seen[0].id, seen[1].id));
        }
        assert!(ids.iter().all(|p| *p == ids[0]), "{ids:?}");
        let pose = Pose { x: 10.0, y: 0.0, yaw: 0.0, speed: 10.0 };
        let seen = t.update(20 * 50_000_000, pose, vec![cand(30.0, -2.5)]);
        assert!((seen[0].vy - 1.5).abs() < 0.2, "vy {}", seen[0].vy);
        assert!((seen[0].vx + 10.0).abs() < 0.5, "vx {}", seen[0].vx);
    }

    /// Capture times come from the sensors: a scan stamped at either end of time (a
    /// lying or broken peer) neither drops the tracks nor makes finite speeds infinite.
    /// Wrapping arithmetic would read `i64::MIN - t` as far in the future and drop them.
    #[test]
    fn scans_stamped_at_the_ends_of_time_keep_the_tracks() {
        let mut t = Tracker::default();
        let pose = Pose { x: 0.0, y: 0.0, yaw: 0.0, speed: 10.0 };
        let id = t.update(1_000_000_000, pose, vec![cand(40.0, 0.0)])[0].id;
        let mut now = 1_000_000_000;
        for lie in [i64::MIN, i64::MAX, 0, now + 3_600_000_000_000] {
            assert!(t.update(lie, pose, vec![cand(40.0, 0.0)]).is_empty(), "a scan stamped {lie} is held");
            now += 100_000_000;
            let seen = t.update(now, pose, vec![cand(40.0 - 1e-8 * (now - 1_000_000_000) as f64, 0.0)]);
            assert_eq!(seen.len(), 1, "after {lie}");
            assert_eq!(seen[0].id, id, "the next true scan continues the track after {lie}");
            assert!(seen[0].vx.is_finite() && seen[0].vy.is_finite(), "{lie}: {:?}", seen[0]);
            assert_eq!(seen[0].history.back().map(|h| h.0), Some(now), "and updates it: not frozen");
        }
        assert_eq!(t.held(), 4);
    }

    /// A clock that really jumps (two scans agree on the new time) restarts the tracks
    /// there, and they update again.
    #[test]
    fn a_clock_that_jumps_restarts_the_tracks_at_its_new_time() {
        let mut t = Tracker::default();
        let pose = Pose { x: 0.0, y: 0.0, yaw: 0.0, speed: 10.0 };
        let first = t.update(1_000_000_000, pose, vec![cand(40.0, 0.0)])[0].id;
        let later = 1_000_000_000 + 3_600_000_000_000;
        assert!(t.update(later, pose, vec![cand(40.0, 0.0)]).is_empty());
        let seen = t.update(later + 100_000_000, pose, vec![cand(39.0, 0.0)]);
        assert!(seen.len() == 1 && seen[0].id != first, "a new track at the new time: {seen:?}");
        let next = t.update(later + 200_000_000, pose, vec![cand(38.0, 0.0)]);
        assert_eq!((next[0].id, next[0].hits), (seen[0].id, 2), "which then updates");
    }

    #[test]
    fn a_driving_car_shows_lateral_speed_only_over_a_whole_history() {
        // Oncoming at a combined 44 m/s, 3.5 m left, its lidar extent jittering by a column.
        let jitter = [0.0, 0.3, -0.2, 0.35, -0.3, 0.25, 0.3, -0.25, 0.2, -0.3, 0.1, 0.3];
        let mut t = Tracker::default();
        for (k, j) in jitter.iter().enumerate() {
            let s = k as f64 * 0.1;
            let pose = Pose { x: 22.0 * s, y: 0.0, yaw: 0.0, speed: 22.0 };
            let seen = t.update(k as i64 * 100_000_000, pose, vec![cand(95.0 - 44.0 * s, 3.5 + j)]);
            assert_eq!(seen[0].vy, 0.0, "sweep {k}: {}", seen[0].vy);
        }
        // One really drifting across at 1.5 m/s is seen once the history is whole.
        let mut t = Tracker::default();
        let mut vy = 0.0;
        for k in 0..12 {
            let s = k as f64 * 0.1;
            let pose = Pose { x: 22.0 * s, y: 0.0, yaw: 0.0, speed: 22.0 };
            vy = t.update(k * 100_000_000, pose, vec![cand(60.0 - 44.0 * s, 3.5 - 1.5 * s)])[0].vy;
        }
        assert!((vy + 1.5).abs() < 0.1, "vy {vy}");
    }

    #[test]
    fn passing_a_parked_car_does_not_make_it_move() {
        // Its near side stays at -2.05 m while its far side drops out of view: the centre
        // of what is seen slides from -2.95 toward the path.
        let mut t = Tracker::default();
        for k in 0..10 {
            let s = k as f64 * 0.1;
            let pose = Pose { x: 8.0 * s, y: 0.0, yaw: 0.0, speed: 8.0 };
            let width = 1.8 - 0.15 * k as f64;
            let c = Candidate { width_m: width, ..cand(14.0 - 8.0 * s, -2.05 - width / 2.0) };
            let seen = t.update(k as i64 * 100_000_000, pose, vec![c]);
            assert_eq!(seen[0].vy, 0.0, "sweep {k}");
        }
    }
}
