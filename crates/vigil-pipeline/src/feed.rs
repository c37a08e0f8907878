//! The one feed loop: capture instant by capture instant, the frames of a [`Source`]
//! (simulated vehicles, or a recorded drive) are published on the sensor bus, paced to
//! real time or in lockstep with the nodes. `vigil run`, `vigil sim --publish` and replay
//! all feed through it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bus::{BusError, Publisher};
use vigil_core::{Nanos, VehicleId};
use vigil_proto::wire::Stream;
use vigil_sim::VehicleSim;
use vigil_sim::scenario::Road;
use vigil_sim::sim::SimMessage;
use vigil_vehicle::node::{ControlCommand, NodeStats};

use crate::control::apply_due;

/// One frame to publish.
#[derive(Debug)]
pub struct Outgoing {
    pub stream: Stream,
    pub key: Arc<str>,
    pub bytes: Vec<u8>,
}

/// Where a drive's frames come from.
pub trait Source {
    /// The next capture instant, ns from the start of the drive.
    fn next_ns(&self) -> Option<Nanos>;
    /// The frames captured at `t`, in capture order.
    fn step(&mut self, t: Nanos, out: &mut Vec<Outgoing>);
    /// The frames of the last instant are published (in lockstep: taken by the nodes).
    fn published(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("sensor bus: {0}")]
    Bus(#[from] BusError),
    #[error(
        "the pipeline did not take the frames of {at_ns} ns within {limit:?} (ingested {ingested:?} of {produced:?})"
    )]
    Unsettled { at_ns: Nanos, limit: Duration, ingested: [u64; 4], produced: [u64; 4] },
}

/// In lockstep, the node's clock is set to each instant before its frames go out, and
/// the next instant waits until the node has taken them and resolved what they raised.
pub struct Lockstep<'a> {
    /// Sets the node's clock to a capture time (absolute ns).
    pub set_clock: &'a dyn Fn(Nanos),
    pub stats: &'a NodeStats,
    /// Whether the node fuses (and so counts every radar scan fused).
    pub perception: bool,
    /// How long an instant may take to settle.
    pub limit: Duration,
    /// Past `limit`: fail the feed (replay must not diverge) or go on (a live run).
    pub fail_unsettled: bool,
}

impl std::fmt::Debug for Lockstep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockstep")
            .field("perception", &self.perception)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// How instants are paced.
pub struct Pace<'a> {
    /// Real time from this instant, `speed` times faster.
    pub real: Option<(Instant, f64)>,
    pub lockstep: Option<Lockstep<'a>>,
    /// Asked before each instant (its capture time): waits as it likes (a viewer's pause
    /// or speed), `false` skips the instant (a viewer's seek ahead).
    pub gate: Option<&'a (dyn Fn(Nanos) -> bool + 'a)>,
}

impl std::fmt::Debug for Pace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("real", &self.real)
            .field("lockstep", &self.lockstep)
            .field("gate", &self.gate.is_some())
            .finish()
    }
}

/// Publishes a source's frames, instant by instant; counts them per stream.
pub struct Feeder<'a> {
    publisher: &'a Publisher,
    start_ns: Nanos,
    pace: Pace<'a>,
    pub produced: [u64; 4],
    /// Frames of instants the gate skipped, not published.
    pub skipped: u64,
}

impl std::fmt::Debug for Feeder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder").field("pace", &self.pace).field("produced", &self.produced).finish_non_exhaustive()
    }
}

impl<'a> Feeder<'a> {
    /// `start_ns`: the capture time of the drive's start, which the source's instants count from.
    pub fn new(publisher: &'a Publisher, start_ns: Nanos, pace: Pace<'a>) -> Self {
        Self { publisher, start_ns, pace, produced: [0; 4], skipped: 0 }
    }

    /// Feeds every instant of `source`; `each` sees each instant fed. Returns the last.
    pub fn run(&mut self, source: &mut dyn Source, each: &mut dyn FnMut(Nanos, &[u64; 4])) -> Result<Nanos, FeedError> {
        let mut batch = Vec::new();
        let mut last = 0;
        while let Some(t) = source.next_ns() {
            if let Some(gate) = self.pace.gate
                && !gate(self.start_ns + t)
            {
                source.step(t, &mut batch);
                self.skipped += batch.len() as u64;
                batch.clear();
                continue;
            }
            self.wait_for(t);
            source.step(t, &mut batch);
            self.publish(t, &mut batch)?;
            source.published();
            each(t, &self.produced);
            last = t;
        }
        Ok(last)
    }

