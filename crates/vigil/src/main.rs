//! The `vigil` command line. `main` only parses and reports; each subcommand is a
//! testable `run` function in its own module.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Candle allocates and frees large tensors constantly; mimalloc keeps that off the kernel.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod capture;
mod config;
mod defaults;
mod doctor;
mod frames;
mod live;
mod metrics;
mod monitor;
mod process;
mod recording;
mod replay;
mod run;
mod safety;
mod sim;
mod vision;

#[derive(Debug, Parser)]
#[command(name = "vigil", version, about = "Vigil: an actor-based perception event system for autonomous vehicles")]
struct Cli {
    /// The settings profile of vigil.toml to apply ([profile.<name>]; or VIGIL_PROFILE).
    #[arg(long, global = true)]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in scenarios.
    Scenarios,
    /// Run the sensor simulator: as fast as possible (a benchmark), or paced to real
    /// time and published on the zenoh sensor bus with --publish.
    Sim(sim::SimArgs),
    /// Run the perception pipeline end to end: simulator, vehicle actors, vision
    /// workers and the closed loop, on the embedded transports.
    Run(Box<run::RunArgs>),
    /// Run vehicle nodes as their own process: sensors from zenoh, telemetry to Kafka,
    /// obstacle tasks to RabbitMQ, commands back on zenoh (`vigil/<vehicle>/control`).
    Vehicle(Box<process::VehicleArgs>),
    /// Run vision workers as their own process: tasks from RabbitMQ (any number of
    /// workers compete), frames from the frame store, replies to each vehicle.
    Worker(Box<process::WorkerArgs>),
    /// Watch the Kafka topics as a consumer group: per-vehicle rates, latency, lag,
    /// the recommendation mix and model drift; Prometheus metrics with --metrics-addr.
    Monitor(Box<monitor::MonitorArgs>),
    /// Replay a recorded drive (Kafka window or MCAP file) through the vehicle actors
    /// and workers, deterministically; compare its recommendations with the recorded ones.
    Replay(Box<replay::ReplayArgs>),
    /// Export a window of a drive from Kafka to a recording (MCAP, compressed, split on
    /// request), frames inlined; or write a recording again (compress, split, re-encode).
    Record(Box<replay::RecordArgs>),
    /// List the drives in Kafka: drive (run) id, vehicle, capture times, messages per stream.
    Drives(Box<replay::DrivesArgs>),
    /// The claim-check frame store: `gc` removes frames past Kafka's retention.
    Frames(frames::FramesArgs),
    /// Train the obstacle recogniser on simulator crops or a dataset directory.
    Train(vision::TrainArgs),
    /// Evaluate a model on freshly simulated crops (with a colour-only baseline).
    Eval(vision::EvalArgs),
    /// Benchmarks that compare against a baseline in the same run.
    Bench(bench::BenchArgs),
    /// The safety matrix: NCAP-style braking cells over seeds, perception on and off,
    /// scored, gated and drawn.
    Safety(Box<safety::SafetyArgs>),
    /// Check the config, the brokers, the frame store, the model, the device and the
    /// clock before a real start; each problem with how to fix it (non-zero exit).
    Doctor(Box<doctor::DoctorArgs>),
    /// The settings: `show` prints what applies (vigil.toml, its profile, VIGIL_*
    /// variables), secrets redacted.
    Config(defaults::ConfigArgs),
}

/// Gives each Candle forward pass one thread, unless the user chose (RAYON_NUM_THREADS):
/// Candle's default pools spin threads between batches, and one crop per thread is the
/// cheapest per crop (`vigil bench vision`). Vigil scales out with workers, not within a pass.
/// Training is the exception: one process, large batches, nothing else to run, so it
/// keeps Candle's default (all cores).
#[allow(unsafe_code)]
fn size_thread_pools(command: &Command) {
    if !matches!(command, Command::Train(_)) && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: this runs first in `main`, right after argument parsing and before any
        // other thread exists, so nothing reads or writes the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

/// Parses the command line with the defaults vigil.toml gives each command's flags.
fn parse() -> anyhow::Result<Cli> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (config, profile) = defaults::prescan(&argv);
    if let Some(p) = &profile {
        set_profile(p);
    }
    let cmd = config::effective(config.as_deref(), std::env::vars())
        .and_then(|settings| defaults::apply(Cli::command(), &settings));
    // Help is printed whatever the settings file holds (or whether it exists yet).
    let asks_help =
        argv.iter().skip(1).any(|a| ["-h", "--help", "-V", "--version", "help"].contains(&&*a.to_string_lossy()));
    let cmd = match cmd {
        Ok(c) => c,
        Err(_) if asks_help => Cli::command(),
        Err(e) => return Err(e),
    };
    let matches = cmd.get_matches_from(argv);
    Ok(Cli::from_arg_matches(&matches)?)
}

/// `--profile` for every reader of the settings in this process.
#[allow(unsafe_code)]
fn set_profile(p: &str) {
    // SAFETY: this runs first in `main`, before any other thread exists.
    unsafe { std::env::set_var("VIGIL_PROFILE", p) };
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    size_thread_pools(&cli.command);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let result = match cli.command {
        Command::Scenarios => sim::list_scenarios(),
        Command::Sim(args) => sim::run(args),
        Command::Run(args) => run::run(*args),
        Command::Vehicle(args) => process::vehicle(*args),
        Command::Worker(args) => process::worker(*args),
        Command::Monitor(args) => monitor::run(*args),
        Command::Replay(args) => replay::run(*args),
        Command::Record(args) => replay::record(*args),
        Command::Drives(args) => replay::drives(*args),
        Command::Frames(args) => frames::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Safety(args) => safety::run(*args),
        Command::Train(args) => vision::train(args),
        Command::Eval(args) => vision::eval(args),
        Command::Doctor(args) => doctor::run(*args),
        Command::Config(args) => defaults::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: a library error that shows its source in its
/// own message (`transport: {0}`) would otherwise print that source twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_printed_once() {
        let inner = "creating topics on 127.0.0.1:9: OperationTimedOut";
        let e = anyhow::Error::msg(inner).context(format!("transport: {inner}")).context("vigil run failed");
        assert_eq!(
            super::error_chain(&e),
            "vigil run failed: transport: creating topics on 127.0.0.1:9: OperationTimedOut"
        );
    }
}
