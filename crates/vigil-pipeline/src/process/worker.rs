//! `vigil worker`: vision workers competing for tasks on RabbitMQ, as a process of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_brokers::{BrokerConfig, TaskPlane};
use vigil_bus::TaskTransport;
use vigil_core::{Clock, WallClock};
use vigil_vision::batcher::BatcherConfig;
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Inference, WorkerDeps, WorkerStats, start_workers};

use super::get;
use crate::RunError;
use crate::metrics::{Metrics, WORKER};
use crate::report::Model;

/// `vigil worker`: vision workers competing for tasks on RabbitMQ.
#[derive(Debug, Clone)]
pub struct WorkerProcess {
    pub model_dir: PathBuf,
    pub workers: usize,
    pub brokers: BrokerConfig,
    pub batcher: BatcherConfig,
    /// Extra latency added to every inference (drills: a slow worker).
    pub inject_latency: Duration,
    /// Stop when no task has been taken for this long (since the last one, or since
    /// the start); `None`: run until stopped.
    pub idle_exit: Option<Duration>,
    pub stop: Arc<AtomicBool>,
    /// The registry the live counters are published to, once a second (`None`: no
    /// metrics served).
    pub metrics: Option<Metrics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerAmqp {
    pub delivered: u64,
    pub acked: u64,
    /// Failed attempts sent to a delay queue.
    pub retried: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub recoveries: u64,
    pub publish_errors: u64,
    /// Retry publishes that failed (the task was dead-lettered instead).
    pub retry_failed: u64,
    /// Deliveries handed back to the broker because nothing could be published for them.
    pub settle_requeued: u64,
    /// Acks and nacks the broker did not take (it redelivers those tasks).
    pub settle_failed: u64,
    /// Tasks waiting in the queue at the last sample.
    pub queue_depth: u64,
}

/// What `vigil worker --json` prints when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub mode: &'static str,
    pub workers: usize,
    pub wall_seconds: f64,
    pub taken: u64,
    pub redelivered: u64,
    pub answered: u64,
    pub expired: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub panics: u64,
    pub restarts: u64,
    /// Dead-lettered at once: a task that can never be processed.
    pub malformed: u64,
    /// Dead-lettered unanswered: a task its publisher had no right to send.
    pub untrusted: u64,
    pub settle_failures: u64,
    pub model: Model,
    pub amqp: WorkerAmqp,
}

/// Runs vision workers until stopped; see [`WorkerProcess`].
pub fn run_worker(cfg: WorkerProcess) -> Result<WorkerReport, RunError> {
    if cfg.workers == 0 {
        return Err(RunError::Config("--workers must be at least 1".into()));
    }
    let wall_start = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let model = Recogniser::load(&cfg.model_dir, &default_device())?;
    let info =
        Model { name: model.config.name.clone(), version: model.config.version.clone(), device: model.device_name() };
    let plane = TaskPlane::connect(&cfg.brokers, clock.clone())?;
    let inference = Inference::start(model, cfg.batcher, cfg.inject_latency)?;
    let stats = Arc::new(WorkerStats::default());
    let deps = WorkerDeps {
        clock,
        tasks: Arc::new(plane.tasks.clone()),
        frames: Arc::new(plane.frames.clone()),
        inference,
        model_name: info.name.clone(),
        model_version: info.version.clone(),
        device: info.device.clone(),
        stats: stats.clone(),
        faults: Arc::default(),
        answered: Arc::default(),
        trust: cfg.brokers.amqp.task_trust(),
    };
    if !deps.trust.authenticates() {
        tracing::warn!(
            "tasks are not authenticated: one vehicle's credentials can ask on another's behalf; set [amqp] task_publisher"
        );
    }
    let workers = cfg.workers;
    let deps_inference = deps.inference.name();
    let (system, actor_thread) = start_worker_system(workers, deps)?;
    tracing::info!(workers, model = %info.name, device = %info.device, inference = deps_inference, "workers up");
    let mut service = super::service::Service::from_env();
    service.ready(&format!("{workers} workers, model {} on {}", info.name, info.device));

    let report = || worker_report(workers, wall_start, &stats, &info, &plane);
    let (mut last_taken, mut last_change) = (0u64, Instant::now());
    let mut next_metrics = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        service.tick(!actor_thread.is_finished(), || {
            format!("taken {}, answered {}, dead-lettered {}", get(&stats.taken), get(&stats.answered), {
                plane.tasks.amqp_counts().dead_lettered.load(Ordering::Relaxed)
            })
        });
        if cfg.metrics.is_some() && Instant::now() >= next_metrics {
            WORKER.publish(&report());
            next_metrics += Duration::from_secs(1);
        }
        let taken = get(&stats.taken);
        if taken != last_taken {
            (last_taken, last_change) = (taken, Instant::now());
        }
        if cfg.stop.load(Ordering::SeqCst) {
            tracing::info!("stopping on request");
            break;
        }
        // Idle: nothing taken for a while and nothing in hand (taken = settled).
        let in_hand = plane.tasks.counts().map(|c| c.unacked).unwrap_or(0);
        if let Some(idle) = cfg.idle_exit
            && in_hand == 0
            && last_change.elapsed() >= idle
        {
            break;
        }
    }
    service.stopping();
    system.stop();
    let _ = actor_thread.join();
    let r = report();
    if cfg.metrics.is_some() {
        WORKER.publish(&r);
    }
    Ok(r)
}

/// Starts `workers` vision workers in an actor system on its own thread; returns the
/// system (stop it to end) and its thread.
pub fn start_worker_system(workers: usize, deps: WorkerDeps) -> Result<crate::ActorSystem, RunError> {
    crate::spawn_system(move || start_workers(workers, deps))
}

fn worker_report(
    workers: usize,
    wall_start: Instant,
    stats: &WorkerStats,
    info: &Model,
    plane: &TaskPlane,
) -> WorkerReport {
    let a = plane.tasks.amqp_counts();
    let g = |x: &AtomicU64| x.load(Ordering::Relaxed);
    WorkerReport {
        mode: "worker",
        workers,
        wall_seconds: wall_start.elapsed().as_secs_f64(),
        taken: get(&stats.taken),
        redelivered: get(&stats.redelivered),
        answered: get(&stats.answered),
        expired: get(&stats.expired),
        rejected: get(&stats.rejected),
        duplicates: get(&stats.duplicates),
        panics: get(&stats.panics),
        restarts: get(&stats.restarts),
        malformed: get(&stats.malformed),
        untrusted: get(&stats.untrusted),
        settle_failures: get(&stats.settle_failures),
        model: info.clone(),
        amqp: WorkerAmqp {
            delivered: g(&a.delivered),
            acked: g(&a.acked),
            retried: g(&a.retried),
            dead_lettered: g(&a.dead_lettered),
            expired: g(&a.expired),
            recoveries: g(&a.recoveries),
            publish_errors: g(&a.publish_errors),
            retry_failed: g(&a.retry_failed),
            settle_requeued: g(&a.settle_requeued),
            settle_failed: g(&a.settle_failed),
            queue_depth: g(&a.queued),
        },
    }
}
