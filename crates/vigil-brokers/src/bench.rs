//! Broker benchmarks, each against a bare client doing the same work in the same run:
//!
//! - task round trip (publish → worker takes → reply → vehicle receives → ack) through
//!   [`AmqpTasks`] against a bare lapin request/reply of the same payload size, for
//!   transient and for persistent tasks (the cost of waiting for the broker's disk);
//! - log ingest through [`KafkaLog`] against a bare rdkafka producer sending the same
//!   bytes to the same broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde::Serialize;
use vigil_bus::task::QueuedTask;
use vigil_bus::{LogRecord, Reply, Settle, TaskTransport, TelemetryLog, TransportError};
use vigil_core::{Clock, WallClock};

use crate::amqp::{AmqpTasks, amqp_url};
use crate::config::{AmqpConfig, KafkaConfig, Persistence};
use crate::kafka::{KafkaLog, ensure_topics, producer_config, record_headers, topic_name};

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Millis {
    pub p50: f64,
    pub p99: f64,
    pub samples: usize,
}

fn millis(mut v: Vec<f64>) -> Millis {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Millis { p50: at(0.5), p99: at(0.99), samples: v.len() }
}

/// `vigil bench amqp`.
#[derive(Debug, Clone, Serialize)]
pub struct AmqpBench {
    pub payload_bytes: usize,
    pub bare: Millis,
    pub vigil_transient: Millis,
    pub vigil_persistent: Millis,
    /// vigil_transient.p50 / bare.p50 − 1.
    pub overhead_p50: f64,
    pub overhead_p99: f64,
    /// vigil_persistent.p50 / vigil_transient.p50 − 1: the price of the disk.
    pub persistence_cost_p50: f64,
}

