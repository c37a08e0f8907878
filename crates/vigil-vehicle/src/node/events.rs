//! The node's internal events, in the vector style: each counts itself in [`NodeStats`]
//! and logs in one call, so a counter and its log line cannot drift apart.

use std::fmt::Display;

use vigil_bus::TransportError;
use vigil_bus::task::QueueError;

use super::stats::{NodeStats, inc};

/// Something that happened inside a vehicle node: counted, then logged.
pub(crate) trait InternalEvent {
    fn emit(self, stats: &NodeStats);
}

/// Why a sensor frame was dropped at ingest.
pub(crate) enum Rejection<'a> {
    /// It decoded, but carries another stream's payload.
    WrongStream(&'a str),
    Undecodable(&'a dyn Display),
    /// Its envelope names another vehicle than the key it came on.
    ForeignVehicle(&'a str),
}

/// A sensor frame dropped at ingest (counted in `rejected`).
pub(crate) struct FrameRejected<'a> {
    pub key: &'a str,
    pub why: Rejection<'a>,
}

impl InternalEvent for FrameRejected<'_> {
    fn emit(self, stats: &NodeStats) {
        inc(&stats.rejected);
        match self.why {
            Rejection::WrongStream(stream) => {
                tracing::warn!(key = %self.key, stream, "wrong payload for this stream; dropped and counted")
            }
            Rejection::Undecodable(error) => {
                tracing::warn!(key = %self.key, error = %error, "undecodable frame; dropped and counted")
            }
            Rejection::ForeignVehicle(vehicle) => {
                let vehicle: String = vehicle.chars().take(80).collect();
                tracing::warn!(key = %self.key, %vehicle, "frame of another vehicle on this one's key; dropped and counted")
            }
        }
    }
}

/// The task transport refused a task: it falls back. A full queue is load shedding,
/// counted but not logged as an error.
pub(crate) struct TaskRefused<'a> {
    pub error: &'a TransportError,
}

impl InternalEvent for TaskRefused<'_> {
    fn emit(self, stats: &NodeStats) {
        inc(&stats.tasks_refused);
        if !matches!(self.error, TransportError::Queue(QueueError::Full { .. })) {
            tracing::error!(error = %self.error, "task publish failed; falling back");
        }
    }
}

/// A threat with no fresh camera crop to ask a worker about.
pub(crate) struct NoCameraFallback {
    pub track: u32,
    pub ttc_s: f64,
}

impl InternalEvent for NoCameraFallback {
    fn emit(self, stats: &NodeStats) {
        inc(&stats.no_camera);
        tracing::debug!(track = self.track, ttc = self.ttc_s, "threat with no fresh camera crop: fallback");
    }
}

/// A believed radar-only object in the path made the node slow down or brake.
pub(crate) struct CautionApplied<'a> {
    pub caution: &'a super::fusion::Caution,
}

impl InternalEvent for CautionApplied<'_> {
    fn emit(self, stats: &NodeStats) {
        inc(&stats.cautions);
        let c = self.caution;
        if c.action == vigil_core::policy::Action::Brake {
            inc(&stats.caution_brakes);
        }
        tracing::debug!(
            watch = c.watch_id,
            action = c.action.name(),
            range = c.range_m,
            needed_decel = c.required_decel_mps2,
            "radar-only object in the path: caution"
        );
    }
}

/// A reply refused by the trust checks: it commands nothing (its task, if real, is
/// answered by a genuine reply or falls back at its deadline).
pub(crate) struct ReplyRejected<'a> {
    pub why: vigil_bus::trust::Rejection,
    pub correlation_id: &'a str,
    pub publisher: Option<&'a str>,
}

impl InternalEvent for ReplyRejected<'_> {
    fn emit(self, stats: &NodeStats) {
        inc(&stats.rejected_replies[self.why.index()]);
        let task: String = self.correlation_id.chars().take(80).collect();
        let publisher: String = self.publisher.unwrap_or("(not vouched for)").chars().take(80).collect();
        tracing::warn!(reason = self.why.name(), task = %task, publisher = %publisher, "reply refused; counted");
    }
}
