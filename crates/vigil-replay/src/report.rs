//! What a replay reports: its settings, tasks, recommendations, the diff against the
//! recording and the score against ground truth.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use vigil_core::Nanos;
use vigil_vehicle::node::RoadMap;
use vigil_vision::batcher::BatcherConfig;

use crate::timeline::Timeline;

/// What `vigil replay` is told.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub model_dir: PathBuf,
    pub road: RoadMap,
    /// A multiple of real time; `None`: as fast as the pipeline goes.
    pub speed: Option<f64>,
    pub workers: usize,
    pub batcher: BatcherConfig,
    pub task_budget_ns: Nanos,
    /// Write labelled crops of every task here (the dataset format of `vigil train`).
    pub export_dataset: Option<PathBuf>,
    /// With ground truth in the drive, also export every visible object of every n-th
    /// camera frame (0: tasks only). Tasks alone are few; the objects are the bulk of a
    /// training set.
    pub export_objects_every: u64,
    /// Counts the read as it goes (bytes, capture time reached), for a progress bar.
    pub progress: Option<Arc<crate::drive::StreamCounters>>,
    /// Serve the Foxglove live view while replaying (`--foxglove`; with `--speed 1` it
    /// plays at the pace it was recorded).
    pub live: Option<vigil_bus::live::LiveConfig>,
}

/// The model a replay ran.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayModel {
    pub name: String,
    pub version: String,
    pub dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayTasks {
    pub raised: u64,
    pub completed: u64,
    pub fallback: u64,
}

/// Scores against ground truth.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Score {
    /// Tasks whose box matched a ground-truth object (or none) and that got a recommendation.
    pub labelled: u64,
    pub correct: u64,
    /// An obstacle predicted as `none`.
    pub misses: u64,
    /// No obstacle under the box, predicted as one.
    pub false_alarms: u64,
    /// An obstacle predicted as another obstacle class.
    pub wrong_class: u64,
}

/// How a drive was read: compressed bytes, messages passed on, and those left out.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReadReport {
    pub bytes: u64,
    /// Records read from the source, the drive's or not (Kafka: with the bisection's probes).
    pub records_read: u64,
    /// Messages of the drive passed on to the replay.
    pub messages: u64,
    /// Re-sent copies dropped.
    pub duplicates: u64,
    /// Recorded further out of capture order than the look-ahead: left out.
    pub late: u64,
    /// Without a readable header: left out.
    pub unreadable: u64,
    /// Claiming a vehicle the drive does not have: left out.
    pub foreign_vehicle: u64,
    /// On a recording's channels of another schema (not `vigil.v1.Envelope`): not read.
    pub other_channels: u64,
}

impl ReadReport {
    pub(crate) fn of(c: &crate::drive::StreamCounters) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            bytes: c.bytes_read(),
            records_read: c.records_read.load(Relaxed),
            messages: c.messages.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            late: c.late.load(Relaxed),
            unreadable: c.unreadable.load(Relaxed),
            foreign_vehicle: c.foreign_vehicle.load(Relaxed),
            other_channels: c.other_channels(),
        }
    }
}

/// One recommendation that changed.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub task_id: String,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
    pub truth: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayDiff {
    /// Recommendations recorded at the time.
    pub recorded: u64,
    /// Tasks with a recommendation both then and now.
    pub compared: u64,
    /// Of those, a different action or class.
    pub changed: u64,
    pub only_recorded: u64,
    pub only_replayed: u64,
    /// The first changes, in task order.
    pub examples: Vec<Change>,
    /// With simulator ground truth in the drive.
    pub ground_truth: Option<GroundTruthDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroundTruthDiff {
    pub recorded: Score,
    pub replayed: Score,
    /// Missed now, not then.
    pub new_misses: u64,
    pub new_false_alarms: u64,
    /// Missed then, not now.
    pub fixed_misses: u64,
    pub fixed_false_alarms: u64,
}

/// What `vigil replay --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub drive: String,
    pub vehicles: Vec<String>,
    pub model: ReplayModel,
    /// Frames replayed per stream.
    pub frames: BTreeMap<String, u64>,
    pub tasks: ReplayTasks,
    pub recommendations: u64,
    pub by_action: BTreeMap<String, u64>,
    /// Hash of the ordered (task id, action, class) list.
    pub recommendations_digest: String,
    /// The same digest of the recommendations the drive recorded (the live run's): equal
    /// to `recommendations_digest` when the replay decided as the drive did.
    pub recorded_digest: String,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// sim_seconds / wall_seconds.
    pub speed_factor: f64,
    pub diff: ReplayDiff,
    /// Crops written with `export_dataset`.
    pub exported: u64,
    /// How the drive was read.
    pub read: ReadReport,
    /// What `timeline_png` draws (not printed).
    #[serde(skip)]
    pub timeline: Timeline,
}
