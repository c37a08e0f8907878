//! The counters and latency histograms every actor of a node records into.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use vigil_core::Nanos;

/// Counters shared by the actors of every node in the process (and read by the runner).
#[derive(Debug, Default)]
pub struct NodeStats {
    pub ingested: [AtomicU64; 4],
    /// The first task raised or caution sent: its frame's capture time and the object's
    /// distance ahead (m), how far out the node first acted on an obstacle.
    pub first_task: std::sync::OnceLock<(Nanos, f64)>,
    /// Frames that failed strict decoding or arrived on the wrong stream.
    pub rejected: AtomicU64,
    /// Sequence gaps seen by the ingest actors (frames the bus lost).
    pub gaps: AtomicU64,
    pub fused: AtomicU64,
    pub tasks_raised: AtomicU64,
    pub tasks_published: AtomicU64,
    /// Publishes refused by a full queue (shed: fallback applied at once).
    pub tasks_refused: AtomicU64,
    pub completed: AtomicU64,
    /// Deadline passed with no recommendation (or the publish was refused).
    pub fallback: AtomicU64,
    /// Of those, how many braked.
    pub fallback_braked: AtomicU64,
    /// Recommendations that arrived after their deadline.
    pub stale: AtomicU64,
    /// Recommendations for a task already answered (redelivery after a worker crash).
    pub duplicate: AtomicU64,
    /// Replies that are not recommendations for a task this node raised.
    pub unknown: AtomicU64,
    /// Replies refused before they were read, by [`vigil_bus::trust::Rejection`] reason
    /// (publisher, signature, malformed, correlation, vehicle).
    pub rejected_replies: [AtomicU64; 5],
    /// Tasks raised and not yet resolved.
    pub outstanding: AtomicI64,
    pub by_action: [AtomicU64; 6],
    /// Per task priority 0..=9: raised, completed, fallback.
    pub raised_by_priority: [AtomicU64; 10],
    pub completed_by_priority: [AtomicU64; 10],
    pub fallback_by_priority: [AtomicU64; 10],
    pub log_errors: AtomicU64,
    /// Telemetry records dropped because the telemetry spool was full (counted, never silent).
    pub telemetry_dropped: AtomicU64,
    /// Telemetry records waiting for the log, and their bytes.
    pub telemetry_queued: AtomicU64,
    pub telemetry_queued_bytes: AtomicU64,
    pub telemetry_peak_bytes: AtomicU64,
    /// Telemetry records the spool wrote to disk (the log was slow or down), the bytes on
    /// disk now and at most.
    pub telemetry_spilled: AtomicU64,
    pub telemetry_disk_bytes: AtomicU64,
    pub telemetry_peak_disk_bytes: AtomicU64,
    /// Times the log pushed back (its buffer full) and the forwarder waited.
    pub telemetry_log_waits: AtomicU64,
    /// Threats that fell back at once because the camera had no fresh frame or no box.
    pub no_camera: AtomicU64,
    /// Cautions (slow down or brake) for believed radar-only objects in the path.
    pub cautions: AtomicU64,
    /// Of those, how many braked (the rest slowed down).
    pub caution_brakes: AtomicU64,
    /// Tracks that became a threat fusion may act on, and of those, how many it first
    /// acted on (a task or an immediate fallback) from a scan younger than the task
    /// budget. A threat first seen on an older scan was left unraised while the vehicle
    /// was busy: its task would be born expired. Equal when fusion keeps pace.
    pub threats_seen: AtomicU64,
    pub threats_raised: AtomicU64,
    /// Scans the tracker held, stamped more than a track's lifetime from the others: a
    /// lying or broken clock (or, when the next agrees, a clock that jumped).
    pub scans_held: AtomicU64,
    /// Capture → fused, of every radar scan: how far fusion runs behind the sensors.
    pub fusion_lag: Latencies,
    /// Deadline → fallback applied, of every task that fell back (0 when it fell back
    /// before its deadline, as a refused publish does).
    pub fallback_after_deadline: Latencies,
    /// Detection → applied recommendation.
    pub latencies: Latencies,
    /// Worker-side time of each completed task (take → reply), from the recommendation.
    pub worker: Latencies,
    pub last_recommendation: Mutex<String>,
    /// Told each time a frame is ingested or fused, a task settles or a telemetry record
    /// leaves the spool: what a runner waiting for the node to catch up waits on.
    pub progress: Progress,
}

