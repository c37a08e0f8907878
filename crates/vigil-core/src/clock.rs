//! Clocks. Pipeline logic reads the [`Clock`] it is given, never the wall clock, so
//! simulation and replay are reproducible.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Nanoseconds on some clock.
pub type Nanos = i64;

/// A source of "now".
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ns(&self) -> Nanos;
}

/// Wall-clock time since the Unix epoch; only for the binary edge and live runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ns(&self) -> Nanos {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
    }
}

/// A clock that moves only when told: simulation time, replay time, tests.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Nanos) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn set(&self, t: Nanos) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, dt: Nanos) {
        self.0.fetch_add(dt, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> Nanos {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(5);
        assert_eq!(c.now_ns(), 5);
        c.advance(10);
        assert_eq!(c.now_ns(), 15);
        let shared = c.clone();
        shared.set(100);
        assert_eq!(c.now_ns(), 100);
    }
}
