//! `vigil bench workers`: how task throughput grows with 1 and 2 vision workers
//! competing on RabbitMQ, against the bare work of the same tasks in one loop.
//!
//! Every round publishes the same `tasks` obstacle tasks (a simulator camera frame in
//! the frame store, a box with an obstacle in it) to a fresh task queue, then starts the
//! workers and times from their start to the last reply received. The bare baseline does
//! each task's work in one thread with no broker and no actors: decode the task, fetch
//! the frame from the same store, decode, crop, classify (batch 1), encode the
//! recommendation. Order bare, 1, 2, 2, 1, bare; best of each.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_brokers::amqp::{AmqpTasks, delete_topology};
use vigil_brokers::store::ObjectFrameStore;
use vigil_brokers::{AmqpConfig, FramesConfig};
use vigil_bus::task::QueuedTask;
use vigil_bus::{FrameStore, TaskTransport};
use vigil_core::{Clock, WallClock};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_sim::Scenario;
use vigil_vision::batcher::BatcherConfig;
use vigil_vision::model::{Recogniser, default_device};
use vigil_vision::preprocess::crop;
use vigil_worker::{Inference, WorkerDeps, WorkerStats, recommend};

use crate::BenchError;
use crate::pipeline::sample_frame;

/// One worker count.
#[derive(Debug, Clone, Serialize)]
pub struct WorkersRow {
    pub workers: usize,
    pub tasks_per_s: f64,
    /// tasks_per_s / the bare loop's.
    pub vs_bare: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkersBench {
    pub scenario: String,
    pub tasks: usize,
    pub bare_tasks_per_s: f64,
    pub rows: Vec<WorkersRow>,
    /// tasks/s with 2 workers / with 1.
    pub scaling_2_over_1: f64,
    pub min_scaling: f64,
    pub pass: bool,
}

fn err(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Bench(format!("{what}: {e}"))
}

fn decode(e: vigil_proto::DecodeError) -> BenchError {
    BenchError::Setup(format!("bench envelope: {e}"))
}

/// The tasks of one round: envelopes referencing `uri`, replies to `reply_to`.
fn tasks(n: usize, uri: &str, bbox: [f32; 4], reply_to: &str, deadline_ns: i64) -> Vec<QueuedTask> {
    (0..n)
        .map(|i| {
            let task_id = format!("bench/task/{i}");
            let task = v1::ObstacleTask {
                task_id: task_id.clone(),
                priority: 5,
                deadline_ns,
                frame_sensor_id: "camera/front".into(),
                frame_sequence: 0,
                frame_ref: Some(v1::BlobRef { uri: uri.into(), size: 0, sha256: String::new() }),
                camera_box: Some(v1::Box2d { x_min: bbox[0], y_min: bbox[1], x_max: bbox[2], y_max: bbox[3] }),
                track: Some(v1::TrackSummary { track_id: i as u32, x: 20.0, closing: true, ..Default::default() }),
                reply_to: reply_to.into(),
                left_lane_free: true,
                right_lane_free: true,
                attempt: 0,
                frame_layout: None,
            };
            let payload = Payload::ObstacleTask(task);
            let header = v1::Header {
                sequence: i as u64,
                correlation_id: task_id.clone(),
                ..vigil_proto::wire::header("bench", "detector", &payload)
            };
            let bytes = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
            QueuedTask { task_id, priority: 5, deadline_ns, payload: bytes }
        })
        .collect()
}

/// The work of every task in one thread: no broker, no actors.
fn bare_round(model: &Recogniser, frames: &ObjectFrameStore, work: &[QueuedTask]) -> Result<f64, BenchError> {
    let t0 = Instant::now();
    for t in work {
        let env = vigil_proto::decode_envelope(&t.payload).map_err(decode)?;
        let Some(Payload::ObstacleTask(task)) = env.payload else {
            return Err(BenchError::Setup("bench task is not an ObstacleTask".into()));
        };
        let uri = task.frame_ref.as_ref().map(|r| r.uri.clone()).unwrap_or_default();
        let frame = vigil_proto::decode_envelope(&frames.get(&uri)?).map_err(decode)?;
        let Some(Payload::Camera(cam)) = frame.payload else {
            return Err(BenchError::Setup("bench frame is not a camera frame".into()));
        };
        let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else {
            return Err(BenchError::Setup("bench frame has no pixels".into()));
        };
        let b = task.camera_box.unwrap_or_default();
        let c = crop(px, cam.width, cam.height, [b.x_min, b.y_min, b.x_max, b.y_max], [0.0, 0.0], 1.0)?;
        let p = model.classify(std::slice::from_ref(&c))?;
        let p = p.first().ok_or_else(|| BenchError::Setup("no prediction".into()))?;
        let rec = recommend(&task, p.class, p.confidence, &p.probabilities);
        std::hint::black_box(vigil_proto::encode_envelope(&v1::Envelope {
            header: env.header,
            payload: Some(Payload::Recommendation(rec)),
        }));
    }
    Ok(work.len() as f64 / t0.elapsed().as_secs_f64())
}

struct Setup<'a> {
    amqp: &'a AmqpConfig,
    model: &'a Recogniser,
    batcher: BatcherConfig,
    frames: &'a ObjectFrameStore,
    uri: &'a str,
    bbox: [f32; 4],
    n: usize,
    rt: &'a tokio::runtime::Runtime,
}

