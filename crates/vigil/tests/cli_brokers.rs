//! `vigil run` over the real brokers: a Kafka-protocol broker and RabbitMQ
//! (`scripts/brokers.sh up`). Under CI=true an unreachable broker fails these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{AMQP, KAFKA, brokers_up, delete_amqp_prefix, free_port, http_get, python, root, unique};

fn run_over_brokers(prefix: &str, frames: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .args(["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--json", "--kafka", KAFKA, "--amqp", AMQP])
        .args(extra)
        .env("VIGIL_KAFKA_TOPIC_PREFIX", prefix)
        .env("VIGIL_AMQP_PREFIX", prefix)
        .env("VIGIL_FRAMES_URL", format!("file://{}/", frames.display()))
        .output()
        .expect("run vigil");
    assert!(out.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json report")
}

/// The first check: the same outcome as the embedded run, over the brokers.
#[test]
fn pedestrian_saved_over_kafka_and_rabbitmq() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("run");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let r = run_over_brokers(&prefix, &frames, &[]);
    assert_eq!(r["mode"], "brokers", "{r}");
    assert_eq!(r["outcome"]["collision"], false, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    let brakes = r["recommendations"]["by_action"]["BRAKE"].as_u64().unwrap()
        + r["recommendations"]["by_action"]["BRAKE_HARD"].as_u64().unwrap();
    assert!(brakes >= 1, "{r}");
    // Every frame went through Kafka: delivered per topic = produced.
    let log = &r["log"];
    let radar = format!("{prefix}.telemetry.radar");
    assert_eq!(log[&radar], r["frames"]["radar"]["produced"], "{r}");
    let camera = format!("{prefix}.telemetry.camera");
    assert_eq!(log[&camera], r["frames"]["camera"]["produced"], "{r}");
    // Each camera frame (~1 MB) was written to the frame store once, by the vehicle; its
    // log record carries the reference (the log stored nothing again) and so do tasks.
    assert_eq!(r["brokers"]["frames"]["stored"], r["frames"]["camera"]["produced"], "{r}");
    assert_eq!(r["brokers"]["kafka"]["claim_checked"], 0, "{r}");
    let pixels = r["brokers"]["frames"]["bytes"].as_u64().unwrap();
    assert!(r["brokers"]["kafka"]["bytes"].as_u64().unwrap() < pixels, "pixels went inline: {r}");
    // Every task ended in a counted state.
    let t = &r["tasks"];
    let ended = t["completed"].as_u64().unwrap() + t["fallback"].as_u64().unwrap();
    assert_eq!(ended, t["raised"].as_u64().unwrap(), "{r}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// An outside client reads the data: Python's confluent-kafka consumes the radar topic
/// and the bytes decode with the .proto files through Google's protobuf runtime.
#[test]
fn outside_client_decodes_radar_from_kafka() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("outside");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let r = run_over_brokers(&prefix, &frames, &["--perception", "off", "--duration", "2"]);
    let produced = r["frames"]["radar"]["produced"].as_u64().unwrap();
    assert!(produced > 0, "{r}");
    let topic = format!("{prefix}.telemetry.radar");
    let out = Command::new(python())
        .arg(root().join("tests/kafka_read.py"))
        .args([KAFKA, &topic])
        .output()
        .expect("run python");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !out.status.success() && !ci && String::from_utf8_lossy(&out.stderr).contains("No module named") {
        eprintln!("note: python kafka tools not installed; run scripts/python-tools.sh (CI does)");
        return;
    }
    assert!(out.status.success(), "python reader failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["messages"].as_u64().unwrap(), produced, "{v}");
    assert_eq!(v["kinds"]["radar"].as_u64().unwrap(), produced, "{v}");
    assert_eq!(v["headers_match"].as_u64().unwrap(), produced, "headers carry the envelope metadata: {v}");
    for (stream, s) in v["streams"].as_object().unwrap() {
        assert_eq!(s["gaps"], 0, "{stream}: {v}");
        assert_eq!(s["duplicates"], 0, "{stream}: {v}");
    }
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// The Kafka broker restarted mid-run: no telemetry frame is lost — read back afterwards,
/// every (vehicle, sensor) stream has every sequence number, once. Uses its own broker
/// instance (port 19092, its own data) so the shared one keeps serving other tests.
#[test]
fn kafka_restart_mid_run_loses_no_frame() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("krestart");
    let kafka = PrivateKafka::new(&prefix, 19092);
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    kafka.sh("restart-kafka");
    let child = common::vigil_over_brokers(&prefix, &frames)
        .args(["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--json", "--perception", "off"])
        .args(["--duration", "8", "--kafka", &kafka.addr(), "--amqp", AMQP])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    std::thread::sleep(std::time::Duration::from_secs(3));
    kafka.sh("restart-kafka");
    let out = child.wait_with_output().expect("vigil run");
    assert!(out.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["lost"], 0, "{r}");
    // Each envelope counted once in `sent`, however often it was re-sent after a failed
    // delivery: after the close, everything sent was delivered.
    let k = &r["brokers"]["kafka"];
    assert_eq!(k["delivered"], k["sent"], "{r}");
    kafka.assert_all_telemetry_arrived(&prefix, &r);
    drop(kafka);
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// `vigil monitor` as a consumer group over one run's topics: its per-vehicle counts, the
/// recommendation mix and the task/recommendation join agree with the run's own report,
/// its lag ends at 0, and it serves the same figures in Prometheus text format.
#[test]
fn monitor_reads_a_run_back_and_serves_prometheus() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("monitor");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let r = run_over_brokers(&prefix, &frames, &[]);
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .args(["monitor", "--kafka", KAFKA, "--from-beginning", "--group", &format!("{prefix}-monitor")])
        .args(["--interval", "600", "--duration", "90", "--metrics-addr", &addr, "--json"])
        .env("VIGIL_KAFKA_TOPIC_PREFIX", &prefix)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil monitor");
    let pid = child.id().to_string();
    let kill = |sig: &str| {
        let _ = Command::new("kill").args([sig, &pid]).status();
    };
    let completed = r["tasks"]["completed"].as_u64().unwrap();
    let radar = r["frames"]["radar"]["produced"].as_u64().unwrap();
    let want = [
        format!("vigil_monitor_messages_total{{vehicle=\"veh-0000\",stream=\"radar\"}} {radar}\n"),
        format!("vigil_monitor_tasks_answered_total {completed}\n"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let t = http_get(&addr, "/metrics").unwrap_or_default();
        let lag_zero = t.lines().filter(|l| l.starts_with("vigil_monitor_consumer_lag{")).all(|l| l.ends_with(" 0"))
            && t.contains("vigil_monitor_consumer_lag{");
        if want.iter().all(|w| t.contains(w.as_str())) && lag_zero {
            break t;
        }
        if std::time::Instant::now() > deadline {
            kill("-9");
            panic!("the monitor did not catch up in 60 s; last metrics:\n{t}");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    kill("-TERM");
    let out = child.wait_with_output().expect("vigil monitor");
    assert!(out.status.success(), "vigil monitor failed: {}", String::from_utf8_lossy(&out.stderr));
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let m: serde_json::Value = serde_json::from_str(&last).expect("monitor json");
    eprintln!("run: {r}\nmonitor: {m}");

    // Telemetry per vehicle and stream: every produced frame, once.
    let v = &m["vehicles"]["veh-0000"];
    for kind in ["lidar", "camera", "radar"] {
        assert_eq!(v[kind]["count"], r["frames"][kind]["produced"], "{kind}: {m}");
    }
    // Rates from capture times: n frames over the drive (sensor rates are whole Hz).
    let rate = v["radar"]["rate_hz"].as_f64().unwrap();
    let span = r["sim_seconds"].as_f64().unwrap_or(10.0);
    assert!((rate - radar as f64 / span).abs() / rate < 0.05, "radar rate {rate} Hz over {span} s: {m}");
    // Recommendations: the same count and mix as the vehicle applied.
    assert_eq!(m["recommendations"], r["recommendations"]["count"], "{m}");
    assert_eq!(m["by_action"], r["recommendations"]["by_action"], "{m}");
    // Every raised task is in the audit log; every answer joined to its task.
    assert_eq!(m["tasks_seen"], r["tasks"]["raised"], "{m}");
    assert_eq!(m["tasks_answered"].as_u64().unwrap(), completed, "{m}");
    assert_eq!(m["end_to_end_latency_ms"]["samples"].as_u64().unwrap(), completed, "{m}");
    assert!(m["end_to_end_latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(m["total_lag"], 0, "{m}");
    assert_eq!(m["decode_errors"], 0, "{m}");
    // Drift against the model's (balanced) training mix: a pedestrian-only drive is far.
    let tvd = m["drift"]["class_tvd"].as_f64().unwrap();
    assert!(tvd > 0.3 && tvd <= 1.0, "{m}");
    // Prometheus text carries the same figures.
    let brake = r["recommendations"]["by_action"]["BRAKE"].as_u64().unwrap();
    assert!(text.contains(&format!("vigil_monitor_recommendations_total{{action=\"BRAKE\"}} {brake}\n")), "{text}");
    assert!(text.contains("# TYPE vigil_monitor_end_to_end_latency_seconds histogram"), "{text}");
    let e2e = format!("vigil_monitor_end_to_end_latency_seconds_count {completed}\n");
    assert!(text.contains(&e2e), "{text}");
    assert_eq!(vigil_pipeline::metrics::MONITOR.undeclared(&m), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// A prefix with no topics is an error that says what to check, not an idle monitor.
#[test]
fn monitor_with_no_topics_under_its_prefix_says_so() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .args(["monitor", "--kafka", KAFKA, "--duration", "5"])
        .env("VIGIL_KAFKA_TOPIC_PREFIX", unique("nothing-here"))
        .output()
        .expect("vigil monitor");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none of Vigil's topics exist") && err.contains("topic_prefix"), "{err}");
}

/// A private Kafka-protocol broker for one test (its own port and data), so pausing or
/// starting it late leaves the shared one serving the others.
struct PrivateKafka {
    port: u16,
    data: std::path::PathBuf,
}

impl PrivateKafka {
    fn new(prefix: &str, port: u16) -> Self {
        Self { port, data: std::env::temp_dir().join(format!("{prefix}-kafka")) }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn sh(&self, cmd: &str) {
        let s = Command::new(root().join("scripts/brokers.sh"))
            .arg(cmd)
            .env("VIGIL_NISSHI_PORT", self.port.to_string())
            .env("VIGIL_NISSHI_DATA", &self.data)
            .status()
            .expect("brokers.sh");
        assert!(s.success(), "brokers.sh {cmd}");
    }

    fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.data.join("nisshi.pid")).expect("nisshi pid file");
        let s = Command::new("kill").args([sig, pid.trim()]).status().expect("kill");
        assert!(s.success(), "kill {sig} {pid}");
    }

    /// Every telemetry stream of the run is in Kafka: per (vehicle, sensor) from sequence
    /// 0 with no gap, as many distinct messages as were produced.
    fn assert_all_telemetry_arrived(&self, prefix: &str, r: &serde_json::Value) {
        for kind in ["lidar", "camera", "radar"] {
            let topic = format!("{prefix}.telemetry.{kind}");
            let out =
                Command::new(python()).arg(root().join("tests/kafka_read.py")).args([&self.addr(), &topic]).output();
            let out = out.expect("python");
            assert!(out.status.success(), "read {topic}: {}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            let produced = r["frames"][kind]["produced"].as_u64().unwrap();
            let mut unique_msgs = 0;
            for (stream, s) in v["streams"].as_object().unwrap() {
                assert_eq!(s["gaps"], 0, "{topic} {stream}: {v}");
                assert_eq!(s["first"], 0, "{topic} {stream}: {v}");
                unique_msgs += s["count"].as_u64().unwrap() - s["duplicates"].as_u64().unwrap();
            }
            assert_eq!(unique_msgs, produced, "{topic}: every produced frame is in Kafka: {v}");
        }
    }
}

/// Stopped and deleted however the test ends: a broker left running (a test that
/// panicked) would hold its port and fail the next run's start.
impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.data.join("nisshi.pid")) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        let _ = Command::new(root().join("scripts/brokers.sh"))
            .arg("down")
            .env("VIGIL_NISSHI_PORT", self.port.to_string())
            .env("VIGIL_NISSHI_DATA", &self.data)
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn in_deadline(r: &serde_json::Value) -> f64 {
    let raised = r["tasks"]["raised"].as_f64().unwrap();
    if raised == 0.0 { 1.0 } else { r["tasks"]["completed"].as_f64().unwrap() / raised }
}

/// A brokers drive of urban-dense as a child process, over `kafka`.
fn drive(prefix: &str, kafka: &str, frames: &std::path::Path, seconds: &str) -> std::process::Child {
    common::vigil_over_brokers(prefix, frames)
        .args(["run", "--scenario", "urban-dense", "--seed", "3", "--json", "--duration", seconds])
        .args(["--kafka", kafka, "--amqp", AMQP])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil")
}

/// The Kafka broker frozen (SIGSTOP) for 30 s in the middle of a 40 s drive: the urgent
/// path does not notice (tasks answered in deadline within 1 point of the same drive
/// unpaused), and once it is resumed every telemetry message arrives, in order, no gap.
#[test]
fn a_kafka_broker_paused_for_30_s_costs_no_deadline_and_no_telemetry() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("kpause");
    let kafka = PrivateKafka::new(&prefix, 19093);
    kafka.sh("restart-kafka");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));

    let base_prefix = format!("{prefix}-base");
    let out = drive(&base_prefix, &kafka.addr(), &frames, "40").wait_with_output().expect("vigil run");
    assert!(out.status.success(), "unpaused drive failed: {}", String::from_utf8_lossy(&out.stderr));
    let base: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");

    let child = drive(&prefix, &kafka.addr(), &frames, "40");
    std::thread::sleep(std::time::Duration::from_secs(5));
    kafka.signal("-STOP");
    std::thread::sleep(std::time::Duration::from_secs(30));
    kafka.signal("-CONT");
    let out = child.wait_with_output().expect("vigil run");
    assert!(out.status.success(), "paused drive failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!(
        "unpaused: tasks {} telemetry {}\npaused: tasks {} telemetry {} kafka {}",
        base["tasks"], base["telemetry"], r["tasks"], r["telemetry"], r["brokers"]["kafka"]
    );
    assert_eq!(r["lost"], 0, "{r}");
    // Fusion acted on the drive's threat: a task, or (the camera frame of the very first
    // instant still in its ingest actor when the radar scan is fused) a no-camera fallback.
    assert!(r["threats"]["raised"].as_u64().unwrap() > 0, "{r}");
    let (paused, unpaused) = (in_deadline(&r), in_deadline(&base));
    assert!(paused >= unpaused - 0.01, "answered in deadline: {paused:.3} paused vs {unpaused:.3} unpaused");
    assert_eq!(r["telemetry"]["dropped"], 0, "{r}");
    assert_eq!(r["telemetry"]["queued"], 0, "the spool drained: {r}");
    assert!(r["telemetry"]["peak_bytes"].as_u64().is_some(), "spool counters reported: {r}");
    let k = &r["brokers"]["kafka"];
    assert_eq!(k["delivered"], k["sent"], "{r}");
    kafka.assert_all_telemetry_arrived(&prefix, &r);
    drop(kafka);
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
    delete_amqp_prefix(&base_prefix);
}

/// Reads `child`'s stderr on a thread and asserts a line containing `warning` came within
/// 1.5 s of `started`; returns the channel of the lines still to come.
fn warns_at_once(
    child: &mut std::process::Child,
    started: std::time::Instant,
    warning: &str,
) -> std::sync::mpsc::Receiver<(std::time::Duration, String)> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((started.elapsed(), line));
        }
    });
    let mut lines = Vec::new();
    let warned_at = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok((at, line)) if line.contains(warning) => break Some(at),
            Ok((_, line)) => lines.push(line),
            Err(_) => break None,
        }
    };
    let warned_at = warned_at.unwrap_or_else(|| panic!("no warning `{warning}`; stderr: {lines:?}"));
    assert!(warned_at < std::time::Duration::from_millis(1500), "warned {warned_at:?} after start");
    rx
}

