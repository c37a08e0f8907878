//! `vigil bench pipeline`: what the pipeline adds on top of the work it must do.
//!
//! In one process and one run it measures the bare parts on a real simulator frame —
//! fetching and cropping the frame, one inference, one queue hop (publish → take → ack
//! → reply → receive on the embedded transport) — and then the detect→recommend latency
//! of the whole pipeline (`fast` pacing). The overhead is
//! `pipeline p50 / (sum of the parts' p50) − 1`, where inference is one crop through the
//! inference API the workers call (the `Batcher`, alone); the same ratio against a bare
//! forward pass is reported beside it.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, QueuedTask, TaskQueue};
use vigil_bus::{FrameStore, Reply, Settle, TaskTransport};
use vigil_core::ManualClock;
use vigil_proto::v1::{self, envelope::Payload};
use vigil_sim::sim::StreamKind;
use vigil_sim::{Scenario, VehicleSim};
use vigil_vision::model::{Recogniser, default_device};
use vigil_vision::preprocess::crop;

use crate::report::{Percentiles, percentiles};
use crate::{RunConfig, RunError, run};

#[derive(Debug, Clone, Serialize)]
pub struct PipelineBench {
    pub scenario: String,
    pub seed: u64,
    pub repetitions: usize,
    /// Bare parts, milliseconds.
    pub fetch_and_crop_ms: Percentiles,
    /// One forward pass, called directly.
    pub inference_ms: Percentiles,
    /// One crop through the inference API the workers use (`Batcher`: its thread, its
    /// queue, the same settings as `vigil run`), alone.
    pub inference_api_ms: Percentiles,
    pub queue_hop_ms: Percentiles,
    /// fetch+crop + inference API + queue hop (p50s): what a task must cost.
    pub parts_p50_sum_ms: f64,
    /// The same with the bare forward pass instead of the inference API.
    pub parts_bare_forward_p50_sum_ms: f64,
    /// The whole pipeline, detect → recommendation at the vehicle, milliseconds.
    pub pipeline_ms: Percentiles,
    /// pipeline p50 / parts p50 sum − 1.
    pub overhead: f64,
    /// pipeline p50 / bare-forward parts sum − 1 (reported, not gated).
    pub overhead_vs_bare_forward: f64,
    pub max_overhead: f64,
    pub pass: bool,
}

fn time_ms(reps: usize, mut f: impl FnMut()) -> Percentiles {
    for _ in 0..reps.min(20) {
        f();
    }
    let v = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    percentiles(v)
}

/// A camera frame with a visible obstacle box, from the simulator.
fn sample_frame(scenario: &Scenario, seed: u64) -> Option<(Vec<u8>, [f32; 4])> {
    let mut sim = VehicleSim::new(scenario, 0, seed, 3_000_000_000);
    let mut batch = Vec::new();
    while sim.step(&mut batch).is_some() {
        let mut frame = None;
        for m in batch.drain(..) {
            match (&m.kind, &m.envelope.payload) {
                (StreamKind::Camera, _) => frame = Some(m.encode()),
                (StreamKind::GroundTruth, Some(Payload::GroundTruth(gt)))
                    if gt.frame_sensor_id.starts_with("camera") =>
                {
                    let b = gt.objects.iter().filter_map(|o| o.camera_box).find(|b| b.y_max - b.y_min > 30.0);
                    if let (Some(f), Some(b)) = (frame.take(), b) {
                        return Some((f, [b.x_min, b.y_min, b.x_max, b.y_max]));
                    }
                }
                _ => {}
            }
        }
    }
    None
}

