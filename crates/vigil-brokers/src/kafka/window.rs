//! Reading one drive's capture-time window out of a topic without reading the topic:
//! per partition, the offsets where the window starts and ends are found by bisection,
//! then only that range is read, a fetch at a time.
//!
//! Kafka indexes append time, not capture time, and simulated drives all start at the
//! same capture epoch, so a capture time alone does not place a record. A drive (run)
//! does: its id is a UUIDv7 whose first 48 bits are its start (ms since the epoch), so
//! its records lie after the offsets-for-times of that start, and within one partition
//! one vehicle's records of one run are appended in capture order (its spool sends them
//! so). A probe at offset `o` reads forward to the run's first record at or after `o`
//! and compares its capture time with the target. Records appended further than
//! [`WINDOW_SLACK_NS`] out of capture order (a re-send after a long broker outage) can
//! fall outside a window read; a whole-drive read (no `--from`/`--to`) reads them all.

use super::*;
use crate::kafka::read::ConsumedRecord;

/// Margin around a window, capture time, for records appended slightly out of order.
pub const WINDOW_SLACK_NS: i64 = 5_000_000_000;

/// Records a probe reads forward at most, looking for one of the drive's.
const PROBE_SCAN: u64 = 20_000;

/// What to read of a topic.
#[derive(Debug, Clone, Default)]
pub struct WindowSpec {
    pub run: Option<String>,
    pub vehicle: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
}

impl WindowSpec {
    /// Whether a record is the drive's and inside the window.
    pub fn wants(&self, r: &ConsumedRecord) -> bool {
        let capture = r.headers.get("capture_time_ns").and_then(|c| c.parse::<i64>().ok());
        self.vehicle.as_deref().is_none_or(|v| r.key.as_deref() == Some(v))
            && self.run.as_deref().is_none_or(|d| r.headers.get("run_id").map(String::as_str) == Some(d))
            && capture.is_some_and(|c| self.from_ns.is_none_or(|f| c >= f) && self.to_ns.is_none_or(|t| c < t))
    }

    fn ours(&self, r: &ConsumedRecord) -> bool {
        self.vehicle.as_deref().is_none_or(|v| r.key.as_deref() == Some(v))
            && self.run.as_deref().is_none_or(|d| r.headers.get("run_id").map(String::as_str) == Some(d))
    }
}

/// The start of a UUIDv7 run id, ms since the epoch.
pub fn run_start_ms(run: &str) -> Option<i64> {
    let hex: String = run.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || hex.as_bytes().get(12) != Some(&b'7') {
        return None;
    }
    i64::from_str_radix(&hex[..12], 16).ok()
}

/// One partition's range to read, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// A topic's ranges and the records the bisection read to find them.
#[derive(Debug, Clone)]
pub struct Located {
    pub topic: String,
    pub ranges: Vec<Range>,
    pub probe_records: u64,
}

fn consumer(cfg: &KafkaConfig, fetch_bytes: usize) -> Result<BaseConsumer, TransportError> {
    let mut c = client_config(cfg);
    c.set("group.id", format!("vigil-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20")
        .set("max.partition.fetch.bytes", fetch_bytes.to_string())
        // At least the largest message, which librdkafka requires.
        .set("fetch.max.bytes", (fetch_bytes * 4).max(cfg.max_message_bytes).max(2 << 20).to_string())
        .set("queued.max.messages.kbytes", (fetch_bytes * 8 / 1024).max(1024).to_string())
        // librdkafka waits this long (default 1 s) before fetching again once the queue is
        // full; a reader merged with others fills its queue and would stall the merge.
        .set("fetch.queue.backoff.ms", "2");
    c.create().map_err(|e| broker_err("Kafka consumer", e))
}

/// The partitions of `topic`; `NoSuchTopic` when it has none.
pub(crate) fn partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, TransportError> {
    let meta = c.fetch_metadata(Some(topic), timeout).map_err(|e| broker_err(format!("metadata of `{topic}`"), e))?;
    let ps: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if ps.is_empty() {
        return Err(broker_err(format!("topic `{topic}`"), crate::BrokerError::NoSuchTopic));
    }
    Ok(ps)
}

/// Bisection state of one partition.
struct Probe<'a> {
    c: &'a BaseConsumer,
    topic: &'a str,
    partition: i32,
    spec: &'a WindowSpec,
    timeout: Duration,
    read: u64,
}

