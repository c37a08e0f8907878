//! `vigil replay` and `vigil record`: drives from Kafka or MCAP (see
//! `vigil-replay`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::Args;
use vigil_core::Nanos;
use vigil_replay::{Drive, ReplayConfig, ReplayReport, StreamCounters, replay};
use vigil_sim::Scenario;
use vigil_vehicle::node::RoadMap;

use crate::process::BrokerArgs;

/// A time on the vehicle clock: nanoseconds since the Unix epoch, or RFC 3339
/// (`2026-01-01T00:00:05Z`, fractions allowed).
fn parse_time(s: &str) -> Result<Nanos, String> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is neither nanoseconds since the epoch nor an RFC 3339 time ({e})"))?;
    let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`{s}` is before 1970"))?;
    i64::try_from(d.as_nanos()).map_err(|_| format!("`{s}` is too far in the future"))
}

/// A spinner on stderr while a drive loads (hidden when stderr is not a terminal).
fn reading(what: &str) -> indicatif::ProgressBar {
    let s = indicatif::ProgressBar::new_spinner();
    s.set_message(what.to_string());
    s.enable_steady_tick(std::time::Duration::from_millis(120));
    s
}

/// Where a drive comes from: Kafka by vehicle and capture-time window.
#[derive(Debug, Args)]
pub struct KafkaWindow {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The vehicle whose drive to read (e.g. veh-0000).
    #[arg(long)]
    vehicle: Option<String>,
    /// The drive to read: a run id from `vigil drives` (a window inside it still works).
    #[arg(long)]
    drive: Option<String>,
    /// Window start (inclusive), capture time: ns since the epoch or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    from: Option<Nanos>,
    /// Window end (exclusive), capture time.
    #[arg(long, value_parser = parse_time)]
    to: Option<Nanos>,
}

impl KafkaWindow {
    fn read(&self) -> anyhow::Result<Drive> {
        if self.vehicle.is_none() && self.drive.is_none() {
            bail!("reading a drive from Kafka needs --drive ID (see `vigil drives`) or --vehicle ID (e.g. veh-0000)");
        }
        if let Some(d) = &self.drive {
            vigil_core::RunId::parse(d)
                .map_err(|e| anyhow::anyhow!("--drive: {e}; `vigil drives` lists the drives"))?;
        }
        if let (Some(f), Some(t)) = (self.from, self.to)
            && t <= f
        {
            bail!("--to must be after --from");
        }
        let b = self.brokers.load()?;
        let what = match (&self.drive, &self.vehicle) {
            (Some(d), Some(v)) => format!("{v}'s drive {d}"),
            (Some(d), None) => format!("drive {d}"),
            (None, v) => format!("{}'s drive", v.as_deref().unwrap_or_default()),
        };
        let spinner = reading(&format!("reading {what} from Kafka"));
        let drive = Drive::from_kafka(&b, self.vehicle.as_deref(), self.drive.as_deref(), self.from, self.to);
        spinner.finish_and_clear();
        Ok(drive?)
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// `kafka`, or a recording from `vigil record` / `vigil run --record`: an MCAP file,
    /// a directory of parts, or parts one by one (repeat --source, or separate with commas).
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',')]
    source: Vec<String>,
    #[command(flatten)]
    window: KafkaWindow,
    #[command(flatten)]
    live: crate::live::LiveArgs,
    /// Pace the replay at this multiple of real time.
    #[arg(long, conflicts_with = "max")]
    speed: Option<f64>,
    /// As fast as the pipeline goes (the default).
    #[arg(long)]
    max: bool,
    /// The model to replay with.
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// The scenario whose road the drive was on (lanes decide whether steering around is
    /// possible).
    #[arg(long, default_value = "pedestrian-crossing")]
    scenario: String,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Task deadline budget, milliseconds (as recorded drives used).
    #[arg(long, default_value_t = 100.0)]
    budget_ms: f64,
    /// Write a labelled crop per task here (the dataset format of `vigil train --dataset`),
    /// plus, where the drive has ground truth, its visible objects (`--export-objects-every`).
    #[arg(long)]
    export_dataset: Option<PathBuf>,
    /// With --export-dataset and ground truth: export every visible object of every n-th
    /// camera frame too (0: only the tasks).
    #[arg(long, default_value_t = 4)]
    export_objects_every: u64,
    /// Write the replay as a picture here: obstacles in view, tasks coloured by their
    /// recommendation, recorded latency, on one time axis.
    #[arg(long)]
    timeline_png: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn print_human(r: &ReplayReport) {
    println!(
        "drive {} ({}): {:.1} s replayed in {:.2} s ({:.1}x real time) with {} v{}",
        r.drive,
        r.vehicles.join(", "),
        r.sim_seconds,
        r.wall_seconds,
        r.speed_factor,
        r.model.name,
        r.model.version
    );
    println!(
        "  frames {:?}; tasks {} raised, {} answered, {} fell back; digest {}",
        r.frames, r.tasks.raised, r.tasks.completed, r.tasks.fallback, r.recommendations_digest
    );
    let d = &r.diff;
    println!(
        "  vs recorded: {} compared, {} changed, {} only then, {} only now",
        d.compared, d.changed, d.only_recorded, d.only_replayed
    );
    if let Some(g) = &d.ground_truth {
        println!(
            "  vs ground truth: then {} misses / {} false alarms; now {} / {} ({} new misses, {} new false alarms)",
            g.recorded.misses,
            g.recorded.false_alarms,
            g.replayed.misses,
            g.replayed.false_alarms,
            g.new_misses,
            g.new_false_alarms
        );
    }
    for c in &d.examples {
        println!(
            "    {}: {} -> {} (truth {})",
            c.task_id,
            c.recorded.as_deref().unwrap_or("-"),
            c.replayed.as_deref().unwrap_or("-"),
            c.truth.as_deref().unwrap_or("?")
        );
    }
    if r.exported > 0 {
        println!("  exported {} labelled crops", r.exported);
    }
    let rd = &r.read;
    let left_out = [
        (rd.duplicates, "re-sent copies"),
        (rd.late, "too far out of order"),
        (rd.unreadable, "without a readable header"),
        (rd.foreign_vehicle, "claiming a vehicle the drive does not have"),
        (rd.other_channels, "on channels of another schema"),
    ];
    let said: Vec<String> = left_out.iter().filter(|(n, _)| *n > 0).map(|(n, why)| format!("{n} {why}")).collect();
    if !said.is_empty() {
        println!("  left out: {}", said.join(", "));
    }
}

