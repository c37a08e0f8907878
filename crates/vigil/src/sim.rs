//! `vigil scenarios` and `vigil sim`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vigil_bus::ZenohConfig;
use vigil_bus::embedded::recorder::McapRecorder;
use vigil_pipeline::publish::{Controls, PublishConfig, publish};
use vigil_sim::scenario::BUILTINS;
use vigil_sim::sim::frame_count;
use vigil_sim::snapshot::Snapshotter;
use vigil_sim::{Scenario, SimMessage, run_fleet};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// A built-in scenario name (see `vigil scenarios`) or a path to a scenario TOML file.
    #[arg(long)]
    scenario: String,
    /// Seed for every random choice; the same seed and scenario give the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Simulated seconds (default: the scenario's own duration).
    #[arg(long, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Number of vehicles, each with its own id and derived seed.
    #[arg(long, default_value_t = 1)]
    vehicles: usize,
    /// Pace to real time and publish every message on the zenoh bus.
    #[arg(long)]
    publish: bool,
    /// Print one JSON report at the end.
    #[arg(long)]
    json: bool,
    /// Write camera frames with ground-truth boxes and a bird's-eye view as PNGs here.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Record every message to this MCAP file (protobuf schema embedded; a directory of
    /// parts with --split-size or --split-duration).
    #[arg(long)]
    record: Option<PathBuf>,
    #[command(flatten)]
    recording: crate::recording::RecordingArgs,
    /// Worker threads for the fast mode (default: all cores; 1 when recording).
    #[arg(long)]
    threads: Option<usize>,
    /// Zenoh endpoint to listen on (repeatable), e.g. tcp/127.0.0.1:7447.
    #[arg(long)]
    listen: Vec<String>,
    /// Zenoh endpoint to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// A zenoh JSON5 configuration file (zenoh's own format: mutual TLS under
    /// transport.link.tls, access_control by certificate name); --listen and --connect
    /// go on top of it. See deploy/zenoh/.
    #[arg(long, value_name = "FILE")]
    zenoh_config: Option<std::path::PathBuf>,
    /// With --publish: wait for this many zenoh peers before the first frame.
    #[arg(long, default_value_t = 0)]
    wait_peers: usize,
    /// With --wait-peers: how long to wait, seconds.
    #[arg(long, default_value_t = 10.0)]
    wait_timeout: f64,
    /// With --publish: stamp captures with the wall clock (the run starts now), as real
    /// sensors do; needed when vehicle and workers run as separate processes.
    #[arg(long)]
    wall_clock: bool,
    /// With --publish: close the loop across processes, applying the commands vehicle
    /// nodes send on `vigil/<vehicle>/control` to the simulated egos.
    #[arg(long)]
    control: bool,
}

#[derive(Debug, Serialize)]
struct Frames {
    lidar: u64,
    camera: u64,
    radar: u64,
    ground_truth: u64,
}

#[derive(Debug, Serialize)]
struct SimReport {
    scenario: String,
    seed: u64,
    vehicles: usize,
    sim_seconds: f64,
    wall_seconds: f64,
    realtime_factor: f64,
    frames: Frames,
    lidar_points: u64,
    bytes: u64,
    digest: String,
    /// With --control: what the commands did.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<vigil_pipeline::Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    controls: Option<Controls>,
}

pub fn list_scenarios() -> anyhow::Result<()> {
    for (name, _) in BUILTINS {
        let s = Scenario::builtin(name).with_context(|| format!("built-in scenario {name} does not parse"))?;
        println!("{name:<22} {:>5.1} s  {}", s.duration_s, s.description);
    }
    Ok(())
}

