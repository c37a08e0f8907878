//! `vigil bench`: measured speed, as ratios against a baseline in the same run.

mod brokers;
mod drives;
mod live;
mod pipeline;

use clap::{Args, Subcommand};

use brokers::{AmqpBenchArgs, IngestBenchArgs, KafkaBenchArgs, WorkersBenchArgs, amqp, ingest, kafka, workers};
use drives::{FleetBenchArgs, PriorityBenchArgs, ReplayBenchArgs, SoakBenchArgs, fleet, priority, replay, soak};
use live::{LiveBenchArgs, live_view};
use pipeline::{PipelineBenchArgs, SimBench, pipeline, sim};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Simulator speed with the full default sensor suite, for 1, 4 and 16 vehicles.
    /// Real time is the baseline: realtime_factor = simulated seconds / wall seconds.
    Sim(SimBench),
    /// Recogniser throughput and latency per batch size (batch 1 is the baseline).
    Vision(crate::vision::VisionBenchArgs),
    /// Detect→recommend latency of the whole pipeline against the bare cost of its
    /// parts (fetch+crop, one inference, one queue hop), back to back and paced at the
    /// pipeline's task rate, measured in the same run.
    Pipeline(PipelineBenchArgs),
    /// Task round trip through RabbitMQ (Vigil's transport, transient and persistent)
    /// against a bare lapin request/reply of the same size.
    Amqp(AmqpBenchArgs),
    /// Log ingest into Kafka through Vigil's log against a bare rdkafka producer
    /// sending the same bytes to the same broker.
    Kafka(KafkaBenchArgs),
    /// Telemetry ingest into Kafka through the vehicle actors against a bare rdkafka
    /// producer sending the same envelopes, for 1, 2 and 4 vehicles.
    Ingest(IngestBenchArgs),
    /// Task throughput with 1 and 2 vision workers competing on RabbitMQ, against the
    /// same tasks' work done in one bare loop (no broker, no actors).
    Workers(WorkersBenchArgs),
    /// Replay speed: a drive recorded by `vigil run --fast --record` (or driven over the
    /// brokers, `--over-brokers`, and read back from Kafka), replayed at --max through the
    /// actors and workers three times, against real time (the baseline of a drive).
    Replay(ReplayBenchArgs),
    /// Paced drives of 1, 2, 4 and 8 vehicles at once, embedded and (with --kafka and
    /// --amqp) over the brokers in the same invocation: frames lost, fusion's pace,
    /// threats raised on time, tasks answered in deadline, latency and CPU per row.
    Fleet(FleetBenchArgs),
    /// The embedded drive beside a busy loop on every core, with and without the urgent
    /// plane's scheduling priority, and idle as the baseline.
    Priority(PriorityBenchArgs),
    /// Many tasks through one vehicle node's urgent path (dispatcher, queue, workers,
    /// handler): resident memory and latency p99 at the end against the start.
    Soak(SoakBenchArgs),
    /// Paced drives without the Foxglove live view, with a client reading it, and with
    /// a client that stalls: detect→recommend p99 of each (the stalled one gated against
    /// the drive without a view).
    LiveView(LiveBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Sim(a) => sim(a),
        BenchWhat::Vision(a) => crate::vision::bench(a),
        BenchWhat::Pipeline(a) => pipeline(a),
        BenchWhat::Amqp(a) => amqp(a),
        BenchWhat::Kafka(a) => kafka(a),
        BenchWhat::Ingest(a) => ingest(a),
        BenchWhat::Workers(a) => workers(a),
        BenchWhat::Replay(a) => replay(a),
        BenchWhat::Fleet(a) => fleet(a),
        BenchWhat::Priority(a) => priority(a),
        BenchWhat::Soak(a) => soak(a),
        BenchWhat::LiveView(a) => live_view(a),
    }
}
