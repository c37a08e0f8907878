//! Helpers shared by the CLI integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `vigil` binary, run from the repository root.
pub fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil")).current_dir(root()).args(args).output().expect("run vigil")
}

/// `vigil args` with `env` set, which must succeed and print one JSON object.
pub fn vigil_json(args: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(root()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run vigil");
    assert!(out.status.success(), "vigil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vigil {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A count in a JSON report.
pub fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Runs `tests/mcap_check.py` (the official Python `mcap` reader, installed by
/// scripts/python-tools.sh) on `file` and returns its JSON summary. Outside CI a missing
/// reader is a note and `None`; under `CI=true` it fails the test.
pub fn python_mcap_check(file: &Path) -> Option<serde_json::Value> {
    python_json("tests/mcap_check.py", &[file])
}

/// Runs a Python tool of `tests/` with the tools' interpreter on `args` and returns its
/// JSON output; a missing interpreter or module is a note outside CI, a failure under it.
pub fn python_json(script: &str, args: &[&Path]) -> Option<serde_json::Value> {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".venv-tools/bin/python");
        if venv.exists() { venv.display().to_string() } else { "python3".into() }
    });
    let check = Command::new(&python).arg(root().join(script)).args(args).output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match check {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if !ci && String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("note: python mcap reader not installed; run scripts/python-tools.sh (CI does)");
            None
        }
        Ok(o) => panic!("{script} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if !ci => {
            eprintln!("note: cannot run {python}: {e}");
            None
        }
        Err(e) => panic!("cannot run {python}: {e}"),
    }
}

/// The development brokers the broker tests use (started by `scripts/brokers.sh up`).
pub const KAFKA: &str = "127.0.0.1:9092";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn reachable(addr: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok())
}

/// Held by a test over the shared brokers: one test restarts RabbitMQ, one starts and
/// restarts a second Kafka-protocol broker, and `cargo test` runs a binary's tests side
/// by side (nextest's `brokers` group in `.config/nextest.toml` does this across binaries).
static BROKERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for the other broker tests of this binary, then checks both brokers answer;
/// hold the guard for the whole test. Under `CI=true` an unreachable broker FAILS the
/// test; elsewhere it is a note and `None` (the test returns early).
pub fn brokers_up() -> Option<std::sync::MutexGuard<'static, ()>> {
    // A failed test poisons the lock; the next one may still run.
    let guard = BROKERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for (name, addr) in [("Kafka-protocol broker", KAFKA), ("RabbitMQ", "127.0.0.1:5672")] {
        if !reachable(addr) {
            assert!(!ci, "{name} unreachable at {addr} under CI=true: `scripts/brokers.sh up` starts it");
            eprintln!("note: {name} unreachable at {addr}; skipped (scripts/brokers.sh up starts it)");
            return None;
        }
    }
    Some(guard)
}

/// A name unique to this test run, for topic and queue prefixes (tests run in parallel).
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("t{}-{}-{}", tag, std::process::id(), nanos % 1_000_000_000)
}

/// The Python from scripts/python-tools.sh (or a note and `None` outside CI).
pub fn python() -> String {
    std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".venv-tools/bin/python");
        if venv.exists() { venv.display().to_string() } else { "python3".into() }
    })
}

/// `vigil` with the broker settings of one test: topic and queue prefix, frame store.
pub fn vigil_over_brokers(prefix: &str, frames: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.current_dir(root())
        .env("VIGIL_KAFKA_TOPIC_PREFIX", prefix)
        .env("VIGIL_AMQP_PREFIX", prefix)
        .env("VIGIL_FRAMES_URL", format!("file://{}/", frames.display()));
    c
}

/// A free TCP port on 127.0.0.1 (for zenoh endpoints).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Deletes the RabbitMQ queues and exchanges of a test's prefix, once the test has
/// passed (a failed test leaves them for a look). Reply queues expire on their own.
pub fn delete_amqp_prefix(prefix: &str) {
    let cfg = vigil_brokers::AmqpConfig { url: Some(AMQP.into()), prefix: prefix.into(), ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    if let Err(e) = rt.block_on(vigil_brokers::amqp::delete_prefix(&cfg)) {
        eprintln!("note: could not delete the test's RabbitMQ queues: {e}");
    }
}

/// `GET path` from a plain HTTP server at `addr` (host:port); the body, or `None` when
/// nothing answers yet.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}
