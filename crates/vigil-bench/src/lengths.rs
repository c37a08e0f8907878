//! `vigil bench replay --lengths`: drives of several lengths recorded by `vigil run --fast
//! --record` and replayed by `vigil replay --max` in a process of its own (five times),
//! so each row's peak resident memory is a replay's. Per row: file size, bytes per
//! vehicle-second, replay speed against real time, peak RSS, and whether the replays
//! decided as the live run did (recommendation digests). The baseline, recorded in the
//! same run, is the shortest drive in the format before compact storage (lz4 chunks, raw
//! camera and lidar).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use vigil_bus::embedded::recorder::{CameraStorage, ChunkCompression, LidarStorage, RecordOptions};
use vigil_pipeline::RunConfig;
use vigil_sim::Scenario;

use crate::BenchError;
use crate::floor::{CameraFloor, camera_floor};

/// What to record and replay, and the gates.
#[derive(Debug, Clone)]
pub struct LengthsConfig {
    pub scenario: Scenario,
    pub seed: u64,
    /// Simulated seconds per row, shortest first.
    pub durations: Vec<f64>,
    pub model: PathBuf,
    /// The `vigil` binary the replays run in.
    pub vigil: PathBuf,
    /// Longest row's peak RSS over the shortest's at most this.
    pub max_rss_ratio: f64,
    /// Every row's peak RSS under this, MB.
    pub max_rss_mb: f64,
    /// Every replay at least this multiple of real time.
    pub min_speed_factor: f64,
    /// Baseline bytes per vehicle-second over each row's at least this.
    pub min_compaction: f64,
    /// Also store every drive again with near-lossless camera frames (this bound, levels)
    /// and replay it: its size, and what it changed against the live run.
    pub archival: Option<u8>,
    /// Baseline bytes per vehicle-second over each archival row's at least this.
    pub min_archival_compaction: f64,
    /// Vigil's lossless camera bits per sample over the noise floor's at most this.
    pub max_floor_gap: f64,
}

/// Replays per row; the row is the one with the median peak RSS. How much of what a
/// replay freed the allocator still holds varies from run to run by tens of MB.
const REPLAYS: usize = 5;

/// Camera frames the noise floor is measured on.
const FLOOR_FRAMES: usize = 40;

/// A drive stored again near-lossless, replayed.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivalRow {
    /// Every camera sample within this many levels.
    pub near: u8,
    pub bytes_per_vehicle_s: f64,
    /// Baseline bytes per vehicle-second over this row's.
    pub compaction: f64,
    pub speed_factor: f64,
    /// Whether its replay decided as the live run did (and as the lossless replay).
    pub digest_equal: bool,
    /// Recommendations that differ from the recorded ones (changed, or only on one side).
    pub changed: u64,
    /// Ground-truth scores (labelled, correct, misses, false alarms) of the lossless and
    /// the near-lossless replay.
    pub lossless_score: [u64; 4],
    pub archival_score: [u64; 4],
}

/// One drive length.
#[derive(Debug, Clone, Serialize)]
pub struct LengthRow {
    pub duration_s: f64,
    pub file_bytes: u64,
    pub bytes_per_vehicle_s: f64,
    /// Wall seconds of the live `--fast` run that recorded it.
    pub record_wall_s: f64,
    pub replay_wall_s: f64,
    pub speed_factor: f64,
    pub peak_rss_mb: f64,
    pub tasks: u64,
    pub recommendations: u64,
    pub recorded_digest: String,
    pub replay_digest: String,
    pub digests_equal: bool,
    /// The same drive stored near-lossless, when asked for.
    pub archival: Option<ArchivalRow>,
}