impl Probe<'_> {
    /// The offset and capture time of the drive's first record at or after `at` (within
    /// the scan limit), before `end`.
    fn first_ours(&mut self, at: i64, end: i64) -> Result<Option<(i64, i64)>, TransportError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(self.topic, self.partition, Offset::Offset(at))
            .map_err(|e| broker_err("partition list", e))?;
        self.c.assign(&tpl).map_err(|e| broker_err("assign", e))?;
        let deadline = Instant::now() + self.timeout;
        let mut scanned = 0;
        while scanned < PROBE_SCAN {
            if Instant::now() > deadline {
                return Err(broker_err(format!("probing `{}`/{}", self.topic, self.partition), "timed out"));
            }
            let Some(m) = self.c.poll(Duration::from_millis(100)) else { continue };
            let m = m.map_err(|e| broker_err(format!("reading `{}`", self.topic), e))?;
            if m.offset() < at {
                continue;
            }
            if m.offset() >= end {
                return Ok(None);
            }
            self.read += 1;
            scanned += 1;
            let r = super::read::consumed(self.topic, &m);
            if self.spec.ours(&r) {
                let capture = r.headers.get("capture_time_ns").and_then(|c| c.parse::<i64>().ok()).unwrap_or(i64::MIN);
                return Ok(Some((m.offset(), capture)));
            }
            if m.offset() + 1 >= end {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// The first offset in `[lo, hi)` from which every record of the drive was captured
    /// at or after `target` (`hi` when none is).
    ///
    /// Each probe is a fetch at a new offset, dear on a big topic, so the search
    /// interpolates between the records it has seen (a sensor's records are close to
    /// evenly spaced in capture time: a few probes, not log2 of the range), and falls
    /// back to halving whenever a guess did not at least halve the range.
    fn bisect(&mut self, mut lo: i64, mut hi: i64, target: i64) -> Result<i64, TransportError> {
        // The nearest records seen before and at-or-after the target: (offset, capture).
        let mut below: Option<(i64, i64)> = None;
        let mut above: Option<(i64, i64)> = None;
        let mut halve = true;
        while lo < hi {
            let mid = match (below, above) {
                (Some((o1, c1)), Some((o2, c2))) if !halve && c2 > c1 && o2 > o1 => {
                    let guess = o1 as f64 + (target - c1) as f64 / (c2 - c1) as f64 * (o2 - o1) as f64;
                    (guess.round() as i64).clamp(lo, hi - 1)
                }
                _ => lo + (hi - lo) / 2,
            };
            let before = hi - lo;
            match self.first_ours(mid, hi)? {
                Some((off, capture)) if capture < target => {
                    lo = off + 1;
                    below = Some((off, capture));
                }
                Some((off, capture)) => {
                    hi = mid;
                    above = Some((off, capture));
                }
                None => hi = mid,
            }
            halve = !halve && (hi - lo) * 2 > before;
        }
        Ok(lo)
    }
}

/// Where `spec` lies in `topic`, per partition. With a run: bisection between the run's
/// start and the high watermark. Without: the whole partition (from the offsets-for-times
/// of the window's start less the slack, when there is one), filtered as read.
pub fn locate(cfg: &KafkaConfig, topic: &str, spec: &WindowSpec, timeout: Duration) -> Result<Located, TransportError> {
    let c = consumer(cfg, 64 << 10)?;
    let mut ranges = Vec::new();
    let mut probe_records = 0;
    for p in partitions(&c, topic, timeout)? {
        let (low, high) =
            c.fetch_watermarks(topic, p, timeout).map_err(|e| broker_err(format!("watermarks of {topic}/{p}"), e))?;
        let from_ms = match spec.run.as_deref().and_then(run_start_ms) {
            Some(ms) => Some(ms - 60_000),
            None => spec.from_ns.map(|f| f.div_euclid(1_000_000) - WINDOW_SLACK_NS / 1_000_000 - 60_000),
        };
        let start = match from_ms {
            Some(ms) => offset_for_time(&c, topic, p, ms, high, timeout)?.max(low),
            None => low,
        };
        let (start, end) = if spec.run.is_some() {
            let mut probe = Probe { c: &c, topic, partition: p, spec, timeout, read: 0 };
            let s = match spec.from_ns {
                Some(f) => probe.bisect(start, high, f.saturating_sub(WINDOW_SLACK_NS))?,
                None => start,
            };
            let e = match spec.to_ns {
                Some(t) => probe.bisect(s, high, t.saturating_add(WINDOW_SLACK_NS))?,
                None => high,
            };
            probe_records += probe.read;
            (s, e)
        } else {
            (start, high)
        };
        if start < end {
            ranges.push(Range { partition: p, start, end });
        }
    }
    Ok(Located { topic: topic.to_string(), ranges, probe_records })
}

fn offset_for_time(
    c: &BaseConsumer,
    topic: &str,
    p: i32,
    ms: i64,
    high: i64,
    timeout: Duration,
) -> Result<i64, TransportError> {
    let mut q = TopicPartitionList::new();
    q.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(|e| broker_err("partition list", e))?;
    let found = c.offsets_for_times(q, timeout).map_err(|e| broker_err("offsets-for-times", e))?;
    Ok(found
        .elements()
        .first()
        .map(|el| match el.offset() {
            Offset::Offset(o) => o,
            _ => high,
        })
        .unwrap_or(high))
}

/// Reads located ranges a fetch at a time, in offset order per partition.
pub struct RangeReader {
    c: BaseConsumer,
    topic: String,
    remaining: BTreeMap<i32, i64>,
    timeout: Duration,
    /// Records read (the drive's or not).
    pub read: u64,
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader").field("topic", &self.topic).field("read", &self.read).finish()
    }
}

