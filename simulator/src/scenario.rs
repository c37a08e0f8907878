//! The scenario format (TOML) and the built-in scenarios.
//!
//! A scenario describes a straight road, the ego vehicle, the obstacles with their paths
//! and timing, the environment's randomisation ranges and sensor overrides. Every
//! built-in is itself a TOML file in `simulator/scenarios/`, so the format documented in
//! `simulator/README.md` is the one the built-ins exercise.

use serde::Deserialize;
use std::path::Path;
use vigil_core::ObstacleClass;

use crate::sensors::SensorSuite;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "unknown scenario `{name}`: not a built-in ({known}) and no file of that name; run `vigil scenarios` for the list, or pass a path to a .toml file"
    )]
    Unknown { name: String, known: String },
    #[error("cannot read scenario file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("scenario {origin} is malformed: {message}")]
    Parse { origin: String, message: String },
    #[error("scenario {origin}: `{field}` {problem}")]
    Invalid { origin: String, field: String, problem: String },
}

/// A closed range `[lo, hi]` from which a value is drawn per seed.
pub type Range2 = [f64; 2];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, as used on the command line.
    pub name: String,
    /// One line saying what happens.
    pub description: String,
    /// Default run length when the command line gives none, seconds.
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    #[serde(default)]
    pub road: Road,
    #[serde(default)]
    pub ego: EgoSpec,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub obstacles: Vec<ObstacleSpec>,
    #[serde(default)]
    pub sensors: SensorSuite,
}

