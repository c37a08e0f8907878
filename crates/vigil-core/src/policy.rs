//! The rule from what a worker recognised to what the vehicle should do.
//!
//! | class | where | time to collision | or deceleration needed | action |
//! |---|---|---|---|---|
//! | none (false alarm), at least `NONE_MIN_CONFIDENCE` sure | anywhere | any | any | CONTINUE |
//! | none, less sure | as a pedestrian (below) | | | |
//! | any obstacle | off the ego path (lateral offset > `PATH_HALF_WIDTH_M`) | any | any | CONTINUE, except a pedestrian, cyclist or animal within `NEAR_PATH_M` and TTC < 3 s: SLOW_DOWN (it may step in) |
//! | pedestrian, cyclist, animal | in path | < 1.5 s | ≥ `HARD_DECEL_MPS2` | BRAKE_HARD |
//! | pedestrian, cyclist, animal | in path | 1.5–3 s | ≥ `FIRM_DECEL_MPS2` | BRAKE |
//! | pedestrian, cyclist, animal | in path | 3–6 s | ≥ `CAUTION_DECEL_MPS2` | SLOW_DOWN |
//! | vehicle, debris | in path | < 1.5 s | ≥ `HARD_DECEL_MPS2` | BRAKE_HARD |
//! | vehicle, debris | in path | 1.5–4 s | ≥ `FIRM_DECEL_MPS2` | steer into a free lane on the side away from the object (either when it is within `OFF_CENTRE_M` of the centre, left first) when closing at `STEER_MIN_CLOSING_MPS` or more, else BRAKE; BRAKE too when the recogniser is less than `STEER_MIN_CONFIDENCE` sure |
//! | vehicle, debris | in path | 4–8 s | ≥ `CAUTION_DECEL_MPS2` | SLOW_DOWN |
//! | any | in path | beyond those | below those | CONTINUE |
//!
//! A row applies when either its time or its deceleration does. Time bins alone are
//! blind to speed: 1.5 s ahead is 15 m at 36 km/h but 54 m at 130 km/h, where stopping
//! takes 81 m. The deceleration needed to stop short of the object
//! ([`required_decel`]) carries the speed, so at highway speed the car brakes while
//! braking still works.
//!
//! Vulnerable road users move unpredictably, so Vigil never steers around them: it
//! brakes. Fusion asks only about what both radar and lidar see; a crop the recogniser
//! cannot place (a pedestrian at night) is an unknown obstacle, not a false alarm. A stopped car or lost cargo stays put, so a free lane is the better escape.
//! A non-closing object (no TTC) is treated as TTC = ∞. The lateral offset is the
//! closest the object comes to the path before the ego reaches it ([`path_offset`]).
//!
//! An object only the radar sees (too far or too low for the lidar to confirm, too
//! small for the camera) gets no class; [`caution`] answers for it from the
//! deceleration alone, and never harder than BRAKE:
//!
//! | radar-only object in path, deceleration needed | action |
//! |---|---|
//! | ≥ `FIRM_DECEL_MPS2` | BRAKE |
//! | ≥ `CAUTION_DECEL_MPS2` | SLOW_DOWN |
//! | below | CONTINUE |

use crate::ObstacleClass;

/// What the vehicle is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    BrakeHard,
    Brake,
    SlowDown,
    SteerLeft,
    SteerRight,
    Continue,
}

impl Action {
    pub const ALL: [Action; 6] =
        [Action::BrakeHard, Action::Brake, Action::SlowDown, Action::SteerLeft, Action::SteerRight, Action::Continue];

    pub fn name(self) -> &'static str {
        match self {
            Action::BrakeHard => "BRAKE_HARD",
            Action::Brake => "BRAKE",
            Action::SlowDown => "SLOW_DOWN",
            Action::SteerLeft => "STEER_LEFT",
            Action::SteerRight => "STEER_RIGHT",
            Action::Continue => "CONTINUE",
        }
    }
}

/// Half-width of the corridor the ego sweeps, plus margin, metres.
pub const PATH_HALF_WIDTH_M: f64 = 1.6;
/// Vulnerable road users this close to the path are watched.
pub const NEAR_PATH_M: f64 = 3.5;

