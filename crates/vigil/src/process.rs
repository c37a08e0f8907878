//! `vigil vehicle` and `vigil worker`: the pipeline as separate processes over the real
//! brokers (see `vigil_pipeline::process`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use anyhow::{Context, bail};
use clap::Args;
use vigil_brokers::BrokerConfig;
use vigil_bus::ZenohConfig;
use vigil_pipeline::metrics::{Catalogue, VEHICLE, WORKER};
use vigil_pipeline::process::{VehicleProcess, WorkerProcess, run_vehicle, run_worker};
use vigil_sim::Scenario;

/// Broker settings: file, then environment, then these flags.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers (default: [kafka] brokers of the config, or VIGIL_KAFKA_BROKERS).
    #[arg(long)]
    kafka: Option<String>,
    /// RabbitMQ URL (default: [amqp] url of the config, or VIGIL_AMQP_URL). It shows in
    /// the process list: prefer --amqp-url-file or the environment for a password.
    #[arg(long)]
    amqp: Option<String>,
    /// A file holding the RabbitMQ URL ([amqp] url_file, VIGIL_AMQP_URL_FILE).
    #[arg(long, conflicts_with = "amqp")]
    amqp_url_file: Option<PathBuf>,
    /// Broker settings file (default: ./vigil.toml if present; see vigil.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl BrokerArgs {
    /// Whether any broker was named on the command line.
    pub(crate) fn given(&self) -> bool {
        self.kafka.is_some() || self.amqp.is_some() || self.amqp_url_file.is_some() || self.config.is_some()
    }

    pub(crate) fn load(&self) -> anyhow::Result<BrokerConfig> {
        let mut b = crate::config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(k) = &self.kafka {
            b.kafka.brokers = k.clone();
        }
        if let Some(a) = &self.amqp {
            b.amqp.url = Some(a.clone());
        }
        if let Some(f) = &self.amqp_url_file {
            b.amqp.url = None;
            b.amqp.url_file = Some(f.clone());
        }
        Ok(b)
    }
}

fn idle(seconds: Option<f64>, flag: &str) -> anyhow::Result<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("{flag} must be a positive number of seconds, got {s}"),
    }
}

/// The Prometheus endpoint of a process serving `catalogue`, when asked for.
fn metrics(addr: Option<&str>, catalogue: &Catalogue) -> anyhow::Result<Option<Metrics>> {
    let Some(addr) = addr else { return Ok(None) };
    let m = Metrics::install(&[catalogue])?;
    let bound = crate::metrics::serve(addr, m.clone())?;
    eprintln!("Prometheus metrics at http://{bound}/metrics");
    Ok(Some(m))
}

/// A flag set on SIGINT or SIGTERM, so the process stops cleanly and reports.
pub(crate) fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("signal runtime")?;
    let flag = stop.clone();
    std::thread::Builder::new().name("vigil-signals".into()).spawn(move || {
        rt.block_on(async move {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        })
    })?;
    Ok(stop)
}

#[derive(Debug, Args)]
pub struct VehicleArgs {
    /// The scenario the vehicles drive (their road map; vehicle ids veh-0000…).
    #[arg(long)]
    scenario: String,
    /// Vehicle nodes in this process: veh-0000 … veh-(K-1).
    #[arg(long, default_value_t = 1)]
    vehicles: usize,
    /// Task deadline budget after capture, milliseconds.
    #[arg(long, default_value_t = 100.0, allow_negative_numbers = true)]
    budget_ms: f64,
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
    /// Stop after this many seconds without a frame (once frames have come) and with no
    /// task outstanding. Default: run until SIGINT/SIGTERM.
    #[arg(long, allow_negative_numbers = true)]
    idle_exit: Option<f64>,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Serve the live counters in Prometheus text format at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Scheduling of the urgent path (fusion, tasks, replies) above telemetry.
    #[arg(long, value_enum, default_value_t = crate::run::PriorityArg::Nice)]
    priority: crate::run::PriorityArg,
    #[command(flatten)]
    spool: crate::run::SpoolArgs,
    #[command(flatten)]
    live: crate::live::LiveArgs,
    /// Print one JSON report when stopping.
    #[arg(long)]
    json: bool,
}

