//! `vigil sim --publish`: the simulated fleet as the sensors of vehicle nodes in other
//! processes, paced to real time on zenoh; with `control`, the loop closed over the bus:
//! the commands the nodes send back are checked, counted and applied to the egos.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_bus::{BusSample, ZenohBus, ZenohConfig};
use vigil_core::{Clock, Digest, Nanos, VehicleId, WallClock};
use vigil_sim::sim::SimMessage;
use vigil_sim::{Scenario, SimStats, VehicleSim};
use vigil_vehicle::node::{ControlCommand, control_key};

use crate::feed::{Feeder, Pace, SimSource};
use crate::{Outcome, RunError};

/// How long a closed-loop publisher listens for late commands after its last frame.
const CONTROL_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub bus: ZenohConfig,
    pub vehicles: usize,
    pub seed: u64,
    pub duration_ns: Nanos,
    /// Apply the commands that come back (the closed loop).
    pub control: bool,
    /// Wait for this many zenoh peers (up to `wait_timeout`) before the first frame.
    pub wait_peers: usize,
    pub wait_timeout: Duration,
    /// Capture times from the wall clock instead of the scenario's start.
    pub wall_clock: bool,
}

/// Commands received on the control channels.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Controls {
    pub received: u64,
    /// Fallbacks among them (no recommendation in time).
    pub fallback: u64,
    /// Commands for a task that had a command already (each was applied): must be 0.
    pub applied_twice: u64,
    /// Undecodable, or for a vehicle this simulator does not run (counted, not applied).
    pub rejected: u64,
    /// Samples on the control keys over the bus's size limit (dropped, not applied).
    pub oversize: u64,
}

/// What a publisher sent, and with `control`, what the commands did to the egos.
#[derive(Debug)]
pub struct Published {
    pub stats: SimStats,
    /// Of the per-vehicle digests of every frame's bytes, in vehicle order.
    pub digest: String,
    pub closed_loop: Option<(Outcome, Controls)>,
}

/// The commands coming back to a closed-loop publisher, checked and counted.
struct ControlInbox<'a> {
    rx: tokio::sync::mpsc::Receiver<BusSample>,
    index_of: &'a HashMap<VehicleId, usize>,
    controls: Controls,
    seen: HashSet<(VehicleId, String)>,
}

impl ControlInbox<'_> {
    /// Moves every command received so far to `pending`.
    fn take(&mut self, pending: &mut Vec<ControlCommand>) {
        while let Ok(sample) = self.rx.try_recv() {
            match ControlCommand::decode(&sample.payload) {
                // A command names its vehicle twice, in its key and its envelope: both must agree.
                Ok(c) if sample.key != control_key(c.vehicle.as_str()) => {
                    self.controls.rejected += 1;
                    tracing::warn!(key = %sample.key, vehicle = %c.vehicle, "command's vehicle is not its key's; dropped");
                }
                Ok(c) if self.index_of.contains_key(&c.vehicle) => {
                    self.controls.received += 1;
                    self.controls.fallback += u64::from(c.fallback);
                    if !self.seen.insert((c.vehicle.clone(), c.task_id.clone())) {
                        self.controls.applied_twice += 1;
                        tracing::warn!(task = %c.task_id, "a second command for the same task");
                    }
                    pending.push(c);
                }
                Ok(c) => {
                    self.controls.rejected += 1;
                    tracing::warn!(vehicle = %c.vehicle, "command for a vehicle this simulator does not run");
                }
                Err(e) => {
                    self.controls.rejected += 1;
                    tracing::warn!(key = %sample.key, error = %e, "undecodable command; dropped and counted");
                }
            }
        }
    }
}

/// Publishes the fleet of `scenario`; `observe` sees every frame (vehicle index, message,
/// bytes) before it goes out.
pub fn publish(
    cfg: &PublishConfig,
    scenario: &Scenario,
    observe: &mut dyn FnMut(usize, &SimMessage, &[u8]),
) -> Result<Published, RunError> {
    let bus = ZenohBus::open(&cfg.bus)?;
    let control_rx = if cfg.control { Some(bus.subscribe(&control_key("*"), 1024)?) } else { None };
    if cfg.wait_peers > 0 {
        bus.wait_for_peers(cfg.wait_peers, cfg.wait_timeout)?;
    }
    let publisher = bus.publisher()?;
    let mut scenario = scenario.clone();
    if cfg.wall_clock {
        scenario.environment.start_time_ns = WallClock.now_ns();
    }
    let start_ns = scenario.environment.start_time_ns;
    let sims: Vec<VehicleSim> =
        (0..cfg.vehicles).map(|i| VehicleSim::new(&scenario, i, cfg.seed, cfg.duration_ns)).collect();
    let index_of: HashMap<VehicleId, usize> = sims.iter().enumerate().map(|(i, s)| (s.vehicle.clone(), i)).collect();
    let mut digests: Vec<Digest> = (0..cfg.vehicles).map(|_| Digest::new()).collect();
    let mut stats = SimStats::default();
    let mut inbox = control_rx.map(|rx| ControlInbox {
        rx,
        index_of: &index_of,
        controls: Controls::default(),
        seen: HashSet::new(),
    });
    let closed = inbox.is_some();
    let take = Box::new(|p: &mut Vec<ControlCommand>| {
        if let Some(i) = inbox.as_mut() {
            i.take(p)
        }
    });
    let mut source = SimSource::new(sims, start_ns, scenario.road.clone(), take).observe(Box::new(|i, msg, bytes| {
        digests[i].update(bytes);
        stats.count(msg, bytes.len());
        observe(i, msg, bytes);
    }));
    let pace = Pace { real: Some((Instant::now(), 1.0)), lockstep: None, gate: None };
    Feeder::new(&publisher, start_ns, pace).run(&mut source, &mut |_, _| {})?;
    let outcome = if closed {
        let until = Instant::now() + CONTROL_GRACE;
        while Instant::now() < until {
            source.take_commands();
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Outcome::of(&source.finish(cfg.duration_ns)))
    } else {
        drop(source);
        None
    };
    let oversize = bus.oversize_dropped();
    let closed_loop = outcome.zip(inbox.map(|i| Controls { oversize, ..i.controls }));
    drop(publisher);
    bus.close()?;
    let mut digest = Digest::new();
    for d in &digests {
        digest.update(d.hex().as_bytes());
    }
    Ok(Published { stats, digest: digest.hex(), closed_loop })
}
