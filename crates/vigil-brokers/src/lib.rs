//! Vigil over real brokers: the telemetry log in Kafka ([`kafka::KafkaLog`]), the task
//! plane in RabbitMQ ([`amqp::AmqpTasks`]) and big payloads in an object store
//! ([`store::ObjectFrameStore`]). Each implements a trait from `vigil-bus`, so the
//! actors run unchanged over these or over the embedded transports.

pub mod amqp;
pub mod bench;
pub mod config;
pub mod kafka;
pub mod store;

use std::sync::Arc;

pub use config::{AmqpConfig, BrokerConfig, FramesConfig, KafkaConfig, Persistence};
use vigil_bus::TransportError;
use vigil_core::Clock;

/// The broker transports of one process, and the runtime that drives them.
#[derive(Debug)]
pub struct Brokers {
    pub log: Arc<kafka::KafkaLog>,
    pub tasks: amqp::AmqpTasks,
    pub frames: store::ObjectFrameStore,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Brokers {
    /// Creates the Kafka topics, connects to RabbitMQ and opens the frame store.
    /// Call from a thread that is not inside an async runtime.
    pub fn connect(cfg: &BrokerConfig, clock: Arc<dyn Clock>) -> Result<Self, TransportError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vigil-brokers")
            .enable_all()
            .build()
            .map_err(|e| TransportError::Broker { what: "broker runtime".into(), reason: e.to_string() })?;
        let handle = runtime.handle().clone();
        runtime.block_on(kafka::ensure_topics(&cfg.kafka))?;
        let tasks = runtime.block_on(amqp::AmqpTasks::connect(&cfg.amqp, clock, handle.clone()))?;
        let frames = store::ObjectFrameStore::open(&cfg.frames.url, handle)?;
        let log = Arc::new(kafka::KafkaLog::new(&cfg.kafka, Some(frames.clone()))?);
        Ok(Self { log, tasks, frames, runtime: Some(runtime) })
    }

    /// The Kafka bootstrap servers the log writes to.
    pub fn log_brokers(&self) -> &str {
        self.log.brokers()
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().map(|r| r.handle().clone()).unwrap_or_else(tokio::runtime::Handle::current)
    }

    /// Runs a future on the broker runtime (from a thread outside any runtime).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match &self.runtime {
            Some(r) => r.block_on(f),
            None => futures_util::FutureExt::now_or_never(f).expect("runtime"),
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}
