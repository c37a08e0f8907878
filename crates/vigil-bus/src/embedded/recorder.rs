//! Records Vigil envelopes to MCAP: one channel per topic, the `vigil.v1` protobuf
//! schema embedded (so Foxglove and the `mcap` tools decode every message), log time =
//! capture time on the vehicle clock, publish time from the header.
//!
//! Chunks are zstd-compressed (lz4 or none on request) and camera frames are stored as
//! `PIXEL_ENCODING_RGB8_ZSTD` (lossless, see `vigil_proto::pixels`); [`super::playback`]
//! gives back the RGB8 envelopes the vehicle saw, byte for byte. A recording may be
//! split into parts by size or duration, as rosbag2 and cyber_recorder do: the parts go
//! into a directory, `<name>_00000.mcap`, `<name>_00001.mcap`, …, and each part ends
//! with a `vigil.part` metadata record (its index, whether it is the last, the vehicles
//! and runs it holds) so a reader can tell a complete set from one with a part missing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use vigil_core::Nanos;

use crate::topics;

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create recording {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("cannot write recording {path}: {message}")]
    Write { path: String, message: String },
    #[error("{0}")]
    Options(String),
}

/// Schema name of every channel: messages are whole envelopes.
pub const SCHEMA_NAME: &str = "vigil.v1.Envelope";

/// Name of the metadata record each part ends with.
pub const PART_METADATA: &str = "vigil.part";

/// How MCAP chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkCompression {
    #[default]
    Zstd,
    Lz4,
    None,
}

impl std::str::FromStr for ChunkCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" => Ok(Self::Zstd),
            "lz4" => Ok(Self::Lz4),
            "none" => Ok(Self::None),
            _ => Err(format!("`{s}` is not a chunk compression: zstd, lz4 or none")),
        }
    }
}

/// How camera frames are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CameraStorage {
    /// As they came (RGB8).
    Raw,
    /// `RGB8_ZSTD`, lossless: replay sees the bytes the vehicle saw.
    #[default]
    Lossless,
    /// `RGB8_ZSTD` near-lossless: every sample within this many levels (1-16) of the
    /// original; smaller, and a replay may decide differently (measure it).
    NearLossless(u8),
}

impl std::str::FromStr for CameraStorage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a camera storage: lossless, raw or near-lossless:N (N 1-16 levels)");
        match s {
            "lossless" => Ok(Self::Lossless),
            "raw" => Ok(Self::Raw),
            _ => {
                let n: u8 = s.strip_prefix("near-lossless:").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                if (1..=vigil_proto::pixels::MAX_NEAR).contains(&n) { Ok(Self::NearLossless(n)) } else { Err(bad()) }
            }
        }
    }
}

/// How lidar sweeps are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LidarStorage {
    /// As they came (packed points).
    Raw,
    /// `XYZIR_ZSTD`, lossless: replay sees the points the vehicle saw.
    #[default]
    Lossless,
}

impl std::str::FromStr for LidarStorage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lossless" => Ok(Self::Lossless),
            "raw" => Ok(Self::Raw),
            _ => Err(format!("`{s}` is not a lidar storage: lossless or raw")),
        }
    }
}

/// `envelope` as `opts` store it; `None` when it is stored as it came.
fn stored(opts: &RecordOptions, envelope: &[u8]) -> Option<Vec<u8>> {
    use vigil_proto::{pixels, points};
    if points::is_lidar(envelope) {
        return match opts.lidar {
            LidarStorage::Raw => points::expand_lidar(envelope).ok().flatten(),
            LidarStorage::Lossless => points::compact_lidar(envelope),
        };
    }
    match opts.camera {
        CameraStorage::Raw => pixels::expand_camera(envelope).ok().flatten(),
        CameraStorage::Lossless => pixels::compact_camera(envelope, 0),
        // A frame stored lossless already is coded again within the bound.
        CameraStorage::NearLossless(n) => match pixels::expand_camera(envelope).ok().flatten() {
            Some(rgb) => pixels::compact_camera(&rgb, n),
            None => pixels::compact_camera(envelope, n),
        },
    }
}

/// How a recording is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    pub compression: ChunkCompression,
    pub camera: CameraStorage,
    pub lidar: LidarStorage,
    /// Start a new part once a part's file reaches this many bytes.
    pub split_bytes: Option<u64>,
    /// Start a new part once a part spans this much capture time.
    pub split_ns: Option<Nanos>,
    /// Write the `foxglove.*` channels a viewer draws beside Vigil's own
    /// ([`crate::viewer`]); a replay reads only Vigil's.
    pub viewer: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            compression: ChunkCompression::Zstd,
            camera: CameraStorage::Lossless,
            lidar: LidarStorage::Lossless,
            split_bytes: None,
            split_ns: None,
            viewer: true,
        }
    }
}

