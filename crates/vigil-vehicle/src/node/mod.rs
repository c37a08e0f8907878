//! The vehicle node: actix actors from the sensor bus to the ego controls.
//!
//! ```text
//! zenoh ─▶ Ingest (one per stream) ─▶ TelemetrySpool ─▶ TelemetryLog
//!          │ camera pixels ─▶ FrameStore (once; the log record and tasks refer to it)
//!          └─▶ Fusion (tracks, TTC, lanes) ─▶ Dispatcher ─▶ TaskTransport
//!                 TaskTransport replies ─▶ RecommendationHandler ─▶ ControlCommand (to the ego)
//! ```
//!
//! Every actor reads the [`Clock`] it is given. Mailboxes are bounded and every hop uses
//! `send(..).await` inside `ctx.wait`, so a slow stage stops its upstream from pulling
//! (backpressure reaches the zenoh subscriber, whose bounded channel makes zenoh block
//! the publisher): nothing is dropped, memory stays bounded.

mod control;
mod dispatcher;
mod events;
mod fusion;
mod handler;
mod ingest;
mod stats;
mod wiring;

use std::sync::Arc;

use actix::prelude::*;
use vigil_bus::{FrameStore, TaskTransport, TelemetryLog};
use vigil_core::{Clock, Nanos, RunId, VehicleId};
use vigil_proto::v1;
pub use vigil_proto::wire::{DEFAULT_TASK_BUDGET_NS, Stream, control_key};

pub use self::control::ControlCommand;
pub use self::dispatcher::{Dispatcher, Outstanding};
pub use self::fusion::{
    EARLY_TTC_S, Fusion, MIN_HITS_FOR_VELOCITY, NoCamera, RaiseTask, TrackSettled, priority_for_ttc, reply_address,
    task_id,
};
pub use self::handler::{HOLD_NS, RecommendationHandler};
pub use self::ingest::Ingest;
pub use self::stats::{Latencies, LatencyMark, LatencySummary, NodeStats};
pub use self::wiring::{NodeHandle, SensorInputs, start_node};
pub use crate::spool::{SpoolConfig, TelemetrySpool, ToLog};

/// What the vehicle calls a stream in its reports and options: from the ground-truth
/// stream it reads only the ego pose, its localization.
pub fn stream_label(stream: Stream) -> &'static str {
    match stream {
        Stream::GroundTruth => "localization",
        s => s.name(),
    }
}

/// Lanes the vehicle knows from its map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoadMap {
    pub lanes: u32,
    pub lane_width_m: f64,
}

/// Vehicle node settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub vehicle: VehicleId,
    /// This process's run: task ids and frame keys carry it.
    pub run: RunId,
    /// Deadline = capture time + this.
    pub task_budget_ns: Nanos,
    /// With no recommendation by the deadline, brake if the TTC is below this.
    pub fallback_ttc_s: f64,
    /// A threat whose newest camera frame is older than this (or 1.5 camera periods, if
    /// longer) gets the fallback at once instead of a task on a stale crop.
    pub max_camera_age_ns: Nanos,
    /// Telemetry waiting for the log: memory, then disk, then dropped (counted).
    pub spool: SpoolConfig,
    /// Off: ingest and log only, no detection and no tasks.
    pub perception: bool,
    pub mailbox: usize,
    pub road: RoadMap,
    /// What a reply must prove before its recommendation is applied.
    pub trust: vigil_bus::trust::ReplyTrust,
}

impl NodeConfig {
    pub fn new(vehicle: VehicleId, run: RunId, road: RoadMap) -> Self {
        Self {
            vehicle,
            run,
            task_budget_ns: DEFAULT_TASK_BUDGET_NS,
            fallback_ttc_s: 3.0,
            max_camera_age_ns: 150_000_000,
            spool: SpoolConfig::default(),
            perception: true,
            mailbox: 16,
            road,
            trust: Default::default(),
        }
    }
}

/// What a node needs from the outside.
#[derive(Debug, Clone)]
pub struct NodeDeps {
    pub clock: Arc<dyn Clock>,
    pub log: Arc<dyn TelemetryLog>,
    pub frames: Arc<dyn FrameStore>,
    pub tasks: Arc<dyn TaskTransport>,
    pub control: std::sync::mpsc::Sender<ControlCommand>,
    pub stats: Arc<NodeStats>,
}

/// One decoded frame moving through the node.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: Stream,
    pub envelope: Arc<v1::Envelope>,
    pub ingest_ns: Nanos,
    /// Camera frames: the stored pixels workers fetch (set by ingest once stored).
    pub frame_ref: Option<v1::BlobRef>,
}

impl Message for Frame {
    type Result = ();
}

impl Frame {
    pub(super) fn header(&self) -> Option<&v1::Header> {
        self.envelope.header.as_ref()
    }
    pub(super) fn capture_ns(&self) -> Nanos {
        self.header().map_or(0, |h| h.capture_time_ns)
    }
}