/// A wake-up for runners that wait on the node's counters: the actors call
/// [`Progress::moved`] after each change a runner may wait for, so a waiter sleeps until
/// something moved instead of polling.
#[derive(Debug, Default)]
pub struct Progress {
    moves: Mutex<u64>,
    moved: Condvar,
}

impl Progress {
    pub fn moved(&self) {
        // Taking the lock orders this wake-up after a waiter's check: none is lost.
        if let Ok(mut m) = self.moves.lock() {
            *m = m.wrapping_add(1);
        }
        self.moved.notify_all();
    }

    /// Waits until `done()` holds or `limit` passes; returns whether it holds.
    pub fn wait_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let Ok(mut guard) = self.moves.lock() else { return done() };
        loop {
            if done() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.moved.wait_timeout(guard, left) {
                Ok((g, _)) => guard = g,
                Err(_) => return done(),
            }
        }
    }
}

/// A bounded latency store: an HDR histogram (3 significant digits, 1 µs to 1 h), so a
/// process that runs for months keeps the same few kilobytes.
#[derive(Debug)]
pub struct Latencies(Mutex<hdrhistogram::Histogram<u64>>);

impl Default for Latencies {
    fn default() -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 low, 3 digits).
        #[allow(clippy::expect_used)]
        let h = hdrhistogram::Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid bounds");
        Self(Mutex::new(h))
    }
}

/// What a [`Latencies`] held at one moment.
#[derive(Debug, Clone)]
pub struct LatencyMark(Option<hdrhistogram::Histogram<u64>>);

/// Percentiles of a [`Latencies`], milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

impl Latencies {
    pub fn record(&self, ns: Nanos) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(ns.max(1) as u64);
        }
    }

    pub fn summary_ms(&self) -> LatencySummary {
        let Ok(h) = self.0.lock() else { return LatencySummary::default() };
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |v: u64| v as f64 * 1e-6;
        LatencySummary {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            samples: h.len(),
        }
    }

    /// Every recorded value, seconds, with how often it was recorded (for Prometheus buckets).
    /// A mark to measure a window from: [`Latencies::since`].
    pub fn mark(&self) -> LatencyMark {
        LatencyMark(self.0.lock().ok().map(|h| h.clone()))
    }

    /// The percentiles of what was recorded after `mark` was taken.
    pub fn since(&self, mark: &LatencyMark) -> LatencySummary {
        let Ok(h) = self.0.lock() else { return LatencySummary::default() };
        let mut window = h.clone();
        drop(h);
        if let Some(before) = &mark.0
            && window.subtract(before).is_err()
        {
            return LatencySummary::default();
        }
        Latencies(Mutex::new(window)).summary_ms()
    }

    pub fn weighted_seconds(&self) -> Vec<(f64, u64)> {
        let Ok(h) = self.0.lock() else { return Vec::new() };
        h.iter_recorded().map(|v| (v.value_iterated_to() as f64 * 1e-9, v.count_at_value())).collect()
    }
}

impl NodeStats {
    /// Replies refused by the trust checks, by reason; reasons never seen are left out.
    pub fn rejected_replies_by_reason(&self) -> std::collections::BTreeMap<String, u64> {
        vigil_bus::trust::Rejection::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.rejected_replies[r.index()].load(Ordering::SeqCst)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl NodeStats {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }

    /// Telemetry records handed to the spool and not yet appended to the log.
    pub fn telemetry_pending(&self) -> u64 {
        self.telemetry_queued.load(Ordering::SeqCst)
    }

    /// Waits until the telemetry spool has handed everything to the log, or `limit`
    /// passes; returns whether it drained.
    pub fn drain_telemetry(&self, limit: Duration) -> bool {
        self.progress.wait_until(limit, || self.telemetry_pending() == 0)
    }

    /// Every frame of `produced` (per stream) ingested, with `perception` every radar
    /// scan fused, and no task outstanding: the node has taken all it was fed.
    pub fn settled(&self, produced: &[u64; 4], perception: bool) -> bool {
        vigil_proto::wire::Stream::ALL.iter().all(|k| Self::get(&self.ingested[k.index()]) >= produced[k.index()])
            && (!perception || Self::get(&self.fused) >= produced[vigil_proto::wire::Stream::Radar.index()])
            && self.outstanding.load(Ordering::SeqCst) <= 0
    }

    /// Waits until [`NodeStats::settled`] holds or `limit` passes; returns whether it does.
    pub fn wait_settled(&self, produced: &[u64; 4], perception: bool, limit: Duration) -> bool {
        self.progress.wait_until(limit, || self.settled(produced, perception))
    }
}

pub(super) fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::SeqCst);
}
