//! The actors of one process, built in one place: the vehicle nodes (one per sensor
//! input) and, with a model, the in-process vision workers. `vigil run`, the vehicle
//! process, replay and the benchmarks all start their actors through [`Pipeline`].

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use vigil_bus::{FrameStore, TaskTransport, TelemetryLog};
use vigil_core::{Clock, Nanos, RunId, VehicleId};
use vigil_vehicle::node::{
    ControlCommand, NodeConfig, NodeDeps, NodeHandle, NodeStats, RoadMap, SensorInputs, start_node,
};
use vigil_vehicle::priority::{Plane, PriorityMode, enter_or_warn};
use vigil_vehicle::spool::SpoolConfig;
use vigil_vision::batcher::BatcherConfig;
use vigil_vision::model::Recogniser;
use vigil_worker::{Faults, Inference, WorkerDeps, WorkerStats, start_workers};

use crate::{RunError, default_batcher};

/// The transports and the clock every actor of a process shares.
#[derive(Clone)]
pub struct Transports {
    pub clock: Arc<dyn Clock>,
    pub log: Arc<dyn TelemetryLog>,
    pub frames: Arc<dyn FrameStore>,
    pub tasks: Arc<dyn TaskTransport>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports").finish_non_exhaustive()
    }
}

/// What the actors of one process need. Built with [`Pipeline::new`] and the setters;
/// what is not set keeps the default of a plain run (perception on, no workers, the
/// default batcher, no priority planes, the default spool).
pub struct Pipeline {
    inputs: Vec<(VehicleId, SensorInputs)>,
    run: RunId,
    road: RoadMap,
    transports: Transports,
    control: Sender<ControlCommand>,
    perception: bool,
    task_budget_ns: Nanos,
    workers: usize,
    model: Option<Recogniser>,
    batcher: BatcherConfig,
    inject_latency: Duration,
    faults: Arc<Faults>,
    stats: Arc<NodeStats>,
    worker_stats: Arc<WorkerStats>,
    priority: PriorityMode,
    handles: Option<Sender<NodeHandle>>,
    spool: SpoolConfig,
    trust: vigil_bus::trust::ReplyTrust,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("vehicles", &self.inputs.len())
            .field("run", &self.run)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// One node per input, all of run `run` on `road`, sending applied recommendations to
    /// `control`.
    pub fn new(
        inputs: Vec<(VehicleId, SensorInputs)>,
        run: RunId,
        road: RoadMap,
        transports: Transports,
        control: Sender<ControlCommand>,
    ) -> Self {
        Self {
            inputs,
            run,
            road,
            transports,
            control,
            perception: true,
            task_budget_ns: vigil_proto::wire::DEFAULT_TASK_BUDGET_NS,
            workers: 0,
            model: None,
            batcher: default_batcher(),
            inject_latency: Duration::ZERO,
            faults: Arc::default(),
            stats: Arc::default(),
            worker_stats: Arc::default(),
            priority: PriorityMode::Off,
            handles: None,
            spool: SpoolConfig::default(),
            trust: Default::default(),
        }
    }

    pub fn perception(mut self, on: bool) -> Self {
        self.perception = on;
        self
    }

    /// Task deadline = capture time + this.
    pub fn task_budget_ns(mut self, budget: Nanos) -> Self {
        self.task_budget_ns = budget;
        self
    }

    /// `count` in-process vision workers sharing `model` through one batcher (none
    /// without a model: the tasks go to worker processes).
    pub fn workers(mut self, count: usize, model: Option<Recogniser>, batcher: BatcherConfig) -> Self {
        self.workers = count;
        self.model = model;
        self.batcher = batcher;
        self
    }

    /// Drills: extra latency on every inference, and injected worker faults.
    pub fn drills(mut self, inject_latency: Duration, faults: Arc<Faults>) -> Self {
        self.inject_latency = inject_latency;
        self.faults = faults;
        self
    }

    /// Counters the caller reads while the actors run.
    pub fn stats(mut self, nodes: Arc<NodeStats>, workers: Arc<WorkerStats>) -> Self {
        self.stats = nodes;
        self.worker_stats = workers;
        self
    }

