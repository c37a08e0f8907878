//! Reading replayed and recorded records back, and scoring a recommendation against the
//! simulator's ground truth.

use vigil_core::ObstacleClass;
use vigil_proto::v1::{self, envelope::Payload};

use crate::report::Score;

/// (task id, action, class, confidence) of a recommendation envelope.
pub(crate) fn recommendation(bytes: &[u8]) -> Option<v1::Recommendation> {
    match vigil_proto::decode_envelope(bytes).ok()?.payload? {
        Payload::Recommendation(r) => Some(r),
        _ => None,
    }
}

pub(crate) fn task(bytes: &[u8]) -> Option<(v1::Header, v1::ObstacleTask)> {
    let env = vigil_proto::decode_envelope(bytes).ok()?;
    match env.payload? {
        Payload::ObstacleTask(t) => Some((env.header.unwrap_or_default(), t)),
        _ => None,
    }
}

/// Orders task ids `<vehicle>/task/<n>` by vehicle, then number.
pub(crate) fn task_order(id: &str) -> (String, u64, String) {
    let (head, n) = id.rsplit_once('/').unwrap_or((id, ""));
    (head.to_string(), n.parse().unwrap_or(u64::MAX), id.to_string())
}

pub(crate) fn class_name(c: v1::ObstacleClass) -> &'static str {
    match c {
        v1::ObstacleClass::Pedestrian => ObstacleClass::Pedestrian.name(),
        v1::ObstacleClass::Cyclist => ObstacleClass::Cyclist.name(),
        v1::ObstacleClass::Vehicle => ObstacleClass::Vehicle.name(),
        v1::ObstacleClass::Debris => ObstacleClass::Debris.name(),
        v1::ObstacleClass::Animal => ObstacleClass::Animal.name(),
        _ => ObstacleClass::None.name(),
    }
}

pub(crate) fn iou(a: &v1::Box2d, b: &v1::Box2d) -> f32 {
    let w = (a.x_max.min(b.x_max) - a.x_min.max(b.x_min)).max(0.0);
    let h = (a.y_max.min(b.y_max) - a.y_min.max(b.y_min)).max(0.0);
    let inter = w * h;
    let area = |r: &v1::Box2d| (r.x_max - r.x_min).max(0.0) * (r.y_max - r.y_min).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

pub(crate) fn score(s: &mut Score, truth: &str, predicted: &str) {
    s.labelled += 1;
    match (truth == "none", predicted == "none") {
        _ if truth == predicted => s.correct += 1,
        (false, true) => s.misses += 1,
        (true, false) => s.false_alarms += 1,
        _ => s.wrong_class += 1,
    }
}
