//! Vigil's messages as a viewer draws them: Foxglove's schemas (`foxglove.*`), for the
//! channels a recording carries beside `vigil.v1.Envelope` and for the live view
//! ([`crate::live`]). One conversion, so a drive looks the same wherever it is opened:
//!
//! | Vigil | topic | schema |
//! |---|---|---|
//! | lidar sweep | `/<vehicle>/lidar` | `foxglove.PointCloud` (the points pass through; frame `<vehicle>`, the sensor's pose) |
//! | camera frame | `/<vehicle>/camera` | `foxglove.CompressedImage`, JPEG, at most [`IMAGE_HZ`] a second, frame `<vehicle>/camera_optical` |
//! | camera intrinsics | `/<vehicle>/camera/calibration` | `foxglove.CameraCalibration`, with each drawn image |
//! | ground truth, camera boxes | `/<vehicle>/camera/truth` | `foxglove.ImageAnnotations` |
//! | ground truth, 3D | `/<vehicle>/truth` | `foxglove.SceneUpdate` (a translucent cube and a label per object, ego frame) |
//! | ego pose, sensor mounts | `/<vehicle>/tf` | `foxglove.FrameTransforms`: `world` → `<vehicle>` → `<vehicle>/lidar`, `<vehicle>/camera` → `<vehicle>/camera_optical` |
//! | obstacle task's track | `/<vehicle>/tracks` | `foxglove.SceneUpdate` (a yellow cube, the time to collision as text) |
//! | recommendation | `/<vehicle>/recommendations` | `foxglove.Log` |
//! | control command | `/<vehicle>/control` | `foxglove.Log` |
//! | recommendation, control | `/<vehicle>/plot` | JSON (`vigil.viewer.Plot`): severity, confidence, inference time, fallback |

mod scene;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use foxglove::Encode;
use foxglove::schemas::{CameraCalibration, CompressedImage, Timestamp};
use vigil_core::Nanos;
use vigil_proto::v1::{self, envelope::Payload};

use crate::FrameStore;

/// Camera frames drawn per second of capture time, at most (JPEG costs; a viewer
/// needs a few).
pub const IMAGE_HZ: f64 = 2.0;
/// JPEG quality of the drawn camera.
const JPEG_QUALITY: u8 = 80;
/// Vehicles drawn, at most (their ids name channels; a hostile input must not make
/// thousands).
pub const MAX_VEHICLES: usize = 64;

/// One message for a viewer: its topic, its schema, how its bytes are encoded
/// (`protobuf` or `json`) and the bytes.
#[derive(Debug, Clone)]
pub struct ViewerMessage {
    pub topic: String,
    pub schema: foxglove::Schema,
    pub encoding: &'static str,
    pub bytes: Vec<u8>,
}

/// Converts Vigil envelopes; remembers what throttling needs. With a frame store, a
/// camera frame that carries a reference (the claim-check over the brokers) is drawn
/// from the store's pixels.
#[derive(Debug, Default)]
pub struct ViewerChannels {
    last_image: HashMap<String, Nanos>,
    vehicles: HashSet<String>,
    frames: Option<Arc<dyn FrameStore>>,
}

/// The channels drawn per vehicle; each topic is `/<vehicle>/<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Lidar,
    Camera,
    Calibration,
    CameraTruth,
    Truth,
    Tf,
    Tracks,
    Recommendations,
    Control,
    Plot,
}

impl Topic {
    pub const ALL: [Topic; 10] = [
        Topic::Lidar,
        Topic::Camera,
        Topic::Calibration,
        Topic::CameraTruth,
        Topic::Truth,
        Topic::Tf,
        Topic::Tracks,
        Topic::Recommendations,
        Topic::Control,
        Topic::Plot,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Topic::Lidar => "lidar",
            Topic::Camera => "camera",
            Topic::Calibration => "camera/calibration",
            Topic::CameraTruth => "camera/truth",
            Topic::Truth => "truth",
            Topic::Tf => "tf",
            Topic::Tracks => "tracks",
            Topic::Recommendations => "recommendations",
            Topic::Control => "control",
            Topic::Plot => "plot",
        }
    }

    pub fn of(self, vehicle: &str) -> String {
        format!("/{vehicle}/{}", self.suffix())
    }

    /// The schema and message encoding of the channel.
    pub fn schema(self) -> Option<(foxglove::Schema, &'static str)> {
        use foxglove::schemas::{FrameTransforms, ImageAnnotations, Log, PointCloud, SceneUpdate};
        let pb = |s: Option<foxglove::Schema>| s.map(|s| (s, "protobuf"));
        match self {
            Topic::Lidar => pb(PointCloud::get_schema()),
            Topic::Camera => pb(CompressedImage::get_schema()),
            Topic::Calibration => pb(CameraCalibration::get_schema()),
            Topic::CameraTruth => pb(ImageAnnotations::get_schema()),
            Topic::Truth | Topic::Tracks => pb(SceneUpdate::get_schema()),
            Topic::Tf => pb(FrameTransforms::get_schema()),
            Topic::Recommendations | Topic::Control => pb(Log::get_schema()),
            Topic::Plot => Some((scene::plot_schema(), "json")),
        }
    }
}

