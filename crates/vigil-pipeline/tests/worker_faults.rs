//! A vision worker against the real RabbitMQ under bad tasks: a task carrying a field the
//! broker cannot carry is dead-lettered and the worker keeps serving; a retry whose
//! publish fails is dead-lettered instead of lost, and the next task is taken at once.
//! Under CI=true an unreachable RabbitMQ FAILS these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_brokers::AmqpConfig;
use vigil_brokers::amqp::AmqpTasks;
use vigil_brokers::store::ObjectFrameStore;
use vigil_bus::embedded::QueuedTask;
use vigil_bus::transport::ReplyConsumer;
use vigil_bus::{FrameStore, TaskTransport};
use vigil_core::{Clock, WallClock};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_sim::{Scenario, Stream, VehicleSim};
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Inference, WorkerDeps, WorkerStats, start_workers};

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

/// One worker process's parts, in this process: RabbitMQ, a file frame store, one worker.
struct Bench {
    rt: tokio::runtime::Runtime,
    tasks: AmqpTasks,
    frames: ObjectFrameStore,
    dir: std::path::PathBuf,
    stats: Arc<WorkerStats>,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
    cfg: AmqpConfig,
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("run rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

impl Bench {
    fn start(tag: &str) -> Self {
        let cfg = AmqpConfig { url: Some(URL.into()), prefix: prefix(tag), retry_base_ms: 100, ..Default::default() };
        Self::start_with(cfg)
    }

    /// A worker connecting as `cfg` says, holding its task trust.
    fn start_with(cfg: AmqpConfig) -> Self {
        let prefix = cfg.prefix.clone();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(WallClock);
        let tasks = rt.block_on(AmqpTasks::connect(&cfg, clock.clone(), rt.handle().clone())).unwrap();
        let dir = std::env::temp_dir().join(format!("{prefix}-frames"));
        std::fs::create_dir_all(&dir).unwrap();
        let frames = ObjectFrameStore::open(&format!("file://{}/", dir.display()), rt.handle().clone()).unwrap();
        let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/obstacle-classifier");
        let model = Recogniser::load(&model_dir, &default_device()).unwrap();
        let stats = Arc::new(WorkerStats::default());
        let deps = WorkerDeps {
            clock,
            tasks: Arc::new(tasks.clone()),
            frames: Arc::new(frames.clone()),
            inference: Inference::start(model, vigil_pipeline::default_batcher(), Duration::ZERO).unwrap(),
            model_name: "test".into(),
            model_version: "0".into(),
            device: "cpu".into(),
            stats: stats.clone(),
            faults: Arc::default(),
            answered: Arc::default(),
            trust: cfg.task_trust(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix::System::new();
            let held = sys.block_on(async move {
                let held = start_workers(1, deps);
                tx.send(actix::System::current()).unwrap();
                held
            });
            let _ = sys.run();
            drop(held);
        });
        let system = rx.recv().unwrap();
        Self { rt, tasks, frames, dir, stats, system, thread: Some(thread), cfg }
    }

    /// A task for a real camera frame (stored in the frame store), answered to `reply_to`.
    fn task(&self, id: &str, reply_to: &str, frame_uri: Option<&str>) -> QueuedTask {
        self.task_of("veh-test", id, reply_to, frame_uri)
    }

    /// The same, from `vehicle`.
    fn task_of(&self, vehicle: &str, id: &str, reply_to: &str, frame_uri: Option<&str>) -> QueuedTask {
        let scenario = Scenario::builtin("pedestrian-crossing").unwrap();
        let mut sim = VehicleSim::new(&scenario, 0, 7, 2_000_000_000);
        let mut batch = Vec::new();
        let camera = loop {
            sim.step(&mut batch).expect("the simulator made a camera frame");
            if let Some(m) = batch.drain(..).find(|m| m.kind == Stream::Camera) {
                break m.envelope;
            }
        };
        // As a vehicle stores it: the pixels alone, their layout in the task.
        let Some(Payload::Camera(cam)) = camera.payload else { panic!("not a camera frame") };
        let Some(v1::camera_frame::Pixels::Data(pixels)) = cam.pixels else { panic!("no inline pixels") };
        let layout = v1::FrameLayout { width: cam.width, height: cam.height, encoding: cam.encoding };
        let uri = match frame_uri {
            Some(u) => u.to_string(),
            None => self.frames.put(&format!("{id}.rgb"), pixels).unwrap().uri,
        };
        let deadline_ns = WallClock.now_ns() + 10_000_000_000;
        let task = v1::ObstacleTask {
            task_id: id.into(),
            priority: 5,
            deadline_ns,
            frame_ref: Some(v1::BlobRef { uri, size: 0, sha256: String::new() }),
            frame_layout: Some(layout),
            camera_box: Some(v1::Box2d { x_min: 100.0, y_min: 100.0, x_max: 164.0, y_max: 164.0 }),
            track: Some(v1::TrackSummary {
                x: 20.0,
                vx: -5.0,
                time_to_collision_s: 4.0,
                closing: true,
                ..Default::default()
            }),
            reply_to: reply_to.into(),
            ..Default::default()
        };
        let payload = Payload::ObstacleTask(task);
        let header = v1::Header {
            schema_version: vigil_proto::SCHEMA_VERSION,
            vehicle_id: vehicle.into(),
            sensor_id: "fusion".into(),
            correlation_id: id.into(),
            content_type: vigil_proto::content_type(&payload).into(),
            ..Default::default()
        };
        let payload = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        QueuedTask { task_id: id.into(), priority: 5, deadline_ns, payload }
    }

    fn publish(&self, t: QueuedTask) {
        self.rt.block_on(self.tasks.publish(t)).unwrap();
    }

    /// The task id of the next reply on `replies`, within `limit`.
    fn next_reply(&self, replies: &mut Box<dyn ReplyConsumer>, limit: Duration) -> Option<String> {
        let r = self.rt.block_on(async { tokio::time::timeout(limit, replies.next()).await }).ok()?.ok()?;
        match vigil_proto::decode_envelope(&r.payload).ok()?.payload {
            Some(Payload::Recommendation(rec)) => Some(rec.task_id),
            _ => None,
        }
    }

    fn counts(&self) -> String {
        let s = &self.stats;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::SeqCst);
        format!(
            "taken {} answered {} rejected {} malformed {} untrusted {} expired {} duplicates {} panics {} settle_failures {}",
            g(&s.taken),
            g(&s.answered),
            g(&s.rejected),
            g(&s.malformed),
            g(&s.untrusted),
            g(&s.expired),
            g(&s.duplicates),
            g(&s.panics),
            g(&s.settle_failures)
        )
    }

    fn stop(mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.rt.block_on(vigil_brokers::amqp::delete_prefix(&self.cfg)) {
            eprintln!("note: could not delete the test's queues: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 300-byte `reply_to` (the decoder allows it; AMQP cannot carry it as a queue name):
/// before, lapin panicked outside the worker's catch and the worker served no more.
#[test]
fn a_task_with_an_oversized_reply_to_is_dead_lettered_and_the_next_is_answered() {
    if !up() {
        return;
    }
    let b = Bench::start("badreply");
    let mut replies = b.rt.block_on(b.tasks.replies("veh-test")).unwrap();
    b.publish(b.task("bad-1", &"r".repeat(300), None));
    b.publish(b.task("good-1", "veh-test", None));
    let got = b.next_reply(&mut replies, Duration::from_secs(15));
    // The worker counts an answer once the broker confirms the reply, which may be
    // after the reply itself has arrived here.
    let until = Instant::now() + Duration::from_secs(5);
    while b.stats.answered.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("{}", b.counts());
    let dead = b.rt.block_on(b.tasks.dead_letter_depth()).unwrap();
    let (malformed, answered) = (b.stats.malformed.load(Ordering::SeqCst), b.stats.answered.load(Ordering::SeqCst));
    b.stop();
    assert_eq!(got.as_deref(), Some("good-1"), "the normal task after the bad one was answered");
    assert_eq!(malformed, 1, "the bad task was counted as malformed");
    assert_eq!(answered, 1);
    assert_eq!(dead, 1, "the bad task is in the dead-letter queue");
}

/// A task that names another vehicle's reply queue, and one whose frame reference points
/// outside the frame store: no retry can make either good, so each is dead-lettered at
/// once (no retry round) and answers nobody; the next task is answered.
#[test]
fn a_task_replying_elsewhere_or_reading_outside_the_store_is_dead_lettered_at_once() {
    if !up() {
        return;
    }
    let b = Bench::start("hostile");
    let mut replies = b.rt.block_on(b.tasks.replies("veh-test")).unwrap();
    let mut other = b.rt.block_on(b.tasks.replies("veh-other")).unwrap();
    let passwd = format!("file:///etc/passwd#sha256={}", "0".repeat(64));
    b.publish(b.task("elsewhere-1", "veh-other", None));
    b.publish(b.task("outside-1", "veh-test", Some(&passwd)));
    b.publish(b.task("good-3", "veh-test", None));
    let got = b.next_reply(&mut replies, Duration::from_secs(15));
    let stray = b.next_reply(&mut other, Duration::from_millis(300));
    eprintln!("{}", b.counts());
    let dead = b.rt.block_on(b.tasks.dead_letter_depth()).unwrap();
    let retried = b.tasks.amqp_counts().retried.load(Ordering::SeqCst);
    b.stop();
    assert_eq!(got.as_deref(), Some("good-3"));
    assert_eq!(stray, None, "no reply went to the queue the task named");
    assert_eq!(dead, 2, "both hostile tasks are dead-lettered");
    assert_eq!(retried, 0, "without a retry round");
}

/// The retry publish fails (its delay queue is gone, so the broker returns the message
/// as unroutable): the task is dead-lettered with its reason rather than acked away, and
/// the worker takes the next task at once.
#[test]
fn a_failed_retry_publish_dead_letters_the_task_and_the_next_is_taken_within_5_s() {
    if !up() {
        return;
    }
    let b = Bench::start("badretry");
    let mut replies = b.rt.block_on(b.tasks.replies("veh-test")).unwrap();
    let retry = b.tasks.names().retry(1);
    rabbitmqctl(&["delete_queue", &retry]);
    // In the store and hashed, but not there: a transient failure, retried.
    let missing = format!("file://{}/no-such-frame#sha256={}", b.dir.display(), "0".repeat(64));
    b.publish(b.task("fails-1", "veh-test", Some(&missing)));
    let published = Instant::now();
    b.publish(b.task("good-2", "veh-test", None));
    let got = b.next_reply(&mut replies, Duration::from_secs(5));
    let took = published.elapsed();
    eprintln!("{}", b.counts());
    let dead = b.rt.block_on(b.tasks.dead_letter_depth()).unwrap();
    let retry_failed = b.tasks.amqp_counts().retry_failed.load(Ordering::SeqCst);
    let settle_failures = b.stats.settle_failures.load(Ordering::SeqCst);
    b.stop();
    assert_eq!(got.as_deref(), Some("good-2"), "the next task was answered within 5 s (took {took:?})");
    assert_eq!(retry_failed, 1, "the failed retry publish was seen");
    assert_eq!(dead, 1, "the task whose retry failed is in the dead-letter queue, not lost");
    assert_eq!(settle_failures, 0);
}

fn roles(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rabbitmq-roles.sh");
    let out = std::process::Command::new(script).args(args).env("VIGIL_ROLE_PASSWORD", "pw").output().unwrap();
    assert!(out.status.success(), "rabbitmq-roles.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Per-role users, and a worker that takes a task only from the vehicle it names:
/// vehicle B's credentials publish a task in vehicle A's name, replying to A (a genuine
/// worker would otherwise answer A, signed, about B's crop) → dead-lettered unanswered,
/// counted as untrusted. A's own task is answered, and A's task that fails and is retried
/// (republished by the worker, as the worker) is retried, not refused.
#[test]
fn a_task_in_another_vehicles_name_is_refused_and_its_own_tasks_are_answered() {
    if !up() {
        return;
    }
    let users = prefix("tasktrust");
    roles(&["--prefix", &users, "--users", &users, "veh-a", "veh-b"]);
    let url = |user: &str| format!("amqp://{users}-{user}:pw@127.0.0.1:5672/%2f");
    let cfg = AmqpConfig {
        url: Some(url("worker")),
        prefix: users.clone(),
        retry_base_ms: 100,
        max_attempts: 2,
        reply_publishers: vec![format!("{users}-worker")],
        task_publisher: Some(format!("{users}-vehicle-{{vehicle}}")),
        ..Default::default()
    };
    let b = Bench::start_with(cfg.clone());
    let vehicle = |id: &str| {
        let c = AmqpConfig { url: Some(url(&format!("vehicle-{id}"))), ..cfg.clone() };
        b.rt.block_on(AmqpTasks::connect(&c, Arc::new(WallClock), b.rt.handle().clone())).unwrap()
    };
    let (a, attacker) = (vehicle("veh-a"), vehicle("veh-b"));
    let mut replies = b.rt.block_on(a.replies("veh-a")).unwrap();
    let missing = format!("file://{}/no-such-frame#sha256={}", b.dir.display(), "0".repeat(64));
    b.rt.block_on(attacker.publish(b.task_of("veh-a", "forged-1", "veh-a", None))).unwrap();
    b.rt.block_on(a.publish(b.task_of("veh-a", "fails-1", "veh-a", Some(&missing)))).unwrap();
    b.rt.block_on(a.publish(b.task_of("veh-a", "own-1", "veh-a", None))).unwrap();
    let got = b.next_reply(&mut replies, Duration::from_secs(15));
    let stray = b.next_reply(&mut replies, Duration::from_millis(1500));
    eprintln!("{}", b.counts());
    let dead = b.rt.block_on(b.tasks.dead_letter_depth()).unwrap();
    let retried = b.tasks.amqp_counts().retried.load(Ordering::SeqCst);
    let (untrusted, rejected) = (b.stats.untrusted.load(Ordering::SeqCst), b.stats.rejected.load(Ordering::SeqCst));
    b.stop();
    roles(&["--delete", "--users", &users, "veh-a", "veh-b"]);
    assert_eq!(got.as_deref(), Some("own-1"), "the vehicle's own task was answered");
    assert_eq!(stray, None, "nothing answered the forged task");
    assert_eq!(untrusted, 1, "the forged task was counted as untrusted");
    assert_eq!(retried, 1, "the failing task was retried once, as the worker republished it");
    assert_eq!(rejected, 2, "and failed on both its attempts, not refused as untrusted");
    assert_eq!(dead, 2, "the forged task and the one out of attempts are dead-lettered");
}
