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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_brokers::{BrokerConfig, Brokers};
use vigil_bus::{FrameStore, TaskTransport, TelemetryLog, ZenohBus, ZenohConfig};
use vigil_core::policy::Action;
use vigil_core::{Clock, Nanos, VehicleId, WallClock};
use vigil_sim::Scenario;
use vigil_vehicle::node::{ControlCommand, NodeStats, RoadMap, Stream};

use crate::RunError;
use crate::metrics::{DETECT_TO_RECOMMEND_SECONDS, Metrics, VEHICLE};
use crate::report::{BrokerReport, Percentiles, Recommendations};

pub mod service;
mod worker;
pub use self::worker::{WorkerAmqp, WorkerProcess, WorkerReport, run_worker, start_worker_system};

pub(crate) fn get(a: &AtomicU64) -> u64 {
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
    /// The registry the live counters are published to, once a second (`None`: no
    /// metrics served).
    pub metrics: Option<Metrics>,
    /// Scheduling of the urgent plane against telemetry.
    pub priority: vigil_vehicle::priority::PriorityMode,
    /// Where telemetry waits while the log is slow or down.
    pub spool: vigil_vehicle::spool::SpoolConfig,
    /// Serve the Foxglove live view (`--foxglove`).
    pub live: Option<vigil_bus::live::LiveConfig>,
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
    /// What the Foxglove live view did (`--foxglove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_view: Option<vigil_bus::live::LiveStats>,
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
    let mut transports = crate::Transports { clock, log, frames, tasks };
    let live = crate::watch_live(cfg.live.as_ref(), &mut transports, cfg.priority, &vehicles)?;
    let (system, actor_thread) = crate::Pipeline::new(inputs, run_id.clone(), road, transports, control_tx)
        .perception(cfg.perception)
        .task_budget_ns(cfg.task_budget_ns)
        .stats(stats.clone(), Arc::default())
        .priority(cfg.priority)
        .spool(cfg.spool.clone())
        .trust(trust)
        .start()?;
    tracing::info!(vehicles = ?vehicles, "vehicle nodes up");

    let forward = Forwarder { publisher: &publisher, sent: AtomicU64::new(0), live: live.as_deref() };
    let report = || {
        let mut r = vehicle_report(&run_id, &vehicles, wall_start, &stats, get(&forward.sent), &brokers);
        r.live_view = live.as_ref().map(|v| v.stats());
        r
    };
    let mut service = service::Service::from_env();
    service.ready(&format!("{} vehicle(s): {}", vehicles.len(), vehicles.join(", ")));
    let alive = || !actor_thread.is_finished();
    serve(&cfg, &control_rx, &forward, &stats, &report, (&mut service, &alive))?;
    service.stopping();
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
        publish(m, &r, &stats);
    }
    Ok(r)
}

/// Sends the nodes' commands back to the vehicles on zenoh, counted.
struct Forwarder<'a> {
    publisher: &'a vigil_bus::Publisher,
    sent: AtomicU64,
    live: Option<&'a vigil_bus::live::LiveView>,
}

impl Forwarder<'_> {
    fn send(&self, c: ControlCommand) -> Result<(), RunError> {
        let envelope = c.encode();
        if let Some(v) = self.live.filter(|v| v.watching()) {
            v.offer(c.at_ns, &envelope);
        }
        self.publisher.put_blocking(&vigil_proto::wire::control_key(c.vehicle.as_str()), envelope)?;
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
    (service, alive): (&mut service::Service, &dyn Fn() -> bool),
) -> Result<(), RunError> {
    let ingested = || Stream::ALL.iter().map(|k| get(&stats.ingested[k.index()])).sum::<u64>();
    let (mut last_total, mut last_change) = (0u64, Instant::now());
    let mut next_metrics = Instant::now();
    loop {
        service.tick(alive(), || {
            let (raised, completed, fallback) = (get(&stats.tasks_raised), get(&stats.completed), get(&stats.fallback));
            format!("ingested {}, tasks {raised} ({completed} completed, {fallback} fallback)", ingested())
        });
        if let Some(m) = &cfg.metrics
            && Instant::now() >= next_metrics
        {
            publish(m, &report(), stats);
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
fn publish(m: &Metrics, report: &VehicleReport, stats: &NodeStats) {
    VEHICLE.publish(report);
    m.feed_histogram(DETECT_TO_RECOMMEND_SECONDS, &stats.latencies.weighted_seconds());
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
        live_view: None,
    }
}
