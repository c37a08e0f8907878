//! What the node tells the ego to do, and its wire form on the control channel.

use vigil_core::policy::Action;
use vigil_core::{Nanos, VehicleId};
use vigil_proto::action_from_proto;
use vigil_proto::v1::{self, envelope::Payload};

/// What the handler tells the ego to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlCommand {
    pub vehicle: VehicleId,
    pub task_id: String,
    pub action: Action,
    /// When it was decided, on the node's clock.
    pub at_ns: Nanos,
    pub fallback: bool,
}

impl ControlCommand {
    /// The command as an encoded `vigil.v1.Envelope` (payload `ControlCommand`).
    pub fn encode(&self) -> Vec<u8> {
        let payload = Payload::Control(v1::ControlCommand {
            task_id: self.task_id.clone(),
            action: vigil_proto::action_to_proto(self.action) as i32,
            decided_at_ns: self.at_ns,
            fallback: self.fallback,
        });
        let header = v1::Header {
            capture_time_ns: self.at_ns,
            publish_time_ns: self.at_ns,
            correlation_id: self.task_id.clone(),
            ..vigil_proto::wire::header(self.vehicle.as_str(), "control", &payload)
        };
        vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) })
    }

    /// Decodes (strictly) what [`ControlCommand::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, vigil_proto::DecodeError> {
        let env = vigil_proto::decode_envelope(bytes)?;
        let vehicle = VehicleId(env.header.map(|h| h.vehicle_id).unwrap_or_default());
        match env.payload {
            Some(Payload::Control(c)) => Ok(Self {
                vehicle,
                action: action_from_proto(v1::Action::try_from(c.action).unwrap_or(v1::Action::Unspecified)),
                task_id: c.task_id,
                at_ns: c.decided_at_ns,
                fallback: c.fallback,
            }),
            _ => Err(vigil_proto::DecodeError::InvalidField {
                field: "payload",
                reason: "expected a ControlCommand on the control channel".into(),
            }),
        }
    }
}
