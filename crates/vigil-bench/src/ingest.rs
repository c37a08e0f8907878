//! `vigil bench ingest`: telemetry ingest into Kafka through the vehicle actors (the
//! sensor channel bridge → `Ingest` → `TelemetryPublisher` → [`KafkaLog`]) against a
//! bare rdkafka producer sending the same records — the same envelopes with the same
//! keys and the same metadata headers (built before its clock starts) — to the same
//! topics on the same broker, with the same producer settings; both timed from the first
//! message to the last delivery acknowledgement. Repeated for 1, 2 and 4 vehicles.
//!
//! Each side first sends the first envelope of every stream and waits for its
//! acknowledgement, then starts the clock: a fresh idempotent producer does not send
//! until the broker has given it a producer id, which librdkafka asks for on a 500 ms
//! timer — one or two ticks (0.5 or 1.0 s) that a long-running vehicle pays once, and
//! that would otherwise decide a short round. The warm-up time is reported on its own.
//!
//! The messages are the simulator's lidar, radar and ground-truth envelopes. Camera
//! frames are left out: on this path they go to the frame store (claim check, a file
//! write), and what reaches Kafka for them is a small reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Serialize;
use vigil_brokers::KafkaConfig;
use vigil_brokers::kafka::{
    KafkaLog, all_topics, delete_topics, ensure_topics, producer_config, record_headers, topic_name,
};
use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::{BusSample, TelemetryLog};
use vigil_core::{ManualClock, VehicleId};
use vigil_sim::{Scenario, VehicleSim};
use vigil_vehicle::node::{NodeStats, RoadMap, SensorInputs, Stream};

use crate::BenchError;

/// One vehicle count.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRow {
    pub vehicles: usize,
    /// The timed messages and their bytes (the warm-up's are not counted).
    pub messages: usize,
    pub warm_up_messages: usize,
    pub bytes: u64,
    pub bare_msgs_per_s: f64,
    pub bare_mb_per_s: f64,
    pub vigil_msgs_per_s: f64,
    pub vigil_mb_per_s: f64,
    /// Vigil's rate over the bare producer's: the median over rounds of the two sides'
    /// times in the same round (run back to back, so the broker's drift cancels).
    pub ratio: f64,
    /// The best round of each side compared (reported; it favours whichever side ran
    /// in the first slot on fresh topics).
    pub ratio_of_best: f64,
    /// Median CPU seconds per round in this process (see [`Round::cpu_s`]): Vigil's own
    /// cost, apart from the broker's noise.
    pub bare_cpu_s: Option<f64>,
    pub vigil_cpu_s: Option<f64>,
    /// Every round of each side, in the order run (the rates above are the median rounds).
    pub bare_rounds: Vec<Round>,
    pub vigil_rounds: Vec<Round>,
}

/// Where one round's time went, in seconds from its first timed message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Round {
    /// From the producer's creation to the warm-up envelopes' acknowledgement (untimed).
    pub warmup_s: f64,
    /// The last message handed over: to the producer (bare) or to the vehicle's sensor
    /// channels (Vigil).
    pub handed_s: f64,
    /// Vigil: the last envelope through the actors into the producer (`sent`).
    pub produced_s: f64,
    /// The last delivery acknowledged: the round's time. Read off the delivery counter,
    /// not off `flush`, which rdkafka's threaded producer returns from only on a 100 ms
    /// poll tick (the delivery events go to its polling thread), ±0.1 s on either side.
    pub total_s: f64,
    /// CPU time (user + system) this process spent from the first timed message to the
    /// last acknowledgement: the producer's threads, and for Vigil the actors too. The
    /// broker's CPU is not in it. `None` off Linux.
    pub cpu_s: Option<f64>,
    /// Vigil: deliveries re-sent after a failure, and waits on a full producer queue.
    pub retried: u64,
    pub queue_full_waits: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestBench {
    pub scenario: String,
    /// Simulated seconds of telemetry per round, shared among the vehicles.
    pub sim_seconds: f64,
    /// Rounds of each side per vehicle count (the medians are taken).
    pub rounds: usize,
    pub rows: Vec<IngestRow>,
    /// The gated figure: the median of every round's ratio, all vehicle counts pooled —
    /// the same ingest path measured `rounds` × rows times. One row's median of a few
    /// rounds moves ±0.1 run to run with this broker; the pooled one about a third of that.
    pub ratio: f64,
    pub min_ratio: f64,
    pub pass: bool,
}

struct Msg {
    vehicle: usize,
    kind: Stream,
    key: String,
    bytes: Vec<u8>,
    /// The Kafka headers Vigil's log gives this envelope (for the bare producer).
    headers: OwnedHeaders,
    /// The first envelope of its stream: sent before the clock starts.
    warm_up: bool,
}

