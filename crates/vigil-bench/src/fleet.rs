//! `vigil bench fleet` and `vigil bench priority`: whole paced drives of many vehicles at
//! once, measured as the vehicles meet them.
//!
//! The fleet bench runs the same rows (1, 2, 4, 8 vehicles of urban-dense) embedded and
//! over Kafka + RabbitMQ in one invocation. The closed loop makes raw task counts differ
//! between modes (a vehicle that brakes sees other threats), so the figures compared are
//! ratios: tasks answered inside their deadline / raised, threats raised on time / seen,
//! and fused scans / radar scans produced.
//!
//! The priority bench runs the embedded drive with a busy loop on every core beside it,
//! with and without the urgent plane's scheduling priority, and idle as the baseline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Serialize;
use vigil_sim::Scenario;
use vigil_vehicle::priority::PriorityMode;

use vigil_pipeline::{RunConfig, RunReport};

use crate::BenchError;

/// What a fleet bench runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub scenario: Scenario,
    pub seed: u64,
    /// Simulated (and, paced, wall) seconds of each drive.
    pub seconds: f64,
    pub vehicles: Vec<usize>,
    pub model_dir: PathBuf,
    /// The brokers rows run against these; `None`: embedded rows only.
    pub brokers: Option<vigil_brokers::BrokerConfig>,
    /// The row the gate reads, and its bound on answered-in-deadline / raised (brokers
    /// rows when there are any, else embedded).
    pub gate_vehicles: usize,
    pub min_in_deadline: f64,
}

/// One drive of the bench.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    pub mode: String,
    pub vehicles: usize,
    /// With a CPU hog beside it (`priority` bench only).
    pub hog: bool,
    pub priority: String,
    pub frames_produced: u64,
    pub frames_lost: u64,
    pub radar_produced: u64,
    /// Radar scans fusion processed (each one runs detection and tracking).
    pub fused: u64,
    pub threats_seen: u64,
    pub threats_raised: u64,
    pub tasks_raised: u64,
    pub answered_in_deadline: u64,
    /// Vehicle-side fallbacks (deadline passed, publish refused) and immediate no-camera ones.
    pub fallback: u64,
    pub no_camera: u64,
    /// Taken from the queue past their deadline (broker side).
    pub expired: u64,
    /// answered_in_deadline / tasks_raised (1 when none were raised).
    pub in_deadline_ratio: f64,
    /// threats_raised / threats_seen (1 when none were seen).
    pub threats_ratio: f64,
    pub detect_to_recommend_p50_ms: f64,
    pub detect_to_recommend_p99_ms: f64,
    pub fusion_lag_p99_ms: f64,
    pub wall_seconds: f64,
    /// Process CPU over the drive, seconds, and as cores busy on average.
    pub cpu_seconds: f64,
    pub cpu_cores: f64,
    pub collisions: usize,
}

impl FleetRow {
    fn of(r: &RunReport, hog: bool) -> Self {
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let f = &r.frames;
        let produced = f.lidar.produced + f.camera.produced + f.radar.produced + f.localization.produced;
        Self {
            mode: r.mode.to_string(),
            vehicles: r.vehicles,
            hog,
            priority: r.priority.clone(),
            frames_produced: produced,
            frames_lost: r.lost,
            radar_produced: f.radar.produced,
            fused: r.fused,
            threats_seen: r.threats.seen,
            threats_raised: r.threats.raised,
            tasks_raised: r.tasks.raised,
            answered_in_deadline: r.tasks.completed,
            fallback: r.tasks.fallback,
            no_camera: r.no_camera_fallbacks,
            expired: r.tasks.expired,
            in_deadline_ratio: ratio(r.tasks.completed, r.tasks.raised),
            threats_ratio: ratio(r.threats.raised, r.threats.seen),
            detect_to_recommend_p50_ms: r.latency_ms.detect_to_recommend.p50,
            detect_to_recommend_p99_ms: r.latency_ms.detect_to_recommend.p99,
            fusion_lag_p99_ms: r.latency_ms.fusion_lag.p99,
            wall_seconds: r.wall_seconds,
            cpu_seconds: r.cpu_seconds,
            cpu_cores: r.cpu_seconds / r.wall_seconds.max(1e-9),
            collisions: r.outcome.collisions,
        }
    }

    /// Every frame produced was ingested and every radar scan fused.
    pub fn kept_pace(&self) -> bool {
        self.frames_lost == 0 && self.fused >= self.radar_produced
    }
}

/// The bench's rows and its gate.
#[derive(Debug, Clone, Serialize)]
pub struct FleetBench {
    pub scenario: String,
    pub seed: u64,
    pub seconds: f64,
    pub cores: usize,
    pub rows: Vec<FleetRow>,
    pub gate_mode: String,
    pub gate_vehicles: usize,
    pub min_in_deadline: f64,
    /// The gate row: in-deadline ratio at or above the bound, fusion kept pace, and every
    /// threat seen was raised on time.
    pub pass: bool,
}

