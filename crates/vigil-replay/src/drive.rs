//! A recorded drive: where its messages are (MCAP parts, or Kafka), which vehicles and
//! run it holds, and its messages streamed in capture order with a bounded look-ahead.

use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vigil_bus::embedded::playback::Recording;
use vigil_bus::embedded::recorder::run_of_task;
use vigil_bus::topics;
use vigil_core::{Digest, Nanos, RunId};
use vigil_proto::wire::Stream;

use crate::{ReplayError, bad};

/// One recorded message: the log topic (`vigil.telemetry.lidar`, …), the capture time,
/// the envelope as recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub topic: Arc<str>,
    pub capture_ns: Nanos,
    pub envelope: Vec<u8>,
}

/// How far ahead of the message it releases a stream reads, in capture time: messages
/// recorded out of order by less than this still come out in capture order.
pub const LOOK_AHEAD_NS: Nanos = 2_000_000_000;

/// Messages the reader thread may have ready ahead of the replay.
const READ_AHEAD: usize = 64;

/// Where a drive's messages are.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// MCAP files (one, or the parts of a split recording), read as one drive.
    Mcap(Arc<RecordingFiles>),
    /// Messages in memory.
    Memory(Arc<Vec<Recorded>>),
    /// A window of Kafka's topics, located.
    Kafka(Arc<crate::kafka::KafkaSource>),
}

/// An opened recording and the window to read of it.
#[derive(Debug)]
pub(crate) struct RecordingFiles {
    pub recording: Recording,
    pub from: Option<Nanos>,
    pub to: Option<Nanos>,
}

/// A drive to replay: its vehicles, the run that recorded it, where its messages are.
#[derive(Debug, Clone)]
pub struct Drive {
    /// The run that recorded it (from its task ids); a replay raises its tasks under the
    /// same run, so replayed and recorded task ids match.
    pub run: RunId,
    pub vehicles: Vec<String>,
    /// Only this vehicle's messages.
    pub vehicle: Option<String>,
    pub(crate) origin: Origin,
}

fn keep_topic(t: &str) -> bool {
    Stream::of_topic(t).is_some() || t == topics::RECOMMENDATIONS || t == topics::TASKS
}

impl Drive {
    /// A drive from messages in memory (any order): Vigil's log topics, `vehicle`'s
    /// messages only when given.
    pub fn new(mut messages: Vec<Recorded>, vehicle: Option<&str>) -> Result<Self, ReplayError> {
        messages.retain(|m| keep_topic(&m.topic));
        messages.sort_by_key(|m| m.capture_ns);
        let (vehicles, run) = scan(messages.iter().map(|m| Ok(m.clone())), vehicle)?;
        Ok(Self { run, vehicles, vehicle: vehicle.map(str::to_string), origin: Origin::Memory(Arc::new(messages)) })
    }

    /// The drive in a recording from `vigil run --record`, `vigil sim --record` or `vigil
    /// record`: a file, a directory of parts, or parts one by one; `from`/`to` bound the
    /// capture time read.
    pub fn from_mcap(
        sources: &[PathBuf],
        vehicle: Option<&str>,
        from: Option<Nanos>,
        to: Option<Nanos>,
    ) -> Result<Self, ReplayError> {
        let recording = Recording::open(sources).map_err(|e| bad(e.to_string()))?;
        let files = Arc::new(RecordingFiles { recording, from, to });
        let (vehicles, run) = match files.recording.vehicles() {
            Some(v) => {
                let v: BTreeMap<_, _> = v.into_iter().filter(|(id, _)| vehicle.is_none_or(|w| w == id)).collect();
                let run = v.values().flatten().next().and_then(|r| RunId::parse(r).ok());
                (v.into_keys().collect(), run.unwrap_or_else(|| RunId::reproducible(0)))
            }
            // No metadata (a recording from another tool, or an older one): one pass over
            // the small topics tells.
            None => {
                let small = [topics::TASKS, topics::RADAR, topics::GROUND_TRUTH];
                let msgs = files.recording.messages(Some(&small), from, to).map(|m| {
                    m.map(|m| Recorded { topic: m.topic, capture_ns: m.log_ns, envelope: m.envelope })
                        .map_err(|e| bad(e.to_string()))
                });
                scan(msgs, vehicle)?
            }
        };
        Ok(Self { run, vehicles, vehicle: vehicle.map(str::to_string), origin: Origin::Mcap(files) })
    }

