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