impl FleetBench {
    fn new(cfg: &FleetConfig, rows: Vec<FleetRow>, gate_mode: &str, gate_vehicles: usize) -> Self {
        Self {
            scenario: cfg.scenario.name.clone(),
            seed: cfg.seed,
            seconds: cfg.seconds,
            cores: cores(),
            rows,
            gate_mode: gate_mode.to_string(),
            gate_vehicles,
            min_in_deadline: cfg.min_in_deadline,
            pass: false,
        }
    }

    pub fn gate_row(&self) -> Option<&FleetRow> {
        // The last such row: the priority bench's gate is its hog row with priority.
        self.rows.iter().rev().find(|r| r.mode == self.gate_mode && r.vehicles == self.gate_vehicles)
    }
}

fn drive(cfg: &FleetConfig, vehicles: usize, brokers: bool, tag: &str) -> Result<RunReport, BenchError> {
    let mut rc = RunConfig::new(cfg.scenario.clone(), cfg.seed, cfg.model_dir.clone());
    rc.vehicles = vehicles;
    rc.duration_ns = Some((cfg.seconds * 1e9).round() as i64);
    let mut scratch = None;
    if brokers && let Some(b) = &cfg.brokers {
        let mut b = b.clone();
        let prefix = format!("vigil-bench-fleet-{}-{tag}-{vehicles}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        b.kafka.topic_prefix = prefix.clone();
        b.amqp.prefix = prefix;
        b.frames.url = format!("file://{}/", dir.join("frames").display());
        scratch = Some((dir, b.clone()));
        rc.brokers = Some(b);
    }
    let r = vigil_pipeline::run(rc);
    // A bench row's drive is not kept: its frames, queues and topics (about 18 MB per
    // vehicle-second) go when it is measured.
    if let Some((dir, b)) = scratch {
        let _ = std::fs::remove_dir_all(dir);
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            let _ = rt.block_on(vigil_brokers::amqp::delete_prefix(&b.amqp));
            let topics = vigil_brokers::kafka::all_topics(&b.kafka.topic_prefix);
            if let Err(e) = rt.block_on(vigil_brokers::kafka::delete_topics(&b.kafka, &topics)) {
                tracing::warn!(error = %e, "cannot delete the bench row's topics");
            }
        }
    }
    Ok(r?)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every row embedded, then over the brokers (when configured), and gates one row.
pub fn fleet_bench(cfg: &FleetConfig, mut progress: impl FnMut(&FleetRow)) -> Result<FleetBench, BenchError> {
    if cfg.vehicles.is_empty() {
        return Err(BenchError::Setup("--vehicles must list at least one vehicle count".into()));
    }
    let mut rows = Vec::new();
    for brokers in [false, true] {
        if brokers && cfg.brokers.is_none() {
            continue;
        }
        for &n in &cfg.vehicles {
            let r = drive(cfg, n, brokers, "fleet")?;
            let row = FleetRow::of(&r, false);
            progress(&row);
            rows.push(row);
        }
    }
    let gate_mode = if cfg.brokers.is_some() { "brokers" } else { "embedded" };
    let mut b = FleetBench::new(cfg, rows, gate_mode, cfg.gate_vehicles);
    b.pass = b.gate_row().is_some_and(|r| {
        r.in_deadline_ratio >= cfg.min_in_deadline && r.kept_pace() && r.threats_raised == r.threats_seen
    });
    Ok(b)
}

/// A busy loop per core at normal priority (SCHED_OTHER, nice 0, whatever the caller's
/// thread runs at), killed on drop.
#[derive(Debug)]
pub struct CpuHog(Vec<Child>);

impl CpuHog {
    pub fn start(n: usize) -> Result<Self, BenchError> {
        let mut children = Vec::new();
        for _ in 0..n {
            let child = Command::new("sh")
                .arg("-c")
                .arg("chrt -o -p 0 $$ >/dev/null 2>&1; renice -n 0 -p $$ >/dev/null 2>&1; while :; do :; done")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| BenchError::Setup(format!("cannot start a CPU hog (sh): {e}")))?;
            children.push(child);
        }
        Ok(Self(children))
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The embedded drive idle, then beside a busy loop on every core without the priority
/// setting and with `mode`; the gate reads the last.
pub fn priority_bench(
    cfg: &FleetConfig,
    mode: PriorityMode,
    mut progress: impl FnMut(&FleetRow),
) -> Result<FleetBench, BenchError> {
    let n = cfg.gate_vehicles;
    let mut rows = Vec::new();
    // Off first: the calling thread keeps what a run gives it, and threads inherit it.
    for (hog, priority) in [(false, PriorityMode::Off), (true, PriorityMode::Off), (true, mode)] {
        let _hog = if hog { Some(CpuHog::start(cores())?) } else { None };
        let mut rc = RunConfig::new(cfg.scenario.clone(), cfg.seed, cfg.model_dir.clone());
        rc.vehicles = n;
        rc.duration_ns = Some((cfg.seconds * 1e9).round() as i64);
        rc.priority = priority;
        let r = vigil_pipeline::run(rc)?;
        let row = FleetRow::of(&r, hog);
        progress(&row);
        rows.push(row);
    }
    let mut b = FleetBench::new(cfg, rows, "embedded", n);
    b.pass = b.rows.last().is_some_and(|r| r.in_deadline_ratio >= cfg.min_in_deadline && r.frames_lost == 0);
    Ok(b)
}

/// Bars of answered-in-deadline / raised per row (embedded blue, brokers orange, a hog
/// row hatched darker), the gate's bound as a line, p99 and threats under each bar.
pub fn fleet_png(b: &FleetBench, path: &Path) -> Result<(), BenchError> {
    use vigil_plot::Canvas;
    let (w, h) = ((160 + 110 * b.rows.len().max(1)).max(760), 480usize);
    let (left, bottom, top) = (60.0, 390.0, 110.0);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    let y_of = |ratio: f64| bottom - ratio.clamp(0.0, 1.0) * (bottom - top);
    for k in 0..=4 {
        let r = k as f64 * 0.25;
        c.line(left - 5.0, y_of(r), w as f64 - 20.0, y_of(r), [225, 225, 225]);
        c.text(10, y_of(r) as i64 - 6, &format!("{:.0}%", r * 100.0), [0, 0, 0], 2);
    }
    c.line(left, bottom, w as f64 - 20.0, bottom, [0, 0, 0]);
    for (i, r) in b.rows.iter().enumerate() {
        let x0 = left + 20.0 + i as f64 * 110.0;
        let colour = match (r.mode.as_str(), r.hog) {
            (_, true) if r.priority == "unchanged" => [150, 60, 60],
            (_, true) => [60, 150, 60],
            ("brokers", _) => [230, 140, 40],
            _ => [70, 110, 180],
        };
        let y = y_of(r.in_deadline_ratio);
        for x in x0 as i64..(x0 + 70.0) as i64 {
            c.line(x as f64, y, x as f64, bottom, colour);
        }
        let gated = r.mode == b.gate_mode && r.vehicles == b.gate_vehicles;
        if gated {
            c.rect(x0 - 3.0, y - 3.0, x0 + 73.0, bottom, [0, 0, 0], 2);
        }
        c.text(x0 as i64, y as i64 - 16, &format!("{:.1}%", r.in_deadline_ratio * 100.0), [0, 0, 0], 2);
        let label = if r.hog { if r.priority == "unchanged" { "HOG" } else { "HOG+PRIO" } } else { &r.mode };
        c.text(x0 as i64, bottom as i64 + 8, &label.to_uppercase(), colour, 2);
        c.text(x0 as i64, bottom as i64 + 24, &format!("{} VEH", r.vehicles), [0, 0, 0], 2);
        c.text(x0 as i64, bottom as i64 + 40, &format!("P99 {:.0}", r.detect_to_recommend_p99_ms), [0, 0, 0], 2);
        c.text(x0 as i64, bottom as i64 + 56, &format!("T {}/{}", r.threats_raised, r.threats_seen), [0, 0, 0], 2);
        c.text(x0 as i64, bottom as i64 + 72, &format!("CPU {:.1}", r.cpu_cores), [0, 0, 0], 2);
    }
    let bound = y_of(b.min_in_deadline);
    c.line(left, bound, w as f64 - 20.0, bound, [200, 30, 30]);
    c.text(10, 10, "TASKS ANSWERED IN DEADLINE / RAISED", [0, 0, 0], 2);
    c.text(
        10,
        28,
        &format!(
            "{} SEED {}  {:.0} S PACED PER DRIVE  {} CORES",
            b.scenario.to_uppercase(),
            b.seed,
            b.seconds,
            b.cores
        ),
        [0, 0, 0],
        2,
    );
    c.text(
        10,
        46,
        &format!(
            "GATE (BOXED): {} {} VEH >= {:.0}% (RED LINE): {}",
            b.gate_mode.to_uppercase(),
            b.gate_vehicles,
            b.min_in_deadline * 100.0,
            if b.pass { "PASS" } else { "FAIL" }
        ),
        if b.pass { [20, 120, 20] } else { [200, 30, 30] },
        2,
    );
    c.text(10, 64, "UNDER EACH BAR: DETECT TO RECOMMEND P99 MS, THREATS RAISED", [90, 90, 90], 2);
    c.text(10, 80, "ON TIME / SEEN, PROCESS CPU IN CORES", [90, 90, 90], 2);
    c.write_png(path).map_err(|e| BenchError::Write { path: path.display().to_string(), reason: e.to_string() })
}
