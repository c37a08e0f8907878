//! `vigil doctor`'s broker checks: can this process reach Kafka, RabbitMQ and the frame
//! store with its settings, and is what it expects there? Each check names what it
//! tried, what it found and, when it failed, how to fix it. Nothing is created except
//! one probe object in the frame store.

use std::time::Duration;

use lapin::ConnectionProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use vigil_bus::FrameStore;

use crate::amqp::{Names, amqp_url};
use crate::config::redact;
use crate::kafka::{all_topics, client_config};
use crate::{AmqpConfig, KafkaConfig};

/// How long a broker has to answer a check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    /// What was found (or what went wrong).
    pub detail: String,
    /// How to put it right, when it failed.
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self { check, ok: true, detail: detail.into(), fix: None }
    }

    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { check, ok: false, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Kafka answers a metadata request; says which of Vigil's topics exist yet.
pub fn kafka(cfg: &KafkaConfig) -> Finding {
    const CHECK: &str = "kafka";
    let consumer: BaseConsumer = match client_config(cfg).create() {
        Ok(c) => c,
        Err(e) => return Finding::fail(CHECK, format!("bad client settings: {e}"), "check [kafka] properties"),
    };
    let meta = match consumer.fetch_metadata(None, CHECK_TIMEOUT) {
        Ok(m) => m,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("no metadata from {} within {CHECK_TIMEOUT:?}: {e}", cfg.brokers),
                format!(
                    "is the broker running at {}? (`scripts/brokers.sh up` on a dev machine); check --kafka / [kafka] brokers / VIGIL_KAFKA_BROKERS, and the SASL/TLS [kafka.properties] if it needs them",
                    cfg.brokers
                ),
            );
        }
    };
    let expected = all_topics(&cfg.topic_prefix);
    let present = expected.iter().filter(|t| meta.topics().iter().any(|m| m.name() == t.as_str())).count();
    Finding::pass(
        CHECK,
        format!(
            "{} broker(s) at {}; {present} of Vigil's {} topics under `{}` exist{}",
            meta.brokers().len(),
            cfg.brokers,
            expected.len(),
            cfg.topic_prefix,
            if present < expected.len() { " (a vehicle creates the rest on its first drive)" } else { "" }
        ),
    )
}

/// RabbitMQ takes the credentials and opens a channel; says whether the task queue
/// exists yet (a vehicle or worker declares it).
pub async fn amqp(cfg: &AmqpConfig) -> Finding {
    const CHECK: &str = "rabbitmq";
    let url = match amqp_url(cfg) {
        Ok(u) => u,
        Err(e) => return Finding::fail(CHECK, e.to_string(), "set [amqp] url, url_file, VIGIL_AMQP_URL or --amqp"),
    };
    let shown = redact(&url);
    let props = ConnectionProperties::default().with_connection_name("vigil-doctor".into());
    let conn = match tokio::time::timeout(CHECK_TIMEOUT, crate::amqp::connection(&url, cfg, props)).await {
        Err(_) => {
            return Finding::fail(CHECK, format!("no answer from {shown} within {CHECK_TIMEOUT:?}"), running(&shown));
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            let fix = if text.contains("ACCESS_REFUSED") || text.contains("auth") || text.contains("403") {
                "the broker refused the user or password: check the URL's credentials (`rabbitmqctl authenticate_user USER PASSWORD`), and the user's vhost permissions".to_string()
            } else {
                running(&shown)
            };
            return Finding::fail(CHECK, text, fix);
        }
        Ok(Ok(c)) => c,
    };
    let names = Names::new(&cfg.prefix);
    let queue = async {
        let ch = conn.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        ch.queue_declare(names.queue.as_str().into(), passive, FieldTable::default()).await.map(|q| q.message_count())
    };
    let detail = match tokio::time::timeout(CHECK_TIMEOUT, queue).await {
        Ok(Ok(n)) => format!("connected to {shown}; task queue `{}` holds {n} task(s)", names.queue),
        Ok(Err(_)) => format!(
            "connected to {shown}; task queue `{}` not declared yet (a vehicle or worker declares it)",
            names.queue
        ),
        Err(_) => format!("connected to {shown}; no answer about the task queue within {CHECK_TIMEOUT:?}"),
    };
    let _ = conn.close(200, "vigil doctor".into()).await;
    Finding::pass(CHECK, detail)
}

fn running(shown: &str) -> String {
    format!(
        "is RabbitMQ running at {shown}? (`systemctl status rabbitmq-server`); check --amqp / [amqp] url / VIGIL_AMQP_URL"
    )
}

/// The frame store takes a probe object and gives it back, byte for byte.
pub fn frames(store: &dyn FrameStore, url: &str) -> Finding {
    const CHECK: &str = "frame store";
    let probe = format!("vigil doctor probe {}", std::process::id()).into_bytes();
    let fix = format!(
        "the store at {url} must be writable by this user: check [frames] url / VIGIL_FRAMES_URL, the directory's owner and mode, or the bucket's credentials"
    );
    let stored = match store.put(&format!("doctor/probe-{}", std::process::id()), probe.clone()) {
        Ok(r) => r,
        Err(e) => return Finding::fail(CHECK, format!("cannot write to {url}: {e}"), fix),
    };
    match store.get(&stored.uri) {
        Ok(back) if *back == probe => Finding::pass(CHECK, format!("wrote and read back {}", stored.uri)),
        Ok(_) => Finding::fail(CHECK, format!("{} came back different", stored.uri), fix),
        Err(e) => Finding::fail(CHECK, format!("cannot read back {}: {e}", stored.uri), fix),
    }
}
