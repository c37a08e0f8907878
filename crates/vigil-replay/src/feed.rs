//! Feeding a drive through the vehicle actors and workers, one capture instant at a
//! time, on a clock that stands at the recorded capture time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{LogRecord, Publisher, TaskTransport, TelemetryLog, TransportError, ZenohBus, ZenohConfig, topics};
use vigil_core::{Clock, ManualClock, Nanos, VehicleId};
use vigil_pipeline::feed::{Feeder, Lockstep, Outgoing, Pace, Source};
use vigil_pipeline::{Pipeline, Transports, subscribe_node};
use vigil_vehicle::node::{ControlCommand, NodeStats, Stream};
use vigil_vision::model::Recogniser;
use vigil_worker::WorkerStats;

use crate::drive::{Drive, Recorded, header_of};
use crate::{ReplayConfig, ReplayError};

/// How long an instant may take to be ingested and answered before the replay gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps the task and recommendation records the vehicle writes (and counts the rest).
#[derive(Debug, Default)]
struct CaptureLog {
    kept: Mutex<Vec<(String, Vec<u8>)>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl TelemetryLog for CaptureLog {
    fn append(&self, r: LogRecord<'_>) -> Result<(), TransportError> {
        if r.topic == topics::TASKS || r.topic == topics::RECOMMENDATIONS {
            self.kept.lock().map_err(|_| TransportError::Closed)?.push((r.topic.to_string(), r.envelope.to_vec()));
        }
        *self.counts.lock().map_err(|_| TransportError::Closed)?.entry(r.topic.to_string()).or_insert(0) += 1;
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        Ok(self.counts.lock().map_err(|_| TransportError::Closed)?.clone())
    }
}

/// What the actors did with a drive: the frames fed per stream, the records they logged,
/// their counters, and the simulated seconds fed.
pub(crate) struct Fed {
    pub produced: [u64; 4],
    pub kept: Vec<(String, Vec<u8>)>,
    pub stats: Arc<NodeStats>,
    pub start_ns: Nanos,
    pub sim_seconds: f64,
}

/// Feeds `drive` through fresh actors serving `model`, in lockstep; see the crate docs.
pub(crate) fn feed(drive: &Drive, cfg: &ReplayConfig, model: Recogniser) -> Result<Fed, ReplayError> {
    let start_ns = drive.messages.first().map_or(0, |m| m.capture_ns);
    let clock = Arc::new(ManualClock::new(start_ns));
    let log = Arc::new(CaptureLog::default());
    let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(1024, 3), clock.clone()));
    let frames = Arc::new(MemoryFrameStore::new(64 * drive.vehicles.len().max(1)));

    let bus = ZenohBus::open(&ZenohConfig::default())?;
    let publisher = bus.publisher()?;
    let inputs =
        drive.vehicles.iter().map(|v| subscribe_node(&bus, VehicleId(v.clone()))).collect::<Result<Vec<_>, _>>()?;
    let stats = Arc::new(NodeStats::default());
    let (control, control_rx) = std::sync::mpsc::channel::<ControlCommand>();
    let transports = Transports { clock: clock.clone(), log: log.clone(), frames, tasks: tasks.clone() };
    // The recorded run's id: replayed task ids match the recorded ones, and a replay of
    // one drive gives one digest whatever else the log holds. Offline: no priority planes.
    let (system, actor_thread) = Pipeline::new(inputs, drive.run.clone(), cfg.road, transports, control)
        .task_budget_ns(cfg.task_budget_ns)
        .workers(cfg.workers.max(1), Some(model), cfg.batcher)
        .stats(stats.clone(), Arc::new(WorkerStats::default()))
        .start()?;

    let (produced, last) = lockstep(drive, cfg, (&clock, &stats, &publisher), start_ns, &control_rx)?;
    let _ = tasks.sweep_expired(clock.now_ns() + cfg.task_budget_ns)?;
    if !stats.drain_telemetry(SETTLE_TIMEOUT) {
        return Err(ReplayError::Replay("the replayed recommendations did not all reach the log within 30 s".into()));
    }
    system.stop();
    let _ = actor_thread.join();
    drop(publisher);
    let _ = bus.close();
    let kept = log.kept.lock().map(|k| k.clone()).unwrap_or_default();
    Ok(Fed { produced, kept, stats, start_ns, sim_seconds: (last - start_ns) as f64 * 1e-9 })
}

/// The drive's telemetry grouped by capture instant, in order.
fn instants(drive: &Drive) -> Vec<(Nanos, Vec<(Stream, &Recorded)>)> {
    let mut instants: Vec<(Nanos, Vec<(Stream, &Recorded)>)> = Vec::new();
    for (k, m) in drive.messages.iter().filter_map(|m| Stream::of_topic(&m.topic).map(|k| (k, m))) {
        match instants.last_mut() {
            Some((t, group)) if *t == m.capture_ns => group.push((k, m)),
            _ => instants.push((m.capture_ns, vec![(k, m)])),
        }
    }
    instants
}

/// A recorded drive as a source: its instants, ns from the drive's start.
struct Recording<'a> {
    instants: Vec<(Nanos, Vec<(Stream, &'a Recorded)>)>,
    next: usize,
    start_ns: Nanos,
    control_rx: &'a std::sync::mpsc::Receiver<ControlCommand>,
    controls: u64,
    progress: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Source for Recording<'_> {
    fn next_ns(&self) -> Option<Nanos> {
        self.instants.get(self.next).map(|(t, _)| t - self.start_ns)
    }

    fn step(&mut self, _: Nanos, out: &mut Vec<Outgoing>) {
        let Some((_, group)) = self.instants.get_mut(self.next) else { return };
        self.next += 1;
        for (k, m) in std::mem::take(group) {
            let h = header_of(&m.envelope).unwrap_or_default();
            out.push(Outgoing { stream: k, key: k.key(&h.vehicle_id, &h.sensor_id).into(), bytes: m.envelope.clone() });
            if let Some(p) = &self.progress {
                p.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn published(&mut self) {
        self.controls += self.control_rx.try_iter().count() as u64;
    }
}

/// Feeds every instant in lockstep (paced to `cfg.speed` if set); returns the frames fed
/// per stream and the last instant.
fn lockstep(
    drive: &Drive,
    cfg: &ReplayConfig,
    (clock, stats, publisher): (&ManualClock, &NodeStats, &Publisher),
    start_ns: Nanos,
    control_rx: &std::sync::mpsc::Receiver<ControlCommand>,
) -> Result<([u64; 4], Nanos), ReplayError> {
    let mut source = Recording {
        instants: instants(drive),
        next: 0,
        start_ns,
        control_rx,
        controls: 0,
        progress: cfg.progress.clone(),
    };
    let set_clock = |t: Nanos| clock.set(t);
    let lockstep =
        Lockstep { set_clock: &set_clock, stats, perception: true, limit: SETTLE_TIMEOUT, fail_unsettled: true };
    let pace = Pace { real: cfg.speed.map(|s| (Instant::now(), s)), lockstep: Some(lockstep) };
    let mut feeder = Feeder::new(publisher, start_ns, pace);
    let last = feeder.run(&mut source, &mut |_, _| {})?;
    feeder.settle(last)?;
    tracing::debug!(controls = source.controls, "replay: commands decided");
    Ok((feeder.produced, start_ns + last))
}
