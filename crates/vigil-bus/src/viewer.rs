//! Vigil's messages as a viewer draws them: Foxglove's schemas (`foxglove.*`), for the
//! channels a recording carries beside `vigil.v1.Envelope` (and a live view). One
//! conversion, so a drive looks the same wherever it is opened:
//!
//! | Vigil | topic | schema |
//! |---|---|---|
//! | lidar sweep | `/<vehicle>/lidar` | `foxglove.PointCloud` (the points pass through; frame `<vehicle>`, the sensor's pose) |
//! | camera frame | `/<vehicle>/camera` | `foxglove.CompressedImage`, JPEG, at most [`IMAGE_HZ`] a second |
//! | ground truth, camera boxes | `/<vehicle>/camera/truth` | `foxglove.ImageAnnotations` |
//! | ground truth, 3D | `/<vehicle>/truth` | `foxglove.SceneUpdate` (a cube and a label per object, ego frame) |
//! | recommendation | `/<vehicle>/recommendations` | `foxglove.Log` |

use std::collections::{HashMap, HashSet};

use foxglove::Encode;
use foxglove::schemas::{
    Color, CompressedImage, CubePrimitive, Duration, ImageAnnotations, Log, PackedElementField, Point2, PointCloud,
    PointsAnnotation, Pose, Quaternion, SceneEntity, SceneUpdate, TextPrimitive, Timestamp, Vector3,
};
use vigil_core::Nanos;
use vigil_proto::v1::{self, envelope::Payload};

/// Camera frames drawn per second of capture time, at most (JPEG costs; a viewer
/// needs a few).
pub const IMAGE_HZ: f64 = 2.0;
/// JPEG quality of the drawn camera.
const JPEG_QUALITY: u8 = 80;
/// Vehicles drawn, at most (their ids name channels; a hostile input must not make
/// thousands).
const MAX_VEHICLES: usize = 64;

/// One message for a viewer: its topic, its schema and its encoded bytes.
#[derive(Debug, Clone)]
pub struct ViewerMessage {
    pub topic: String,
    pub schema: foxglove::Schema,
    pub bytes: Vec<u8>,
}

/// Converts Vigil envelopes; remembers what throttling needs.
#[derive(Debug, Default)]
pub struct ViewerChannels {
    last_image: HashMap<String, Nanos>,
    vehicles: HashSet<String>,
}

fn message<T: Encode>(topic: String, m: &T) -> Option<ViewerMessage> {
    let schema = T::get_schema()?;
    let mut bytes = Vec::with_capacity(m.encoded_len().unwrap_or(256));
    m.encode(&mut bytes).ok()?;
    Some(ViewerMessage { topic, schema, bytes })
}

fn stamp(ns: Nanos) -> Option<Timestamp> {
    let ns = ns.max(0);
    Some(Timestamp::new((ns / 1_000_000_000).min(u32::MAX as i64) as u32, (ns % 1_000_000_000) as u32))
}

fn rgba(r: f64, g: f64, b: f64, a: f64) -> Option<Color> {
    Some(Color { r, g, b, a })
}

fn yaw_pose(x: f64, y: f64, z: f64, yaw: f64) -> Option<Pose> {
    let (s, c) = (yaw / 2.0).sin_cos();
    Some(Pose { position: Some(Vector3 { x, y, z }), orientation: Some(Quaternion { x: 0.0, y: 0.0, z: s, w: c }) })
}

/// Roll, pitch, yaw (radians) as a quaternion.
fn pose_of(p: &v1::Pose) -> Option<Pose> {
    let (sr, cr) = (p.roll / 2.0).sin_cos();
    let (sp, cp) = (p.pitch / 2.0).sin_cos();
    let (sy, cy) = (p.yaw / 2.0).sin_cos();
    Some(Pose {
        position: Some(Vector3 { x: p.x, y: p.y, z: p.z }),
        orientation: Some(Quaternion {
            x: sr * cp * cy - cr * sp * sy,
            y: cr * sp * cy + sr * cp * sy,
            z: cr * cp * sy - sr * sp * cy,
            w: cr * cp * cy + sr * sp * sy,
        }),
    })
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

fn class_name(class: v1::ObstacleClass) -> &'static str {
    class.as_str_name().trim_start_matches("OBSTACLE_CLASS_")
}

