//! The distributed deployment: `vigil vehicle` and `vigil worker` as processes of their
//! own. The vehicle process subscribes to its sensors on zenoh, writes telemetry to Kafka,
//! publishes obstacle tasks to RabbitMQ and sends every applied command back on zenoh
//! (`vigil/<vehicle>/control`), where `vigil sim --publish --control` steers its ego.
//! A worker process takes tasks from RabbitMQ (any number compete), fetches frames from
//! the shared frame store and replies to the vehicle's reply queue.
//!
//! Across processes there is one time base: the sensors stamp captures with the wall
//! clock (`vigil sim --wall-clock`, as real sensors do) and both processes read
//! [`WallClock`]. Each process stops on SIGINT/SIGTERM, or after `idle_exit` with
//! nothing to do, and reports what it counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_brokers::{BrokerConfig, Brokers, TaskPlane};
use vigil_bus::{FrameStore, TaskTransport, TelemetryLog, ZenohBus, ZenohConfig};
use vigil_core::policy::Action;
use vigil_core::{Clock, Nanos, VehicleId, WallClock};
use vigil_sim::Scenario;
use vigil_vehicle::node::{ControlCommand, NodeStats, RoadMap, Stream};
use vigil_vision::batcher::BatcherConfig;
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Inference, WorkerDeps, WorkerStats, start_workers};

use crate::RunError;
use crate::metrics::MetricsText;
use crate::report::{BrokerReport, Model, Percentiles, Recommendations};

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::SeqCst)
}

/// `vigil vehicle`: the vehicle nodes of one computer.
#[derive(Debug, Clone)]
pub struct VehicleProcess {
    /// The road map (lanes) and the vehicle ids (`veh-0000`…) come from the scenario.
    pub scenario: Scenario,
    pub vehicles: usize,
    pub brokers: BrokerConfig,
    pub zenoh: ZenohConfig,
    pub task_budget_ns: Nanos,
    pub perception: bool,
    /// Stop when no frame has arrived for this long (after the first) and no task is
    /// outstanding; `None`: run until stopped.
    pub idle_exit: Option<Duration>,
    /// Set (by a signal handler) to stop.
    pub stop: Arc<AtomicBool>,
    /// Where the live counters go, in Prometheus text format, once a second.
    pub metrics: Option<MetricsText>,
    /// Scheduling of the urgent plane against telemetry.
    pub priority: vigil_vehicle::priority::PriorityMode,
    /// Where telemetry waits while the log is slow or down.
    pub spool: vigil_vehicle::spool::SpoolConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct VehicleTasks {
    pub raised: u64,
    pub published: u64,
    /// Refused by the broker (queue full) or unpublishable (broker down): fell back at once.
    pub refused: u64,
    pub completed: u64,
    pub fallback: u64,
    pub fallback_braked: u64,
    /// Published and still unresolved when the process stopped (0 after a clean stop).
    pub outstanding: i64,
    pub stale_replies: u64,
    pub duplicate_replies: u64,
    pub unknown_replies: u64,
    /// Replies refused by the trust checks, by reason (publisher, signature, …).
    pub rejected_replies: std::collections::BTreeMap<String, u64>,
}

/// What `vigil vehicle --json` prints when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct VehicleReport {
    pub mode: &'static str,
    /// This process's run id: the drive's id in Kafka (`vigil drives`, `--drive`).
    pub run_id: String,
    pub vehicles: Vec<String>,
    pub wall_seconds: f64,
    /// Frames ingested per stream.
    pub frames: BTreeMap<String, u64>,
    /// Missing sequence numbers seen at ingest (frames the bus never delivered).
    pub gaps: u64,
    pub rejected_frames: u64,
    pub tasks: VehicleTasks,
    pub recommendations: Recommendations,
    /// Commands sent to the ego controllers (one per task at most).
    pub controls_sent: u64,
    pub latency_ms: Percentiles,
    pub log_errors: u64,
    pub telemetry: TelemetryReport,
    /// Threats that fell back at once: no fresh camera frame or no camera box.
    pub no_camera_fallbacks: u64,
    pub brokers: BrokerReport,
}

/// The telemetry spool between the vehicle's actors and the log.
#[derive(Debug, Clone, Serialize)]
pub struct TelemetryReport {
    /// Records waiting for the log now.
    pub queued: u64,
    pub queued_bytes: u64,
    /// Records dropped because the spool was full.
    pub dropped: u64,
    /// The most bytes the spool held in memory at once (how long a stall it rode out).
    pub peak_bytes: u64,
    /// Records written to the disk spool (memory was full), and the most bytes it held.
    pub spilled: u64,
    pub peak_disk_bytes: u64,
    /// Times the log pushed back (its buffer full) and the forwarder waited.
    pub log_waits: u64,
}

