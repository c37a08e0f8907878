//! `vigil-replay`: a recorded drive through the same vehicle actors and vision workers,
//! on a replay clock, deterministically.
//!
//! The recorded telemetry (lidar, camera, radar, ground truth) is published on a zenoh
//! bus exactly where the sensors would, one capture instant at a time, in lockstep: the
//! clock ([`ManualClock`]) stands at the instant's recorded capture time while every frame
//! of it is ingested and every task it raised is answered or has fallen back, and moves
//! only to the next instant. No pipeline logic reads the wall clock, so the same input and
//! model give the same tasks and recommendations, bit for bit (`recommendations_digest`).
//! `speed` paces the instants to a multiple of real time; without it the replay runs as
//! fast as the pipeline allows.
//!
//! The report compares the replay's recommendations with those recorded at the time (same
//! task ids: detection and tracking do not depend on the model), and, where the drive
//! carries simulator ground truth, scores both against it: misses (an obstacle the model
//! called `none`), false alarms (a box over no obstacle that the model called one) and
//! wrong classes.

//!
//! The steps, a module each: [`drive`] (reading a drive from MCAP or Kafka), `feed` (the
//! lockstep loop through the actors), `collect` (reading back what was logged and what
//! was recorded), `diff` (digest, diff, score against ground truth), [`timeline`] (the
//! PNG) and `export` (the dataset).

mod collect;
mod diff;
pub mod drive;
mod export;
mod feed;
mod kafka;
mod replay;
pub mod report;
mod score;
pub mod timeline;
mod truth;

pub use drive::{Drive, DriveStream, Recorded, StreamCounters};
pub use kafka::Written;
pub use replay::replay;
pub use report::{
    Change, GroundTruthDiff, ReadReport, ReplayConfig, ReplayDiff, ReplayModel, ReplayReport, ReplayTasks, Score,
};

/// Why a drive could not be read, replayed or drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The drive, the window or a setting cannot be replayed as given.
    #[error("{0}")]
    Input(String),
    /// The replay itself failed (a reader thread, the actors not settling).
    #[error("replay: {0}")]
    Replay(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error(transparent)]
    Pipeline(#[from] vigil_pipeline::RunError),
    #[error("cannot load the model: {0} (train one with `vigil train`, or pass --model DIR)")]
    Model(#[from] vigil_vision::VisionError),
    #[error("sensor bus: {0}")]
    Bus(#[from] vigil_bus::BusError),
    #[error("transport: {0}")]
    Transport(#[from] vigil_bus::TransportError),
    #[error("replay: {0}")]
    Feed(#[from] vigil_pipeline::feed::FeedError),
}

fn bad(what: impl Into<String>) -> ReplayError {
    ReplayError::Input(what.into())
}
