//! `vigil run`: the perception pipeline end to end (see `vigil-pipeline`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use vigil_pipeline::{RunConfig, RunReport};
use vigil_sim::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Where the workers' forward passes run (`--inference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InferenceArg {
    /// Inline on a CPU, batched on a GPU.
    Auto,
    /// Each worker runs the forward pass itself, on its own thread.
    Inline,
    /// Every worker's crops go to one batching thread.
    Batched,
}

impl InferenceArg {
    pub fn serving(self) -> vigil_vision::batcher::Serving {
        use vigil_vision::batcher::Serving;
        match self {
            InferenceArg::Auto => Serving::Auto,
            InferenceArg::Inline => Serving::Inline,
            InferenceArg::Batched => Serving::Batched,
        }
    }
}

/// Scheduling of the urgent plane against telemetry (`--priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Leave every thread as the process started.
    Off,
    /// Urgent threads at nice -11 (needs CAP_SYS_NICE; else only telemetry steps down to +9).
    Nice,
    /// Urgent threads SCHED_RR 10 (needs CAP_SYS_NICE or RLIMIT_RTPRIO), telemetry at +9.
    Realtime,
}

impl PriorityArg {
    pub fn mode(self) -> vigil_vehicle::priority::PriorityMode {
        use vigil_vehicle::priority::PriorityMode;
        match self {
            PriorityArg::Off => PriorityMode::Off,
            PriorityArg::Nice => PriorityMode::Nice,
            PriorityArg::Realtime => PriorityMode::Realtime,
        }
    }
}

/// `--sensor-outage camera@2`: the stream and the simulated second it stops at.
fn parse_outage(s: &str) -> Result<(vigil_vehicle::node::Stream, f64), String> {
    use vigil_vehicle::node::Stream;
    let (name, at) = s.split_once('@').ok_or_else(|| format!("expected STREAM@SECONDS (e.g. camera@2), got {s:?}"))?;
    let kind = Stream::ALL
        .into_iter()
        .find(|k| vigil_vehicle::node::stream_label(*k) == name)
        .ok_or_else(|| format!("unknown stream {name:?}: use lidar, camera, radar or localization"))?;
    let at: f64 = at.parse().map_err(|_| format!("{at:?} is not a number of seconds"))?;
    if !at.is_finite() || at < 0.0 {
        return Err(format!("the outage must start at zero or more seconds, got {at}"));
    }
    Ok((kind, at))
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A built-in scenario name (see `vigil scenarios`) or a path to a scenario TOML file.
    #[arg(long)]
    scenario: String,
    /// Seed of the simulation; the same seed gives the same world and sensor noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Simulated seconds (default: the scenario's own duration).
    #[arg(long, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Simulated vehicles, each with its own vehicle node.
    #[arg(long, default_value_t = 1)]
    vehicles: usize,
    /// Vision workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the workers' forward passes run: inline (each worker on its own thread; the
    /// CPU default), batched (one batching thread for all; the GPU default).
    #[arg(long, value_enum, default_value_t = InferenceArg::Auto)]
    inference: InferenceArg,
    /// Record telemetry, tasks and recommendations to this MCAP file (a directory of
    /// parts with --split-size or --split-duration).
    #[arg(long)]
    record: Option<PathBuf>,
    #[command(flatten)]
    recording: crate::recording::RecordingArgs,
    /// Off: sensors are ingested and logged but nothing is detected or recognised.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    perception: OnOff,
    /// Run the simulator in lockstep with the pipeline, as fast as it allows; commands
    /// still take effect at capture time + the latency measured for them.
    #[arg(long)]
    fast: bool,
    /// Print one JSON report at the end.
    #[arg(long)]
    json: bool,
    /// The model directory (model.safetensors + config.json).
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// Task deadline budget after capture, milliseconds.
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true)]
    budget_ms: f64,
    /// Most obstacle tasks queued at once; publishes beyond fall back.
    #[arg(long, default_value_t = 256)]
    queue_capacity: usize,
    /// Drill: add this many milliseconds to every inference (a slower pipeline).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    inject_latency_ms: f64,
    /// Drill: a worker panics while processing the N-th task it takes.
    #[arg(long)]
    fault_worker_panic: Option<u64>,
    /// Drill: a sensor stream stops at a simulated second, e.g. camera@2 (the vehicle
    /// must fall back on what is left).
    #[arg(long, value_parser = parse_outage)]
    sensor_outage: Option<(vigil_vehicle::node::Stream, f64)>,
    /// Scheduling of the urgent path (sensors, fusion, tasks, workers) above telemetry.
    #[arg(long, value_enum, default_value_t = PriorityArg::Nice)]
    priority: PriorityArg,
    #[command(flatten)]
    spool: SpoolArgs,
    #[command(flatten)]
    live: crate::live::LiveArgs,
    /// Run over a Kafka-protocol broker (bootstrap servers, e.g. 127.0.0.1:9092) instead of
    /// the embedded log. Needs --amqp too.
    #[arg(long)]
    kafka: Option<String>,
    /// Run obstacle tasks through RabbitMQ (e.g. amqp://user:pass@127.0.0.1:5672/%2f).
    /// Needs --kafka too.
    #[arg(long)]
    amqp: Option<String>,
    /// Broker settings file (default: ./vigil.toml if present; see vigil.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Where telemetry waits while the log is slow or down (`vigil run`, `vigil vehicle`).
