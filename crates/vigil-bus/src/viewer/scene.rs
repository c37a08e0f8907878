//! The 3D scene, the transforms and the logs of [`super`].

use foxglove::schemas::packed_element_field::NumericType;
use foxglove::schemas::{
    Color, CubePrimitive, Duration, FrameTransform, FrameTransforms, ImageAnnotations, Log, PackedElementField, Point2,
    PointCloud, PointsAnnotation, Pose, Quaternion, SceneEntity, SceneUpdate, TextPrimitive, Vector3,
};
use vigil_core::Nanos;
use vigil_core::policy::Action;
use vigil_proto::v1;

use super::{Topic, ViewerMessage, message, stamp};

/// The world frame the ego pose is given in.
pub const WORLD_FRAME: &str = "world";

fn rgba(r: f64, g: f64, b: f64, a: f64) -> Option<Color> {
    Some(Color { r, g, b, a })
}

fn yaw_quaternion(yaw: f64) -> Quaternion {
    let (s, c) = (yaw / 2.0).sin_cos();
    Quaternion { x: 0.0, y: 0.0, z: s, w: c }
}

fn yaw_pose(x: f64, y: f64, z: f64, yaw: f64) -> Option<Pose> {
    Some(Pose { position: Some(Vector3 { x, y, z }), orientation: Some(yaw_quaternion(yaw)) })
}

/// Roll, pitch, yaw (radians) as a quaternion.
fn rotation_of(p: &v1::Pose) -> Quaternion {
    let (sr, cr) = (p.roll / 2.0).sin_cos();
    let (sp, cp) = (p.pitch / 2.0).sin_cos();
    let (sy, cy) = (p.yaw / 2.0).sin_cos();
    Quaternion {
        x: sr * cp * cy - cr * sp * sy,
        y: cr * sp * cy + sr * cp * sy,
        z: cr * cp * sy - sr * sp * cy,
        w: cr * cp * cy + sr * sp * sy,
    }
}

fn pose_of(p: &v1::Pose) -> Option<Pose> {
    Some(Pose { position: Some(Vector3 { x: p.x, y: p.y, z: p.z }), orientation: Some(rotation_of(p)) })
}

fn transform(t: Nanos, parent: String, child: String, at: Vector3, rotation: Quaternion) -> FrameTransform {
    FrameTransform {
        timestamp: stamp(t),
        parent_frame_id: parent,
        child_frame_id: child,
        translation: Some(at),
        rotation: Some(rotation),
    }
}

fn transforms(vehicle: &str, list: Vec<FrameTransform>) -> Option<ViewerMessage> {
    message(Topic::Tf.of(vehicle), &FrameTransforms { transforms: list })
}

/// `<vehicle>` → `<vehicle>/<sensor>` from the sensor's mount; for the camera also
/// its optical frame (z forward, x right, y down), which images are drawn in.
pub(super) fn sensor_mount(vehicle: &str, t: Nanos, sensor: &str, pose: Option<&v1::Pose>) -> Option<ViewerMessage> {
    let p = pose.cloned().unwrap_or_default();
    let child = format!("{vehicle}/{sensor}");
    let mut list =
        vec![transform(t, vehicle.to_string(), child.clone(), Vector3 { x: p.x, y: p.y, z: p.z }, rotation_of(&p))];
    if sensor == "camera" {
        let optical = Quaternion { x: -0.5, y: 0.5, z: -0.5, w: 0.5 };
        list.push(transform(t, child, format!("{vehicle}/camera_optical"), Vector3::default(), optical));
    }
    transforms(vehicle, list)
}