/// A brokers drive started while its Kafka broker is down: it says so within a second,
/// drives on (tasks answered), and once the broker starts 10 s in, every telemetry
/// message of the drive reaches Kafka.
#[test]
fn a_drive_started_with_kafka_down_warns_at_once_and_delivers_everything_later() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("kdown");
    let kafka = PrivateKafka::new(&prefix, 19094);
    kafka.sh("down");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let started = std::time::Instant::now();
    let spool = std::env::temp_dir().join(format!("{prefix}-spool"));
    let mut child = common::vigil_over_brokers(&prefix, &frames)
        .args(["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--json", "--duration", "20"])
        .args(["--kafka", &kafka.addr(), "--amqp", AMQP])
        // A small producer buffer and memory spool: the 10 s outage goes to the disk spool.
        .env("VIGIL_KAFKA_QUEUE_MAX_MESSAGES", "200")
        .env("VIGIL_KAFKA_QUEUE_FULL_TIMEOUT_MS", "200")
        .args(["--spool-memory-mb", "2", "--spool-dir", spool.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let rx = warns_at_once(&mut child, started, "Kafka did not answer");
    std::thread::sleep(std::time::Duration::from_secs(10).saturating_sub(started.elapsed()));
    kafka.sh("restart-kafka");
    let out = child.wait_with_output().expect("vigil run");
    let rest: Vec<String> = rx.try_iter().map(|(_, l)| l).collect();
    assert!(out.status.success(), "vigil run failed: {rest:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("kafka down at start: tasks {} telemetry {} kafka {}", r["tasks"], r["telemetry"], r["brokers"]["kafka"]);
    assert_eq!(r["lost"], 0, "{r}");
    assert!(r["telemetry"]["spilled"].as_u64().unwrap() > 0, "the outage went to the disk spool: {r}");
    assert_eq!(r["telemetry"]["dropped"], 0, "{r}");
    assert_eq!(r["telemetry"]["queued"], 0, "the spool drained: {r}");
    let left: Vec<_> = std::fs::read_dir(&spool).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.iter().all(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())), "spool left: {left:?}");
    assert!(r["tasks"]["completed"].as_u64().unwrap() > 0, "tasks were answered while Kafka was down: {r}");
    assert!(!r["outcome"]["collision"].as_bool().unwrap(), "{r}");
    let k = &r["brokers"]["kafka"];
    assert_eq!(k["delivered"], k["sent"], "{r}");
    kafka.assert_all_telemetry_arrived(&prefix, &r);
    drop(kafka);
    let _ = std::fs::remove_dir_all(frames);
    let _ = std::fs::remove_dir_all(spool);
    delete_amqp_prefix(&prefix);
}

