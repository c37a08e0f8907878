//! Vigil's domain vocabulary, shared by every crate: obstacle classes, vehicle ids,
//! clocks and the run digest. No transports and no wire types here; the only I/O is the
//! bounded read of a user's file ([`bounded`]).

pub mod bounded;
mod clock;
mod digest;
pub mod policy;

pub use clock::{Clock, ManualClock, Nanos, WallClock};
pub use digest::Digest;

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an obstacle is. `None` is the "not an obstacle" class of the vision model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObstacleClass {
    Pedestrian,
    Cyclist,
    Vehicle,
    Debris,
    Animal,
    None,
}

impl ObstacleClass {
    /// The five real obstacle classes, in a fixed order.
    pub const OBSTACLES: [ObstacleClass; 5] = [
        ObstacleClass::Pedestrian,
        ObstacleClass::Cyclist,
        ObstacleClass::Vehicle,
        ObstacleClass::Debris,
        ObstacleClass::Animal,
    ];
    /// All classes the vision model predicts, in its output order.
    pub const ALL: [ObstacleClass; 6] = [
        ObstacleClass::Pedestrian,
        ObstacleClass::Cyclist,
        ObstacleClass::Vehicle,
        ObstacleClass::Debris,
        ObstacleClass::Animal,
        ObstacleClass::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObstacleClass::Pedestrian => "pedestrian",
            ObstacleClass::Cyclist => "cyclist",
            ObstacleClass::Vehicle => "vehicle",
            ObstacleClass::Debris => "debris",
            ObstacleClass::Animal => "animal",
            ObstacleClass::None => "none",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(Self::ALL.len() - 1)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ObstacleClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A vehicle's id, `veh-NNNN` for simulated vehicles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VehicleId(pub String);

impl VehicleId {
    /// The id of the `index`-th simulated vehicle.
    pub fn simulated(index: usize) -> Self {
        VehicleId(format!("veh-{index:04}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VehicleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One run of a vehicle or worker process: every identity a worker, a store or a replay
/// keys on (task ids, frame keys, the drive in Kafka) carries it, so nothing repeats
/// across processes, restarts or machines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh UUIDv7: time-ordered (runs sort by start) and random in its low bits.
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().simple().to_string())
    }

    /// A run id derived from `seed`, for runs that must be reproducible bit for bit (a
    /// simulated drive on the embedded transports, a replay): the same seed gives the
    /// same id, and it never leaves the process.
    pub fn reproducible(seed: u64) -> Self {
        RunId(format!("sim{:016x}", derive_seed(seed, 0x0052_554e_4944)))
    }

    /// An id read back from the log. Ids are at most 64 characters of `[0-9A-Za-z_-]`
    /// (they go into keys, paths and broker names).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("`{s}` is not a run id (1-64 characters of 0-9, A-Z, a-z, `-` and `_`)"));
        }
        Ok(RunId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Derives the seed of one member of a family (a vehicle of a fleet, a worker) from a
/// base seed, so that members are independent yet reproducible.
pub fn derive_seed(base: u64, index: u64) -> u64 {
    // SplitMix64 finaliser over (base, index).
    let mut z = base ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for c in ObstacleClass::ALL {
            assert_eq!(ObstacleClass::from_name(c.name()), Some(c));
            assert_eq!(ObstacleClass::ALL[c.index()], c);
        }
        assert_eq!(ObstacleClass::from_name("truck"), None);
    }

    #[test]
    fn run_ids_are_unique_and_parse_back() {
        let ids: std::collections::HashSet<RunId> = (0..1000).map(|_| RunId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(3) {
            assert_eq!(RunId::parse(id.as_str()).as_ref(), Ok(id));
        }
        assert_eq!(RunId::reproducible(7), RunId::reproducible(7));
        assert_ne!(RunId::reproducible(7), RunId::reproducible(8));
        assert!(RunId::parse("a/b").is_err());
        assert!(RunId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn derived_seeds_differ() {
        let a: Vec<u64> = (0..16).map(|i| derive_seed(7, i)).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(a.len(), b.len());
        assert_ne!(derive_seed(7, 0), derive_seed(8, 0));
    }
}