    /// Bytes to read (compressed, on disk), when known.
    pub fn bytes(&self) -> Option<u64> {
        match &self.origin {
            Origin::Mcap(f) => Some(f.recording.bytes()),
            Origin::Memory(_) | Origin::Kafka(_) => None,
        }
    }

    /// Capture span of the drive (from its index), when known without reading it.
    pub fn span(&self) -> Option<(Nanos, Nanos)> {
        match &self.origin {
            Origin::Mcap(f) => {
                f.recording.span().map(|(a, b)| (f.from.map_or(a, |x| x.max(a)), f.to.map_or(b, |x| x.min(b))))
            }
            Origin::Kafka(_) => None,
            Origin::Memory(m) => {
                let mut t = m.iter().filter(|m| Stream::of_topic(&m.topic).is_some()).map(|m| m.capture_ns);
                let first = t.next()?;
                Some((first, t.next_back().unwrap_or(first)))
            }
        }
    }

    /// The drive's messages in capture order (stable), `vehicle`'s only, each once: read
    /// on a thread of their own, at most [`LOOK_AHEAD_NS`] of capture time ahead.
    pub fn stream(&self) -> Result<DriveStream, ReplayError> {
        self.stream_counted(Arc::default())
    }

    /// [`Drive::stream`], counting into `counters` (a progress bar reads them).
    pub fn stream_counted(&self, counters: Arc<StreamCounters>) -> Result<DriveStream, ReplayError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let (origin, vehicle, c) = (self.origin.clone(), self.vehicle.clone(), counters.clone());
        let known: HashSet<String> = self.vehicles.iter().cloned().collect();
        let reader = std::thread::Builder::new()
            .name("drive-reader".into())
            .spawn(move || {
                let send = |m| tx.send(m).is_ok();
                let mut order = Reorder::new(vehicle, known, c);
                let ok = match &origin {
                    Origin::Mcap(f) => {
                        // Camera frames stay compact: the workers decode the few tasks read.
                        let msgs = f.recording.messages(None, f.from, f.to).as_stored();
                        order.counters.read_bytes_from(msgs.read_bytes());
                        let _ = order.counters.other_channels.set(msgs.other_channels());
                        order.run(
                            msgs.map(|m| {
                                m.map(|m| Recorded { topic: m.topic, capture_ns: m.log_ns, envelope: m.envelope })
                                    .map_err(|e| bad(e.to_string()))
                            }),
                            &send,
                        )
                    }
                    Origin::Memory(m) => order.run(m.iter().cloned().map(Ok), &send),
                    Origin::Kafka(k) => match k.merged(None, order.counters.clone()) {
                        Ok(msgs) => order.run(msgs, &send),
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = ok {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| ReplayError::Replay(format!("cannot start the drive reader: {e}")))?;
        Ok(DriveStream { rx, reader: Some(reader), counters })
    }
}

/// Vehicles and run of a drive from its messages (in capture order).
pub(crate) fn scan(
    msgs: impl Iterator<Item = Result<Recorded, ReplayError>>,
    vehicle: Option<&str>,
) -> Result<(Vec<String>, RunId), ReplayError> {
    let mut vehicles = std::collections::BTreeSet::new();
    let mut run: Option<(Nanos, RunId)> = None;
    for m in msgs {
        let m = m?;
        let Some(h) = vigil_proto::header_of(&m.envelope) else { continue };
        if vehicle.is_some_and(|v| v != h.vehicle_id) || !keep_topic(&m.topic) {
            continue;
        }
        if &*m.topic == topics::TASKS
            && run.as_ref().is_none_or(|(t, _)| m.capture_ns < *t)
            && let Some(r) = run_of_task(&h.correlation_id).and_then(|r| RunId::parse(r).ok())
        {
            run = Some((m.capture_ns, r));
        }
        vehicles.insert(h.vehicle_id);
    }
    Ok((vehicles.into_iter().collect(), run.map_or_else(|| RunId::reproducible(0), |(_, r)| r)))
}

/// What a stream did besides passing messages on.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Compressed bytes read from the recording.
    pub read_bytes: AtomicU64,
    shared_bytes: std::sync::OnceLock<Arc<AtomicU64>>,
    /// Records read from the source (the drive's or not; Kafka: with the bisection's).
    pub records_read: AtomicU64,
    /// Messages passed on.
    pub messages: AtomicU64,
    /// Capture time of the last message passed on.
    pub last_capture_ns: std::sync::atomic::AtomicI64,
    /// Copies of a message already passed on (at-least-once delivery re-sent it).
    pub duplicates: AtomicU64,
    /// Messages that came more than the look-ahead behind ones already passed on: left
    /// out (and logged), since the replay clock cannot go back.
    pub late: AtomicU64,
    /// Messages without a readable header: left out.
    pub unreadable: AtomicU64,
    /// Messages claiming a vehicle the drive does not have (not in its metadata, nor in
    /// its small topics): left out, as no node of the replay would take them.
    pub foreign_vehicle: AtomicU64,
    /// Messages on a recording's channels of another schema than Vigil's envelope (a
    /// viewer's channels): not read as envelopes.
    other_channels: std::sync::OnceLock<Arc<AtomicU64>>,
}

impl StreamCounters {
    fn read_bytes_from(&self, shared: Arc<AtomicU64>) {
        let _ = self.shared_bytes.set(shared);
    }

    /// Messages skipped on channels of another schema.
    pub fn other_channels(&self) -> u64 {
        self.other_channels.get().map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Compressed bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.shared_bytes.get().map_or(self.read_bytes.load(Ordering::Relaxed), |b| b.load(Ordering::Relaxed))
    }
}

/// The identity of a message for dropping re-sent copies.
type MessageKey = (Arc<str>, String, String, u64, String, Nanos);

/// Orders messages by capture time within the look-ahead, filters and de-duplicates.
struct Reorder {
    vehicle: Option<String>,
    known: HashSet<String>,
    counters: Arc<StreamCounters>,
    heap: BinaryHeap<std::cmp::Reverse<(Nanos, u64, Held)>>,
    seq: u64,
    newest: Nanos,
    released: Nanos,
    /// Keys of messages held or passed within the last look-ahead, oldest first.
    seen: HashSet<MessageKey>,
    seen_order: VecDeque<(Nanos, MessageKey)>,
}

/// A held message (ordered by the heap's key only).
struct Held(Recorded);

impl PartialEq for Held {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Reorder {
    fn new(vehicle: Option<String>, known: HashSet<String>, counters: Arc<StreamCounters>) -> Self {
        Self {
            vehicle,
            known,
            counters,
            heap: BinaryHeap::new(),
            seq: 0,
            newest: Nanos::MIN,
            released: Nanos::MIN,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    fn run(
        &mut self,
        msgs: impl Iterator<Item = Result<Recorded, ReplayError>>,
        send: &dyn Fn(Result<Recorded, ReplayError>) -> bool,
    ) -> Result<(), ReplayError> {
        for m in msgs {
            let m = m?;
            if !keep_topic(&m.topic) {
                continue;
            }
            if !self.admit(&m) {
                continue;
            }
            self.newest = self.newest.max(m.capture_ns);
            self.heap.push(std::cmp::Reverse((m.capture_ns, self.seq, Held(m))));
            self.seq += 1;
            while let Some(std::cmp::Reverse((t, _, _))) = self.heap.peek() {
                if self.newest.saturating_sub(*t) <= LOOK_AHEAD_NS {
                    break;
                }
                if !self.release(send) {
                    return Ok(());
                }
            }
        }
        while !self.heap.is_empty() {
            if !self.release(send) {
                break;
            }
        }
        Ok(())
    }

    /// Whether a message is this drive's, on time, and not a copy.
    fn admit(&mut self, m: &Recorded) -> bool {
        let Some(h) = vigil_proto::header_of(&m.envelope) else {
            self.counters.unreadable.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if self.vehicle.as_deref().is_some_and(|v| v != h.vehicle_id) {
            return false;
        }
        if !self.known.contains(&h.vehicle_id) {
            if self.counters.foreign_vehicle.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(topic = %m.topic, vehicle = %h.vehicle_id, "a message claims a vehicle this drive does not have: left out (counted)");
            }
            return false;
        }
        let key = (m.topic.clone(), h.vehicle_id, h.sensor_id, h.sequence, h.correlation_id, h.publish_time_ns);
        if !self.seen.insert(key.clone()) {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if m.capture_ns < self.released {
            self.counters.late.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %m.topic, capture_ns = m.capture_ns, "a message recorded over 2 s out of order is left out of the replay");
            return false;
        }
        self.seen_order.push_back((m.capture_ns, key));
        while let Some((t, _)) = self.seen_order.front() {
            if self.released.saturating_sub(*t) <= 2 * LOOK_AHEAD_NS {
                break;
            }
            if let Some((_, k)) = self.seen_order.pop_front() {
                self.seen.remove(&k);
            }
        }
        true
    }

    fn release(&mut self, send: &dyn Fn(Result<Recorded, ReplayError>) -> bool) -> bool {
        let Some(std::cmp::Reverse((t, _, Held(m)))) = self.heap.pop() else { return true };
        self.released = self.released.max(t);
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        self.counters.last_capture_ns.store(t, Ordering::Relaxed);
        send(Ok(m))
    }
}

/// A drive's messages in capture order, read ahead on a thread.
#[derive(Debug)]
pub struct DriveStream {
    rx: std::sync::mpsc::Receiver<Result<Recorded, ReplayError>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<StreamCounters>,
}

impl Iterator for DriveStream {
    type Item = Result<Recorded, ReplayError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.rx.recv() {
            Ok(m) => Some(m),
            Err(_) => {
                if let Some(r) = self.reader.take()
                    && r.join().is_err()
                {
                    return Some(Err(ReplayError::Replay("the drive reader panicked".into())));
                }
                None
            }
        }
    }
}

/// A drive's name, `<vehicles>@<first capture ns>-<fingerprint>`, worked out as its
/// messages pass in capture order: the same drive read from Kafka or from MCAP has the
/// same id. The fingerprint (12 hex digits) tells apart drives of the same vehicles
/// starting at the same time (simulated drives all start at the scenario epoch): a hash
/// of the drive's first ground-truth message, else its first radar, lidar or camera
/// message. Ground truth and radar are small and never claim-checked, so their bytes are
/// the same from either source.
#[derive(Debug, Default)]
pub struct Identity {
    first_ns: Option<Nanos>,
    /// First message per fingerprint topic, hashed.
    firsts: [Option<String>; 4],
}

const FINGERPRINT_TOPICS: [&str; 4] = [topics::GROUND_TRUTH, topics::RADAR, topics::LIDAR, topics::CAMERA];

impl Identity {
    pub fn observe(&mut self, m: &Recorded) {
        if Stream::of_topic(&m.topic).is_some() && self.first_ns.is_none() {
            self.first_ns = Some(m.capture_ns);
        }
        if let Some(i) = FINGERPRINT_TOPICS.iter().position(|t| *t == &*m.topic)
            && self.firsts[i].is_none()
        {
            let mut d = Digest::new();
            d.update(m.topic.as_bytes());
            d.update(&m.envelope);
            self.firsts[i] = Some(d.hex()[..12].to_string());
        }
    }

    pub fn id(&self, vehicles: &[String], vehicle: Option<&str>) -> String {
        match self.first_ns {
            Some(t) => {
                let fp =
                    self.firsts.iter().flatten().next().cloned().unwrap_or_else(|| Digest::new().hex()[..12].into());
                format!("{}@{t}-{fp}", vehicles.join("+"))
            }
            None => format!("{}@empty", vehicle.unwrap_or("all")),
        }
    }
}

pub(crate) fn header_of(bytes: &[u8]) -> Option<vigil_proto::v1::Header> {
    vigil_proto::header_of(bytes)
}