#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    /// Directory of the on-disk telemetry spool (default: $VIGIL_SPOOL_DIR, else
    /// vigil-spool in the temporary directory). Each run spools under its own folder and
    /// removes it once drained.
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Telemetry held in memory before it goes to disk, MB.
    #[arg(long, default_value_t = 256)]
    spool_memory_mb: u64,
    /// Telemetry held on disk before records are dropped (counted), MB.
    #[arg(long, default_value_t = 8192)]
    spool_disk_mb: u64,
}

impl SpoolArgs {
    pub fn config(&self) -> anyhow::Result<vigil_pipeline::SpoolConfig> {
        if self.spool_memory_mb == 0 || self.spool_memory_mb > 1 << 20 {
            bail!("--spool-memory-mb must be 1..=1048576, got {}", self.spool_memory_mb);
        }
        if self.spool_disk_mb > 1 << 30 {
            bail!("--spool-disk-mb must be at most 1073741824, got {}", self.spool_disk_mb);
        }
        let dir = self.spool_dir.clone().unwrap_or_else(vigil_pipeline::default_spool_dir);
        vigil_pipeline::check_spool_dir(&dir)
            .map_err(|e| anyhow::anyhow!("{e} (pass --spool-dir DIR, a directory this user can write)"))?;
        Ok(vigil_pipeline::SpoolConfig {
            memory_bytes: self.spool_memory_mb << 20,
            dir: Some(dir),
            disk_bytes: self.spool_disk_mb << 20,
        })
    }
}

