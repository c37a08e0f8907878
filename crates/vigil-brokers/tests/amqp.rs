//! The RabbitMQ task plane against the real broker (127.0.0.1:5672, guest/guest; see
//! scripts/brokers.sh). Under CI=true an unreachable broker FAILS these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use vigil_brokers::AmqpConfig;
use vigil_brokers::amqp::AmqpTasks;
use vigil_bus::embedded::{QueueError, QueuedTask};
use vigil_bus::{Reply, Settle, TaskTransport, TransportError};
use vigil_core::{ManualClock, WallClock};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn up() -> bool {
    let ok = std::net::TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2)).is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RabbitMQ unreachable under CI=true: scripts/brokers.sh up"
        );
        eprintln!("note: RabbitMQ unreachable; skipped");
    }
    ok
}

fn cfg(tag: &str) -> AmqpConfig {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    AmqpConfig {
        url: Some(URL.into()),
        prefix: format!("t{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000),
        ..AmqpConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn cleanup(t: &AmqpTasks, max_attempts: u32) {
    let conn = lapin::Connection::connect(URL, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let n = t.names();
    let mut queues = vec![n.queue.clone(), n.dead.clone()];
    queues.extend((1..max_attempts).map(|i| n.retry(i)));
    for q in queues {
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
}

/// A poison task (undecodable body) is retried with exponential backoff through the
/// delay queues and dead-lettered after `max_attempts`, with its reason.
#[test]
fn poison_task_is_dead_lettered_after_backoff() {
    if !up() {
        return;
    }
    let rt = rt();
    let cfg = AmqpConfig { max_attempts: 3, retry_base_ms: 40, ..cfg("poison") };
    rt.block_on(async {
        let t = AmqpTasks::connect(&cfg, Arc::new(WallClock), tokio::runtime::Handle::current()).await.unwrap();
        let mut consumer = t.consume("w").await.unwrap();
        t.publish_raw("poison-1", 5, b"\xff\xfe not a protobuf").await.unwrap();
        let mut taken = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("delivery").unwrap();
            assert_eq!(d.task.task_id, "poison-1");
            assert!(vigil_proto::decode_envelope(&d.task.payload).is_err(), "the body is poison");
            taken.push((Instant::now(), d.attempt));
            d.settle(Settle::Requeue).await.unwrap();
        }
        let attempts: Vec<u32> = taken.iter().map(|x| x.1).collect();
        assert_eq!(attempts, vec![1, 2, 3]);
        // Backoff: retry 1 waits ≥ 40 ms, retry 2 ≥ 80 ms.
        let gap1 = taken[1].0 - taken[0].0;
        let gap2 = taken[2].0 - taken[1].0;
        assert!(gap1 >= Duration::from_millis(40), "{gap1:?}");
        assert!(gap2 >= Duration::from_millis(80), "{gap2:?}");
        assert!(gap2 > gap1, "exponential: {gap1:?} then {gap2:?}");
        // Dead-lettered with its reason and attempt count; not delivered again.
        let conn = lapin::Connection::connect(URL, lapin::ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut dead = None;
        for _ in 0..50 {
            dead = ch.basic_get(t.names().dead.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
            if dead.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dead = dead.expect("the poison task is in the dead-letter queue");
        let h = dead.delivery.properties.headers().clone().unwrap();
        assert_eq!(h.inner().get("x-vigil-reason"), Some(&AMQPValue::LongString("max-attempts".into())));
        assert_eq!(h.inner().get("x-vigil-attempt"), Some(&AMQPValue::LongUInt(3)));
        assert!(tokio::time::timeout(Duration::from_millis(300), consumer.next()).await.is_err(), "no 4th delivery");
        let c = t.counts().unwrap();
        assert_eq!((c.dead_lettered, c.delivered), (1, 3), "{c:?}");
        cleanup(&t, cfg.max_attempts).await;
    });
}

/// Priority order, the deadline travels with the task, a full queue refuses (publisher
/// confirm nack), replies reach the asking vehicle by correlation id, and a delivery
/// dropped unsettled comes back.
#[test]
fn priority_capacity_replies_and_redelivery() {
    if !up() {
        return;
    }
    let rt = rt();
    let cfg = AmqpConfig { queue_capacity: 3, ..cfg("prio") };
    rt.block_on(async {
        let clock = ManualClock::new(1_000_000_000);
        let t = AmqpTasks::connect(&cfg, Arc::new(clock.clone()), tokio::runtime::Handle::current()).await.unwrap();
        let task = |id: &str, p: u8| QueuedTask {
            task_id: id.into(),
            priority: p,
            deadline_ns: 1_100_000_000,
            payload: id.as_bytes().to_vec(),
        };
        for (id, p) in [("low", 1), ("high", 9), ("mid", 5)] {
            t.publish(task(id, p)).await.unwrap();
        }
        match t.publish(task("over", 9)).await {
            Err(TransportError::Queue(QueueError::Full { capacity: 3 })) => {}
            other => panic!("a full queue must refuse: {other:?}"),
        }
        let mut consumer = t.consume("w").await.unwrap();
        let first = consumer.next().await.unwrap();
        assert_eq!(first.task.task_id, "high");
        assert_eq!(first.task.deadline_ns, 1_100_000_000);
        drop(first); // unsettled: back to the queue
        let again = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.unwrap().unwrap();
        assert_eq!((again.task.task_id.as_str(), again.attempt), ("high", 2), "redelivered");
        again.settle(Settle::Ack).await.unwrap();
        let mid = consumer.next().await.unwrap();
        assert_eq!(mid.task.task_id, "mid");
        mid.settle(Settle::Ack).await.unwrap();
        let low = consumer.next().await.unwrap();
        assert_eq!(low.task.task_id, "low");
        low.settle(Settle::Ack).await.unwrap();

        let mut replies = t.replies("veh-1").await.unwrap();
        t.reply("veh-1", Reply::new("high", b"brake".to_vec())).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), replies.next()).await.unwrap().unwrap();
        assert_eq!((r.correlation_id.as_str(), r.payload.as_slice()), ("high", &b"brake"[..]));
        let c = t.counts().unwrap();
        assert_eq!((c.published, c.refused_full, c.acked), (3, 1, 3), "{c:?}");
        cleanup(&t, cfg.max_attempts).await;
    });
}

/// Runs `scripts/rabbitmq-roles.sh` with `args` (password `pw` for every user).
fn roles(args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rabbitmq-roles.sh");
    let out = std::process::Command::new(script).args(args).env("VIGIL_ROLE_PASSWORD", "pw").output().unwrap();
    assert!(out.status.success(), "rabbitmq-roles.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A reply published by a client that is not a worker, straight to a vehicle's reply
/// queue; `user_id` as given. The error is the broker's refusal, if it refused.
async fn forge(queue: &str, user_id: Option<&str>) -> Result<(), String> {
    let conn = lapin::Connection::connect(URL, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default()).await.unwrap();
    let mut props = lapin::BasicProperties::default().with_correlation_id("task-1".into());
    if let Some(u) = user_id {
        props = props.with_user_id(u.into());
    }
    let published =
        async { ch.basic_publish("".into(), queue.into(), Default::default(), b"CONTINUE", props).await?.await };
    let r = published.await.map(|_| ()).map_err(|e| e.to_string());
    let _ = conn.close(200, "done".into()).await;
    r
}

/// Per-role users (scripts/rabbitmq-roles.sh): the worker's replies reach the vehicle
/// with the worker's user vouched for by the broker (and signed, with a reply key); a
/// forger cannot claim the worker's user, an unvouched or other publisher fails the
/// vehicle's check, a vehicle's user can neither publish a reply nor read another
/// vehicle's replies.
#[test]
fn per_role_users_let_only_a_worker_reply_and_the_broker_vouches_for_it() {
    if !up() {
        return;
    }
    let rt = rt();
    let base = cfg("roles");
    let users = base.prefix.clone();
    roles(&["--prefix", &base.prefix, "--users", &users, "veh-a", "veh-b"]);
    let url = |user: &str| format!("amqp://{users}-{user}:pw@127.0.0.1:5672/%2f");
    let key_file = std::env::temp_dir().join(format!("{users}.key"));
    std::fs::write(&key_file, "3c".repeat(32)).unwrap();
    let worker_cfg = AmqpConfig { url: Some(url("worker")), reply_key_file: Some(key_file.clone()), ..base.clone() };
    let vehicle_cfg = AmqpConfig {
        url: Some(url("vehicle-veh-a")),
        reply_publishers: vec![format!("{users}-worker")],
        reply_key_file: Some(key_file.clone()),
        ..base.clone()
    };
    let trust = vehicle_cfg.reply_trust().unwrap();
    let queue = format!("{}.replies.veh-a", base.prefix);
    rt.block_on(async {
        let h = tokio::runtime::Handle::current;
        // The worker declares the task queues; the vehicle's user may then declare them again.
        let worker = AmqpTasks::connect(&worker_cfg, Arc::new(WallClock), h()).await.unwrap();
        let vehicle = AmqpTasks::connect(&vehicle_cfg, Arc::new(WallClock), h()).await.unwrap();
        let mut replies = vehicle.replies("veh-a").await.unwrap();
        let payload = recommendation("veh-a", "task-1");
        worker.reply("veh-a", Reply::new("task-1", payload.clone())).await.unwrap();
        let genuine = next(&mut replies).await;
        assert_eq!(genuine.publisher.as_deref(), Some(format!("{users}-worker").as_str()));
        assert!(genuine.mac.is_some(), "signed with the reply key");
        assert_eq!(trust.vet(&genuine, "veh-a", "veh-a").map(|r| r.task_id), Ok("task-1".into()));

        // Tasks carry their publisher the same way, for the worker's check (before the
        // refused publishes below close the vehicle's channel).
        let task = QueuedTask { task_id: "task-2".into(), priority: 5, deadline_ns: i64::MAX, payload: vec![1] };
        vehicle.publish(task).await.unwrap();
        let mut taken = worker.consume("w").await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(5), taken.next()).await.expect("a task").unwrap();
        assert_eq!(d.publisher.as_deref(), Some(format!("{users}-vehicle-veh-a").as_str()));
        d.settle(Settle::Ack).await.unwrap();

        let refused = forge(&queue, Some(&format!("{users}-worker"))).await;
        assert!(refused.is_err(), "the broker must refuse a user_id that is not the connection's user");
        forge(&queue, None).await.unwrap();
        forge(&queue, Some("guest")).await.unwrap();
        for _ in 0..2 {
            let forged = next(&mut replies).await;
            assert_eq!(trust.vet(&forged, "veh-a", "veh-a").err(), Some(vigil_bus::trust::Rejection::Publisher));
        }

        let other = vehicle.replies("veh-b").await;
        assert!(other.is_err(), "a vehicle's user cannot read another vehicle's replies");
        let own = vehicle.reply("veh-a", Reply::new("task-1", payload)).await;
        assert!(own.is_err(), "a vehicle's user cannot publish a reply");

        cleanup(&worker, base.max_attempts).await;
    });
    let _ = std::fs::remove_file(&key_file);
    roles(&["--delete", "--users", &users, "veh-a", "veh-b"]);
}

async fn next(replies: &mut Box<dyn vigil_bus::transport::ReplyConsumer>) -> Reply {
    tokio::time::timeout(Duration::from_secs(5), replies.next()).await.expect("a reply").unwrap()
}

fn recommendation(vehicle: &str, task: &str) -> Vec<u8> {
    use vigil_proto::v1::{self, envelope::Payload};
    let payload = Payload::Recommendation(v1::Recommendation { task_id: task.into(), ..Default::default() });
    let header = vigil_proto::wire::header(vehicle, "vision", &payload);
    vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) })
}
