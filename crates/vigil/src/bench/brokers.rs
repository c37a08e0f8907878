//! Benches against bare broker clients: workers, ingest, amqp, kafka.

use anyhow::bail;
use clap::Args;
use vigil_sim::Scenario;

#[derive(Debug, Args)]
pub(super) struct WorkersBenchArgs {
    /// RabbitMQ URL (else [amqp] url in vigil.toml or VIGIL_AMQP_URL).
    #[arg(long)]
    amqp: Option<String>,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    #[arg(long, default_value = "pedestrian-crossing")]
    scenario: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Tasks per round.
    #[arg(long, default_value_t = 300)]
    tasks: usize,
    /// Fail when 2 workers reach less than this multiple of 1 worker's tasks/s.
    #[arg(long, default_value_t = 1.0)]
    min_scaling: f64,
    #[arg(long)]
    json: bool,
}

pub(super) fn workers(a: WorkersBenchArgs) -> anyhow::Result<()> {
    let mut b = crate::config::load(None, std::env::vars())?;
    if a.amqp.is_some() {
        b.amqp.url = a.amqp.clone();
    }
    if a.tasks == 0 || a.tasks > 100_000 {
        bail!("--tasks must be between 1 and 100000, got {}", a.tasks);
    }
    let scenario = Scenario::load(&a.scenario)?;
    let r =
        vigil_bench::workers::workers_bench(&b.amqp, &b.frames, &a.model, &scenario, a.seed, a.tasks, a.min_scaling)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("obstacle tasks through RabbitMQ to vision workers, {} tasks per round (best of 2):", r.tasks);
        println!("  bare loop (no broker, no actors)  {:>7.0} tasks/s", r.bare_tasks_per_s);
        for x in &r.rows {
            println!(
                "  {} worker(s)                       {:>7.0} tasks/s  {:.2} of bare",
                x.workers, x.tasks_per_s, x.vs_bare
            );
        }
        println!("2 workers / 1 worker: {:.2}x", r.scaling_2_over_1);
    }
    if !r.pass {
        bail!("2 workers reached {:.2}x the throughput of 1, below {:.2}x", r.scaling_2_over_1, r.min_scaling);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct IngestBenchArgs {
    /// Bootstrap servers (else [kafka] brokers in vigil.toml or VIGIL_KAFKA_BROKERS).
    #[arg(long)]
    kafka: Option<String>,
    #[arg(long, default_value = "urban-dense")]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds of telemetry per round, shared among the vehicles (each of
    /// k vehicles drives seconds/k), so every vehicle count moves the same bytes.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
    vehicles: Vec<usize>,
    /// Rounds per vehicle count: both sides back to back, taking turns to go first;
    /// the ratio is the median of the rounds' ratios.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Fail when Vigil's messages/s fall below this fraction of the bare producer's.
    #[arg(long, default_value_t = 0.9)]
    min_ratio: f64,
    #[arg(long)]
    json: bool,
}

pub(super) fn ingest(a: IngestBenchArgs) -> anyhow::Result<()> {
    let mut b = crate::config::load(None, std::env::vars())?;
    if let Some(k) = &a.kafka {
        b.kafka.brokers = k.clone();
    }
    if !a.seconds.is_finite() || a.seconds <= 0.0 || a.seconds > 600.0 {
        bail!("--seconds must be between 0 and 600, got {}", a.seconds);
    }
    if a.vehicles.is_empty() || a.vehicles.iter().any(|v| *v == 0 || *v > 64) {
        bail!("--vehicles must list counts between 1 and 64");
    }
    let scenario = Scenario::load(&a.scenario)?;
    if a.rounds == 0 || a.rounds > 50 {
        bail!("--rounds must be between 1 and 50, got {}", a.rounds);
    }
    let r =
        vigil_bench::ingest::ingest_bench(&b.kafka, &scenario, a.seed, a.seconds, &a.vehicles, a.rounds, a.min_ratio)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "telemetry ingest into Kafka, {} ({} s of telemetry per round shared among the vehicles; lidar, radar, ground truth; warm producers; median of {} rounds):",
            r.scenario, r.sim_seconds, r.rounds
        );
        println!("  vehicles  messages      MB   bare msg/s  bare MB/s  vigil msg/s  vigil MB/s  ratio  best/best");
        for x in &r.rows {
            println!(
                "  {:>8} {:>9} {:>7.1} {:>12.0} {:>10.1} {:>12.0} {:>11.1} {:>6.2} {:>10.2}",
                x.vehicles,
                x.messages,
                x.bytes as f64 / 1e6,
                x.bare_msgs_per_s,
                x.bare_mb_per_s,
                x.vigil_msgs_per_s,
                x.vigil_mb_per_s,
                x.ratio,
                x.ratio_of_best
            );
        }
        let span = |rounds: &mut dyn Iterator<Item = f64>| {
            rounds.fold((f64::INFINITY, 0.0f64), |(lo, hi), w| (lo.min(w), hi.max(w)))
        };
        let (b0, b1) = span(&mut r.rows.iter().flat_map(|x| x.bare_rounds.iter().map(|w| w.warmup_s)));
        let (v0, v1) = span(&mut r.rows.iter().flat_map(|x| x.vigil_rounds.iter().map(|w| w.warmup_s)));
        println!(
            "  untimed warm-up (producer id, then the first envelope of each stream): bare {b0:.2}-{b1:.2} s, vigil {v0:.2}-{v1:.2} s"
        );
        for x in &r.rows {
            if let (Some(b), Some(v)) = (x.bare_cpu_s, x.vigil_cpu_s) {
                println!(
                    "  {} vehicle(s): CPU in this process per round (median) bare {:.2} s, vigil {:.2} s ({:.0} vs {:.0} us per message)",
                    x.vehicles,
                    b,
                    v,
                    b * 1e6 / x.messages as f64,
                    v * 1e6 / x.messages as f64
                );
            }
        }
        println!("  ratio, every round of every row (gated): {:.2} (min {:.2})", r.ratio, r.min_ratio);
    }
    if !r.pass {
        bail!("ingest through the vehicle actors ran at {:.2} of the bare producer, below {:.2}", r.ratio, r.min_ratio);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct AmqpBenchArgs {
    /// RabbitMQ URL (else [amqp] url in vigil.toml or VIGIL_AMQP_URL).
    #[arg(long)]
    amqp: Option<String>,
    /// Round trips of each kind.
    #[arg(long, default_value_t = 400)]
    n: usize,
    /// Task payload size (an encoded ObstacleTask is ~300 B).
    #[arg(long, default_value_t = 512)]
    bytes: usize,
    /// Fail when Vigil's p50 exceeds the bare p50 by more than this fraction.
    #[arg(long, default_value_t = 0.30)]
    max_overhead: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct KafkaBenchArgs {
    /// Bootstrap servers (else [kafka] brokers in vigil.toml or VIGIL_KAFKA_BROKERS).
    #[arg(long)]
    kafka: Option<String>,
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Fail when Vigil's messages/s fall below this fraction of the bare producer's.
    #[arg(long, default_value_t = 0.9)]
    min_ratio: f64,
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

pub(super) fn amqp(a: AmqpBenchArgs) -> anyhow::Result<()> {
    let mut b = crate::config::load(None, std::env::vars())?;
    if a.amqp.is_some() {
        b.amqp.url = a.amqp.clone();
    }
    if a.n < 8 {
        bail!("--n must be at least 8");
    }
    let r = runtime()?.block_on(vigil_brokers::bench::amqp_bench(&b.amqp, a.bytes, a.n))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("task round trip, {} B, {} samples each (ms):", r.payload_bytes, r.bare.samples);
        println!("  bare lapin request/reply   p50 {:.3}  p99 {:.3}", r.bare.p50, r.bare.p99);
        println!("  vigil, transient tasks     p50 {:.3}  p99 {:.3}", r.vigil_transient.p50, r.vigil_transient.p99);
        println!("  vigil, persistent tasks    p50 {:.3}  p99 {:.3}", r.vigil_persistent.p50, r.vigil_persistent.p99);
        println!(
            "overhead vs bare: p50 {:+.0}%, p99 {:+.0}%; persistence costs {:+.0}% at p50",
            r.overhead_p50 * 100.0,
            r.overhead_p99 * 100.0,
            r.persistence_cost_p50 * 100.0
        );
    }
    if r.overhead_p50 > a.max_overhead {
        bail!("task round trip overhead {:.0}% exceeds {:.0}%", r.overhead_p50 * 100.0, a.max_overhead * 100.0);
    }
    Ok(())
}

pub(super) fn kafka(a: KafkaBenchArgs) -> anyhow::Result<()> {
    let mut b = crate::config::load(None, std::env::vars())?;
    if let Some(k) = &a.kafka {
        b.kafka.brokers = k.clone();
    }
    let rt = runtime()?;
    let r = vigil_brokers::bench::kafka_bench(&b.kafka, &rt, a.n.max(100))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("kafka ingest, {} messages of {} B (best of 3):", r.messages, r.payload_bytes);
        println!(
            "  bare rdkafka producer, same records  {:>9.0} msg/s  {:.1} MB/s",
            r.bare_msgs_per_s, r.bare_mb_per_s
        );
        println!("  bare rdkafka producer, no headers    {:>9.0} msg/s", r.bare_no_headers_msgs_per_s);
        println!(
            "  vigil KafkaLog                       {:>9.0} msg/s  {:.1} MB/s",
            r.vigil_msgs_per_s, r.vigil_mb_per_s
        );
        println!("ratio {:.2} (against the bare producer without headers: {:.2})", r.ratio, r.ratio_vs_no_headers);
    }
    if r.ratio < a.min_ratio {
        bail!("Vigil's log ingests at {:.2} of the bare producer, below {:.2}", r.ratio, a.min_ratio);
    }
    Ok(())
}