/// The rows, the baseline and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct LengthsBench {
    pub scenario: String,
    pub seed: u64,
    pub baseline_duration_s: f64,
    pub baseline_bytes_per_vehicle_s: f64,
    pub rows: Vec<LengthRow>,
    /// Baseline bytes per vehicle-second over the largest row's.
    pub compaction: f64,
    /// Longest row's peak RSS over the shortest's.
    pub rss_ratio: f64,
    /// The camera's lossless coding against the least any lossless coding could take.
    pub camera: CameraFloor,
    /// The baseline over the largest row's bytes per vehicle-second with its camera at
    /// the noise floor: what the best possible lossless camera coding would reach.
    pub floor_compaction: f64,
    pub pass: bool,
    pub failures: Vec<String>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::Write { path: path.display().to_string(), reason: e.to_string() }
}

/// Records `duration_s` of the drive to `out`; returns the wall seconds.
/// Records a drive's own data: the viewer's `foxglove.*` channels are left out on every
/// side, as the storage figures compare how the drive itself is kept.
fn record(cfg: &LengthsConfig, duration_s: f64, out: &Path, opts: RecordOptions) -> Result<f64, BenchError> {
    let opts = RecordOptions { viewer: false, ..opts };
    let mut run = RunConfig::new(cfg.scenario.clone(), cfg.seed, cfg.model.clone());
    run.fast = true;
    run.console = false;
    run.duration_ns = Some((duration_s * 1e9).round() as i64);
    run.record = Some(out.to_path_buf());
    run.record_options = opts;
    let t0 = Instant::now();
    vigil_pipeline::run(run)?;
    Ok(t0.elapsed().as_secs_f64())
}

fn size_of(path: &Path) -> Result<u64, BenchError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| io_err(path, e))
}