impl TelemetryReport {
    pub fn of(s: &NodeStats) -> Self {
        Self {
            queued: get(&s.telemetry_queued),
            queued_bytes: get(&s.telemetry_queued_bytes),
            dropped: get(&s.telemetry_dropped),
            peak_bytes: get(&s.telemetry_peak_bytes),
            spilled: get(&s.telemetry_spilled),
            peak_disk_bytes: get(&s.telemetry_peak_disk_bytes),
            log_waits: get(&s.telemetry_log_waits),
        }
    }
}

/// Runs the vehicle nodes until stopped; see [`VehicleProcess`].
pub fn run_vehicle(cfg: VehicleProcess) -> Result<VehicleReport, RunError> {
    if cfg.vehicles == 0 {
        return Err(RunError::Config("--vehicles must be at least 1".into()));
    }
    // Every thread started from here on inherits the urgent plane; telemetry steps down.
    let priority = vigil_vehicle::priority::enter_or_warn(vigil_vehicle::priority::Plane::Urgent, cfg.priority);
    tracing::info!(priority, "scheduling");
    let wall_start = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let trust = cfg.brokers.amqp.reply_trust()?;
    if !trust.authenticates() {
        tracing::warn!(
            "replies are not authenticated: any client that can publish to this vehicle's reply queue can command it; \
             set [amqp] reply_publishers (per-role RabbitMQ users, scripts/rabbitmq-roles.sh) or a reply key"
        );
    }
    let brokers = Brokers::connect(&cfg.brokers, clock.clone())?;
    let log: Arc<dyn TelemetryLog> = brokers.log.clone();
    let frames: Arc<dyn FrameStore> = Arc::new(brokers.frames.clone());
    let tasks: Arc<dyn TaskTransport> = Arc::new(brokers.tasks.clone());

    let bus = ZenohBus::open(&cfg.zenoh)?;
    let publisher = bus.publisher()?;
    let inputs = (0..cfg.vehicles)
        .map(|i| crate::subscribe_node(&bus, VehicleId::simulated(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let vehicles: Vec<String> = inputs.iter().map(|(v, _)| v.0.clone()).collect();
    let road = RoadMap { lanes: cfg.scenario.road.lanes, lane_width_m: cfg.scenario.road.lane_width_m };
    let stats = Arc::new(NodeStats::default());
    let (control_tx, control_rx) = std::sync::mpsc::channel::<ControlCommand>();

    let run_id = vigil_core::RunId::generate();
    tracing::info!(run = %run_id, "run id");
    let transports = crate::Transports { clock, log, frames, tasks };
    let (system, actor_thread) = crate::Pipeline::new(inputs, run_id.clone(), road, transports, control_tx)
        .perception(cfg.perception)
        .task_budget_ns(cfg.task_budget_ns)
        .stats(stats.clone(), Arc::default())
        .priority(cfg.priority)
        .spool(cfg.spool.clone())
        .trust(trust)
        .start()?;
    tracing::info!(vehicles = ?vehicles, "vehicle nodes up");

    let forward = Forwarder { publisher: &publisher, sent: AtomicU64::new(0) };
    let report = || vehicle_report(&run_id, &vehicles, wall_start, &stats, get(&forward.sent), &brokers);
    serve(&cfg, &control_rx, &forward, &stats, &report)?;
    // Let what is in flight resolve (answered or fallen back), within one budget.
    let grace = Duration::from_nanos(cfg.task_budget_ns.max(0) as u64) + Duration::from_millis(200);
    let until = Instant::now() + grace;
    // Commands are forwarded while waiting: each settled task may have sent one.
    while Instant::now() < until {
        forward.pending(&control_rx)?;
        let left = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(5));
        if stats.progress.wait_until(left, || stats.outstanding.load(Ordering::SeqCst) <= 0) {
            break;
        }
    }
    forward.pending(&control_rx)?;
    let _ = bus.flush();
    if !stats.drain_telemetry(crate::TELEMETRY_DRAIN_TIMEOUT) {
        tracing::warn!(pending = stats.telemetry_pending(), "telemetry not all logged at the end of the drive");
    }
    system.stop();
    let _ = actor_thread.join();
    drop(publisher);
    let _ = bus.close();
    brokers.log.close()?;
    let r = report();
    if let Some(m) = &cfg.metrics {
        m.set_report("vigil_vehicle", &r, &latency_seconds(&stats));
    }
    Ok(r)
}

/// Sends the nodes' commands back to the vehicles on zenoh, counted.
struct Forwarder<'a> {
    publisher: &'a vigil_bus::Publisher,
    sent: AtomicU64,
}

impl Forwarder<'_> {
    fn send(&self, c: ControlCommand) -> Result<(), RunError> {
        self.publisher.put_blocking(&vigil_proto::wire::control_key(c.vehicle.as_str()), c.encode())?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Sends every command waiting now.
    fn pending(&self, rx: &std::sync::mpsc::Receiver<ControlCommand>) -> Result<(), RunError> {
        while let Ok(c) = rx.try_recv() {
            self.send(c)?;
        }
        Ok(())
    }
}

/// Forwards commands and publishes metrics until stopped, or idle for `--idle-exit`.
fn serve(
    cfg: &VehicleProcess,
    control_rx: &std::sync::mpsc::Receiver<ControlCommand>,
    forward: &Forwarder<'_>,
    stats: &NodeStats,
    report: &dyn Fn() -> VehicleReport,
) -> Result<(), RunError> {
    let ingested = || Stream::ALL.iter().map(|k| get(&stats.ingested[k.index()])).sum::<u64>();
    let (mut last_total, mut last_change) = (0u64, Instant::now());
    let mut next_metrics = Instant::now();
    loop {
        if let Some(m) = &cfg.metrics
            && Instant::now() >= next_metrics
        {
            m.set_report("vigil_vehicle", &report(), &latency_seconds(stats));
            next_metrics += Duration::from_secs(1);
        }
        match control_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(c) => forward.send(c)?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let total = ingested();
        if total != last_total {
            (last_total, last_change) = (total, Instant::now());
        }
        if cfg.stop.load(Ordering::SeqCst) {
            tracing::info!("stopping on request");
            return Ok(());
        }
        let quiet = stats.outstanding.load(Ordering::SeqCst) <= 0;
        if let Some(idle) = cfg.idle_exit
            && total > 0
            && quiet
            && last_change.elapsed() >= idle
        {
            return Ok(());
        }
    }
}

/// Detection → recommendation latencies so far, seconds, with their counts.
fn latency_seconds(stats: &NodeStats) -> Vec<(f64, u64)> {
    stats.latencies.weighted_seconds()
}

fn vehicle_report(
    run: &vigil_core::RunId,
    vehicles: &[String],
    wall_start: Instant,
    s: &NodeStats,
    controls_sent: u64,
    brokers: &Brokers,
) -> VehicleReport {
    VehicleReport {
        mode: "vehicle",
        run_id: run.to_string(),
        vehicles: vehicles.to_vec(),
        wall_seconds: wall_start.elapsed().as_secs_f64(),
        frames: Stream::ALL
            .iter()
            .map(|k| (vigil_vehicle::node::stream_label(*k).to_string(), get(&s.ingested[k.index()])))
            .collect(),
        gaps: get(&s.gaps),
        rejected_frames: get(&s.rejected),
        tasks: VehicleTasks {
            raised: get(&s.tasks_raised),
            published: get(&s.tasks_published),
            refused: get(&s.tasks_refused),
            completed: get(&s.completed),
            fallback: get(&s.fallback),
            fallback_braked: get(&s.fallback_braked),
            outstanding: s.outstanding.load(Ordering::SeqCst),
            stale_replies: get(&s.stale),
            duplicate_replies: get(&s.duplicate),
            unknown_replies: get(&s.unknown),
            rejected_replies: s.rejected_replies_by_reason(),
        },
        recommendations: Recommendations {
            count: get(&s.completed),
            by_action: Action::ALL
                .iter()
                .enumerate()
                .map(|(n, a)| (a.name().to_string(), get(&s.by_action[n])))
                .collect(),
        },
        controls_sent,
        latency_ms: Percentiles::of(&s.latencies),
        log_errors: get(&s.log_errors),
        telemetry: TelemetryReport::of(s),
        no_camera_fallbacks: get(&s.no_camera),
        brokers: BrokerReport::from_brokers(brokers),
    }
}

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
    /// Where the live counters go, in Prometheus text format, once a second.
    pub metrics: Option<MetricsText>,
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
    };
    let workers = cfg.workers;
    let deps_inference = deps.inference.name();
    let (system, actor_thread) = start_worker_system(workers, deps)?;
    tracing::info!(workers, model = %info.name, device = %info.device, inference = deps_inference, "workers up");

    let report = || worker_report(workers, wall_start, &stats, &info, &plane);
    let (mut last_taken, mut last_change) = (0u64, Instant::now());
    let mut next_metrics = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(m) = &cfg.metrics
            && Instant::now() >= next_metrics
        {
            m.set_report("vigil_worker", &report(), &[]);
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
    system.stop();
    let _ = actor_thread.join();
    let r = report();
    if let Some(m) = &cfg.metrics {
        m.set_report("vigil_worker", &r, &[]);
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
