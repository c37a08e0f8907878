//! Vigil over real brokers: the telemetry log in Kafka ([`kafka::KafkaLog`]), the task
//! plane in RabbitMQ ([`amqp::AmqpTasks`]) and big payloads in an object store
//! ([`store::ObjectFrameStore`]). Each implements a trait from `vigil-bus`, so the
//! actors run unchanged over these or over the embedded transports.

pub mod amqp;
pub mod bench;
pub mod config;
pub mod doctor;
mod error;
pub mod kafka;
pub mod monitor;
pub mod store;

use std::sync::Arc;

pub use config::{AmqpConfig, BrokerConfig, FramesConfig, KafkaConfig, Persistence};
pub use error::BrokerError;
pub(crate) use error::broker_err;
use vigil_bus::TransportError;
use vigil_core::Clock;

/// The broker transports of one process (vehicle side: log, tasks and frames), and the
/// runtime that drives them.
#[derive(Debug)]
pub struct Brokers {
    pub log: Arc<kafka::KafkaLog>,
    pub tasks: amqp::AmqpTasks,
    pub frames: store::ObjectFrameStore,
    _runtime: Runtime,
}

/// What a vision worker needs: the task plane and the frame store, no Kafka.
#[derive(Debug)]
pub struct TaskPlane {
    pub tasks: amqp::AmqpTasks,
    pub frames: store::ObjectFrameStore,
    _runtime: Runtime,
}

/// The 2-thread tokio runtime that runs the broker clients of one process; shut down
/// (with a short grace) when the transports are dropped.
#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> Result<Self, TransportError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vigil-brokers")
            .enable_all()
            .build()
            .map(|r| Self(Some(r)))
            .map_err(|e| broker_err("broker runtime", e))
    }

    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().unwrap_or_else(|| unreachable!("the runtime is only taken on drop"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

impl Brokers {
    /// Creates the Kafka topics, connects to RabbitMQ and opens the frame store.
    /// Call from a thread that is not inside an async runtime.
    pub fn connect(cfg: &BrokerConfig, clock: Arc<dyn Clock>) -> Result<Self, TransportError> {
        let runtime = Runtime::new()?;
        let rt = runtime.get();
        kafka::ensure_topics_in_background(&cfg.kafka, rt.handle());
        let tasks = rt.block_on(amqp::AmqpTasks::connect(&cfg.amqp, clock, rt.handle().clone()))?;
        let frames = store::ObjectFrameStore::open(&cfg.frames.url, rt.handle().clone())?;
        let log = Arc::new(kafka::KafkaLog::new(&cfg.kafka, Some(frames.clone()))?);
        Ok(Self { log, tasks, frames, _runtime: runtime })
    }

    /// The Kafka bootstrap servers the log writes to.
    pub fn log_brokers(&self) -> &str {
        self.log.brokers()
    }
}

impl TaskPlane {
    /// Connects to RabbitMQ (declaring the topology) and opens the frame store.
    /// Call from a thread that is not inside an async runtime.
    pub fn connect(cfg: &BrokerConfig, clock: Arc<dyn Clock>) -> Result<Self, TransportError> {
        let runtime = Runtime::new()?;
        let rt = runtime.get();
        let tasks = rt.block_on(amqp::AmqpTasks::connect(&cfg.amqp, clock, rt.handle().clone()))?;
        let frames = store::ObjectFrameStore::open(&cfg.frames.url, rt.handle().clone())?;
        Ok(Self { tasks, frames, _runtime: runtime })
    }
}
