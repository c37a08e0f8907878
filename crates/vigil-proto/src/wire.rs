//! The wire vocabulary, each word declared once: the sensor streams with their zenoh key
//! expressions and log topics, the control channel, the header every envelope carries,
//! and the default task budget.

use vigil_core::Nanos;

use crate::v1::{self, envelope::Payload};
use crate::{SCHEMA_VERSION, content_type};

/// Log topic (Kafka topic, MCAP channel) names. Telemetry topics are per stream, keyed by
/// vehicle; a deployment's prefix replaces the leading `vigil`.
pub mod topics {
    /// The leading word of every topic name.
    pub const PREFIX: &str = "vigil";
    pub const LIDAR: &str = "vigil.telemetry.lidar";
    pub const CAMERA: &str = "vigil.telemetry.camera";
    pub const RADAR: &str = "vigil.telemetry.radar";
    pub const GROUND_TRUTH: &str = "vigil.telemetry.groundtruth";
    pub const TASKS: &str = "vigil.tasks";
    pub const RECOMMENDATIONS: &str = "vigil.recommendations";

    /// Every topic, telemetry first.
    pub const ALL: [&str; 6] = [LIDAR, CAMERA, RADAR, GROUND_TRUTH, TASKS, RECOMMENDATIONS];
}

/// A sensor stream, on the vehicle bus and in the log. The ground-truth stream carries
/// the ego pose (the vehicle's localization) and, for the simulator's scoring only, the
/// objects; the vehicle reads only the pose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Lidar,
    Camera,
    Radar,
    GroundTruth,
}

impl Stream {
    pub const ALL: [Stream; 4] = [Stream::Lidar, Stream::Camera, Stream::Radar, Stream::GroundTruth];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name in key expressions, sensor ids and topics.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Lidar => "lidar",
            Stream::Camera => "camera",
            Stream::Radar => "radar",
            Stream::GroundTruth => "groundtruth",
        }
    }

    /// Its log topic.
    pub fn topic(self) -> &'static str {
        match self {
            Stream::Lidar => topics::LIDAR,
            Stream::Camera => topics::CAMERA,
            Stream::Radar => topics::RADAR,
            Stream::GroundTruth => topics::GROUND_TRUTH,
        }
    }

    /// The stream a log topic holds (tasks and recommendations are not streams).
    pub fn of_topic(topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.topic() == topic)
    }

    /// Whether `payload` belongs on this stream.
    pub fn accepts(self, payload: &Payload) -> bool {
        matches!(
            (self, payload),
            (Stream::Lidar, Payload::Lidar(_))
                | (Stream::Camera, Payload::Camera(_))
                | (Stream::Radar, Payload::Radar(_))
                | (Stream::GroundTruth, Payload::GroundTruth(_))
        )
    }

    /// The sensor id of this stream's sensor `name`: `<stream>/<name>`.
    pub fn sensor_id(self, name: &str) -> String {
        format!("{}/{name}", self.name())
    }

    /// The zenoh key a sensor publishes on: `vigil/<vehicle>/sensor/<sensor id>`, or
    /// `vigil/<vehicle>/groundtruth` for the one ground-truth stream.
    pub fn key(self, vehicle: &str, sensor_id: &str) -> String {
        match self {
            Stream::GroundTruth => format!("vigil/{vehicle}/groundtruth"),
            _ => format!("vigil/{vehicle}/sensor/{sensor_id}"),
        }
    }

    /// The zenoh key expression that matches every sensor of this stream on `vehicle`.
    pub fn subscription(self, vehicle: &str) -> String {
        match self {
            Stream::GroundTruth => self.key(vehicle, ""),
            _ => format!("vigil/{vehicle}/sensor/{}/*", self.name()),
        }
    }
}

/// The zenoh key of a vehicle's control channel (vehicle node → the ego's controller);
/// `control_key("*")` subscribes to every vehicle's.
pub fn control_key(vehicle: &str) -> String {
    format!("vigil/{vehicle}/control")
}

/// A task's deadline is its capture time plus this, unless configured.
pub const DEFAULT_TASK_BUDGET_NS: Nanos = 100_000_000;

/// The header of an envelope from `vehicle`'s `sensor_id` carrying `payload`: schema
/// version and content type set; the caller adds sequence, times and correlation id
/// (`v1::Header { sequence, .., ..header(..) }`).
pub fn header(vehicle: &str, sensor_id: &str, payload: &Payload) -> v1::Header {
    v1::Header {
        schema_version: SCHEMA_VERSION,
        vehicle_id: vehicle.to_string(),
        sensor_id: sensor_id.to_string(),
        content_type: content_type(payload).to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_round_trips_through_its_topic_and_keys_match_subscriptions() {
        for s in Stream::ALL {
            assert_eq!(Stream::of_topic(s.topic()), Some(s));
            let key = s.key("veh-0001", &s.sensor_id("front"));
            let sub = s.subscription("veh-0001");
            let matches = sub.strip_suffix('*').map_or(key == sub, |p| key.starts_with(p));
            assert!(matches, "{key} is not matched by {sub}");
        }
        assert_eq!(Stream::of_topic(topics::TASKS), None);
        assert_eq!(topics::ALL.len(), 6);
    }
}
