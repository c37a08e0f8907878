//! `vigil-sim`: the sensor simulator that stands in for the hardware.
//!
//! A [`scenario::Scenario`] (built-in or TOML) describes a road, the ego vehicle and the
//! obstacles; a [`sim::VehicleSim`] turns it into lidar, camera, radar and ground-truth
//! messages (protobuf envelopes) exactly as drivers would publish them, deterministically
//! for a seed. The simulator does no I/O beyond snapshots: publishing on the zenoh bus
//! is the caller's job (`vigil sim --publish`).

pub mod appearance;
pub mod camera;
pub mod lidar;
pub mod radar;
pub mod rng;
pub mod samples;
pub mod scenario;
pub mod sensors;
pub mod sim;
pub mod snapshot;
pub mod sprites;
pub mod world;

pub use scenario::{Scenario, ScenarioError};
pub use sim::{FleetRun, SimMessage, SimStats, Stream, VehicleSim, run_fleet};
pub use world::{EgoControl, World};
