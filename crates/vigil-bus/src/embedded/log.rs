//! [`TelemetryLog`] in-process: counts every record per topic and, when asked, records
//! it to an MCAP file (see [`super::recorder`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::recorder::{McapRecorder, RecordOptions};
use crate::transport::{LogRecord, TelemetryLog, TransportError};

#[derive(Debug, Default)]
struct State {
    recorder: Option<McapRecorder>,
    counts: BTreeMap<String, u64>,
    closed: bool,
}

/// The embedded log plane.
#[derive(Debug, Default)]
pub struct EmbeddedLog(Mutex<State>);

impl EmbeddedLog {
    /// Counts only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts and records to `path` (a directory of parts when `opts` splits).
    pub fn recording(path: &Path, opts: RecordOptions) -> Result<Self, TransportError> {
        let recorder = McapRecorder::with_options(path, opts)
            .map_err(|e| TransportError::Log { topic: "*".into(), reason: e.to_string() })?;
        Ok(Self(Mutex::new(State { recorder: Some(recorder), ..State::default() })))
    }
}

impl TelemetryLog for EmbeddedLog {
    fn append(&self, r: LogRecord<'_>) -> Result<(), TransportError> {
        let mut s = self.0.lock().map_err(|_| TransportError::Closed)?;
        if s.closed {
            return Err(TransportError::Closed);
        }
        if let Some(rec) = s.recorder.as_mut() {
            rec.write(r.topic, r.capture_ns, r.publish_ns, r.envelope)
                .map_err(|e| TransportError::Log { topic: r.topic.into(), reason: e.to_string() })?;
        }
        *s.counts.entry(r.topic.to_string()).or_insert(0) += 1;
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        let mut s = self.0.lock().map_err(|_| TransportError::Closed)?;
        s.closed = true;
        if let Some(rec) = s.recorder.take() {
            rec.finish().map_err(|e| TransportError::Log { topic: "*".into(), reason: e.to_string() })?;
        }
        Ok(s.counts.clone())
    }
}
