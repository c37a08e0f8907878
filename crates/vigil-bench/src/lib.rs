//! `vigil-bench`: every `vigil bench …` body. Each measures Vigil against a baseline in
//! the same run and reports ratios, so the figures hold across machines: `pipeline`
//! (detect→recommend against the bare parts), `fleet` and `priority` (paced drives of
//! many vehicles), `soak` (memory and p99 over 100 000 tasks), `ingest` (the vehicle
//! actors into Kafka against a bare rdkafka producer), `workers` (RabbitMQ workers
//! against a bare loop) and `replay` (a recorded drive replayed against real time).
//!
//! With `vigil-brokers`, this is the one crate that may link rdkafka or lapin: its
//! baselines are bare clients.

pub mod fleet;
pub mod floor;
pub mod ingest;
pub mod lengths;
pub mod pipeline;
pub mod replay;
pub mod soak;
pub mod vision;
pub mod window;
pub mod workers;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The scenario or a setting cannot give what the benchmark measures.
    #[error("benchmark setup: {0}")]
    Setup(String),
    /// The benchmark failed while running (a thread, the actors, a count that is off).
    #[error("benchmark: {0}")]
    Bench(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error(transparent)]
    Run(#[from] vigil_pipeline::RunError),
    #[error(transparent)]
    Replay(#[from] vigil_replay::ReplayError),
    #[error("cannot load the model: {0} (train one with `vigil train`, or pass --model DIR)")]
    Model(#[from] vigil_vision::VisionError),
    #[error("sensor bus: {0}")]
    Bus(#[from] vigil_bus::BusError),
    #[error("transport: {0}")]
    Transport(#[from] vigil_bus::TransportError),
}
