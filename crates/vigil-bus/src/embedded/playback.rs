//! Reads a recording back as it was recorded, a chunk at a time: a file, or the parts of
//! a split recording (a directory, or files given one by one) read as one drive. The
//! summary's chunk index takes a read straight to a capture-time window; memory holds
//! the chunks that overlap the messages being read, whatever the drive's length.
//! Compact camera frames come back as the RGB8 envelopes the vehicle saw.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mcap::sans_io::indexed_reader::{IndexedReadEvent, IndexedReader, IndexedReaderOptions};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};
use vigil_core::Nanos;

use super::recorder::{PART_METADATA, SCHEMA_NAME};

/// Why a recording could not be read; names the file and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("recording {path}: {reason}")]
pub struct PlaybackError {
    pub path: String,
    pub reason: String,
}

fn fail(path: &Path, reason: impl Into<String>) -> PlaybackError {
    PlaybackError { path: path.display().to_string(), reason: reason.into() }
}

const MAGIC: &[u8] = b"\x89MCAP0\r\n";

/// Largest record (chunk) a reader accepts: a damaged length must not allocate gigabytes.
const RECORD_LIMIT: usize = 256 << 20;

/// One file of a recording, its summary read.
struct PartFile {
    path: PathBuf,
    size: u64,
    summary: mcap::Summary,
    /// From its `vigil.part` record: index, last, vehicle → "run@capture".
    index: Option<u32>,
    last: Option<bool>,
    vehicles: BTreeMap<String, String>,
}

/// A recording opened for reading.
pub struct Recording {
    parts: Vec<PartFile>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.parts.iter().map(|p| p.path.display().to_string()).collect();
        f.debug_struct("Recording").field("parts", &paths).finish()
    }
}

/// The MCAP files `sources` name: each file itself, each directory its `*.mcap` files.
fn expand(sources: &[PathBuf]) -> Result<Vec<PathBuf>, PlaybackError> {
    let mut files = Vec::new();
    for s in sources {
        if s.is_dir() {
            let entries = std::fs::read_dir(s).map_err(|e| fail(s, format!("cannot list the directory: {e}")))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "mcap"))
                .collect();
            if found.is_empty() {
                return Err(fail(s, "the directory holds no .mcap files (give a recording or its parts)"));
            }
            found.sort();
            files.extend(found);
        } else if s.exists() {
            files.push(s.clone());
        } else {
            return Err(fail(s, "no such file or directory"));
        }
    }
    Ok(files)
}

fn read_summary(path: &Path) -> Result<PartFile, PlaybackError> {
    let mut file = File::open(path).map_err(|e| fail(path, format!("cannot open: {e}")))?;
    let size = file.metadata().map_err(|e| fail(path, e.to_string()))?.len();
    let mut magic = [0u8; 8];
    if file.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(fail(
            path,
            "not an MCAP file (no MCAP magic at its start); give a recording from `vigil record` or `vigil run --record`",
        ));
    }
    let truncated = |e: &dyn std::fmt::Display| {
        fail(
            path,
            format!(
                "truncated or damaged: no readable summary at its end ({e}); the recorder did not finish it (a crash or a full disk?) — `mcap recover` can rebuild one"
            ),
        )
    };
    let opts = SummaryReaderOptions::default().with_file_size(size).with_record_length_limit(RECORD_LIMIT);
    let mut reader = SummaryReader::new_with_options(opts);
    while let Some(event) = reader.next_event() {
        match event.map_err(|e| truncated(&e))? {
            SummaryReadEvent::ReadRequest(need) => {
                let n = file.read(reader.insert(need)).map_err(|e| fail(path, e.to_string()))?;
                reader.notify_read(n);
            }
            SummaryReadEvent::SeekRequest(to) => {
                reader.notify_seeked(file.seek(to).map_err(|e| fail(path, e.to_string()))?);
            }
        }
    }
    let summary = reader.finish().ok_or_else(|| truncated(&"no summary section"))?;
    if summary.chunk_indexes.is_empty() && summary.stats.as_ref().is_some_and(|s| s.message_count > 0) {
        return Err(fail(path, "has no chunk index (written without one); re-record it with Vigil"));
    }
    check_channels(path, &summary)?;
    let mut part =
        PartFile { path: path.to_path_buf(), size, summary, index: None, last: None, vehicles: BTreeMap::new() };
    read_part_metadata(&mut file, &mut part)?;
    Ok(part)
}