pub fn config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let scenario = Scenario::load(&args.scenario)?;
    let mut cfg = RunConfig::new(scenario, args.seed, args.model.clone());
    if let Some(d) = args.duration {
        if !d.is_finite() || d <= 0.0 || d > 24.0 * 3600.0 {
            bail!("--duration must be a positive number of seconds up to 24 h, got {d}");
        }
        cfg.duration_ns = Some((d * 1e9).round() as i64);
    }
    if args.vehicles == 0 || args.vehicles > 64 {
        bail!("--vehicles must be between 1 and 64 for one process, got {}", args.vehicles);
    }
    if args.workers == 0 || args.workers > 256 {
        bail!("--workers must be between 1 and 256, got {}", args.workers);
    }
    if !args.budget_ms.is_finite() || args.budget_ms <= 0.0 {
        bail!("--budget-ms must be a positive number of milliseconds, got {}", args.budget_ms);
    }
    if !args.inject_latency_ms.is_finite() || args.inject_latency_ms < 0.0 {
        bail!("--inject-latency-ms must be zero or positive, got {}", args.inject_latency_ms);
    }
    if args.queue_capacity == 0 {
        bail!("--queue-capacity must be at least 1");
    }
    if args.perception == OnOff::On && !vigil_vision::model::model_exists(&args.model) {
        bail!(
            "no model at {} (expected config.json and model.safetensors there); pass --model DIR or train one with `vigil train`",
            args.model.display()
        );
    }
    cfg.vehicles = args.vehicles;
    cfg.workers = args.workers;
    cfg.batcher.serving = args.inference.serving();
    cfg.record = args.record.clone();
    cfg.record_options = args.recording.options();
    cfg.perception = args.perception == OnOff::On;
    cfg.fast = args.fast;
    cfg.task_budget_ns = (args.budget_ms * 1e6).round() as i64;
    cfg.queue_capacity = args.queue_capacity;
    cfg.inject_latency = Duration::from_secs_f64(args.inject_latency_ms * 1e-3);
    cfg.console = !args.json;
    cfg.priority = args.priority.mode();
    cfg.spool = args.spool.config()?;
    cfg.live = args.live.config();
    cfg.sensor_outage = args.sensor_outage.map(|(k, at)| (k, (at * 1e9).round() as i64));
    match (&args.kafka, &args.amqp) {
        (None, None) => {}
        (Some(k), Some(a)) => {
            let mut b = crate::config::load(args.config.as_deref(), std::env::vars())?;
            b.kafka.brokers = k.clone();
            b.amqp.url = Some(a.clone());
            b.amqp.queue_capacity = args.queue_capacity.min(u32::MAX as usize) as u32;
            cfg.brokers = Some(b);
        }
        _ => bail!("running over the brokers needs both --kafka BROKERS and --amqp URL"),
    }
    if let Some(n) = args.fault_worker_panic {
        cfg.faults.panic_on_take.store(n, Ordering::SeqCst);
    }
    Ok(cfg)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    let report = vigil_pipeline::run(cfg).context("vigil run failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    if report.lost > 0 {
        bail!("{} frames were produced but never ingested", report.lost);
    }
    Ok(())
}

fn print_summary(r: &RunReport) {
    let t = &r.tasks;
    let l = &r.latency_ms.detect_to_recommend;
    println!(
        "{} seed {} ({} pacing, perception {}): {:.1} s simulated in {:.1} s",
        r.scenario,
        r.seed,
        r.pacing,
        if r.perception { "on" } else { "off" },
        r.sim_seconds,
        r.wall_seconds
    );
    println!(
        "frames: lidar {}/{} camera {}/{} radar {}/{} (ingested/produced), lost {}",
        r.frames.lidar.ingested,
        r.frames.lidar.produced,
        r.frames.camera.ingested,
        r.frames.camera.produced,
        r.frames.radar.ingested,
        r.frames.radar.produced,
        r.lost
    );
    println!(
        "tasks: {} published, {} completed, {} fallback, {} expired, {} dead-lettered",
        t.published, t.completed, t.fallback, t.expired, t.dead_lettered
    );
    let actions: Vec<String> =
        r.recommendations.by_action.iter().filter(|(_, n)| **n > 0).map(|(a, n)| format!("{a} {n}")).collect();
    println!("recommendations: {} ({})", r.recommendations.count, actions.join(", "));
    println!("detect→recommend: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", l.p50, l.p99, l.max);
    println!(
        "outcome: {}, min gap {}, ego {}",
        if r.outcome.collision { "COLLISION" } else { "no collision" },
        r.outcome.min_gap_m.map_or("-".into(), |g| format!("{g:.1} m")),
        if r.outcome.ego_stopped { "stopped" } else { "moving" }
    );
}
