//! What a replay compares: the replayed tasks and recommendations, and the recorded
//! recommendations, task times and ground truth of the drive, gathered as the drive's
//! messages stream past (no frame is kept).

use std::collections::{BTreeMap, HashMap};

use vigil_bus::topics;
use vigil_core::Nanos;
use vigil_proto::v1::{self, envelope::Payload};

use crate::drive::{Recorded, header_of};
use crate::score::{class_name, recommendation, task, task_order};

/// Ground truth by (vehicle, camera sensor, frame sequence): the objects in the camera's
/// view only (what scoring and export read).
pub(crate) type GroundTruths = HashMap<(String, String, u64), v1::GroundTruth>;

/// Replayed recommendations in task order (vehicle, number, id).
pub(crate) type Replayed = BTreeMap<(String, u64, String), v1::Recommendation>;

/// What the drive recorded, gathered message by message.
#[derive(Debug, Default)]
pub(crate) struct RecordedSide {
    pub recorded: HashMap<String, v1::Recommendation>,
    pub gt: GroundTruths,
    /// For the timeline: recorded task capture and recommendation publish times, and the
    /// first vehicle's ground-truth objects in the camera's view (id, class, seconds).
    pub recorded_task_ns: HashMap<String, Nanos>,
    pub recorded_answer_ns: HashMap<String, Nanos>,
    pub sightings: Vec<(u32, String, f64)>,
    first_vehicle: String,
    start_ns: Nanos,
}

impl RecordedSide {
    pub fn new(first_vehicle: String, start_ns: Nanos) -> Self {
        Self { first_vehicle, start_ns, ..Self::default() }
    }

    /// Takes what it needs of one recorded message.
    pub fn observe(&mut self, m: &Recorded) {
        let topic = &*m.topic;
        if topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(&m.envelope) {
                if let Some(h) = header_of(&m.envelope) {
                    self.recorded_answer_ns.insert(r.task_id.clone(), h.publish_time_ns);
                }
                self.recorded.insert(r.task_id.clone(), r);
            }
        } else if topic == topics::TASKS {
            if let Some((h, t)) = task(&m.envelope) {
                self.recorded_task_ns.insert(t.task_id, h.capture_time_ns);
            }
        } else if topic == topics::GROUND_TRUTH
            && let Ok(env) = vigil_proto::decode_envelope(&m.envelope)
            && let Some(Payload::GroundTruth(mut g)) = env.payload
            && g.frame_sensor_id.starts_with("camera")
        {
            let v = env.header.map(|h| h.vehicle_id).unwrap_or_default();
            // Kept for every camera frame of the drive: only what scoring and export read
            // (the frame is the key), in no more room than that takes.
            g.objects.retain(|o| o.camera_box.is_some());
            g.objects.shrink_to_fit();
            g.ego = None;
            let sensor = std::mem::take(&mut g.frame_sensor_id);
            if v == self.first_vehicle {
                let t = m.capture_ns.saturating_sub(self.start_ns) as f64 * 1e-9;
                for o in &g.objects {
                    self.sightings.push((o.object_id, class_name(o.class()).to_string(), t));
                }
            }
            self.gt.insert((v, sensor, g.frame_sequence), g);
        }
    }
}

/// The records of a replay and of the drive it replayed.
pub(crate) struct Collected {
    pub replayed: Replayed,
    pub replay_tasks: Vec<(v1::Header, v1::ObstacleTask)>,
    pub side: RecordedSide,
}

/// Reads back what the replay logged (`kept`), next to what the drive recorded.
pub(crate) fn collect(kept: &[(String, Vec<u8>)], side: RecordedSide) -> Collected {
    let mut replayed = Replayed::new();
    let mut replay_tasks = Vec::new();
    for (topic, bytes) in kept {
        if topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(bytes) {
                replayed.insert(task_order(&r.task_id), r);
            }
        } else if let Some(t) = task(bytes) {
            replay_tasks.push(t);
        }
    }
    Collected { replayed, replay_tasks, side }
}
