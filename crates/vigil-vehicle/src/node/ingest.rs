//! One actor per sensor stream: strict decoding, sequence gaps, the camera frame's one
//! store write, then the telemetry spool and fusion.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use vigil_bus::{BusSample, FrameStore, frame_key};
use vigil_core::{Clock, RunId, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};

use super::events::{FrameRejected, InternalEvent, Rejection};
use super::fusion::Fusion;
use super::stats::{NodeStats, inc};
use super::{Frame, NodeConfig, NodeDeps, Stream, TelemetrySpool, ToLog};

/// Validates and stamps one sensor stream; hands each frame to the telemetry spool and
/// to fusion (camera frames stored first: a task refers to them by key).
#[derive(Debug)]
pub struct Ingest {
    kind: Stream,
    vehicle: VehicleId,
    run: RunId,
    clock: Arc<dyn Clock>,
    stats: Arc<NodeStats>,
    telemetry: TelemetrySpool,
    frames: Arc<dyn FrameStore>,
    fusion: Option<Addr<Fusion>>,
    next_seq: HashMap<String, u64>,
    mailbox: usize,
}

impl Actor for Ingest {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Ingest {
    pub(super) fn new(
        kind: Stream,
        cfg: &NodeConfig,
        deps: &NodeDeps,
        telemetry: TelemetrySpool,
        fusion: Option<Addr<Fusion>>,
    ) -> Self {
        Self {
            kind,
            vehicle: cfg.vehicle.clone(),
            run: cfg.run.clone(),
            clock: deps.clock.clone(),
            stats: deps.stats.clone(),
            telemetry,
            frames: deps.frames.clone(),
            fusion,
            next_seq: HashMap::new(),
            mailbox: cfg.mailbox,
        }
    }

    /// Moves a camera frame's pixels into the frame store, leaving the reference in their
    /// place: the one blob that the frame's log record and any task on it refer to.
    fn store_pixels(&self, envelope: &mut v1::Envelope) -> Option<v1::BlobRef> {
        let h = envelope.header.clone().unwrap_or_default();
        let Some(Payload::Camera(cam)) = envelope.payload.as_mut() else { return None };
        let pixels = match cam.pixels.take() {
            Some(v1::camera_frame::Pixels::Data(p)) => p,
            other => {
                cam.pixels = other;
                return None;
            }
        };
        let key = frame_key(self.vehicle.as_str(), self.run.as_str(), &h.sensor_id, h.sequence);
        let put = if cam.encoding == v1::PixelEncoding::Rgb8 as i32 {
            self.frames.put_rgb8(&key, pixels, cam.width, cam.height)
        } else {
            self.frames.put(&key, pixels)
        };
        match put {
            Ok(blob) => {
                cam.pixels = Some(v1::camera_frame::Pixels::Blob(blob.clone()));
                Some(blob)
            }
            Err(e) => {
                tracing::error!(error = %e, "frame store put failed; no task can use this frame");
                None
            }
        }
    }
}

impl StreamHandler<BusSample> for Ingest {
    fn handle(&mut self, sample: BusSample, ctx: &mut Self::Context) {
        let envelope = match vigil_proto::decode_envelope(&sample.payload) {
            Ok(e) if e.payload.as_ref().is_some_and(|p| self.kind.accepts(p)) => e,
            Ok(_) => {
                FrameRejected { key: &sample.key, why: Rejection::WrongStream(self.kind.name()) }.emit(&self.stats);
                return;
            }
            Err(e) => {
                FrameRejected { key: &sample.key, why: Rejection::Undecodable(&e) }.emit(&self.stats);
                return;
            }
        };
        let h = envelope.header.clone().unwrap_or_default();
        if h.vehicle_id != self.vehicle.as_str() {
            let why = Rejection::ForeignVehicle(&h.vehicle_id);
            FrameRejected { key: &sample.key, why }.emit(&self.stats);
            return;
        }
        let next = self.next_seq.entry(h.sensor_id.clone()).or_insert(h.sequence);
        if h.sequence > *next {
            self.stats.gaps.fetch_add(h.sequence - *next, Ordering::SeqCst);
        }
        *next = h.sequence.saturating_add(1);
        let mut envelope = envelope;
        let mut bytes = sample.payload;
        let frame_ref = match self.kind == Stream::Camera && self.fusion.is_some() {
            true => self.store_pixels(&mut envelope),
            false => None,
        };
        if frame_ref.is_some() && self.frames.durable() {
            // The log record refers to the stored pixels rather than carrying a second copy.
            bytes = vigil_proto::encode_envelope(&envelope);
        }
        self.telemetry.push(ToLog {
            topic: self.kind.topic(),
            capture_ns: h.capture_time_ns,
            publish_ns: h.publish_time_ns,
            envelope: Arc::new(bytes),
        });
        // Counted once the log has it: a runner that waits for every frame to be
        // ingested then waits for the spool, and so finds every record there.
        inc(&self.stats.ingested[self.kind.index()]);
        self.stats.progress.moved();
        let Some(fusion) = self.fusion.clone() else { return };
        let frame = Frame { kind: self.kind, envelope: Arc::new(envelope), ingest_ns: self.clock.now_ns(), frame_ref };
        ctx.wait(
            async move {
                let _ = fusion.send(frame).await;
            }
            .into_actor(self),
        );
    }
}
