//! Who may tell a vehicle what to do. A vehicle obeys the recommendations it accepts, so
//! a reply is vetted before it is read: the transport vouches for its publisher where
//! the broker can (RabbitMQ's validated `user_id`), a key both sides hold signs it where
//! it cannot (HMAC-SHA256 over the address, the task id and the bytes), and the
//! recommendation inside must answer the task it claims, for this vehicle. Every refusal
//! has a [`Rejection`] reason that the vehicle counts.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use vigil_proto::v1::{self, envelope::Payload};

use crate::transport::Reply;

type HmacSha256 = Hmac<Sha256>;

/// The shortest reply key accepted, bytes (HMAC-SHA256 wants at least its output size).
pub const MIN_KEY_BYTES: usize = 32;

/// Where a reply key could not be had from.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "reply key from {from}: {reason} (write {MIN_KEY_BYTES}+ random bytes as hex, e.g. `openssl rand -hex 32`)"
    )]
    Bad { from: String, reason: String },
}

/// A secret both workers and vehicles hold. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ReplyKey(Vec<u8>);

impl fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyKey(***)")
    }
}

impl ReplyKey {
    /// A key from its hex text (surrounding whitespace ignored); `from` names the source
    /// for the error.
    pub fn from_hex(text: &str, from: &str) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::Bad { from: from.into(), reason: reason.into() };
        let t = text.trim();
        if !t.len().is_multiple_of(2) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not an even number of hex digits"));
        }
        let bytes: Vec<u8> =
            (0..t.len()).step_by(2).filter_map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok()).collect();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(bad(&format!("{} bytes, fewer than {MIN_KEY_BYTES}", bytes.len())));
        }
        Ok(Self(bytes))
    }

    /// A key from a file holding its hex text.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let from = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| KeyError::Bad { from: from.clone(), reason: e.to_string() })?;
        if meta.len() > 4096 {
            return Err(KeyError::Bad { from, reason: format!("{} bytes; a key file holds one hex key", meta.len()) });
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| KeyError::Bad { from: from.clone(), reason: e.to_string() })?;
        Self::from_hex(&text, &from)
    }

    fn mac(&self, reply_to: &str, correlation_id: &str, payload: &[u8]) -> HmacSha256 {
        // Length-prefixed fields: no two different replies sign the same bytes.
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for field in [reply_to.as_bytes(), correlation_id.as_bytes(), payload] {
            m.update(&(field.len() as u64).to_le_bytes());
            m.update(field);
        }
        m
    }

    /// The signature of a reply to `reply_to`, lower-case hex.
    pub fn sign(&self, reply_to: &str, correlation_id: &str, payload: &[u8]) -> String {
        self.mac(reply_to, correlation_id, payload).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `reply` carries this key's signature for `reply_to` (compared in constant time).
    pub fn verifies(&self, reply_to: &str, reply: &Reply) -> bool {
        let Some(hex) = reply.mac.as_deref() else { return false };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let sig: Vec<u8> = (0..64).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
        self.mac(reply_to, &reply.correlation_id, &reply.payload).verify_slice(&sig).is_ok()
    }
}

/// Why a reply was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The transport could not vouch for a publisher on the allowed list.
    Publisher,
    /// No valid signature under the reply key.
    Signature,
    /// Not a well-formed recommendation envelope.
    Malformed,
    /// The correlation id is not the task the recommendation answers.
    Correlation,
    /// The envelope names another vehicle.
    Vehicle,
}

impl Rejection {
    pub const ALL: [Rejection; 5] =
        [Rejection::Publisher, Rejection::Signature, Rejection::Malformed, Rejection::Correlation, Rejection::Vehicle];

