//! The vehicle node's actors, one behaviour each, over the embedded transports: frames
//! from a real simulator drive in, tasks and replies through the embedded queue, ego
//! commands out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vigil_bus::embedded::{EmbeddedLog, EmbeddedTasks, MemoryFrameStore, TaskQueue};
use vigil_bus::trust::{Rejection, ReplyKey, ReplyTrust};
use vigil_bus::{BusSample, FrameStore, Reply, TaskTransport, TelemetryLog, frame_key};
use vigil_core::policy::Action;
use vigil_core::{ManualClock, RunId, VehicleId};
use vigil_proto::v1::{self, envelope::Payload};
use vigil_sim::{Scenario, VehicleSim};
use vigil_vehicle::node::{
    ControlCommand, NoCamera, NodeConfig, NodeDeps, NodeHandle, NodeStats, RaiseTask, RoadMap, SensorInputs, Stream,
    reply_address, start_node, task_id,
};

/// One node on its own actor system, fed through channels in place of zenoh.
struct Rig {
    vehicle: VehicleId,
    run: RunId,
    clock: Arc<ManualClock>,
    log: Arc<EmbeddedLog>,
    frames: Arc<MemoryFrameStore>,
    tasks: Arc<EmbeddedTasks>,
    stats: Arc<NodeStats>,
    control: Receiver<ControlCommand>,
    inputs: Vec<(Stream, tokio::sync::mpsc::Sender<BusSample>)>,
    handle: NodeHandle,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rig {
    fn start(queue_capacity: usize) -> Self {
        Self::start_with(queue_capacity, ReplyTrust::default())
    }

    fn start_with(queue_capacity: usize, trust: ReplyTrust) -> Self {
        let vehicle = VehicleId::simulated(0);
        let run = RunId::reproducible(1);
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let log = Arc::new(EmbeddedLog::new());
        let frames = Arc::new(MemoryFrameStore::new(64));
        let tasks = Arc::new(EmbeddedTasks::new(TaskQueue::new(queue_capacity, 3), clock.clone()));
        let stats = Arc::new(NodeStats::default());
        let (control_tx, control) = std::sync::mpsc::channel();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for kind in Stream::ALL {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            senders.push((kind, tx));
            receivers.push((kind, rx));
        }
        let mut cfg = NodeConfig::new(vehicle.clone(), run.clone(), RoadMap { lanes: 2, lane_width_m: 3.5 });
        cfg.trust = trust;
        let deps = NodeDeps {
            clock: clock.clone(),
            log: log.clone(),
            frames: frames.clone(),
            tasks: tasks.clone(),
            control: control_tx,
            stats: stats.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix::System::new();
            let arbiters = sys.block_on(async move {
                let arbiters = [actix::Arbiter::new(), actix::Arbiter::new(), actix::Arbiter::new()];
                let handle = start_node(
                    cfg,
                    deps,
                    SensorInputs(receivers),
                    &arbiters[0].handle(),
                    &arbiters[1].handle(),
                    &arbiters[2].handle(),
                );
                tx.send((actix::System::current(), handle)).unwrap();
                arbiters
            });
            sys.run().unwrap();
            for a in arbiters {
                a.stop();
            }
        });
        let (system, handle) = rx.recv_timeout(Duration::from_secs(10)).expect("the node starts");
        Self {
            vehicle,
            run,
            clock,
            log,
            frames,
            tasks,
            stats,
            control,
            inputs: senders,
            handle,
            system,
            thread: Some(thread),
        }
    }