/// The simulated seconds of the run, with the flags checked together.
fn checked_duration(args: &SimArgs, scenario: &Scenario) -> anyhow::Result<f64> {
    let duration = args.duration.unwrap_or(scenario.duration_s);
    if !duration.is_finite() || duration <= 0.0 {
        bail!("--duration must be a positive number of seconds, got {duration}");
    }
    if duration > 24.0 * 3600.0 {
        bail!("--duration {duration} s is over the 24 h limit of one run; split the drive");
    }
    if (args.wall_clock || args.control) && !args.publish {
        bail!("--wall-clock and --control go with --publish (a paced run on the zenoh bus)");
    }
    if args.vehicles == 0 || args.vehicles > 4096 {
        bail!("--vehicles must be between 1 and 4096, got {}", args.vehicles);
    }
    Ok(duration)
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let duration = checked_duration(&args, &scenario)?;
    let duration_ns = (duration * 1e9).round() as i64;
    let frames = |enabled: bool, rate: f64| if enabled { frame_count(rate, duration_ns) } else { 0 };
    let (cam, lidar) = (&scenario.sensors.camera, &scenario.sensors.lidar);
    let mut snap = args
        .snapshot
        .as_ref()
        .map(|_| Snapshotter::new(4, frames(cam.enabled, cam.rate_hz), frames(lidar.enabled, lidar.rate_hz)));
    let mut recorder = match &args.record {
        Some(p) => Some(McapRecorder::with_options(p, args.recording.options())?),
        None => None,
    };
    let mut record_error = None;
    let mut observe = |index: usize, m: &SimMessage, bytes: &[u8]| {
        if index == 0
            && let Some(s) = snap.as_mut()
        {
            s.observe(m);
        }
        if let Some(r) = recorder.as_mut()
            && record_error.is_none()
        {
            let publish = m.envelope.header.as_ref().map_or(m.capture_ns, |h| h.publish_time_ns);
            if let Err(e) = r.write(&m.key, m.capture_ns, publish, bytes) {
                record_error = Some(e);
            }
        }
    };
    let start = Instant::now();
    let mut closed_loop = None;
    let (stats, digest) = if args.publish {
        let published = publish(&publish_config(&args, duration_ns), &scenario, &mut observe)?;
        closed_loop = published.closed_loop;
        (published.stats, published.digest)
    } else {
        // Recording keeps one thread so the file is in a reproducible order.
        let default =
            if args.record.is_some() { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
        let run =
            run_fleet(&scenario, args.seed, duration_ns, args.vehicles, args.threads.unwrap_or(default), &mut observe);
        (run.stats, run.digest)
    };
    if let Some(e) = record_error {
        return Err(e.into());
    }
    if let (Some(r), Some(p)) = (recorder, &args.record) {
        let n = r.finish()?;
        eprintln!("recorded {n} messages to {}", p.display());
    }
    let wall = start.elapsed().as_secs_f64();
    if let (Some(dir), Some(s)) = (&args.snapshot, &snap) {
        for p in s.write(dir)? {
            eprintln!("wrote {}", p.display());
        }
    }
    let outcome = closed_loop.as_ref().map(|(o, _)| o.clone());
    let report = SimReport {
        scenario: scenario.name.clone(),
        seed: args.seed,
        vehicles: args.vehicles,
        sim_seconds: duration,
        wall_seconds: wall,
        realtime_factor: duration / wall.max(1e-9),
        frames: Frames {
            lidar: stats.lidar_frames,
            camera: stats.camera_frames,
            radar: stats.radar_frames,
            ground_truth: stats.ground_truth,
        },
        lidar_points: stats.lidar_points,
        bytes: stats.bytes,
        digest,
        outcome,
        controls: closed_loop.map(|(_, c)| c),
    };
    print_report(&report, args.json)
}

fn print_report(report: &SimReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "{}: {} vehicle(s), {:.1} s simulated in {:.2} s ({:.1}x real time); lidar {} camera {} radar {} frames; digest {}",
            report.scenario,
            report.vehicles,
            report.sim_seconds,
            report.wall_seconds,
            report.realtime_factor,
            report.frames.lidar,
            report.frames.camera,
            report.frames.radar,
            report.digest
        );
    }
    Ok(())
}

fn publish_config(args: &SimArgs, duration_ns: i64) -> PublishConfig {
    PublishConfig {
        bus: ZenohConfig {
            listen: args.listen.clone(),
            connect: args.connect.clone(),
            config_file: args.zenoh_config.clone(),
            ..ZenohConfig::default()
        },
        vehicles: args.vehicles,
        seed: args.seed,
        duration_ns,
        control: args.control,
        wait_peers: args.wait_peers,
        wait_timeout: Duration::from_secs_f64(args.wait_timeout.max(0.0)),
        wall_clock: args.wall_clock,
    }
}