fn message<T: Encode>(topic: String, m: &T) -> Option<ViewerMessage> {
    let schema = T::get_schema()?;
    let mut bytes = Vec::with_capacity(m.encoded_len().unwrap_or(256));
    m.encode(&mut bytes).ok()?;
    Some(ViewerMessage { topic, schema, encoding: "protobuf", bytes })
}

fn stamp(ns: Nanos) -> Option<Timestamp> {
    let ns = ns.max(0);
    Some(Timestamp::new((ns / 1_000_000_000).min(u32::MAX as i64) as u32, (ns % 1_000_000_000) as u32))
}

impl ViewerChannels {
    /// Draws referenced camera frames from `frames`.
    pub fn with_frames(frames: Arc<dyn FrameStore>) -> Self {
        Self { frames: Some(frames), ..Self::default() }
    }

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
            Payload::Lidar(l) => scene::lidar(&vehicle, t, l),
            Payload::Camera(c) => self.camera(&vehicle, t, c, envelope),
            Payload::GroundTruth(g) => scene::truth(&vehicle, t, &g),
            Payload::ObstacleTask(task) => scene::track(&vehicle, t, &task).into_iter().collect(),
            Payload::Recommendation(r) => scene::recommendation(&vehicle, t, &r),
            Payload::Control(c) => scene::control(&vehicle, t, &c),
            _ => Vec::new(),
        }
    }

    /// Whether `vehicle`'s camera is due to be drawn at `t` ([`IMAGE_HZ`]).
    fn image_due(&self, vehicle: &str, t: Nanos) -> bool {
        self.last_image.get(vehicle).is_none_or(|last| t.saturating_sub(*last) >= (1e9 / IMAGE_HZ) as Nanos)
    }

    /// The RGB8 pixels of a camera frame: inline, stored compact (`envelope` expanded),
    /// or by reference in the frame store.
    fn pixels(&self, c: v1::CameraFrame, envelope: &[u8]) -> Option<(v1::CameraFrame, Arc<Vec<u8>>)> {
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
        let mut c = c;
        let pixels = match (c.encoding(), c.pixels.take()) {
            (v1::PixelEncoding::Rgb8, Some(v1::camera_frame::Pixels::Data(d))) => Arc::new(d),
            (v1::PixelEncoding::Rgb8, Some(v1::camera_frame::Pixels::Blob(b))) => {
                self.frames.as_ref()?.get(&b.uri).ok()?
            }
            _ => return None,
        };
        Some((c, pixels))
    }

    /// `envelope`: the frame's own bytes, expanded when stored compact.
    fn camera(&mut self, vehicle: &str, t: Nanos, c: v1::CameraFrame, envelope: &[u8]) -> Vec<ViewerMessage> {
        if !self.image_due(vehicle, t) {
            return Vec::new();
        }
        let Some((c, rgb)) = self.pixels(c, envelope) else { return Vec::new() };
        let (Ok(w), Ok(h)) = (u16::try_from(c.width), u16::try_from(c.height)) else { return Vec::new() };
        if rgb.len() != usize::from(w) * usize::from(h) * 3 {
            return Vec::new();
        }
        let mut jpeg = Vec::new();
        if jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY).encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).is_err()
        {
            return Vec::new();
        }
        self.last_image.insert(vehicle.to_string(), t);
        let frame_id = format!("{vehicle}/camera_optical");
        let image = CompressedImage {
            timestamp: stamp(t),
            frame_id: frame_id.clone(),
            data: jpeg.into(),
            format: "jpeg".into(),
        };
        let mut out: Vec<ViewerMessage> = message(Topic::Camera.of(vehicle), &image).into_iter().collect();
        if let Some(k) = &c.intrinsics {
            let calibration = CameraCalibration {
                timestamp: stamp(t),
                frame_id,
                width: c.width,
                height: c.height,
                distortion_model: "plumb_bob".into(),
                d: vec![0.0; 5],
                k: vec![k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0],
                r: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                p: vec![k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            };
            out.extend(message(Topic::Calibration.of(vehicle), &calibration));
        }
        out.extend(scene::sensor_mount(vehicle, t, "camera", c.sensor_pose.as_ref()));
        out
    }
}