    pub fn name(self) -> &'static str {
        match self {
            Rejection::Publisher => "publisher",
            Rejection::Signature => "signature",
            Rejection::Malformed => "malformed",
            Rejection::Correlation => "correlation",
            Rejection::Vehicle => "vehicle",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a vehicle requires of a reply before it reads the recommendation in it.
#[derive(Debug, Clone, Default)]
pub struct ReplyTrust {
    /// Publishers accepted, as the transport vouches for them (RabbitMQ user names);
    /// empty: no publisher check.
    pub publishers: Vec<String>,
    /// The key replies must be signed with; `None`: no signature check.
    pub key: Option<ReplyKey>,
}

impl ReplyTrust {
    /// Whether replies are authenticated at all (neither check configured: any client
    /// that can reach the reply queue can command the vehicle).
    pub fn authenticates(&self) -> bool {
        !self.publishers.is_empty() || self.key.is_some()
    }

    /// The recommendation in `reply`, if it passes every check for `vehicle`, whose
    /// replies come to `reply_to`.
    pub fn vet(&self, reply: &Reply, reply_to: &str, vehicle: &str) -> Result<v1::Recommendation, Rejection> {
        if !self.publishers.is_empty() && !reply.publisher.as_ref().is_some_and(|p| self.publishers.contains(p)) {
            return Err(Rejection::Publisher);
        }
        if let Some(key) = &self.key
            && !key.verifies(reply_to, reply)
        {
            return Err(Rejection::Signature);
        }
        let (header, rec) = match vigil_proto::decode_envelope(&reply.payload) {
            Ok(v1::Envelope { header: Some(h), payload: Some(Payload::Recommendation(r)) }) => (h, r),
            _ => return Err(Rejection::Malformed),
        };
        if rec.task_id != reply.correlation_id {
            return Err(Rejection::Correlation);
        }
        if header.vehicle_id != vehicle {
            return Err(Rejection::Vehicle);
        }
        Ok(rec)
    }
}

/// What a worker requires of a task's publisher before it answers: the vehicle the
/// task names, as the broker vouches for it, so one vehicle's credentials cannot ask
/// on another's behalf (the answer would go, signed, to the other vehicle).
#[derive(Debug, Clone, Default)]
pub struct TaskTrust {
    /// The user a vehicle publishes as, with `{vehicle}` for its id (the roles script's
    /// `vigil-vehicle-{vehicle}`); `None`: no publisher check.
    pub vehicle_user: Option<String>,
    /// Workers, whose republished retries are taken as theirs.
    pub workers: Vec<String>,
}

/// The placeholder for the vehicle id in [`TaskTrust::vehicle_user`].
pub const VEHICLE_PLACEHOLDER: &str = "{vehicle}";

impl TaskTrust {
    /// Whether tasks are authenticated at all.
    pub fn authenticates(&self) -> bool {
        self.vehicle_user.is_some()
    }

    /// Whether `publisher` (as the transport vouches) may ask for `vehicle`.
    pub fn vet(&self, publisher: Option<&str>, vehicle: &str) -> Result<(), &'static str> {
        let Some(template) = &self.vehicle_user else { return Ok(()) };
        let Some(publisher) = publisher else {
            return Err("no publisher the broker vouches for");
        };
        if self.workers.iter().any(|w| w == publisher) {
            return Ok(());
        }
        // Split on the placeholder rather than formatting, so no id can widen the match.
        let ok = match template.split_once(VEHICLE_PLACEHOLDER) {
            Some((head, tail)) => publisher
                .strip_prefix(head)
                .and_then(|rest| rest.strip_suffix(tail))
                .is_some_and(|id| id == vehicle && !vehicle.is_empty()),
            None => publisher == template,
        };
        if ok { Ok(()) } else { Err("its publisher is not the vehicle the task names") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn reply(vehicle: &str, task: &str, correlation: &str) -> Reply {
        let payload = Payload::Recommendation(v1::Recommendation { task_id: task.into(), ..Default::default() });
        let header = vigil_proto::wire::header(vehicle, "vision", &payload);
        let bytes = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        Reply::new(correlation, bytes)
    }

    #[test]
    fn a_signed_reply_for_this_vehicle_and_task_passes_and_any_change_fails() {
        let key = ReplyKey::from_hex(KEY, "test").unwrap();
        let trust = ReplyTrust { publishers: vec![], key: Some(key.clone()) };
        let mut r = reply("veh-0", "t1", "t1");
        assert_eq!(trust.vet(&r, "veh-0", "veh-0"), Err(Rejection::Signature), "unsigned");
        r.mac = Some(key.sign("veh-0", "t1", &r.payload));
        assert_eq!(trust.vet(&r, "veh-0", "veh-0").map(|rec| rec.task_id), Ok("t1".into()));
        assert_eq!(trust.vet(&r, "veh-1", "veh-0"), Err(Rejection::Signature), "signed for another address");
        let mut other = r.clone();
        other.payload.push(0);
        assert_eq!(trust.vet(&other, "veh-0", "veh-0"), Err(Rejection::Signature), "bytes changed");
        let wrong = ReplyKey::from_hex(&KEY.replace('0', "1"), "test").unwrap();
        other = r.clone();
        other.mac = Some(wrong.sign("veh-0", "t1", &r.payload));
        assert_eq!(trust.vet(&other, "veh-0", "veh-0"), Err(Rejection::Signature), "another key");
        other.mac = Some("zz".repeat(32));
        assert_eq!(trust.vet(&other, "veh-0", "veh-0"), Err(Rejection::Signature), "not hex");
    }

    #[test]
    fn the_task_and_the_vehicle_inside_must_match_the_reply() {
        let trust = ReplyTrust::default();
        assert_eq!(trust.vet(&reply("veh-0", "t1", "t2"), "veh-0", "veh-0"), Err(Rejection::Correlation));
        assert_eq!(trust.vet(&reply("veh-9", "t1", "t1"), "veh-0", "veh-0"), Err(Rejection::Vehicle));
        assert_eq!(trust.vet(&Reply::new("t1", b"junk".to_vec()), "veh-0", "veh-0"), Err(Rejection::Malformed));
        assert!(trust.vet(&reply("veh-0", "t1", "t1"), "veh-0", "veh-0").is_ok());
        assert!(!trust.authenticates());
    }

    #[test]
    fn only_a_listed_publisher_passes_the_publisher_check() {
        let trust = ReplyTrust { publishers: vec!["vigil-worker".into()], key: None };
        let mut r = reply("veh-0", "t1", "t1");
        assert_eq!(trust.vet(&r, "veh-0", "veh-0"), Err(Rejection::Publisher), "no publisher vouched for");
        r.publisher = Some("vigil-vehicle".into());
        assert_eq!(trust.vet(&r, "veh-0", "veh-0"), Err(Rejection::Publisher));
        r.publisher = Some("vigil-worker".into());
        assert!(trust.vet(&r, "veh-0", "veh-0").is_ok());
    }

    #[test]
    fn keys_that_are_short_or_not_hex_are_refused_and_never_printed() {
        assert!(ReplyKey::from_hex("abcd", "env").unwrap_err().to_string().contains("fewer than 32"));
        assert!(ReplyKey::from_hex("xyz", "env").is_err());
        let k = ReplyKey::from_hex(&format!(" {KEY}\n"), "file").unwrap();
        assert_eq!(format!("{k:?}"), "ReplyKey(***)");
    }

    #[test]
    fn a_task_passes_only_from_the_vehicle_it_names_or_a_worker() {
        let trust =
            TaskTrust { vehicle_user: Some("vigil-vehicle-{vehicle}".into()), workers: vec!["vigil-worker".into()] };
        assert!(trust.vet(Some("vigil-vehicle-veh-0"), "veh-0").is_ok());
        assert!(trust.vet(Some("vigil-worker"), "veh-0").is_ok(), "a worker's retry");
        assert!(trust.vet(Some("vigil-vehicle-veh-1"), "veh-0").is_err(), "another vehicle");
        assert!(trust.vet(Some("vigil-vehicle-veh-0x"), "veh-0").is_err());
        assert!(trust.vet(Some("vigil-vehicle-"), "").is_err(), "no vehicle id");
        assert!(trust.vet(Some("guest"), "veh-0").is_err());
        assert!(trust.vet(None, "veh-0").is_err(), "nobody vouched");
        assert!(TaskTrust::default().vet(None, "veh-0").is_ok());
        assert!(!TaskTrust::default().authenticates());
    }
}