    fn wait_for(&self, t: Nanos) {
        if let Some((from, speed)) = self.pace.real {
            let due = from + Duration::from_secs_f64(t.max(0) as f64 * 1e-9 / speed.max(1e-9));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if let Some(l) = &self.pace.lockstep {
            (l.set_clock)(self.start_ns + t);
        }
    }

    /// The other frames of the instant first, then the radar scans that trigger fusion:
    /// in lockstep, fusion sees the camera and lidar of the same instant, and the task path
    /// does not share the cores with megabyte frame decoding.
    fn publish(&mut self, t: Nanos, batch: &mut Vec<Outgoing>) -> Result<(), FeedError> {
        let (radar, rest): (Vec<_>, Vec<_>) = batch.drain(..).partition(|m| m.stream == Stream::Radar);
        for group in [rest, radar] {
            for m in group {
                self.produced[m.stream.index()] += 1;
                self.publisher.put_blocking(&m.key, m.bytes)?;
            }
            self.settle(t)?;
        }
        Ok(())
    }

    /// In lockstep, waits until the node has taken everything fed so far.
    pub fn settle(&self, t: Nanos) -> Result<(), FeedError> {
        let Some(l) = &self.pace.lockstep else { return Ok(()) };
        if l.stats.wait_settled(&self.produced, l.perception, l.limit) {
            return Ok(());
        }
        let ingested = Stream::ALL.map(|k| NodeStats::get(&l.stats.ingested[k.index()]));
        let e = FeedError::Unsettled { at_ns: self.start_ns + t, limit: l.limit, ingested, produced: self.produced };
        if l.fail_unsettled {
            return Err(e);
        }
        tracing::warn!(error = %e, "feeding on");
        Ok(())
    }
}

/// Sees each frame a simulated vehicle captured (its index, the message, its bytes).
pub type Observer<'a> = Box<dyn FnMut(usize, &SimMessage, &[u8]) + 'a>;
/// Moves the commands received so far to the list it is given.
pub type Inbox<'a> = Box<dyn FnMut(&mut Vec<ControlCommand>) + 'a>;

/// Simulated vehicles as a source, the loop closed: before each instant the commands
/// that came back (from `inbox`) are applied, each at the time it was decided.
pub struct SimSource<'a> {
    pub sims: Vec<VehicleSim>,
    start_ns: Nanos,
    road: Road,
    index_of: HashMap<VehicleId, usize>,
    pending: Vec<ControlCommand>,
    inbox: Inbox<'a>,
    observe: Option<Observer<'a>>,
    /// From this instant on, frames of this stream are lost (a sensor outage drill).
    outage: Option<(Stream, Nanos)>,
    captured: Vec<SimMessage>,
}

impl std::fmt::Debug for SimSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSource")
            .field("vehicles", &self.sims.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'a> SimSource<'a> {
    pub fn new(sims: Vec<VehicleSim>, start_ns: Nanos, road: Road, inbox: Inbox<'a>) -> Self {
        let index_of = sims.iter().enumerate().map(|(i, s)| (s.vehicle.clone(), i)).collect();
        Self {
            sims,
            start_ns,
            road,
            index_of,
            pending: Vec::new(),
            inbox,
            observe: None,
            outage: None,
            captured: Vec::new(),
        }
    }

    pub fn observe(mut self, observe: Observer<'a>) -> Self {
        self.observe = Some(observe);
        self
    }

    pub fn outage(mut self, outage: Option<(Stream, Nanos)>) -> Self {
        self.outage = outage;
        self
    }

    /// Takes the commands received so far.
    pub fn take_commands(&mut self) {
        (self.inbox)(&mut self.pending);
    }

    /// The drive is over: the last commands applied and every world advanced to its end.
    pub fn finish(mut self, duration_ns: Nanos) -> Vec<VehicleSim> {
        self.take_commands();
        let end = self.start_ns + duration_ns;
        apply_due(&mut self.sims, &mut self.pending, &self.index_of, end, self.start_ns, &self.road);
        for s in self.sims.iter_mut() {
            s.world.advance_to(duration_ns);
        }
        self.sims
    }
}

impl Source for SimSource<'_> {
    fn next_ns(&self) -> Option<Nanos> {
        self.sims.iter().filter_map(VehicleSim::next_event_ns).min()
    }

    fn step(&mut self, t: Nanos, out: &mut Vec<Outgoing>) {
        self.take_commands();
        apply_due(&mut self.sims, &mut self.pending, &self.index_of, self.start_ns + t, self.start_ns, &self.road);
        let lost = self.outage.filter(|(_, from)| t >= *from).map(|(kind, _)| kind);
        for (i, sim) in self.sims.iter_mut().enumerate() {
            if sim.next_event_ns() != Some(t) {
                continue;
            }
            sim.step(&mut self.captured);
            for msg in self.captured.drain(..).filter(|m| Some(m.kind) != lost) {
                let bytes = msg.encode();
                if let Some(o) = self.observe.as_mut() {
                    o(i, &msg, &bytes);
                }
                out.push(Outgoing { stream: msg.kind, key: msg.key, bytes });
            }
        }
    }

    fn published(&mut self) {
        self.take_commands();
    }
}
