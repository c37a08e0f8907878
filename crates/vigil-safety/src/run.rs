//! Running the cells: every (cell, seed) with perception on and off (the control), on a
//! pool of threads, each drive a fast (lockstep) embedded run.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use vigil_pipeline::{RunConfig, RunReport, SpoolConfig};
use vigil_sim::Scenario;

use crate::SafetyError;
use crate::cells::{Cell, Family};

/// What one drive showed.
#[derive(Debug, Clone, Serialize)]
pub struct Drive {
    pub seed: u64,
    pub collision: bool,
    pub impact_kmh: Option<f64>,
    pub min_gap_m: Option<f64>,
    /// Distance ahead of the first task raised (the first detection), metres.
    pub first_detection_m: Option<f64>,
    /// From the first detection to the first command to stop, seconds.
    pub detect_to_brake_s: Option<f64>,
    /// BRAKE commands: a worker's recommendations and radar-only cautions.
    pub brake: u64,
    pub brake_hard: u64,
    /// Cautions for radar-only objects (slow down or brake).
    pub cautions: u64,
    /// Fallback brakes (no answer in time, or no camera).
    pub fallback_brakes: u64,
    pub stopped: bool,
    pub distance_m: f64,
}

impl Drive {
    fn of(seed: u64, r: &RunReport) -> Self {
        let action = |a: &str| r.recommendations.by_action.get(a).copied().unwrap_or(0);
        let o = &r.outcome;
        Self {
            seed,
            collision: o.collision,
            impact_kmh: o.impact_kmh,
            min_gap_m: o.min_gap_m,
            first_detection_m: r.first_detection.map(|d| d.distance_m),
            detect_to_brake_s: r.first_detection.zip(o.first_brake_s).map(|(d, b)| b - d.t_s),
            brake: action("BRAKE") + r.caution_brakes,
            brake_hard: action("BRAKE_HARD"),
            cautions: r.cautions,
            fallback_brakes: r.tasks.fallback_braked,
            stopped: o.ego_stopped,
            distance_m: o.distance_m,
        }
    }
}

/// One cell's drives, perception on and off.
#[derive(Debug, Clone, Serialize)]
pub struct CellRun {
    pub id: String,
    pub family: Family,
    pub speed_kmh: u32,
    pub hazardous: bool,
    /// Where the scenario came from: `generated`, or the file given with `--scenario`.
    pub source: String,
    pub on: Vec<Drive>,
    pub off: Vec<Drive>,
}

/// How to run the matrix.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub seeds: u64,
    pub model_dir: PathBuf,
    /// Drives at once (each is several threads; one per core is about right).
    pub threads: usize,
}

/// A cell to run: generated, or a scenario file.
#[derive(Debug, Clone)]
pub struct Job {
    pub cell: Cell,
    pub scenario: Scenario,
    pub source: String,
}

impl Job {
    pub fn generated(cell: Cell) -> Result<Self, SafetyError> {
        let scenario = Scenario::from_toml(&cell.toml, &cell.id)?;
        Ok(Self { cell, scenario, source: "generated".into() })
    }
}

/// Runs every job over seeds 1..=`seeds`, perception on and off; `progress` is told each
/// drive done (done, total).
pub fn run(
    jobs: &[Job],
    s: &RunSettings,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<CellRun>, SafetyError> {
    let drives: Vec<(usize, u64, bool)> =
        (0..jobs.len()).flat_map(|j| (1..=s.seeds).flat_map(move |seed| [(j, seed, true), (j, seed, false)])).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Drive, SafetyError>>>> = Mutex::new((0..drives.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..s.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(j, seed, perception)) = drives.get(i) else { break };
                    let r = drive(&jobs[j].scenario, seed, perception, &s.model_dir);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    progress(done.fetch_add(1, Ordering::SeqCst) + 1, drives.len());
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| SafetyError::Drive("a drive thread panicked".into()))?;
    let mut runs: Vec<CellRun> = jobs
        .iter()
        .map(|j| CellRun {
            id: j.cell.id.clone(),
            family: j.cell.family,
            speed_kmh: j.cell.speed_kmh,
            hazardous: j.cell.hazardous,
            source: j.source.clone(),
            on: Vec::new(),
            off: Vec::new(),
        })
        .collect();
    for ((j, _, perception), r) in drives.iter().zip(results) {
        let d = r.ok_or_else(|| SafetyError::Drive("a drive did not run".into()))??;
        if *perception { runs[*j].on.push(d) } else { runs[*j].off.push(d) }
    }
    Ok(runs)
}

fn drive(scenario: &Scenario, seed: u64, perception: bool, model_dir: &std::path::Path) -> Result<Drive, SafetyError> {
    let mut cfg = RunConfig::new(scenario.clone(), seed, model_dir.to_path_buf());
    cfg.fast = true;
    cfg.perception = perception;
    // Drives run side by side: each keeps its telemetry in memory.
    cfg.spool = SpoolConfig::default();
    cfg.priority = vigil_vehicle::priority::PriorityMode::Off;
    let r = vigil_pipeline::run(cfg)?;
    Ok(Drive::of(seed, &r))
}