fn bench_err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Bench(format!("{what}: {e}"))
}

/// The simulator's envelopes for `vehicles` vehicles, camera off.
fn messages(scenario: &Scenario, seed: u64, duration_ns: i64, vehicles: usize) -> Vec<Msg> {
    let mut s = scenario.clone();
    s.sensors.camera.enabled = false;
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in 0..vehicles {
        let mut sim = VehicleSim::new(&s, v, seed, duration_ns);
        while sim.step(&mut batch).is_some() {
            for m in batch.drain(..) {
                let kind = m.kind;
                let bytes = m.encode();
                let h = m.envelope.header.clone().unwrap_or_default();
                // The same header the vehicle's log writes (a run id is 32 characters).
                let headers = record_headers(&bytes, &"0".repeat(32), h.capture_time_ns, h.publish_time_ns);
                let warm_up = seen.insert((v, kind.index()));
                out.push(Msg { vehicle: v, kind, key: m.key.to_string(), bytes, headers, warm_up });
            }
        }
    }
    out
}

/// The bare producer's delivery counters: the least a producer needs to know that its
/// records arrived.
#[derive(Clone, Default)]
struct Acks {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `done` every 200 µs for up to two minutes; past that, the error `missing` makes.
fn wait_until(done: impl Fn() -> bool, missing: impl Fn() -> BenchError) -> Result<(), BenchError> {
    let waited = Instant::now();
    while !done() {
        if waited.elapsed() > Duration::from_secs(120) {
            return Err(missing());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Waits until `n` records are acknowledged, or none is in flight any more (a failed
/// delivery is not acknowledged; the caller counts failures).
fn wait_acked(acked: &AtomicU64, n: u64, in_flight: impl Fn() -> u64) -> Result<(), BenchError> {
    wait_until(
        || acked.load(Ordering::SeqCst) >= n || in_flight() == 0,
        || bench_err("waiting for acknowledgements", format!("{} of {n}", acked.load(Ordering::SeqCst))),
    )
}

fn bare(cfg: &KafkaConfig, msgs: &[Msg], vehicles: &[VehicleId]) -> Result<Round, BenchError> {
    let acks = Acks::default();
    let p: ThreadedProducer<Acks> =
        producer_config(cfg).create_with_context(acks.clone()).map_err(|e| bench_err("bare producer", e))?;
    let created = Instant::now();
    let topics: Vec<String> = Stream::ALL.iter().map(|k| topic_name(&cfg.topic_prefix, k.topic())).collect();
    let send = |m: &Msg| -> Result<(), BenchError> {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topics[m.kind.index()])
            .key(vehicles[m.vehicle].0.as_bytes())
            .payload(m.bytes.as_slice())
            .headers(m.headers.clone());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, _)) => return Err(bench_err("bare send", e)),
            }
        }
        Ok(())
    };
    for m in msgs.iter().filter(|m| m.warm_up) {
        send(m)?;
    }
    p.flush(Duration::from_secs(60)).map_err(|e| bench_err("bare warm-up flush", e))?;
    let warmup_s = created.elapsed().as_secs_f64();
    let cpu0 = process_cpu_s();
    let t0 = Instant::now();
    for m in msgs.iter().filter(|m| !m.warm_up) {
        send(m)?;
    }
    let handed_s = t0.elapsed().as_secs_f64();
    wait_acked(&acks.ok, msgs.len() as u64, || p.in_flight_count().max(0) as u64)?;
    let total_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    p.flush(Duration::from_secs(120)).map_err(|e| bench_err("bare flush", e))?;
    let failed = acks.failed.load(Ordering::SeqCst);
    if failed > 0 || acks.ok.load(Ordering::SeqCst) != msgs.len() as u64 {
        return Err(bench_err("bare producer", format!("{failed} deliveries failed")));
    }
    Ok(Round { warmup_s, handed_s, produced_s: handed_s, total_s, cpu_s, ..Round::default() })
}

type Senders = Vec<Vec<tokio::sync::mpsc::Sender<BusSample>>>;

/// Each vehicle's sensor inputs as channels the bench feeds (in place of the bus).
fn channel_inputs(vehicles: &[VehicleId]) -> (Senders, Vec<(VehicleId, SensorInputs)>) {
    let mut senders = Vec::new();
    let mut inputs = Vec::new();
    for v in vehicles {
        let mut streams = Vec::new();
        let mut txs = Vec::new();
        for kind in Stream::ALL {
            let (tx, rx) = tokio::sync::mpsc::channel::<BusSample>(64);
            streams.push((kind, rx));
            txs.push(tx);
        }
        senders.push(txs);
        inputs.push((v.clone(), SensorInputs(streams)));
    }
    (senders, inputs)
}

