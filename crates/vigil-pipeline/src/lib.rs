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

pub mod bench;
pub mod clock;
pub mod fleet_bench;
pub mod ingest_bench;
pub mod metrics;
pub mod process;
pub mod replay;
pub mod report;
pub mod soak_bench;
pub mod timeline;
pub mod worker_bench;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedLog, EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{FrameStore, TaskTransport, TelemetryLog, ZenohBus, ZenohConfig};
use vigil_core::policy::Action;
use vigil_core::{Clock, Nanos, VehicleId};
use vigil_proto::wire::Stream;
use vigil_sim::world::{EgoControl, World};
use vigil_sim::{Scenario, VehicleSim};
use vigil_vehicle::node::{ControlCommand, NodeConfig, NodeDeps, NodeStats, RoadMap, SensorInputs, start_node};
use vigil_vehicle::priority::{Plane, PriorityMode, enter_or_warn};
pub use vigil_vehicle::spool::{SpoolConfig, check_spool_dir, default_spool_dir};
use vigil_vision::batcher::{BatcherConfig, Serving};
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Faults, Inference, WorkerDeps, WorkerStats, start_workers};

pub use clock::{LockstepClock, PacedClock};
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
}

/// How long the runner waits for the pipeline to drain before reporting what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a process waits at its end for the telemetry spool to reach the log (a log
/// that was down catches up here).
pub(crate) const TELEMETRY_DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Translates an applied action into an ego command (the vehicle's controller).
pub fn control_for(action: Action, world: &World, road: &vigil_sim::scenario::Road) -> Option<EgoControl> {
    let c = world.ego.control;
    let spec = &world.ego.spec;
    let w = road.lane_width_m;
    let lane_of = |y: f64| (y / w).round();
    match action {
        Action::BrakeHard => Some(EgoControl { target_speed: 0.0, decel: spec.max_decel_mps2, ..c }),
        Action::Brake => Some(EgoControl { target_speed: 0.0, decel: (0.7 * spec.max_decel_mps2).max(c.decel), ..c }),
        Action::SlowDown => {
            let target = 0.5 * spec.speed_mps;
            (c.target_speed > target).then_some(EgoControl {
                target_speed: target,
                decel: (0.4 * spec.max_decel_mps2).max(c.decel),
                ..c
            })
        }
        Action::SteerLeft | Action::SteerRight => {
            let side = if action == Action::SteerLeft { 1.0 } else { -1.0 };
            let lane = lane_of(c.target_y) + side;
            (lane >= 0.0 && lane < road.lanes as f64).then_some(EgoControl { target_y: lane * w, ..c })
        }
        Action::Continue => None,
    }
}

/// Runs the pipeline to the end of the scenario and reports.
pub fn run(cfg: RunConfig) -> Result<RunReport, RunError> {
    if cfg.vehicles == 0 || cfg.workers == 0 {
        return Err(RunError::Config("--vehicles and --workers must be at least 1".into()));
    }
    let duration_ns = cfg.duration_ns.unwrap_or((cfg.scenario.duration_s * 1e9).round() as Nanos);
    if duration_ns <= 0 {
        return Err(RunError::Config(format!("duration must be positive, got {} s", duration_ns as f64 * 1e-9)));
    }
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
    let brokers = match &cfg.brokers {
        Some(b) => {
            if cfg.record.is_some() {
                return Err(RunError::Config(
                    "--record writes the embedded log; over the brokers the drive is in Kafka already".into(),
                ));
            }
            let mut b = b.clone();
            b.kafka.simulated = Some((cfg.scenario.name.clone(), cfg.seed));
            Some(vigil_brokers::Brokers::connect(&b, clock.clone())?)
        }
        None => None,
    };
    // The model is loaded once, before anything moves.
    let model = if cfg.perception {
        let device = default_device();
        Some(Recogniser::load(&cfg.model_dir, &device)?)
    } else {
        None
    };
    let model_info = model.as_ref().map(|m| (m.config.name.clone(), m.config.version.clone(), m.device_name()));

    let (log, frames, tasks): (Arc<dyn TelemetryLog>, Arc<dyn FrameStore>, Arc<dyn TaskTransport>) = match &brokers {
        Some(b) => (b.log.clone(), Arc::new(b.frames.clone()), Arc::new(b.tasks.clone())),
        None => {
            let log: Arc<dyn TelemetryLog> = match &cfg.record {
                Some(p) => Arc::new(EmbeddedLog::recording(p)?),
                None => Arc::new(EmbeddedLog::new()),
            };
            let queue = TaskQueue::new(cfg.queue_capacity, cfg.max_attempts);
            (
                log,
                Arc::new(MemoryFrameStore::new(64 * cfg.vehicles)),
                Arc::new(EmbeddedTasks::new(queue, clock.clone())),
            )
        }
    };

    // Sensor bus: one zenoh session; the simulator publishes where drivers would and
    // each node subscribes to its own vehicle's streams.
    let bus = ZenohBus::open(&ZenohConfig::default())?;
    let publisher = bus.publisher()?;
    let mut sims = Vec::new();
    let mut inputs = Vec::new();
    for i in 0..cfg.vehicles {
        let mut sim = VehicleSim::new(&cfg.scenario, i, cfg.seed, duration_ns);
        sim.set_render_threads(2);
        let mut streams = Vec::new();
        for kind in Stream::ALL {
            streams.push((kind, bus.subscribe(&kind.subscription(sim.vehicle.as_str()), 64)?));
        }
        inputs.push((sim.vehicle.clone(), SensorInputs(streams)));
        sims.push(sim);
    }

    let stats = Arc::new(NodeStats::default());
    let worker_stats = Arc::new(WorkerStats::default());
    let (control_tx, control_rx) = std::sync::mpsc::channel::<ControlCommand>();
    let road = cfg.scenario.road.clone();
    let road_map = RoadMap { lanes: road.lanes, lane_width_m: road.lane_width_m };

    // The actor system lives on its own thread; this thread drives the simulator.
    // Embedded runs stay reproducible from the seed; over the brokers every run is new.
    let run =
        if cfg.brokers.is_some() { vigil_core::RunId::generate() } else { vigil_core::RunId::reproducible(cfg.seed) };
    let (system, actor_thread) = start_actors(Actors {
        inputs,
        run,
        road: road_map,
        perception: cfg.perception,
        task_budget_ns: cfg.task_budget_ns,
        workers: cfg.workers,
        model,
        batcher: cfg.batcher,
        inject_latency: cfg.inject_latency,
        faults: cfg.faults.clone(),
        clock: clock.clone(),
        log: log.clone(),
        frames: frames.clone(),
        tasks: tasks.clone(),
        stats: stats.clone(),
        worker_stats: worker_stats.clone(),
        control: control_tx,
        priority: cfg.priority,
        handles: None,
        spool: cfg.spool.clone(),
    })?;

    // Drive. Real time starts now, whatever setting up took.
    paced.restart();
    let drive_start = Instant::now();
    let mut produced = [0u64; 4];
    let mut pending: Vec<ControlCommand> = Vec::new();
    let mut batch = Vec::new();
    let console = cfg.console && std::io::stderr().is_terminal();
    let mut last_console = Instant::now();
    let index_of: std::collections::HashMap<VehicleId, usize> =
        sims.iter().enumerate().map(|(i, s)| (s.vehicle.clone(), i)).collect();
    let quiet = |produced: &[u64; 4]| {
        Stream::ALL.iter().all(|k| NodeStats::get(&stats.ingested[k.index()]) >= produced[k.index()])
            && (!cfg.perception || NodeStats::get(&stats.fused) >= produced[Stream::Radar.index()])
            && stats.outstanding.load(Ordering::SeqCst) <= 0
    };
    while let Some(t) = sims.iter().filter_map(VehicleSim::next_event_ns).min() {
        let capture = start_ns + t;
        if cfg.fast {
            lockstep.advance_to(capture);
        } else {
            let due = drive_start + Duration::from_nanos(t.max(0) as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        pending.extend(control_rx.try_iter());
        apply_due(&mut sims, &mut pending, &index_of, capture, start_ns, &road);
        for sim in sims.iter_mut().filter(|s| s.next_event_ns() == Some(t)) {
            sim.step(&mut batch);
        }
        // Lockstep: every other frame of this instant is ingested before the radar scans
        // that trigger fusion, so fusion sees the camera and lidar of the same instant and
        // the task path does not share the cores with megabyte frame decoding.
        if let Some((kind, from)) = cfg.sensor_outage
            && t >= from
        {
            batch.retain(|m| m.kind != kind);
        }
        let (radar, rest): (Vec<_>, Vec<_>) = batch.drain(..).partition(|m| m.kind == Stream::Radar);
        for (i, group) in [rest, radar].into_iter().enumerate() {
            for msg in group {
                produced[msg.kind.index()] += 1;
                publisher.put_blocking(&msg.key, msg.encode())?;
            }
            if cfg.fast && i == 0 {
                let waited = Instant::now();
                while !quiet(&produced) && waited.elapsed() < DRAIN_TIMEOUT {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        if cfg.fast {
            let waited = Instant::now();
            while !quiet(&produced) && waited.elapsed() < DRAIN_TIMEOUT {
                std::thread::sleep(Duration::from_micros(50));
            }
            pending.extend(control_rx.try_iter());
        }
        if console && last_console.elapsed() > Duration::from_millis(500) {
            last_console = Instant::now();
            report::console_line(t, &produced, &stats);
        }
    }
    // Drain: every frame ingested, every task resolved (answered or fallen back).
    let waited = Instant::now();
    while !quiet(&produced) && waited.elapsed() < DRAIN_TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    pending.extend(control_rx.try_iter());
    let end = start_ns + duration_ns;
    apply_due(&mut sims, &mut pending, &index_of, end, start_ns, &road);
    for s in sims.iter_mut() {
        s.world.advance_to(duration_ns);
    }
    if console {
        eprintln!();
    }
    let swept = tasks.sweep_expired(clock.now_ns().max(end) + cfg.task_budget_ns)?;
    if swept > 0 {
        tracing::debug!(swept, "queued tasks expired at the end of the run");
    }
    if !stats.drain_telemetry(TELEMETRY_DRAIN_TIMEOUT) {
        tracing::warn!(pending = stats.telemetry_pending(), "telemetry not all logged at the end of the run");
    }
    system.stop();
    let _ = actor_thread.join();
    drop(publisher);
    let _ = bus.close();
    let log_counts = log.close()?;
    let queue = tasks.counts()?;
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
    }))
}

/// What the actors of one process need: the vehicle nodes (one per input) and, with a
/// model, the in-process vision workers.
pub(crate) struct Actors {
    pub inputs: Vec<(VehicleId, SensorInputs)>,
    /// The process's run: task ids and frame keys carry it.
    pub run: vigil_core::RunId,
    pub road: RoadMap,
    pub perception: bool,
    pub task_budget_ns: Nanos,
    pub workers: usize,
    pub model: Option<Recogniser>,
    pub batcher: BatcherConfig,
    pub inject_latency: Duration,
    pub faults: Arc<Faults>,
    pub clock: Arc<dyn Clock>,
    pub log: Arc<dyn TelemetryLog>,
    pub frames: Arc<dyn FrameStore>,
    pub tasks: Arc<dyn TaskTransport>,
    pub stats: Arc<NodeStats>,
    pub worker_stats: Arc<WorkerStats>,
    pub control: std::sync::mpsc::Sender<ControlCommand>,
    pub priority: PriorityMode,
    /// Where each started node's addresses go (benchmarks that drive a node directly).
    pub handles: Option<std::sync::mpsc::Sender<vigil_vehicle::node::NodeHandle>>,
    pub spool: SpoolConfig,
}

/// Starts the actor system on its own thread: the nodes' fusion/dispatch/handler on the
/// system arbiter, ingest and telemetry on an I/O arbiter, the workers on theirs.
/// Returns the system (stop it to end) and its thread.
pub(crate) fn start_actors(a: Actors) -> Result<ActorSystem, RunError> {
    spawn_system(move || {
        let io = actix::Arbiter::new();
        let bulk = actix::Arbiter::new();
        let forward = actix::Arbiter::new();
        let mode = a.priority;
        for plane in [&bulk, &forward] {
            plane.spawn_fn(move || {
                enter_or_warn(Plane::Bulk, mode);
            });
        }
        for (vehicle, input) in a.inputs {
            let mut node_cfg = NodeConfig::new(vehicle, a.run.clone(), a.road);
            node_cfg.perception = a.perception;
            node_cfg.task_budget_ns = a.task_budget_ns;
            node_cfg.spool = a.spool.clone();
            let deps = NodeDeps {
                clock: a.clock.clone(),
                log: a.log.clone(),
                frames: a.frames.clone(),
                tasks: a.tasks.clone(),
                control: a.control.clone(),
                stats: a.stats.clone(),
            };
            let handle = start_node(node_cfg, deps, input, &io.handle(), &bulk.handle(), &forward.handle());
            if let Some(tx) = &a.handles {
                let _ = tx.send(handle);
            }
        }
        let mut arbiters = vec![(io, Vec::new()), (bulk, Vec::new()), (forward, Vec::new())];
        if let Some(model) = a.model {
            let (name, version, device) =
                (model.config.name.clone(), model.config.version.clone(), model.device_name());
            match Inference::start(model, a.batcher, a.inject_latency) {
                Ok(inference) => {
                    let deps = WorkerDeps {
                        clock: a.clock,
                        tasks: a.tasks,
                        frames: a.frames,
                        inference,
                        model_name: name,
                        model_version: version,
                        device,
                        stats: a.worker_stats,
                        faults: a.faults,
                        answered: Arc::default(),
                    };
                    // The supervisor restarts a stopped worker only while its
                    // address is held: keep them for the life of the system.
                    arbiters.extend(start_workers(a.workers, deps));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the batcher; every task will fall back")
                }
            }
        }
        arbiters
    })
}

/// A running actor system (stop it to end) and the thread it runs on.
pub(crate) type ActorSystem = (actix::System, std::thread::JoinHandle<std::io::Result<()>>);

/// Runs an actor system on its own thread. `setup` starts the actors inside it and returns
/// the arbiters to stop when the system ends, each with what must live until then (the
/// supervisor restarts a stopped actor only while its address is held).
pub(crate) fn spawn_system<H: 'static>(
    setup: impl FnOnce() -> Vec<(actix::Arbiter, H)> + Send + 'static,
) -> Result<ActorSystem, RunError> {
    let (sys_tx, sys_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("vigil-actors".into())
        .spawn(move || {
            let sys = actix::System::new();
            let arbiters = sys.block_on(async move {
                let arbiters = setup();
                let _ = sys_tx.send(actix::System::current());
                arbiters
            });
            let r = sys.run();
            for (a, held) in arbiters {
                drop(held);
                a.stop();
            }
            r
        })
        .map_err(|e| RunError::Actors(e.to_string()))?;
    let system = sys_rx.recv().map_err(|_| RunError::Actors("the actor system did not start".into()))?;
    Ok((system, thread))
}

/// Applies every pending command decided at or before `until` (vehicle clock), each at
/// its own time: the world is advanced to that instant first.
pub fn apply_due(
    sims: &mut [VehicleSim],
    pending: &mut Vec<ControlCommand>,
    index_of: &std::collections::HashMap<VehicleId, usize>,
    until: Nanos,
    start_ns: Nanos,
    road: &vigil_sim::scenario::Road,
) {
    pending.sort_by_key(|c| c.at_ns);
    let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|c| c.at_ns <= until);
    *pending = later;
    for c in due {
        let Some(&i) = index_of.get(&c.vehicle) else { continue };
        let world = &mut sims[i].world;
        world.advance_to(c.at_ns - start_ns);
        if let Some(control) = control_for(c.action, world, road) {
            tracing::debug!(vehicle = %c.vehicle, action = c.action.name(), t = world.time_ns, "applied");
            world.command(control);
        }
    }
}
