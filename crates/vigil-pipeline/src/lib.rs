//! `vigil run`: the simulator, the zenoh sensor bus, one vehicle node per simulated
//! vehicle, the transports and the vision workers in one process, with the loop closed:
//! each applied recommendation commands the simulated ego.
//!
//! Two pacings. By default the simulator is paced to real time and the pipeline reads a
//! [`PacedClock`]. With `fast`, the simulator runs in lockstep with the pipeline: after
//! each capture instant it waits until every frame is ingested and every task raised is
//! resolved, and the pipeline reads a [`LockstepClock`] that advances only by the real
//! time the pipeline spends. Each control command is applied in sim time at the time the
//! handler decided it, so a slower pipeline brakes later in `fast` too.

pub mod actors;
pub mod clock;
pub mod control;
mod drive;
pub mod feed;
pub mod metrics;
pub mod process;
pub mod publish;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedLog, EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{TelemetryLog, ZenohBus, ZenohConfig};
use vigil_core::{Clock, Nanos, VehicleId};
use vigil_proto::wire::Stream;
use vigil_sim::{Scenario, VehicleSim};
use vigil_vehicle::node::{ControlCommand, NodeStats, RoadMap, SensorInputs};
use vigil_vehicle::priority::{Plane, PriorityMode, enter_or_warn};
pub use vigil_vehicle::spool::{SpoolConfig, check_spool_dir, default_spool_dir};
use vigil_vision::batcher::{BatcherConfig, Serving};
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Faults, WorkerStats};

pub use actors::{ActorSystem, Pipeline, Transports, spawn_system, subscribe_node};
pub use clock::{LockstepClock, PacedClock};
pub use control::{apply_due, control_for};
use drive::{Driven, drive};
pub use report::{Outcome, RunReport};

/// Everything `vigil run` can be told.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub seed: u64,
    /// Simulated nanoseconds (default: the scenario's duration).
    pub duration_ns: Option<Nanos>,
    pub vehicles: usize,
    pub workers: usize,
    pub record: Option<PathBuf>,
    /// How `record` is written: chunk compression, camera encoding, splitting.
    pub record_options: vigil_bus::embedded::recorder::RecordOptions,
    pub perception: bool,
    pub fast: bool,
    pub model_dir: PathBuf,
    /// Task deadline = capture time + this.
    pub task_budget_ns: Nanos,
    pub batcher: BatcherConfig,
    /// Most tasks queued at once (publishes beyond are refused and fall back).
    pub queue_capacity: usize,
    /// Deliveries of one task before it is dead-lettered.
    pub max_attempts: u32,
    pub faults: Arc<Faults>,
    /// Extra latency added to every inference (drills: a slower pipeline).
    pub inject_latency: Duration,
    /// A live status line on stderr (only when it is a terminal).
    pub console: bool,
    /// Run over Kafka, RabbitMQ and an object store instead of the embedded transports.
    pub brokers: Option<vigil_brokers::BrokerConfig>,
    /// Scheduling of the urgent plane (this thread, the simulated sensors, the actors and
    /// the workers) against the bulk plane (telemetry).
    pub priority: PriorityMode,
    /// Drill: this sensor stops publishing from this simulated time on (ns from start).
    pub sensor_outage: Option<(Stream, Nanos)>,
    /// Where telemetry waits while the log is slow or down.
    pub spool: SpoolConfig,
    /// Serve the Foxglove live view (`--foxglove`).
    pub live: Option<vigil_bus::live::LiveConfig>,
}

impl RunConfig {
    pub fn new(scenario: Scenario, seed: u64, model_dir: PathBuf) -> Self {
        Self {
            scenario,
            seed,
            duration_ns: None,
            vehicles: 1,
            workers: 2,
            record: None,
            record_options: Default::default(),
            perception: true,
            fast: false,
            model_dir,
            task_budget_ns: vigil_proto::wire::DEFAULT_TASK_BUDGET_NS,
            batcher: default_batcher(),
            queue_capacity: 256,
            max_attempts: 3,
            faults: Arc::default(),
            inject_latency: Duration::ZERO,
            console: false,
            brokers: None,
            priority: PriorityMode::default(),
            sensor_outage: None,
            spool: SpoolConfig { dir: Some(default_spool_dir()), ..SpoolConfig::default() },
            live: None,
        }
    }
}