/// One round with `workers` workers on a fresh queue; tasks/s from the workers' start to
/// the last reply received.
fn workers_round(s: &Setup<'_>, workers: usize, round: usize) -> Result<f64, BenchError> {
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let mut cfg = s.amqp.clone();
    cfg.prefix = format!("{}.wbench{}-{}-{round}", cfg.prefix, std::process::id(), workers);
    cfg.queue_capacity = cfg.queue_capacity.max(s.n as u32 + 16);
    let tasks_t = s.rt.block_on(AmqpTasks::connect(&cfg, clock.clone(), s.rt.handle().clone()))?;
    let reply_to = "bench";
    let deadline = clock.now_ns() + 600_000_000_000;
    let work = tasks(s.n, s.uri, s.bbox, reply_to, deadline);
    let mut replies = s.rt.block_on(tasks_t.replies(reply_to))?;
    s.rt.block_on(async {
        for t in work {
            tasks_t.publish(t).await?;
        }
        Ok::<_, vigil_bus::TransportError>(())
    })?;

    let stats = Arc::new(WorkerStats::default());
    let deps = WorkerDeps {
        clock,
        tasks: Arc::new(tasks_t.clone()),
        frames: Arc::new(s.frames.clone()),
        inference: Inference::start(s.model.clone(), s.batcher, Duration::ZERO)?,
        model_name: s.model.config.name.clone(),
        model_version: s.model.config.version.clone(),
        device: s.model.device_name(),
        stats: stats.clone(),
        faults: Arc::default(),
        answered: Arc::default(),
        trust: Default::default(),
    };
    let t0 = Instant::now();
    let (system, actors) = vigil_pipeline::process::start_worker_system(workers, deps)?;
    let received = s.rt.block_on(async {
        let mut got = 0usize;
        while got < s.n {
            match tokio::time::timeout(Duration::from_secs(60), replies.next()).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(e)) => return Err(err("bench replies", e)),
                Err(_) => break,
            }
        }
        Ok(got)
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    system.stop();
    let _ = actors.join();
    s.rt.block_on(delete_topology(&tasks_t));
    if received < s.n {
        return Err(BenchError::Setup(format!(
            "{workers} worker(s) answered {received} of {} bench tasks in 60 s (answered {}, rejected {})",
            s.n,
            stats.answered.load(Ordering::SeqCst),
            stats.rejected.load(Ordering::SeqCst)
        )));
    }
    Ok(s.n as f64 / elapsed)
}

/// Runs the benchmark; `pass` when 2 workers reach `min_scaling` × the tasks/s of 1.
pub fn workers_bench(
    amqp: &AmqpConfig,
    frames_cfg: &FramesConfig,
    model_dir: &std::path::Path,
    scenario: &Scenario,
    seed: u64,
    n: usize,
    min_scaling: f64,
) -> Result<WorkersBench, BenchError> {
    let (bytes, bbox) = sample_frame(scenario, seed)
        .ok_or_else(|| BenchError::Setup(format!("scenario {} shows no obstacle to benchmark", scenario.name)))?;
    let model = Recogniser::load(model_dir, &default_device())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Bench(e.to_string()))?;
    let frames = ObjectFrameStore::open(&frames_cfg.url, rt.handle().clone())?;
    let uri = frames.put(&format!("bench-workers/{}/camera.env", std::process::id()), bytes)?.uri;
    let s = Setup {
        amqp,
        model: &model,
        batcher: vigil_pipeline::default_batcher(),
        frames: &frames,
        uri: &uri,
        bbox,
        n: n.max(1),
        rt: &rt,
    };
    let bare_work = tasks(s.n, &uri, bbox, "bench", i64::MAX);
    let mut bare = 0f64;
    let mut best = [0f64; 2];
    bare = bare.max(bare_round(&model, &frames, &bare_work)?);
    for (round, workers) in [1usize, 2, 2, 1].into_iter().enumerate() {
        let tps = workers_round(&s, workers, round)?;
        tracing::info!(workers, tasks_per_s = tps, "bench workers round");
        best[workers - 1] = best[workers - 1].max(tps);
    }
    bare = bare.max(bare_round(&model, &frames, &bare_work)?);
    let rows =
        (1..=2).map(|w| WorkersRow { workers: w, tasks_per_s: best[w - 1], vs_bare: best[w - 1] / bare }).collect();
    let scaling = best[1] / best[0];
    Ok(WorkersBench {
        scenario: scenario.name.clone(),
        tasks: s.n,
        bare_tasks_per_s: bare,
        rows,
        scaling_2_over_1: scaling,
        min_scaling,
        pass: scaling >= min_scaling,
    })
}