/// Whether a channel carries Vigil's envelopes; any other (a viewer's `foxglove.*`
/// channel, another tool's) is not read as one, whatever its topic.
fn is_vigil(c: &mcap::Channel<'_>) -> bool {
    c.message_encoding == "protobuf"
        && c.schema.as_ref().is_some_and(|s| s.name == SCHEMA_NAME && s.encoding == "protobuf")
}

/// A file with messages but no Vigil channel is not a Vigil recording: say so rather than
/// replay nothing.
fn check_channels(path: &Path, summary: &mcap::Summary) -> Result<(), PlaybackError> {
    let has_messages = summary.stats.as_ref().is_none_or(|s| s.message_count > 0);
    if !has_messages || summary.channels.is_empty() || summary.channels.values().any(|c| is_vigil(c)) {
        return Ok(());
    }
    let mut seen: Vec<String> = summary
        .channels
        .values()
        .map(|c| format!("{} ({})", c.topic, c.schema.as_ref().map_or("no schema", |s| s.name.as_str())))
        .collect();
    seen.sort();
    seen.truncate(8);
    Err(fail(
        path,
        format!(
            "holds no `{SCHEMA_NAME}` channel (it has {}): not a Vigil recording; give one from `vigil record` or `vigil run --record`",
            seen.join(", ")
        ),
    ))
}

fn read_part_metadata(file: &mut File, part: &mut PartFile) -> Result<(), PlaybackError> {
    let Some(ix) = part.summary.metadata_indexes.iter().find(|m| m.name == PART_METADATA).cloned() else {
        return Ok(());
    };
    let bad = |e: &dyn std::fmt::Display| fail(&part.path, format!("damaged `{PART_METADATA}` record: {e}"));
    if ix.length > 1 << 20 || ix.length < 9 {
        return Err(bad(&"implausible length"));
    }
    let mut buf = vec![0u8; ix.length as usize];
    file.seek(SeekFrom::Start(ix.offset)).map_err(|e| bad(&e))?;
    file.read_exact(&mut buf).map_err(|e| bad(&e))?;
    let meta = match mcap::parse_record(buf[0], &buf[9..]).map_err(|e| bad(&e))? {
        mcap::records::Record::Metadata(m) => m.metadata,
        _ => return Err(bad(&"not a metadata record")),
    };
    part.index = meta.get("index").and_then(|i| i.parse().ok());
    part.last = meta.get("last").map(|l| l == "true");
    for (k, v) in meta {
        if let Some(vehicle) = k.strip_prefix("vehicle:") {
            part.vehicles.insert(vehicle.to_string(), v);
        }
    }
    Ok(())
}

/// Puts parts in index order and checks none is missing: indexes 0..n, the last marked.
fn order_parts(mut parts: Vec<PartFile>) -> Result<Vec<PartFile>, PlaybackError> {
    if parts.len() == 1 || parts.iter().any(|p| p.index.is_none()) {
        return Ok(parts);
    }
    parts.sort_by_key(|p| p.index);
    let dir = parts[0].path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (want, p) in parts.iter().enumerate() {
        if p.index != Some(want as u32) {
            let have: Vec<String> = parts.iter().filter_map(|p| p.index).map(|i| i.to_string()).collect();
            return Err(fail(
                &super::recorder::part_path(&dir, want as u32),
                format!(
                    "part {want} of the split recording is missing (have parts {}); restore it or give the parts before it",
                    have.join(", ")
                ),
            ));
        }
    }
    let last = parts.last().map(|p| (p.path.clone(), p.last));
    if let Some((path, Some(false))) = last {
        let next = super::recorder::part_path(path.parent().unwrap_or(Path::new(".")), parts.len() as u32);
        return Err(fail(&next, "the split recording continues in this part, which is missing"));
    }
    Ok(parts)
}

