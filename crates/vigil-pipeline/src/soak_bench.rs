//! `vigil bench soak`: many obstacle tasks through one vehicle node's urgent path
//! (dispatcher → embedded task queue → vision workers → recommendation handler), as a
//! process that runs for months sees them, with resident memory and the latency p99
//! measured window by window. The first window warms up (allocator pools, caches, the
//! workers' first passes) and is reported only; the second is the baseline. A store that
//! grows with every task (an id set, a latency vector) shows as RSS growth, a slower
//! lookup as p99 growth.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_bus::FrameStore;
use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_core::{Clock, Nanos, RunId, VehicleId, WallClock};
use vigil_proto::v1;
use vigil_sim::Scenario;
use vigil_vehicle::node::{NodeStats, RaiseTask, RoadMap, SensorInputs, reply_address, task_id};
use vigil_vehicle::priority::PriorityMode;
use vigil_vision::model::{Recogniser, default_device};

use crate::{Actors, RunError, default_batcher, start_actors};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub tasks: u64,
    /// Tasks per measured window.
    pub window: u64,
    /// Tasks in flight at once (a few vehicles' worth).
    pub in_flight: i64,
    pub workers: usize,
    pub budget_ns: Nanos,
    pub model_dir: std::path::PathBuf,
    pub scenario: Scenario,
    pub seed: u64,
    pub max_rss_growth: f64,
    pub max_p99_growth: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakWindow {
    /// Tasks done when the window closed.
    pub tasks: u64,
    pub rss_mb: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub answered: u64,
    pub fallback: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakBench {
    pub tasks: u64,
    pub tasks_per_s: f64,
    /// Commands the handler sent the ego (answers that asked for an action).
    pub controls: u64,
    pub windows: Vec<SoakWindow>,
    /// Last window against the second (the first warms up): (end − start) / start.
    pub rss_growth: f64,
    pub p99_growth: f64,
    pub max_rss_growth: f64,
    pub max_p99_growth: f64,
    /// Every task ended answered or fallen back.
    pub balanced: bool,
    pub pass: bool,
}

/// Resident memory of this process, megabytes (0 where /proc is absent).
pub fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn soak_bench(cfg: &SoakConfig, mut progress: impl FnMut(&SoakWindow)) -> Result<SoakBench, RunError> {
    if cfg.tasks == 0 || cfg.window == 0 || cfg.tasks < 3 * cfg.window {
        return Err(RunError::Config("--tasks must be at least three windows (--window)".into()));
    }
    let (frame, bbox) = crate::bench::sample_frame(&cfg.scenario, cfg.seed).ok_or_else(|| {
        RunError::Config(format!("scenario {} shows no object big enough to crop", cfg.scenario.name))
    })?;
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let frames = Arc::new(MemoryFrameStore::new(4));
    let vehicle = VehicleId::simulated(0);
    let run = RunId::generate();
    let uri = frames.put(&format!("{vehicle}/{run}/camera_front/0"), Arc::new(frame))?;
    let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(256, 3), clock.clone()));
    let model = Recogniser::load(&cfg.model_dir, &default_device())?;
    let stats = Arc::new(NodeStats::default());
    let (handles_tx, handles_rx) = std::sync::mpsc::channel();
    // Drained as the ego controller would (an undrained channel is a leak of the bench's
    // own: the first version of this bench measured it).
    let (control, control_rx) = std::sync::mpsc::channel();
    let (system, thread) = start_actors(Actors {
        inputs: vec![(vehicle.clone(), SensorInputs(Vec::new()))],
        run: run.clone(),
        road: RoadMap { lanes: 2, lane_width_m: 3.5 },
        perception: true,
        task_budget_ns: cfg.budget_ns,
        workers: cfg.workers,
        model: Some(model),
        batcher: default_batcher(),
        inject_latency: Duration::ZERO,
        faults: Arc::default(),
        clock: clock.clone(),
        log: Arc::new(vigil_bus::embedded::EmbeddedLog::new()),
        frames,
        tasks,
        stats: stats.clone(),
        worker_stats: Arc::default(),
        control,
        priority: PriorityMode::Off,
        handles: Some(handles_tx),
    })?;
    let dispatcher = handles_rx
        .recv_timeout(Duration::from_secs(10))
        .ok()
        .and_then(|h| h.dispatcher)
        .ok_or_else(|| RunError::Actors("the node did not start".into()))?;

    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::SeqCst);
    let settled = |stats: &NodeStats| {
        let waited = Instant::now();
        while stats.outstanding.load(Ordering::SeqCst) > 0 && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    let started = Instant::now();
    let mut windows = Vec::new();
    let mut mark = stats.latencies.mark();
    let (mut answered0, mut fallback0) = (0, 0);
    let mut controls = 0u64;
    for n in 1..=cfg.tasks {
        while stats.outstanding.load(Ordering::SeqCst) >= cfg.in_flight {
            std::thread::sleep(Duration::from_micros(50));
        }
        controls += control_rx.try_iter().count() as u64;
        let now = clock.now_ns();
        let task = v1::ObstacleTask {
            task_id: task_id(&vehicle, &run, n),
            priority: 8,
            deadline_ns: now + cfg.budget_ns,
            frame_sensor_id: "camera_front".into(),
            frame_sequence: 0,
            frame_ref: Some(v1::BlobRef { uri: uri.clone(), size: 0, sha256: String::new() }),
            camera_box: Some(v1::Box2d { x_min: bbox[0], y_min: bbox[1], x_max: bbox[2], y_max: bbox[3] }),
            track: Some(v1::TrackSummary {
                track_id: n as u32,
                x: 20.0,
                time_to_collision_s: 2.0,
                closing: true,
                seen_by_radar: true,
                seen_by_lidar: true,
                ..Default::default()
            }),
            reply_to: reply_address(&vehicle),
            left_lane_free: false,
            right_lane_free: false,
            attempt: 0,
        };
        // What fusion does when it raises a task.
        stats.tasks_raised.fetch_add(1, Ordering::SeqCst);
        stats.outstanding.fetch_add(1, Ordering::SeqCst);
        dispatcher.do_send(RaiseTask { task, capture_ns: now, detected_ns: now, track_id: n as u32, ttc_s: 2.0 });
        if n % cfg.window == 0 {
            settled(&stats);
            let l = stats.latencies.since(&mark);
            mark = stats.latencies.mark();
            let (answered, fallback) = (get(&stats.completed), get(&stats.fallback));
            let w = SoakWindow {
                tasks: n,
                rss_mb: rss_mb(),
                p50_ms: l.p50,
                p99_ms: l.p99,
                answered: answered - answered0,
                fallback: fallback - fallback0,
            };
            (answered0, fallback0) = (answered, fallback);
            progress(&w);
            windows.push(w);
        }
    }
    settled(&stats);
    controls += control_rx.try_iter().count() as u64;
    let elapsed = started.elapsed().as_secs_f64();
    system.stop();
    let _ = thread.join();
    let growth = |a: f64, b: f64| if a > 0.0 { (b - a) / a } else { 0.0 };
    let (first, last) = (&windows[1], &windows[windows.len() - 1]);
    let rss_growth = growth(first.rss_mb, last.rss_mb);
    let p99_growth = growth(first.p99_ms, last.p99_ms);
    let raised = get(&stats.tasks_raised);
    let balanced = raised == get(&stats.completed) + get(&stats.fallback);
    Ok(SoakBench {
        tasks: cfg.tasks,
        tasks_per_s: cfg.tasks as f64 / elapsed.max(1e-9),
        controls,
        rss_growth,
        p99_growth,
        max_rss_growth: cfg.max_rss_growth,
        max_p99_growth: cfg.max_p99_growth,
        balanced,
        pass: balanced && rss_growth < cfg.max_rss_growth && p99_growth < cfg.max_p99_growth,
        windows,
    })
}
