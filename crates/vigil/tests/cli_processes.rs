//! The distributed deployment: simulator, vehicle and two workers as four processes —
//! zenoh between simulator and vehicle, Kafka and RabbitMQ between vehicle and workers,
//! the loop closed back over zenoh. Under CI=true an unreachable broker fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{AMQP, KAFKA, brokers_up, delete_amqp_prefix, free_port, http_get, n, unique, vigil_over_brokers};

fn report(child: Child, who: &str) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{who} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{who} report: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn terminate(child: &Child) {
    let s = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(s.success());
}

/// Kills whatever is still running of the test's processes when the test ends (a failed
/// assertion must not leave a simulator or a worker behind).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// `kill -9` one worker while it holds a task: RabbitMQ hands the unacked task to the
/// other worker, which answers it; no frame or task is lost, no command applied twice.
#[test]
fn killed_worker_hands_its_task_to_the_other() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("procs");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let worker = |extra: &[&str]| {
        vigil_over_brokers(&prefix, &frames)
            .args(["worker", "--amqp", AMQP, "--json"])
            .args(extra)
            .env("VIGIL_LOG", "vigil_worker=debug,vigil_pipeline=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vigil worker")
    };
    // Worker A is slow (1.5 s an inference), so it is sure to hold a task when killed;
    // the 3 s budget leaves time for the redelivery to be answered.
    let mut a = worker(&["--inject-latency-ms", "1500"]);
    let b_metrics = format!("127.0.0.1:{}", free_port());
    let mut b = worker(&["--metrics-addr", &b_metrics]);
    let ready = |child: &mut Child, who: &'static str| {
        let (tx, rx) = mpsc::channel::<String>();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{who}] {line}");
                let _ = tx.send(line);
            }
        });
        rx.iter().find(|l| l.contains("workers up")).unwrap_or_else(|| panic!("{who} did not start"));
        rx
    };
    let mut guard = KillOnDrop(vec![a.id(), b.id()]);
    let a_log = ready(&mut a, "worker A");
    let b_log = ready(&mut b, "worker B");
    let vehicle = vigil_over_brokers(&prefix, &frames)
        .args(["vehicle", "--scenario", "pedestrian-crossing", "--kafka", KAFKA, "--amqp", AMQP])
        .args(["--listen", &endpoint, "--budget-ms", "3000", "--idle-exit", "2", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn vigil vehicle");
    let sim = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["sim", "--scenario", "pedestrian-crossing", "--seed", "7", "--publish", "--wall-clock", "--control"])
        .args(["--connect", &endpoint, "--wait-peers", "1", "--wait-timeout", "30", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn vigil sim");
    guard.0.extend([vehicle.id(), sim.id()]);

    // The moment A takes a task, kill -9 it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let taken = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match a_log.recv_timeout(left) {
            Ok(l) if l.contains("task taken") => break l,
            Ok(_) => {}
            Err(_) => panic!("worker A took no task within 60 s"),
        }
    };
    a.kill().expect("kill -9 worker A");
    let _ = a.wait();
    let task = taken.split("task=").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
    assert!(!task.is_empty(), "{taken}");

    let sim = report(sim, "vigil sim");
    let vehicle = report(vehicle, "vigil vehicle");
    // Worker B's live counters, in Prometheus text format (rendered once a second).
    std::thread::sleep(Duration::from_millis(1500));
    let b_text = http_get(&b_metrics, "/metrics").expect("worker B serves /metrics");
    terminate(&b);
    let b_report = report(b, "worker B");
    let b_lines: Vec<String> = b_log.try_iter().collect();
    eprintln!("sim: {sim}\nvehicle: {vehicle}\nworker B: {b_report}");

    // The task A held went to B, as a redelivery, and B answered it.
    assert!(
        b_lines.iter().any(|l| l.contains("task taken") && l.contains(&task) && l.contains("attempt=2")),
        "worker B never took {task} as a redelivery"
    );
    assert!(n(&b_report["redelivered"]) >= 1, "{b_report}");
    for key in ["answered", "redelivered", "taken"] {
        let line = format!("vigil_worker_tasks_{key}_total {}\n", b_report[key]);
        assert!(b_text.contains(&line), "worker B's /metrics lacks `{}`:\n{b_text}", line.trim());
    }
    assert!(b_text.contains("# TYPE vigil_worker_task_queue_depth gauge\n"), "{b_text}");
    assert!(b_text.contains("# TYPE vigil_worker_task_seconds histogram\n"), "{b_text}");
    // Every figure of both reports has its series (or is deliberately not served).
    assert_eq!(vigil_pipeline::metrics::WORKER.undeclared(&b_report), Vec::<String>::new());
    assert_eq!(vigil_pipeline::metrics::VEHICLE.undeclared(&vehicle), Vec::<String>::new());
    // No telemetry lost: every frame the simulator published was ingested, no gaps.
    for (stream, key) in [("lidar", "lidar"), ("camera", "camera"), ("radar", "radar")] {
        assert_eq!(vehicle["frames"][stream], sim["frames"][key], "{stream}: {vehicle} {sim}");
    }
    assert_eq!(vehicle["frames"]["localization"], sim["frames"]["ground_truth"], "{vehicle}");
    assert_eq!(vehicle["gaps"], 0, "{vehicle}");
    assert_eq!(vehicle["brokers"]["kafka"]["delivered"], vehicle["brokers"]["kafka"]["sent"], "{vehicle}");
    // Every task ended counted; none fell back (the held one was answered by B).
    let t = &vehicle["tasks"];
    assert!(n(&t["published"]) >= 1, "{vehicle}");
    assert_eq!(n(&t["completed"]) + n(&t["fallback"]), n(&t["raised"]), "{vehicle}");
    assert_eq!(t["outstanding"], 0, "{vehicle}");
    assert_eq!(t["fallback"], 0, "the killed worker's task was answered by the other: {vehicle}");
    assert_eq!(n(&b_report["answered"]), n(&t["completed"]), "A answered nothing, B everything: {b_report} {vehicle}");
    // No action applied twice; every command the vehicle sent reached the simulator.
    assert_eq!(sim["controls"]["applied_twice"], 0, "{sim}");
    assert_eq!(sim["controls"]["rejected"], 0, "{sim}");
    assert_eq!(sim["controls"]["received"], vehicle["controls_sent"], "{sim} {vehicle}");
    // The loop closed across processes: the pedestrian is saved.
    assert_eq!(sim["outcome"]["collision"], false, "{sim}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// Starts RabbitMQ's application again however the test ends.
struct RabbitBack;

impl Drop for RabbitBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

fn rabbitmqctl(cmd: &str) {
    let out = Command::new("rabbitmqctl").arg(cmd).output().expect("run rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

fn now_ms() -> i64 {
    vigil_core::Clock::now_ns(&vigil_core::WallClock) / 1_000_000
}

/// RabbitMQ stopped and started (`rabbitmqctl stop_app`, `start_app`) while a vehicle
/// process and a worker process run and the simulator streams a drive: both recover on
/// their own — a second drive after the restart is answered by the same processes and
/// the pedestrian is saved — every task ends in a counted state, and telemetry (Kafka)
/// is unaffected: every frame of both drives ingested, none missing.
#[test]
fn rabbitmq_restart_mid_run_recovers() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("rrestart");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let worker = vigil_over_brokers(&prefix, &frames)
        .args(["worker", "--amqp", AMQP, "--json"])
        .env("VIGIL_LOG", "vigil_pipeline=info,vigil_brokers=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil worker");
    let mut guard = KillOnDrop(vec![worker.id()]);
    let mut worker = worker;
    let err = worker.stderr.take().unwrap();
    let (tx, worker_log) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[worker] {line}");
            let _ = tx.send(line);
        }
    });
    worker_log.iter().find(|l| l.contains("workers up")).expect("worker did not start");
    let vehicle = vigil_over_brokers(&prefix, &frames)
        .args(["vehicle", "--scenario", "pedestrian-crossing", "--kafka", KAFKA, "--amqp", AMQP])
        .args(["--listen", &endpoint, "--idle-exit", "4", "--json"])
        .env("VIGIL_LOG", "vigil_brokers=info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn vigil vehicle");
    guard.0.push(vehicle.id());
    let drive = |seed: &str| {
        let c = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["sim", "--scenario", "pedestrian-crossing", "--seed", seed, "--publish", "--wall-clock"])
            .args(["--control", "--connect", &endpoint, "--wait-peers", "1", "--wait-timeout", "30", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vigil sim");
        (c.id(), c)
    };
    let _back = RabbitBack;
    // Drive 1; RabbitMQ goes down 5 s in, while telemetry still streams.
    let (pid, first) = drive("7");
    guard.0.push(pid);
    std::thread::sleep(Duration::from_secs(5));
    rabbitmqctl("stop_app");
    let down_ms = now_ms();
    std::thread::sleep(Duration::from_secs(1));
    let start_ms = now_ms();
    rabbitmqctl("start_app");
    let up_ms = now_ms();
    let first = report(first, "vigil sim (drive 1)");
    // Drive 2, after the restart, through the same vehicle and worker processes.
    let (pid, second) = drive("8");
    guard.0.push(pid);
    let second = report(second, "vigil sim (drive 2)");
    let vehicle = report(vehicle, "vigil vehicle");
    terminate(&worker);
    let worker = report(worker, "vigil worker");
    eprintln!("drive 1: {first}\ndrive 2: {second}\nvehicle: {vehicle}\nworker: {worker}");

    // Telemetry unaffected: every frame of both drives ingested and in Kafka.
    for (stream, key) in [("lidar", "lidar"), ("camera", "camera"), ("radar", "radar")] {
        assert_eq!(n(&vehicle["frames"][stream]), n(&first["frames"][key]) + n(&second["frames"][key]), "{stream}");
    }
    assert_eq!(vehicle["gaps"], 0, "{vehicle}");
    let k = &vehicle["brokers"]["kafka"];
    assert_eq!(k["delivered"], k["sent"], "{vehicle}");
    // Both sides lost the connection and recovered it on their own.
    assert!(n(&vehicle["brokers"]["amqp"]["recoveries"]) >= 1, "{vehicle}");
    assert!(n(&worker["amqp"]["recoveries"]) >= 1, "{worker}");
    // Every task ended in a counted state.
    let t = &vehicle["tasks"];
    assert_eq!(n(&t["completed"]) + n(&t["fallback"]), n(&t["raised"]), "{vehicle}");
    assert_eq!(t["outstanding"], 0, "{vehicle}");
    // The outage was real: no answer while RabbitMQ was stopped; answers after it came back.
    let cfg = vigil_brokers::KafkaConfig { brokers: KAFKA.into(), ..Default::default() };
    let topic = format!("{prefix}.recommendations");
    let read = |from, to| {
        vigil_brokers::kafka::read_window(&cfg, &topic, from, to, Duration::from_secs(20))
            .expect("read recommendations")
    };
    assert!(!read(None, Some(down_ms)).is_empty(), "answers before the stop");
    assert_eq!(read(Some(down_ms), Some(start_ms)).len(), 0, "answers while RabbitMQ was stopped");
    assert!(!read(Some(up_ms), None).is_empty(), "no task answered after RabbitMQ came back");
    // The drive after the restart went as it should: the pedestrian is saved.
    assert_eq!(second["outcome"]["collision"], false, "{second}");
    assert_eq!(second["controls"]["applied_twice"], 0, "{second}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// One worker process stays up while two vehicle processes of the same vehicle drive one
/// after the other (same scenario, same seed): the second drive's tasks are answered too.
/// Task ids carry each vehicle process's run id, so the worker's duplicate memory never
/// mistakes a new drive's task for an old one (before, drive 2 got 0 answers and every
/// task fell back, the worker counting each as a duplicate).
#[test]
fn a_second_drive_is_answered_by_a_worker_that_stayed_up() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("twodrives");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let mut worker = vigil_over_brokers(&prefix, &frames)
        .args(["worker", "--amqp", AMQP, "--json"])
        .env("VIGIL_LOG", "vigil_pipeline=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil worker");
    let mut guard = KillOnDrop(vec![worker.id()]);
    let err = worker.stderr.take().unwrap();
    let (tx, worker_log) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[worker] {line}");
            let _ = tx.send(line);
        }
    });
    worker_log.iter().find(|l| l.contains("workers up")).expect("worker did not start");
    let mut drives = Vec::new();
    for _ in 0..2 {
        let endpoint = format!("tcp/127.0.0.1:{}", free_port());
        // A 1 s budget: this is about identity, not a loaded CI machine's latency.
        let vehicle = vigil_over_brokers(&prefix, &frames)
            .args(["vehicle", "--scenario", "pedestrian-crossing", "--kafka", KAFKA, "--amqp", AMQP])
            .args(["--listen", &endpoint, "--budget-ms", "1000", "--idle-exit", "2", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vigil vehicle");
        let sim = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["sim", "--scenario", "pedestrian-crossing", "--seed", "7", "--publish", "--wall-clock", "--control"])
            .args(["--connect", &endpoint, "--wait-peers", "1", "--wait-timeout", "30", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vigil sim");
        guard.0.extend([vehicle.id(), sim.id()]);
        let sim = report(sim, "vigil sim");
        let vehicle = report(vehicle, "vigil vehicle");
        eprintln!("sim: {sim}\nvehicle: {vehicle}");
        drives.push(vehicle);
    }
    std::thread::sleep(Duration::from_millis(500));
    terminate(&worker);
    let worker = report(worker, "vigil worker");
    eprintln!("worker: {worker}");
    assert_ne!(drives[0]["run_id"], drives[1]["run_id"], "each vehicle process has its own run id");
    for (i, v) in drives.iter().enumerate() {
        let t = &v["tasks"];
        assert!(n(&t["raised"]) >= 5, "drive {}: {v}", i + 1);
        assert_eq!(n(&t["completed"]) + n(&t["fallback"]), n(&t["raised"]), "drive {}: {v}", i + 1);
        assert_eq!(t["outstanding"], 0, "drive {}: {v}", i + 1);
        assert_eq!(t["fallback"], 0, "drive {}: every task answered: {v}", i + 1);
        assert_eq!(t["duplicate_replies"], 0, "drive {}: {v}", i + 1);
    }
    assert_eq!(worker["duplicates"], 0, "{worker}");
    assert_eq!(n(&worker["answered"]), n(&drives[0]["tasks"]["completed"]) + n(&drives[1]["tasks"]["completed"]));
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}
