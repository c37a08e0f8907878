//! Benches of whole drives: soak, fleet, priority, replay.

use anyhow::bail;
use clap::Args;
use vigil_sim::Scenario;

#[derive(Debug, Args)]
pub(super) struct SoakBenchArgs {
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Tasks per measured window (the first warms up; the next third are the start, the
    /// last third the end).
    #[arg(long, default_value_t = 5_000)]
    window: u64,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: i64,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    #[arg(long, default_value = "pedestrian-crossing")]
    scenario: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Fail when resident memory keeps growing, by more than this fraction over the run
    /// (the smaller of the two steps between thirds, times three).
    #[arg(long, default_value_t = 0.10)]
    max_rss_growth: f64,
    /// Fail when detect→recommend p99 (median of each third's windows) keeps growing, by
    /// more than this fraction over the run.
    #[arg(long, default_value_t = 0.20)]
    max_p99_growth: f64,
    #[arg(long)]
    json: bool,
}

pub(super) fn soak(a: SoakBenchArgs) -> anyhow::Result<()> {
    if a.in_flight < 1 || a.in_flight > 256 || a.workers == 0 || a.workers > 64 {
        bail!("--in-flight must be 1..=256 and --workers 1..=64");
    }
    let cfg = vigil_bench::soak::SoakConfig {
        tasks: a.tasks,
        window: a.window,
        in_flight: a.in_flight,
        workers: a.workers,
        budget_ns: vigil_vehicle::node::DEFAULT_TASK_BUDGET_NS,
        model_dir: a.model.clone(),
        scenario: Scenario::load(&a.scenario)?,
        seed: a.seed,
        max_rss_growth: a.max_rss_growth,
        max_p99_growth: a.max_p99_growth,
    };
    let b = vigil_bench::soak::soak_bench(&cfg, |w| {
        eprintln!(
            "  {:>8} tasks  rss {:>7.1} MB  p50 {:>6.2} ms  p99 {:>6.2} ms  answered {} fallback {}",
            w.tasks, w.rss_mb, w.p50_ms, w.p99_ms, w.answered, w.fallback
        )
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&b)?);
    }
    let summary = format!(
        "{} tasks at {:.0}/s: RSS {:.1} -> {:.1} -> {:.1} MB, sustained growth {:+.1}% (bound {:.0}%), p99 {:.2} -> {:.2} -> {:.2} ms, sustained growth {:+.1}% (bound {:.0}%) (medians of thirds, {} windows each; sustained = 3 x the smaller step); every task ended answered or fallen back: {}",
        b.tasks,
        b.tasks_per_s,
        b.start_rss_mb,
        b.mid_rss_mb,
        b.end_rss_mb,
        b.rss_growth * 100.0,
        b.max_rss_growth * 100.0,
        b.start_p99_ms,
        b.mid_p99_ms,
        b.end_p99_ms,
        b.p99_growth * 100.0,
        b.max_p99_growth * 100.0,
        b.windows_per_side,
        b.balanced
    );
    if !b.pass {
        bail!("{summary}");
    }
    if !a.json {
        println!("{summary}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct FleetBenchArgs {
    #[arg(long, default_value = "urban-dense")]
    scenario: String,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    /// Simulated seconds of each drive (paced: also wall seconds).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
    vehicles: Vec<usize>,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    /// The row the gate reads (over the brokers when given, else embedded).
    #[arg(long, default_value_t = 4)]
    gate_vehicles: usize,
    /// Fail when the gate row answers fewer of its raised tasks inside their deadline, or
    /// when it lost a frame, fell behind the radar, or raised a threat late.
    #[arg(long, default_value_t = 0.99)]
    min_in_deadline: f64,
    #[command(flatten)]
    brokers: crate::process::BrokerArgs,
    /// Write the rows as a PNG bar chart here.
    #[arg(long)]
    png: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct PriorityBenchArgs {
    #[arg(long, default_value = "urban-dense")]
    scenario: String,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 4)]
    vehicles: usize,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    /// The priority setting under test.
    #[arg(long, value_enum, default_value_t = crate::run::PriorityArg::Nice)]
    priority: crate::run::PriorityArg,
    /// Fail when the run with priority beside the hog answers fewer of its raised tasks
    /// inside their deadline.
    #[arg(long, default_value_t = 0.95)]
    min_in_deadline: f64,
    #[arg(long)]
    png: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

fn fleet_config(
    scenario: &str,
    seed: u64,
    seconds: f64,
    vehicles: Vec<usize>,
    model: &std::path::Path,
    gate_vehicles: usize,
    min_in_deadline: f64,
) -> anyhow::Result<vigil_bench::fleet::FleetConfig> {
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 3600.0 {
        bail!("--seconds must be between 0 and 3600, got {seconds}");
    }
    if vehicles.is_empty() || vehicles.iter().any(|v| *v == 0 || *v > 64) {
        bail!("--vehicles must list counts between 1 and 64");
    }
    if !(0.0..=1.0).contains(&min_in_deadline) {
        bail!("--min-in-deadline is a fraction between 0 and 1, got {min_in_deadline}");
    }
    if !vigil_vision::model::model_exists(model) {
        bail!("no model at {} (pass --model DIR or train one with `vigil train`)", model.display());
    }
    Ok(vigil_bench::fleet::FleetConfig {
        scenario: Scenario::load(scenario)?,
        seed,
        seconds,
        vehicles,
        model_dir: model.to_path_buf(),
        brokers: None,
        gate_vehicles,
        min_in_deadline,
    })
}

fn print_fleet_row(r: &vigil_bench::fleet::FleetRow) {
    eprintln!(
        "  {:<8} {:>2} veh{:<9} {:>6} frames lost {:<3} fused {:>4}/{:<4} threats {:>3}/{:<3} tasks {:>4} in deadline {:>4} ({:>5.1}%) fallback {:>3} no-camera {:>3} expired {:>3}  p50 {:>5.1} p99 {:>6.1} ms  fusion lag p99 {:>5.1} ms  cpu {:.2} cores  {}",
        r.mode,
        r.vehicles,
        if r.hog { format!(" +hog {}", if r.priority == "unchanged" { "-" } else { "prio" }) } else { String::new() },
        r.frames_produced,
        r.frames_lost,
        r.fused,
        r.radar_produced,
        r.threats_raised,
        r.threats_seen,
        r.tasks_raised,
        r.answered_in_deadline,
        r.in_deadline_ratio * 100.0,
        r.fallback,
        r.no_camera,
        r.expired,
        r.detect_to_recommend_p50_ms,
        r.detect_to_recommend_p99_ms,
        r.fusion_lag_p99_ms,
        r.cpu_cores,
        if r.collisions > 0 { format!("{} collision(s)", r.collisions) } else { String::new() },
    );
}

fn finish_fleet(b: &vigil_bench::fleet::FleetBench, png: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
    if let Some(p) = png {
        vigil_bench::fleet::fleet_png(b, p)?;
    }
    if json {
        println!("{}", serde_json::to_string(b)?);
    }
    let Some(g) = b.gate_row() else { bail!("no {} row of {} vehicles to gate", b.gate_mode, b.gate_vehicles) };
    let summary = format!(
        "{} {} vehicles: {:.1}% of {} raised tasks answered in deadline (bound {:.1}%), frames lost {}, fused {}/{} radar scans, threats raised on time {}/{}",
        g.mode,
        g.vehicles,
        g.in_deadline_ratio * 100.0,
        g.tasks_raised,
        b.min_in_deadline * 100.0,
        g.frames_lost,
        g.fused,
        g.radar_produced,
        g.threats_raised,
        g.threats_seen
    );
    if !b.pass {
        bail!("{summary}: below the bound");
    }
    if !json {
        println!("{summary}: pass");
    }
    Ok(())
}

pub(super) fn fleet(a: FleetBenchArgs) -> anyhow::Result<()> {
    let mut cfg =
        fleet_config(&a.scenario, a.seed, a.seconds, a.vehicles, &a.model, a.gate_vehicles, a.min_in_deadline)?;
    if a.brokers.given() {
        cfg.brokers = Some(a.brokers.load()?);
    }
    eprintln!("{} seed {}, {} s paced per drive:", cfg.scenario.name, cfg.seed, cfg.seconds);
    let b = vigil_bench::fleet::fleet_bench(&cfg, print_fleet_row)?;
    finish_fleet(&b, a.png.as_deref(), a.json)
}

pub(super) fn priority(a: PriorityBenchArgs) -> anyhow::Result<()> {
    let cfg = fleet_config(&a.scenario, a.seed, a.seconds, vec![a.vehicles], &a.model, a.vehicles, a.min_in_deadline)?;
    eprintln!(
        "{} seed {}, {} vehicles, {} s paced: idle, then a busy loop on every core without and with priority:",
        cfg.scenario.name, cfg.seed, a.vehicles, cfg.seconds
    );
    let b = vigil_bench::fleet::priority_bench(&cfg, a.priority.mode(), print_fleet_row)?;
    finish_fleet(&b, a.png.as_deref(), a.json)
}

#[derive(Debug, Args)]
pub(super) struct ReplayBenchArgs {
    #[arg(long, default_value = "pedestrian-crossing")]
    scenario: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Simulated seconds of the drive.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    /// Fail when the best replay (from MCAP, and each --lengths row) runs at less than
    /// this multiple of real time.
    #[arg(long, default_value_t = 20.0)]
    min_speed_factor: f64,
    /// Drive over Kafka and RabbitMQ (topics and queues under a prefix of this run's
    /// own) and replay from Kafka, instead of recording to an MCAP file.
    #[arg(long)]
    over_brokers: bool,
    #[command(flatten)]
    brokers: crate::process::BrokerArgs,
    /// With --over-brokers, instead of three replays: read a window of this many seconds
    /// from the middle of the drive by its offsets and by reading the whole topics, and
    /// replay it; fails unless the same records come back, the located read reads at
    /// most twice the window's records and finishes first.
    #[arg(long, requires = "over_brokers")]
    window: Option<f64>,
    /// With --over-brokers: fail when the replay from Kafka runs at less than this
    /// fraction of a bare read of the drive's records on the same broker (--min-speed-
    /// factor is for MCAP).
    #[arg(long, default_value_t = 0.5)]
    min_bare_read_ratio: f64,
    /// Instead: record drives of these lengths (simulated seconds, e.g. 30,120,600) and
    /// replay each in a process of its own: file size, bytes per vehicle-second, peak RSS
    /// and speed per row, against the same drive in the uncompacted format.
    #[arg(long, value_delimiter = ',')]
    lengths: Vec<f64>,
    /// With --lengths: the longest replay's peak RSS over the shortest's at most this.
    #[arg(long, default_value_t = 1.2)]
    max_rss_ratio: f64,
    /// With --lengths: every replay's peak RSS under this many MB.
    #[arg(long, default_value_t = 500.0)]
    max_rss_mb: f64,
    /// With --lengths: bytes per vehicle-second at least this many times smaller than the
    /// uncompacted format's.
    #[arg(long, default_value_t = 3.0)]
    min_compaction: f64,
    /// With --lengths: also store every drive near-lossless (every camera sample within
    /// this many levels) and replay it: its size and what it changed (0: skip).
    #[arg(long, default_value_t = 5)]
    archival_near: u8,
    /// With --lengths: fail when a near-lossless row is less than this many times
    /// smaller than the uncompacted format.
    #[arg(long, default_value_t = 3.0)]
    min_archival_compaction: f64,
    /// With --lengths: fail when lossless camera storage takes more than this many times
    /// the bits a sample of the noise floor (the entropy of the sensor noise, measured
    /// against the same drive drawn without it).
    #[arg(long, default_value_t = 1.5)]
    max_floor_gap: f64,
    /// With --lengths: write the rows as a PNG here.
    #[arg(long)]
    png: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

fn print_length_row(r: &vigil_bench::lengths::LengthRow) {
    eprintln!(
        "  {:>5.0} s: {:>7.1} MB ({:.2} MB/vehicle-s), recorded in {:.1} s; replay {:.1}x real time, peak RSS {:.0} MB, digest {} live",
        r.duration_s,
        r.file_bytes as f64 / 1e6,
        r.bytes_per_vehicle_s / 1e6,
        r.record_wall_s,
        r.speed_factor,
        r.peak_rss_mb,
        if r.digests_equal { "equal to" } else { "DIFFERS from" }
    );
    if let Some(a) = &r.archival {
        eprintln!(
            "         near-lossless {}: {:.2} MB/vehicle-s ({:.2}x smaller), replay {:.1}x real time, {} recommendations changed, digest {} live; ground truth (labelled, correct, misses, false alarms) lossless {:?}, near-lossless {:?}",
            a.near,
            a.bytes_per_vehicle_s / 1e6,
            a.compaction,
            a.speed_factor,
            a.changed,
            if a.digest_equal { "equal to" } else { "DIFFERS from" },
            a.lossless_score,
            a.archival_score
        );
    }
}

fn lengths(a: &ReplayBenchArgs) -> anyhow::Result<()> {
    let cfg = vigil_bench::lengths::LengthsConfig {
        scenario: Scenario::load(&a.scenario)?,
        seed: a.seed,
        durations: a.lengths.clone(),
        model: a.model.clone(),
        vigil: std::env::current_exe()?,
        max_rss_ratio: a.max_rss_ratio,
        max_rss_mb: a.max_rss_mb,
        min_speed_factor: a.min_speed_factor,
        min_compaction: a.min_compaction,
        archival: (a.archival_near > 0).then_some(a.archival_near),
        min_archival_compaction: a.min_archival_compaction,
        max_floor_gap: a.max_floor_gap,
    };
    eprintln!(
        "recording {} seed {} for {:?} s, and the shortest in the uncompacted format:",
        a.scenario, a.seed, a.lengths
    );
    let b = vigil_bench::lengths::lengths_bench(&cfg, print_length_row)?;
    if let Some(p) = &a.png {
        vigil_bench::lengths::lengths_png(&b, p, &cfg)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&b)?);
    } else {
        println!(
            "baseline {:.2} MB/vehicle-s; stored {:.2}x smaller; peak RSS longest/shortest {:.2}x",
            b.baseline_bytes_per_vehicle_s / 1e6,
            b.compaction,
            b.rss_ratio
        );
        let c = &b.camera;
        println!(
            "camera (noise amplitude {:.2}, {} frames): stored at {:.2} bits a sample, the noise floor is {:.2} ({:.2}x); with the camera at the floor, any lossless storage would reach at best {:.2}x",
            c.noise_amplitude,
            c.frames,
            c.lossless_bits,
            c.floor_bits,
            c.lossless_bits / c.floor_bits,
            b.floor_compaction
        );
    }
    if !b.pass {
        bail!("{}", b.failures.join("; "));
    }
    Ok(())
}

pub(super) fn replay(a: ReplayBenchArgs) -> anyhow::Result<()> {
    if !a.lengths.is_empty() {
        return lengths(&a);
    }
    let cfg = vigil_bench::replay::ReplayBenchConfig {
        scenario: Scenario::load(&a.scenario)?,
        seed: a.seed,
        duration_s: a.duration,
        model: a.model.clone(),
        brokers: if a.over_brokers { Some(a.brokers.load()?) } else { None },
    };
    if let Some(w) = a.window {
        return window(&cfg, w, a.json);
    }
    let r = vigil_bench::replay::replay_bench(&cfg)?;
    if a.json {
        let mut j = serde_json::to_value(&r)?;
        j["min_speed_factor"] = a.min_speed_factor.into();
        println!("{j}");
    } else {
        let bare = match (r.bare_read_s, r.bare_read_speed_factor) {
            (Some(s), Some(x)) => format!("; a bare read of its records takes {s:.2} s, {x:.1}x real time"),
            _ => String::new(),
        };
        println!(
            "replay of {:.0} s of {} ({} frames, from {}): {:.1}x real time at --max (best of 3; opening the drive took {:.2} s more{bare}); digests equal: {}",
            r.sim_seconds,
            r.scenario,
            r.frames,
            if r.source == "kafka" { "Kafka" } else { "MCAP" },
            r.speed_factor,
            r.load_seconds,
            r.digests_equal
        );
    }
    if !r.digests_equal {
        bail!("three replays of one drive gave different recommendation digests: {:?}", r.digests);
    }
    match r.bare_read_speed_factor {
        // From Kafka the broker bounds a streaming replay: the gate is against a bare
        // read of the same records on the same broker.
        Some(bare) if r.speed_factor < a.min_bare_read_ratio * bare => bail!(
            "replay from Kafka ran at {:.1}x real time, below {:.2} of a bare read's {bare:.1}x",
            r.speed_factor,
            a.min_bare_read_ratio
        ),
        None if r.speed_factor < a.min_speed_factor => {
            bail!("replay ran at {:.1}x real time, below {:.1}x", r.speed_factor, a.min_speed_factor)
        }
        _ => Ok(()),
    }
}

fn window(cfg: &vigil_bench::replay::ReplayBenchConfig, window_s: f64, json: bool) -> anyhow::Result<()> {
    let w = vigil_bench::window::window_bench(cfg, window_s)?;
    if json {
        println!("{}", serde_json::to_string(&w)?);
    }
    print_window(&w);
    if w.window_records_read > 2 * w.records_in_window {
        bail!("the located read read {} records for a window of {}", w.window_records_read, w.records_in_window);
    }
    if w.window_read_s >= w.whole_read_s {
        bail!("the located read took {:.2} s, the whole-topic read {:.2} s", w.window_read_s, w.whole_read_s);
    }
    Ok(())
}

fn print_window(w: &vigil_bench::window::WindowBench) {
    eprintln!(
        "a {:.0} s window of the {:.0} s drive from Kafka: located read {} records ({} in the window, {:.2}x) in {:.2} s; \
         whole-topic read {} records in {:.2} s ({:.1}x slower); the window replayed at {:.1}x real time",
        w.window_seconds,
        w.drive_seconds,
        w.window_records_read,
        w.records_in_window,
        w.window_records_read as f64 / w.records_in_window.max(1) as f64,
        w.window_read_s,
        w.records_in_topics,
        w.whole_read_s,
        w.whole_read_s / w.window_read_s.max(1e-9),
        w.replay_speed_factor
    );
}
