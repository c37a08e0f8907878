//! `vigil-bus`: how Vigil's components talk. The zenoh sensor bus, the transport traits
//! the actors use ([`transport`]), and the embedded transports behind them; Kafka and
//! RabbitMQ implement the same traits.

pub mod embedded;
pub mod live;
pub mod task;
pub mod transport;
pub mod trust;
pub mod viewer;
pub mod zenoh_bus;

pub use transport::{
    BrokerSource, FrameStore, LogRecord, Reply, Settle, TaskDelivery, TaskTransport, TelemetryLog, TransportError,
    frame_key, reply_address, topics,
};
pub use zenoh_bus::{BusError, BusSample, Publisher, ZenohBus, ZenohConfig};
