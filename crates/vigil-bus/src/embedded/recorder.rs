//! Records Vigil envelopes to an MCAP file: one channel per topic, the `vigil.v1`
//! protobuf schema embedded (so Foxglove and the `mcap` tools decode every message),
//! log time = capture time on the vehicle clock, publish time from the header.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use vigil_core::Nanos;

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create recording {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("cannot write recording {path}: {message}")]
    Write { path: String, message: String },
}

/// Writes envelopes to an MCAP file; call [`McapRecorder::finish`] at the end.
pub struct McapRecorder {
    writer: mcap::Writer<BufWriter<File>>,
    path: PathBuf,
    schema: u16,
    channels: HashMap<String, u16>,
    sequence: HashMap<u16, u32>,
    messages: u64,
}

impl std::fmt::Debug for McapRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McapRecorder").field("path", &self.path).field("messages", &self.messages).finish()
    }
}

/// Schema name of every channel: messages are whole envelopes.
pub const SCHEMA_NAME: &str = "vigil.v1.Envelope";

impl McapRecorder {
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        let shown = path.display().to_string();
        let file = File::create(path).map_err(|source| RecordError::Create { path: shown.clone(), source })?;
        let err = |e: mcap::McapError| RecordError::Write { path: shown.clone(), message: e.to_string() };
        let mut writer = mcap::WriteOptions::new()
            .compression(Some(mcap::Compression::Lz4))
            .profile("vigil")
            .create(BufWriter::new(file))
            .map_err(err)?;
        let schema = writer.add_schema(SCHEMA_NAME, "protobuf", vigil_proto::FILE_DESCRIPTOR_SET).map_err(err)?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
            schema,
            channels: HashMap::new(),
            sequence: HashMap::new(),
            messages: 0,
        })
    }

    fn err(&self, e: mcap::McapError) -> RecordError {
        RecordError::Write { path: self.path.display().to_string(), message: e.to_string() }
    }

    /// Appends one encoded envelope on `topic`.
    pub fn write(
        &mut self,
        topic: &str,
        log_time_ns: Nanos,
        publish_time_ns: Nanos,
        envelope: &[u8],
    ) -> Result<(), RecordError> {
        let channel = match self.channels.get(topic) {
            Some(c) => *c,
            None => {
                let c = self
                    .writer
                    .add_channel(self.schema, topic, "protobuf", &BTreeMap::new())
                    .map_err(|e| self.err(e))?;
                self.channels.insert(topic.to_string(), c);
                c
            }
        };
        let seq = self.sequence.entry(channel).or_insert(0);
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: *seq,
            log_time: log_time_ns.max(0) as u64,
            publish_time: publish_time_ns.max(0) as u64,
        };
        *seq = seq.wrapping_add(1);
        self.writer.write_to_known_channel(&header, envelope).map_err(|e| self.err(e))?;
        self.messages += 1;
        Ok(())
    }

    /// Writes the summary and closes the file; returns the number of messages.
    pub fn finish(mut self) -> Result<u64, RecordError> {
        self.writer.finish().map_err(|e| self.err(e))?;
        Ok(self.messages)
    }
}

/// Reads every (topic, log time, envelope bytes) back from an MCAP file.
pub fn read_all(path: &Path) -> Result<Vec<(String, Nanos, Vec<u8>)>, RecordError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| RecordError::Create { path: shown.clone(), source })?;
    let stream = mcap::MessageStream::new(&bytes)
        .map_err(|e| RecordError::Write { path: shown.clone(), message: e.to_string() })?;
    let mut out = Vec::new();
    for m in stream {
        let m = m.map_err(|e| RecordError::Write { path: shown.clone(), message: e.to_string() })?;
        out.push((m.channel.topic.clone(), m.log_time as Nanos, m.data.into_owned()));
    }
    Ok(out)
}
