//! The replay report as a picture: obstacles in view, tasks and their recommendations,
//! and the recorded detect → recommend latency, on one time axis.

use std::path::Path;

use serde::Serialize;
use vigil_plot::Canvas;
use vigil_sim::snapshot::class_style;

use crate::ReplayError;

/// When one ground-truth object was in the camera's view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObjectSpan {
    pub object_id: u32,
    pub class: String,
    /// Seconds from the start of the drive.
    pub from_s: f64,
    pub to_s: f64,
}

/// One task of the replay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskMark {
    pub task_id: String,
    /// Seconds from the start of the drive (the task's frame capture time).
    pub t_s: f64,
    /// The replayed recommendation's action; `None`: no recommendation (fallback).
    pub action: Option<String>,
    pub class: Option<String>,
    /// Ground truth under the task's box, where the drive has it.
    pub truth: Option<String>,
    /// Detect → recommendation at the vehicle, as recorded at the time (ms).
    pub recorded_latency_ms: Option<f64>,
}

/// What the picture shows.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timeline {
    pub duration_s: f64,
    pub objects: Vec<ObjectSpan>,
    pub tasks: Vec<TaskMark>,
}

impl Timeline {
    /// Merges per-frame sightings `(object id, class, t_s)` into spans (a gap of more
    /// than `gap_s` starts a new one).
    pub fn spans(mut seen: Vec<(u32, String, f64)>, gap_s: f64) -> Vec<ObjectSpan> {
        seen.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
        let mut b = SpanBuilder::new(gap_s);
        for (id, class, t) in seen {
            b.push(id, &class, t);
        }
        b.spans()
    }
}

/// Spans built from sightings as they come, in time order per object: one open span per
/// object in view, so what is held grows with the objects seen, not with the frames.
#[derive(Debug, Default)]
pub struct SpanBuilder {
    gap_s: f64,
    open: std::collections::HashMap<u32, ObjectSpan>,
    closed: Vec<ObjectSpan>,
}

impl SpanBuilder {
    pub fn new(gap_s: f64) -> Self {
        Self { gap_s, ..Self::default() }
    }

    /// Object `id` of `class` seen at `t_s` (not before its last sighting).
    pub fn push(&mut self, id: u32, class: &str, t_s: f64) {
        match self.open.get_mut(&id) {
            Some(s) if t_s - s.to_s <= self.gap_s => s.to_s = t_s,
            _ => {
                let span = ObjectSpan { object_id: id, class: class.to_string(), from_s: t_s, to_s: t_s };
                self.closed.extend(self.open.insert(id, span));
            }
        }
    }

    /// Every span so far, by start time, then object.
    pub fn spans(&self) -> Vec<ObjectSpan> {
        let mut out: Vec<ObjectSpan> = self.closed.iter().chain(self.open.values()).cloned().collect();
        out.sort_by(|a, b| a.from_s.total_cmp(&b.from_s).then(a.object_id.cmp(&b.object_id)));
        out
    }
}

fn action_colour(action: Option<&str>) -> [u8; 3] {
    match action {
        Some("BRAKE_HARD") => [200, 0, 0],
        Some("BRAKE") => [240, 110, 0],
        Some("SLOW_DOWN") => [220, 190, 0],
        Some("STEER_LEFT") | Some("STEER_RIGHT") => [40, 90, 220],
        Some("CONTINUE") => [40, 160, 40],
        Some(_) => [120, 120, 120],
        None => [0, 0, 0],
    }
}

fn class_colour(class: &str) -> ([u8; 3], &'static str) {
    let proto = match class {
        "pedestrian" => vigil_proto::v1::ObstacleClass::Pedestrian,
        "cyclist" => vigil_proto::v1::ObstacleClass::Cyclist,
        "vehicle" => vigil_proto::v1::ObstacleClass::Vehicle,
        "debris" => vigil_proto::v1::ObstacleClass::Debris,
        "animal" => vigil_proto::v1::ObstacleClass::Animal,
        _ => vigil_proto::v1::ObstacleClass::Unspecified,
    };
    let (c, name) = class_style(proto as i32);
    // class_style is for dark camera frames; white would vanish here.
    if c == [255, 255, 255] { ([120, 120, 120], "NON") } else { (c, name) }
}

