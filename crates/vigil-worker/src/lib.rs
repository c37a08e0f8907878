//! Vision workers. Each [`VisionWorker`] is a supervised actix actor consuming one
//! stream of deliveries from a [`TaskTransport`]. Per task it:
//!
//! 1. checks the deadline at take time: an expired task is dead-lettered and counted,
//!    never processed late;
//! 2. fetches the camera frame by reference from the [`FrameStore`] and crops the box;
//! 3. classifies the crop ([`Inference`]): on a CPU the worker runs the forward pass
//!    itself, each worker on its own arbiter thread that no other actor shares (a
//!    dedicated thread; one crop fills a core, so there is nothing to batch and no hop to
//!    pay); on a GPU it hands the crop to the shared [`Batcher`] (inference on the
//!    batcher's thread, batched across workers) and awaits the prediction;
//! 4. turns class + TTC + path offset + free lanes into an action with
//!    [`vigil_core::policy::decide`];
//! 5. replies to the task's `reply_to` with its id as correlation id, then acks.
//!
//! Reply-then-ack gives at-least-once answers; the vehicle drops duplicates by task id,
//! and workers skip a redelivered task they already answered ([`Answered`]). A task that
//! cannot be processed (undecodable, frame gone) is requeued: the transport retries it
//! with backoff and dead-letters it after its last attempt.
//! A panic while processing is caught: the task is requeued, the failure counted and the
//! actor stopped, and its `Supervisor` restarts it (counted too).

mod answer;
mod events;
mod task;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use vigil_bus::task::DeadReason;
use vigil_bus::transport::delivery_stream;
use vigil_bus::trust::TaskTrust;
use vigil_bus::{FrameStore, Settle, TaskDelivery, TaskTransport, TransportError};
use vigil_core::{Clock, Nanos};
use vigil_vision::batcher::{Batcher, BatcherConfig};
use vigil_vision::model::{Prediction, Recogniser};
use vigil_vision::preprocess::Crop;

use self::answer::{Answer, Pending, settle_counted};
use self::events::{InternalEvent, TaskMalformed, TaskRetried, TaskUntrusted, WorkerPanicked, WorkerRestarted};
pub use self::task::{MAX_ID_BYTES, TaskError, recommend};
use self::task::{Prepared, fetch_and_crop};

/// Histograms the workers feed through the `metrics` facade (the process's registry
/// serves them): task taken → reply confirmed, and the reply's publish → confirm.
pub const TASK_SECONDS: &str = "vigil_worker_task_seconds";
pub const REPLY_PUBLISH_SECONDS: &str = "vigil_worker_reply_publish_seconds";

/// Counters of every worker in the process.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub taken: AtomicU64,
    /// Deliveries that were not a task's first (a redelivery after a worker died or
    /// disconnected, or a retry after a failed attempt).
    pub redelivered: AtomicU64,
    pub answered: AtomicU64,
    /// Found expired when taken (dead-lettered as expired).
    pub expired: AtomicU64,
    /// Attempts that could not be processed (bad task, frame gone): requeued for a
    /// retry with backoff, dead-lettered by the transport after the last attempt.
    pub rejected: AtomicU64,
    /// Redeliveries of a task this process already answered: acked, not reprocessed.
    pub duplicates: AtomicU64,
    /// Panics caught while processing (the task was requeued).
    pub panics: AtomicU64,
    /// Actor restarts by the supervisor.
    pub restarts: AtomicU64,
    /// Tasks that can never be processed (undecodable, a field the broker cannot carry,
    /// a box outside the frame): dead-lettered at once with the reason logged.
    pub malformed: AtomicU64,
    /// Tasks whose publisher, as the broker vouches, is not the vehicle they name
    /// (`vigil_bus::trust::TaskTrust`): dead-lettered unanswered.
    pub untrusted: AtomicU64,
    /// Settles (ack, retry, dead letter) that failed; the transport hands the delivery
    /// back to the broker, so none is left holding the prefetch.
    pub settle_failures: AtomicU64,
}

