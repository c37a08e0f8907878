//! `replay()`: feed, collect, diff, score, timeline, export.

use std::collections::BTreeMap;
use std::time::Instant;

use vigil_core::Nanos;
use vigil_vehicle::node::{NodeStats, Stream};
use vigil_vision::model::{Recogniser, default_device};

use crate::collect::Collected;
use crate::diff::{diff, digest};
use crate::drive::Drive;
use crate::export::{Exported, export};
use crate::feed::feed;
use crate::score::{class_name, task_order};
use crate::timeline::{TaskMark, Timeline};
use crate::{ReplayConfig, ReplayError, ReplayModel, ReplayReport, ReplayTasks, bad};

/// Replays `drive`; see the crate docs.
pub fn replay(drive: &Drive, cfg: &ReplayConfig) -> Result<ReplayReport, ReplayError> {
    if let Some(s) = cfg.speed
        && !(s.is_finite() && s > 0.0)
    {
        return Err(bad(format!("--speed must be a positive multiple of real time, got {s}")));
    }
    let wall_start = Instant::now();
    let model = Recogniser::load(&cfg.model_dir, &default_device())?;
    let model_info = ReplayModel {
        name: model.config.name.clone(),
        version: model.config.version.clone(),
        dir: cfg.model_dir.display().to_string(),
    };
    let fed = feed(drive, cfg, model)?;
    let wall_seconds = wall_start.elapsed().as_secs_f64();

    let collected = &fed.collected;
    let (recommendations_digest, by_action) = digest(&collected.replayed);
    let recorded: crate::collect::Replayed =
        collected.side.recorded.values().map(|r| (task_order(&r.task_id), r.clone())).collect();
    let (recorded_digest, _) = digest(&recorded);
    let diff = diff(collected);
    let timeline = timeline(collected, fed.sim_seconds, fed.start_ns);
    let exported = match &cfg.export_dataset {
        Some(dir) => {
            let what =
                Exported { drive_id: &fed.drive_id, tasks: &collected.replay_tasks, replayed: &collected.replayed };
            export(dir, drive, what, &collected.side.truths, cfg.export_objects_every)?
        }
        None => 0,
    };

    let frames: BTreeMap<String, u64> = Stream::ALL
        .iter()
        .map(|k| (vigil_vehicle::node::stream_label(*k).to_string(), fed.produced[k.index()]))
        .collect();
    let stats = &fed.stats;
    Ok(ReplayReport {
        drive: fed.drive_id.clone(),
        vehicles: drive.vehicles.clone(),
        model: model_info,
        frames,
        tasks: ReplayTasks {
            raised: NodeStats::get(&stats.tasks_raised),
            completed: NodeStats::get(&stats.completed),
            fallback: NodeStats::get(&stats.fallback),
        },
        recommendations: collected.replayed.len() as u64,
        by_action,
        recommendations_digest,
        recorded_digest,
        sim_seconds: fed.sim_seconds,
        wall_seconds,
        speed_factor: if wall_seconds > 0.0 { fed.sim_seconds / wall_seconds } else { 0.0 },
        diff,
        exported,
        read: crate::report::ReadReport::of(&fed.counters),
        timeline,
    })
}

/// The replay on one time axis: objects in view, each task with its recommendation,
/// truth and recorded latency.
fn timeline(c: &Collected, sim_seconds: f64, start_ns: Nanos) -> Timeline {
    let secs = |ns: Nanos| (ns - start_ns) as f64 * 1e-9;
    Timeline {
        duration_s: sim_seconds,
        objects: c.side.object_spans(),
        tasks: c
            .replay_tasks
            .iter()
            .map(|(h, t)| {
                let rec = c.replayed.get(&task_order(&t.task_id));
                let latency = c
                    .side
                    .recorded_task_ns
                    .get(&t.task_id)
                    .zip(c.side.recorded_answer_ns.get(&t.task_id))
                    .map(|(from, to)| (to - from) as f64 * 1e-6);
                TaskMark {
                    task_id: t.task_id.clone(),
                    t_s: secs(h.capture_time_ns),
                    action: rec.map(|r| vigil_proto::action_from_proto(r.action()).name().to_string()),
                    class: rec.map(|r| class_name(r.class()).to_string()),
                    truth: c.side.truths.of(&t.task_id),
                    recorded_latency_ms: latency,
                }
            })
            .collect(),
    }
}
