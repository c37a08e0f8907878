//! The last stage of a task: await the prediction, reply, settle exactly once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_bus::task::DeadReason;
use vigil_bus::{Reply, Settle, TaskDelivery, TransportError};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_vision::model::Prediction;

use crate::events::{InternalEvent, ReplyUncarriable, SettleFailed};
use crate::task::recommend;
use crate::{WorkerDeps, WorkerStats};

/// A task on its way to an answer: the last stage, after inference was started.
pub(crate) struct Answer {
    pub(crate) delivery: TaskDelivery,
    pub(crate) pending: Pending,
    pub(crate) vehicle: String,
    pub(crate) task: v1::ObstacleTask,
    pub(crate) n: u64,
    pub(crate) started: Instant,
    pub(crate) prepared_at: Duration,
    pub(crate) worker: String,
}

impl Answer {
    /// Waits for the prediction, decides, replies, and settles: acked once the reply is
    /// sent, dead-lettered if the reply cannot be carried, requeued otherwise.
    pub(crate) async fn reply(self, deps: WorkerDeps) {
        let Answer { delivery, pending, vehicle, task, n, started, prepared_at, worker } = self;
        let stats = &deps.stats;
        let submitted = Instant::now();
        let answer = match pending {
            Pending::Ready(p) => Ok(Ok(p)),
            Pending::Batched(rx) => rx.await,
        };
        tracing::trace!(
            prepare_us = prepared_at.as_micros() as u64,
            infer_us = submitted.elapsed().as_micros() as u64,
            "worker timing"
        );
        let pred = match answer {
            Ok(Ok(p)) => p,
            other => {
                tracing::error!(?other, "inference failed; task requeued");
                settle_counted(delivery, Settle::Requeue, stats).await;
                return;
            }
        };
        let mut rec = recommend(&task, pred.class, pred.confidence, &pred.probabilities);
        rec.model_name = deps.model_name.clone();
        rec.model_version = deps.model_version.clone();
        rec.device = deps.device.clone();
        rec.worker_id = worker;
        rec.inference_ns = started.elapsed().as_nanos() as i64;
        let payload = Payload::Recommendation(rec);
        let header = v1::Header {
            sequence: n,
            capture_time_ns: deps.clock.now_ns(),
            publish_time_ns: deps.clock.now_ns(),
            correlation_id: task.task_id.clone(),
            ..vigil_proto::wire::header(&vehicle, "vision", &payload)
        };
        let bytes = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        let reply = Reply::new(task.task_id.clone(), bytes);
        let publishing = Instant::now();
        match deps.tasks.reply(&task.reply_to, reply).await {
            Ok(()) => {
                stats.answered.fetch_add(1, Ordering::SeqCst);
                metrics::histogram!(crate::REPLY_PUBLISH_SECONDS).record(publishing.elapsed().as_secs_f64());
                metrics::histogram!(crate::TASK_SECONDS).record(started.elapsed().as_secs_f64());
                deps.answered.insert(&task.task_id, task.deadline_ns, deps.clock.now_ns());
                settle_counted(delivery, Settle::Ack, stats).await;
            }
            Err(e @ TransportError::Invalid { .. }) => {
                ReplyUncarriable { error: &e }.emit(stats);
                settle_counted(delivery, Settle::DeadLetter(DeadReason::Rejected), stats).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "reply failed; task requeued");
                settle_counted(delivery, Settle::Requeue, stats).await;
            }
        }
    }
}

/// Settles a delivery; a failure is counted and logged (the transport has handed the
/// delivery back to the broker, which redelivers it).
pub(crate) async fn settle_counted(delivery: TaskDelivery, how: Settle, stats: &WorkerStats) {
    let task = delivery.task.task_id.clone();
    if let Err(e) = delivery.settle(how).await {
        SettleFailed { task: &task, how, error: &e }.emit(stats);
    }
}

/// A prediction in hand (inline) or on its way from the batcher.
pub(crate) enum Pending {
    Ready(Prediction),
    Batched(tokio::sync::oneshot::Receiver<vigil_vision::Result<Prediction>>),
}