fn default_duration() -> f64 {
    15.0
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Road {
    /// Number of lanes; lane 0 is the rightmost, lane i is centred at y = i × lane_width.
    pub lanes: u32,
    pub lane_width_m: f64,
    /// The lane the ego starts in.
    pub ego_lane: u32,
    /// Width of the shoulder or sidewalk beyond each road edge.
    pub shoulder_m: f64,
}

impl Default for Road {
    fn default() -> Self {
        Self { lanes: 2, lane_width_m: 3.5, ego_lane: 0, shoulder_m: 3.0 }
    }
}

impl Road {
    /// Lateral position of the right road edge (road frame).
    pub fn right_edge(&self) -> f64 {
        -self.lane_width_m / 2.0
    }
    /// Lateral position of the left road edge.
    pub fn left_edge(&self) -> f64 {
        (self.lanes as f64 - 0.5) * self.lane_width_m
    }
    pub fn lane_center(&self, lane: u32) -> f64 {
        lane as f64 * self.lane_width_m
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgoSpec {
    pub speed_mps: f64,
    pub max_accel_mps2: f64,
    pub max_decel_mps2: f64,
    /// Lateral speed of a lane change, m/s.
    pub lateral_speed_mps: f64,
    /// Length and width of the ego body, for collision checks.
    pub length_m: f64,
    pub width_m: f64,
}

impl Default for EgoSpec {
    fn default() -> Self {
        Self {
            speed_mps: 13.9,
            max_accel_mps2: 2.5,
            max_decel_mps2: 8.0,
            lateral_speed_mps: 1.5,
            length_m: 4.6,
            width_m: 1.9,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Environment {
    /// Scene brightness multiplier, drawn per seed.
    pub light: Range2,
    /// Camera noise standard deviation in 8-bit levels, drawn per seed.
    pub camera_noise: Range2,
    /// Mean number of radar clutter returns and false alarms per scan.
    pub radar_clutter_per_scan: f64,
    /// Guard rails along both road edges (strong static radar and lidar returns).
    pub guard_rails: bool,
    /// Capture time of the first frame, nanoseconds since the Unix epoch.
    pub start_time_ns: i64,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            light: [0.65, 1.15],
            camera_noise: [2.0, 7.0],
            radar_clutter_per_scan: 1.5,
            guard_rails: false,
            start_time_ns: 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
        }
    }
}

/// Random perturbation applied to an obstacle per seed.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Jitter {
    /// ± metres along the road, applied to the start and every waypoint.
    pub along_m: f64,
    /// ± metres across the road.
    pub lateral_m: f64,
    /// ± seconds on the start time.
    pub time_s: f64,
    /// ± fraction of the speed.
    pub speed: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObstacleSpec {
    /// pedestrian, cyclist, vehicle, debris or animal.
    pub class: ClassName,
    /// [x, y] in the road frame: metres along the road from the ego start, metres left
    /// of the centre of lane 0.
    pub start: [f64; 2],
    /// Waypoints followed in order at `speed_mps`; empty for a static object.
    #[serde(default)]
    pub path: Vec<[f64; 2]>,
    #[serde(default)]
    pub speed_mps: f64,
    /// When the object starts moving, seconds from the start of the run.
    #[serde(default)]
    pub start_time_s: f64,
    /// Heading of a static object, degrees from the road direction (counter-clockwise).
    #[serde(default)]
    pub heading_deg: f64,
    #[serde(default)]
    pub jitter: Jitter,
}

/// An obstacle class as written in a scenario file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClassName {
    Pedestrian,
    Cyclist,
    Vehicle,
    Debris,
    Animal,
}

impl From<ClassName> for ObstacleClass {
    fn from(c: ClassName) -> Self {
        match c {
            ClassName::Pedestrian => ObstacleClass::Pedestrian,
            ClassName::Cyclist => ObstacleClass::Cyclist,
            ClassName::Vehicle => ObstacleClass::Vehicle,
            ClassName::Debris => ObstacleClass::Debris,
            ClassName::Animal => ObstacleClass::Animal,
        }
    }
}

/// The built-in scenarios: (name, TOML source).
pub const BUILTINS: &[(&str, &str)] = &[
    ("pedestrian-crossing", include_str!("../scenarios/pedestrian-crossing.toml")),
    ("stopped-vehicle", include_str!("../scenarios/stopped-vehicle.toml")),
    ("cyclist-merge", include_str!("../scenarios/cyclist-merge.toml")),
    ("debris", include_str!("../scenarios/debris.toml")),
    ("clear-road", include_str!("../scenarios/clear-road.toml")),
    ("urban-dense", include_str!("../scenarios/urban-dense.toml")),
    ("animal-crossing", include_str!("../scenarios/animal-crossing.toml")),
];

impl Scenario {
    /// Parses and validates a scenario from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)
            .map_err(|e| ScenarioError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        scenario.validate(origin)?;
        Ok(scenario)
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, text)| Self::from_toml(text, &format!("built-in `{n}`")).ok())
    }

    /// A built-in by name, else a TOML file at that path.
    pub fn load(name_or_path: &str) -> Result<Self, ScenarioError> {
        if let Some(s) = Self::builtin(name_or_path) {
            return Ok(s);
        }
        let path = Path::new(name_or_path);
        let looks_like_path = name_or_path.ends_with(".toml") || name_or_path.contains('/');
        if !path.exists() && !looks_like_path {
            let known = BUILTINS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
            return Err(ScenarioError::Unknown { name: name_or_path.to_string(), known });
        }
        let text = vigil_core::bounded::read_text(path, vigil_core::bounded::MAX_TEXT_BYTES)
            .map_err(|source| ScenarioError::Io { path: name_or_path.to_string(), source })?;
        Self::from_toml(&text, name_or_path)
    }

    fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let bad =
            |field: String, problem: String| ScenarioError::Invalid { origin: origin.to_string(), field, problem };
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field.to_string(), format!("must be a positive number, found {v}")))
            }
        };
        let non_negative = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field.to_string(), format!("must be zero or more, found {v}")))
            }
        };
        let range = |field: &str, r: Range2| {
            if r[0].is_finite() && r[1].is_finite() && r[0] <= r[1] && r[0] >= 0.0 {
                Ok(())
            } else {
                Err(bad(field.to_string(), format!("must be [low, high] with 0 <= low <= high, found {r:?}")))
            }
        };
        positive("duration_s", self.duration_s)?;
        if self.road.lanes == 0 || self.road.lanes > 8 {
            return Err(bad("road.lanes".into(), format!("must be 1..=8, found {}", self.road.lanes)));
        }
        if self.road.ego_lane >= self.road.lanes {
            return Err(bad(
                "road.ego_lane".into(),
                format!("must be below road.lanes ({}), found {}", self.road.lanes, self.road.ego_lane),
            ));
        }
        positive("road.lane_width_m", self.road.lane_width_m)?;
        non_negative("road.shoulder_m", self.road.shoulder_m)?;
        non_negative("ego.speed_mps", self.ego.speed_mps)?;
        positive("ego.max_accel_mps2", self.ego.max_accel_mps2)?;
        positive("ego.max_decel_mps2", self.ego.max_decel_mps2)?;
        positive("ego.lateral_speed_mps", self.ego.lateral_speed_mps)?;
        positive("ego.length_m", self.ego.length_m)?;
        positive("ego.width_m", self.ego.width_m)?;
        range("environment.light", self.environment.light)?;
        range("environment.camera_noise", self.environment.camera_noise)?;
        non_negative("environment.radar_clutter_per_scan", self.environment.radar_clutter_per_scan)?;
        for (i, o) in self.obstacles.iter().enumerate() {
            let f = |name: &str| format!("obstacles[{i}].{name}");
            non_negative(&f("speed_mps"), o.speed_mps)?;
            non_negative(&f("start_time_s"), o.start_time_s)?;
            if !o.start.iter().all(|v| v.is_finite()) || !o.path.iter().flatten().all(|v| v.is_finite()) {
                return Err(bad(f("path"), "coordinates must be finite numbers".into()));
            }
            if !o.path.is_empty() && o.speed_mps == 0.0 {
                return Err(bad(f("speed_mps"), "must be positive when a path is given".into()));
            }
            non_negative(&f("jitter.along_m"), o.jitter.along_m)?;
            non_negative(&f("jitter.lateral_m"), o.jitter.lateral_m)?;
            non_negative(&f("jitter.time_s"), o.jitter.time_s)?;
            non_negative(&f("jitter.speed"), o.jitter.speed)?;
        }
        self.sensors.validate().map_err(|(field, problem)| bad(format!("sensors.{field}"), problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, text) in BUILTINS {
            let s = Scenario::from_toml(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s.name, name);
        }
        assert!(BUILTINS.len() >= 6);
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let err = Scenario::load("no-such-scenario").unwrap_err().to_string();
        assert!(err.contains("unknown scenario `no-such-scenario`"), "{err}");
        assert!(err.contains("pedestrian-crossing"), "{err}");
    }

    #[test]
    fn malformed_toml_names_line_and_field() {
        let text = "name = \"x\"\ndescription = \"y\"\n\n[ego]\nspeeed_mps = 3.0\n";
        let err = Scenario::from_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("speeed_mps"), "{err}");
        let text = "name = \"x\"\ndescription = \"y\"\n[[obstacles]]\nclass = \"pedestrian\"\nstart = [1.0, 2.0]\nspeed_mps = \"fast\"\n";
        let err = Scenario::from_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("line 6") && err.contains("speed_mps"), "{err}");
        let text = "name = \"x\"\ndescription = \"y\"\n[[obstacles]]\nclass = \"truck\"\nstart = [1.0, 2.0]\n";
        let err = Scenario::from_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("truck"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let text = "name = \"x\"\ndescription = \"y\"\n[[obstacles]]\nclass = \"pedestrian\"\nstart = [1.0, 2.0]\nspeed_mps = -1.0\n";
        let err = Scenario::from_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("obstacles[0].speed_mps"), "{err}");
        let text = "name = \"x\"\ndescription = \"y\"\n[road]\nlanes = 2\nego_lane = 3\n";
        let err = Scenario::from_toml(text, "bad.toml").unwrap_err().to_string();
        assert!(err.contains("road.ego_lane"), "{err}");
    }
}