/// One feeder per vehicle, as each vehicle's bus bridge would be.
fn run_feeders(senders: &Senders, samples: Vec<Vec<(usize, BusSample)>>) {
    std::thread::scope(|s| {
        for (txs, samples) in senders.iter().zip(samples) {
            s.spawn(move || {
                for (stream, sample) in samples {
                    let _ = txs[stream].blocking_send(sample);
                }
            });
        }
    })
}

/// Feeds the messages into one vehicle node per vehicle (perception off: ingest and
/// telemetry only) and times them into Kafka.
fn through_actors(cfg: &KafkaConfig, msgs: &[Msg], vehicles: &[VehicleId]) -> Result<Round, BenchError> {
    let created = Instant::now();
    let log = Arc::new(KafkaLog::new(cfg, None)?);
    let clock = Arc::new(ManualClock::new(0));
    let stats = Arc::new(NodeStats::default());
    let (senders, inputs) = channel_inputs(vehicles);
    let (control, _control_rx) = std::sync::mpsc::channel();
    let transports = vigil_pipeline::Transports {
        clock: clock.clone(),
        log: log.clone(),
        frames: Arc::new(MemoryFrameStore::new(4)),
        tasks: Arc::new(EmbeddedTasks::new(TaskQueue::new(16, 3), clock)),
    };
    // Both sides at the priority the process started with: the actors' cost, alone.
    let (system, actors) = vigil_pipeline::Pipeline::new(
        inputs,
        vigil_core::RunId::generate(),
        RoadMap { lanes: 2, lane_width_m: 3.5 },
        transports,
        control,
    )
    .perception(false)
    .stats(stats.clone(), Arc::default())
    .start()?;
    // The samples of the warm-up or of the timed part, as the bus hands them over (owned).
    let feed = |warm_up: bool| {
        let mut samples: Vec<Vec<(usize, BusSample)>> = vec![Vec::new(); vehicles.len()];
        for m in msgs.iter().filter(|m| m.warm_up == warm_up) {
            samples[m.vehicle].push((m.kind.index(), BusSample { key: m.key.clone(), payload: m.bytes.clone() }));
        }
        samples
    };
    let ingested = || Stream::ALL.iter().map(|k| stats.ingested[k.index()].load(Ordering::SeqCst)).sum::<u64>();
    let wait_for = |n: u64, counter: &AtomicU64| {
        wait_until(
            || ingested() >= n && counter.load(Ordering::SeqCst) >= n,
            || BenchError::Bench(format!("only {} of {n} messages went through the actors", ingested())),
        )
    };
    let run_feeders = |samples| run_feeders(&senders, samples);
    let warm = msgs.iter().filter(|m| m.warm_up).count() as u64;
    run_feeders(feed(true));
    wait_for(warm, &log.stats().delivered)?;
    let warmup_s = created.elapsed().as_secs_f64();
    // The samples as the bus hands them over (owned), made before the clock starts.
    let samples = feed(false);
    let cpu0 = process_cpu_s();
    let t0 = Instant::now();
    run_feeders(samples);
    let handed_s = t0.elapsed().as_secs_f64();
    wait_for(msgs.len() as u64, &log.stats().sent)?;
    let produced_s = t0.elapsed().as_secs_f64();
    wait_acked(&log.stats().delivered, msgs.len() as u64, || log.queue_fill().0)?;
    let acked_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s().zip(cpu0).map(|(b, a)| b - a);
    // Re-sends what failed, if anything did, and returns once every record is delivered.
    log.close()?;
    let retried = log.stats().retried.load(Ordering::SeqCst);
    let total_s = if retried == 0 { acked_s } else { t0.elapsed().as_secs_f64() };
    system.stop();
    let _ = actors.join();
    Ok(Round {
        warmup_s,
        handed_s,
        produced_s,
        total_s,
        cpu_s,
        retried,
        queue_full_waits: log.stats().queue_full_waits.load(Ordering::SeqCst),
    })
}

/// Runs the benchmark for each vehicle count; `rounds` rounds of both sides each.
pub fn ingest_bench(
    cfg: &KafkaConfig,
    scenario: &Scenario,
    seed: u64,
    sim_seconds: f64,
    vehicle_counts: &[usize],
    rounds: usize,
    min_ratio: f64,
) -> Result<IngestBench, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| bench_err("runtime", e))?;
    let mut rows = Vec::new();
    for &k in vehicle_counts {
        // Topics of this row's own, deleted after it: a row writes 2 × rounds × the
        // drive (1.75 GB at the defaults), which the broker should not keep.
        let cfg = KafkaConfig {
            topic_prefix: format!("{}.ingest{}v{k}", cfg.topic_prefix, std::process::id()),
            ..cfg.clone()
        };
        rt.block_on(ensure_topics(&cfg))?;
        let row = bench_row(&cfg, scenario, seed, sim_seconds, k, rounds);
        let deleted = rt.block_on(delete_topics(&cfg, &all_topics(&cfg.topic_prefix)));
        rows.push(row?);
        deleted?;
    }
    let ratio = median(rows.iter().flat_map(paired_ratios).collect());
    let pass = ratio >= min_ratio;
    Ok(IngestBench {
        scenario: scenario.name.clone(),
        sim_seconds,
        rounds: rounds.max(1),
        rows,
        ratio,
        min_ratio,
        pass,
    })
}

