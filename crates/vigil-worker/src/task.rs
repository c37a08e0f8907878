//! A task's pure steps: why one fails, fetching and cropping its frame, and the
//! recommendation for a prediction.

use vigil_bus::trust::TaskTrust;
use vigil_bus::{FrameStore, TaskDelivery, TransportError};
use vigil_core::ObstacleClass;
use vigil_core::policy::{Situation, decide, path_offset, required_decel};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_proto::{action_to_proto, class_to_proto};
use vigil_vision::preprocess::{Crop, crop};

/// Why a task could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task payload: {0}")]
    Decode(#[from] vigil_proto::DecodeError),
    #[error("task {0} is malformed: {1}")]
    Malformed(String, &'static str),
    #[error("task {0} is refused: {1}")]
    Untrusted(String, &'static str),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Vision(#[from] vigil_vision::VisionError),
}

impl TaskError {
    /// Whether a retry could succeed (a frame not yet in the store, a broker hiccup);
    /// a malformed task is dead-lettered at once instead.
    pub fn is_transient(&self) -> bool {
        match self {
            TaskError::Decode(_) | TaskError::Malformed(..) | TaskError::Untrusted(..) => false,
            TaskError::Transport(TransportError::Invalid { .. }) => false,
            TaskError::Transport(_) => true,
            // In preparing, only the crop: a bad box fails the same way every time.
            TaskError::Vision(_) => false,
        }
    }
}

/// The decoded, cropped task, ready for inference.
pub(crate) struct Prepared {
    pub(crate) vehicle: String,
    pub(crate) task: v1::ObstacleTask,
    pub(crate) crop: Crop,
}

/// The longest task id or reply address a worker accepts: AMQP carries ids and queue
/// names as short strings of at most 255 bytes, and the reply queue's name adds a prefix.
pub const MAX_ID_BYTES: usize = 200;

pub(crate) fn fetch_and_crop(
    delivery: &TaskDelivery,
    frames: &dyn FrameStore,
    trust: &TaskTrust,
) -> Result<Prepared, TaskError> {
    let env = vigil_proto::decode_envelope(&delivery.task.payload)?;
    let vehicle = env.header.map(|h| h.vehicle_id).unwrap_or_default();
    // Before anything that could retry it: a retry would be republished as the worker's.
    trust
        .vet(delivery.publisher.as_deref(), &vehicle)
        .map_err(|why| TaskError::Untrusted(delivery.task.task_id.chars().take(40).collect(), why))?;
    let Some(Payload::ObstacleTask(task)) = env.payload else {
        return Err(TaskError::Malformed(delivery.task.task_id.clone(), "payload is not an ObstacleTask"));
    };
    let short = |id: &str| id.chars().take(40).collect::<String>();
    if task.task_id.is_empty() || task.task_id.len() > MAX_ID_BYTES {
        return Err(TaskError::Malformed(short(&task.task_id), "task_id is empty or over 200 bytes"));
    }
    if task.reply_to.is_empty() || task.reply_to.len() > MAX_ID_BYTES {
        return Err(TaskError::Malformed(short(&task.task_id), "reply_to is empty or over 200 bytes"));
    }
    // A worker answers the vehicle that asked, never an address a task chose for it.
    if task.reply_to != vigil_bus::reply_address(&vehicle) {
        return Err(TaskError::Malformed(short(&task.task_id), "reply_to is not the sending vehicle's reply address"));
    }
    let blob = task.frame_ref.as_ref().ok_or(TaskError::Malformed(short(&task.task_id), "no frame reference"))?;
    let bytes = frames.get(&blob.uri)?;
    let b = task.camera_box.ok_or(TaskError::Malformed(task.task_id.clone(), "no camera box"))?;
    let bbox = [b.x_min, b.y_min, b.x_max, b.y_max];
    let crop = match task.frame_layout {
        Some(layout) if layout.encoding == v1::PixelEncoding::Rgb8 as i32 => {
            crop(&bytes, layout.width, layout.height, bbox, [0.0, 0.0], 1.0)?
        }
        // A replayed recording feeds frames as they were stored: decoded here, for the
        // tasks that read them only.
        Some(layout) if layout.encoding == v1::PixelEncoding::Rgb8Zstd as i32 => {
            let rgb = vigil_proto::pixels::decode_rgb8(&bytes, layout.width, layout.height)
                .map_err(|_| TaskError::Malformed(task.task_id.clone(), "frame pixels are damaged"))?;
            crop(&rgb, layout.width, layout.height, bbox, [0.0, 0.0], 1.0)?
        }
        Some(_) => {
            return Err(TaskError::Malformed(task.task_id.clone(), "frame pixels are neither rgb8 nor rgb8-zstd"));
        }
        None => crop_from_envelope(&task.task_id, &bytes, bbox)?,
    };
    Ok(Prepared { vehicle, task, crop })
}

/// A frame reference without a layout points at a whole camera envelope (vehicles from
/// before frame layouts), whose pixels must be inline.
fn crop_from_envelope(task_id: &str, bytes: &[u8], bbox: [f32; 4]) -> Result<Crop, TaskError> {
    let frame = vigil_proto::decode_envelope(bytes)?;
    let Some(Payload::Camera(cam)) = frame.payload else {
        return Err(TaskError::Malformed(task_id.to_owned(), "frame reference is not a camera frame"));
    };
    let Some(v1::camera_frame::Pixels::Data(pixels)) = cam.pixels.as_ref() else {
        return Err(TaskError::Malformed(task_id.to_owned(), "camera frame has no inline pixels"));
    };
    Ok(crop(pixels, cam.width, cam.height, bbox, [0.0, 0.0], 1.0)?)
}

/// Builds the recommendation for a task given the model's prediction.
pub fn recommend(
    task: &v1::ObstacleTask,
    class: ObstacleClass,
    confidence: f32,
    probabilities: &[f32],
) -> v1::Recommendation {
    let track = task.track.unwrap_or_default();
    let ttc = if track.closing { track.time_to_collision_s } else { f64::INFINITY };
    // The closing speed fusion's time to collision was made from.
    let range = track.x.hypot(track.y);
    let closing = if ttc.is_finite() { range / ttc.max(1e-3) } else { 0.0 };
    let situation = Situation {
        class,
        time_to_collision_s: ttc,
        lateral_offset_m: path_offset(track.y, track.vy, ttc),
        required_decel_mps2: required_decel(range, closing),
        lateral_position_m: track.y,
        closing_mps: closing,
        left_lane_free: task.left_lane_free,
        right_lane_free: task.right_lane_free,
        confidence,
    };
    let action = decide(&situation);
    tracing::debug!(task = %task.task_id, %class, confidence, ttc, x = track.x, y = track.y, vy = track.vy,
        offset = situation.lateral_offset_m, action = action.name(), "recommendation");
    v1::Recommendation {
        task_id: task.task_id.clone(),
        action: action_to_proto(action) as i32,
        confidence,
        class: class_to_proto(class) as i32,
        scores: ObstacleClass::ALL
            .iter()
            .zip(probabilities)
            .map(|(c, p)| v1::ClassScore { class: class_to_proto(*c) as i32, probability: *p })
            .collect(),
        ..Default::default()
    }
}