    pub fn priority(mut self, mode: PriorityMode) -> Self {
        self.priority = mode;
        self
    }

    /// Where each started node's addresses go (benchmarks that drive a node directly).
    pub fn handles(mut self, to: Sender<NodeHandle>) -> Self {
        self.handles = Some(to);
        self
    }

    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.spool = spool;
        self
    }

    /// What each node requires of a reply before it applies the recommendation.
    pub fn trust(mut self, trust: vigil_bus::trust::ReplyTrust) -> Self {
        self.trust = trust;
        self
    }

    /// Starts the actor system on its own thread: the nodes' fusion/dispatch/handler on
    /// the system arbiter, ingest and telemetry on an I/O arbiter, the workers on theirs.
    /// Returns the system (stop it to end) and its thread.
    pub fn start(self) -> Result<ActorSystem, RunError> {
        spawn_system(move || self.start_inside())
    }

    fn start_inside(self) -> Vec<(actix::Arbiter, Vec<actix::Addr<vigil_worker::VisionWorker>>)> {
        let io = actix::Arbiter::new();
        let bulk = actix::Arbiter::new();
        let forward = actix::Arbiter::new();
        let mode = self.priority;
        for plane in [&bulk, &forward] {
            plane.spawn_fn(move || {
                enter_or_warn(Plane::Bulk, mode);
            });
        }
        let t = &self.transports;
        for (vehicle, input) in self.inputs {
            let mut node_cfg = NodeConfig::new(vehicle, self.run.clone(), self.road);
            node_cfg.perception = self.perception;
            node_cfg.task_budget_ns = self.task_budget_ns;
            node_cfg.spool = self.spool.clone();
            node_cfg.trust = self.trust.clone();
            let deps = NodeDeps {
                clock: t.clock.clone(),
                log: t.log.clone(),
                frames: t.frames.clone(),
                tasks: t.tasks.clone(),
                control: self.control.clone(),
                stats: self.stats.clone(),
            };
            let handle = start_node(node_cfg, deps, input, &io.handle(), &bulk.handle(), &forward.handle());
            if let Some(tx) = &self.handles {
                let _ = tx.send(handle);
            }
        }
        let mut arbiters = vec![(io, Vec::new()), (bulk, Vec::new()), (forward, Vec::new())];
        let Some(model) = self.model else { return arbiters };
        let (name, version, device) = (model.config.name.clone(), model.config.version.clone(), model.device_name());
        match Inference::start(model, self.batcher, self.inject_latency) {
            Ok(inference) => {
                let deps = WorkerDeps {
                    clock: t.clock.clone(),
                    tasks: t.tasks.clone(),
                    frames: t.frames.clone(),
                    inference,
                    model_name: name,
                    model_version: version,
                    device,
                    stats: self.worker_stats,
                    faults: self.faults,
                    answered: Arc::default(),
                    trust: Default::default(),
                };
                // The supervisor restarts a stopped worker only while its address is
                // held: keep them for the life of the system.
                arbiters.extend(start_workers(self.workers, deps));
            }
            Err(e) => tracing::error!(error = %e, "cannot start the batcher; every task will fall back"),
        }
        arbiters
    }
}

/// A node's sensor inputs: its vehicle's streams on the zenoh bus.
pub fn subscribe_node(
    bus: &vigil_bus::ZenohBus,
    vehicle: VehicleId,
) -> Result<(VehicleId, SensorInputs), vigil_bus::BusError> {
    let mut streams = Vec::new();
    for kind in vigil_proto::wire::Stream::ALL {
        streams.push((kind, bus.subscribe(&kind.subscription(vehicle.as_str()), 64)?));
    }
    Ok((vehicle, SensorInputs(streams)))
}

/// A running actor system (stop it to end) and the thread it runs on.
pub type ActorSystem = (actix::System, std::thread::JoinHandle<std::io::Result<()>>);

/// Runs an actor system on its own thread. `setup` starts the actors inside it and returns
/// the arbiters to stop when the system ends, each with what must live until then (the
/// supervisor restarts a stopped actor only while its address is held).
pub fn spawn_system<H: 'static>(
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
