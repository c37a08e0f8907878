//! Vigil's wire types (`vigil.v1`) and the one strict way to read them.
//!
//! Everything that crosses a process boundary is an [`v1::Envelope`]. Encode with
//! [`encode_envelope`], decode with [`decode_envelope`]: decoding rejects a wrong schema
//! version, truncated bytes, trailing or unknown bytes and oversize fields with a typed
//! [`DecodeError`], and never panics (fuzzed in `fuzz/`).

#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.rs"));
}

pub mod pixels;
pub mod points;
pub mod wire;

use prost::Message;
use v1::envelope::Payload;

/// The schema version this build writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// Bytes per packed lidar point: x, y, z, intensity as f32 LE, ring as u16 LE.
pub const POINT_STRIDE: usize = 18;

/// The serialized `FileDescriptorSet` of `vigil.v1`, for self-describing recordings.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

/// Size limits applied while decoding. The defaults fit every sensor Vigil simulates
/// with a wide margin; a message beyond them is rejected, not truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_string_bytes: usize,
    pub max_lidar_points: usize,
    pub max_image_side: u32,
    pub max_radar_detections: usize,
    pub max_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 << 20,
            max_string_bytes: 512,
            max_lidar_points: 1 << 20,
            max_image_side: 8192,
            max_radar_detections: 4096,
            max_objects: 1024,
        }
    }
}

/// Why bytes could not be read as a Vigil envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a valid vigil.v1 Envelope (truncated or corrupt): {0}")]
    Malformed(String),
    #[error("{consumed} of {total} bytes describe the envelope; the rest are trailing, duplicated or unknown fields")]
    TrailingBytes { consumed: usize, total: usize },
    #[error("envelope has no header")]
    MissingHeader,
    #[error(
        "schema version {found} is not supported (this build reads version {expected}); upgrade the reader or re-encode the data"
    )]
    SchemaVersion { found: u32, expected: u32 },
    #[error("envelope has no payload")]
    MissingPayload,
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("field `{field}` is {size}, over the limit of {limit}")]
    Oversize { field: &'static str, size: usize, limit: usize },
}

/// An envelope's metadata, decoded without its payload.
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<v1::Header>,
}

/// The header of an encoded envelope, read without decoding (or validating) its payload:
/// cheap enough for every message a log or recorder passes on.
pub fn header_of(bytes: &[u8]) -> Option<v1::Header> {
    HeaderOnly::decode(bytes).ok()?.header
}

/// Encodes an envelope to bytes.
pub fn encode_envelope(envelope: &v1::Envelope) -> Vec<u8> {
    envelope.encode_to_vec()
}

/// Decodes and validates an envelope with the default [`Limits`].
pub fn decode_envelope(bytes: &[u8]) -> Result<v1::Envelope, DecodeError> {
    decode_envelope_with(bytes, &Limits::default())
}

/// Decodes and validates an envelope.
pub fn decode_envelope_with(bytes: &[u8], limits: &Limits) -> Result<v1::Envelope, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit: limits.max_message_bytes });
    }
    let envelope = v1::Envelope::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let consumed = envelope.encoded_len();
    if consumed != bytes.len() {
        return Err(DecodeError::TrailingBytes { consumed, total: bytes.len() });
    }
    validate(&envelope, limits)?;
    Ok(envelope)
}

/// The `content_type` a header must carry for a payload.
pub fn content_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::Lidar(_) => "application/x-protobuf; type=vigil.v1.LidarScan",
        Payload::Camera(_) => "application/x-protobuf; type=vigil.v1.CameraFrame",
        Payload::Radar(_) => "application/x-protobuf; type=vigil.v1.RadarScan",
        Payload::GroundTruth(_) => "application/x-protobuf; type=vigil.v1.GroundTruth",
        Payload::ObstacleTask(_) => "application/x-protobuf; type=vigil.v1.ObstacleTask",
        Payload::Recommendation(_) => "application/x-protobuf; type=vigil.v1.Recommendation",
        Payload::Control(_) => "application/x-protobuf; type=vigil.v1.ControlCommand",
    }
}

fn check_len(field: &'static str, size: usize, limit: usize) -> Result<(), DecodeError> {
    if size > limit { Err(DecodeError::Oversize { field, size, limit }) } else { Ok(()) }
}

fn finite(field: &'static str, values: &[f64]) -> Result<(), DecodeError> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(invalid(field, format!("holds {v}; every number must be finite"))),
        None => Ok(()),
    }
}