/// A TCP proxy to RabbitMQ that can stop forwarding (both ways) while `stalled` is set:
/// the broker looks alive (the connection stays open) and answers nothing.
struct StallProxy {
    port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallProxy {
    fn start(target: &'static str) -> Self {
        Self::start_after(target, std::time::Duration::ZERO)
    }

    /// A proxy whose port refuses connections (nothing listens) for `closed`, then forwards.
    fn start_after(target: &'static str, closed: std::time::Duration) -> Self {
        use std::sync::atomic::AtomicBool;
        let port = common::free_port();
        let stalled = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        std::thread::spawn(move || {
            std::thread::sleep(closed);
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind proxy");
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(upstream) = std::net::TcpStream::connect(target) else { continue };
                let (c2, u2) = (client.try_clone().expect("clone"), upstream.try_clone().expect("clone"));
                let (f1, f2) = (flag.clone(), flag.clone());
                std::thread::spawn(move || Self::pump(client, upstream, &f1));
                std::thread::spawn(move || Self::pump(u2, c2, &f2));
            }
        });
        if closed.is_zero() {
            // Bound before the caller connects.
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Self { port, stalled }
    }

    fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, stalled: &std::sync::atomic::AtomicBool) {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while stalled.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while stalled.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

/// RabbitMQ stops answering for 5 s in the middle of a drive (a proxy holds every byte):
/// fusion keeps pace with the sensors, and every threat ends in a recommendation or a
/// fallback no later than 20 ms past its deadline.
#[test]
fn rabbitmq_unresponsive_for_5_s_keeps_fusion_at_pace_and_every_fallback_on_time() {
    use std::sync::atomic::Ordering;
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("astall");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let proxy = StallProxy::start("127.0.0.1:5672");
    let child = common::vigil_over_brokers(&prefix, &frames)
        // Four vehicles: tasks are raised all through the stall.
        .args(["run", "--scenario", "urban-dense", "--seed", "3", "--json", "--duration", "15", "--vehicles", "4"])
        .args(["--kafka", KAFKA, "--amqp", &proxy.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    std::thread::sleep(std::time::Duration::from_secs(5));
    proxy.stalled.store(true, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_secs(5));
    proxy.stalled.store(false, Ordering::SeqCst);
    let out = child.wait_with_output().expect("vigil run");
    assert!(out.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let t = &r["tasks"];
    eprintln!(
        "stalled RabbitMQ: tasks {t} fused {} radar {} fusion lag {} fallback after deadline {}",
        r["fused"], r["frames"]["radar"], r["latency_ms"]["fusion_lag"], r["latency_ms"]["fallback_after_deadline"]
    );
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["fused"], r["frames"]["radar"]["produced"], "fusion fused every radar scan: {r}");
    assert!(r["latency_ms"]["fusion_lag"]["p99"].as_f64().unwrap() < 100.0, "fusion kept pace: {r}");
    let raised = t["raised"].as_u64().unwrap();
    assert!(raised > 0, "{r}");
    assert_eq!(raised, t["completed"].as_u64().unwrap() + t["fallback"].as_u64().unwrap(), "{t}");
    assert!(t["fallback"].as_u64().unwrap() > 0, "the stall made tasks fall back: {t}");
    let late = r["latency_ms"]["fallback_after_deadline"]["max"].as_f64().unwrap();
    assert!(late <= 20.0, "a fallback came {late} ms after its deadline: {r}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// A brokers drive started while RabbitMQ refuses connections: the vehicle says so within
/// a second and drives (every threat falls back, no collision); once RabbitMQ answers,
/// 2 s in (before the pedestrian steps out), it reconnects by itself and its tasks are
/// answered again. (In urban-dense the fallbacks brake the car to a stop before that,
/// and no threat is left to ask about.)
#[test]
fn a_drive_started_with_rabbitmq_down_falls_back_then_reconnects() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("adown");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let started = std::time::Instant::now();
    let proxy = StallProxy::start_after("127.0.0.1:5672", std::time::Duration::from_secs(2));
    let mut child = common::vigil_over_brokers(&prefix, &frames)
        .args(["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--json", "--duration", "16"])
        .args(["--kafka", KAFKA, "--amqp", &proxy.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let rx = warns_at_once(&mut child, started, "RabbitMQ is unreachable");
    let out = child.wait_with_output().expect("vigil run");
    let rest: Vec<String> = rx.try_iter().map(|(_, l)| l).collect();
    assert!(out.status.success(), "vigil run failed: {rest:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let t = &r["tasks"];
    eprintln!("rabbitmq down at start: tasks {t} amqp {}", r["brokers"]["amqp"]);
    assert_eq!(r["lost"], 0, "{r}");
    assert!(!r["outcome"]["collision"].as_bool().unwrap(), "{r}");
    let raised = t["raised"].as_u64().unwrap();
    assert_eq!(raised, t["completed"].as_u64().unwrap() + t["fallback"].as_u64().unwrap(), "{t}");
    assert!(t["fallback"].as_u64().unwrap() > 0, "tasks raised while RabbitMQ was down fell back: {t}");
    assert!(t["completed"].as_u64().unwrap() > 0, "tasks were answered once RabbitMQ came: {t}");
    assert!(r["brokers"]["amqp"]["recoveries"].as_u64().unwrap() >= 1, "{r}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}
