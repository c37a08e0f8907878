//! What a replay compares: the replayed tasks and recommendations, and the recorded
//! recommendations and task times of the drive, with each replayed task's ground truth,
//! gathered as the drive's messages stream past (no frame is kept, and of the ground truth
//! only a window of the last seconds).

use std::collections::{BTreeMap, HashMap};

use vigil_bus::topics;
use vigil_core::Nanos;
use vigil_proto::v1::{self, envelope::Payload};

use crate::drive::{Recorded, header_of};
use crate::score::{class_name, recommendation, task, task_order};
use crate::timeline::{ObjectSpan, SpanBuilder};
use crate::truth::Truths;

/// Sightings closer than this (seconds) are one span of an object in view.
const SPAN_GAP_S: f64 = 0.25;

/// Replayed recommendations in task order (vehicle, number, id).
pub(crate) type Replayed = BTreeMap<(String, u64, String), v1::Recommendation>;

/// What the drive recorded, gathered message by message.
#[derive(Debug, Default)]
pub(crate) struct RecordedSide {
    pub recorded: HashMap<String, v1::Recommendation>,
    /// The ground truth under each replayed task's box.
    pub truths: Truths,
    /// For the timeline: recorded task capture and recommendation publish times, and when
    /// the first vehicle's camera saw each ground-truth object.
    pub recorded_task_ns: HashMap<String, Nanos>,
    pub recorded_answer_ns: HashMap<String, Nanos>,
    sightings: SpanBuilder,
    first_vehicle: String,
    start_ns: Nanos,
}

impl RecordedSide {
    pub fn new(first_vehicle: String, start_ns: Nanos) -> Self {
        Self { first_vehicle, start_ns, sightings: SpanBuilder::new(SPAN_GAP_S), ..Self::default() }
    }

    /// The first vehicle's objects in view, as spans in time.
    pub fn object_spans(&self) -> Vec<ObjectSpan> {
        self.sightings.spans()
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
            && let Some(Payload::GroundTruth(g)) = env.payload
            && g.frame_sensor_id.starts_with("camera")
        {
            let v = env.header.map(|h| h.vehicle_id).unwrap_or_default();
            if v == self.first_vehicle {
                let t = m.capture_ns.saturating_sub(self.start_ns) as f64 * 1e-9;
                for o in g.objects.iter().filter(|o| o.camera_box.is_some()) {
                    self.sightings.push(o.object_id, class_name(o.class()), t);
                }
            }
            self.truths.frame(m.capture_ns, (v, g.frame_sensor_id, g.frame_sequence), &g.objects);
        }
    }
}

/// The records of a replay and of the drive it replayed, gathered as both stream past.
pub(crate) struct Collected {
    pub replayed: Replayed,
    pub replay_tasks: Vec<(v1::Header, v1::ObstacleTask)>,
    pub side: RecordedSide,
}

impl Collected {
    pub fn new(side: RecordedSide) -> Self {
        Self { replayed: Replayed::new(), replay_tasks: Vec::new(), side }
    }

    /// Takes one record the replay logged: a task (settled against ground truth as it
    /// comes) or a recommendation.
    pub fn replayed(&mut self, topic: &str, bytes: &[u8]) {
        if topic == topics::RECOMMENDATIONS {
            if let Some(r) = recommendation(bytes) {
                self.replayed.insert(task_order(&r.task_id), r);
            }
        } else if let Some((h, t)) = task(bytes) {
            self.side.truths.task(&h.vehicle_id, &t);
            self.replay_tasks.push((h, t));
        }
    }

    /// Puts the replayed tasks in capture order, then task order: the vehicles' actors log
    /// them in whatever order they run, and a replay's report and export must not depend
    /// on that.
    pub fn finish(&mut self) {
        self.replay_tasks.sort_by_cached_key(|(h, t)| (h.capture_time_ns, task_order(&t.task_id)));
    }
}
