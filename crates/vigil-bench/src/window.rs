//! `vigil bench replay --over-brokers --window S`: a window of a long drive read back
//! from Kafka two ways. By its offsets (`Drive::from_kafka` with the run and the window:
//! bisection, then only the window's records), and by reading every record of the topics
//! and keeping the window's (how a Kafka read worked before it was located). The same
//! records must come back; the located read must read far fewer and finish sooner. The
//! window is then replayed at full speed. (The whole-topic read is the bare one: no
//! camera frames fetched, which favours it.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_brokers::BrokerConfig;
use vigil_brokers::kafka::topic_name;
use vigil_brokers::kafka::window::{RangeReader, WindowSpec, locate};
use vigil_bus::topics;
use vigil_proto::wire::Stream;
use vigil_replay::Drive;

use crate::BenchError;
use crate::replay::{Recorded, ReplayBenchConfig, replay_config};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The figures of one window bench.
#[derive(Debug, Clone, Serialize)]
pub struct WindowBench {
    pub drive_seconds: f64,
    pub window_seconds: f64,
    /// Every record of the drive's topics (what a whole-topic read reads).
    pub records_in_topics: u64,
    /// The drive's records captured in the window (from the whole-topic read).
    pub records_in_window: u64,
    /// Records the located read read: the window's, its slack, and the bisection's probes.
    pub window_records_read: u64,
    /// Messages the located read gave (must equal `records_in_window`).
    pub window_messages: u64,
    pub whole_read_s: f64,
    /// Locating and reading the window.
    pub window_read_s: f64,
    /// The window replayed at --max, simulated seconds per wall second.
    pub replay_speed_factor: f64,
}

fn bench_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Bench(e.to_string())
}

/// The drive's topics under `b`'s prefix, and whether each is telemetry.
fn drive_topics(b: &BrokerConfig) -> Vec<(String, bool)> {
    let telemetry = Stream::ALL.iter().map(|s| (s.topic(), true));
    telemetry
        .chain([(topics::RECOMMENDATIONS, false), (topics::TASKS, false)])
        .map(|(l, t)| (topic_name(&b.kafka.topic_prefix, l), t))
        .collect()
}

/// A bare read of every record of the drive's topics.
pub(crate) struct WholeRead {
    /// Capture times of the drive's telemetry records, and of all its records.
    pub telemetry: Vec<i64>,
    pub all: Vec<i64>,
    /// Records read, the drive's or not.
    pub read: u64,
    pub seconds: f64,
    /// The drives (`run_id` headers) of the vehicle's records.
    pub runs: std::collections::BTreeSet<String>,
}

/// Reads every record of the topics under `b`'s prefix (one drive's: the bench's own),
/// one bare reader per topic, keeping only the capture times of `vehicle`'s records.
pub(crate) fn whole_read(b: &BrokerConfig, vehicle: &str) -> Result<WholeRead, BenchError> {
    let t0 = Instant::now();
    let ours = WindowSpec { vehicle: Some(vehicle.to_string()), ..WindowSpec::default() };
    let (mut telemetry, mut all, mut read, mut runs) = (Vec::new(), Vec::new(), 0, std::collections::BTreeSet::new());
    for (topic, is_telemetry) in drive_topics(b) {
        let located = locate(&b.kafka, &topic, &WindowSpec::default(), TIMEOUT)?;
        let mut reader = RangeReader::open(&b.kafka, &located, TIMEOUT)?;
        while let Some(r) = reader.next_record()? {
            read += 1;
            if !ours.wants(&r) {
                continue;
            }
            if let Some(run) = r.headers.get("run_id")
                && !runs.contains(run)
            {
                runs.insert(run.clone());
            }
            let capture = r.headers.get("capture_time_ns").and_then(|c| c.parse().ok()).unwrap_or(i64::MIN);
            all.push(capture);
            if is_telemetry {
                telemetry.push(capture);
            }
        }
    }
    Ok(WholeRead { telemetry, all, read, seconds: t0.elapsed().as_secs_f64(), runs })
}

/// Records `cfg`'s drive over the brokers, then times a window of `window_s` from its
/// middle read both ways, and replays the window.
pub fn window_bench(cfg: &ReplayBenchConfig, window_s: f64) -> Result<WindowBench, BenchError> {
    if cfg.brokers.is_none() {
        return Err(BenchError::Setup("a window is read from Kafka: pass --over-brokers".into()));
    }
    let rec = Recorded::drive(cfg)?;
    let out = window_of(cfg, &rec, window_s);
    rec.clean();
    out
}

fn window_of(cfg: &ReplayBenchConfig, rec: &Recorded, window_s: f64) -> Result<WindowBench, BenchError> {
    let b = rec.brokers.as_ref().ok_or_else(|| BenchError::Setup("no brokers".into()))?;
    let vehicle = rec.vehicle.as_str();
    let whole = whole_read(b, vehicle)?;
    // The drive's id (its records' `run_id`), as `vigil drives` lists it.
    let mut runs = whole.runs.iter();
    let (Some(run), None) = (runs.next(), runs.next()) else {
        return Err(bench_err(format!("the bench's topics hold {} drives of {vehicle}, not one", whole.runs.len())));
    };
    let (Some(&first), Some(&last)) = (whole.telemetry.iter().min(), whole.telemetry.iter().max()) else {
        return Err(BenchError::Bench(format!("no telemetry of drive {run} in Kafka")));
    };
    let window_ns = (window_s * 1e9).round() as i64;
    if window_ns <= 0 || window_ns > last - first {
        return Err(BenchError::Setup(format!(
            "--window {window_s} s does not fit in the drive's {:.1} s",
            (last - first) as f64 / 1e9
        )));
    }
    let from = first + (last - first - window_ns) / 2;
    let to = from + window_ns;
    let records_in_window = whole.all.iter().filter(|c| (from..to).contains(*c)).count() as u64;

    let t1 = Instant::now();
    let drive = Drive::from_kafka(b, Some(vehicle), Some(run), Some(from), Some(to))?;
    let counters = Arc::new(vigil_replay::StreamCounters::default());
    let mut window_messages = 0;
    for m in drive.stream_counted(counters.clone())? {
        m?;
        window_messages += 1;
    }
    let window_read_s = t1.elapsed().as_secs_f64();
    let window_records_read = counters.records_read.load(Ordering::Relaxed);
    let replayed = vigil_replay::replay(&drive, &replay_config(cfg))?;
    if window_messages != records_in_window {
        return Err(bench_err(format!(
            "the located read gave {window_messages} messages, the window holds {records_in_window}"
        )));
    }
    Ok(WindowBench {
        drive_seconds: (last - first) as f64 / 1e9,
        window_seconds: window_s,
        records_in_topics: whole.read,
        records_in_window,
        window_records_read,
        window_messages,
        whole_read_s: whole.seconds,
        window_read_s,
        replay_speed_factor: replayed.speed_factor,
    })
}