/// Bare lapin: publish a request to a queue, a consumer replies to a reply queue with the
/// correlation id, the requester waits for it. Confirms on, transient, like Vigil's path.
async fn bare_round_trips(url: &str, prefix: &str, payload: &[u8], n: usize) -> Result<Vec<f64>, TransportError> {
    let conn =
        Connection::connect(url, ConnectionProperties::default()).await.map_err(|e| crate::broker_err("connect", e))?;
    let req_q = format!("{prefix}.bare.req");
    let rep_q = format!("{prefix}.bare.rep");
    let pubc = conn.create_channel().await.map_err(|e| crate::broker_err("channel", e))?;
    pubc.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| crate::broker_err("confirm", e))?;
    for q in [&req_q, &rep_q] {
        pubc.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .map_err(|e| crate::broker_err("declare", e))?;
    }
    let worker = conn.create_channel().await.map_err(|e| crate::broker_err("channel", e))?;
    worker.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| crate::broker_err("confirm", e))?;
    let mut reqs = worker
        .basic_consume(req_q.as_str().into(), "bare-w".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| crate::broker_err("consume", e))?;
    let rep_c = conn.create_channel().await.map_err(|e| crate::broker_err("channel", e))?;
    let mut reps = rep_c
        .basic_consume(
            rep_q.as_str().into(),
            "bare-r".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .map_err(|e| crate::broker_err("consume", e))?;
    let rep_name = rep_q.clone();
    let responder = tokio::spawn(async move {
        while let Some(Ok(d)) = reqs.next().await {
            let corr = d.properties.message_id().clone().unwrap_or_default();
            let props = BasicProperties::default().with_correlation_id(corr).with_delivery_mode(1);
            let _ = worker
                .basic_publish(
                    "".into(),
                    rep_name.as_str().into(),
                    BasicPublishOptions::default(),
                    &d.data[..64.min(d.data.len())],
                    props,
                )
                .await;
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let props = BasicProperties::default().with_message_id(format!("b{i}").into()).with_delivery_mode(1);
        pubc.basic_publish("".into(), req_q.as_str().into(), BasicPublishOptions::default(), payload, props)
            .await
            .map_err(|e| crate::broker_err("publish", e))?
            .await
            .map_err(|e| crate::broker_err("confirm", e))?;
        match tokio::time::timeout(Duration::from_secs(5), reps.next()).await {
            Ok(Some(Ok(_))) => out.push(t0.elapsed().as_secs_f64() * 1e3),
            other => return Err(crate::broker_err("bare reply", format!("{other:?}"))),
        }
    }
    responder.abort();
    for q in [&req_q, &rep_q] {
        let _ = pubc.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    Ok(out)
}

/// Vigil's path: `publish` (confirm) → worker `next` → `reply` (confirm) → `ack`; the
/// vehicle's reply consumer receives it.
async fn vigil_round_trips(
    cfg: &AmqpConfig,
    persistence: Persistence,
    payload: &[u8],
    n: usize,
) -> Result<Vec<f64>, TransportError> {
    let cfg = AmqpConfig { urgent: persistence, routine: persistence, ..cfg.clone() };
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let t = AmqpTasks::connect(&cfg, clock.clone(), tokio::runtime::Handle::current()).await?;
    let mut consumer = t.consume("bench-w").await?;
    let mut replies = t.replies("bench-veh").await?;
    let worker_t = t.clone();
    let worker = tokio::spawn(async move {
        while let Ok(d) = consumer.next().await {
            let reply = Reply::new(d.task.task_id.clone(), d.task.payload[..64.min(d.task.payload.len())].to_vec());
            if worker_t.reply("bench-veh", reply).await.is_err() {
                break;
            }
            let _ = d.settle(Settle::Ack).await;
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let task = QueuedTask {
            task_id: format!("v{i}"),
            priority: 8,
            deadline_ns: clock.now_ns() + 5_000_000_000,
            payload: payload.to_vec(),
        };
        t.publish(task).await?;
        match tokio::time::timeout(Duration::from_secs(5), replies.next()).await {
            Ok(Ok(_)) => out.push(t0.elapsed().as_secs_f64() * 1e3),
            other => return Err(crate::broker_err("vigil reply", format!("{other:?}"))),
        }
    }
    worker.abort();
    crate::amqp::delete_topology(&t).await;
    Ok(out)
}

/// Runs the AMQP round-trip benchmark: warm-up, then `n` round trips of each kind.
pub async fn amqp_bench(cfg: &AmqpConfig, payload_bytes: usize, n: usize) -> Result<AmqpBench, TransportError> {
    let url = amqp_url(cfg)?;
    let prefix = format!("{}.bench{}", cfg.prefix, std::process::id());
    let cfg = AmqpConfig { prefix: prefix.clone(), ..cfg.clone() };
    let payload = vec![0x5au8; payload_bytes];
    // Interleave the kinds in rounds so drift on a shared machine hits all alike.
    let (mut bare, mut tr, mut pe) = (Vec::new(), Vec::new(), Vec::new());
    let _ = bare_round_trips(&url, &prefix, &payload, 20).await?;
    let _ = vigil_round_trips(&cfg, Persistence::Transient, &payload, 20).await?;
    let rounds = 4;
    for _ in 0..rounds {
        bare.extend(bare_round_trips(&url, &prefix, &payload, n / rounds).await?);
        tr.extend(vigil_round_trips(&cfg, Persistence::Transient, &payload, n / rounds).await?);
        pe.extend(vigil_round_trips(&cfg, Persistence::Persistent, &payload, n / rounds).await?);
    }
    let (bare, tr, pe) = (millis(bare), millis(tr), millis(pe));
    Ok(AmqpBench {
        payload_bytes,
        overhead_p50: tr.p50 / bare.p50 - 1.0,
        overhead_p99: tr.p99 / bare.p99 - 1.0,
        persistence_cost_p50: pe.p50 / tr.p50 - 1.0,
        bare,
        vigil_transient: tr,
        vigil_persistent: pe,
    })
}

/// `vigil bench kafka`.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaBench {
    pub messages: usize,
    pub payload_bytes: usize,
    /// Bare producer, the same records Vigil sends (key, payload and the eight
    /// metadata headers, built before the clock starts): the baseline.
    pub bare_msgs_per_s: f64,
    pub bare_mb_per_s: f64,
    /// Bare producer, key and payload only (no headers): what the headers cost the broker.
    pub bare_no_headers_msgs_per_s: f64,
    pub vigil_msgs_per_s: f64,
    pub vigil_mb_per_s: f64,
    /// vigil / bare messages per second (the same records on both sides).
    pub ratio: f64,
    /// vigil / bare without headers (reported).
    pub ratio_vs_no_headers: f64,
}

/// Sends `n` envelopes of a radar-like size through [`KafkaLog`] and the same records
/// through a bare producer with the same settings (and once more without headers); each
/// timed to the last delivery, best of three rounds in rotating order.
pub fn kafka_bench(cfg: &KafkaConfig, rt: &tokio::runtime::Runtime, n: usize) -> Result<KafkaBench, TransportError> {
    let cfg = KafkaConfig { topic_prefix: format!("{}.bench{}", cfg.topic_prefix, std::process::id()), ..cfg.clone() };
    rt.block_on(ensure_topics(&cfg))?;
    let env = sample_envelope();
    let topic = topic_name(&cfg.topic_prefix, vigil_bus::topics::RADAR);
    let stamp = |i: usize| i as i64 * 1_000_000;
    let headers: Vec<_> = (0..n).map(|i| record_headers(&env, "bench", stamp(i), stamp(i))).collect();
    let bare = |with_headers: bool| -> Result<f64, TransportError> {
        let p: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
            producer_config(&cfg).create().map_err(|e| crate::broker_err("bare producer", e))?;
        let t0 = Instant::now();
        for h in &headers {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).key(&b"veh-0000"[..]).payload(&env[..]);
            if with_headers {
                rec = rec.headers(h.clone());
            }
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        std::thread::sleep(Duration::from_micros(200));
                        rec = back;
                    }
                }
            }
        }
        p.flush(Duration::from_secs(60)).map_err(|e| crate::broker_err("bare flush", e))?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let vigil = || -> Result<f64, TransportError> {
        let log = KafkaLog::new(&cfg, None)?;
        let t0 = Instant::now();
        for i in 0..n {
            log.append(LogRecord {
                topic: vigil_bus::topics::RADAR,
                key: "veh-0000",
                run: "bench",
                capture_ns: stamp(i),
                publish_ns: stamp(i),
                envelope: &env,
            })?;
        }
        log.close()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    // Seconds, best of three: same records, no headers, Vigil.
    let mut best = [f64::INFINITY; 3];
    for round in 0..3 {
        for k in 0..3 {
            let side = (round + k) % 3;
            let s = match side {
                0 => bare(true)?,
                1 => bare(false)?,
                _ => vigil()?,
            };
            best[side] = best[side].min(s);
        }
    }
    let mb = env.len() as f64 / 1e6;
    let rate = |s: f64| n as f64 / s;
    Ok(KafkaBench {
        messages: n,
        payload_bytes: env.len(),
        bare_msgs_per_s: rate(best[0]),
        bare_mb_per_s: rate(best[0]) * mb,
        bare_no_headers_msgs_per_s: rate(best[1]),
        vigil_msgs_per_s: rate(best[2]),
        vigil_mb_per_s: rate(best[2]) * mb,
        ratio: best[0] / best[2],
        ratio_vs_no_headers: best[1] / best[2],
    })
}

/// A radar envelope with 32 detections (about 1 kB), like the simulator's.
fn sample_envelope() -> Vec<u8> {
    use vigil_proto::v1;
    let payload = v1::envelope::Payload::Radar(v1::RadarScan {
        sensor_pose: None,
        detections: (0..32).map(|i| v1::RadarDetection { range: 10.0 + i as f32, ..Default::default() }).collect(),
    });
    let header = v1::Header { sequence: 1, ..vigil_proto::wire::header("veh-0000", "radar/front", &payload) };
    vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) })
}
