//! `vigil run` end to end, as a user runs it: real-time pacing, the shipped model, the
//! embedded transports, the zenoh sensor bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{vigil, vigil_json};

fn vigil_run(args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["run"].into_iter().chain(args.iter().copied()).chain(["--json"]).collect();
    vigil_json(&args, &[])
}

#[test]
fn pipeline_saves_the_pedestrian_and_without_it_the_car_hits_her() {
    let on = vigil_run(&["--scenario", "pedestrian-crossing", "--seed", "7"]);
    assert_eq!(on["mode"], "embedded");
    assert_eq!(on["pacing"], "realtime");
    assert_eq!(on["lost"], 0, "{on}");
    assert_eq!(on["outcome"]["collision"], false, "{on}");
    let by = &on["recommendations"]["by_action"];
    assert!(by["BRAKE"].as_u64().unwrap() + by["BRAKE_HARD"].as_u64().unwrap() >= 1, "{on}");
    for kind in ["lidar", "camera", "radar"] {
        let f = &on["frames"][kind];
        assert!(f["produced"].as_u64().unwrap() > 0);
        assert_eq!(f["produced"], f["ingested"], "{kind}: {on}");
    }
    let t = &on["tasks"];
    let n = |k: &str| t[k].as_u64().unwrap();
    assert!(n("published") > 0);
    assert_eq!(n("raised"), n("completed") + n("fallback"), "every task ends completed or fallback: {t}");
    assert_eq!(n("published"), n("acked") + n("expired") + n("dead_lettered"), "queue side balances: {t}");
    let lat = &on["latency_ms"]["detect_to_recommend"];
    assert!(lat["p99"].as_f64().unwrap() > 0.0 && lat["p99"].as_f64().unwrap() < 100.0, "{lat}");
    assert_eq!(on["model"]["name"], "obstacle-classifier");
    assert_eq!(on["model"]["device"], "cpu");

    let off = vigil_run(&["--scenario", "pedestrian-crossing", "--seed", "7", "--perception", "off"]);
    assert_eq!(off["outcome"]["collision"], true, "{off}");
    assert_eq!(off["lost"], 0);
    assert_eq!(off["tasks"]["published"], 0);
}

#[test]
fn recording_holds_telemetry_tasks_and_recommendations_and_decodes_in_python() {
    let dir = std::env::temp_dir().join(format!("vigil-run-mcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.mcap");
    let report =
        vigil_run(&["--scenario", "stopped-vehicle", "--seed", "3", "--fast", "--record", file.to_str().unwrap()]);
    let log = &report["log"];
    let total: u64 = log.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(log["vigil.tasks"].as_u64().unwrap() > 0, "{report}");
    assert!(log["vigil.recommendations"].as_u64().unwrap() > 0, "{report}");

    let messages = vigil_bus::embedded::playback::read_all(&file).unwrap();
    assert_eq!(messages.len() as u64, total);
    for (_, _, bytes) in &messages {
        vigil_proto::decode_envelope(bytes).expect("strict decode");
    }

    if let Some(v) = common::python_mcap_check(&file) {
        assert_eq!(v["messages"].as_u64().unwrap(), total, "{v}");
        assert_eq!(v["payloads"]["obstacle_task"], log["vigil.tasks"], "{v}");
        assert_eq!(v["payloads"]["recommendation"], log["vigil.recommendations"], "{v}");
        assert_eq!(v["topics"]["vigil.telemetry.camera"], log["vigil.telemetry.camera"], "{v}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_run_settings_give_clear_errors() {
    let cases: [(&[&str], &str); 4] = [
        (&["--scenario", "nope"], "nope"),
        (&["--scenario", "debris", "--workers", "0"], "--workers"),
        (&["--scenario", "debris", "--model", "/nonexistent"], "no model at /nonexistent"),
        (&["--scenario", "debris", "--budget-ms", "-5"], "--budget-ms"),
    ];
    for (args, needle) in cases {
        let out = vigil(&[&["run"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The shipped model is built into the binary: `vigil run` and `vigil eval` started
/// outside the repository (no `models/` beside them) find it, and it classifies exactly
/// as the directory it was built from does.
#[test]
fn the_built_in_model_runs_from_any_directory_and_matches_the_shipped_one() {
    let elsewhere = std::env::temp_dir().join(format!("vigil-elsewhere-{}", std::process::id()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let from_elsewhere = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .current_dir(&elsewhere)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let run = from_elsewhere(&["run", "--scenario", "pedestrian-crossing", "--seed", "11", "--fast", "--json"]);
    assert_eq!(run["model"]["name"], "obstacle-classifier");
    assert_eq!(run["outcome"]["collision"], false, "{run}");
    assert!(run["recommendations"]["count"].as_u64().unwrap() > 0, "{run}");

    let eval = ["eval", "--samples", "300", "--seed", "4242", "--json"];
    let builtin = from_elsewhere(&eval);
    let model = common::root().join("models/obstacle-classifier");
    let shipped = vigil_json(&[&eval[..], &["--model", model.to_str().unwrap()]].concat(), &[]);
    assert_eq!(builtin["model_dir"], "builtin:obstacle-classifier");
    for key in ["accuracy", "per_class", "model", "model_version"] {
        assert_eq!(builtin[key], shipped[key], "{key}");
    }
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// The sockets `pid` listens on (TCP, v4 and v6), from /proc: each listening socket
/// of the system whose inode is one of the process's file descriptors.
fn listening_sockets(pid: u32) -> Vec<std::net::IpAddr> {
    let fds: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|l| l.display().to_string()).collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" || !fds.contains(&format!("socket:[{}]", cols[9])) {
                continue;
            }
            let hex = cols[1].split(':').next().unwrap();
            let words: Vec<u32> =
                (0..hex.len() / 8).map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).unwrap()).collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            found.push(if v6 {
                std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap())
            } else {
                std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap())
            });
        }
    }
    found
}

/// A default `vigil run` listens, and only on loopback: no other machine can reach its
/// sensor bus (read from the kernel's socket tables while it runs, not from its config).
#[test]
fn a_default_run_listens_only_on_loopback() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(common::root())
        .args(["run", "--scenario", "pedestrian-crossing", "--seed", "7"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        seen = listening_sockets(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!seen.is_empty(), "the run's zenoh peer listens somewhere");
    let loopback = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    assert!(seen.iter().all(loopback), "listening beyond loopback: {seen:?}");
}
