//! Broker settings: the `[kafka]`, `[amqp]` and `[frames]` tables of `vigil.toml`.
//! Nothing here holds a credential or a vhost: the AMQP URL and any Kafka SASL settings
//! come from the file or the environment (`VIGIL_AMQP_URL`, `VIGIL_KAFKA_BROKERS`, …).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vigil_bus::trust::{ReplyKey, ReplyTrust, TaskTrust};

/// Kafka (or any Kafka-protocol broker). `Debug` hides secret properties.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic names start with this: `<prefix>.telemetry.radar`, `<prefix>.recommendations`, …
    pub topic_prefix: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic retention (`retention.ms`); drives are replayable for this long.
    pub retention_ms: i64,
    /// `lz4` or `zstd` (zstd needs librdkafka built with it), or `none`.
    pub compression: String,
    /// The producer's queue bound (`queue.buffering.max.messages`); a full queue makes
    /// `append` wait (counted), never drop.
    pub queue_max_messages: u32,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// Envelopes bigger than this travel as a reference to the frame store (claim check).
    pub claim_check_bytes: usize,
    /// The broker's message size limit (`message.max.bytes`).
    pub max_message_bytes: usize,
    /// How long `append` waits for room in a full producer queue before it fails.
    pub queue_full_timeout_ms: u64,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`,
    /// `"sasl.mechanisms" = "SCRAM-SHA-512"`, `"ssl.ca.location" = "/etc/ca.pem"`.
    pub properties: BTreeMap<String, String>,
    /// A simulated drive's scenario and seed, written as record headers so that
    /// `vigil drives` can name them (set by `vigil run`, never by a file).
    #[serde(skip)]
    pub simulated: Option<(String, u64)>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "vigil".into(),
            partitions: 3,
            replication: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            compression: "lz4".into(),
            queue_max_messages: 10_000,
            linger_ms: 5,
            claim_check_bytes: 256 * 1024,
            max_message_bytes: 1_000_000,
            queue_full_timeout_ms: 10_000,
            properties: BTreeMap::new(),
            simulated: None,
        }
    }
}

/// How a task class is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// delivery_mode 1: kept in memory, lost if the broker restarts.
    Transient,
    /// delivery_mode 2: written to the broker's disk before it is confirmed.
    Persistent,
}

/// RabbitMQ. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost` or `amqps://…` (TLS through the system's
    /// OpenSSL; `SSL_CERT_FILE` points it at a private CA). No default: from the file or
    /// `VIGIL_AMQP_URL`.
    pub url: Option<String>,
    /// Exchange and queue names start with this: `<prefix>.tasks`, `<prefix>.tasks.dlx`, …
    pub prefix: String,
    /// Unacked tasks a worker holds at once (`basic.qos`). 1 by default: tasks a worker
    /// has prefetched are out of the priority queue, so an urgent task published after
    /// them would wait behind them (seen in the `priority_capacity…` test with 4).
    pub prefetch: u16,
    /// `x-max-priority` of the task queue.
    pub max_priority: u8,
    /// `x-max-length` of the task queue; publishes beyond are refused (`reject-publish`)
    /// and the vehicle falls back at once.
    pub queue_capacity: u32,
    /// Deliveries of a task before it is dead-lettered.
    pub max_attempts: u32,
    /// Retry n waits `retry_base_ms × 2^(n-1)` in a TTL delay queue.
    pub retry_base_ms: u64,
    /// Tasks at or above this priority (TTC under ~1.5 s) are `urgent`.
    pub urgent_priority: u8,
    /// Persistence of urgent tasks.
    pub urgent: Persistence,
    /// Persistence of the other tasks.
    pub routine: Persistence,
    /// The model name in routing keys (`task.<model>.p<priority>`).
    pub model: String,
    /// A file holding the URL, used when `url` is unset: credentials stay out of the
    /// command line, the process list and the config file.
    pub url_file: Option<PathBuf>,
    /// RabbitMQ users a vehicle takes recommendations from, as the broker vouches for
    /// them (the `user_id` it validates); empty: any publisher. Give workers their own
    /// user (`scripts/rabbitmq-roles.sh`) and list it here.
    pub reply_publishers: Vec<String>,
    /// A file holding the reply key (hex, 32+ bytes): workers sign replies with it and
    /// vehicles take only replies it verifies. `VIGIL_REPLY_KEY` may hold the key instead.
    pub reply_key_file: Option<PathBuf>,
    /// The RabbitMQ user each vehicle publishes tasks as, `{vehicle}` standing for its
    /// id (`vigil-vehicle-{vehicle}` with the roles script): a worker answers a task only
    /// when the broker vouches that the vehicle it names sent it (or a worker in
    /// `reply_publishers` retried it). Unset: any publisher.
    pub task_publisher: Option<String>,
    /// With an `amqps://` URL: the CA that signed the broker's certificate (PEM); unset:
    /// the system's roots (or `SSL_CERT_FILE`).
    pub tls_ca_file: Option<PathBuf>,
    /// The client certificate (PEM, leaf first) for a broker that requires one
    /// (`ssl_options.fail_if_no_peer_cert`), with its key (`tls_key_file`, PKCS#8 PEM).
    /// Read at each (re)connect, so a rotated certificate is picked up.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl AmqpConfig {
    /// The reply key: from `reply_key_file`, else `VIGIL_REPLY_KEY`, else none.
    pub fn reply_key(&self) -> Result<Option<ReplyKey>, vigil_bus::TransportError> {
        let bad = |e: vigil_bus::trust::KeyError| vigil_bus::TransportError::Invalid {
            what: "reply key".into(),
            reason: e.to_string(),
        };
        if let Some(path) = &self.reply_key_file {
            return ReplyKey::from_file(path).map(Some).map_err(bad);
        }
        match std::env::var("VIGIL_REPLY_KEY") {
            Ok(hex) => ReplyKey::from_hex(&hex, "VIGIL_REPLY_KEY").map(Some).map_err(bad),
            Err(_) => Ok(None),
        }
    }

    /// What a vehicle requires of a reply over this broker.
    pub fn reply_trust(&self) -> Result<ReplyTrust, vigil_bus::TransportError> {
        Ok(ReplyTrust { publishers: self.reply_publishers.clone(), key: self.reply_key()? })
    }

    /// What a worker requires of a task's publisher over this broker. The worker's own
    /// user (from `url`) counts as a worker: its retries are republished as that user,
    /// and refusing them would dead-letter every retry of a deployment that forgot to
    /// list the worker in `reply_publishers`.
    pub fn task_trust(&self) -> TaskTrust {
        let mut workers = self.reply_publishers.clone();
        let own = self.url.as_deref().and_then(|u| u.parse::<lapin::uri::AMQPUri>().ok());
        if let Some(user) = own.map(|u| u.authority.userinfo.username)
            && !workers.contains(&user)
        {
            workers.push(user);
        }
        TaskTrust { vehicle_user: self.task_publisher.clone(), workers }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "vigil".into(),
            prefetch: 1,
            max_priority: 9,
            queue_capacity: 256,
            max_attempts: 3,
            retry_base_ms: 10,
            urgent_priority: 7,
            // Chosen from `vigil bench amqp` (figures in crates/vigil-brokers/README.md):
            // a task is worthless after its 100 ms deadline, so waiting for the disk buys
            // nothing for any class; a broker restart makes the vehicle fall back instead.
            urgent: Persistence::Transient,
            routine: Persistence::Transient,
            model: "obstacle-classifier".into(),
            url_file: None,
            reply_publishers: Vec::new(),
            reply_key_file: None,
            task_publisher: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The claim-check store for big payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramesConfig {
    /// `file:///abs/dir` (default `file:///var/tmp/vigil-frames`) or `s3://bucket/prefix`.
    pub url: String,
}

impl Default for FramesConfig {
    fn default() -> Self {
        Self { url: "file:///var/tmp/vigil-frames/".into() }
    }
}

/// Everything the broker transports need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub kafka: KafkaConfig,
    pub amqp: AmqpConfig,
    pub frames: FramesConfig,
}

/// A URL with its password replaced by `***`, whatever the URL looks like: the userinfo
/// runs from the scheme to the *last* `@` (a password may hold `@`, `#`, `/`, `?`, which
/// make a URL parser fail or cut it elsewhere), so a password is never printed, at worst
/// with some of the host hidden too. Userinfo without a `:` is hidden whole: it may be a
/// token, or the tail of a password that looks like a scheme (`user://pass@host`).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => url.split_at(i + 3),
        _ => ("", url),
    };
    let Some(at) = rest.rfind('@') else { return url.to_string() };
    let (userinfo, host) = rest.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:***{host}"),
        None => format!("{scheme}***{host}"),
    }
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …).
pub fn is_secret_property(key: &str) -> bool {
    ["password", "secret", "key.pem", "private", "token", "sasl.jaas"].iter().any(|w| key.contains(w))
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_property(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &redact(&self.brokers))
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("retention_ms", &self.retention_ms)
            .field("compression", &self.compression)
            .field("queue_max_messages", &self.queue_max_messages)
            .field("linger_ms", &self.linger_ms)
            .field("claim_check_bytes", &self.claim_check_bytes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("queue_full_timeout_ms", &self.queue_full_timeout_ms)
            .field("properties", &properties)
            .field("simulated", &self.simulated)
            .finish()
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.url.as_deref().map(redact))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .field("max_priority", &self.max_priority)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_ms", &self.retry_base_ms)
            .field("urgent_priority", &self.urgent_priority)
            .field("urgent", &self.urgent)
            .field("routine", &self.routine)
            .field("model", &self.model)
            .field("url_file", &self.url_file)
            .field("reply_publishers", &self.reply_publishers)
            .field("reply_key_file", &self.reply_key_file)
            .field("task_publisher", &self.task_publisher)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the password holds (`@ # / ? :`, spaces, unicode) and whatever
        /// surrounds it, the redacted URL never contains it.
        #[test]
        fn redact_never_prints_the_password(
            scheme in prop::sample::select(vec!["amqp://", "amqps://", "kafka://", ""]),
            user in "[a-zA-Z0-9._-]{0,12}",
            password in "[^\\x00]{6,24}",
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            tail in "(/[a-zA-Z0-9%._-]{0,10})?(\\?[a-z=&0-9]{0,12})?",
        ) {
            prop_assume!(!format!("{scheme}{user}{host}{tail}").contains(&password));
            let url = format!("{scheme}{user}:{password}@{host}{tail}");
            let shown = redact(&url);
            prop_assert!(!shown.contains(&password), "{url} shown as {shown}");
            let amqp = AmqpConfig { url: Some(url.clone()), ..AmqpConfig::default() };
            let mut kafka = KafkaConfig::default();
            kafka.properties.insert("sasl.password".into(), password.clone());
            kafka.properties.insert("ssl.key.password".into(), password.clone());
            let debug = format!("{:?}", BrokerConfig { kafka, amqp, frames: FramesConfig::default() });
            prop_assert!(!debug.contains(&password), "{debug}");
        }
    }

    #[test]
    fn a_worker_takes_its_own_retries_as_a_workers() {
        let amqp = AmqpConfig {
            url: Some("amqp://vigil-worker-2:s3cret@127.0.0.1:5672/%2f".into()),
            reply_publishers: vec!["vigil-worker".into()],
            task_publisher: Some("vigil-vehicle-{vehicle}".into()),
            ..AmqpConfig::default()
        };
        let trust = amqp.task_trust();
        assert_eq!(trust.workers, ["vigil-worker", "vigil-worker-2"]);
        assert!(trust.vet(Some("vigil-worker-2"), "veh-a").is_ok());
        assert!(trust.vet(Some("vigil-vehicle-veh-b"), "veh-a").is_err());
        let listed = AmqpConfig { url: Some("amqp://vigil-worker:p@h/".into()), ..amqp };
        assert_eq!(listed.task_trust().workers, ["vigil-worker"], "listed once");
    }

    #[test]
    fn redact_keeps_what_is_not_a_secret_and_hides_what_may_be() {
        assert_eq!(redact("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(redact("amqp://u:p#a/s?s@h:1/v"), "amqp://u:***@h:1/v");
        assert_eq!(redact("amqp://127.0.0.1:5672/%2f"), "amqp://127.0.0.1:5672/%2f");
        assert_eq!(redact("amqp://token@host/"), "amqp://***@host/");
        assert_eq!(redact("://pass@host"), ":***@host", "no scheme: the userinfo is `:` and a password");
    }
}