impl Recording {
    /// Opens a file, a directory of parts, or parts given one by one, and checks each.
    pub fn open(sources: &[PathBuf]) -> Result<Self, PlaybackError> {
        let files = expand(sources)?;
        let parts = files.iter().map(|f| read_summary(f)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { parts: order_parts(parts)? })
    }

    /// The files, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|p| p.path.clone()).collect()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// Messages recorded (from the summaries' statistics).
    pub fn message_count(&self) -> u64 {
        self.parts.iter().filter_map(|p| p.summary.stats.as_ref()).map(|s| s.message_count).sum()
    }

    /// First and last log time over all parts.
    pub fn span(&self) -> Option<(Nanos, Nanos)> {
        let stats = self.parts.iter().filter_map(|p| p.summary.stats.as_ref()).filter(|s| s.message_count > 0);
        stats.fold(None, |acc, s| {
            let (a, b) = (s.message_start_time as Nanos, s.message_end_time as Nanos);
            Some(acc.map_or((a, b), |(x, y): (Nanos, Nanos)| (x.min(a), y.max(b))))
        })
    }

    /// Vehicle → the run of its earliest task (`None`: it raised none), from the parts'
    /// metadata; `None` when a part has no metadata (a recording from before it, or from
    /// another tool): then the messages tell.
    pub fn vehicles(&self) -> Option<BTreeMap<String, Option<String>>> {
        if self.parts.iter().any(|p| p.index.is_none()) {
            return None;
        }
        let mut earliest: BTreeMap<String, Option<(Nanos, String)>> = BTreeMap::new();
        for p in &self.parts {
            for (v, run) in &p.vehicles {
                let e = earliest.entry(v.clone()).or_default();
                let parsed = run.rsplit_once('@').and_then(|(r, t)| Some((t.parse::<Nanos>().ok()?, r.to_string())));
                if let Some((t, r)) = parsed
                    && e.as_ref().is_none_or(|(et, _)| t < *et)
                {
                    *e = Some((t, r));
                }
            }
        }
        Some(earliest.into_iter().map(|(v, r)| (v, r.map(|(_, r)| r))).collect())
    }

    /// The messages on `topics` (all when `None`) logged in `[from, to)`, in log-time order
    /// within each part, parts in order.
    pub fn messages(&self, topics: Option<&[&str]>, from: Option<Nanos>, to: Option<Nanos>) -> Messages<'_> {
        Messages {
            expand: true,
            rec: self,
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            window: (from, to),
            next_part: 0,
            open: None,
            read_bytes: Arc::new(AtomicU64::new(0)),
            other_channels: Arc::new(AtomicU64::new(0)),
            done: false,
        }
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Played {
    pub topic: Arc<str>,
    pub log_ns: Nanos,
    pub envelope: Vec<u8>,
}

struct OpenPart {
    file: File,
    reader: IndexedReader,
    topics: BTreeMap<u16, Arc<str>>,
    path: PathBuf,
    buf: Vec<u8>,
}

/// The messages of a recording, read a chunk at a time.
pub struct Messages<'a> {
    rec: &'a Recording,
    topics: Option<Vec<String>>,
    window: (Option<Nanos>, Option<Nanos>),
    next_part: usize,
    open: Option<OpenPart>,
    read_bytes: Arc<AtomicU64>,
    other_channels: Arc<AtomicU64>,
    done: bool,
    expand: bool,
}

impl std::fmt::Debug for Messages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").field("next_part", &self.next_part).finish()
    }
}