    fn send(&self, kind: Stream, key: &str, payload: Vec<u8>) {
        let tx = &self.inputs.iter().find(|(k, _)| *k == kind).unwrap().1;
        tx.blocking_send(BusSample { key: key.to_string(), payload }).unwrap();
    }

    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }

    fn dispatcher(&self) -> &actix::Addr<vigil_vehicle::node::Dispatcher> {
        self.handle.dispatcher.as_ref().unwrap()
    }

    /// A task for track `n` with a box on camera frame 0.
    fn raise(&self, n: u64, ttc_s: f64) -> String {
        let now = vigil_core::Clock::now_ns(self.clock.as_ref());
        let id = task_id(&self.vehicle, &self.run, n);
        let task = v1::ObstacleTask {
            task_id: id.clone(),
            priority: 8,
            deadline_ns: now + 100_000_000,
            frame_sensor_id: "camera_front".into(),
            camera_box: Some(v1::Box2d { x_min: 10.0, y_min: 10.0, x_max: 40.0, y_max: 60.0 }),
            reply_to: reply_address(&self.vehicle),
            ..Default::default()
        };
        self.dispatcher().do_send(RaiseTask {
            task,
            capture_ns: now,
            detected_ns: now,
            track_id: n as u32,
            ttc_s,
            offset_m: 0.0,
        });
        self.stats.outstanding.fetch_add(1, Ordering::SeqCst);
        self.stats.tasks_raised.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Answers `task` as a worker would.
    fn answer(&self, task: &str, action: v1::Action) {
        self.send_reply(Reply::new(task, recommendation(self.vehicle.as_str(), task, action)));
    }

    fn send_reply(&self, reply: Reply) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(self.tasks.reply(&reply_address(&self.vehicle), reply)).unwrap();
    }
}

/// A recommendation envelope for `task` from `vehicle`'s point of view.
fn recommendation(vehicle: &str, task: &str, action: v1::Action) -> Vec<u8> {
    let payload = Payload::Recommendation(v1::Recommendation {
        task_id: task.into(),
        action: action as i32,
        class: v1::ObstacleClass::Pedestrian as i32,
        confidence: 0.9,
        ..Default::default()
    });
    let header = vigil_proto::wire::header(vehicle, "vision", &payload);
    vigil_proto::encode_envelope(&v1::Envelope { header: Some(header), payload: Some(payload) })
}