pub fn vehicle(args: VehicleArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    if args.vehicles == 0 || args.vehicles > 64 {
        bail!("--vehicles must be between 1 and 64 for one process, got {}", args.vehicles);
    }
    if !args.budget_ms.is_finite() || args.budget_ms <= 0.0 {
        bail!("--budget-ms must be a positive number of milliseconds, got {}", args.budget_ms);
    }
    let cfg = VehicleProcess {
        scenario,
        vehicles: args.vehicles,
        brokers: args.brokers.load()?,
        zenoh: ZenohConfig {
            listen: args.listen.clone(),
            connect: args.connect.clone(),
            config_file: args.zenoh_config.clone(),
            ..ZenohConfig::default()
        },
        task_budget_ns: (args.budget_ms * 1e6).round() as i64,
        perception: true,
        idle_exit: idle(args.idle_exit, "--idle-exit")?,
        stop: stop_on_signal()?,
        metrics: metrics(args.metrics_addr.as_deref(), &VEHICLE)?,
        priority: args.priority.mode(),
        spool: args.spool.config()?,
        live: args.live.config(),
    };
    let r = run_vehicle(cfg).context("vigil vehicle failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let t = &r.tasks;
        println!(
            "{} vehicle(s): frames {:?}, gaps {}; tasks {} published, {} completed, {} fallback, {} refused; controls sent {}; detect→recommend p50 {:.2} ms p99 {:.2} ms",
            r.vehicles.len(),
            r.frames,
            r.gaps,
            t.published,
            t.completed,
            t.fallback,
            t.refused,
            r.controls_sent,
            r.latency_ms.p50,
            r.latency_ms.p99
        );
    }
    if r.tasks.outstanding > 0 {
        bail!("{} tasks were still unresolved when the vehicle stopped", r.tasks.outstanding);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The model directory (model.safetensors + config.json).
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// Worker actors in this process (each takes one task at a time).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Where the forward passes run: inline (each worker on its own thread; the CPU
    /// default), batched (one batching thread for all workers; the GPU default).
    #[arg(long, value_enum, default_value_t = crate::run::InferenceArg::Auto)]
    inference: crate::run::InferenceArg,
    /// Drill: add this many milliseconds to every inference (a slow worker).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    inject_latency_ms: f64,
    /// Stop after this many seconds without taking a task (and none in hand).
    /// Default: run until SIGINT/SIGTERM.
    #[arg(long, allow_negative_numbers = true)]
    idle_exit: Option<f64>,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Serve the live counters in Prometheus text format at http://ADDR/metrics.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Print one JSON report when stopping.
    #[arg(long)]
    json: bool,
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.workers > 256 {
        bail!("--workers must be between 1 and 256, got {}", args.workers);
    }
    if !args.inject_latency_ms.is_finite() || args.inject_latency_ms < 0.0 {
        bail!("--inject-latency-ms must be zero or positive, got {}", args.inject_latency_ms);
    }
    if !vigil_vision::model::model_exists(&args.model) {
        bail!(
            "no model at {} (expected config.json and model.safetensors there); pass --model DIR or train one with `vigil train`",
            args.model.display()
        );
    }
    let cfg = WorkerProcess {
        model_dir: args.model.clone(),
        workers: args.workers,
        brokers: args.brokers.load()?,
        batcher: vigil_vision::batcher::BatcherConfig {
            serving: args.inference.serving(),
            ..vigil_pipeline::default_batcher()
        },
        inject_latency: Duration::from_secs_f64(args.inject_latency_ms * 1e-3),
        idle_exit: idle(args.idle_exit, "--idle-exit")?,
        stop: stop_on_signal()?,
        metrics: metrics(args.metrics_addr.as_deref(), &WORKER)?,
    };
    let r = run_worker(cfg).context("vigil worker failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} worker(s): taken {} (redelivered {}), answered {}, expired {}, rejected {}, duplicates {}, panics {}",
            r.workers, r.taken, r.redelivered, r.answered, r.expired, r.rejected, r.duplicates, r.panics
        );
    }
    Ok(())
}
