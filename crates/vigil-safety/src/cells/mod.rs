//! The cells of the matrix, generated from parameters as scenario files in the
//! documented format (`simulator/README.md`): a cell is its TOML text, so a file written
//! by `vigil safety --write-scenarios` and run with `--scenario` is the same drive.
//!
//! Euro NCAP's AEB protocols are the anchor: Car-to-Car Rear stationary (CCRs, 10–80 km/h,
//! overlap 50/75/100 %) and moving (CCRm, target at 20 km/h); pedestrians crossing from
//! the near and the far side, a child stepping out from behind a parked car, a pedestrian
//! walking along the lane; a cyclist crossing and riding along. Beyond NCAP: 100–130 km/h
//! with a stopped car and with debris, an animal, night and fog-like low light, and a
//! nuisance set that must not make the car brake.
//!
//! Every hazard is placed so that, unbraked, the ego meets it: a static target at
//! 6 s time to reach (at least 30 m), a crossing one timed to be in the ego's path when
//! the ego gets there. And so that a car could avoid it: a crossing hazard is in view
//! and moving before the ego is closer than it needs to stop. Small jitter per seed
//! moves where and when.

use serde::Serialize;

/// What a cell puts in front of the ego.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Car-to-Car Rear stationary, with the lateral overlap in percent.
    CcrStationary(u8),
    /// Car-to-Car Rear moving: the target drives at 20 km/h.
    CcrMoving,
    PedestrianNearSide,
    PedestrianFarSide,
    /// A child steps out from behind a parked car.
    ChildBehindCar,
    PedestrianAlongLane,
    CyclistCrossing,
    CyclistAlongLane,
    HighwayStoppedCar,
    HighwayDebris,
    Animal,
    /// A pedestrian crossing at night.
    NightPedestrian,
    /// A stopped car in fog-like low light (dark, noisy camera).
    LowLightStoppedCar,
    /// Nuisance: pedestrians walking on both sidewalks.
    SidewalkPedestrians,
    /// Nuisance: cars parked on the shoulder.
    ParkedCars,
    /// Nuisance: oncoming traffic in the other lane.
    OncomingTraffic,
    /// Nuisance: a faster car overtaking in the other lane.
    Overtaking,
    /// Nuisance: guard rails and heavy radar clutter.
    RailsAndClutter,
    /// A scenario file added with `--scenario` (hazardous) or `--nuisance`.
    Added {
        hazardous: bool,
    },
}

impl Family {
    /// Every family, in the heatmap's row order.
    pub const ALL: [Family; 20] = [
        Family::CcrStationary(100),
        Family::CcrStationary(75),
        Family::CcrStationary(50),
        Family::CcrMoving,
        Family::PedestrianNearSide,
        Family::PedestrianFarSide,
        Family::ChildBehindCar,
        Family::PedestrianAlongLane,
        Family::CyclistCrossing,
        Family::CyclistAlongLane,
        Family::HighwayStoppedCar,
        Family::HighwayDebris,
        Family::Animal,
        Family::NightPedestrian,
        Family::LowLightStoppedCar,
        Family::SidewalkPedestrians,
        Family::ParkedCars,
        Family::OncomingTraffic,
        Family::Overtaking,
        Family::RailsAndClutter,
    ];

    /// The cell id's stem and the heatmap's row label.
    pub fn name(self) -> String {
        match self {
            Family::CcrStationary(o) => format!("ccrs-{o}"),
            Family::CcrMoving => "ccrm".into(),
            Family::PedestrianNearSide => "ped-near".into(),
            Family::PedestrianFarSide => "ped-far".into(),
            Family::ChildBehindCar => "child-behind-car".into(),
            Family::PedestrianAlongLane => "ped-along".into(),
            Family::CyclistCrossing => "cyclist-crossing".into(),
            Family::CyclistAlongLane => "cyclist-along".into(),
            Family::HighwayStoppedCar => "highway-car".into(),
            Family::HighwayDebris => "highway-debris".into(),
            Family::Animal => "animal".into(),
            Family::NightPedestrian => "night-ped".into(),
            Family::LowLightStoppedCar => "low-light-car".into(),
            Family::SidewalkPedestrians => "nuisance-sidewalk".into(),
            Family::ParkedCars => "nuisance-parked".into(),
            Family::OncomingTraffic => "nuisance-oncoming".into(),
            Family::Overtaking => "nuisance-overtaking".into(),
            Family::RailsAndClutter => "nuisance-rails".into(),
            Family::Added { .. } => "added".into(),
        }
    }

