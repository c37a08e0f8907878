//! The ground truth under each replayed task's box, settled as the drive streams past:
//! only the last few seconds of camera-frame truth are held, so a replay's memory does not
//! grow with the drive.

use std::collections::{HashMap, VecDeque};

use vigil_core::Nanos;
use vigil_proto::v1;

use crate::score::{class_name, iou};

/// (vehicle, camera sensor, frame sequence).
pub(crate) type FrameKey = (String, String, u64);

/// How long a frame's truth waits for a task on it, and a task for its frame's truth, in
/// simulated time. A task names a frame captured moments before it is raised; ten seconds
/// is far beyond any task budget.
const WINDOW_NS: Nanos = 10_000_000_000;

/// The least overlap at which a ground-truth box names the object under a task's box.
const MIN_IOU: f32 = 0.3;

/// Boxes in view of one camera frame, with their classes.
type Boxes = Vec<(v1::Box2d, v1::ObstacleClass)>;

/// Recent camera-frame truth, the tasks still waiting for theirs, and each task's truth.
#[derive(Debug, Default)]
pub(crate) struct Truths {
    frames: HashMap<FrameKey, Boxes>,
    frame_order: VecDeque<(Nanos, FrameKey)>,
    waiting: HashMap<FrameKey, Vec<(String, v1::Box2d)>>,
    waiting_order: VecDeque<(Nanos, FrameKey)>,
    by_task: HashMap<String, String>,
    seen_any: bool,
    latest_ns: Nanos,
}

impl Truths {
    /// Notes the truth of camera frame `key`, captured at `at`, and settles the tasks on it.
    pub fn frame(&mut self, at: Nanos, key: FrameKey, objects: &[v1::GroundTruthObject]) {
        self.seen_any = true;
        self.latest_ns = self.latest_ns.max(at);
        let boxes: Boxes = objects.iter().filter_map(|o| o.camera_box.map(|b| (b, o.class()))).collect();
        for (task_id, b) in self.waiting.remove(&key).unwrap_or_default() {
            self.by_task.insert(task_id, truth_under(&b, &boxes));
        }
        self.frames.insert(key.clone(), boxes);
        self.frame_order.push_back((at, key));
        self.evict();
    }

    /// Notes a replayed task: settled now when its frame's truth is held, else when it comes.
    pub fn task(&mut self, vehicle: &str, t: &v1::ObstacleTask) {
        let Some(b) = t.camera_box else { return };
        let key = (vehicle.to_string(), t.frame_sensor_id.clone(), t.frame_sequence);
        match self.frames.get(&key) {
            Some(boxes) => {
                self.by_task.insert(t.task_id.clone(), truth_under(&b, boxes));
            }
            None => {
                self.waiting.entry(key.clone()).or_default().push((t.task_id.clone(), b));
                self.waiting_order.push_back((self.latest_ns, key));
            }
        }
    }

    /// The class under task `task_id`'s box (`none` when nothing overlaps), where its
    /// frame's truth was seen.
    pub fn of(&self, task_id: &str) -> Option<String> {
        self.by_task.get(task_id).cloned()
    }

    /// Whether the drive holds any camera-frame truth at all.
    pub fn any(&self) -> bool {
        self.seen_any
    }

    fn evict(&mut self) {
        let horizon = self.latest_ns.saturating_sub(WINDOW_NS);
        while self.frame_order.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, k)) = self.frame_order.pop_front() {
                self.frames.remove(&k);
            }
        }
        while self.waiting_order.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, k)) = self.waiting_order.pop_front() {
                self.waiting.remove(&k);
            }
        }
    }

    /// How many frames' truth and waiting tasks are held (bounded by the window).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.frames.len(), self.waiting.len())
    }
}

/// The best-overlapping object's class (IoU ≥ 0.3), else `none`.
fn truth_under(b: &v1::Box2d, boxes: &Boxes) -> String {
    let best =
        boxes.iter().map(|(cb, c)| (iou(b, cb), *c)).filter(|(v, _)| *v >= MIN_IOU).max_by(|x, y| x.0.total_cmp(&y.0));
    best.map_or("none", |(_, c)| class_name(c)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f32) -> v1::Box2d {
        v1::Box2d { x_min: x, y_min: 0.0, x_max: x + 10.0, y_max: 10.0 }
    }

    fn object(x: f32, class: v1::ObstacleClass) -> v1::GroundTruthObject {
        v1::GroundTruthObject { camera_box: Some(bx(x)), class: class as i32, ..Default::default() }
    }

    fn task(id: &str, seq: u64, x: f32) -> v1::ObstacleTask {
        v1::ObstacleTask {
            task_id: id.into(),
            frame_sensor_id: "camera_front".into(),
            frame_sequence: seq,
            camera_box: Some(bx(x)),
            ..Default::default()
        }
    }

    fn key(seq: u64) -> FrameKey {
        ("v1".into(), "camera_front".into(), seq)
    }

    #[test]
    fn a_task_is_settled_whichever_comes_first() {
        let mut t = Truths::default();
        t.frame(0, key(0), &[object(0.0, v1::ObstacleClass::Pedestrian)]);
        t.task("v1", &task("v1/task/1", 0, 1.0));
        t.task("v1", &task("v1/task/2", 1, 100.0));
        assert_eq!(t.of("v1/task/2"), None, "frame 1's truth has not come yet");
        t.frame(1, key(1), &[object(0.0, v1::ObstacleClass::Cyclist)]);
        assert_eq!(t.of("v1/task/1").as_deref(), Some("pedestrian"));
        assert_eq!(t.of("v1/task/2").as_deref(), Some("none"), "nothing under its box");
        assert!(t.any());
    }

    #[test]
    fn held_truth_stays_bounded_however_long_the_drive() {
        let mut t = Truths::default();
        let frame_ns: Nanos = 100_000_000;
        for seq in 0..10_000u64 {
            t.frame(seq as Nanos * frame_ns, key(seq), &[object(0.0, v1::ObstacleClass::Vehicle)]);
            if seq % 7 == 0 {
                // Tasks on frames whose truth never comes wait only as long as the window.
                t.task("v1", &task(&format!("v1/task/{seq}"), seq + 1_000_000, 0.0));
            }
        }
        let (frames, waiting) = t.held();
        let per_window = (WINDOW_NS / frame_ns) as usize + 1;
        assert!(frames <= per_window, "{frames} frames held, the window is {per_window}");
        assert!(waiting <= per_window, "{waiting} tasks waiting");
        t.task("v1", &task("late", 9_999, 0.0));
        assert_eq!(t.of("late").as_deref(), Some("vehicle"));
    }
}
