//! `--export-dataset`: a labelled crop per replayed task, and of the visible ground-truth
//! objects, in `vigil train --dataset` format.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use vigil_bus::topics;
use vigil_proto::v1::{self, envelope::Payload};

use crate::ReplayError;
use crate::drive::{Drive, Recorded, header_of};
use crate::score::{class_name, truth_of};
use vigil_vision::dataset::{Label, write};
use vigil_vision::preprocess::Crop;

/// Ground-truth objects smaller than this (pixels, box height) or more hidden than
/// `MAX_OCCLUSION` are not exported: the simulator's training crops draw the same line.
const MIN_OBJECT_HEIGHT: f32 = vigil_sim::samples::MIN_BOX_HEIGHT;
const MAX_OCCLUSION: f32 = 0.45;

/// The camera frame a recorded message carries, when it carries its pixels inline.
fn camera_of(m: &Recorded) -> Option<v1::CameraFrame> {
    let env = vigil_proto::decode_envelope(&m.envelope).ok()?;
    match env.payload {
        Some(Payload::Camera(cam)) if matches!(cam.pixels, Some(v1::camera_frame::Pixels::Data(_))) => Some(cam),
        _ => None,
    }
}

/// The recogniser's input crop of box `b` in camera frame `cam` (inline pixels).
fn box_crop(cam: &v1::CameraFrame, b: &v1::Box2d) -> Option<vigil_vision::preprocess::Crop> {
    let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else { return None };
    vigil_vision::preprocess::crop(px, cam.width, cam.height, [b.x_min, b.y_min, b.x_max, b.y_max], [0.0, 0.0], 1.0)
        .ok()
}

/// Writes a labelled crop per replayed task: the label from ground truth where the drive
/// has it, else from the replayed recommendation; misses, false alarms and fallbacks
/// (deadline breaches) flagged and weighted up. With `objects_every > 0` and ground truth,
/// also a crop of every visible object of every n-th camera frame (source
/// `ground_truth`, flag `object`).
pub(crate) fn export(
    dir: &Path,
    drive: &Drive,
    tasks: &[(v1::Header, v1::ObstacleTask)],
    replayed: &BTreeMap<(String, u64, String), v1::Recommendation>,
    gt: &HashMap<(String, String, u64), v1::GroundTruth>,
    objects_every: u64,
) -> Result<u64, ReplayError> {
    // Camera frames by (vehicle, sensor, sequence).
    let mut cameras: Cameras<'_> = HashMap::new();
    for m in drive.messages.iter().filter(|m| m.topic == topics::CAMERA) {
        if let Some(h) = header_of(&m.envelope) {
            cameras.insert((h.vehicle_id, h.sensor_id, h.sequence), m);
        }
    }
    let mut items = task_crops(drive, &cameras, tasks, replayed, gt);
    if objects_every > 0 {
        items.extend(object_crops(drive, &cameras, gt, objects_every));
    }
    write(dir, &items)?;
    Ok(items.len() as u64)
}

type Cameras<'a> = HashMap<(String, String, u64), &'a Recorded>;

/// A crop per replayed task whose frame the drive holds, labelled and flagged.
fn task_crops(
    drive: &Drive,
    cameras: &Cameras<'_>,
    tasks: &[(v1::Header, v1::ObstacleTask)],
    replayed: &BTreeMap<(String, u64, String), v1::Recommendation>,
    gt: &HashMap<(String, String, u64), v1::GroundTruth>,
) -> Vec<(Crop, Label)> {
    let mut items = Vec::new();
    let by_id: HashMap<&str, &v1::Recommendation> = replayed.values().map(|r| (r.task_id.as_str(), r)).collect();
    for (h, t) in tasks {
        let key = (h.vehicle_id.clone(), t.frame_sensor_id.clone(), t.frame_sequence);
        let Some(cam) = cameras.get(&key).and_then(|m| camera_of(m)) else { continue };
        let Some(c) = t.camera_box.as_ref().and_then(|b| box_crop(&cam, b)) else { continue };
        let rec = by_id.get(t.task_id.as_str());
        let predicted = rec.map(|r| class_name(r.class()).to_string());
        let truth = truth_of(t, gt, &h.vehicle_id);
        let (class, source) = match (&truth, &predicted) {
            (Some(c), _) => (c.clone(), "ground_truth"),
            (None, Some(p)) => (p.clone(), "recommendation"),
            (None, None) => continue,
        };
        let mut flags = Vec::new();
        if rec.is_none() {
            flags.push("deadline_breach".to_string());
        }
        if let (Some(tr), Some(p)) = (&truth, &predicted) {
            if tr != "none" && p == "none" {
                flags.push("miss".to_string());
            } else if tr == "none" && p != "none" {
                flags.push("false_alarm".to_string());
            } else if tr != p {
                flags.push("wrong_class".to_string());
            }
        }
        let weight = if flags.is_empty() { 1.0 } else { 3.0 };
        let mut provenance = serde_json::Map::new();
        provenance.insert("drive".into(), drive.id.clone().into());
        provenance.insert("vehicle".into(), h.vehicle_id.clone().into());
        provenance.insert("task".into(), t.task_id.clone().into());
        provenance.insert("frame".into(), format!("{}#{}", t.frame_sensor_id, t.frame_sequence).into());
        if let Some(p) = &predicted {
            provenance.insert("predicted".into(), p.clone().into());
        }
        items.push((c, Label { file: String::new(), class, source: source.into(), weight, flags, provenance }));
    }
    items
}

/// A crop of every visible ground-truth object of every `objects_every`-th camera frame.
fn object_crops(
    drive: &Drive,
    cameras: &Cameras<'_>,
    gt: &HashMap<(String, String, u64), v1::GroundTruth>,
    objects_every: u64,
) -> Vec<(Crop, Label)> {
    let mut items = Vec::new();
    let mut frames: Vec<(&(String, String, u64), &&Recorded)> = cameras.iter().collect();
    frames.sort_by_key(|(k, m)| (m.capture_ns, (*k).clone()));
    for ((vehicle, sensor, seq), m) in frames {
        if seq % objects_every != 0 {
            continue;
        }
        let Some(g) = gt.get(&(vehicle.clone(), sensor.clone(), *seq)) else { continue };
        let Some(cam) = camera_of(m) else { continue };
        for o in &g.objects {
            let Some(b) = o.camera_box.as_ref() else { continue };
            if b.y_max - b.y_min < MIN_OBJECT_HEIGHT || o.occlusion > MAX_OCCLUSION {
                continue;
            }
            let Some(c) = box_crop(&cam, b) else { continue };
            let mut provenance = serde_json::Map::new();
            provenance.insert("drive".into(), drive.id.clone().into());
            provenance.insert("vehicle".into(), vehicle.clone().into());
            provenance.insert("frame".into(), format!("{sensor}#{seq}").into());
            provenance.insert("object".into(), o.object_id.into());
            let label = Label {
                file: String::new(),
                class: class_name(o.class()).to_string(),
                source: "ground_truth".into(),
                weight: 1.0,
                flags: vec!["object".into()],
                provenance,
            };
            items.push((c, label));
        }
    }
    items
}