impl RecordOptions {
    /// Whether the recording is a directory of parts.
    pub fn splits(&self) -> bool {
        self.split_bytes.is_some() || self.split_ns.is_some()
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.split_bytes.is_some_and(|b| b < 1 << 20) {
            return Err(RecordError::Options("--split-size must be at least 1 MiB".into()));
        }
        if self.split_ns.is_some_and(|n| n < 1_000_000_000) {
            return Err(RecordError::Options("--split-duration must be at least 1 s".into()));
        }
        Ok(())
    }
}

/// The file of part `index` of a split recording in `dir`.
pub fn part_path(dir: &Path, index: u32) -> PathBuf {
    let stem = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "drive".into());
    dir.join(format!("{stem}_{index:05}.mcap"))
}

/// One open MCAP file.
struct Part {
    writer: mcap::Writer<BufWriter<File>>,
    file: File,
    path: PathBuf,
    index: u32,
    schema: u16,
    channels: HashMap<String, u16>,
    /// Viewer schemas by name, and viewer channels by topic.
    viewer_schemas: HashMap<String, u16>,
    viewer_channels: HashMap<String, u16>,
    sequence: HashMap<u16, u32>,
    first_ns: Option<Nanos>,
    /// Vehicle → (capture time, run) of its earliest task in this part.
    runs: BTreeMap<String, Option<(Nanos, String)>>,
}