    /// The class of the hazard the cell is about (none for the nuisance set).
    pub fn class(self) -> Option<&'static str> {
        Some(match self {
            Family::CcrStationary(_) | Family::CcrMoving | Family::HighwayStoppedCar | Family::LowLightStoppedCar => {
                "vehicle"
            }
            Family::PedestrianNearSide
            | Family::PedestrianFarSide
            | Family::ChildBehindCar
            | Family::PedestrianAlongLane
            | Family::NightPedestrian => "pedestrian",
            Family::CyclistCrossing | Family::CyclistAlongLane => "cyclist",
            Family::HighwayDebris => "debris",
            Family::Animal => "animal",
            _ => return None,
        })
    }

    /// Whether the ego meets something it must avoid (else: nothing should make it brake).
    pub fn hazardous(self) -> bool {
        if let Family::Added { hazardous } = self {
            return hazardous;
        }
        !matches!(
            self,
            Family::SidewalkPedestrians
                | Family::ParkedCars
                | Family::OncomingTraffic
                | Family::Overtaking
                | Family::RailsAndClutter
        )
    }

    /// The ego speeds of this family's cells, km/h.
    pub fn speeds(self) -> &'static [u32] {
        match self {
            Family::CcrStationary(100) => &[10, 20, 30, 40, 50, 60, 70, 80],
            Family::CcrStationary(_) => &[10, 30, 50, 80],
            Family::CcrMoving => &[30, 50, 80],
            Family::PedestrianNearSide | Family::PedestrianFarSide | Family::PedestrianAlongLane => &[20, 40, 60],
            Family::ChildBehindCar => &[20, 40],
            Family::CyclistCrossing => &[20, 40, 60],
            Family::CyclistAlongLane => &[30, 50, 80],
            Family::HighwayStoppedCar | Family::HighwayDebris => &[100, 115, 130],
            Family::Animal => &[50, 80, 100],
            Family::NightPedestrian => &[30, 50],
            Family::LowLightStoppedCar => &[50, 80],
            Family::SidewalkPedestrians | Family::ParkedCars => &[30, 50],
            Family::OncomingTraffic => &[50, 80],
            Family::Overtaking => &[80, 100],
            Family::RailsAndClutter => &[80, 130],
            Family::Added { .. } => &[],
        }
    }
}

/// One cell: a family at one ego speed.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `<family>-<speed>kmh`, e.g. `ccrs-75-50kmh`.
    pub id: String,
    pub family: Family,
    pub speed_kmh: u32,
    pub hazardous: bool,
    /// The scenario, in the documented TOML format.
    #[serde(skip)]
    pub toml: String,
}

impl Cell {
    /// A scenario file as a cell of the run: named by the scenario, at its ego speed.
    pub fn added(scenario: &vigil_sim::Scenario, toml: String, hazardous: bool) -> Self {
        Self {
            id: scenario.name.clone(),
            family: Family::Added { hazardous },
            speed_kmh: (scenario.ego.speed_mps * 3.6).round() as u32,
            hazardous,
            toml,
        }
    }
}

/// Every cell of the matrix.
pub fn matrix() -> Vec<Cell> {
    Family::ALL.iter().flat_map(|f| f.speeds().iter().map(move |&v| cell(*f, v))).collect()
}

/// A representative subset (one or two speeds per kind of hazard, and the nuisance set)
/// that runs in a few minutes.
pub fn quick() -> Vec<Cell> {
    [
        (Family::CcrStationary(100), 50),
        (Family::CcrStationary(50), 80),
        (Family::CcrMoving, 50),
        (Family::PedestrianNearSide, 40),
        (Family::PedestrianFarSide, 40),
        (Family::ChildBehindCar, 20),
        (Family::CyclistCrossing, 40),
        (Family::HighwayStoppedCar, 115),
        (Family::HighwayDebris, 130),
        (Family::Animal, 80),
        (Family::NightPedestrian, 50),
        (Family::SidewalkPedestrians, 50),
        (Family::ParkedCars, 30),
        (Family::OncomingTraffic, 80),
        (Family::RailsAndClutter, 130),
    ]
    .into_iter()
    .map(|(f, v)| cell(f, v))
    .collect()
}

/// Lane width and the ego's width (as in the simulator's defaults).
const LANE_W: f64 = 3.5;
const EGO_W: f64 = 1.9;

mod toml;
use toml::scenario_toml;

/// The cell of `family` at `speed_kmh`.
pub fn cell(family: Family, speed_kmh: u32) -> Cell {
    let v = speed_kmh as f64 / 3.6;
    let toml = scenario_toml(family, speed_kmh, v);
    Cell { id: format!("{}-{speed_kmh}kmh", family.name()), family, speed_kmh, hazardous: family.hazardous(), toml }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_is_a_valid_scenario_of_its_own_name() {
        let cells = matrix();
        assert!(cells.len() >= 50, "{} cells", cells.len());
        let mut ids = std::collections::HashSet::new();
        for c in &cells {
            let s =
                vigil_sim::Scenario::from_toml(&c.toml, &c.id).unwrap_or_else(|e| panic!("{}: {e}\n{}", c.id, c.toml));
            assert_eq!(s.name, c.id);
            assert!((s.ego.speed_mps * 3.6 - c.speed_kmh as f64).abs() < 0.01, "{}", c.id);
            assert!(ids.insert(c.id.clone()), "duplicate {}", c.id);
            assert_eq!(c.hazardous, !s.obstacles.is_empty() && c.family.hazardous(), "{}", c.id);
        }
        for q in quick() {
            assert!(ids.contains(&q.id), "quick cell {} is in the matrix", q.id);
        }
    }

    #[test]
    fn a_static_hazard_is_in_the_ego_path_and_out_of_reach_at_the_start() {
        for c in matrix().iter().filter(|c| matches!(c.family, Family::CcrStationary(_) | Family::HighwayStoppedCar)) {
            let s = vigil_sim::Scenario::from_toml(&c.toml, &c.id).unwrap();
            let o = &s.obstacles[0];
            let lane_y = s.road.lane_center(s.road.ego_lane);
            assert!((o.start[1] - lane_y).abs() < EGO_W, "{}: lateral {}", c.id, o.start[1]);
            // Unbraked, the ego reaches it before the drive ends.
            assert!(o.start[0] / s.ego.speed_mps + 1.0 < s.duration_s, "{}", c.id);
            assert!(o.start[0] >= 30.0, "{}", c.id);
        }
    }
}
