//! The spool's disk tier: records in segment files, first in, first out.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use vigil_bus::topics;

use super::ToLog;

/// The topics a record may name, by their index on disk.
const TOPICS: [&str; 6] = topics::ALL;

/// A segment file is closed and a new one begun past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Records in segment files, first in, first out. A record on disk:
/// `u32 length | u8 topic index | i64 capture_ns | i64 publish_ns | envelope`, little-endian.
#[derive(Debug)]
pub(super) struct DiskQueue {
    pub(super) dir: PathBuf,
    limit: u64,
    /// Segment ids on disk, oldest first; the last is the one written.
    segments: VecDeque<u64>,
    writer: Option<(BufWriter<File>, u64)>,
    reader: Option<BufReader<File>>,
    next_id: u64,
    /// Unread bytes and records.
    pub(super) bytes: u64,
    pub(super) records: u64,
}

const RECORD_HEAD: u64 = 4 + 1 + 8 + 8;

impl DiskQueue {
    pub(super) fn new(dir: PathBuf, limit: u64) -> Self {
        Self { dir, limit, segments: VecDeque::new(), writer: None, reader: None, next_id: 0, bytes: 0, records: 0 }
    }

    fn segment(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:08}.spool"))
    }

    /// Appends a record; `Ok(false)` when it would pass the size limit.
    pub(super) fn push(&mut self, r: &ToLog) -> std::io::Result<bool> {
        let size = RECORD_HEAD + r.envelope.len() as u64;
        if self.bytes + size > self.limit {
            return Ok(false);
        }
        let topic = TOPICS.iter().position(|t| *t == r.topic).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("unknown topic `{}`", r.topic))
        })? as u8;
        if self.writer.as_ref().is_none_or(|(_, written)| *written >= SEGMENT_BYTES) {
            std::fs::create_dir_all(&self.dir)?;
            let id = self.next_id;
            let file = File::create(self.segment(id))?;
            self.next_id += 1;
            self.segments.push_back(id);
            self.writer = Some((BufWriter::with_capacity(1 << 20, file), 0));
        }
        let Some((w, written)) = &mut self.writer else { unreachable!("opened above") };
        w.write_all(&(r.envelope.len() as u32).to_le_bytes())?;
        w.write_all(&[topic])?;
        w.write_all(&r.capture_ns.to_le_bytes())?;
        w.write_all(&r.publish_ns.to_le_bytes())?;
        w.write_all(&r.envelope)?;
        *written += size;
        self.bytes += size;
        self.records += 1;
        Ok(true)
    }

    /// The oldest record, or `None` when the disk holds none.
    pub(super) fn pop(&mut self) -> std::io::Result<Option<ToLog>> {
        if self.records == 0 {
            return Ok(None);
        }
        if let Some((w, _)) = &mut self.writer {
            w.flush()?;
        }
        loop {
            let Some(&id) = self.segments.front() else {
                return Err(std::io::Error::other("records counted but no segment left"));
            };
            if self.reader.is_none() {
                self.reader = Some(BufReader::with_capacity(1 << 20, File::open(self.segment(id))?));
            }
            let Some(reader) = &mut self.reader else { unreachable!("opened above") };
            match read_record(reader)? {
                Some(r) => {
                    self.bytes -= (RECORD_HEAD + r.envelope.len() as u64).min(self.bytes);
                    self.records -= 1;
                    if self.records == 0 {
                        // Drained: start over with no files at all.
                        self.remove_all();
                    }
                    return Ok(Some(r));
                }
                None if self.segments.len() > 1 => {
                    self.reader = None;
                    self.segments.pop_front();
                    std::fs::remove_file(self.segment(id))?;
                }
                None => return Err(std::io::Error::other("a segment ended before its counted records")),
            }
        }
    }

    pub(super) fn remove_all(&mut self) {
        self.writer = None;
        self.reader = None;
        self.segments.clear();
        self.bytes = 0;
        self.records = 0;
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One record, or `None` at a clean end of the file.
fn read_record(r: &mut impl Read) -> std::io::Result<Option<ToLog>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut head = [0u8; 17];
    r.read_exact(&mut head)?;
    let topic = *TOPICS.get(head[0] as usize).ok_or_else(|| std::io::Error::other("bad topic index"))?;
    let capture_ns = i64::from_le_bytes(head[1..9].try_into().map_err(std::io::Error::other)?);
    let publish_ns = i64::from_le_bytes(head[9..17].try_into().map_err(std::io::Error::other)?);
    let mut envelope = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut envelope)?;
    Ok(Some(ToLog { topic, capture_ns, publish_ns, envelope: Arc::new(envelope) }))
}