/// Closest the object comes to the ego path centre before the ego reaches it: the
/// minimum of `|y + vy·t|` for `t` in `[0, min(ttc, 6 s)]`. A pedestrian walking into
/// the lane counts as in the path before she gets there; one walking away does not.
pub fn path_offset(y: f64, vy: f64, ttc_s: f64) -> f64 {
    let horizon = if ttc_s.is_finite() { ttc_s.clamp(0.0, 6.0) } else { 0.0 };
    let vy = if vy.is_finite() { vy } else { 0.0 };
    let end = y + vy * horizon;
    if y.signum() != end.signum() { 0.0 } else { y.abs().min(end.abs()) }
}

/// Deceleration needed to stop this far short of an object, metres (the bumper is
/// ahead of the sensors, and a stop nose-to-nose is not a margin).
pub const STANDOFF_M: f64 = 4.0;
/// Needed decelerations at which each row of the table applies, m/s². A car brakes at
/// 8–10 m/s² on dry road; BRAKE commands 70 % of the ego's maximum.
pub const HARD_DECEL_MPS2: f64 = 4.5;
pub const FIRM_DECEL_MPS2: f64 = 3.0;
pub const CAUTION_DECEL_MPS2: f64 = 1.5;

/// Deceleration needed to stop [`STANDOFF_M`] short of an object `range_m` ahead that
/// closes at `closing_mps` (0 when it does not close; unbounded once inside the standoff).
pub fn required_decel(range_m: f64, closing_mps: f64) -> f64 {
    if closing_mps.is_nan() || closing_mps <= 0.0 || !range_m.is_finite() {
        return 0.0;
    }
    closing_mps * closing_mps / (2.0 * (range_m - STANDOFF_M).max(0.01))
}

/// The table for an unconfirmed (radar-only) object in the path.
pub fn caution(required_decel_mps2: f64) -> Action {
    match required_decel_mps2 {
        a if a >= FIRM_DECEL_MPS2 => Action::Brake,
        a if a >= CAUTION_DECEL_MPS2 => Action::SlowDown,
        _ => Action::Continue,
    }
}

/// What the recognised object is and where it is relative to the ego path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    pub class: ObstacleClass,
    /// Seconds; `f64::INFINITY` when not closing.
    pub time_to_collision_s: f64,
    /// Lateral offset of the object from the ego path centre, metres.
    pub lateral_offset_m: f64,
    /// Deceleration needed to stop short of it ([`required_decel`]), m/s².
    pub required_decel_mps2: f64,
    /// Where it is now, metres left (+) or right (−) of the path centre: a lane change
    /// goes the other way first.
    pub lateral_position_m: f64,
    /// How fast the gap closes, m/s (0 when it does not).
    pub closing_mps: f64,
    pub left_lane_free: bool,
    pub right_lane_free: bool,
    /// The recogniser's probability for `class`.
    pub confidence: f32,
}

/// A "none" less sure than this is an unknown obstacle, not a false alarm.
pub const NONE_MIN_CONFIDENCE: f32 = 0.9;

/// Slower than this, braking stops in a few metres and a lane change (2 s sideways)
/// would end in the object: brake, m/s.
pub const STEER_MIN_CLOSING_MPS: f64 = 8.0;

/// An object further than this from the path centre is on one side of it, metres.
pub const OFF_CENTRE_M: f64 = 0.5;

/// Vigil steers around an obstacle only when this sure it is a vehicle or debris.
pub const STEER_MIN_CONFIDENCE: f32 = 0.8;

