//! Vigil as a service on the vehicle computer: the systemd units in `deploy/systemd/`
//! verify clean and name only flags Vigil has, and `vigil worker` speaks systemd's
//! notify protocol (READY=1 once serving, WATCHDOG=1 while alive, STOPPING=1 on the
//! way out) to a real `NOTIFY_SOCKET`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AMQP, brokers_up, delete_amqp_prefix, root, unique, vigil_over_brokers};

const UNITS: [&str; 2] = ["vigil-vehicle.service", "vigil-worker@.service"];
const INSTALLED: &str = "/usr/local/bin/vigil";

/// The unit's `ExecStart=` with its continuation lines joined.
fn exec_start(unit: &str) -> String {
    let joined = unit.replace("\\\n", " ");
    let line = joined.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `systemd-analyze verify` on each unit, with the binary where the test built it (the
/// one change: verify checks that the command exists), and not one warning.
#[test]
fn the_units_verify_clean_and_name_only_flags_vigil_has() {
    let dir = std::env::temp_dir().join(format!("vigil-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vigil = env!("CARGO_BIN_EXE_vigil");
    for name in UNITS {
        let unit = std::fs::read_to_string(root().join("deploy/systemd").join(name)).unwrap();
        assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec=") && unit.contains("Restart=on-failure"));
        assert!(unit.contains("EnvironmentFile=") && unit.contains("NoNewPrivileges=yes"), "{name}");
        let copy = dir.join(name);
        std::fs::write(&copy, unit.replace(INSTALLED, vigil)).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("systemd-analyze");
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.trim().is_empty(), "{name}: {said}");

        // Every flag of ExecStart is one the subcommand takes (clap refuses others
        // before it reaches --help).
        let line = exec_start(&unit).replace("${STATE_DIRECTORY}", "/var/lib/vigil").replace("%i", "1");
        let args: Vec<&str> = line.split(' ').skip(1).collect();
        let out = Command::new(vigil).args(&args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name}: {line}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the worker sent to the notify socket, one datagram per entry.
fn notifications(sock: &UnixDatagram, until: Instant, stop: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while Instant::now() < until && !stop(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    got
}

#[test]
fn the_worker_tells_systemd_it_is_ready_alive_and_stopping() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("notify");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let socket = std::env::temp_dir().join(format!("{prefix}.notify"));
    let _ = std::fs::remove_file(&socket);
    let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
    let worker = vigil_over_brokers(&prefix, &frames)
        .args(["worker", "--amqp", AMQP, "--idle-exit", "3"])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil worker");
    let start = Instant::now();
    let pings = |got: &[String]| got.iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count();
    let got = notifications(&sock, start + Duration::from_secs(60), |got| got.iter().any(|m| m.contains("STOPPING=1")));
    let out = worker.wait_with_output().unwrap();
    assert!(out.status.success(), "worker: {}", String::from_utf8_lossy(&out.stderr));
    let ready =
        got.iter().position(|m| m.lines().any(|l| l == "READY=1")).unwrap_or_else(|| panic!("no READY=1: {got:?}"));
    assert!(got[ready].contains("STATUS=") && got[ready].contains("workers"), "{got:?}");
    // Idle for 3 s with a 400 ms watchdog: pings every 200 ms, each with its status.
    let after_ready = &got[ready + 1..];
    assert!(pings(after_ready) >= 5, "watchdog pings after READY: {got:?}");
    assert!(after_ready.iter().filter(|m| m.contains("WATCHDOG=1")).all(|m| m.contains("STATUS=taken ")), "{got:?}");
    assert!(got.last().is_some_and(|m| m.contains("STOPPING=1")), "{got:?}");
    drop(sock);
    let _ = std::fs::remove_file(&socket);
    delete_amqp_prefix(&prefix);
    let _ = std::fs::remove_dir_all(Path::new(&frames));
}