fn finite_pose(field: &'static str, pose: &Option<v1::Pose>) -> Result<(), DecodeError> {
    match pose {
        Some(v1::Pose { x, y, z, roll, pitch, yaw }) => finite(field, &[*x, *y, *z, *roll, *pitch, *yaw]),
        None => Ok(()),
    }
}

fn finite_box2d(field: &'static str, b: &Option<v1::Box2d>) -> Result<(), DecodeError> {
    match b {
        Some(v1::Box2d { x_min, y_min, x_max, y_max }) => {
            finite(field, &[*x_min as f64, *y_min as f64, *x_max as f64, *y_max as f64])
        }
        None => Ok(()),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidField { field, reason: reason.into() }
}

/// Checks the invariants `decode_envelope` promises. Public so producers can check
/// what they are about to send.
pub fn validate(envelope: &v1::Envelope, limits: &Limits) -> Result<(), DecodeError> {
    let v1::Envelope { header, payload } = envelope;
    let header = header.as_ref().ok_or(DecodeError::MissingHeader)?;
    let v1::Header {
        schema_version,
        vehicle_id,
        sensor_id,
        sequence: _,
        capture_time_ns: _,
        publish_time_ns: _,
        correlation_id,
        content_type: ct,
    } = header;
    if *schema_version != SCHEMA_VERSION {
        return Err(DecodeError::SchemaVersion { found: *schema_version, expected: SCHEMA_VERSION });
    }
    let s = limits.max_string_bytes;
    check_len("header.vehicle_id", vehicle_id.len(), s)?;
    check_len("header.sensor_id", sensor_id.len(), s)?;
    check_len("header.correlation_id", correlation_id.len(), s)?;
    check_len("header.content_type", ct.len(), s)?;
    if vehicle_id.is_empty() {
        return Err(invalid("header.vehicle_id", "must not be empty"));
    }
    let payload = payload.as_ref().ok_or(DecodeError::MissingPayload)?;
    let expected = content_type(payload);
    if ct != expected {
        return Err(invalid("header.content_type", format!("is {ct:?}, payload needs {expected:?}")));
    }
    match payload {
        Payload::Lidar(scan) => validate_lidar(scan, limits),
        Payload::Camera(frame) => validate_camera(frame, limits),
        Payload::Radar(scan) => validate_radar(scan, limits),
        Payload::GroundTruth(gt) => validate_ground_truth(gt, limits),
        Payload::ObstacleTask(task) => validate_task(task, limits),
        Payload::Recommendation(rec) => validate_recommendation(rec, limits),
        Payload::Control(c) => validate_control(c, limits),
    }
}

fn validate_radar(scan: &v1::RadarScan, limits: &Limits) -> Result<(), DecodeError> {
    check_len("radar.detections", scan.detections.len(), limits.max_radar_detections)?;
    finite_pose("radar.sensor_pose", &scan.sensor_pose)?;
    for d in &scan.detections {
        let v1::RadarDetection { range, azimuth, elevation, range_rate, rcs } = *d;
        finite("radar.detections", &[range as f64, azimuth as f64, elevation as f64, range_rate as f64, rcs as f64])?;
    }
    Ok(())
}

fn validate_ground_truth(gt: &v1::GroundTruth, limits: &Limits) -> Result<(), DecodeError> {
    let s = limits.max_string_bytes;
    check_len("ground_truth.frame_sensor_id", gt.frame_sensor_id.len(), s)?;
    check_len("ground_truth.objects", gt.objects.len(), limits.max_objects)?;
    if let Some(v1::EgoState { x, y, speed, acceleration, yaw }) = &gt.ego {
        finite("ground_truth.ego", &[*x, *y, *speed, *acceleration, *yaw])?;
    }
    for o in &gt.objects {
        let v1::GroundTruthObject { object_id: _, class: _, r#box, vx, vy, camera_box, occlusion } = o;
        if let Some(v1::Box3d { x, y, z, length, width, height, yaw }) = r#box {
            finite("ground_truth.objects.box", &[*x, *y, *z, *length, *width, *height, *yaw])?;
        }
        finite("ground_truth.objects", &[*vx, *vy, *occlusion as f64])?;
        finite_box2d("ground_truth.objects.camera_box", camera_box)?;
    }
    Ok(())
}

fn validate_task(task: &v1::ObstacleTask, limits: &Limits) -> Result<(), DecodeError> {
    let s = limits.max_string_bytes;
    check_len("obstacle_task.task_id", task.task_id.len(), s)?;
    check_len("obstacle_task.reply_to", task.reply_to.len(), s)?;
    check_len("obstacle_task.frame_sensor_id", task.frame_sensor_id.len(), s)?;
    if task.priority > 9 {
        return Err(invalid("obstacle_task.priority", format!("is {}, must be 0..=9", task.priority)));
    }
    if task.task_id.is_empty() {
        return Err(invalid("obstacle_task.task_id", "must not be empty"));
    }
    finite_box2d("obstacle_task.camera_box", &task.camera_box)?;
    if let Some(v1::BlobRef { uri, sha256, .. }) = &task.frame_ref {
        check_len("obstacle_task.frame_ref.uri", uri.len(), limits.max_string_bytes)?;
        check_len("obstacle_task.frame_ref.sha256", sha256.len(), 64)?;
    }
    if let Some(l) = &task.frame_layout {
        check_len("obstacle_task.frame_layout.width", l.width as usize, limits.max_image_side as usize)?;
        check_len("obstacle_task.frame_layout.height", l.height as usize, limits.max_image_side as usize)?;
        v1::PixelEncoding::try_from(l.encoding)
            .map_err(|_| invalid("obstacle_task.frame_layout.encoding", format!("unknown value {}", l.encoding)))?;
    }
    if let Some(t) = &task.track {
        let v1::TrackSummary { x, y, vx, vy, time_to_collision_s, lateral_offset_m, .. } = t;
        finite("obstacle_task.track", &[*x, *y, *vx, *vy, *time_to_collision_s, *lateral_offset_m])?;
    }
    Ok(())
}

fn validate_recommendation(rec: &v1::Recommendation, limits: &Limits) -> Result<(), DecodeError> {
    let s = limits.max_string_bytes;
    check_len("recommendation.task_id", rec.task_id.len(), s)?;
    check_len("recommendation.scores", rec.scores.len(), 64)?;
    if rec.task_id.is_empty() {
        return Err(invalid("recommendation.task_id", "must not be empty"));
    }
    finite("recommendation.confidence", &[rec.confidence as f64])?;
    for sc in &rec.scores {
        finite("recommendation.scores", &[sc.probability as f64])?;
    }
    Ok(())
}

fn validate_control(c: &v1::ControlCommand, limits: &Limits) -> Result<(), DecodeError> {
    let s = limits.max_string_bytes;
    check_len("control.task_id", c.task_id.len(), s)?;
    if c.task_id.is_empty() {
        return Err(invalid("control.task_id", "must not be empty"));
    }
    if v1::Action::try_from(c.action).is_err() {
        return Err(invalid("control.action", format!("{} is not a known action", c.action)));
    }
    Ok(())
}

fn validate_lidar(scan: &v1::LidarScan, limits: &Limits) -> Result<(), DecodeError> {
    let n = scan.point_count as usize;
    check_len("lidar.point_count", n, limits.max_lidar_points)?;
    match v1::PointEncoding::try_from(scan.encoding) {
        Ok(v1::PointEncoding::Xyzir) => {}
        // Checked when decoded (`points::decode_points` bounds the output by point_count).
        Ok(v1::PointEncoding::XyzirZstd) => return finite_pose("lidar.sensor_pose", &scan.sensor_pose),
        Err(_) => return Err(invalid("lidar.encoding", format!("unknown value {}", scan.encoding))),
    }
    if scan.points.len() != n * POINT_STRIDE {
        return Err(invalid(
            "lidar.points",
            format!("holds {} bytes, point_count {n} needs {}", scan.points.len(), n * POINT_STRIDE),
        ));
    }
    finite_pose("lidar.sensor_pose", &scan.sensor_pose)?;
    if unpack_points(&scan.points)
        .any(|(x, y, z, i, _)| !(x.is_finite() && y.is_finite() && z.is_finite() && i.is_finite()))
    {
        return Err(invalid("lidar.points", "hold a non-finite coordinate or intensity"));
    }
    Ok(())
}

fn validate_camera(frame: &v1::CameraFrame, limits: &Limits) -> Result<(), DecodeError> {
    finite_pose("camera.sensor_pose", &frame.sensor_pose)?;
    if let Some(v1::CameraIntrinsics { fx, fy, cx, cy }) = &frame.intrinsics {
        finite("camera.intrinsics", &[*fx, *fy, *cx, *cy])?;
    }
    check_len("camera.width", frame.width as usize, limits.max_image_side as usize)?;
    check_len("camera.height", frame.height as usize, limits.max_image_side as usize)?;
    let encoding = v1::PixelEncoding::try_from(frame.encoding)
        .map_err(|_| invalid("camera.encoding", format!("unknown value {}", frame.encoding)))?;
    match (&frame.pixels, encoding) {
        (None, _) => Err(invalid("camera.pixels", "neither inline data nor a blob reference")),
        (Some(v1::camera_frame::Pixels::Data(data)), v1::PixelEncoding::Rgb8) => {
            let need = frame.width as usize * frame.height as usize * 3;
            if data.len() != need {
                return Err(invalid(
                    "camera.data",
                    format!("holds {} bytes, {}x{} rgb8 needs {need}", data.len(), frame.width, frame.height),
                ));
            }
            Ok(())
        }
        (Some(_), v1::PixelEncoding::Unspecified) => Err(invalid("camera.encoding", "unspecified")),
        (Some(v1::camera_frame::Pixels::Blob(blob)), _) => {
            check_len("camera.blob.uri", blob.uri.len(), limits.max_string_bytes)?;
            if blob.sha256.len() != 64 || !blob.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("camera.blob.sha256", "must be 64 hex digits"));
            }
            Ok(())
        }
        (Some(v1::camera_frame::Pixels::Data(_)), v1::PixelEncoding::Png) => Ok(()),
        // Checked when decoded (`pixels::decode_rgb8` bounds the output).
        (Some(v1::camera_frame::Pixels::Data(_)), v1::PixelEncoding::Rgb8Zstd) => Ok(()),
    }
}