/// The time axis shared by the panels: x pixels of simulated seconds.
struct Axis {
    w: usize,
    left: f64,
    right: f64,
    span: f64,
}

impl Axis {
    fn x(&self, s: f64) -> f64 {
        self.left + (s / self.span).clamp(0.0, 1.0) * (self.w as f64 - self.left - self.right)
    }
}

/// Writes the timeline as a PNG: `title` on top, then three panels.
pub fn timeline_png(t: &Timeline, title: &str, path: &Path) -> Result<(), ReplayError> {
    let rows = t.objects.len().clamp(1, 24);
    let axis = Axis { w: 1100, left: 110.0, right: 20.0, span: t.duration_s.max(1e-3) };
    let row_h = 18.0;
    let obj_top = 60.0;
    let obj_bottom = obj_top + rows as f64 * row_h;
    let task_top = obj_bottom + 40.0;
    let task_bottom = task_top + 50.0;
    let lat_top = task_bottom + 40.0;
    let lat_bottom = lat_top + 160.0;
    let h = (lat_bottom + 60.0) as usize;
    let mut c = Canvas::new(axis.w, h, [255, 255, 255]);
    c.text(10, 10, title, [0, 0, 0], 2);
    objects_panel(&mut c, t, &axis, obj_top, rows, row_h);
    tasks_panel(&mut c, t, &axis, task_top, task_bottom);
    latency_panel(&mut c, t, &axis, lat_top, lat_bottom);
    time_axis(&mut c, &axis, lat_bottom);
    c.write_png(path).map_err(|e| ReplayError::Write { path: path.display().to_string(), reason: e.to_string() })
}

/// Obstacles in view: a bar per object.
fn objects_panel(c: &mut Canvas, t: &Timeline, axis: &Axis, top: f64, rows: usize, row_h: f64) {
    c.text(10, top as i64 - 18, "OBSTACLES IN VIEW (GROUND TRUTH)", [60, 60, 60], 2);
    for (i, o) in t.objects.iter().take(rows).enumerate() {
        let y = top + i as f64 * row_h;
        let (colour, name) = class_colour(&o.class);
        c.text(10, y as i64, &format!("{name} {}", o.object_id), [0, 0, 0], 2);
        let (x0, x1) = (axis.x(o.from_s), axis.x(o.to_s).max(axis.x(o.from_s) + 2.0));
        for dy in 2..(row_h as i64 - 2) {
            c.line(x0, y + dy as f64, x1, y + dy as f64, colour);
        }
    }
}

/// Tasks: one tick each, coloured by the replayed action; a red cross where the
/// predicted class differs from the ground truth. The legend below.
fn tasks_panel(c: &mut Canvas, t: &Timeline, axis: &Axis, top: f64, bottom: f64) {
    c.text(10, top as i64 - 18, "TASKS: ACTION (BLACK: FALLBACK), X: CLASS WRONG", [60, 60, 60], 2);
    for m in &t.tasks {
        let x = axis.x(m.t_s);
        c.line(x, top, x, top + 28.0, action_colour(m.action.as_deref()));
        if let (Some(truth), Some(class)) = (&m.truth, &m.class)
            && truth != class
        {
            c.line(x - 3.0, top + 34.0, x + 3.0, top + 40.0, [220, 0, 0]);
            c.line(x - 3.0, top + 40.0, x + 3.0, top + 34.0, [220, 0, 0]);
        }
    }
    let mut lx = axis.left as i64;
    for (label, a) in [
        ("BRAKE HARD", Some("BRAKE_HARD")),
        ("BRAKE", Some("BRAKE")),
        ("SLOW", Some("SLOW_DOWN")),
        ("STEER", Some("STEER_LEFT")),
        ("CONTINUE", Some("CONTINUE")),
        ("FALLBACK", None),
    ] {
        c.rect(lx as f64, bottom, lx as f64 + 10.0, bottom + 10.0, action_colour(a), 5);
        c.text(lx + 14, bottom as i64, label, [0, 0, 0], 2);
        lx += 14 + 12 * label.len() as i64 + 24;
    }
}

