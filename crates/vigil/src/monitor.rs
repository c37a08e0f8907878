//! `vigil monitor`: the consumer-group service over Vigil's Kafka topics (see
//! `vigil_brokers::monitor`), printing what it sees and serving it to Prometheus.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use vigil_brokers::monitor::{ClassReference, Monitor, MonitorConfig, MonitorSnapshot};

use crate::capture::Capture;
use crate::metrics::{Metrics, serve};
use crate::process::{BrokerArgs, stop_on_signal};
use vigil_core::Nanos;
use vigil_core::policy::Action;
use vigil_pipeline::metrics::MONITOR;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Consumer group: monitors in one group share the partitions; a restarted monitor
    /// resumes from the group's committed offsets.
    #[arg(long, default_value = "vigil-monitor")]
    group: String,
    /// A new group starts at the beginning of the topics (default: at their end).
    #[arg(long)]
    from_beginning: bool,
    /// The model whose training class mix the drift signal compares against.
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// Seconds between reports.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop as soon as the group has read everything there is (lag 0), for scripts.
    #[arg(long)]
    until_caught_up: bool,
    /// Serve the figures in Prometheus text format at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// One JSON object per report on stdout.
    #[arg(long)]
    json: bool,
    /// Keep the seconds around every recommendation with one of these actions
    /// (comma-separated: BRAKE_HARD,BRAKE,…) as an MCAP file of its own in --out.
    #[arg(long, value_delimiter = ',', value_parser = parse_action)]
    capture_on: Vec<Action>,
    /// How much of the drive before a trigger to keep.
    #[arg(long, default_value = "20s", value_parser = parse_span)]
    before: Nanos,
    /// How much after it.
    #[arg(long, default_value = "10s", value_parser = parse_span)]
    after: Nanos,
    /// Where the captured windows go, with their `index.json`.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::ALL.iter().copied().find(|a| a.name().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        format!("`{s}` is not an action; one of {}", names.join(", "))
    })
}

fn parse_span(s: &str) -> Result<Nanos, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration (e.g. 20s): {e}"))?;
    Ok(d.as_nanos().min(i64::MAX as u128) as Nanos)
}

/// The class mix the model was trained on, from its config.json (Vigil trains on
/// balanced classes; a `training.class_shares` object, when present, says otherwise).
fn reference(model: &std::path::Path) -> anyhow::Result<ClassReference> {
    let path = model.join("config.json");
    let text = vigil_vision::model::config_text(model)
        .with_context(|| format!("cannot read {} (the drift reference; pass --model DIR)", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let classes: Vec<String> = v["classes"]
        .as_array()
        .with_context(|| format!("{}: no `classes` list", path.display()))?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let name = format!("{} v{}", v["name"].as_str().unwrap_or("model"), v["version"].as_str().unwrap_or("?"));
    if let Some(shares) = v["training"]["class_shares"].as_object() {
        let shares = shares.iter().filter_map(|(k, s)| s.as_f64().map(|s| (k.clone(), s))).collect();
        return Ok(ClassReference { source: format!("{name} training data"), shares });
    }
    Ok(ClassReference::balanced(format!("{name} training data (balanced classes)"), &classes))
}

fn print_human(s: &MonitorSnapshot) {
    println!("== vigil monitor (group {}) lag {}", s.group, s.total_lag);
    for (v, streams) in &s.vehicles {
        let parts: Vec<String> = streams
            .iter()
            .map(|(st, x)| format!("{st} {} ({:.1} Hz, {:.1} MB)", x.count, x.rate_hz, x.bytes as f64 / 1e6))
            .collect();
        println!("  {v}: {}", parts.join(", "));
    }
    let (i, e) = (&s.ingest_latency_ms, &s.end_to_end_latency_ms);
    println!("  ingest latency ms      p50 {:.2} p99 {:.2} ({} samples)", i.p50, i.p99, i.samples);
    println!(
        "  end-to-end latency ms  p50 {:.2} p99 {:.2} ({} tasks answered of {})",
        e.p50, e.p99, e.samples, s.tasks_seen
    );
    let mix: Vec<String> = s.by_action.iter().filter(|(_, n)| **n > 0).map(|(a, n)| format!("{a} {n}")).collect();
    println!("  recommendations {}: {}", s.recommendations, mix.join(", "));
    if let Some(d) = &s.drift {
        println!(
            "  drift vs {}: class TVD {:.2}, mean confidence {:.2}, low-confidence share {:.2}",
            d.reference, d.class_tvd, d.mean_confidence, d.low_confidence_share
        );
    }
    if s.decode_errors > 0 {
        println!("  records that did not decode: {}", s.decode_errors);
    }
}

pub fn run(args: MonitorArgs) -> anyhow::Result<()> {
    if !args.interval.is_finite() || args.interval <= 0.0 {
        bail!("--interval must be a positive number of seconds, got {}", args.interval);
    }
    let limit = match args.duration {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
        Some(d) => bail!("--duration must be a positive number of seconds, got {d}"),
    };
    if args.until_caught_up && limit.is_none() {
        bail!("--until-caught-up needs --duration S as a bound (the topics may never be quiet)");
    }
    let b = args.brokers.load()?;
    let reference = reference(&args.model)?;
    let cfg = MonitorConfig {
        group: args.group.clone(),
        from_beginning: args.from_beginning,
        reference: Some(reference),
        capture_on: args.capture_on.clone(),
    };
    let mut capture = match (&args.out, args.capture_on.is_empty()) {
        (Some(out), false) => Some(Capture::new(b.clone(), args.before, args.after, out)?),
        (None, false) => bail!("--capture-on needs --out DIR for the captured windows"),
        (Some(_), true) => bail!("--out is where --capture-on keeps its windows; give --capture-on too"),
        (None, true) => None,
    };
    let mut monitor = Monitor::connect(&b.kafka, cfg)?;
    if let Some(addr) = &args.metrics_addr {
        let bound = serve(addr, Metrics::install(&[&MONITOR])?)?;
        eprintln!("vigil monitor: Prometheus metrics at http://{bound}/metrics");
    }
    let stop = stop_on_signal()?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(args.interval);
    let mut next_report = started + interval;
    let report = |s: &MonitorSnapshot| -> anyhow::Result<()> {
        if args.json {
            println!("{}", serde_json::to_string(s)?);
        } else {
            print_human(s);
        }
        Ok(())
    };
    loop {
        let read = monitor.poll(Duration::from_millis(500))?;
        let lag = monitor.refresh_lag()?;
        if args.metrics_addr.is_some() {
            MONITOR.publish(&monitor.snapshot());
        }
        let done = stop.load(Ordering::SeqCst)
            || limit.is_some_and(|l| started.elapsed() >= l)
            || (args.until_caught_up && monitor.assigned() && lag == 0 && read == 0);
        if let Some(c) = capture.as_mut() {
            monitor.take_triggers().into_iter().for_each(|t| c.offer(t));
            c.cut_due(&monitor, done)?;
        }
        if done {
            break;
        }
        if Instant::now() >= next_report {
            report(&monitor.snapshot())?;
            next_report += interval;
        }
    }
    let last = monitor.snapshot();
    report(&last)?;
    if let (Some(c), Some(out)) = (&capture, &args.out) {
        eprintln!("vigil monitor: {} window(s) kept, listed in {}", c.kept().len(), out.join("index.json").display());
    }
    if args.until_caught_up && last.total_lag > 0 {
        bail!("the monitor did not catch up within --duration: {} records behind", last.total_lag);
    }
    Ok(())
}