pub(super) fn lidar(vehicle: &str, t: Nanos, mut l: v1::LidarScan) -> Vec<ViewerMessage> {
    let field =
        |name: &str, offset: u32, ty: NumericType| PackedElementField { name: name.into(), offset, r#type: ty as i32 };
    let mount = sensor_mount(vehicle, t, "lidar", l.sensor_pose.as_ref());
    let points = match vigil_proto::points::raw_points(&l) {
        Ok(std::borrow::Cow::Owned(decoded)) => decoded,
        Ok(std::borrow::Cow::Borrowed(_)) => std::mem::take(&mut l.points),
        Err(_) => return mount.into_iter().collect(),
    };
    let cloud = PointCloud {
        timestamp: stamp(t),
        frame_id: vehicle.to_string(),
        pose: l.sensor_pose.as_ref().and_then(pose_of),
        point_stride: vigil_proto::POINT_STRIDE as u32,
        fields: vec![
            field("x", 0, NumericType::Float32),
            field("y", 4, NumericType::Float32),
            field("z", 8, NumericType::Float32),
            field("intensity", 12, NumericType::Float32),
            field("ring", 16, NumericType::Uint16),
        ],
        data: points.into(),
    };
    [message(Topic::Lidar.of(vehicle), &cloud), mount].into_iter().flatten().collect()
}

/// A class's colour in the viewer (ground truth is drawn translucent).
fn class_colour(class: v1::ObstacleClass) -> (f64, f64, f64) {
    match class {
        v1::ObstacleClass::Pedestrian => (1.0, 0.3, 0.3),
        v1::ObstacleClass::Cyclist => (1.0, 0.6, 0.1),
        v1::ObstacleClass::Vehicle => (0.3, 0.6, 1.0),
        v1::ObstacleClass::Debris => (0.7, 0.7, 0.7),
        v1::ObstacleClass::Animal => (0.6, 0.4, 0.2),
        _ => (0.9, 0.9, 0.9),
    }
}

fn class_name(class: v1::ObstacleClass) -> String {
    class.as_str_name().trim_start_matches("OBSTACLE_CLASS_").to_lowercase()
}

fn label(x: f64, y: f64, z: f64, text: String) -> TextPrimitive {
    TextPrimitive {
        pose: yaw_pose(x, y, z, 0.0),
        billboard: true,
        font_size: 14.0,
        scale_invariant: true,
        color: rgba(1.0, 1.0, 1.0, 1.0),
        text,
    }
}

pub(super) fn truth(vehicle: &str, t: Nanos, g: &v1::GroundTruth) -> Vec<ViewerMessage> {
    let mut entities = Vec::new();
    let mut boxes = Vec::new();
    for o in &g.objects {
        let class = o.class();
        let (r, gr, b) = class_colour(class);
        if let Some(x) = &o.r#box {
            entities.push(SceneEntity {
                timestamp: stamp(t),
                frame_id: vehicle.to_string(),
                id: format!("truth-{}", o.object_id),
                lifetime: Some(Duration::new(0, 300_000_000)),
                cubes: vec![CubePrimitive {
                    pose: yaw_pose(x.x, x.y, x.z, x.yaw),
                    size: Some(Vector3 { x: x.length, y: x.width, z: x.height }),
                    color: rgba(r, gr, b, 0.35),
                }],
                texts: vec![label(
                    x.x,
                    x.y,
                    x.z + x.height / 2.0 + 0.5,
                    format!("{} #{} (truth)", class_name(class), o.object_id),
                )],
                ..Default::default()
            });
        }
        if let Some(c) = &o.camera_box {
            let p = |x: f32, y: f32| Point2 { x: f64::from(x), y: f64::from(y) };
            boxes.push(PointsAnnotation {
                timestamp: stamp(t),
                r#type: foxglove::schemas::points_annotation::Type::LineLoop as i32,
                points: vec![p(c.x_min, c.y_min), p(c.x_max, c.y_min), p(c.x_max, c.y_max), p(c.x_min, c.y_max)],
                outline_color: rgba(r, gr, b, 1.0),
                thickness: 2.0,
                ..Default::default()
            });
        }
    }
    let scene = SceneUpdate { deletions: Vec::new(), entities };
    let annotations = ImageAnnotations { points: boxes, ..Default::default() };
    let ego = g.ego.as_ref().map(|e| {
        let at = Vector3 { x: e.x, y: e.y, z: 0.0 };
        transforms(vehicle, vec![transform(t, WORLD_FRAME.into(), vehicle.to_string(), at, yaw_quaternion(e.yaw))])
    });
    // Only the camera frame's truth is drawn on the image: an empty set from another
    // sensor's would wipe the boxes off it.
    let on_image =
        g.frame_sensor_id.starts_with("camera").then(|| message(Topic::CameraTruth.of(vehicle), &annotations));
    [message(Topic::Truth.of(vehicle), &scene)].into_iter().chain(on_image).chain(ego).flatten().collect()
}