impl RangeReader {
    pub fn open(cfg: &KafkaConfig, located: &Located, timeout: Duration) -> Result<Self, TransportError> {
        let c = consumer(cfg, 2 << 20)?;
        let mut tpl = TopicPartitionList::new();
        let mut remaining = BTreeMap::new();
        for r in &located.ranges {
            tpl.add_partition_offset(&located.topic, r.partition, Offset::Offset(r.start))
                .map_err(|e| broker_err("partition list", e))?;
            remaining.insert(r.partition, r.end);
        }
        if !remaining.is_empty() {
            c.assign(&tpl).map_err(|e| broker_err("assign", e))?;
        }
        Ok(Self { c, topic: located.topic.clone(), remaining, timeout, read: 0 })
    }

    /// The next record of the ranges; `None` when they are read.
    pub fn next_record(&mut self) -> Result<Option<ConsumedRecord>, TransportError> {
        let deadline = Instant::now() + self.timeout;
        while !self.remaining.is_empty() {
            if Instant::now() > deadline {
                return Err(broker_err(
                    format!("reading `{}`", self.topic),
                    format!("timed out with {:?} left", self.remaining),
                ));
            }
            let Some(m) = self.c.poll(Duration::from_millis(100)) else { continue };
            let m = m.map_err(|e| broker_err(format!("reading `{}`", self.topic), e))?;
            let p = m.partition();
            let Some(&end) = self.remaining.get(&p) else { continue };
            if m.offset() >= end {
                continue;
            }
            if m.offset() + 1 >= end {
                self.remaining.remove(&p);
                // Fetch no further in a finished partition.
                let mut done = TopicPartitionList::new();
                done.add_partition(&self.topic, p);
                let _ = self.c.pause(&done);
            }
            self.read += 1;
            return Ok(Some(super::read::consumed(&self.topic, &m)));
        }
        Ok(None)
    }
}
