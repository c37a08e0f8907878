//! The consumer side: records by capture-time window, and the drives in the topics.

use super::*;

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// Where each partition's read starts (its low watermark, or the first record at or
/// after `from_ms`) and the high watermark it ends at.
fn start_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    from_ms: Option<i64>,
    timeout: Duration,
) -> Result<(TopicPartitionList, BTreeMap<i32, i64>), TransportError> {
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| broker_err(format!("watermarks of {topic}/{p}"), e))?;
        ends.insert(p, high);
        // With a window start, offsets-for-times below moves this.
        tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(|e| broker_err("partition list", e))?;
    }
    if let Some(from) = from_ms {
        let mut q = TopicPartitionList::new();
        for &p in partitions {
            q.add_partition_offset(topic, p, Offset::Offset(from)).map_err(|e| broker_err("partition list", e))?;
        }
        let found = consumer.offsets_for_times(q, timeout).map_err(|e| broker_err("offsets-for-times", e))?;
        for el in found.elements() {
            let off = match el.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // No record at or after the time: start at the end (nothing to read).
                _ => Offset::Offset(ends[&el.partition()]),
            };
            tpl.set_partition_offset(topic, el.partition(), off).map_err(|e| broker_err("partition list", e))?;
        }
    }
    Ok((tpl, ends))
}

pub(super) fn consumed(topic: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> ConsumedRecord {
    ConsumedRecord { payload: m.payload().unwrap_or_default().to_vec(), ..consumed_meta(topic, m) }
}

/// A record's key, headers and place, without its payload.
fn consumed_meta(topic: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: topic.to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        timestamp_ms: m.timestamp().to_millis(),
        headers,
        payload: Vec::new(),
    }
}