/// Task ids this process has answered, each kept until its task's deadline has passed
/// (a redelivery after that is dead-lettered as expired before it is looked up), and
/// never more than `capacity` (the oldest go first). Task ids carry the vehicle's run id,
/// so a new drive's tasks never match an old drive's.
#[derive(Debug)]
pub struct Answered {
    capacity: usize,
    inner: std::sync::Mutex<AnsweredInner>,
}

#[derive(Debug, Default)]
struct AnsweredInner {
    ids: std::collections::HashMap<String, Nanos>,
    /// Insertion order, with each id's deadline.
    order: std::collections::VecDeque<(Nanos, String)>,
}

impl Default for Answered {
    fn default() -> Self {
        Self::new(65_536)
    }
}

impl Answered {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Default::default() }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.inner.lock().map(|g| g.ids.contains_key(id)).unwrap_or(false)
    }

    /// Remembers `id` until `deadline_ns`; forgets what expired before `now_ns`.
    pub fn insert(&self, id: &str, deadline_ns: Nanos, now_ns: Nanos) {
        let Ok(mut g) = self.inner.lock() else { return };
        let g = &mut *g;
        if g.ids.insert(id.to_string(), deadline_ns).is_none() {
            g.order.push_back((deadline_ns, id.to_string()));
        }
        // Deadlines arrive nearly in order; an out-of-order one waits behind the front.
        while let Some((deadline, _)) = g.order.front() {
            if *deadline >= now_ns && g.order.len() <= self.capacity {
                break;
            }
            if let Some((_, old)) = g.order.pop_front() {
                g.ids.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.ids.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Deliberate faults, for tests and drills.
#[derive(Debug, Default)]
pub struct Faults {
    /// Panic while processing the n-th task taken (1-based) by any worker; 0 = never.
    pub panic_on_take: AtomicU64,
}

/// Where the workers' forward passes run.
#[derive(Debug, Clone)]
pub enum Inference {
    /// Each worker classifies its own crop on its own thread (CPU).
    Inline {
        model: Arc<Recogniser>,
        /// Added to every forward pass (drills: a slower model).
        delay: Duration,
    },
    /// The crops of every worker go to one batching thread (GPU).
    Batched(Arc<Batcher>),
}

impl Inference {
    /// Inline or batched as `cfg` says for the model's device ([`BatcherConfig::inline_on`]).
    pub fn start(model: Recogniser, cfg: BatcherConfig, delay: Duration) -> Result<Self, vigil_vision::VisionError> {
        if cfg.inline_on(model.device()) {
            Ok(Inference::Inline { model: Arc::new(model), delay })
        } else {
            Ok(Inference::Batched(Arc::new(Batcher::spawn_with_delay(model, cfg, delay)?)))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Inference::Inline { .. } => "inline",
            Inference::Batched(_) => "batched",
        }
    }

    /// Inline only: one forward pass here and now (the first on a thread allocates its
    /// buffers, so each worker pays it once when it starts).
    fn classify_inline(model: &Recogniser, delay: Duration, crop: &Crop) -> Result<Prediction, TaskError> {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut preds = model.classify(std::slice::from_ref(crop))?;
        preds.pop().ok_or_else(|| TaskError::Vision(vigil_vision::VisionError::Io("no prediction for one crop".into())))
    }
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerDeps {
    pub clock: Arc<dyn Clock>,
    pub tasks: Arc<dyn TaskTransport>,
    pub frames: Arc<dyn FrameStore>,
    pub inference: Inference,
    pub model_name: String,
    pub model_version: String,
    pub device: String,
    pub stats: Arc<WorkerStats>,
    pub faults: Arc<Faults>,
    pub answered: Arc<Answered>,
    /// Who may ask for which vehicle.
    pub trust: TaskTrust,
}

#[derive(Debug)]
pub struct VisionWorker {
    pub id: String,
    deps: WorkerDeps,
}

impl VisionWorker {
    pub fn new(id: String, deps: WorkerDeps) -> Self {
        Self { id, deps }
    }
}

impl Actor for VisionWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Inference::Inline { model, .. } = &self.deps.inference {
            let size = model.config.architecture.input_size;
            let _ = model.classify(&[Crop(vec![0.0; 3 * size * size])]);
        }
        let tasks = self.deps.tasks.clone();
        let id = self.id.clone();
        ctx.wait(async move { tasks.consume(&id).await }.into_actor(self).map(|r, act, ctx| match r {
            Ok(consumer) => {
                ctx.add_stream(delivery_stream(consumer));
            }
            Err(e) => {
                tracing::error!(worker = %act.id, error = %e, "cannot consume tasks");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for VisionWorker {
    fn restarting(&mut self, _: &mut Self::Context) {
        WorkerRestarted { worker: &self.id }.emit(&self.deps.stats);
    }
}

impl StreamHandler<Result<TaskDelivery, TransportError>> for VisionWorker {
    /// One task: take (deadline, duplicate), prepare (fetch and crop), infer (inline or
    /// batched), then reply and settle. A stage that ends the task settles it itself.
    fn handle(&mut self, item: Result<TaskDelivery, TransportError>, ctx: &mut Self::Context) {
        let delivery = match item {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "task stream error");
                return;
            }
        };
        let started = Instant::now();
        let Some((delivery, n)) = self.take(ctx, delivery) else { return };
        let Some((delivery, prepared)) = self.prepare(ctx, delivery, n) else { return };
        let prepared_at = started.elapsed();
        let Prepared { vehicle, task, crop } = prepared;
        let Some((delivery, pending)) = self.infer(ctx, delivery, crop) else { return };
        let answer = Answer { delivery, pending, vehicle, task, n, started, prepared_at, worker: self.id.clone() };
        ctx.wait(answer.reply(self.deps.clone()).into_actor(self));
    }
}

impl VisionWorker {
    /// Counts the take; a task past its deadline is dead-lettered and a redelivery of a
    /// task already answered only acked. Returns the task's number in this process.
    fn take(&self, ctx: &mut Context<Self>, delivery: TaskDelivery) -> Option<(TaskDelivery, u64)> {
        let (deps, stats) = (&self.deps, &self.deps.stats);
        let n = stats.taken.fetch_add(1, Ordering::SeqCst) + 1;
        if delivery.attempt > 1 {
            stats.redelivered.fetch_add(1, Ordering::SeqCst);
        }
        tracing::debug!(worker = %self.id, task = %delivery.task.task_id, attempt = delivery.attempt, "task taken");
        if deps.clock.now_ns() > delivery.task.deadline_ns {
            stats.expired.fetch_add(1, Ordering::SeqCst);
            self.settle(ctx, delivery, Settle::DeadLetter(DeadReason::Expired), false);
            return None;
        }
        if deps.answered.contains(&delivery.task.task_id) {
            stats.duplicates.fetch_add(1, Ordering::SeqCst);
            self.settle(ctx, delivery, Settle::Ack, false);
            return None;
        }
        Some((delivery, n))
    }

    /// Fetches the frame and crops it. A malformed task is dead-lettered, a transient
    /// failure requeued, and a panic (or an injected one) requeues and restarts.
    fn prepare(&self, ctx: &mut Context<Self>, delivery: TaskDelivery, n: u64) -> Option<(TaskDelivery, Prepared)> {
        let stats = &self.deps.stats;
        let (frames, trust) = (self.deps.frames.clone(), &self.deps.trust);
        let panic_on = self.deps.faults.panic_on_take.load(Ordering::SeqCst);
        let prepared = catch_unwind(AssertUnwindSafe(|| {
            if panic_on == n {
                panic!("injected worker fault on task {n}");
            }
            fetch_and_crop(&delivery, frames.as_ref(), trust)
        }));
        match prepared {
            Ok(Ok(p)) => return Some((delivery, p)),
            Ok(Err(e @ TaskError::Untrusted(..))) => {
                let (task, publisher) = (&delivery.task.task_id, delivery.publisher.as_deref());
                TaskUntrusted { worker: &self.id, task, publisher, error: &e }.emit(stats);
                self.settle(ctx, delivery, Settle::DeadLetter(DeadReason::Rejected), false);
            }
            Ok(Err(e)) if !e.is_transient() => {
                TaskMalformed { worker: &self.id, task: &delivery.task.task_id, error: &e }.emit(stats);
                self.settle(ctx, delivery, Settle::DeadLetter(DeadReason::Rejected), false);
            }
            Ok(Err(e)) => {
                let task = &delivery.task.task_id;
                TaskRetried { worker: &self.id, task, attempt: delivery.attempt, error: &e }.emit(stats);
                self.settle(ctx, delivery, Settle::Requeue, false);
            }
            Err(_) => self.panicked(ctx, delivery, "preparing"),
        }
        None
    }

    /// Runs the crop through the model here, on this worker's thread (inline), or hands
    /// it to the batcher's thread. A failure requeues; a panic also restarts.
    fn infer(&self, ctx: &mut Context<Self>, delivery: TaskDelivery, crop: Crop) -> Option<(TaskDelivery, Pending)> {
        match &self.deps.inference {
            Inference::Inline { model, delay } => {
                match catch_unwind(AssertUnwindSafe(|| Inference::classify_inline(model, *delay, &crop))) {
                    Ok(Ok(p)) => return Some((delivery, Pending::Ready(p))),
                    Ok(Err(e)) => {
                        tracing::error!(worker = %self.id, error = %e, "inference failed; task requeued");
                        self.settle(ctx, delivery, Settle::Requeue, false);
                    }
                    Err(_) => self.panicked(ctx, delivery, "inference"),
                }
            }
            Inference::Batched(batcher) => match batcher.submit_async(crop) {
                Ok(rx) => return Some((delivery, Pending::Batched(rx))),
                Err(e) => {
                    tracing::error!(error = %e, "batcher unavailable; task requeued");
                    self.settle(ctx, delivery, Settle::Requeue, false);
                }
            },
        }
        None
    }
}

impl VisionWorker {
    /// A panic caught during `stage` of a task: counted, the task requeued, the actor
    /// stopped (its supervisor restarts it).
    fn panicked(&self, ctx: &mut Context<Self>, delivery: TaskDelivery, stage: &str) {
        WorkerPanicked { worker: &self.id, task: &delivery.task.task_id, stage }.emit(&self.deps.stats);
        self.settle(ctx, delivery, Settle::Requeue, true);
    }

    /// Settles `delivery` before this worker takes its next task; with `restart`, stops
    /// the actor afterwards (its supervisor restarts it).
    fn settle(&self, ctx: &mut Context<Self>, delivery: TaskDelivery, how: Settle, restart: bool) {
        let stats = self.deps.stats.clone();
        ctx.wait(
            async move {
                settle_counted(delivery, how, &stats).await;
            }
            .into_actor(self)
            .map(move |_, _, ctx: &mut Context<Self>| {
                if restart {
                    ctx.stop();
                }
            }),
        );
    }
}

/// Starts `n` supervised workers: with [`Inference::Inline`] each on an arbiter (thread)
/// of its own, since its forward pass blocks that thread; with [`Inference::Batched`]
/// all on one arbiter (they only fetch, crop and await). Returns each arbiter with the
/// addresses of the workers on it.
pub fn start_workers(n: usize, deps: WorkerDeps) -> Vec<(Arbiter, Vec<Addr<VisionWorker>>)> {
    let start = |arbiter: &Arbiter, i: usize| {
        let deps = deps.clone();
        Supervisor::start_in_arbiter(&arbiter.handle(), move |_| VisionWorker::new(format!("worker-{i}"), deps))
    };
    match deps.inference {
        Inference::Inline { .. } => (0..n.max(1))
            .map(|i| {
                let arbiter = Arbiter::new();
                let addr = start(&arbiter, i);
                (arbiter, vec![addr])
            })
            .collect(),
        Inference::Batched(_) => {
            let arbiter = Arbiter::new();
            let addrs = (0..n.max(1)).map(|i| start(&arbiter, i)).collect();
            vec![(arbiter, addrs)]
        }
    }
}
