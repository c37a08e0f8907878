//! What a replay compares: the replayed tasks and recommendations, and the recorded
//! recommendations, task times and ground truth of the drive.

use std::collections::{BTreeMap, HashMap};

use vigil_bus::topics;
use vigil_core::Nanos;
use vigil_proto::v1::{self, envelope::Payload};

use crate::drive::{Drive, header_of};
use crate::score::{class_name, recommendation, task, task_order};

/// Ground truth by (vehicle, camera sensor, frame sequence).
pub(crate) type GroundTruths = HashMap<(String, String, u64), v1::GroundTruth>;

/// Replayed recommendations in task order (vehicle, number, id).
pub(crate) type Replayed = BTreeMap<(String, u64, String), v1::Recommendation>;

/// The records of a replay and of the drive it replayed.
pub(crate) struct Collected {
    pub replayed: Replayed,
    pub replay_tasks: Vec<(v1::Header, v1::ObstacleTask)>,
    pub recorded: HashMap<String, v1::Recommendation>,
    pub gt: GroundTruths,
    /// For the timeline: recorded task capture and recommendation publish times, and the
    /// first vehicle's ground-truth objects in the camera's view (id, class, seconds).
    pub recorded_task_ns: HashMap<String, Nanos>,
    pub recorded_answer_ns: HashMap<String, Nanos>,
    pub sightings: Vec<(u32, String, f64)>,
}

/// Reads back what the replay logged (`kept`) and what the drive recorded.
pub(crate) fn collect(kept: &[(String, Vec<u8>)], drive: &Drive, start_ns: Nanos) -> Collected {
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
    let mut c = Collected {
        replayed,
        replay_tasks,
        recorded: HashMap::new(),
        gt: HashMap::new(),
        recorded_task_ns: HashMap::new(),
        recorded_answer_ns: HashMap::new(),
        sightings: Vec::new(),
    };
    let first_vehicle = drive.vehicles.first().cloned().unwrap_or_default();
    for m in &drive.messages {
        if m.topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(&m.envelope) {
                if let Some(h) = header_of(&m.envelope) {
                    c.recorded_answer_ns.insert(r.task_id.clone(), h.publish_time_ns);
                }
                c.recorded.insert(r.task_id.clone(), r);
            }
        } else if m.topic == topics::TASKS {
            if let Some((h, t)) = task(&m.envelope) {
                c.recorded_task_ns.insert(t.task_id, h.capture_time_ns);
            }
        } else if m.topic == topics::GROUND_TRUTH
            && let Ok(env) = vigil_proto::decode_envelope(&m.envelope)
            && let Some(Payload::GroundTruth(g)) = env.payload
        {
            let v = env.header.map(|h| h.vehicle_id).unwrap_or_default();
            if v == first_vehicle && g.frame_sensor_id.starts_with("camera") {
                let t = (m.capture_ns - start_ns) as f64 * 1e-9;
                for o in g.objects.iter().filter(|o| o.camera_box.is_some()) {
                    c.sightings.push((o.object_id, class_name(o.class()).to_string(), t));
                }
            }
            c.gt.insert((v, g.frame_sensor_id.clone(), g.frame_sequence), g);
        }
    }
    c
}