impl Part {
    fn create(path: PathBuf, index: u32, opts: &RecordOptions) -> Result<Self, RecordError> {
        let shown = path.display().to_string();
        let file = File::create(&path).map_err(|source| RecordError::Create { path: shown.clone(), source })?;
        let probe = file.try_clone().map_err(|source| RecordError::Create { path: shown.clone(), source })?;
        let err = |e: mcap::McapError| RecordError::Write { path: shown.clone(), message: e.to_string() };
        let compression = match opts.compression {
            ChunkCompression::Zstd => Some(mcap::Compression::Zstd),
            ChunkCompression::Lz4 => Some(mcap::Compression::Lz4),
            ChunkCompression::None => None,
        };
        let mut writer = mcap::WriteOptions::new()
            .compression(compression)
            .profile("vigil")
            .create(BufWriter::new(file))
            .map_err(err)?;
        let schema = writer.add_schema(SCHEMA_NAME, "protobuf", vigil_proto::FILE_DESCRIPTOR_SET).map_err(err)?;
        Ok(Self {
            writer,
            file: probe,
            path,
            index,
            schema,
            channels: HashMap::new(),
            viewer_schemas: HashMap::new(),
            viewer_channels: HashMap::new(),
            sequence: HashMap::new(),
            first_ns: None,
            runs: BTreeMap::new(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> RecordError {
        RecordError::Write { path: self.path.display().to_string(), message: e.to_string() }
    }

    fn channel(&mut self, topic: &str) -> Result<u16, RecordError> {
        if let Some(c) = self.channels.get(topic) {
            return Ok(*c);
        }
        let c = self.writer.add_channel(self.schema, topic, "protobuf", &BTreeMap::new()).map_err(|e| self.err(e))?;
        self.channels.insert(topic.to_string(), c);
        Ok(c)
    }

    fn viewer_channel(&mut self, m: &crate::viewer::ViewerMessage) -> Result<u16, RecordError> {
        if let Some(c) = self.viewer_channels.get(&m.topic) {
            return Ok(*c);
        }
        let schema = match self.viewer_schemas.get(&m.schema.name) {
            Some(s) => *s,
            None => {
                let s = &m.schema;
                let id = self.writer.add_schema(&s.name, &s.encoding, &s.data).map_err(|e| self.err(e))?;
                self.viewer_schemas.insert(s.name.clone(), id);
                id
            }
        };
        let c = self.writer.add_channel(schema, &m.topic, m.encoding, &BTreeMap::new()).map_err(|e| self.err(e))?;
        self.viewer_channels.insert(m.topic.clone(), c);
        Ok(c)
    }

    /// Appends a viewer message beside the envelope it was made from.
    fn write_viewer(
        &mut self,
        m: &crate::viewer::ViewerMessage,
        log_ns: Nanos,
        publish_ns: Nanos,
    ) -> Result<(), RecordError> {
        let channel = self.viewer_channel(m)?;
        self.put(channel, log_ns, publish_ns, &m.bytes)
    }

    /// Appends `bytes` on `channel`, numbered in the channel's sequence.
    fn put(&mut self, channel: u16, log_ns: Nanos, publish_ns: Nanos, bytes: &[u8]) -> Result<(), RecordError> {
        let seq = self.sequence.entry(channel).or_insert(0);
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: *seq,
            log_time: log_ns.max(0) as u64,
            publish_time: publish_ns.max(0) as u64,
        };
        *seq = seq.wrapping_add(1);
        self.writer.write_to_known_channel(&header, bytes).map_err(|e| self.err(e))
    }

    fn write(&mut self, topic: &str, log_ns: Nanos, publish_ns: Nanos, envelope: &[u8]) -> Result<(), RecordError> {
        let channel = self.channel(topic)?;
        self.put(channel, log_ns, publish_ns, envelope)?;
        self.first_ns.get_or_insert(log_ns);
        if let Some(h) = vigil_proto::header_of(envelope) {
            let run = self.runs.entry(h.vehicle_id).or_default();
            if topic == topics::TASKS
                && let Some(r) = run_of_task(&h.correlation_id)
                && run.as_ref().is_none_or(|(t, _)| log_ns < *t)
            {
                *run = Some((log_ns, r.to_string()));
            }
        }
        Ok(())
    }

    /// Bytes on disk so far (the writer's buffer aside).
    fn len(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn finish(mut self, last: bool) -> Result<(), RecordError> {
        let mut meta = BTreeMap::new();
        meta.insert("index".to_string(), self.index.to_string());
        meta.insert("last".to_string(), last.to_string());
        for (v, run) in &self.runs {
            let run = run.as_ref().map(|(t, r)| format!("{r}@{t}")).unwrap_or_default();
            meta.insert(format!("vehicle:{v}"), run);
        }
        let record = mcap::records::Metadata { name: PART_METADATA.into(), metadata: meta };
        self.writer.write_metadata(&record).map_err(|e| self.err(e))?;
        self.writer.finish().map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// The run `<vehicle>/<run>/task/<n>` names.
pub fn run_of_task(task_id: &str) -> Option<&str> {
    let mut parts = task_id.rsplit('/');
    let (_, word, run) = (parts.next()?, parts.next()?, parts.next()?);
    (word == "task").then_some(run)
}

/// Writes envelopes to an MCAP file, or to a directory of parts; call
/// [`McapRecorder::finish`] at the end.
pub struct McapRecorder {
    path: PathBuf,
    opts: RecordOptions,
    part: Option<Part>,
    parts: u32,
    messages: u64,
    viewer: Option<crate::viewer::ViewerChannels>,
}

impl std::fmt::Debug for McapRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McapRecorder")
            .field("path", &self.path)
            .field("parts", &self.parts)
            .field("messages", &self.messages)
            .finish()
    }
}

impl McapRecorder {
    /// A single file at `path`, zstd chunks, compact camera.
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        Self::with_options(path, RecordOptions::default())
    }

    /// A file at `path`, or with splitting a directory at `path` for the parts.
    pub fn with_options(path: &Path, opts: RecordOptions) -> Result<Self, RecordError> {
        opts.check()?;
        if opts.splits() {
            std::fs::create_dir_all(path)
                .map_err(|source| RecordError::Create { path: path.display().to_string(), source })?;
        }
        let viewer = opts.viewer.then(crate::viewer::ViewerChannels::default);
        let mut r = Self { path: path.to_path_buf(), opts, part: None, parts: 0, messages: 0, viewer };
        r.part = Some(r.open_part()?);
        Ok(r)
    }

    fn open_part(&mut self) -> Result<Part, RecordError> {
        let file = if self.opts.splits() { part_path(&self.path, self.parts) } else { self.path.clone() };
        let part = Part::create(file, self.parts, &self.opts)?;
        self.parts += 1;
        Ok(part)
    }

    /// Appends one encoded envelope on `topic`.
    pub fn write(
        &mut self,
        topic: &str,
        log_time_ns: Nanos,
        publish_time_ns: Nanos,
        envelope: &[u8],
    ) -> Result<(), RecordError> {
        self.roll_if_due(log_time_ns)?;
        let compact = stored(&self.opts, envelope);
        let Some(part) = self.part.as_mut() else {
            return Err(RecordError::Write {
                path: self.path.display().to_string(),
                message: "already finished".into(),
            });
        };
        part.write(topic, log_time_ns, publish_time_ns, compact.as_deref().unwrap_or(envelope))?;
        if let Some(v) = self.viewer.as_mut() {
            for m in v.convert(envelope) {
                part.write_viewer(&m, log_time_ns, publish_time_ns)?;
            }
        }
        self.messages += 1;
        Ok(())
    }

    /// Closes the current part and opens the next when it is over a split limit.
    fn roll_if_due(&mut self, log_time_ns: Nanos) -> Result<(), RecordError> {
        let Some(part) = self.part.as_ref() else { return Ok(()) };
        let by_size = self.opts.split_bytes.is_some_and(|b| part.len() >= b);
        let by_time =
            self.opts.split_ns.zip(part.first_ns).is_some_and(|(d, first)| log_time_ns.saturating_sub(first) >= d);
        if by_size || by_time {
            if let Some(done) = self.part.take() {
                done.finish(false)?;
            }
            self.part = Some(self.open_part()?);
        }
        Ok(())
    }

    /// Writes the last part's summary and closes it; returns the number of messages.
    pub fn finish(mut self) -> Result<u64, RecordError> {
        if let Some(part) = self.part.take() {
            part.finish(true)?;
        }
        Ok(self.messages)
    }

    /// Parts written so far (1 for an unsplit recording).
    pub fn parts(&self) -> u32 {
        self.parts
    }
}