/// This process's CPU time so far (user + system, every thread, those ended included),
/// from `/proc/self/stat` in clock ticks of 10 ms (USER_HZ is 100 on Linux).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// One vehicle count: `sim_seconds` of telemetry shared among `k` vehicles, so every row
/// moves the same bytes and its rounds last about as long.
fn bench_row(
    cfg: &KafkaConfig,
    scenario: &Scenario,
    seed: u64,
    sim_seconds: f64,
    k: usize,
    rounds: usize,
) -> Result<IngestRow, BenchError> {
    let duration_ns = (sim_seconds / k as f64 * 1e9).round() as i64;
    let msgs = messages(scenario, seed, duration_ns, k);
    let vehicles: Vec<VehicleId> = (0..k).map(VehicleId::simulated).collect();
    let timed = || msgs.iter().filter(|m| !m.warm_up);
    let bytes: u64 = timed().map(|m| m.bytes.len() as u64).sum();
    let (mut bare_rounds, mut vigil_rounds) = (Vec::new(), Vec::new());
    // A B B A A B …: each round runs both sides back to back, taking turns to go first,
    // and the ratio is the median of the rounds' ratios: the broker's drift (its store
    // grows, then settles) hits both sides of a round alike, and the median sets aside
    // a lucky or unlucky round (±10–20 % round to round with nisshi's sqlite store on
    // this machine).
    for bare_first in (0..rounds.max(1)).map(|i| i % 2 == 0) {
        if bare_first {
            bare_rounds.push(bare(cfg, &msgs, &vehicles)?);
        }
        vigil_rounds.push(through_actors(cfg, &msgs, &vehicles)?);
        if !bare_first {
            bare_rounds.push(bare(cfg, &msgs, &vehicles)?);
        }
    }
    let times = |rounds: &[Round]| rounds.iter().map(|r| r.total_s).collect::<Vec<_>>();
    let (bare_s, vigil_s) = (median(times(&bare_rounds)), median(times(&vigil_rounds)));
    let best = |rounds: &[Round]| rounds.iter().map(|r| r.total_s).fold(f64::INFINITY, f64::min);
    let n = timed().count() as f64;
    let mb = bytes as f64 / 1e6;
    let mut row = IngestRow {
        vehicles: k,
        messages: timed().count(),
        warm_up_messages: msgs.len() - timed().count(),
        bytes,
        bare_msgs_per_s: n / bare_s,
        bare_mb_per_s: mb / bare_s,
        vigil_msgs_per_s: n / vigil_s,
        vigil_mb_per_s: mb / vigil_s,
        ratio: f64::NAN,
        bare_cpu_s: median_cpu(&bare_rounds),
        vigil_cpu_s: median_cpu(&vigil_rounds),
        ratio_of_best: best(&bare_rounds) / best(&vigil_rounds),
        bare_rounds,
        vigil_rounds,
    };
    row.ratio = median(paired_ratios(&row));
    Ok(row)
}

fn median_cpu(rounds: &[Round]) -> Option<f64> {
    rounds.iter().map(|r| r.cpu_s).collect::<Option<Vec<_>>>().map(median)
}

/// Bare time over Vigil's time, round by round (each round ran both back to back).
fn paired_ratios(row: &IngestRow) -> Vec<f64> {
    row.bare_rounds.iter().zip(&row.vigil_rounds).map(|(b, v)| b.total_s / v.total_s).collect()
}

#[cfg(test)]
mod tests {
    use super::{median, process_cpu_s};

    #[test]
    fn process_cpu_time_counts_work_done_on_other_threads() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = process_cpu_s().expect("/proc/self/stat readable on Linux");
        let spin = std::thread::spawn(|| {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < std::time::Duration::from_millis(300) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        });
        std::hint::black_box(spin.join().ok());
        let spent = process_cpu_s().map(|after| after - before).unwrap_or_default();
        // The thread has ended; its 0.3 s stay in the process's count (10 ms ticks).
        assert!(spent >= 0.2, "a 0.3 s spin on a thread counted {spent} s");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
