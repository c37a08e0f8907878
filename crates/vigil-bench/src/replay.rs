//! `vigil bench replay`: a drive recorded by a fast run (to MCAP, or over Kafka and
//! RabbitMQ), replayed three times at full speed; the best speed against real time and
//! whether the three recommendation digests agree. From Kafka, the baseline is a bare
//! read of the drive's records on the same broker (the broker is what bounds a streaming
//! read here), timed in the same run.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use vigil_brokers::BrokerConfig;
use vigil_pipeline::RunConfig;
use vigil_replay::{Drive, ReplayConfig};
use vigil_sim::Scenario;
use vigil_vehicle::node::RoadMap;

use crate::BenchError;

/// What to record and replay.
#[derive(Debug, Clone)]
pub struct ReplayBenchConfig {
    pub scenario: Scenario,
    pub seed: u64,
    pub duration_s: f64,
    pub model: PathBuf,
    /// Drive over these brokers (under a prefix of this run's own) and replay from
    /// Kafka, instead of recording to an MCAP file.
    pub brokers: Option<BrokerConfig>,
}

/// The figures of one replay bench.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayBench {
    /// `mcap` or `kafka`.
    pub source: &'static str,
    pub drive: String,
    pub scenario: String,
    pub sim_seconds: f64,
    pub frames: usize,
    /// Best of three, simulated seconds per wall second.
    pub speed_factor: f64,
    /// Opening the drive (MCAP: its index; Kafka: locating it), not part of the replay.
    pub load_seconds: f64,
    /// From Kafka: a bare read of every record of the drive's topics, seconds, and as
    /// simulated seconds per wall second (what the broker allows a streaming replay).
    pub bare_read_s: Option<f64>,
    pub bare_read_speed_factor: Option<f64>,
    pub digests_equal: bool,
    pub digests: Vec<String>,
}

/// A drive recorded for a bench: where it is and what identifies it.
pub(crate) struct Recorded {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub brokers: Option<BrokerConfig>,
    pub vehicle: String,
}

impl Recorded {
    /// Records `cfg`'s drive: to an MCAP file, or over the brokers under a prefix of
    /// this process's own (its queues are deleted once it ends; its topics by `clean`).
    pub(crate) fn drive(cfg: &ReplayBenchConfig) -> Result<Self, BenchError> {
        if !cfg.duration_s.is_finite() || cfg.duration_s <= 0.0 || cfg.duration_s > 600.0 {
            return Err(BenchError::Setup(format!("--duration must be between 0 and 600 s, got {}", cfg.duration_s)));
        }
        let dir = std::env::temp_dir().join(format!("vigil-bench-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::Write { path: dir.display().to_string(), reason: e.to_string() })?;
        let file = dir.join("drive.mcap");
        let mut run = RunConfig::new(cfg.scenario.clone(), cfg.seed, cfg.model.clone());
        run.fast = true;
        run.duration_ns = Some((cfg.duration_s * 1e9).round() as i64);
        let brokers = cfg.brokers.clone().map(|mut b| {
            let prefix = format!("vigil-bench-replay-{}", std::process::id());
            b.kafka.topic_prefix = prefix.clone();
            b.amqp.prefix = prefix;
            b.frames.url = format!("file://{}/", dir.join("frames").display());
            b
        });
        if brokers.is_none() {
            run.record = Some(file.clone());
        }
        run.brokers = brokers.clone();
        let ran = vigil_pipeline::run(run);
        if let Some(b) = &brokers
            && let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build()
        {
            let _ = rt.block_on(vigil_brokers::amqp::delete_prefix(&b.amqp));
        }
        let recorded = Self { dir, file, brokers, vehicle: vigil_core::VehicleId::simulated(0).0 };
        match ran {
            Ok(_) => Ok(recorded),
            Err(e) => {
                recorded.clean();
                Err(e.into())
            }
        }
    }

    /// Removes the recording: the file or frame store, and the topics (a long drive is
    /// gigabytes in the broker).
    pub(crate) fn clean(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(b) = &self.brokers {
            let topics = vigil_brokers::kafka::all_topics(&b.kafka.topic_prefix);
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(vigil_brokers::kafka::delete_topics(&b.kafka, &topics));
            }
        }
    }
}

/// How a bench replays: at --max, embedded, two workers.
pub(crate) fn replay_config(cfg: &ReplayBenchConfig) -> ReplayConfig {
    let road = &cfg.scenario.road;
    ReplayConfig {
        model_dir: cfg.model.clone(),
        road: RoadMap { lanes: road.lanes, lane_width_m: road.lane_width_m },
        speed: None,
        workers: 2,
        batcher: vigil_pipeline::default_batcher(),
        task_budget_ns: vigil_proto::wire::DEFAULT_TASK_BUDGET_NS,
        export_dataset: None,
        export_objects_every: 0,
        progress: None,
        live: None,
    }
}

/// Records the drive, then replays it three times.
pub fn replay_bench(cfg: &ReplayBenchConfig) -> Result<ReplayBench, BenchError> {
    let rec = Recorded::drive(cfg)?;
    let out = replays(cfg, &rec);
    rec.clean();
    out
}

fn replays(cfg: &ReplayBenchConfig, rec: &Recorded) -> Result<ReplayBench, BenchError> {
    let t0 = Instant::now();
    let drive = match &rec.brokers {
        Some(b) => Drive::from_kafka(b, Some(&rec.vehicle), None, None, None)?,
        None => Drive::from_mcap(std::slice::from_ref(&rec.file), None, None, None)?,
    };
    let load_seconds = t0.elapsed().as_secs_f64();
    let bare_read_s = match &rec.brokers {
        Some(b) => Some(crate::window::whole_read(b, &rec.vehicle)?.seconds),
        None => None,
    };
    let rc = replay_config(cfg);
    let mut best = 0f64;
    let mut digests = Vec::new();
    let (mut sim_seconds, mut frames, mut id) = (0.0, 0, String::new());
    for _ in 0..3 {
        let r = vigil_replay::replay(&drive, &rc)?;
        best = best.max(r.speed_factor);
        sim_seconds = r.sim_seconds;
        frames = r.frames.values().sum::<u64>() as usize;
        id = r.drive;
        digests.push(r.recommendations_digest);
    }
    Ok(ReplayBench {
        source: if rec.brokers.is_some() { "kafka" } else { "mcap" },
        drive: id,
        scenario: cfg.scenario.name.clone(),
        sim_seconds,
        frames,
        speed_factor: best,
        load_seconds,
        bare_read_s,
        bare_read_speed_factor: bare_read_s.map(|s| sim_seconds / s.max(1e-9)),
        digests_equal: digests.windows(2).all(|w| w[0] == w[1]),
        digests,
    })
}
