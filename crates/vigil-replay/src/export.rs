//! `--export-dataset`: a labelled crop per replayed task, and of the visible ground-truth
//! objects, in `vigil train --dataset` format.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use vigil_bus::topics;
use vigil_proto::v1::{self, envelope::Payload};

use crate::ReplayError;
use crate::drive::{Drive, Recorded, header_of};
use crate::score::{class_name, task_order};
use crate::truth::{FrameKey, Truths};
use vigil_core::Nanos;
use vigil_vision::dataset::{DatasetWriter, Label};
use vigil_vision::preprocess::Crop;

/// Ground-truth objects smaller than this (pixels, box height) or more hidden than
/// `MAX_OCCLUSION` are not exported: the simulator's training crops draw the same line.
const MIN_OBJECT_HEIGHT: f32 = vigil_sim::samples::MIN_BOX_HEIGHT;
const MAX_OCCLUSION: f32 = 0.45;

/// The camera frame a recorded message carries, when it carries its pixels inline
/// (decoded to RGB8 when stored compactly).
fn camera_of(m: &Recorded) -> Option<v1::CameraFrame> {
    let expanded = vigil_proto::pixels::expand_camera(&m.envelope).ok()?;
    let env = vigil_proto::decode_envelope(expanded.as_deref().unwrap_or(&m.envelope)).ok()?;
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

/// What the replay gives the export: the drive's name, its tasks and recommendations.
pub(crate) struct Exported<'a> {
    pub drive_id: &'a str,
    pub tasks: &'a [(v1::Header, v1::ObstacleTask)],
    pub replayed: &'a BTreeMap<(String, u64, String), v1::Recommendation>,
}

/// Writes a labelled crop per replayed task: the label from ground truth where the drive
/// has it, else from the replayed recommendation; misses, false alarms and fallbacks
/// (deadline breaches) flagged and weighted up. With `objects_every > 0` and ground truth,
/// also a crop of every visible object of every n-th camera frame (source
/// `ground_truth`, flag `object`). The drive is read once more, a frame at a time, and
/// each crop written as its frame passes (in capture order): a frame's truth is held
/// only until its capture instant has passed, and no crop once written.
pub(crate) fn export(
    dir: &Path,
    drive: &Drive,
    what: Exported<'_>,
    truths: &Truths,
    objects_every: u64,
) -> Result<u64, ReplayError> {
    let mut wanted: HashMap<FrameKey, Vec<usize>> = HashMap::new();
    for (i, (h, t)) in what.tasks.iter().enumerate() {
        wanted.entry((h.vehicle_id.clone(), t.frame_sensor_id.clone(), t.frame_sequence)).or_default().push(i);
    }
    let mut out = DatasetWriter::create(dir)?;
    let mut instant = Instant::default();
    let is_nth = |seq: u64| objects_every > 0 && seq.is_multiple_of(objects_every);
    for m in drive.stream()? {
        let m = m?;
        instant.advance(m.capture_ns);
        if &*m.topic == topics::GROUND_TRUTH {
            if let Some((key, g)) = camera_truth(&m).filter(|(k, _)| is_nth(k.2)) {
                match instant.cameras.remove(&key) {
                    Some(cam) => push_all(&mut out, object_crops(what.drive_id, &key, &cam, &g))?,
                    None => {
                        instant.truths.insert(key, g);
                    }
                }
            }
            continue;
        }
        if &*m.topic != topics::CAMERA {
            continue;
        }
        let Some(h) = header_of(&m.envelope) else { continue };
        let key = (h.vehicle_id, h.sensor_id, h.sequence);
        let for_tasks = wanted.get(&key);
        if for_tasks.is_none() && !is_nth(key.2) {
            continue;
        }
        let Some(cam) = camera_of(&m) else { continue };
        let tasks = for_tasks.into_iter().flatten().filter_map(|&i| task_crop(&what, &cam, i, truths));
        push_all(&mut out, tasks.collect())?;
        if is_nth(key.2) {
            match instant.truths.remove(&key) {
                Some(g) => push_all(&mut out, object_crops(what.drive_id, &key, &cam, &g))?,
                None => {
                    instant.cameras.insert(key, cam);
                }
            }
        }
    }
    Ok(out.finish()? as u64)
}

fn push_all(out: &mut DatasetWriter, items: Vec<(Crop, Label)>) -> Result<(), ReplayError> {
    for (c, label) in &items {
        out.push(c, label)?;
    }
    Ok(())
}

/// The camera frames and camera-frame truth of the current capture instant still waiting
/// for each other (a frame and its truth share their capture time).
#[derive(Default)]
struct Instant {
    at: Nanos,
    cameras: HashMap<FrameKey, v1::CameraFrame>,
    truths: HashMap<FrameKey, v1::GroundTruth>,
}

impl Instant {
    fn advance(&mut self, at: Nanos) {
        if at != self.at {
            self.at = at;
            self.cameras.clear();
            self.truths.clear();
        }
    }
}

/// A camera frame's ground truth, keyed by its frame.
fn camera_truth(m: &Recorded) -> Option<(FrameKey, v1::GroundTruth)> {
    let env = vigil_proto::decode_envelope(&m.envelope).ok()?;
    match env.payload? {
        Payload::GroundTruth(g) if g.frame_sensor_id.starts_with("camera") => {
            let v = env.header.map(|h| h.vehicle_id).unwrap_or_default();
            Some(((v, g.frame_sensor_id.clone(), g.frame_sequence), g))
        }
        _ => None,
    }
}

/// The crop of task `i` in its frame, labelled and flagged.
fn task_crop(what: &Exported<'_>, cam: &v1::CameraFrame, i: usize, truths: &Truths) -> Option<(Crop, Label)> {
    let (h, t) = &what.tasks[i];
    let c = t.camera_box.as_ref().and_then(|b| box_crop(cam, b))?;
    let rec = what.replayed.get(&task_order(&t.task_id));
    let predicted = rec.map(|r| class_name(r.class()).to_string());
    let truth = truths.of(&t.task_id);
    let (class, source) = match (&truth, &predicted) {
        (Some(c), _) => (c.clone(), "ground_truth"),
        (None, Some(p)) => (p.clone(), "recommendation"),
        (None, None) => return None,
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
    provenance.insert("drive".into(), what.drive_id.into());
    provenance.insert("vehicle".into(), h.vehicle_id.clone().into());
    provenance.insert("task".into(), t.task_id.clone().into());
    provenance.insert("frame".into(), format!("{}#{}", t.frame_sensor_id, t.frame_sequence).into());
    if let Some(p) = &predicted {
        provenance.insert("predicted".into(), p.clone().into());
    }
    Some((c, Label { file: String::new(), class, source: source.into(), weight, flags, provenance }))
}

/// A crop of every visible ground-truth object of one camera frame.
fn object_crops(drive_id: &str, key: &FrameKey, cam: &v1::CameraFrame, g: &v1::GroundTruth) -> Vec<(Crop, Label)> {
    let (vehicle, sensor, seq) = key;
    let mut items = Vec::new();
    for o in &g.objects {
        let Some(b) = o.camera_box.as_ref() else { continue };
        if b.y_max - b.y_min < MIN_OBJECT_HEIGHT || o.occlusion > MAX_OCCLUSION {
            continue;
        }
        let Some(c) = box_crop(cam, b) else { continue };
        let mut provenance = serde_json::Map::new();
        provenance.insert("drive".into(), drive_id.into());
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
    items
}
