//! Feeding a drive through the vehicle actors and workers, one capture instant at a
//! time, on a clock that stands at the recorded capture time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{LogRecord, Publisher, TaskTransport, TelemetryLog, TransportError, ZenohBus, ZenohConfig, topics};
use vigil_core::{Clock, ManualClock, Nanos, VehicleId};
use vigil_pipeline::feed::{Feeder, Lockstep, Outgoing, Pace, Source};
use vigil_pipeline::{Pipeline, Transports, subscribe_node};
use vigil_vehicle::node::{ControlCommand, NodeStats, Stream};
use vigil_vision::model::Recogniser;
use vigil_worker::WorkerStats;

use crate::collect::{Collected, RecordedSide};
use crate::drive::{Drive, DriveStream, Identity, Recorded, StreamCounters, header_of};
use crate::{ReplayConfig, ReplayError, bad};

/// How long an instant may take to be ingested and answered before the replay gives up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A task or recommendation record the replayed vehicle wrote: (topic, envelope).
type Logged = (String, Vec<u8>);

/// Sends the task and recommendation records the vehicle writes to the playback, which
/// settles them as the drive goes (and counts the rest).
#[derive(Debug)]
struct CaptureLog {
    kept: mpsc::Sender<Logged>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl TelemetryLog for CaptureLog {
    fn append(&self, r: LogRecord<'_>) -> Result<(), TransportError> {
        if r.topic == topics::TASKS || r.topic == topics::RECOMMENDATIONS {
            self.kept.send((r.topic.to_string(), r.envelope.to_vec())).map_err(|_| TransportError::Closed)?;
        }
        *self.counts.lock().map_err(|_| TransportError::Closed)?.entry(r.topic.to_string()).or_insert(0) += 1;
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        Ok(self.counts.lock().map_err(|_| TransportError::Closed)?.clone())
    }
}

/// What the actors did with a drive: the frames fed per stream, their counters, the
/// simulated seconds fed, and what they logged next to what the drive recorded.
pub(crate) struct Fed {
    pub produced: [u64; 4],
    pub stats: Arc<NodeStats>,
    pub start_ns: Nanos,
    pub sim_seconds: f64,
    pub collected: Collected,
    pub drive_id: String,
    pub counters: Arc<StreamCounters>,
}

/// Feeds `drive` through fresh actors serving `model`, in lockstep; see the crate docs.
pub(crate) fn feed(drive: &Drive, cfg: &ReplayConfig, model: Recogniser) -> Result<Fed, ReplayError> {
    let mut stream = drive.stream_counted(cfg.progress.clone().unwrap_or_default())?;
    let first = match stream.next() {
        Some(m) => m?,
        None => return Err(bad("nothing to replay (no telemetry in that source or window)")),
    };
    let start_ns = first.capture_ns;
    let clock = Arc::new(ManualClock::new(start_ns));
    let (kept, logged) = mpsc::channel();
    let log = Arc::new(CaptureLog { kept, counts: Mutex::default() });
    let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(1024, 3), clock.clone()));
    let frames = Arc::new(MemoryFrameStore::new(64 * drive.vehicles.len().max(1)));

    let bus = ZenohBus::open(&ZenohConfig::default())?;
    let publisher = bus.publisher()?;
    let inputs =
        drive.vehicles.iter().map(|v| subscribe_node(&bus, VehicleId(v.clone()))).collect::<Result<Vec<_>, _>>()?;
    let stats = Arc::new(NodeStats::default());
    let (control, control_rx) = std::sync::mpsc::channel::<ControlCommand>();
    let mut transports = Transports { clock: clock.clone(), log: log.clone(), frames, tasks: tasks.clone() };
    // Offline: no urgent plane, but the view still steps down below the replay.
    let live = vigil_pipeline::watch_live(
        cfg.live.as_ref(),
        &mut transports,
        vigil_vehicle::priority::PriorityMode::Nice,
        &drive.vehicles,
    )?;
    // The recorded run's id: replayed task ids match the recorded ones, and a replay of
    // one drive gives one digest whatever else the log holds. Offline: no priority planes.
    let (system, actor_thread) = Pipeline::new(inputs, drive.run.clone(), cfg.road, transports, control)
        .task_budget_ns(cfg.task_budget_ns)
        .workers(cfg.workers.max(1), Some(model), cfg.batcher)
        .stats(stats.clone(), Arc::new(WorkerStats::default()))
        .start()?;

    let counters = stream.counters.clone();
    let mut source = Playback {
        stream,
        pending: None,
        start_ns,
        collected: Collected::new(RecordedSide::new(drive.vehicles.first().cloned().unwrap_or_default(), start_ns)),
        logged,
        identity: Identity::default(),
        error: None,
        control_rx: &control_rx,
        controls: 0,
    };
    source.prime(first);
    let fed = lockstep(&mut source, cfg, (&clock, &stats, &publisher), (start_ns, live.as_deref()));
    if let Some(v) = &live {
        v.ended();
    }
    if let Some(v) = &live {
        tracing::info!(stats = ?v.stats(), "live view");
    }
    let _ = tasks.sweep_expired(clock.now_ns() + cfg.task_budget_ns)?;
    let drained = stats.drain_telemetry(SETTLE_TIMEOUT);
    system.stop();
    let _ = actor_thread.join();
    drop(publisher);
    let _ = bus.close();
    let (produced, last) = fed?;
    if let Some(e) = source.error.take() {
        return Err(e);
    }
    if produced.iter().all(|n| *n == 0) {
        return Err(bad("nothing to replay (no telemetry in that source or window)"));
    }
    if !drained {
        return Err(ReplayError::Replay("the replayed recommendations did not all reach the log within 30 s".into()));
    }
    source.settle_logged();
    source.collected.finish();
    let drive_id = source.identity.id(&drive.vehicles, drive.vehicle.as_deref());
    Ok(Fed {
        produced,
        stats,
        start_ns,
        sim_seconds: (last - start_ns) as f64 * 1e-9,
        collected: source.collected,
        drive_id,
        counters,
    })
}