/// Applies the table above.
pub fn decide(s: &Situation) -> Action {
    let ttc = if s.time_to_collision_s.is_nan() { f64::INFINITY } else { s.time_to_collision_s.max(0.0) };
    if s.class == ObstacleClass::None && s.confidence >= NONE_MIN_CONFIDENCE {
        return Action::Continue;
    }
    let vulnerable = matches!(
        s.class,
        ObstacleClass::Pedestrian | ObstacleClass::Cyclist | ObstacleClass::Animal | ObstacleClass::None
    );
    let offset = s.lateral_offset_m.abs();
    if offset.is_nan() || offset > PATH_HALF_WIDTH_M {
        return if vulnerable && offset <= NEAR_PATH_M && ttc < 3.0 { Action::SlowDown } else { Action::Continue };
    }
    let a = if s.required_decel_mps2.is_nan() { 0.0 } else { s.required_decel_mps2 };
    if vulnerable {
        match ttc {
            t if t < 1.5 || a >= HARD_DECEL_MPS2 => Action::BrakeHard,
            t if t < 3.0 || a >= FIRM_DECEL_MPS2 => Action::Brake,
            t if t < 6.0 || a >= CAUTION_DECEL_MPS2 => Action::SlowDown,
            _ => Action::Continue,
        }
    } else {
        match ttc {
            t if t < 1.5 || a >= HARD_DECEL_MPS2 => Action::BrakeHard,
            t if t < 4.0 || a >= FIRM_DECEL_MPS2 => {
                let left = (s.left_lane_free, Action::SteerLeft);
                let right = (s.right_lane_free, Action::SteerRight);
                // Never toward the side the object sticks out to: the lane change would
                // cross in front of it.
                let order: &[(bool, Action)] = match s.lateral_position_m {
                    y if y > OFF_CENTRE_M => &[right],
                    y if y < -OFF_CENTRE_M => &[left],
                    _ => &[left, right],
                };
                match order.iter().find(|(free, _)| *free) {
                    Some((_, steer))
                        if s.confidence >= STEER_MIN_CONFIDENCE && s.closing_mps >= STEER_MIN_CLOSING_MPS =>
                    {
                        *steer
                    }
                    _ => Action::Brake,
                }
            }
            t if t < 8.0 || a >= CAUTION_DECEL_MPS2 => Action::SlowDown,
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ObstacleClass as C;

    fn s(class: ObstacleClass, ttc: f64, offset: f64, left: bool, right: bool) -> Situation {
        Situation {
            class,
            time_to_collision_s: ttc,
            lateral_offset_m: offset,
            required_decel_mps2: 0.0,
            lateral_position_m: 0.0,
            closing_mps: 10.0,
            left_lane_free: left,
            right_lane_free: right,
            confidence: 0.95,
        }
    }

    #[test]
    fn table_rows() {
        let rows = [
            (s(C::None, 0.5, 0.0, false, false), Action::Continue),
            (Situation { confidence: 0.7, ..s(C::None, 2.0, 0.3, true, true) }, Action::Brake),
            (Situation { confidence: 0.7, ..s(C::None, 2.0, 2.5, true, true) }, Action::SlowDown),
            (s(C::Pedestrian, 1.0, 0.3, true, true), Action::BrakeHard),
            (s(C::Pedestrian, 2.0, 0.3, true, true), Action::Brake),
            (s(C::Cyclist, 4.0, -1.0, true, true), Action::SlowDown),
            (s(C::Animal, 7.0, 0.0, true, true), Action::Continue),
            (s(C::Pedestrian, 2.0, 3.0, true, true), Action::SlowDown),
            (s(C::Pedestrian, 5.0, 3.0, true, true), Action::Continue),
            (s(C::Pedestrian, 1.0, 6.0, true, true), Action::Continue),
            (s(C::Vehicle, 1.0, 0.0, true, true), Action::BrakeHard),
            (s(C::Vehicle, 3.0, 0.0, true, true), Action::SteerLeft),
            (s(C::Debris, 3.0, 0.5, false, true), Action::SteerRight),
            (s(C::Debris, 3.0, 0.5, false, false), Action::Brake),
            (Situation { lateral_position_m: 0.9, ..s(C::Vehicle, 3.0, 0.9, true, true) }, Action::SteerRight),
            (Situation { lateral_position_m: 0.9, ..s(C::Vehicle, 3.0, 0.9, true, false) }, Action::Brake),
            (Situation { lateral_position_m: -0.9, ..s(C::Vehicle, 3.0, 0.9, true, true) }, Action::SteerLeft),
            (Situation { closing_mps: 1.4, ..s(C::Vehicle, 3.0, 0.0, true, true) }, Action::Brake),
            (Situation { confidence: 0.5, ..s(C::Vehicle, 3.0, 0.0, true, true) }, Action::Brake),
            (s(C::Vehicle, 6.0, 0.0, true, true), Action::SlowDown),
            (s(C::Vehicle, f64::INFINITY, 0.0, true, true), Action::Continue),
            (s(C::Vehicle, 1.0, 2.0, true, true), Action::Continue),
            (s(C::Vehicle, f64::NAN, 0.0, true, true), Action::Continue),
        ];
        for (situation, expected) in rows {
            assert_eq!(decide(&situation), expected, "{situation:?}");
        }
    }

    fn at(class: ObstacleClass, range: f64, closing: f64) -> Situation {
        let a = required_decel(range, closing);
        Situation { required_decel_mps2: a, closing_mps: closing, ..s(class, range / closing, 0.0, true, true) }
    }

    #[test]
    fn the_same_time_to_collision_is_more_urgent_at_speed() {
        // 2.5 s ahead: at 36 km/h a lane change; at 130 km/h (90 m) only full braking
        // stops in time (36² / 2 / 8 = 81 m).
        assert_eq!(decide(&at(C::Vehicle, 25.0, 10.0)), Action::SteerLeft);
        assert_eq!(decide(&at(C::Vehicle, 90.0, 36.1)), Action::BrakeHard);
        assert_eq!(decide(&at(C::Debris, 130.0, 27.0)), Action::SlowDown);
        assert_eq!(decide(&at(C::Debris, 100.0, 27.0)), Action::SteerLeft, "a free lane, 3.7 s out");
        assert_eq!(decide(&at(C::Animal, 60.0, 27.8)), Action::BrakeHard);
        // Far and slow: nothing yet.
        assert_eq!(decide(&at(C::Pedestrian, 80.0, 8.0)), Action::Continue);
    }

    #[test]
    fn required_decel_is_physical() {
        assert!((required_decel(54.0, 10.0) - 1.0).abs() < 1e-9);
        assert_eq!(required_decel(50.0, -3.0), 0.0, "receding");
        assert_eq!(required_decel(50.0, f64::NAN), 0.0);
        assert!(required_decel(3.0, 5.0) > 100.0, "inside the standoff");
        assert_eq!(caution(required_decel(140.0, 36.1)), Action::Brake);
        assert_eq!(caution(required_decel(130.0, 27.0)), Action::SlowDown);
        assert_eq!(caution(required_decel(100.0, 13.9)), Action::Continue);
    }

    #[test]
    fn path_offset_follows_the_motion() {
        assert_eq!(path_offset(-4.0, 1.5, 3.0), 0.0, "crosses the path before the ego arrives");
        assert!((path_offset(-4.0, 0.5, 3.0) - 2.5).abs() < 1e-9);
        assert_eq!(path_offset(-4.0, -1.0, 3.0), 4.0, "walking away");
        assert_eq!(path_offset(2.0, 5.0, f64::INFINITY), 2.0, "not closing: where it is now");
    }

    #[test]
    fn never_steers_around_vulnerable_road_users() {
        for class in [C::Pedestrian, C::Cyclist, C::Animal] {
            for ttc in [0.1, 0.9, 1.6, 2.5, 3.5, 5.0, 9.0] {
                for offset in [-1.5, -0.5, 0.0, 0.5, 1.5] {
                    let a = decide(&s(class, ttc, offset, true, true));
                    assert!(!matches!(a, Action::SteerLeft | Action::SteerRight), "{class} {ttc} {offset}: {a:?}");
                }
            }
        }
    }

    #[test]
    fn urgency_never_decreases_as_ttc_shrinks() {
        let rank = |a: Action| match a {
            Action::Continue => 0,
            Action::SlowDown => 1,
            Action::SteerLeft | Action::SteerRight | Action::Brake => 2,
            Action::BrakeHard => 3,
        };
        for class in ObstacleClass::OBSTACLES {
            let mut last = 0;
            for k in (0..100).rev() {
                let a = decide(&s(class, k as f64 * 0.1, 0.0, false, false));
                assert!(rank(a) >= last, "{class} at {} s: {a:?}", k as f64 * 0.1);
                last = rank(a);
            }
            for closing in [5.0, 15.0, 36.0] {
                let mut last = 0;
                for range in (1..300).rev() {
                    let a = decide(&Situation { left_lane_free: false, ..at(class, range as f64 * 0.5, closing) });
                    assert!(rank(a) >= last, "{class} at {} m, {closing} m/s: {a:?}", range as f64 * 0.5);
                    last = rank(a);
                }
            }
        }
    }
}