/// Runs `work` with a progress bar on stderr (hidden when stderr is not a terminal):
/// simulated seconds read of the drive's span, and compressed bytes read.
fn with_bar<T>(drive: &Drive, what: &str, counters: &Arc<StreamCounters>, work: impl FnOnce() -> T) -> T {
    let (from, to) = drive.span().unwrap_or((0, 0));
    let bar = crate::vision::progress(((to - from).max(0) / 1_000_000) as u64, what);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {prefix} {elapsed}<{eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let at = counters.last_capture_ns.load(Ordering::Relaxed);
                let ms = if at == 0 { 0 } else { ((at - from).max(0) / 1_000_000) as u64 };
                bar.set_position(ms);
                let mb = counters.bytes_read() as f64 / 1e6;
                bar.set_prefix(format!("{:.1}/{:.1} s, {mb:.1} MB", ms as f64 / 1e3, (to - from) as f64 * 1e-9));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    });
    bar.finish_and_clear();
    out
}

/// The drive `--source` names: Kafka by window, or a recording (files, directories).
fn open_source(source: &[String], window: &KafkaWindow) -> anyhow::Result<Drive> {
    if source.len() == 1 && source[0] == "kafka" {
        return window.read();
    }
    let paths: Vec<PathBuf> = source.iter().map(PathBuf::from).collect();
    let shown = source.join(", ");
    Drive::from_mcap(&paths, window.vehicle.as_deref(), window.from, window.to)
        .with_context(|| format!("--source {shown} (give `kafka`, an MCAP file, a directory of parts, or the parts)"))
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let drive = open_source(&args.source, &args.window)?;
    if !args.budget_ms.is_finite() || args.budget_ms <= 0.0 {
        bail!("--budget-ms must be a positive number of milliseconds, got {}", args.budget_ms);
    }
    let scenario = Scenario::load(&args.scenario)?;
    let counters = Arc::new(StreamCounters::default());
    let cfg = ReplayConfig {
        model_dir: args.model.clone(),
        road: RoadMap { lanes: scenario.road.lanes, lane_width_m: scenario.road.lane_width_m },
        speed: if args.max { None } else { args.speed },
        workers: args.workers,
        batcher: vigil_pipeline::default_batcher(),
        task_budget_ns: (args.budget_ms * 1e6).round() as i64,
        export_dataset: args.export_dataset.clone(),
        export_objects_every: args.export_objects_every,
        progress: Some(counters.clone()),
        live: args.live.config().map(|mut live| {
            // Watched, a replay plays at the pace it was recorded (or --speed), and the
            // viewer may pause, change speed and seek ahead; --max keeps it unpaced.
            if !args.max {
                live.playback = drive.span().map(|(start_ns, end_ns)| vigil_bus::live::PlaybackRange {
                    start_ns,
                    end_ns,
                    speed: args.speed.unwrap_or(1.0),
                });
            }
            live
        }),
    };
    let r = with_bar(&drive, "replay", &counters, || replay(&drive, &cfg)).context("replay failed")?;
    if let Some(p) = &args.timeline_png {
        let title = format!(
            "DRIVE {}  MODEL {} ({} V{})  {} TASKS  {} RECOMMENDATIONS",
            r.drive.to_uppercase(),
            r.model.dir.to_uppercase(),
            r.model.name.to_uppercase(),
            r.model.version,
            r.timeline.tasks.len(),
            r.recommendations
        );
        vigil_replay::timeline::timeline_png(&r.timeline, &title, p)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&r)?;
        v["peak_rss_mb"] = vigil_bench::soak::peak_rss_mb().into();
        println!("{v}");
    } else {
        print_human(&r);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// `kafka` (the default), or a recording to write again (to compress, split or
    /// re-encode it): an MCAP file, a directory of parts, or the parts.
    #[arg(long, default_value = "kafka", num_args = 1.., value_delimiter = ',')]
    source: Vec<String>,
    #[command(flatten)]
    window: KafkaWindow,
    /// The MCAP file to write (a directory of parts with --split-size or --split-duration).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    recording: crate::recording::RecordingArgs,
    #[arg(long)]
    json: bool,
}

