//! The run report (`vigil run --json`) and the live console line.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use vigil_bus::task::QueueCounts;
use vigil_core::policy::Action;
use vigil_core::{Clock, Nanos, WallClock};
use vigil_sim::VehicleSim;
use vigil_vehicle::node::{NodeStats, Stream};
use vigil_worker::WorkerStats;

use crate::RunConfig;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FrameCount {
    pub produced: u64,
    pub ingested: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Frames {
    pub lidar: FrameCount,
    pub camera: FrameCount,
    pub radar: FrameCount,
    pub localization: FrameCount,
}

/// Every task ends in exactly one vehicle-side state (`completed` or `fallback`) and one
/// queue-side state (`acked`, `expired` or `dead_lettered`, or never queued: `refused`).
#[derive(Debug, Clone, Serialize)]
pub struct Tasks {
    pub published: u64,
    pub completed: u64,
    /// Taken from the queue after their deadline: dead-lettered unprocessed.
    pub expired: u64,
    /// Dead-lettered for another reason (rejected, retry limit); excludes `expired`.
    pub dead_lettered: u64,
    /// Deadline passed at the vehicle with no recommendation, or refused by a full queue.
    pub fallback: u64,
    pub fallback_braked: u64,
    pub raised: u64,
    pub refused: u64,
    pub acked: u64,
    pub redelivered: u64,
    pub stale_replies: u64,
    pub duplicate_replies: u64,
    pub unknown_replies: u64,
    /// Replies refused by the trust checks, by reason (publisher, signature, …).
    pub rejected_replies: std::collections::BTreeMap<String, u64>,
    pub queue_peak: u64,
    pub queue_capacity: usize,
    /// Per priority (1..9, higher is more urgent): [raised, completed, fallback].
    pub by_priority: BTreeMap<u8, [u64; 3]>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Threats {
    pub seen: u64,
    pub raised: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendations {
    pub count: u64,
    pub by_action: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub detect_to_recommend: Percentiles,
    /// Capture → fused, of every radar scan: how far fusion ran behind the sensors.
    pub fusion_lag: Percentiles,
    /// Deadline → fallback applied, of every task that fell back.
    pub fallback_after_deadline: Percentiles,
    /// The worker's share: take → reply sent (fetch, crop, batched inference, decide).
    pub worker: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub collision: bool,
    /// Vehicles that collided.
    pub collisions: usize,
    /// Smallest gap to an obstacle in the ego corridor; null if none was ever ahead.
    pub min_gap_m: Option<f64>,
    /// Every ego ended at standstill.
    pub ego_stopped: bool,
    /// Time of the first collision, seconds from the start.
    pub first_collision_s: Option<f64>,
    /// Closing speed at the worst collision, km/h.
    pub impact_kmh: Option<f64>,
    /// The first command to stop (a brake, recommended or fallback), seconds from the start.
    pub first_brake_s: Option<f64>,
    /// Distance the egos drove, metres (summed over vehicles).
    pub distance_m: f64,
}

impl Outcome {
    /// What happened to the simulated vehicles.
    pub fn of(sims: &[vigil_sim::VehicleSim]) -> Self {
        let collided: Vec<Nanos> = sims.iter().filter_map(|s| s.world.collision.map(|c| c.0)).collect();
        let min_gap = sims.iter().map(|s| s.world.min_gap_m).fold(f64::INFINITY, f64::min);
        Self {
            collision: !collided.is_empty(),
            collisions: collided.len(),
            min_gap_m: min_gap.is_finite().then_some(min_gap),
            ego_stopped: sims.iter().all(|s| s.world.ego_stopped()),
            first_collision_s: collided.iter().min().map(|t| *t as f64 * 1e-9),
            impact_kmh: sims.iter().filter_map(|s| s.world.impact_mps).reduce(f64::max).map(|v| v * 3.6),
            first_brake_s: sims.iter().filter_map(|s| s.world.first_brake_ns).min().map(|t| t as f64 * 1e-9),
            distance_m: sims.iter().map(|s| s.world.ego.x).sum(),
        }
    }
}

/// Where an obstacle was first asked about.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Detection {
    pub t_s: f64,
    pub distance_m: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workers {
    pub count: usize,
    pub taken: u64,
    pub answered: u64,
    pub panics: u64,
    pub restarts: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

/// Broker-side figures of a run over Kafka and RabbitMQ.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    pub kafka: KafkaFigures,
    pub amqp: AmqpFigures,
    pub frames: FrameFigures,
}

/// The frame store: each camera frame is written once, and its log record and any task
/// on it refer to that one object.
#[derive(Debug, Clone, Serialize)]
pub struct FrameFigures {
    pub stored: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KafkaFigures {
    pub brokers: String,
    pub sent: u64,
    pub delivered: u64,
    /// Failed deliveries that were re-sent.
    pub retried: u64,
    pub queue_full_waits: u64,
    /// Camera envelopes whose pixels the log itself moved to the frame store (a vehicle
    /// with perception stores them first and sends the reference, so none there).
    pub claim_checked: u64,
    pub bytes: u64,
    /// Messages waiting in the producer (queued or in flight) when sampled, and its bound.
    pub queue_fill: u64,
    pub queue_max: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AmqpFigures {
    /// Failed attempts sent to a delay queue.
    pub retried: u64,
    /// Connection recoveries and consumer interruptions waited out.
    pub recoveries: u64,
    pub refused_full: u64,
    pub publish_errors: u64,
    /// Tasks waiting in the task queue at the last sample.
    pub queue_depth: u64,
    pub dead_lettered: u64,
}

impl BrokerReport {
    pub fn from_brokers(b: &vigil_brokers::Brokers) -> Self {
        let k = b.log.stats();
        let a = b.tasks.amqp_counts();
        let g = |x: &std::sync::atomic::AtomicU64| x.load(std::sync::atomic::Ordering::Relaxed);
        let (queue_fill, queue_max) = b.log.queue_fill();
        let (stored, bytes) = b.frames.stored();
        Self {
            frames: FrameFigures { stored, bytes },
            kafka: KafkaFigures {
                brokers: b.log_brokers().to_string(),
                sent: g(&k.sent),
                delivered: g(&k.delivered),
                retried: g(&k.retried),
                queue_full_waits: g(&k.queue_full_waits),
                claim_checked: g(&k.claim_checked),
                bytes: g(&k.bytes),
                queue_fill,
                queue_max,
            },
            amqp: AmqpFigures {
                retried: g(&a.retried),
                recoveries: g(&a.recoveries),
                refused_full: g(&a.refused_full),
                publish_errors: g(&a.publish_errors),
                queue_depth: g(&a.queued),
                dead_lettered: g(&a.dead_lettered),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub scenario: String,
    pub seed: u64,
    pub mode: &'static str,
    pub pacing: &'static str,
    pub perception: bool,
    pub vehicles: usize,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// CPU time of this process over the run (user + system), seconds.
    pub cpu_seconds: f64,
    /// Scheduling of the urgent plane as applied (`off`, `nice -11`, `SCHED_RR 10`, `denied`).
    pub priority: String,
    pub frames: Frames,
    pub lost: u64,
    pub rejected_frames: u64,
    /// Scans the tracker held, stamped far from the others (see `Tracker::update`).
    pub scans_held: u64,
    /// Tracks that became actionable threats, and those fusion acted on while their scan
    /// was younger than the task budget (see `NodeStats::threats_seen`).
    pub threats: Threats,
    /// Radar scans fusion processed (detection and tracking ran on each).
    pub fused: u64,
    /// Threats that fell back at once: no fresh camera frame or no camera box.
    pub no_camera_fallbacks: u64,
    /// Slow-downs and brakes for believed radar-only objects in the path (the radar watch).
    pub cautions: u64,
    pub caution_brakes: u64,
    /// The telemetry spool between the actors and the log.
    pub telemetry: crate::process::TelemetryReport,
    pub tasks: Tasks,
    pub recommendations: Recommendations,
    pub latency_ms: Latency,
    pub outcome: Outcome,
    /// The first task any node raised: when (seconds from the start) and how far ahead.
    pub first_detection: Option<Detection>,
    pub model: Option<Model>,
    pub workers: Workers,
    pub log: BTreeMap<String, u64>,
    pub record: Option<String>,
    /// What the Foxglove live view did (`--foxglove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_view: Option<vigil_bus::live::LiveStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<BrokerReport>,
    /// Every detect→recommend latency, milliseconds (for pooling across runs).
    #[serde(skip)]
    pub latency_samples_ms: Vec<f64>,
}

pub(crate) struct Inputs<'a> {
    pub cfg: &'a RunConfig,
    pub duration_ns: Nanos,
    pub wall: Duration,
    pub cpu_seconds: f64,
    pub priority: &'a str,
    pub produced: [u64; 4],
    pub stats: &'a NodeStats,
    pub workers: &'a WorkerStats,
    pub queue: QueueCounts,
    pub log_counts: BTreeMap<String, u64>,
    pub sims: &'a [VehicleSim],
    pub model: Option<(String, String, String)>,
    pub brokers: Option<BrokerReport>,
    pub live: Option<vigil_bus::live::LiveStats>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Percentiles {
    /// The percentiles of a node's latency histogram, milliseconds.
    pub fn of(l: &vigil_vehicle::node::Latencies) -> Self {
        let s = l.summary_ms();
        Self { p50: s.p50, p95: s.p95, p99: s.p99, max: s.max, samples: s.samples as usize }
    }
}

pub fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.sort_by(f64::total_cmp);
    Percentiles {
        p50: percentile(&v, 0.50),
        p95: percentile(&v, 0.95),
        p99: percentile(&v, 0.99),
        max: v.last().copied().unwrap_or(0.0),
        samples: v.len(),
    }
}

/// CPU time this process has used (user + system), seconds; 0 where /proc is absent.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime are fields 14 and 15, counted after the parenthesised command
    // name, in USER_HZ ticks (100 per second in Linux's ABI).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| rest.split_whitespace().nth(n).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::SeqCst)
}

impl Tasks {
    fn of(s: &NodeStats, q: &QueueCounts, queue_capacity: usize) -> Self {
        Tasks {
            published: get(&s.tasks_published),
            completed: get(&s.completed),
            expired: q.expired,
            dead_lettered: q.dead_lettered - q.expired,
            fallback: get(&s.fallback),
            fallback_braked: get(&s.fallback_braked),
            raised: get(&s.tasks_raised),
            refused: get(&s.tasks_refused),
            acked: q.acked,
            redelivered: q.redelivered,
            stale_replies: get(&s.stale),
            duplicate_replies: get(&s.duplicate),
            unknown_replies: get(&s.unknown),
            rejected_replies: s.rejected_replies_by_reason(),
            queue_peak: q.peak_queued,
            queue_capacity,
            by_priority: (0..10u8)
                .map(|p| {
                    let n = p as usize;
                    (
                        p,
                        [
                            get(&s.raised_by_priority[n]),
                            get(&s.completed_by_priority[n]),
                            get(&s.fallback_by_priority[n]),
                        ],
                    )
                })
                .filter(|(_, v)| v[0] > 0)
                .collect(),
        }
    }
}

impl Workers {
    fn of(w: &WorkerStats, count: usize) -> Self {
        Workers {
            count,
            taken: get(&w.taken),
            answered: get(&w.answered),
            panics: get(&w.panics),
            restarts: get(&w.restarts),
            rejected: get(&w.rejected),
            duplicates: get(&w.duplicates),
        }
    }
}

pub(crate) fn build(i: Inputs<'_>) -> RunReport {
    let s = i.stats;
    let count = |k: Stream| FrameCount { produced: i.produced[k.index()], ingested: get(&s.ingested[k.index()]) };
    let frames = Frames {
        lidar: count(Stream::Lidar),
        camera: count(Stream::Camera),
        radar: count(Stream::Radar),
        localization: count(Stream::GroundTruth),
    };
    let lost = Stream::ALL.iter().map(|k| i.produced[k.index()].saturating_sub(get(&s.ingested[k.index()]))).sum();
    let by_action: BTreeMap<String, u64> =
        Action::ALL.iter().enumerate().map(|(n, a)| (a.name().to_string(), get(&s.by_action[n]))).collect();
    let q = i.queue;
    RunReport {
        run_id: format!("{}-{}-{}", i.cfg.scenario.name, i.cfg.seed, WallClock.now_ns() / 1_000_000),
        scenario: i.cfg.scenario.name.clone(),
        seed: i.cfg.seed,
        mode: if i.brokers.is_some() { "brokers" } else { "embedded" },
        pacing: if i.cfg.fast { "fast" } else { "realtime" },
        perception: i.cfg.perception,
        vehicles: i.cfg.vehicles,
        sim_seconds: i.duration_ns as f64 * 1e-9,
        wall_seconds: i.wall.as_secs_f64(),
        cpu_seconds: i.cpu_seconds,
        priority: i.priority.to_string(),
        frames,
        lost,
        rejected_frames: get(&s.rejected),
        scans_held: get(&s.scans_held),
        threats: Threats { seen: get(&s.threats_seen), raised: get(&s.threats_raised) },
        fused: get(&s.fused),
        no_camera_fallbacks: get(&s.no_camera),
        cautions: get(&s.cautions),
        caution_brakes: get(&s.caution_brakes),
        telemetry: crate::process::TelemetryReport::of(s),
        tasks: Tasks::of(s, &q, i.cfg.queue_capacity),
        recommendations: Recommendations { count: get(&s.completed), by_action },
        latency_ms: Latency {
            detect_to_recommend: Percentiles::of(&s.latencies),
            fusion_lag: Percentiles::of(&s.fusion_lag),
            fallback_after_deadline: Percentiles::of(&s.fallback_after_deadline),
            worker: Percentiles::of(&s.worker),
        },
        outcome: Outcome::of(i.sims),
        first_detection: s.first_task.get().map(|&(t, d)| Detection {
            t_s: (t - i.cfg.scenario.environment.start_time_ns) as f64 * 1e-9,
            distance_m: d,
        }),
        model: i.model.map(|(name, version, device)| Model { name, version, device }),
        workers: Workers::of(i.workers, if i.cfg.perception { i.cfg.workers } else { 0 }),
        log: i.log_counts,
        record: i.cfg.record.as_ref().map(|p| p.display().to_string()),
        brokers: i.brokers,
        live_view: i.live,
        latency_samples_ms: s
            .latencies
            .weighted_seconds()
            .into_iter()
            .flat_map(|(v, n)| std::iter::repeat_n(v * 1e3, n as usize))
            .collect(),
    }
}

/// One status line, rewritten in place.
pub(crate) fn console_line(t: Nanos, produced: &[u64; 4], s: &NodeStats) {
    let secs = (t as f64 * 1e-9).max(1e-3);
    let last = s.last_recommendation.lock().map(|l| l.clone()).unwrap_or_default();
    eprint!(
        "\r\x1b[2Kt={:5.1}s  lidar {:4.1}/s camera {:4.1}/s radar {:4.1}/s | tasks in flight {} done {} fallback {} | last: {}",
        t as f64 * 1e-9,
        produced[0] as f64 / secs,
        produced[1] as f64 / secs,
        produced[2] as f64 / secs,
        s.outstanding.load(Ordering::SeqCst),
        get(&s.completed),
        get(&s.fallback),
        if last.is_empty() { "-" } else { &last },
    );
}