/// Recorded detect → recommend latency per task.
fn latency_panel(c: &mut Canvas, t: &Timeline, axis: &Axis, top: f64, bottom: f64) {
    let left = axis.left;
    let lat: Vec<(f64, f64)> = t.tasks.iter().filter_map(|m| m.recorded_latency_ms.map(|l| (m.t_s, l))).collect();
    let max_ms = lat.iter().map(|p| p.1).fold(10.0f64, f64::max).ceil();
    let y_of = |ms: f64| bottom - (ms / max_ms).clamp(0.0, 1.0) * (bottom - top);
    c.text(10, top as i64 - 18, "DETECT TO RECOMMENDATION AS RECORDED (MS)", [60, 60, 60], 2);
    c.line(left, top, left, bottom, [0, 0, 0]);
    for k in 0..=4 {
        let ms = max_ms * k as f64 / 4.0;
        c.line(left - 4.0, y_of(ms), left, y_of(ms), [0, 0, 0]);
        c.text(50, y_of(ms) as i64 - 6, &format!("{ms:.0}"), [0, 0, 0], 2);
    }
    for (s, ms) in &lat {
        c.disc(axis.x(*s), y_of(*ms), 2.5, [70, 110, 180]);
    }
    if lat.is_empty() {
        c.text(left as i64 + 10, (top + 60.0) as i64, "NONE RECORDED", [120, 120, 120], 2);
    }
}

fn time_axis(c: &mut Canvas, axis: &Axis, y: f64) {
    let (w, span) = (axis.w, axis.span);
    c.line(axis.left, y, w as f64 - axis.right, y, [0, 0, 0]);
    let step = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0].into_iter().find(|s| span / s <= 15.0).unwrap_or(120.0);
    let mut s = 0.0;
    while s <= span + 1e-9 {
        c.line(axis.x(s), y, axis.x(s), y + 5.0, [0, 0, 0]);
        c.text(axis.x(s) as i64 - 6, y as i64 + 10, &format!("{s:.0}"), [0, 0, 0], 2);
        s += step;
    }
    c.text((w / 2) as i64 - 40, y as i64 + 32, "SECONDS", [0, 0, 0], 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_merge_into_spans_and_gaps_split_them() {
        let seen = vec![
            (2, "cyclist".to_string(), 1.0),
            (1, "pedestrian".to_string(), 0.0),
            (1, "pedestrian".to_string(), 0.05),
            (1, "pedestrian".to_string(), 0.10),
            (1, "pedestrian".to_string(), 3.0),
            (2, "cyclist".to_string(), 1.05),
        ];
        let s = Timeline::spans(seen, 0.2);
        let got: Vec<(u32, f64, f64)> = s.iter().map(|o| (o.object_id, o.from_s, o.to_s)).collect();
        assert_eq!(got, vec![(1, 0.0, 0.10), (2, 1.0, 1.05), (1, 3.0, 3.0)]);
    }

    #[test]
    fn timeline_png_is_written() {
        let t = Timeline {
            duration_s: 10.0,
            objects: Timeline::spans(vec![(1, "pedestrian".into(), 1.0), (1, "pedestrian".into(), 4.0)], 5.0),
            tasks: vec![TaskMark {
                task_id: "veh-0000/task/0".into(),
                t_s: 2.0,
                action: Some("BRAKE".into()),
                class: Some("animal".into()),
                truth: Some("pedestrian".into()),
                recorded_latency_ms: Some(12.0),
            }],
        };
        let dir = std::env::temp_dir().join(format!("vigil-timeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.png");
        timeline_png(&t, "TEST", &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
