//! A drive read from Kafka: its window of each topic, claim-checked camera frames fetched
//! back from the frame store; and a drive written out as a recording (`vigil record`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_bus::embedded::recorder::{McapRecorder, RecordError, RecordOptions};
use vigil_bus::topics;
use vigil_core::Nanos;
use vigil_proto::wire::Stream;

use crate::drive::{Drive, Identity, Origin, Recorded, StreamCounters, header_of};
use crate::{ReplayError, bad};

/// What `Drive::write_mcap` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub drive: String,
    pub messages: u64,
    pub frames: u64,
    pub parts: u32,
    /// Records read from the source, the drive's or not (Kafka: with the bisection's).
    pub records_read: u64,
    pub first_capture_ns: Option<Nanos>,
    pub last_capture_ns: Option<Nanos>,
}

impl Drive {
    /// `vehicle`'s drive in Kafka (one run's with `run`; every vehicle's of that run when
    /// `vehicle` is `None`), captured in `[from_ns, to_ns)`: telemetry, the task audit log
    /// and the recommendations, read as it is replayed. With a run, only the window's
    /// offsets are read (see `vigil_brokers::kafka::window`); claim-checked camera frames
    /// are fetched back from the frame store (sha256 verified) and inlined on the way.
    pub fn from_kafka(
        brokers: &vigil_brokers::BrokerConfig,
        vehicle: Option<&str>,
        run: Option<&str>,
        from_ns: Option<Nanos>,
        to_ns: Option<Nanos>,
    ) -> Result<Self, ReplayError> {
        use vigil_brokers::kafka::topic_name;
        use vigil_brokers::kafka::window::{WindowSpec, locate};
        let spec = WindowSpec { run: run.map(str::to_string), vehicle: vehicle.map(str::to_string), from_ns, to_ns };
        let logicals: Vec<&'static str> =
            Stream::ALL.iter().map(|s| s.topic()).chain([topics::RECOMMENDATIONS, topics::TASKS]).collect();
        // Each topic is located side by side (a bisection mostly waits on the broker).
        let located: Vec<_> = std::thread::scope(|s| {
            let finders: Vec<_> = logicals
                .iter()
                .map(|logical| {
                    let topic = topic_name(&brokers.kafka.topic_prefix, logical);
                    let spec = &spec;
                    s.spawn(move || locate(&brokers.kafka, &topic, spec, KAFKA_TIMEOUT))
                })
                .collect();
            finders.into_iter().map(|r| r.join()).collect()
        });
        let mut topics_read = Vec::new();
        for (logical, l) in logicals.iter().zip(located) {
            let l = l.map_err(|_| ReplayError::Replay(format!("the locator of `{logical}` panicked")))??;
            topics_read.push(KafkaTopic { logical, located: l });
        }
        let source = Arc::new(KafkaSource { brokers: brokers.clone(), spec, topics: topics_read });
        // The vehicles and the run, from the small topics of the window.
        let small = [topics::TASKS, topics::RADAR, topics::GROUND_TRUTH];
        let msgs = source.merged(Some(&small), Arc::default())?;
        let (vehicles, found_run) = crate::drive::scan(msgs, vehicle)?;
        let run = match run {
            Some(r) => vigil_core::RunId::parse(r).map_err(bad)?,
            None => found_run,
        };
        Ok(Self { run, vehicles, vehicle: vehicle.map(str::to_string), origin: Origin::Kafka(source) })
    }

    /// Writes the drive as a recording (the format of `vigil run --record`), streaming;
    /// `progress` counts the read.
    pub fn write_mcap(
        &self,
        path: &Path,
        opts: RecordOptions,
        progress: &Arc<crate::drive::StreamCounters>,
    ) -> Result<Written, ReplayError> {
        let err = |e: RecordError| bad(e.to_string());
        let mut rec = McapRecorder::with_options(path, opts).map_err(err)?;
        let mut identity = Identity::default();
        let (mut frames, mut first, mut last) = (0, None, None);
        for m in self.stream_counted(progress.clone())? {
            let m = m?;
            identity.observe(&m);
            if Stream::of_topic(&m.topic).is_some() {
                frames += 1;
                first.get_or_insert(m.capture_ns);
                last = Some(m.capture_ns);
            }
            let publish = header_of(&m.envelope).map_or(m.capture_ns, |h| h.publish_time_ns);
            rec.write(&m.topic, m.capture_ns, publish, &m.envelope).map_err(err)?;
        }
        let parts = rec.parts();
        let messages = rec.finish().map_err(err)?;
        Ok(Written {
            drive: identity.id(&self.vehicles, self.vehicle.as_deref()),
            messages,
            frames,
            parts,
            records_read: progress.records_read.load(Ordering::Relaxed),
            first_capture_ns: first,
            last_capture_ns: last,
        })
    }
}

