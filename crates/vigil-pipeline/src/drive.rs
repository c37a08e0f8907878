//! The drive of `vigil run`: the simulated vehicles fed through [`crate::feed`], paced to
//! real time or in lockstep with the pipeline, the recommendations the nodes send back
//! applied to the simulated egos.

use std::io::IsTerminal;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vigil_bus::Publisher;
use vigil_core::Nanos;
use vigil_sim::VehicleSim;
use vigil_vehicle::node::{ControlCommand, NodeStats};

use crate::feed::{Feeder, Lockstep, Pace, SimSource};
use crate::{LockstepClock, RunConfig, RunError, report};

/// How long the runner waits for the pipeline to take an instant (or to drain at the
/// end) before it goes on and reports what is left.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// What a drive fed: the frames per stream, and the vehicles at the end.
pub(crate) struct Driven {
    pub produced: [u64; 4],
    pub sims: Vec<VehicleSim>,
}

/// Drives every vehicle to the end of its scenario (real time starts at `drive_start`),
/// then waits for the pipeline to resolve what is in flight and applies the last commands.
pub(crate) fn drive(
    cfg: &RunConfig,
    sims: Vec<VehicleSim>,
    (lockstep, live): (&LockstepClock, Option<&vigil_bus::live::LiveView>),
    publisher: &Publisher,
    stats: &NodeStats,
    control: Receiver<ControlCommand>,
    duration_ns: Nanos,
) -> Result<Driven, RunError> {
    let start_ns = cfg.scenario.environment.start_time_ns;
    let inbox = Box::new(move |pending: &mut Vec<ControlCommand>| {
        for c in control.try_iter() {
            if let Some(v) = live.filter(|v| v.watching()) {
                v.offer(c.at_ns, &c.encode());
            }
            pending.push(c);
        }
    });
    let mut source = SimSource::new(sims, start_ns, cfg.scenario.road.clone(), inbox).outage(cfg.sensor_outage);
    let set_clock = |t: Nanos| lockstep.advance_to(t);
    let pace = if cfg.fast {
        let lockstep = Lockstep {
            set_clock: &set_clock,
            stats,
            perception: cfg.perception,
            limit: SETTLE_LIMIT,
            fail_unsettled: false,
        };
        Pace { real: None, lockstep: Some(lockstep), gate: None }
    } else {
        Pace { real: Some((Instant::now(), 1.0)), lockstep: None, gate: None }
    };
    let mut feeder = Feeder::new(publisher, start_ns, pace);
    let console = cfg.console && std::io::stderr().is_terminal();
    let mut last_console = Instant::now();
    let last = feeder.run(&mut source, &mut |t, produced| {
        if console && last_console.elapsed() > Duration::from_millis(500) {
            last_console = Instant::now();
            report::console_line(t, produced, stats);
        }
    })?;
    if console {
        eprintln!();
    }
    // Drain: every frame ingested and every task resolved (answered or fallen back).
    if !stats.wait_settled(&feeder.produced, cfg.perception, SETTLE_LIMIT) {
        tracing::warn!(
            outstanding = stats.outstanding.load(std::sync::atomic::Ordering::SeqCst),
            at_ns = start_ns + last,
            "the pipeline did not drain; reporting what is left"
        );
    }
    Ok(Driven { produced: feeder.produced, sims: source.finish(duration_ns) })
}