/// Reads a topic's records (all partitions) whose Kafka timestamp (append wall time)
/// lies in `[from_ms, to_ms)`, up to the high watermark at the time of the call. The start
/// offsets come from the broker's offsets-for-times; records are filtered by timestamp
/// as well, so a broker that answers the lookup loosely still yields exactly the window.
pub fn read_window(
    cfg: &KafkaConfig,
    topic: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, TransportError> {
    let mut out = Vec::new();
    visit_window(cfg, topic, from_ms, to_ms, timeout, |m| out.push(consumed(topic, m)))?;
    Ok(out)
}

/// Calls `visit` with each record of `topic` in the window, as [`read_window`] reads
/// them, keeping none: memory does not grow with the topic. `timeout` bounds a wait for
/// the next record, not the whole read.
fn visit_window(
    cfg: &KafkaConfig,
    topic: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    timeout: Duration,
    mut visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), TransportError> {
    let mut c = client_config(cfg);
    c.set("group.id", format!("vigil-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create().map_err(|e| broker_err("Kafka consumer", e))?;
    let partitions = super::window::partitions(&consumer, topic, timeout)?;
    let (tpl, ends) = start_offsets(&consumer, topic, &partitions, from_ms, timeout)?;
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for el in tpl.elements() {
        if let Offset::Offset(o) = el.offset()
            && o < ends[&el.partition()]
        {
            remaining.insert(el.partition(), o);
        }
    }
    consumer.assign(&tpl).map_err(|e| broker_err("assign", e))?;
    let mut deadline = Instant::now() + timeout;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(broker_err(format!("reading `{topic}`"), format!("timed out with {remaining:?} left")));
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.map_err(|e| broker_err(format!("reading `{topic}`"), e))?;
        deadline = Instant::now() + timeout;
        let p = m.partition();
        let ts = m.timestamp().to_millis();
        if m.offset() >= ends[&p] {
            continue; // written after the call began
        }
        if m.offset() + 1 >= ends[&p] {
            remaining.remove(&p);
        }
        let in_window = ts.is_none_or(|t| from_ms.is_none_or(|f| t >= f) && to_ms.is_none_or(|e| t < e));
        if in_window {
            visit(&m);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn read_capture_window(
    cfg: &KafkaConfig,
    topic: &str,
    vehicle: Option<&str>,
    run: Option<&str>,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    slack: Duration,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, TransportError> {
    let from_ms = from_ns.map(|f| f.div_euclid(1_000_000) - slack.as_millis() as i64);
    let mut out = Vec::new();
    visit_window(cfg, topic, from_ms, None, timeout, |m| {
        let r = consumed_meta(topic, m);
        let capture = r.headers.get("capture_time_ns").and_then(|c| c.parse::<i64>().ok());
        let wanted = vehicle.is_none_or(|v| r.key.as_deref() == Some(v))
            && run.is_none_or(|d| r.headers.get("run_id").map(String::as_str) == Some(d))
            && capture.is_some_and(|c| from_ns.is_none_or(|f| c >= f) && to_ns.is_none_or(|t| c < t));
        if wanted {
            out.push(ConsumedRecord { payload: m.payload().unwrap_or_default().to_vec(), ..r });
        }
    })?;
    Ok(out)
}

/// One drive in Kafka: one vehicle process's run (`run_id` header) of one vehicle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriveSummary {
    /// The run id (what `--drive` takes).
    pub drive: String,
    pub vehicle: String,
    pub first_capture_ns: i64,
    pub last_capture_ns: i64,
    /// The scenario and seed of a simulated drive (`vigil run`); absent otherwise.
    pub scenario: Option<String>,
    pub seed: Option<u64>,
    /// Messages per logical stream (`lidar`, `camera`, `radar`, `groundtruth`, `tasks`,
    /// `recommendations`).
    pub messages: BTreeMap<String, u64>,
}

/// Every drive in Vigil's topics, oldest first. Reads each topic once, keeping only each
/// record's headers (they decide), so memory grows with the drives, not their records.
/// Records written before run ids existed are grouped under the drive `unknown`.
pub fn list_drives(cfg: &KafkaConfig, timeout: Duration) -> Result<Vec<DriveSummary>, TransportError> {
    let mut drives: BTreeMap<(String, String), DriveSummary> = BTreeMap::new();
    for l in topics::ALL {
        let topic = topic_name(&cfg.topic_prefix, l);
        let stream = l.rsplit('.').next().unwrap_or(l).to_string();
        let read = visit_window(cfg, &topic, None, None, timeout, |m| {
            tally(&mut drives, l, &stream, &consumed_meta(&topic, m));
        });
        match read {
            Ok(()) => {}
            // A topic not created yet holds no drive.
            Err(e) if matches!(crate::BrokerError::of(&e), Some(crate::BrokerError::NoSuchTopic)) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut out: Vec<DriveSummary> = drives.into_values().collect();
    for d in &mut out {
        if d.first_capture_ns == i64::MAX {
            (d.first_capture_ns, d.last_capture_ns) = (0, 0);
        }
    }
    // Run ids are UUIDv7 (time-ordered); the first capture breaks ties and orders the rest.
    out.sort_by(|a, b| (a.first_capture_ns, &a.drive, &a.vehicle).cmp(&(b.first_capture_ns, &b.drive, &b.vehicle)));
    Ok(out)
}

/// Counts record `r` of log topic `l` (`stream`: its last word) into its drive.
fn tally(drives: &mut BTreeMap<(String, String), DriveSummary>, l: &str, stream: &str, r: &ConsumedRecord) {
    let run = r.headers.get("run_id").cloned().unwrap_or_else(|| "unknown".into());
    let vehicle = r.key.clone().unwrap_or_default();
    let capture: i64 = r.headers.get("capture_time_ns").and_then(|c| c.parse().ok()).unwrap_or(0);
    let d = drives.entry((run.clone(), vehicle.clone())).or_insert_with(|| DriveSummary {
        drive: run,
        vehicle,
        first_capture_ns: i64::MAX,
        last_capture_ns: i64::MIN,
        scenario: None,
        seed: None,
        messages: BTreeMap::new(),
    });
    if d.scenario.is_none() {
        d.scenario = r.headers.get("scenario").cloned();
        d.seed = r.headers.get("seed").and_then(|s| s.parse().ok());
    }
    if l != topics::RECOMMENDATIONS && l != topics::TASKS {
        d.first_capture_ns = d.first_capture_ns.min(capture);
        d.last_capture_ns = d.last_capture_ns.max(capture);
    }
    *d.messages.entry(stream.to_string()).or_default() += 1;
}