impl ViewerChannels {
    /// The viewer messages for one Vigil envelope (none for what is not drawn, or what
    /// does not decode).
    pub fn convert(&mut self, envelope: &[u8]) -> Vec<ViewerMessage> {
        // Most camera frames are not drawn: tell from the header alone, before the
        // pixels are copied out.
        if vigil_proto::pixels::is_camera(envelope)
            && vigil_proto::header_of(envelope).is_none_or(|h| !self.image_due(&h.vehicle_id, h.capture_time_ns))
        {
            return Vec::new();
        }
        let Ok(e) = vigil_proto::decode_envelope(envelope) else { return Vec::new() };
        let (Some(h), Some(payload)) = (e.header, e.payload) else { return Vec::new() };
        let vehicle = h.vehicle_id;
        if !self.vehicles.contains(&vehicle) {
            if self.vehicles.len() >= MAX_VEHICLES {
                return Vec::new();
            }
            self.vehicles.insert(vehicle.clone());
        }
        let t = h.capture_time_ns;
        match payload {
            Payload::Lidar(l) => lidar(&vehicle, t, l).into_iter().collect(),
            Payload::Camera(c) => self.camera(&vehicle, t, c, envelope).into_iter().collect(),
            Payload::GroundTruth(g) => truth(&vehicle, t, &g),
            Payload::Recommendation(r) => recommendation(&vehicle, t, &r).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `vehicle`'s camera is due to be drawn at `t` ([`IMAGE_HZ`]).
    fn image_due(&self, vehicle: &str, t: Nanos) -> bool {
        self.last_image.get(vehicle).is_none_or(|last| t.saturating_sub(*last) >= (1e9 / IMAGE_HZ) as Nanos)
    }

    /// `envelope`: the frame's own bytes, expanded when stored compact.
    fn camera(&mut self, vehicle: &str, t: Nanos, c: v1::CameraFrame, envelope: &[u8]) -> Option<ViewerMessage> {
        if !self.image_due(vehicle, t) {
            return None;
        }
        let c = match c.encoding() {
            v1::PixelEncoding::Rgb8Zstd => {
                let rgb = vigil_proto::pixels::expand_camera(envelope).ok()??;
                match vigil_proto::decode_envelope(&rgb).ok()?.payload? {
                    Payload::Camera(c) => c,
                    _ => return None,
                }
            }
            _ => c,
        };
        let rgb = match (c.encoding(), c.pixels) {
            (v1::PixelEncoding::Rgb8, Some(v1::camera_frame::Pixels::Data(d))) => d,
            _ => return None,
        };
        let (w, h) = (u16::try_from(c.width).ok()?, u16::try_from(c.height).ok()?);
        if rgb.len() != usize::from(w) * usize::from(h) * 3 {
            return None;
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY).encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).ok()?;
        self.last_image.insert(vehicle.to_string(), t);
        let image = CompressedImage {
            timestamp: stamp(t),
            frame_id: format!("{vehicle}/camera"),
            data: jpeg.into(),
            format: "jpeg".into(),
        };
        message(format!("/{vehicle}/camera"), &image)
    }
}

fn lidar(vehicle: &str, t: Nanos, l: v1::LidarScan) -> Option<ViewerMessage> {
    let field = |name: &str, offset: u32, ty: foxglove::schemas::packed_element_field::NumericType| {
        PackedElementField { name: name.into(), offset, r#type: ty as i32 }
    };
    use foxglove::schemas::packed_element_field::NumericType::{Float32, Uint16};
    let cloud = PointCloud {
        timestamp: stamp(t),
        frame_id: vehicle.to_string(),
        pose: l.sensor_pose.as_ref().and_then(pose_of),
        point_stride: vigil_proto::POINT_STRIDE as u32,
        fields: vec![
            field("x", 0, Float32),
            field("y", 4, Float32),
            field("z", 8, Float32),
            field("intensity", 12, Float32),
            field("ring", 16, Uint16),
        ],
        data: l.points.into(),
    };
    message(format!("/{vehicle}/lidar"), &cloud)
}

fn truth(vehicle: &str, t: Nanos, g: &v1::GroundTruth) -> Vec<ViewerMessage> {
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
                texts: vec![TextPrimitive {
                    pose: yaw_pose(x.x, x.y, x.z + x.height / 2.0 + 0.5, 0.0),
                    billboard: true,
                    font_size: 14.0,
                    scale_invariant: true,
                    color: rgba(1.0, 1.0, 1.0, 1.0),
                    text: format!("{} #{} (truth)", class_name(class).to_lowercase(), o.object_id),
                }],
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
    [message(format!("/{vehicle}/truth"), &scene), message(format!("/{vehicle}/camera/truth"), &annotations)]
        .into_iter()
        .flatten()
        .collect()
}

fn recommendation(vehicle: &str, t: Nanos, r: &v1::Recommendation) -> Option<ViewerMessage> {
    use foxglove::schemas::log::Level;
    let action = vigil_proto::action_from_proto(r.action());
    let level = match action {
        vigil_core::policy::Action::BrakeHard | vigil_core::policy::Action::Brake => Level::Warning,
        _ => Level::Info,
    };
    let log = Log {
        timestamp: stamp(t),
        level: level as i32,
        message: format!(
            "{} for a {} ({:.0}% sure), task {}",
            action.name(),
            class_name(r.class()).to_lowercase(),
            r.confidence * 100.0,
            r.task_id
        ),
        name: format!("{vehicle}/recommendations"),
        file: String::new(),
        line: 0,
    };
    message(format!("/{vehicle}/recommendations"), &log)
}
