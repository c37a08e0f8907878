//! `vigil-bus`: how Vigil's components talk. For now the zenoh sensor bus; the Kafka,
//! RabbitMQ and embedded transports join it behind small traits.

pub mod embedded;
pub mod zenoh_bus;

pub use zenoh_bus::{BusError, BusSample, ZenohBus, ZenohConfig};
