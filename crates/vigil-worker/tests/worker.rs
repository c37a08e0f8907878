//! The vision worker's stages, one behaviour each, over the embedded transports with the
//! shipped model: a good task is answered and acked, an expired one dead-lettered, a
//! malformed one dead-lettered without stopping the worker, a redelivery of an answered
//! task acked without a second answer, and a panic requeues the task and restarts the
//! worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::task::QueuedTask;
use vigil_bus::transport::ReplyConsumer;
use vigil_bus::{FrameStore, TaskTransport};
use vigil_core::{Clock, ManualClock};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_sim::{Scenario, Stream, VehicleSim};
use vigil_vision::batcher::{BatcherConfig, Serving};
use vigil_vision::model::{Recogniser, default_device};
use vigil_worker::{Faults, Inference, WorkerDeps, WorkerStats, start_workers};

const REPLY_TO: &str = "veh-test";

struct Rig {
    rt: tokio::runtime::Runtime,
    clock: Arc<ManualClock>,
    tasks: Arc<EmbeddedTasks>,
    frames: Arc<MemoryFrameStore>,
    stats: Arc<WorkerStats>,
    faults: Arc<Faults>,
    replies: Box<dyn ReplyConsumer>,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rig {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(16, 3), clock.clone()));
        let frames = Arc::new(MemoryFrameStore::new(16));
        let replies = rt.block_on(tasks.replies(REPLY_TO)).unwrap();
        let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/obstacle-classifier");
        let model = Recogniser::load(&model_dir, &default_device()).unwrap();
        let batcher =
            BatcherConfig { max_batch: 4, max_wait: Duration::ZERO, queue: 16, threads: 1, serving: Serving::Auto };
        let stats = Arc::new(WorkerStats::default());
        let faults = Arc::new(Faults::default());
        let deps = WorkerDeps {
            clock: clock.clone(),
            tasks: tasks.clone(),
            frames: frames.clone(),
            inference: Inference::start(model, batcher, Duration::ZERO).unwrap(),
            model_name: "test".into(),
            model_version: "0".into(),
            device: "cpu".into(),
            stats: stats.clone(),
            faults: faults.clone(),
            answered: Arc::default(),
            trust: Default::default(),
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
        let system = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { rt, clock, tasks, frames, stats, faults, replies, system, thread: Some(thread) }
    }

    /// A task on a real camera frame, stored as a vehicle stores it (the pixels alone,
    /// their layout in the task).
    fn task(&self, id: &str, deadline_in_ns: i64) -> QueuedTask {
        let scenario = Scenario::builtin("pedestrian-crossing").unwrap();
        let mut sim = VehicleSim::new(&scenario, 0, 7, 2_000_000_000);
        let mut batch = Vec::new();
        let camera = loop {
            sim.step(&mut batch).expect("the simulator made a camera frame");
            if let Some(m) = batch.drain(..).find(|m| m.kind == Stream::Camera) {
                break m.envelope;
            }
        };
        let Some(Payload::Camera(cam)) = camera.payload else { panic!("not a camera frame") };
        let Some(v1::camera_frame::Pixels::Data(pixels)) = cam.pixels else { panic!("no inline pixels") };
        let layout = v1::FrameLayout { width: cam.width, height: cam.height, encoding: cam.encoding };
        let uri = self.frames.put(&format!("{id}.rgb"), pixels).unwrap().uri;
        let deadline_ns = self.clock.now_ns() + deadline_in_ns;
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
            reply_to: REPLY_TO.into(),
            ..Default::default()
        };
        let payload = Payload::ObstacleTask(task);
        let header =
            v1::Header { correlation_id: id.into(), ..vigil_proto::wire::header("veh-test", "fusion", &payload) };
        let payload = vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) });
        QueuedTask { task_id: id.into(), priority: 5, deadline_ns, payload }
    }

    fn publish(&self, t: QueuedTask) {
        self.rt.block_on(self.tasks.publish(t)).unwrap();
    }

    /// The task id of the next reply, within `limit`.
    fn next_reply(&mut self, limit: Duration) -> Option<String> {
        let replies = &mut self.replies;
        let r = self.rt.block_on(async { tokio::time::timeout(limit, replies.next()).await }).ok()?.ok()?;
        match vigil_proto::decode_envelope(&r.payload).ok()?.payload {
            Some(Payload::Recommendation(rec)) => Some(rec.task_id),
            _ => None,
        }
    }

    fn wait(&self, what: &str, done: impl Fn(&vigil_bus::task::QueueCounts) -> bool) {
        let start = Instant::now();
        while !done(&self.tasks.queue().counts().unwrap()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {:?}",
                self.tasks.queue().counts()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_good_task_is_answered_then_acked() {
    let mut rig = Rig::start();
    rig.publish(rig.task("veh-test/r/task/1", 10_000_000_000));
    assert_eq!(rig.next_reply(Duration::from_secs(20)).as_deref(), Some("veh-test/r/task/1"));
    rig.wait("the ack", |c| c.acked == 1);
    assert_eq!(Rig::get(&rig.stats.answered), 1);
}

#[test]
fn an_expired_task_is_dead_lettered_unanswered() {
    let mut rig = Rig::start();
    let t = rig.task("veh-test/r/task/1", 50_000_000);
    rig.clock.advance(100_000_000);
    rig.publish(t);
    // The queue itself dead-letters a task it finds expired when a consumer takes it.
    rig.wait("the dead letter", |c| c.expired == 1);
    assert!(rig.next_reply(Duration::from_millis(300)).is_none());
}

#[test]
fn a_malformed_task_is_dead_lettered_and_the_next_is_answered() {
    let mut rig = Rig::start();
    // Bytes that are no task at all: no retry can help.
    let garbage = QueuedTask {
        task_id: "veh-test/r/task/1".into(),
        priority: 5,
        deadline_ns: rig.clock.now_ns() + 10_000_000_000,
        payload: b"not an envelope".to_vec(),
    };
    rig.publish(garbage);
    rig.publish(rig.task("veh-test/r/task/2", 10_000_000_000));
    assert_eq!(rig.next_reply(Duration::from_secs(20)).as_deref(), Some("veh-test/r/task/2"));
    rig.wait("the dead letter", |c| c.dead_lettered == 1 && c.acked == 1);
    assert_eq!(Rig::get(&rig.stats.malformed), 1);
}

#[test]
fn a_redelivered_answered_task_is_acked_without_a_second_answer() {
    let mut rig = Rig::start();
    let t = rig.task("veh-test/r/task/1", 10_000_000_000);
    rig.publish(t.clone());
    assert_eq!(rig.next_reply(Duration::from_secs(20)).as_deref(), Some("veh-test/r/task/1"));
    rig.publish(t);
    rig.wait("both acked", |c| c.acked == 2);
    assert_eq!(Rig::get(&rig.stats.duplicates), 1);
    assert!(rig.next_reply(Duration::from_millis(300)).is_none(), "answered once");
}

#[test]
fn a_panic_requeues_the_task_and_the_restarted_worker_answers_it() {
    let mut rig = Rig::start();
    rig.faults.panic_on_take.store(1, Ordering::SeqCst);
    rig.publish(rig.task("veh-test/r/task/1", 10_000_000_000));
    assert_eq!(rig.next_reply(Duration::from_secs(20)).as_deref(), Some("veh-test/r/task/1"));
    assert_eq!(Rig::get(&rig.stats.panics), 1);
    assert_eq!(Rig::get(&rig.stats.restarts), 1);
    rig.wait("the ack", |c| c.acked == 1 && c.redelivered == 1);
}
