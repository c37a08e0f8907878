//! The two clocks a run can give the pipeline.

use std::sync::Mutex;
use std::time::Instant;

use vigil_core::{Clock, Nanos};

/// Real-time runs: the vehicle clock is the simulation start plus wall time elapsed.
#[derive(Debug)]
pub struct PacedClock {
    start_ns: Nanos,
    wall: Instant,
    /// Wall nanoseconds (since `wall`) at which the drive started: set by [`restart`].
    ///
    /// [`restart`]: PacedClock::restart
    anchor_ns: std::sync::atomic::AtomicI64,
}

impl PacedClock {
    pub fn new(start_ns: Nanos) -> Self {
        Self { start_ns, wall: Instant::now(), anchor_ns: std::sync::atomic::AtomicI64::new(0) }
    }

    /// Time starts again at `start_ns` now: setting up (a broker that is slow to answer,
    /// loading the model) is not part of the drive.
    pub fn restart(&self) {
        self.anchor_ns.store(self.wall.elapsed().as_nanos() as Nanos, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for PacedClock {
    fn now_ns(&self) -> Nanos {
        let anchor = self.anchor_ns.load(std::sync::atomic::Ordering::SeqCst);
        self.start_ns + (self.wall.elapsed().as_nanos() as Nanos - anchor).max(0)
    }
}

/// `--fast` runs: time stands at the current capture time and moves only with the real
/// time the pipeline spends on it. Deadlines and latencies are therefore the pipeline's
/// real ones, while the simulator waits for the pipeline between frames. It never runs
/// backwards: a pipeline slower than the sensors falls behind, as it would on a car.
#[derive(Debug)]
pub struct LockstepClock(Mutex<(Nanos, Instant)>);

impl LockstepClock {
    pub fn new(start_ns: Nanos) -> Self {
        Self(Mutex::new((start_ns, Instant::now())))
    }

    /// Moves to sim time `t` (or stays, if the pipeline already ran past it).
    pub fn advance_to(&self, t: Nanos) {
        if let Ok(mut g) = self.0.lock() {
            let now = g.0 + g.1.elapsed().as_nanos() as Nanos;
            *g = (t.max(now), Instant::now());
        }
    }
}

impl Clock for LockstepClock {
    fn now_ns(&self) -> Nanos {
        self.0.lock().map(|g| g.0 + g.1.elapsed().as_nanos() as Nanos).unwrap_or(0)
    }
}