/// The batcher settings of a run and of a worker process. No waiting for company: on a
/// CPU a crop fills a core, so waiting only adds latency (measured with `vigil bench
/// pipeline`: 0.90 → 0.57 ms p50); batches still form from whatever is queued. A second
/// inference thread measured no better on 2 cores (it competes with ingest).
pub fn default_batcher() -> BatcherConfig {
    BatcherConfig { max_batch: 16, max_wait: Duration::ZERO, queue: 256, threads: 1, serving: Serving::Auto }
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid run setting: {0}")]
    Config(String),
    #[error("cannot load the model: {0} (train one with `vigil train`, or pass --model DIR)")]
    Model(#[from] vigil_vision::VisionError),
    #[error("sensor bus: {0}")]
    Bus(#[from] vigil_bus::BusError),
    #[error("transport: {0}")]
    Transport(#[from] vigil_bus::TransportError),
    #[error("actor system: {0}")]
    Actors(String),
    #[error("feeding the drive: {0}")]
    Feed(#[from] feed::FeedError),
    #[error(transparent)]
    Live(#[from] vigil_bus::live::LiveError),
}

/// How long a process waits at its end for the telemetry spool to reach the log (a log
/// that was down catches up here).
pub const TELEMETRY_DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the pipeline to the end of the scenario and reports.
pub fn run(cfg: RunConfig) -> Result<RunReport, RunError> {
    let duration_ns = checked_duration(&cfg)?;
    // Before anything starts a thread: every thread of the run inherits the urgent plane
    // (the simulated sensors too, as hardware they are not the computer's load), and the
    // telemetry arbiter steps down.
    let priority = enter_or_warn(Plane::Urgent, cfg.priority);
    let cpu_start = report::process_cpu_seconds();
    let wall_start = Instant::now();
    let start_ns = cfg.scenario.environment.start_time_ns;
    let lockstep = Arc::new(LockstepClock::new(start_ns));
    let paced = Arc::new(PacedClock::new(start_ns));
    let clock: Arc<dyn Clock> = if cfg.fast { lockstep.clone() } else { paced.clone() };

    // Transports first: a broker that is down is reported at once.
    let brokers = connect_brokers(&cfg, &clock)?;
    // The model is loaded once, before anything moves.
    let model = if cfg.perception { Some(Recogniser::load(&cfg.model_dir, &default_device())?) } else { None };
    let model_info = model.as_ref().map(|m| (m.config.name.clone(), m.config.version.clone(), m.device_name()));
    let mut transports = transports(&cfg, brokers.as_ref(), clock.clone())?;
    let ids: Vec<String> = (0..cfg.vehicles).map(|i| VehicleId::simulated(i).0).collect();
    let live = watch_live(cfg.live.as_ref(), &mut transports, cfg.priority, &ids)?;

    // Sensor bus: one zenoh session; the simulator publishes where drivers would and
    // each node subscribes to its own vehicle's streams.
    let bus = ZenohBus::open(&ZenohConfig::default())?;
    let publisher = bus.publisher()?;
    let (sims, inputs) = simulated_vehicles(&cfg, &bus, duration_ns)?;

    let stats = Arc::new(NodeStats::default());
    let worker_stats = Arc::new(WorkerStats::default());
    let (control_tx, control_rx) = std::sync::mpsc::channel::<ControlCommand>();
    let road_map = RoadMap { lanes: cfg.scenario.road.lanes, lane_width_m: cfg.scenario.road.lane_width_m };
    // The actor system lives on its own thread; this thread drives the simulator.
    // Embedded runs stay reproducible from the seed; over the brokers every run is new.
    let run =
        if cfg.brokers.is_some() { vigil_core::RunId::generate() } else { vigil_core::RunId::reproducible(cfg.seed) };
    let (system, actor_thread) = Pipeline::new(inputs, run, road_map, transports.clone(), control_tx)
        .perception(cfg.perception)
        .task_budget_ns(cfg.task_budget_ns)
        .workers(cfg.workers, model, cfg.batcher)
        .drills(cfg.inject_latency, cfg.faults.clone())
        .stats(stats.clone(), worker_stats.clone())
        .priority(cfg.priority)
        .spool(cfg.spool.clone())
        .start()?;

    // Drive. Real time starts now, whatever setting up took.
    paced.restart();
    let Driven { produced, sims } =
        drive(&cfg, sims, (&lockstep, live.as_deref()), &publisher, &stats, control_rx, duration_ns)?;

    let (log_counts, queue) =
        stop(&transports, &stats, (system, actor_thread), start_ns + duration_ns, cfg.task_budget_ns)?;
    drop(publisher);
    let _ = bus.close();
    let broker_report = brokers.as_ref().map(report::BrokerReport::from_brokers);
    Ok(report::build(report::Inputs {
        cfg: &cfg,
        duration_ns,
        wall: wall_start.elapsed(),
        cpu_seconds: report::process_cpu_seconds() - cpu_start,
        priority,
        produced,
        stats: &stats,
        workers: &worker_stats,
        queue,
        log_counts,
        sims: &sims,
        model: model_info,
        brokers: broker_report,
        live: live.map(|v| v.stats()),
    }))
}

/// Starts the live view when asked and puts it on the log: every record the actors
/// write is offered to it ([`vigil_bus::live`]). Its threads are started on the bulk
/// plane, below the urgent path (started on the urgent plane's thread they would inherit
/// its priority). Not the idle plane: under a busy computer's other work it would starve
/// and draw nothing.
pub fn watch_live(
    live: Option<&vigil_bus::live::LiveConfig>,
    transports: &mut Transports,
    priority: PriorityMode,
    vehicles: &[String],
) -> Result<Option<Arc<vigil_bus::live::LiveView>>, RunError> {
    let Some(cfg) = live else { return Ok(None) };
    let frames = transports.frames.clone();
    let start = move || {
        if priority != PriorityMode::Off {
            enter_or_warn(Plane::Bulk, priority);
        }
        vigil_bus::live::LiveView::start(cfg, Some(frames), vehicles)
    };
    let view = std::thread::scope(|s| s.spawn(start).join())
        .map_err(|_| RunError::Config("the live view's start panicked".into()))??;
    let view = Arc::new(view);
    eprintln!(
        "live view: ws://{} (in Foxglove: Open connection, Foxglove WebSocket; layout deploy/foxglove/vigil-layout.json)",
        view.addr()
    );
    transports.log = Arc::new(vigil_bus::live::LiveTap::new(transports.log.clone(), view.clone()));
    Ok(Some(view))
}

/// Ends a run: expires what is still queued, lets telemetry reach the log, stops the
/// actors, closes the log; returns the log's and the queue's counts.
fn stop(
    transports: &Transports,
    stats: &NodeStats,
    (system, actor_thread): ActorSystem,
    end: Nanos,
    budget: Nanos,
) -> Result<(std::collections::BTreeMap<String, u64>, vigil_bus::task::QueueCounts), RunError> {
    let swept = transports.tasks.sweep_expired(transports.clock.now_ns().max(end) + budget)?;
    if swept > 0 {
        tracing::debug!(swept, "queued tasks expired at the end of the run");
    }
    if !stats.drain_telemetry(TELEMETRY_DRAIN_TIMEOUT) {
        tracing::warn!(pending = stats.telemetry_pending(), "telemetry not all logged at the end of the run");
    }
    system.stop();
    let _ = actor_thread.join();
    Ok((transports.log.close()?, transports.tasks.counts()?))
}

fn checked_duration(cfg: &RunConfig) -> Result<Nanos, RunError> {
    if cfg.vehicles == 0 || cfg.workers == 0 {
        return Err(RunError::Config("--vehicles and --workers must be at least 1".into()));
    }
    let duration_ns = cfg.duration_ns.unwrap_or((cfg.scenario.duration_s * 1e9).round() as Nanos);
    if duration_ns <= 0 {
        return Err(RunError::Config(format!("duration must be positive, got {} s", duration_ns as f64 * 1e-9)));
    }
    Ok(duration_ns)
}

fn connect_brokers(cfg: &RunConfig, clock: &Arc<dyn Clock>) -> Result<Option<vigil_brokers::Brokers>, RunError> {
    let Some(b) = &cfg.brokers else { return Ok(None) };
    if cfg.record.is_some() {
        return Err(RunError::Config(
            "--record writes the embedded log; over the brokers the drive is in Kafka already".into(),
        ));
    }
    let mut b = b.clone();
    b.kafka.simulated = Some((cfg.scenario.name.clone(), cfg.seed));
    Ok(Some(vigil_brokers::Brokers::connect(&b, clock.clone())?))
}

/// The brokers' transports, or the embedded ones (recording the log with `--record`).
fn transports(
    cfg: &RunConfig,
    brokers: Option<&vigil_brokers::Brokers>,
    clock: Arc<dyn Clock>,
) -> Result<Transports, RunError> {
    if let Some(b) = brokers {
        return Ok(Transports {
            clock,
            log: b.log.clone(),
            frames: Arc::new(b.frames.clone()),
            tasks: Arc::new(b.tasks.clone()),
        });
    }
    let log: Arc<dyn TelemetryLog> = match &cfg.record {
        Some(p) => Arc::new(EmbeddedLog::recording(p, cfg.record_options)?),
        None => Arc::new(EmbeddedLog::new()),
    };
    let queue = TaskQueue::new(cfg.queue_capacity, cfg.max_attempts);
    Ok(Transports {
        log,
        frames: Arc::new(MemoryFrameStore::new(64 * cfg.vehicles)),
        tasks: Arc::new(EmbeddedTasks::new(queue, clock.clone())),
        clock,
    })
}

/// A node's vehicle and its sensor streams.
type NodeInputs = (VehicleId, SensorInputs);

/// One simulated vehicle per `--vehicles`, each with its node's subscriptions.
fn simulated_vehicles(
    cfg: &RunConfig,
    bus: &ZenohBus,
    duration_ns: Nanos,
) -> Result<(Vec<VehicleSim>, Vec<NodeInputs>), RunError> {
    let mut sims = Vec::new();
    let mut inputs = Vec::new();
    for i in 0..cfg.vehicles {
        let mut sim = VehicleSim::new(&cfg.scenario, i, cfg.seed, duration_ns);
        sim.set_render_threads(2);
        inputs.push(subscribe_node(bus, sim.vehicle.clone())?);
        sims.push(sim);
    }
    Ok((sims, inputs))
}
