//! The spool against a log that stalls, fails and recovers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use vigil_bus::topics;

use super::*;

/// A log that pushes back while `stalled`, and remembers what it took.
#[derive(Debug, Default)]
struct GateLog {
    stalled: AtomicBool,
    took: Mutex<Vec<(Nanos, usize)>>,
}

impl TelemetryLog for GateLog {
    fn append(&self, r: LogRecord<'_>) -> Result<(), TransportError> {
        if self.stalled.load(Ordering::SeqCst) {
            return Err(TransportError::Backlog { topic: r.topic.into(), reason: "stalled".into() });
        }
        self.took.lock().map_err(|_| TransportError::Closed)?.push((r.capture_ns, r.envelope.len()));
        Ok(())
    }
    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        Ok(BTreeMap::new())
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn push_all(spool: &TelemetrySpool, n: usize) {
    for i in 0..n {
        let topic = if i % 3 == 0 { topics::CAMERA } else { topics::RADAR };
        spool.push(ToLog { topic, capture_ns: i as Nanos, publish_ns: 0, envelope: Arc::new(vec![7; 100 + i]) });
    }
}

fn spool_with(cfg: SpoolConfig, log: Arc<GateLog>, stats: Arc<NodeStats>) -> TelemetrySpool {
    let (a, b) = (Arbiter::new(), Arbiter::new());
    let spool =
        start_spool(cfg, &VehicleId::simulated(0), &RunId::reproducible(1), log, stats, &a.handle(), &b.handle());
    // The arbiters live as long as the test's system.
    std::mem::forget((a, b));
    spool
}

#[test]
fn a_stalled_log_spills_to_disk_and_every_record_leaves_in_order() {
    let dir = std::env::temp_dir().join(format!("vigil-spool-test-{}", std::process::id()));
    actix::System::new().block_on(async {
        let log = Arc::new(GateLog::default());
        let stats = Arc::new(NodeStats::default());
        log.stalled.store(true, Ordering::SeqCst);
        let cfg = SpoolConfig { memory_bytes: 4096, dir: Some(dir.clone()), disk_bytes: 1 << 20 };
        let spool = spool_with(cfg, log.clone(), stats.clone());
        push_all(&spool, 300);
        until("records on disk", || stats.telemetry_spilled.load(Ordering::SeqCst) > 250).await;
        assert!(std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()), "segment files under {dir:?}");
        log.stalled.store(false, Ordering::SeqCst);
        until("the spool drained", || stats.telemetry_queued.load(Ordering::SeqCst) == 0).await;
        let took = log.took.lock().map(|t| t.clone()).unwrap_or_default();
        let want: Vec<(Nanos, usize)> = (0..300).map(|i| (i as Nanos, 100 + i)).collect();
        assert_eq!(took, want, "every record, in order, intact");
        assert_eq!(stats.telemetry_dropped.load(Ordering::SeqCst), 0);
        assert!(stats.telemetry_log_waits.load(Ordering::SeqCst) > 0);
        assert_eq!(stats.telemetry_disk_bytes.load(Ordering::SeqCst), 0);
        assert!(stats.telemetry_peak_disk_bytes.load(Ordering::SeqCst) > 0);
        let left: Vec<_> = walk(&dir);
        assert!(left.is_empty(), "a drained spool leaves no segment behind: {left:?}");
        actix::System::current().stop();
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_disk_spool_drops_and_counts_and_keeps_the_rest_in_order() {
    let dir = std::env::temp_dir().join(format!("vigil-spool-full-{}", std::process::id()));
    actix::System::new().block_on(async {
        let log = Arc::new(GateLog::default());
        let stats = Arc::new(NodeStats::default());
        log.stalled.store(true, Ordering::SeqCst);
        let cfg = SpoolConfig { memory_bytes: 2048, dir: Some(dir.clone()), disk_bytes: 8192 };
        let spool = spool_with(cfg, log.clone(), stats.clone());
        push_all(&spool, 200);
        until("every record placed or dropped", || {
            stats.telemetry_dropped.load(Ordering::SeqCst) + stats.telemetry_spilled.load(Ordering::SeqCst) > 150
        })
        .await;
        log.stalled.store(false, Ordering::SeqCst);
        until("the spool drained", || stats.telemetry_queued.load(Ordering::SeqCst) == 0).await;
        let took = log.took.lock().map(|t| t.clone()).unwrap_or_default();
        let dropped = stats.telemetry_dropped.load(Ordering::SeqCst);
        assert!(dropped > 0, "8 KB of disk cannot hold 200 records");
        assert_eq!(took.len() as u64 + dropped, 200, "each record appended or counted as dropped");
        assert!(took.windows(2).all(|w| w[0].0 < w[1].0), "what was kept left in order");
        actix::System::current().stop();
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_a_directory_the_memory_bound_drops_and_counts() {
    actix::System::new().block_on(async {
        let log = Arc::new(GateLog::default());
        let stats = Arc::new(NodeStats::default());
        log.stalled.store(true, Ordering::SeqCst);
        let spool =
            spool_with(SpoolConfig { memory_bytes: 2048, dir: None, disk_bytes: 0 }, log.clone(), stats.clone());
        push_all(&spool, 100);
        until("drops", || stats.telemetry_dropped.load(Ordering::SeqCst) > 50).await;
        log.stalled.store(false, Ordering::SeqCst);
        until("the spool drained", || stats.telemetry_queued.load(Ordering::SeqCst) == 0).await;
        let took = log.took.lock().map(|t| t.len()).unwrap_or_default() as u64;
        assert_eq!(took + stats.telemetry_dropped.load(Ordering::SeqCst), 100);
        assert_eq!(stats.telemetry_spilled.load(Ordering::SeqCst), 0);
        actix::System::current().stop();
    });
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files
}