/// A drive as a source: its messages streamed, grouped by capture instant; what is not
/// telemetry (and the telemetry too) is noted on the way for the comparison.
struct Playback<'a> {
    stream: DriveStream,
    /// The first telemetry message of the next instant.
    pending: Option<Recorded>,
    start_ns: Nanos,
    collected: Collected,
    logged: mpsc::Receiver<Logged>,
    identity: Identity,
    error: Option<ReplayError>,
    control_rx: &'a std::sync::mpsc::Receiver<ControlCommand>,
    controls: u64,
}

impl Playback<'_> {
    /// Notes a message; keeps it as the next instant's first when it is telemetry.
    fn take(&mut self, m: Recorded) -> Option<Recorded> {
        self.identity.observe(&m);
        self.collected.side.observe(&m);
        Stream::of_topic(&m.topic).is_some().then_some(m)
    }

    /// The next telemetry message (notes the others on the way).
    fn pull(&mut self) -> Option<Recorded> {
        while self.error.is_none() {
            match self.stream.next()? {
                Ok(m) => {
                    if let Some(m) = self.take(m) {
                        return Some(m);
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
        None
    }

    /// Takes what the replayed vehicle has logged so far.
    fn settle_logged(&mut self) {
        while let Ok((topic, bytes)) = self.logged.try_recv() {
            self.collected.replayed(&topic, &bytes);
        }
    }

    fn prime(&mut self, first: Recorded) {
        self.pending = match self.take(first) {
            Some(m) => Some(m),
            None => self.pull(),
        };
    }
}

impl Source for Playback<'_> {
    fn next_ns(&self) -> Option<Nanos> {
        self.pending.as_ref().map(|m| m.capture_ns.saturating_sub(self.start_ns))
    }

    fn step(&mut self, _: Nanos, out: &mut Vec<Outgoing>) {
        let Some(first) = self.pending.take() else { return };
        let at = first.capture_ns;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            if m.capture_ns != at {
                self.pending = Some(m);
                break;
            }
            let Some(k) = Stream::of_topic(&m.topic) else {
                next = self.pull();
                continue;
            };
            let h = header_of(&m.envelope).unwrap_or_default();
            out.push(Outgoing { stream: k, key: k.key(&h.vehicle_id, &h.sensor_id).into(), bytes: m.envelope });
            next = self.pull();
        }
    }

    fn published(&mut self) {
        self.controls += self.control_rx.try_iter().count() as u64;
        self.settle_logged();
    }
}

/// Feeds every instant in lockstep (paced to `cfg.speed` if set); returns the frames fed
/// per stream and the last instant.
fn lockstep(
    source: &mut Playback<'_>,
    cfg: &ReplayConfig,
    (clock, stats, publisher): (&ManualClock, &NodeStats, &Publisher),
    (start_ns, live): (Nanos, Option<&vigil_bus::live::LiveView>),
) -> Result<([u64; 4], Nanos), ReplayError> {
    let set_clock = |t: Nanos| clock.set(t);
    let lockstep =
        Lockstep { set_clock: &set_clock, stats, perception: true, limit: SETTLE_TIMEOUT, fail_unsettled: true };
    // A viewer's playback control paces the replay when it is served.
    let playback = live.and_then(|v| v.playback());
    let gate = |t: Nanos| playback.as_ref().is_none_or(|p| p.due(t));
    let real = if playback.is_some() { None } else { cfg.speed.map(|s| (Instant::now(), s)) };
    let pace = Pace { real, lockstep: Some(lockstep), gate: Some(&gate) };
    let mut feeder = Feeder::new(publisher, start_ns, pace);
    let last = feeder.run(source, &mut |t, _| {
        if let Some(v) = live {
            v.at(start_ns + t);
        }
    })?;
    if feeder.skipped > 0 {
        tracing::info!(frames = feeder.skipped, "replay: frames skipped by the viewer's seeks");
    }
    feeder.settle(last)?;
    tracing::debug!(controls = source.controls, "replay: commands decided");
    Ok((feeder.produced, start_ns + last))
}
