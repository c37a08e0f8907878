//! What the broker clients report, typed: the error behind every
//! `TransportError::Broker` this crate returns.

use vigil_bus::TransportError;

/// A broker client's error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Kafka request answered with an error code (topic admin).
    #[error(transparent)]
    KafkaCode(#[from] rdkafka::types::RDKafkaErrorCode),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The topic is not there (not created yet, or deleted).
    #[error("does not exist (or has no partitions)")]
    NoSuchTopic,
    /// The broker refused, or an answer did not come: said in words.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for BrokerError {
    fn from(s: String) -> Self {
        Self::Refused(s)
    }
}

impl From<&str> for BrokerError {
    fn from(s: &str) -> Self {
        Self::Refused(s.to_string())
    }
}

impl BrokerError {
    /// The broker error inside a transport error, if it came from this crate.
    pub fn of(e: &TransportError) -> Option<&BrokerError> {
        match e {
            TransportError::Broker { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }
}

/// `what` failed with the client's error `e`.
pub(crate) fn broker_err(what: impl Into<String>, e: impl Into<BrokerError>) -> TransportError {
    TransportError::Broker { what: what.into(), source: Box::new(e.into()) }
}