/// How long a Kafka read may wait on the broker.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(120);

/// One topic of a Kafka drive, located.
#[derive(Debug)]
pub(crate) struct KafkaTopic {
    logical: &'static str,
    located: vigil_brokers::kafka::window::Located,
}

/// A drive in Kafka: the brokers, what to read, and where it lies in each topic.
#[derive(Debug)]
pub(crate) struct KafkaSource {
    brokers: vigil_brokers::BrokerConfig,
    spec: vigil_brokers::kafka::window::WindowSpec,
    topics: Vec<KafkaTopic>,
}

impl KafkaSource {
    /// The drive's records of `only` (all topics when `None`), one topic reader each,
    /// merged by capture time; counts the records read into `counters`.
    pub(crate) fn merged(
        &self,
        only: Option<&[&str]>,
        counters: Arc<StreamCounters>,
    ) -> Result<KafkaMerge, ReplayError> {
        use vigil_brokers::kafka::window::RangeReader;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| ReplayError::Replay(e.to_string()))?;
        let store = vigil_brokers::store::ObjectFrameStore::open(&self.brokers.frames.url, rt.handle().clone())?;
        let mut readers = Vec::new();
        for t in self.topics.iter().filter(|t| only.is_none_or(|o| o.contains(&t.logical))) {
            counters.records_read.fetch_add(t.located.probe_records, Ordering::Relaxed);
            readers.push((t.logical, RangeReader::open(&self.brokers.kafka, &t.located, KAFKA_TIMEOUT)?));
        }
        let heads = readers.iter().map(|_| None).collect();
        Ok(KafkaMerge { readers, heads, spec: self.spec.clone(), store, _rt: rt, counters, started: false })
    }
}

/// The k-way merge of a drive's topic readers by capture time.
pub(crate) struct KafkaMerge {
    readers: Vec<(&'static str, vigil_brokers::kafka::window::RangeReader)>,
    heads: Vec<Option<Recorded>>,
    spec: vigil_brokers::kafka::window::WindowSpec,
    store: vigil_brokers::store::ObjectFrameStore,
    _rt: tokio::runtime::Runtime,
    counters: Arc<StreamCounters>,
    started: bool,
}

impl KafkaMerge {
    /// The next record of reader `i` that is the drive's, inlined.
    fn pull(&mut self, i: usize) -> Result<Option<Recorded>, ReplayError> {
        let (logical, reader) = &mut self.readers[i];
        while let Some(r) = reader.next_record()? {
            self.counters.records_read.fetch_add(1, Ordering::Relaxed);
            self.counters.read_bytes.fetch_add(r.payload.len() as u64, Ordering::Relaxed);
            if !self.spec.wants(&r) {
                continue;
            }
            let capture_ns = r.headers.get("capture_time_ns").and_then(|c| c.parse().ok()).unwrap_or(0);
            let envelope =
                if *logical == topics::CAMERA { self.store.inline_claim_checked(r.payload)? } else { r.payload };
            return Ok(Some(Recorded { topic: Arc::from(*logical), capture_ns, envelope }));
        }
        Ok(None)
    }
}

impl Iterator for KafkaMerge {
    type Item = Result<Recorded, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for i in 0..self.readers.len() {
                match self.pull(i) {
                    Ok(h) => self.heads[i] = h,
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        let i = (0..self.heads.len())
            .filter(|i| self.heads[*i].is_some())
            .min_by_key(|i| self.heads[*i].as_ref().map_or(Nanos::MAX, |m| m.capture_ns))?;
        let out = self.heads[i].take();
        match self.pull(i) {
            Ok(h) => self.heads[i] = h,
            Err(e) => return Some(Err(e)),
        }
        out.map(Ok)
    }
}
