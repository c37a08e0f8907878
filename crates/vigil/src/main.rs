//! The `vigil` command line. `main` only parses and reports; each subcommand is a
//! testable `run` function in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Candle allocates and frees large tensors constantly; mimalloc keeps that off the kernel.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod sim;
mod vision;

#[derive(Debug, Parser)]
#[command(name = "vigil", version, about = "Vigil: an actor-based perception event system for autonomous vehicles")]
struct Cli {
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
    /// Train the obstacle recogniser on simulator crops or a dataset directory.
    Train(vision::TrainArgs),
    /// Evaluate a model on freshly simulated crops (with a colour-only baseline).
    Eval(vision::EvalArgs),
    /// Benchmarks that compare against a baseline in the same run.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scenarios => sim::list_scenarios(),
        Command::Sim(args) => sim::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => vision::train(args),
        Command::Eval(args) => vision::eval(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