pub fn record(args: RecordArgs) -> anyhow::Result<()> {
    let drive = open_source(&args.source, &args.window)?;
    let counters = Arc::new(StreamCounters::default());
    let opts = args.recording.options();
    let written = with_bar(&drive, "record", &counters, || drive.write_mcap(&args.out, opts, &counters))
        .with_context(|| format!("writing {}", args.out.display()))?;
    if args.json {
        let mut v = serde_json::to_value(&written)?;
        v["vehicles"] = serde_json::json!(drive.vehicles);
        v["out"] = serde_json::json!(args.out.display().to_string());
        println!("{v}");
    } else {
        println!(
            "drive {}: {} messages to {} ({} part(s))",
            written.drive,
            written.messages,
            args.out.display(),
            written.parts
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_nanoseconds_or_rfc3339() {
        assert_eq!(parse_time("1767225600000000000"), Ok(1_767_225_600_000_000_000));
        assert_eq!(parse_time("2026-01-01T00:00:05Z"), Ok(1_767_225_605_000_000_000));
        assert_eq!(parse_time("2026-01-01T00:00:05.25Z"), Ok(1_767_225_605_250_000_000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

/// `vigil drives`: the drives in Kafka.
#[derive(Debug, Args)]
pub struct DrivesArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn drives(args: DrivesArgs) -> anyhow::Result<()> {
    let b = args.brokers.load()?;
    let spinner = reading("reading the drives in Kafka");
    let drives = vigil_brokers::kafka::list_drives(&b.kafka, std::time::Duration::from_secs(60));
    spinner.finish_and_clear();
    let drives = drives?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&drives)?);
        return Ok(());
    }
    if drives.is_empty() {
        println!("no drives in Kafka at {} (topic prefix `{}`)", b.kafka.brokers, b.kafka.topic_prefix);
        return Ok(());
    }
    println!(
        "{:<34} {:<10} {:<28} {:<32} {:>8}  messages",
        "drive", "vehicle", "simulated", "first capture", "seconds"
    );
    for d in &drives {
        let first = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(d.first_capture_ns.max(0) as u64),
        );
        let secs = d.last_capture_ns.saturating_sub(d.first_capture_ns) as f64 * 1e-9;
        let msgs: Vec<String> = d.messages.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let simulated = match (&d.scenario, d.seed) {
            (Some(s), Some(seed)) => format!("{s} seed {seed}"),
            (Some(s), None) => s.clone(),
            _ => "-".into(),
        };
        println!(
            "{:<34} {:<10} {:<28} {:<32} {:>8.1}  {}",
            d.drive,
            d.vehicle,
            simulated,
            first.to_string(),
            secs,
            msgs.join(", ")
        );
    }
    Ok(())
}