/// The track an obstacle task was raised for: what the vehicle believed, in yellow
/// beside the truth, with its time to collision.
pub(super) fn track(vehicle: &str, t: Nanos, task: &v1::ObstacleTask) -> Option<ViewerMessage> {
    let k = task.track.as_ref()?;
    let ttc = if k.closing && k.time_to_collision_s > 0.0 {
        format!("TTC {:.1} s", k.time_to_collision_s)
    } else {
        "not closing".to_string()
    };
    let entity = SceneEntity {
        timestamp: stamp(t),
        frame_id: vehicle.to_string(),
        id: format!("track-{}", k.track_id),
        lifetime: Some(Duration::new(0, 500_000_000)),
        cubes: vec![CubePrimitive {
            pose: yaw_pose(k.x, k.y, 0.8, k.vy.atan2(k.vx)),
            size: Some(Vector3 { x: 1.0, y: 1.0, z: 1.6 }),
            color: rgba(1.0, 0.85, 0.0, 0.8),
        }],
        texts: vec![label(k.x, k.y, 2.2, format!("track {} · {ttc}", k.track_id))],
        ..Default::default()
    };
    message(Topic::Tracks.of(vehicle), &SceneUpdate { deletions: Vec::new(), entities: vec![entity] })
}

fn log(vehicle: &str, t: Nanos, topic: Topic, action: Action, text: String) -> Option<ViewerMessage> {
    use foxglove::schemas::log::Level;
    let level = match action {
        Action::BrakeHard | Action::Brake => Level::Warning,
        _ => Level::Info,
    };
    let log = Log {
        timestamp: stamp(t),
        level: level as i32,
        message: text,
        name: format!("{vehicle}/{}", topic.suffix()),
        file: String::new(),
        line: 0,
    };
    message(topic.of(vehicle), &log)
}

/// How hard an action acts, for plotting: 0 continue … 5 brake hard.
fn severity(action: Action) -> u8 {
    match action {
        Action::Continue => 0,
        Action::SteerLeft | Action::SteerRight => 1,
        Action::SlowDown => 2,
        Action::Brake => 4,
        Action::BrakeHard => 5,
    }
}

/// The JSON schema of `/<vehicle>/plot`.
const PLOT_SCHEMA: &str = r#"{"title":"vigil.viewer.Plot","type":"object","properties":{"source":{"type":"string"},"action":{"type":"string"},"severity":{"type":"integer"},"confidence":{"type":"number"},"inference_ms":{"type":"number"},"fallback":{"type":"boolean"}}}"#;

pub(super) fn plot_schema() -> foxglove::Schema {
    foxglove::Schema::new("vigil.viewer.Plot", "jsonschema", PLOT_SCHEMA.as_bytes())
}

fn plot(vehicle: &str, value: serde_json::Value) -> Option<ViewerMessage> {
    Some(ViewerMessage {
        topic: Topic::Plot.of(vehicle),
        schema: plot_schema(),
        encoding: "json",
        bytes: serde_json::to_vec(&value).ok()?,
    })
}

pub(super) fn recommendation(vehicle: &str, t: Nanos, r: &v1::Recommendation) -> Vec<ViewerMessage> {
    let action = vigil_proto::action_from_proto(r.action());
    let text = format!(
        "{} for a {} ({:.0}% sure), task {}",
        action.name(),
        class_name(r.class()),
        r.confidence * 100.0,
        r.task_id
    );
    let value = serde_json::json!({
        "source": "recommendation",
        "action": action.name(),
        "severity": severity(action),
        "confidence": r.confidence,
        "inference_ms": r.inference_ns as f64 / 1e6,
    });
    [log(vehicle, t, Topic::Recommendations, action, text), plot(vehicle, value)].into_iter().flatten().collect()
}

pub(super) fn control(vehicle: &str, t: Nanos, c: &v1::ControlCommand) -> Vec<ViewerMessage> {
    let action = vigil_proto::action_from_proto(c.action());
    let how = if c.fallback { " (fallback: no answer in time)" } else { "" };
    let text = format!("{} applied{how}, task {}", action.name(), c.task_id);
    let value = serde_json::json!({
        "source": "control",
        "action": action.name(),
        "severity": severity(action),
        "fallback": c.fallback,
    });
    [log(vehicle, t, Topic::Control, action, text), plot(vehicle, value)].into_iter().flatten().collect()
}