/// Reads packed lidar points back as `(x, y, z, intensity, ring)`.
pub fn unpack_points(points: &[u8]) -> impl Iterator<Item = (f32, f32, f32, f32, u16)> + '_ {
    points.chunks_exact(POINT_STRIDE).map(|p| {
        let f = |i: usize| f32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        (f(0), f(4), f(8), f(12), u16::from_le_bytes([p[16], p[17]]))
    })
}

/// Appends one point in the packed layout.
pub fn pack_point(out: &mut Vec<u8>, x: f32, y: f32, z: f32, intensity: f32, ring: u16) {
    out.extend_from_slice(&x.to_le_bytes());
    out.extend_from_slice(&y.to_le_bytes());
    out.extend_from_slice(&z.to_le_bytes());
    out.extend_from_slice(&intensity.to_le_bytes());
    out.extend_from_slice(&ring.to_le_bytes());
}

/// Domain class to wire class.
pub fn class_to_proto(c: vigil_core::ObstacleClass) -> v1::ObstacleClass {
    use vigil_core::ObstacleClass as C;
    match c {
        C::Pedestrian => v1::ObstacleClass::Pedestrian,
        C::Cyclist => v1::ObstacleClass::Cyclist,
        C::Vehicle => v1::ObstacleClass::Vehicle,
        C::Debris => v1::ObstacleClass::Debris,
        C::Animal => v1::ObstacleClass::Animal,
        C::None => v1::ObstacleClass::None,
    }
}

/// Domain action to wire action.
pub fn action_to_proto(a: vigil_core::policy::Action) -> v1::Action {
    use vigil_core::policy::Action as A;
    match a {
        A::BrakeHard => v1::Action::BrakeHard,
        A::Brake => v1::Action::Brake,
        A::SlowDown => v1::Action::SlowDown,
        A::SteerLeft => v1::Action::SteerLeft,
        A::SteerRight => v1::Action::SteerRight,
        A::Continue => v1::Action::Continue,
    }
}

/// Wire action to domain action (unspecified is treated as CONTINUE).
pub fn action_from_proto(a: v1::Action) -> vigil_core::policy::Action {
    use vigil_core::policy::Action as A;
    match a {
        v1::Action::BrakeHard => A::BrakeHard,
        v1::Action::Brake => A::Brake,
        v1::Action::SlowDown => A::SlowDown,
        v1::Action::SteerLeft => A::SteerLeft,
        v1::Action::SteerRight => A::SteerRight,
        v1::Action::Continue | v1::Action::Unspecified => A::Continue,
    }
}