impl Messages<'_> {
    /// Camera frames as stored (`RGB8_ZSTD`), not decoded to RGB8: for a reader that
    /// decodes only the frames it uses.
    pub fn as_stored(mut self) -> Self {
        self.expand = false;
        self
    }

    /// Compressed bytes read so far (for a progress bar), shared.
    pub fn read_bytes(&self) -> Arc<AtomicU64> {
        self.read_bytes.clone()
    }

    /// Messages skipped so far because their channel does not carry `vigil.v1.Envelope`,
    /// shared.
    pub fn other_channels(&self) -> Arc<AtomicU64> {
        self.other_channels.clone()
    }

    fn open_next(&mut self) -> Result<bool, PlaybackError> {
        let Some(part) = self.rec.parts.get(self.next_part) else { return Ok(false) };
        self.next_part += 1;
        let mut opts = IndexedReaderOptions::new().with_record_length_limit(RECORD_LIMIT);
        let ours: Vec<String> =
            part.summary.channels.values().filter(|c| is_vigil(c)).map(|c| c.topic.clone()).collect();
        opts = opts.include_topics(match &self.topics {
            Some(t) => t.iter().filter(|t| ours.contains(t)).cloned().collect(),
            None => ours,
        });
        if let Some(f) = self.window.0 {
            opts = opts.starting_at(f.max(0) as u64);
        }
        if let Some(t) = self.window.1 {
            opts = opts.ending_before(t.max(0) as u64);
        }
        let reader =
            IndexedReader::new_with_options(&part.summary, opts).map_err(|e| fail(&part.path, e.to_string()))?;
        let file = File::open(&part.path).map_err(|e| fail(&part.path, format!("cannot open: {e}")))?;
        let topics = part
            .summary
            .channels
            .iter()
            .filter(|(_, c)| is_vigil(c))
            .map(|(id, c)| (*id, Arc::from(c.topic.as_str())))
            .collect();
        self.open = Some(OpenPart { file, reader, topics, path: part.path.clone(), buf: Vec::new() });
        Ok(true)
    }

    fn next_in_part(&mut self) -> Result<Option<Played>, PlaybackError> {
        let Some(p) = self.open.as_mut() else { return Ok(None) };
        loop {
            let Some(event) = p.reader.next_event() else { return Ok(None) };
            match event.map_err(|e| fail(&p.path, format!("damaged chunk: {e}")))? {
                IndexedReadEvent::ReadChunkRequest { offset, length } => {
                    p.buf.resize(length, 0);
                    p.file.seek(SeekFrom::Start(offset)).map_err(|e| fail(&p.path, e.to_string()))?;
                    p.file.read_exact(&mut p.buf).map_err(|e| fail(&p.path, format!("truncated chunk: {e}")))?;
                    self.read_bytes.fetch_add(length as u64, Ordering::Relaxed);
                    p.reader.insert_chunk_record_data(offset, &p.buf).map_err(|e| fail(&p.path, e.to_string()))?;
                }
                IndexedReadEvent::Message { header, data } => {
                    let Some(topic) = p.topics.get(&header.channel_id).cloned() else {
                        self.other_channels.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    // Lidar sweeps are always expanded (cheap, and fusion reads every one).
                    let expanded = if vigil_proto::points::is_lidar(data) {
                        vigil_proto::points::expand_lidar(data).map_err(|e| e.to_string())
                    } else if self.expand {
                        vigil_proto::pixels::expand_camera(data).map_err(|e| e.to_string())
                    } else {
                        Ok(None)
                    };
                    let envelope = match expanded {
                        Ok(Some(e)) => e,
                        Ok(None) => data.to_vec(),
                        Err(e) => return Err(fail(&p.path, e)),
                    };
                    return Ok(Some(Played { topic, log_ns: header.log_time as Nanos, envelope }));
                }
            }
        }
    }
}

impl Iterator for Messages<'_> {
    type Item = Result<Played, PlaybackError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.next_in_part() {
                Ok(Some(m)) => return Some(Ok(m)),
                Ok(None) => match self.open_next() {
                    Ok(true) => {}
                    Ok(false) => self.done = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Reads every (topic, log time, envelope) of a recording into memory: for tests and
/// small tools; a replay streams with [`Recording::messages`].
pub fn read_all(path: &Path) -> Result<Vec<(String, Nanos, Vec<u8>)>, PlaybackError> {
    let rec = Recording::open(&[path.to_path_buf()])?;
    rec.messages(None, None, None).map(|m| m.map(|m| (m.topic.to_string(), m.log_ns, m.envelope))).collect()
}