impl Rig {
    fn rejected(&self, why: Rejection) -> u64 {
        Rig::get(&self.stats.rejected_replies[why.index()])
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

/// The first frames of a real simulated drive.
fn drive(frames: usize) -> Vec<vigil_sim::SimMessage> {
    let scenario = Scenario::builtin("pedestrian-crossing").unwrap();
    let mut sim = VehicleSim::new(&scenario, 0, 7, 2_000_000_000);
    let mut out = Vec::new();
    while out.len() < frames && sim.step(&mut out).is_some() {}
    out
}

#[test]
fn ingest_logs_good_frames_and_counts_bad_ones_without_passing_them_on() {
    let rig = Rig::start(16);
    let lidar = drive(40).into_iter().find(|m| m.kind == Stream::Lidar).unwrap();
    let camera = drive(40).into_iter().find(|m| m.kind == Stream::Camera).unwrap();
    // Another vehicle's frame, injected on this vehicle's key by a peer on the bus.
    let scenario = Scenario::builtin("pedestrian-crossing").unwrap();
    let mut other = VehicleSim::new(&scenario, 1, 7, 2_000_000_000);
    let mut theirs = Vec::new();
    while !theirs.iter().any(|m: &vigil_sim::SimMessage| m.kind == Stream::Lidar) {
        other.step(&mut theirs).unwrap();
    }
    let foreign = theirs.into_iter().find(|m| m.kind == Stream::Lidar).unwrap();
    assert_ne!(foreign.envelope.header.as_ref().unwrap().vehicle_id, rig.vehicle.as_str());
    rig.send(Stream::Lidar, &lidar.key, b"not an envelope".to_vec());
    rig.send(Stream::Lidar, &camera.key, camera.encode());
    rig.send(Stream::Lidar, &lidar.key, foreign.encode());
    rig.send(Stream::Lidar, &lidar.key, lidar.encode());
    rig.wait("one good lidar frame", || Rig::get(&rig.stats.ingested[Stream::Lidar.index()]) == 1);
    rig.wait("three rejections", || Rig::get(&rig.stats.rejected) == 3);
    assert!(rig.stats.drain_telemetry(Duration::from_secs(10)));
    let counts = rig.log.close().unwrap();
    assert_eq!(counts.get(vigil_bus::topics::LIDAR), Some(&1), "{counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 1, "only the good frame is logged: {counts:?}");
}

#[test]
fn a_camera_frame_is_stored_once_under_its_key() {
    let rig = Rig::start(16);
    let camera = drive(40).into_iter().find(|m| m.kind == Stream::Camera).unwrap();
    let h = camera.envelope.header.clone().unwrap();
    let Some(Payload::Camera(cam)) = &camera.envelope.payload else { panic!("a camera frame") };
    let Some(v1::camera_frame::Pixels::Data(pixels)) = &cam.pixels else { panic!("inline pixels") };
    rig.send(Stream::Camera, &camera.key, camera.encode());
    rig.wait("the camera frame", || Rig::get(&rig.stats.ingested[Stream::Camera.index()]) == 1);
    let key = frame_key(rig.vehicle.as_str(), rig.run.as_str(), &h.sensor_id, h.sequence);
    let stored = rig.frames.get(&format!("mem://{key}")).expect("the pixels are in the store");
    assert_eq!(stored.as_slice(), pixels.as_slice(), "the raw pixels, not the envelope");
}

#[test]
fn a_raised_task_is_published_and_its_answer_commands_the_ego_once() {
    let rig = Rig::start(16);
    let id = rig.raise(1, 2.0);
    rig.wait("the publish", || Rig::get(&rig.stats.tasks_published) == 1);
    assert_eq!(rig.tasks.queue().counts().unwrap().published, 1);
    rig.answer(&id, v1::Action::Brake);
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("a command");
    assert_eq!((c.task_id.as_str(), c.action, c.fallback), (id.as_str(), Action::Brake, false));
    rig.wait("completion", || Rig::get(&rig.stats.completed) == 1);
    // The same answer again (a redelivered task answered twice) is counted, not applied.
    rig.answer(&id, v1::Action::Brake);
    rig.wait("the duplicate", || Rig::get(&rig.stats.duplicate) == 1);
    // An answer for a task nobody raised (a forged or misrouted reply) is counted unknown.
    rig.answer(&task_id(&rig.vehicle, &rig.run, 99), v1::Action::Continue);
    rig.wait("the unknown reply", || Rig::get(&rig.stats.unknown) == 1);
    assert!(rig.control.recv_timeout(Duration::from_millis(200)).is_err(), "no second command");
    assert_eq!(rig.stats.outstanding.load(Ordering::SeqCst), 0);
}

#[test]
fn a_refused_publish_falls_back_at_once_and_brakes_for_a_close_threat() {
    let rig = Rig::start(1);
    rig.raise(1, 2.0);
    rig.wait("the first publish", || Rig::get(&rig.stats.tasks_published) == 1);
    let second = rig.raise(2, 1.0);
    rig.wait("the refusal", || Rig::get(&rig.stats.tasks_refused) == 1);
    rig.wait("the fallback", || Rig::get(&rig.stats.fallback) == 1);
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("a fallback command");
    assert_eq!((c.task_id.as_str(), c.action, c.fallback), (second.as_str(), Action::Brake, true));
    assert_eq!(Rig::get(&rig.stats.fallback_braked), 1);
}

#[test]
fn a_task_past_its_deadline_falls_back_and_its_late_answer_is_stale() {
    let rig = Rig::start(16);
    let id = rig.raise(1, 5.0);
    rig.wait("the publish", || Rig::get(&rig.stats.tasks_published) == 1);
    rig.clock.advance(200_000_000);
    rig.wait("the fallback", || Rig::get(&rig.stats.fallback) == 1);
    // TTC 5 s is above the fallback's 3 s: no brake.
    assert_eq!(Rig::get(&rig.stats.fallback_braked), 0);
    rig.answer(&id, v1::Action::BrakeHard);
    rig.wait("the stale answer", || Rig::get(&rig.stats.stale) == 1);
    assert!(rig.control.recv_timeout(Duration::from_millis(200)).is_err(), "a late answer commands nothing");
}

#[test]
fn a_threat_with_no_camera_brakes_when_close() {
    let rig = Rig::start(16);
    let handler = rig.handle.handler.clone().unwrap();
    handler.do_send(NoCamera { track_id: 7, ttc_s: 1.5, offset_m: 0.4 });
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("a fallback command");
    assert_eq!((c.action, c.fallback), (Action::Brake, true));
    assert!(c.task_id.ends_with("/no-camera/7"), "{}", c.task_id);
    assert_eq!(Rig::get(&rig.stats.no_camera), 1);
}

#[test]
fn a_threat_beside_the_path_with_no_camera_is_counted_but_not_braked_for() {
    let rig = Rig::start(16);
    let handler = rig.handle.handler.clone().unwrap();
    // A car parked on the shoulder leaves the camera's view as the ego passes it.
    handler.do_send(NoCamera { track_id: 8, ttc_s: 0.8, offset_m: 2.9 });
    handler.do_send(NoCamera { track_id: 9, ttc_s: 0.8, offset_m: 0.2 });
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("a fallback command");
    assert!(c.task_id.ends_with("/no-camera/9"), "only the one in the path brakes: {}", c.task_id);
    assert_eq!(Rig::get(&rig.stats.no_camera), 2);
}

/// A forged CONTINUE for a real, outstanding task (its id is sequential and visible in
/// the audit topic) must not suppress the fallback brake: without the worker's key it is
/// refused, counted by reason, and the task still brakes at its deadline. So are a signed
/// reply for another task than it says and one for another vehicle. A genuine signed
/// answer is applied.
#[test]
fn a_forged_continue_is_refused_and_the_fallback_still_brakes() {
    let key = ReplyKey::from_hex(&"5a".repeat(32), "test").unwrap();
    let rig = Rig::start_with(16, ReplyTrust { publishers: vec![], key: Some(key.clone()) });
    let me = rig.vehicle.as_str().to_string();
    let id = rig.raise(1, 1.0);
    rig.wait("the publish", || Rig::get(&rig.stats.tasks_published) == 1);
    let forged = recommendation(&me, &id, v1::Action::Continue);
    rig.send_reply(Reply::new(id.as_str(), forged.clone()));
    let attacker = ReplyKey::from_hex(&"a5".repeat(32), "test").unwrap();
    let mut wrong_key = Reply::new(id.as_str(), forged.clone());
    wrong_key.mac = Some(attacker.sign(&me, &id, &forged));
    rig.send_reply(wrong_key);
    // A publisher the embedded transport cannot vouch for is dropped on the way.
    let mut claimed = Reply::new(id.as_str(), forged.clone());
    claimed.publisher = Some("vigil-worker".into());
    rig.send_reply(claimed);
    rig.wait("three signature refusals", || rig.rejected(Rejection::Signature) == 3);
    // Signed with the right key, but answering another task or another vehicle.
    let other = task_id(&rig.vehicle, &rig.run, 2);
    let bytes = recommendation(&me, &other, v1::Action::Continue);
    let mut swapped = Reply::new(id.as_str(), bytes.clone());
    swapped.mac = Some(key.sign(&me, &id, &bytes));
    rig.send_reply(swapped);
    let bytes = recommendation("veh-other", &id, v1::Action::Continue);
    let mut elsewhere = Reply::new(id.as_str(), bytes.clone());
    elsewhere.mac = Some(key.sign(&me, &id, &bytes));
    rig.send_reply(elsewhere);
    rig.wait("the correlation refusal", || rig.rejected(Rejection::Correlation) == 1);
    rig.wait("the vehicle refusal", || rig.rejected(Rejection::Vehicle) == 1);
    assert_eq!(Rig::get(&rig.stats.completed), 0, "no forged reply completed the task");
    rig.clock.advance(200_000_000);
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("the fallback brake");
    assert_eq!((c.task_id.as_str(), c.action, c.fallback), (id.as_str(), Action::Brake, true));
    // The genuine worker's signed answer to the next task is applied.
    let next = rig.raise(3, 1.0);
    rig.wait("the second publish", || Rig::get(&rig.stats.tasks_published) == 2);
    let bytes = recommendation(&me, &next, v1::Action::BrakeHard);
    let mut genuine = Reply::new(next.as_str(), bytes.clone());
    genuine.mac = Some(key.sign(&me, &next, &bytes));
    rig.send_reply(genuine);
    let c = rig.control.recv_timeout(Duration::from_secs(5)).expect("the answer");
    assert_eq!((c.task_id.as_str(), c.action, c.fallback), (next.as_str(), Action::BrakeHard, false));
    assert_eq!(Rig::get(&rig.stats.completed), 1);
}
