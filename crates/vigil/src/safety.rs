//! `vigil safety`: the safety matrix (crate `vigil-safety`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use vigil_safety::{Cell, Job, RunSettings, SafetyReport};
use vigil_sim::Scenario;

#[derive(Debug, Args)]
pub struct SafetyArgs {
    /// Seeds per cell (1..=N), each with perception on and off.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// A representative subset of the cells (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Only the cells whose id starts with one of these (e.g. `ccrs-100,highway`).
    #[arg(long, value_delimiter = ',')]
    cells: Vec<String>,
    /// Add a scenario file (documented TOML format) as a hazardous cell; repeatable.
    #[arg(long)]
    scenario: Vec<PathBuf>,
    /// Add a scenario file as a nuisance cell (nothing should make the car brake).
    #[arg(long)]
    nuisance: Vec<PathBuf>,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// Drives at once (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Write the heatmap (cell × speed, coloured by outcome) here.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Write the first-detection distances against the stopping distance here.
    #[arg(long)]
    detection_png: Option<PathBuf>,
    /// Write every selected cell's scenario file into this directory and stop.
    #[arg(long)]
    write_scenarios: Option<PathBuf>,
    /// Exit non-zero when a gate fails: a collision up to 80 km/h, a control that does
    /// not collide, a hard brake or a stop in a nuisance cell.
    #[arg(long)]
    gate: bool,
}

fn selected(a: &SafetyArgs) -> anyhow::Result<Vec<Cell>> {
    let base = if a.quick { vigil_safety::quick() } else { vigil_safety::matrix() };
    let cells: Vec<Cell> = base
        .into_iter()
        .filter(|c| a.cells.is_empty() || a.cells.iter().any(|p| c.id.starts_with(p.as_str())))
        .collect();
    if cells.is_empty() && a.scenario.is_empty() && a.nuisance.is_empty() {
        bail!("--cells {:?} selects no cell; `vigil safety --write-scenarios DIR` lists them all", a.cells);
    }
    Ok(cells)
}

fn jobs(a: &SafetyArgs, cells: Vec<Cell>) -> anyhow::Result<Vec<Job>> {
    let mut jobs = cells.into_iter().map(Job::generated).collect::<Result<Vec<_>, _>>()?;
    for (path, hazardous) in a.scenario.iter().map(|p| (p, true)).chain(a.nuisance.iter().map(|p| (p, false))) {
        let text = vigil_core::bounded::read_text(path, vigil_core::bounded::MAX_TEXT_BYTES)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let scenario = Scenario::from_toml(&text, &path.display().to_string())?;
        let cell = Cell::added(&scenario, text, hazardous);
        jobs.push(Job { cell, scenario, source: path.display().to_string() });
    }
    Ok(jobs)
}

pub fn run(a: SafetyArgs) -> anyhow::Result<()> {
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds must be 1..=1000, got {}", a.seeds);
    }
    let cells = selected(&a)?;
    if let Some(dir) = &a.write_scenarios {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for c in &cells {
            std::fs::write(dir.join(format!("{}.toml", c.id)), &c.toml)?;
        }
        eprintln!("wrote {} scenario files to {}", cells.len(), dir.display());
        return Ok(());
    }
    let jobs = jobs(&a, cells)?;
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let settings = RunSettings { seeds: a.seeds, model_dir: a.model.clone(), threads };
    let bar = crate::vision::progress((jobs.len() as u64) * a.seeds * 2, "drives");
    let started = Instant::now();
    let runs = vigil_safety::run::run(&jobs, &settings, &|done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let report = SafetyReport::of(runs, a.seeds, started.elapsed().as_secs_f64());
    if let Some(p) = &a.png {
        vigil_safety::plot::heatmap(&report, p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.detection_png {
        vigil_safety::plot::detection_range(&report, p)?;
        eprintln!("wrote {}", p.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", vigil_safety::table(&report));
        for f in &report.failures {
            println!("gate: {f}");
        }
    }
    if a.gate && !report.failures.is_empty() {
        bail!("{} safety gate(s) failed (listed above)", report.failures.len());
    }
    Ok(())
}