/// `vigil replay --source <file> --max --json` in a child process: its report.
fn replay_child(cfg: &LengthsConfig, file: &Path) -> Result<serde_json::Value, BenchError> {
    let out = std::process::Command::new(&cfg.vigil)
        .arg("replay")
        .arg("--source")
        .arg(file)
        .args(["--max", "--json", "--scenario", &cfg.scenario.name])
        .arg("--model")
        .arg(&cfg.model)
        .output()
        .map_err(|e| io_err(&cfg.vigil, format!("cannot run the replay: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(BenchError::Setup(format!("the replay of {} failed: {}", file.display(), err.trim())));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Setup(format!("the replay of {} printed no report: {e}", file.display())))
}

fn score(r: &serde_json::Value) -> [u64; 4] {
    let s = &r["diff"]["ground_truth"]["replayed"];
    ["labelled", "correct", "misses", "false_alarms"].map(|k| s[k].as_u64().unwrap_or(0))
}

/// The replay report of one row's recording, and the row.
fn row(cfg: &LengthsConfig, file: &Path, duration_s: f64) -> Result<(LengthRow, serde_json::Value), BenchError> {
    let record_wall_s = record(cfg, duration_s, file, RecordOptions::default())?;
    let file_bytes = size_of(file)?;
    let mut runs = (0..REPLAYS).map(|_| replay_child(cfg, file)).collect::<Result<Vec<_>, _>>()?;
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    let recorded_digest = s(&runs[0], "recorded_digest");
    let digests_equal = runs.iter().all(|r| {
        let d = s(r, "recommendations_digest");
        !d.is_empty() && d == recorded_digest
    });
    runs.sort_by(|a, b| f(a, "peak_rss_mb").total_cmp(&f(b, "peak_rss_mb")));
    let r = runs.swap_remove(REPLAYS / 2);
    let row = LengthRow {
        duration_s,
        file_bytes,
        bytes_per_vehicle_s: file_bytes as f64 / duration_s,
        record_wall_s,
        replay_wall_s: f(&r, "wall_seconds"),
        speed_factor: f(&r, "speed_factor"),
        peak_rss_mb: f(&r, "peak_rss_mb"),
        tasks: r["tasks"]["raised"].as_u64().unwrap_or(0),
        recommendations: r["recommendations"].as_u64().unwrap_or(0),
        digests_equal,
        replay_digest: s(&r, "recommendations_digest"),
        recorded_digest,
        archival: None,
    };
    Ok((row, r))
}

/// A drive's recording written again near-lossless, and replayed.
fn archival(
    cfg: &LengthsConfig,
    near: u8,
    lossless: (&Path, &serde_json::Value, f64),
    baseline: f64,
) -> Result<ArchivalRow, BenchError> {
    let (file, lossless_report, duration_s) = lossless;
    let out = file.with_extension("near.mcap");
    let drive = vigil_replay::Drive::from_mcap(&[file.to_path_buf()], None, None, None)?;
    let opts = RecordOptions { camera: CameraStorage::NearLossless(near), viewer: false, ..RecordOptions::default() };
    drive.write_mcap(&out, opts, &std::sync::Arc::default())?;
    let bytes = size_of(&out)? as f64 / duration_s;
    let r = replay_child(cfg, &out)?;
    let _ = std::fs::remove_file(&out);
    let d = &r["diff"];
    let n = |k: &str| d[k].as_u64().unwrap_or(0);
    let digest = r["recommendations_digest"].as_str().unwrap_or_default();
    Ok(ArchivalRow {
        near,
        bytes_per_vehicle_s: bytes,
        compaction: baseline / bytes,
        speed_factor: r["speed_factor"].as_f64().unwrap_or(0.0),
        digest_equal: !digest.is_empty() && Some(digest) == r["recorded_digest"].as_str(),
        changed: n("changed") + n("only_recorded") + n("only_replayed"),
        lossless_score: score(lossless_report),
        archival_score: score(&r),
    })
}

/// Records and replays every length, after the baseline recording.
pub fn lengths_bench(cfg: &LengthsConfig, mut progress: impl FnMut(&LengthRow)) -> Result<LengthsBench, BenchError> {
    if cfg.durations.is_empty() || cfg.durations.iter().any(|d| !(d.is_finite() && *d > 0.0 && *d <= 3600.0)) {
        return Err(BenchError::Setup("--lengths must be seconds between 0 and 3600, e.g. 30,120,600".into()));
    }
    let dir = std::env::temp_dir().join(format!("vigil-bench-lengths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let base_s = cfg.durations.iter().copied().fold(f64::INFINITY, f64::min);
    let base_file = dir.join("baseline.mcap");
    let old = RecordOptions {
        compression: ChunkCompression::Lz4,
        camera: CameraStorage::Raw,
        lidar: LidarStorage::Raw,
        ..RecordOptions::default()
    };
    record(cfg, base_s, &base_file, old)?;
    let baseline = size_of(&base_file)? as f64 / base_s;
    let _ = std::fs::remove_file(&base_file);
    let mut rows = Vec::new();
    for &d in &cfg.durations {
        let file = dir.join(format!("drive-{d:.0}s.mcap"));
        let (mut r, report) = row(cfg, &file, d)?;
        if let Some(near) = cfg.archival {
            r.archival = Some(archival(cfg, near, (&file, &report, d), baseline)?);
        }
        progress(&r);
        let _ = std::fs::remove_file(&file);
        rows.push(r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let camera = camera_floor(&cfg.scenario, cfg.seed, FLOOR_FRAMES)?;
    Ok(verdict(cfg, baseline, base_s, rows, camera))
}

/// The rows against the gates (the archival row is reported, not gated).
fn verdict(cfg: &LengthsConfig, baseline: f64, base_s: f64, rows: Vec<LengthRow>, camera: CameraFloor) -> LengthsBench {
    let worst_bytes = rows.iter().map(|r| r.bytes_per_vehicle_s).fold(0.0, f64::max);
    let compaction = if worst_bytes > 0.0 { baseline / worst_bytes } else { 0.0 };
    let above_floor = camera.raw_bytes_per_s * (camera.lossless_bits - camera.floor_bits) / camera.raw_bits;
    let floor_compaction = if worst_bytes > above_floor { baseline / (worst_bytes - above_floor) } else { 0.0 };
    let floor_gap = camera.lossless_bits / camera.floor_bits;
    let (first, last) = (rows.first().map_or(0.0, |r| r.peak_rss_mb), rows.last().map_or(0.0, |r| r.peak_rss_mb));
    let rss_ratio = if first > 0.0 { last / first } else { f64::INFINITY };
    let mut failures = Vec::new();
    if compaction < cfg.min_compaction {
        failures.push(format!("stored {compaction:.2}x smaller than the baseline, below {:.1}x", cfg.min_compaction));
    }
    if floor_gap.is_nan() || floor_gap > cfg.max_floor_gap {
        failures.push(format!(
            "camera stored at {:.2} bits a sample, {floor_gap:.2}x the noise floor's {:.2}, over {:.2}x",
            camera.lossless_bits, camera.floor_bits, cfg.max_floor_gap
        ));
    }
    if rss_ratio > cfg.max_rss_ratio {
        failures.push(format!(
            "peak RSS of the longest replay is {rss_ratio:.2}x the shortest's, over {:.2}x",
            cfg.max_rss_ratio
        ));
    }
    for r in &rows {
        if r.peak_rss_mb > cfg.max_rss_mb || r.peak_rss_mb <= 0.0 {
            failures.push(format!(
                "{:.0} s: peak RSS {:.0} MB, not under {:.0} MB",
                r.duration_s, r.peak_rss_mb, cfg.max_rss_mb
            ));
        }
        if r.speed_factor < cfg.min_speed_factor {
            failures.push(format!(
                "{:.0} s: replay at {:.1}x real time, below {:.1}x",
                r.duration_s, r.speed_factor, cfg.min_speed_factor
            ));
        }
        if let Some(a) = r.archival.as_ref().filter(|a| a.compaction < cfg.min_archival_compaction) {
            failures.push(format!(
                "{:.0} s near-lossless {}: stored {:.2}x smaller than the baseline, below {:.1}x",
                r.duration_s, a.near, a.compaction, cfg.min_archival_compaction
            ));
        }
        if !r.digests_equal {
            failures.push(format!(
                "{:.0} s: replay digest {} is not the live run's {}",
                r.duration_s, r.replay_digest, r.recorded_digest
            ));
        }
    }
    LengthsBench {
        scenario: cfg.scenario.name.clone(),
        seed: cfg.seed,
        baseline_duration_s: base_s,
        baseline_bytes_per_vehicle_s: baseline,
        rows,
        compaction,
        rss_ratio,
        camera,
        floor_compaction,
        pass: failures.is_empty(),
        failures,
    }
}

/// A panel of the PNG: title, bars (label, value, baseline?), the gate's line, the top.
type Panel<'a> = (&'a str, Vec<(String, f64, bool)>, f64, f64);

/// Three panels of bars, a bar per row: MB per vehicle-second (the baseline first, grey),
/// replay peak RSS (the bound as a red line) and replay speed (20x as a red line).
pub fn lengths_png(b: &LengthsBench, path: &Path, cfg: &LengthsConfig) -> Result<(), BenchError> {
    use vigil_plot::Canvas;
    let n = b.rows.len() + 1;
    let panel_w = 60.0 + 70.0 * n as f64;
    let (w, h) = ((30.0 + 3.0 * panel_w) as usize, 460usize);
    let (bottom, top) = (380.0, 110.0);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    let mb = |x: f64| x / 1e6;
    let archival: Vec<Option<f64>> = std::iter::once(None)
        .chain(b.rows.iter().map(|r| r.archival.as_ref().map(|a| mb(a.bytes_per_vehicle_s))))
        .collect();
    let panels: [Panel<'_>; 3] = [
        (
            "MB PER VEHICLE-S",
            std::iter::once(("BASE".to_string(), mb(b.baseline_bytes_per_vehicle_s), true))
                .chain(b.rows.iter().map(|r| (format!("{:.0} S", r.duration_s), mb(r.bytes_per_vehicle_s), false)))
                .collect(),
            mb(b.baseline_bytes_per_vehicle_s / cfg.min_compaction),
            mb(b.baseline_bytes_per_vehicle_s),
        ),
        (
            "REPLAY PEAK RSS MB",
            b.rows.iter().map(|r| (format!("{:.0} S", r.duration_s), r.peak_rss_mb, false)).collect(),
            cfg.max_rss_mb,
            cfg.max_rss_mb * 1.1,
        ),
        (
            "REPLAY X REAL TIME",
            b.rows.iter().map(|r| (format!("{:.0} S", r.duration_s), r.speed_factor, false)).collect(),
            cfg.min_speed_factor,
            b.rows.iter().map(|r| r.speed_factor).fold(cfg.min_speed_factor * 1.5, f64::max),
        ),
    ];
    for (p, (title, bars, bound, max)) in panels.iter().enumerate() {
        let x0 = 20.0 + p as f64 * panel_w;
        let y_of = |v: f64| bottom - (v / max.max(1e-9)).clamp(0.0, 1.0) * (bottom - top);
        c.text(x0 as i64, 80, title, [0, 0, 0], 2);
        c.line(x0, bottom, x0 + panel_w - 30.0, bottom, [0, 0, 0]);
        for (i, (label, v, base)) in bars.iter().enumerate() {
            let bx = x0 + 10.0 + i as f64 * 70.0;
            let colour = if *base { [150, 150, 150] } else { [70, 110, 180] };
            for x in bx as i64..(bx + 50.0) as i64 {
                c.line(x as f64, y_of(*v), x as f64, bottom, colour);
            }
            c.text(bx as i64, y_of(*v) as i64 - 16, &format!("{v:.1}"), [0, 0, 0], 2);
            if let Some(a) = archival.get(i).copied().flatten().filter(|_| p == 0) {
                for x in (bx + 30.0) as i64..(bx + 50.0) as i64 {
                    c.line(x as f64, y_of(a), x as f64, bottom, [230, 140, 30]);
                }
                c.text(bx as i64 + 26, y_of(a) as i64 - 16, &format!("{a:.1}"), [255, 255, 255], 2);
            }
            c.text(bx as i64, bottom as i64 + 8, label, [0, 0, 0], 2);
        }
        c.line(x0, y_of(*bound), x0 + panel_w - 30.0, y_of(*bound), [200, 30, 30]);
        if p == 0 && cfg.archival.is_some() && cfg.min_archival_compaction > 0.0 {
            let gate = y_of(mb(b.baseline_bytes_per_vehicle_s / cfg.min_archival_compaction));
            c.line(x0, gate, x0 + panel_w - 30.0, gate, [230, 140, 30]);
        }
        if p == 0 && b.floor_compaction > 0.0 {
            let floor = y_of(mb(b.baseline_bytes_per_vehicle_s / b.floor_compaction));
            c.line(x0, floor, x0 + panel_w - 30.0, floor, [30, 150, 30]);
        }
    }
    png_header(&mut c, b);
    c.write_png(path).map_err(|e| io_err(path, e))
}

/// The PNG's title, verdict and legend.
fn png_header(c: &mut vigil_plot::Canvas, b: &LengthsBench) {
    let title = format!("RECORD AND REPLAY BY DRIVE LENGTH: {} SEED {}", b.scenario.to_uppercase(), b.seed);
    c.text(10, 10, &title, [0, 0, 0], 2);
    let verdict = format!(
        "{:.2}X SMALLER (BASE: LZ4, RAW)  LOSSLESS BEST {:.2}X  RSS LONG/SHORT {:.2}X  {}",
        b.compaction,
        b.floor_compaction,
        b.rss_ratio,
        if b.pass { "PASS" } else { "FAIL" }
    );
    c.text(10, 30, &verdict, if b.pass { [20, 120, 20] } else { [200, 30, 30] }, 2);
    c.text(10, 50, "RED: GATES  GREEN: CAMERA AT NOISE FLOOR  ORANGE: NEAR-LOSSLESS AND ITS GATE", [90, 90, 90], 2);
}
