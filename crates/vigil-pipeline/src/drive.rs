//! The drive loop of `vigil run`: steps the simulated vehicles instant by instant,
//! publishes their frames on the sensor bus, applies the recommendations the nodes send
//! back, and in lockstep waits for the pipeline before the clock moves on.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vigil_bus::Publisher;
use vigil_core::{Nanos, VehicleId};
use vigil_proto::wire::Stream;
use vigil_sim::VehicleSim;
use vigil_sim::sim::SimMessage;
use vigil_vehicle::node::{ControlCommand, NodeStats};

use crate::control::apply_due;
use crate::{LockstepClock, RunConfig, RunError, report};

/// How long the runner waits for the pipeline to drain before reporting what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The simulated vehicles of a run and what flows between them and the nodes.
pub(crate) struct Drive<'a> {
    pub cfg: &'a RunConfig,
    pub sims: Vec<VehicleSim>,
    pub start_ns: Nanos,
    pub lockstep: &'a LockstepClock,
    pub publisher: &'a Publisher,
    pub stats: &'a Arc<NodeStats>,
    pub control: Receiver<ControlCommand>,
    /// Frames published per stream.
    pub produced: [u64; 4],
    pending: Vec<ControlCommand>,
    index_of: HashMap<VehicleId, usize>,
}

impl<'a> Drive<'a> {
    pub fn new(
        cfg: &'a RunConfig,
        sims: Vec<VehicleSim>,
        lockstep: &'a LockstepClock,
        publisher: &'a Publisher,
        stats: &'a Arc<NodeStats>,
        control: Receiver<ControlCommand>,
    ) -> Self {
        let index_of = sims.iter().enumerate().map(|(i, s)| (s.vehicle.clone(), i)).collect();
        Self {
            start_ns: cfg.scenario.environment.start_time_ns,
            cfg,
            sims,
            lockstep,
            publisher,
            stats,
            control,
            produced: [0; 4],
            pending: Vec::new(),
            index_of,
        }
    }

    /// Every frame produced is ingested (and fused), and no task is outstanding.
    fn quiet(&self) -> bool {
        let s = self.stats;
        Stream::ALL.iter().all(|k| NodeStats::get(&s.ingested[k.index()]) >= self.produced[k.index()])
            && (!self.cfg.perception || NodeStats::get(&s.fused) >= self.produced[Stream::Radar.index()])
            && s.outstanding.load(Ordering::SeqCst) <= 0
    }

    fn wait_quiet(&self, poll: Duration) {
        let waited = Instant::now();
        while !self.quiet() && waited.elapsed() < DRAIN_TIMEOUT {
            std::thread::sleep(poll);
        }
    }

    /// Drives every vehicle to the end of its scenario. Real time starts at `drive_start`.
    pub fn run(&mut self, drive_start: Instant) -> Result<(), RunError> {
        let console = self.cfg.console && std::io::stderr().is_terminal();
        let mut last_console = Instant::now();
        let mut batch = Vec::new();
        while let Some(t) = self.sims.iter().filter_map(VehicleSim::next_event_ns).min() {
            self.instant(t, drive_start, &mut batch)?;
            if console && last_console.elapsed() > Duration::from_millis(500) {
                last_console = Instant::now();
                report::console_line(t, &self.produced, self.stats);
            }
        }
        if console {
            eprintln!();
        }
        Ok(())
    }

    /// One capture instant `t` (ns from the start): wait for it, apply the commands due,
    /// step the vehicles and publish what they sensed.
    fn instant(&mut self, t: Nanos, drive_start: Instant, batch: &mut Vec<SimMessage>) -> Result<(), RunError> {
        let capture = self.start_ns + t;
        if self.cfg.fast {
            self.lockstep.advance_to(capture);
        } else {
            let due = drive_start + Duration::from_nanos(t.max(0) as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.pending.extend(self.control.try_iter());
        apply_due(&mut self.sims, &mut self.pending, &self.index_of, capture, self.start_ns, &self.cfg.scenario.road);
        for sim in self.sims.iter_mut().filter(|s| s.next_event_ns() == Some(t)) {
            sim.step(batch);
        }
        if let Some((kind, from)) = self.cfg.sensor_outage
            && t >= from
        {
            batch.retain(|m| m.kind != kind);
        }
        // Lockstep: every other frame of this instant is ingested before the radar scans
        // that trigger fusion, so fusion sees the camera and lidar of the same instant and
        // the task path does not share the cores with megabyte frame decoding.
        let (radar, rest): (Vec<_>, Vec<_>) = batch.drain(..).partition(|m| m.kind == Stream::Radar);
        for (i, group) in [rest, radar].into_iter().enumerate() {
            for msg in group {
                self.produced[msg.kind.index()] += 1;
                self.publisher.put_blocking(&msg.key, msg.encode())?;
            }
            if self.cfg.fast && i == 0 {
                self.wait_quiet(Duration::from_micros(50));
            }
        }
        if self.cfg.fast {
            self.wait_quiet(Duration::from_micros(50));
            self.pending.extend(self.control.try_iter());
        }
        Ok(())
    }

    /// Drain: every frame ingested, every task resolved (answered or fallen back); the
    /// last commands applied and every world advanced to the end.
    pub fn finish(&mut self, duration_ns: Nanos) {
        self.wait_quiet(Duration::from_millis(1));
        self.pending.extend(self.control.try_iter());
        let end = self.start_ns + duration_ns;
        apply_due(&mut self.sims, &mut self.pending, &self.index_of, end, self.start_ns, &self.cfg.scenario.road);
        for s in self.sims.iter_mut() {
            s.world.advance_to(duration_ns);
        }
    }
}
