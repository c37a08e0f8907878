//! The dispatcher: publishes each raised task and logs it, never waiting on the broker.

use std::sync::Arc;

use actix::prelude::*;
use vigil_bus::task::QueuedTask;
use vigil_bus::{TaskTransport, topics};
use vigil_core::{Clock, Nanos, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};

use super::events::{InternalEvent, TaskRefused};
use super::fusion::RaiseTask;
use super::handler::RecommendationHandler;
use super::stats::{NodeStats, inc};
use super::{NodeConfig, NodeDeps, TelemetrySpool, ToLog};

/// Publishes tasks to the task transport and logs them; registers each with the handler
/// first. Publishes run side by side: a confirm slower than a task's budget holds neither
/// fusion nor the next task (the handler's deadline check falls back on time).
#[derive(Debug)]
pub struct Dispatcher {
    vehicle: VehicleId,
    clock: Arc<dyn Clock>,
    tasks: Arc<dyn TaskTransport>,
    telemetry: TelemetrySpool,
    stats: Arc<NodeStats>,
    handler: Addr<RecommendationHandler>,
    sequence: u64,
}

impl Dispatcher {
    pub(super) fn new(
        cfg: &NodeConfig,
        deps: &NodeDeps,
        telemetry: TelemetrySpool,
        handler: Addr<RecommendationHandler>,
    ) -> Self {
        Self {
            vehicle: cfg.vehicle.clone(),
            clock: deps.clock.clone(),
            tasks: deps.tasks.clone(),
            telemetry,
            stats: deps.stats.clone(),
            handler,
            sequence: 0,
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

/// The handler learns of a task before it can be answered.
#[derive(Debug, Clone)]
pub struct Outstanding {
    pub task_id: String,
    pub track_id: u32,
    pub deadline_ns: Nanos,
    pub detected_ns: Nanos,
    pub ttc_s: f64,
    /// Closest the track comes to the ego path centre, metres.
    pub offset_m: f64,
    pub priority: u8,
    /// The publish was refused: resolve by fallback now.
    pub refused: bool,
}

impl Message for Outstanding {
    type Result = ();
}

impl Handler<RaiseTask> for Dispatcher {
    type Result = ();
    fn handle(&mut self, r: RaiseTask, ctx: &mut Self::Context) {
        let payload = Payload::ObstacleTask(r.task.clone());
        let now = self.clock.now_ns();
        let header = v1::Header {
            sequence: self.sequence,
            capture_time_ns: r.capture_ns,
            publish_time_ns: now,
            correlation_id: r.task.task_id.clone(),
            ..vigil_proto::wire::header(self.vehicle.as_str(), "fusion", &payload)
        };
        self.sequence += 1;
        let bytes = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        self.telemetry.push(ToLog {
            topic: topics::TASKS,
            capture_ns: r.capture_ns,
            publish_ns: now,
            envelope: Arc::new(bytes.clone()),
        });
        let queued = QueuedTask {
            task_id: r.task.task_id.clone(),
            priority: r.task.priority as u8,
            deadline_ns: r.task.deadline_ns,
            payload: bytes,
        };
        let outstanding = Outstanding {
            task_id: r.task.task_id.clone(),
            track_id: r.track_id,
            deadline_ns: r.task.deadline_ns,
            detected_ns: r.detected_ns,
            ttc_s: r.ttc_s,
            offset_m: r.offset_m,
            priority: (r.task.priority as u8).min(9),
            refused: false,
        };
        // Registered before the publish (mailboxes are FIFO): a reply cannot overtake it.
        self.handler.do_send(outstanding.clone());
        let (tasks, handler, stats) = (self.tasks.clone(), self.handler.clone(), self.stats.clone());
        ctx.spawn(
            async move {
                match tasks.publish(queued).await {
                    Ok(()) => inc(&stats.tasks_published),
                    Err(e) => {
                        TaskRefused { error: &e }.emit(&stats);
                        handler.do_send(Outstanding { refused: true, ..outstanding });
                    }
                }
            }
            .into_actor(self),
        );
    }
}