fn queue_hop(tasks: &EmbeddedTasks, reps: usize) -> Result<Percentiles, RunError> {
    let rt = || {
        tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| RunError::Actors(e.to_string()))
    };
    let total = reps + 20;
    let worker = {
        let tasks = tasks.clone();
        let rt = rt()?;
        std::thread::spawn(move || {
            rt.block_on(async {
                let mut consumer = tasks.consume("bench").await?;
                for _ in 0..total {
                    let d = consumer.next().await?;
                    let reply = Reply { correlation_id: d.task.task_id.clone(), payload: vec![9u8; 160] };
                    tasks.reply("bench.replies", reply).await?;
                    d.settle(Settle::Ack).await?;
                }
                Ok::<_, vigil_bus::TransportError>(())
            })
        })
    };
    let samples = rt()?.block_on(async {
        let mut replies = tasks.replies("bench.replies").await?;
        let mut samples = Vec::with_capacity(reps);
        for i in 0..total {
            let t = Instant::now();
            let task =
                QueuedTask { task_id: format!("t{i}"), priority: 5, deadline_ns: i64::MAX, payload: vec![7u8; 220] };
            tasks.publish(task).await?;
            std::hint::black_box(replies.next().await?);
            if i >= 20 {
                samples.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok::<_, RunError>(samples)
    })?;
    worker.join().map_err(|_| RunError::Actors("bench worker panicked".into()))??;
    Ok(percentiles(samples))
}

pub fn pipeline_bench(base: RunConfig, reps: usize, max_overhead: f64) -> Result<PipelineBench, RunError> {
    let (bytes, bbox) = sample_frame(&base.scenario, base.seed)
        .ok_or_else(|| RunError::Config(format!("scenario {} shows no obstacle to benchmark", base.scenario.name)))?;
    let model = Recogniser::load(&base.model_dir, &default_device())?;

    // Fetch + decode + crop.
    let store = MemoryFrameStore::new(4);
    let uri = store.put("bench/camera/0", Arc::new(bytes))?;
    let do_crop = || -> Option<vigil_vision::preprocess::Crop> {
        let b = store.get(&uri).ok()?;
        let env = vigil_proto::decode_envelope(&b).ok()?;
        let Some(Payload::Camera(cam)) = env.payload else { return None };
        let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else { return None };
        crop(px, cam.width, cam.height, bbox, [0.0, 0.0], 1.0).ok()
    };
    let one = do_crop().ok_or_else(|| RunError::Config("benchmark frame did not crop".into()))?;
    let fetch_and_crop_ms = time_ms(reps, || {
        std::hint::black_box(do_crop());
    });

    // One inference.
    let inference_ms = time_ms(reps, || {
        std::hint::black_box(model.classify(std::slice::from_ref(&one)).ok());
    });

    // One crop through the workers' inference API.
    let batcher = vigil_vision::batcher::Batcher::spawn(model.clone(), base.batcher)?;
    let inference_api_ms = time_ms(reps, || {
        std::hint::black_box(batcher.classify(one.clone()).ok());
    });
    drop(batcher);

    // One queue hop: the vehicle side publishes and waits for the reply; a worker on
    // another thread takes, replies and acks (the hop is always between threads).
    let tasks = EmbeddedTasks::new(TaskQueue::new(16, 3), Arc::new(ManualClock::new(0)));
    let queue_hop_ms = queue_hop(&tasks, reps)?;

    // The pipeline itself, over three seeds (a few dozen tasks each).
    let mut cfg = base;
    cfg.fast = true;
    cfg.perception = true;
    let mut all = Vec::new();
    for seed in cfg.seed..cfg.seed + 3 {
        let report = run(RunConfig { seed, ..cfg.clone() })?;
        all.extend(report.latency_samples_ms);
    }
    let pipeline_ms = percentiles(all);
    if pipeline_ms.samples == 0 {
        return Err(RunError::Config(format!("{} raised no task to time", cfg.scenario.name)));
    }
    let parts = fetch_and_crop_ms.p50 + inference_api_ms.p50 + queue_hop_ms.p50;
    let bare = fetch_and_crop_ms.p50 + inference_ms.p50 + queue_hop_ms.p50;
    let overhead = pipeline_ms.p50 / parts - 1.0;
    let overhead_vs_bare_forward = pipeline_ms.p50 / bare - 1.0;
    Ok(PipelineBench {
        scenario: cfg.scenario.name.clone(),
        seed: cfg.seed,
        repetitions: reps,
        fetch_and_crop_ms,
        inference_ms,
        inference_api_ms,
        queue_hop_ms,
        parts_p50_sum_ms: parts,
        parts_bare_forward_p50_sum_ms: bare,
        pipeline_ms,
        overhead,
        overhead_vs_bare_forward,
        max_overhead,
        pass: overhead < max_overhead,
    })
}
