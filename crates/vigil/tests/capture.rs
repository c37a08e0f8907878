//! Event-triggered recording: `vigil monitor --capture-on BRAKE_HARD` during a drive over
//! the brokers keeps the seconds around each hard brake as an MCAP file of its own,
//! listed in `index.json`, that `vigil replay` accepts. Under CI=true an unreachable
//! broker fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AMQP, KAFKA, brokers_up, delete_amqp_prefix, n, unique, vigil_json, vigil_over_brokers};
use vigil_proto::v1::envelope::Payload;

/// A scenario the vehicle meets with hard brakes (an animal on the road at speed).
const SCENARIO: &str = "animal-crossing";

#[test]
fn monitor_keeps_the_seconds_around_each_hard_brake() {
    let Some(_brokers) = brokers_up() else { return };
    let prefix = unique("capture");
    let dir = std::env::temp_dir().join(&prefix);
    let frames = dir.join("frames");
    let out = vigil_over_brokers(&prefix, &frames)
        .args(["run", "--scenario", SCENARIO, "--seed", "3", "--json", "--kafka", KAFKA, "--amqp", AMQP])
        .output()
        .expect("vigil run");
    assert!(out.status.success(), "vigil run: {}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hard = n(&run["recommendations"]["by_action"]["BRAKE_HARD"]);
    assert!(hard >= 1, "the drive must brake hard for this test: {run}");

    let captures = dir.join("captures");
    let group = format!("{prefix}-monitor");
    let monitor = vigil_over_brokers(&prefix, &frames)
        .args(["monitor", "--kafka", KAFKA, "--from-beginning", "--group", &group, "--until-caught-up"])
        .args(["--duration", "90", "--interval", "600", "--json"])
        .args(["--capture-on", "BRAKE_HARD", "--before", "3s", "--after", "2s", "--out", captures.to_str().unwrap()])
        .output()
        .expect("vigil monitor");
    let said = String::from_utf8_lossy(&monitor.stderr);
    assert!(monitor.status.success(), "vigil monitor: {said}");

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(captures.join("index.json")).expect("index.json")).unwrap();
    eprintln!("run: {}\nindex: {index:#}", run["recommendations"]);
    let kept = index.as_array().unwrap();
    assert!(!kept.is_empty() && kept.len() as u64 <= hard, "{index}");
    let joined: u64 = kept.iter().map(|k| n(&k["joined"])).sum();
    assert_eq!(kept.len() as u64 + joined, hard, "every hard brake is in a window: {index}");
    let first = &kept[0];
    assert_eq!(first["trigger"], "BRAKE_HARD");
    assert!(kept.iter().all(|k| k["at_ns"].as_i64() >= first["at_ns"].as_i64()), "the first brake first: {index}");
    let (at, from, to) =
        (first["at_ns"].as_i64().unwrap(), first["from_ns"].as_i64().unwrap(), first["to_ns"].as_i64().unwrap());
    assert_eq!((at - from, to - at), (3_000_000_000, 2_000_000_000), "{first}");
    assert!(n(&first["frames"]) > 0, "{first}");

    // The file holds the window of the drive, with the brake's own recommendation.
    let file = captures.join(first["file"].as_str().unwrap());
    let messages = vigil_bus::embedded::playback::read_all(&file).unwrap();
    assert!(messages.iter().all(|(_, t, _)| (from..to).contains(t)), "only the window is kept");
    let has_task = messages.iter().any(|(topic, _, bytes)| {
        topic == vigil_proto::wire::topics::RECOMMENDATIONS
            && matches!(vigil_proto::decode_envelope(bytes).ok().and_then(|e| e.payload),
                Some(Payload::Recommendation(r)) if r.task_id == first["task_id"].as_str().unwrap())
    });
    assert!(has_task, "the window holds the hard brake's recommendation");

    // It feeds the replay → dataset → retrain path.
    let replay = vigil_json(&["replay", "--source", file.to_str().unwrap(), "--max", "--json"], &[]);
    assert!(n(&replay["frames"]["radar"]) > 0, "{replay}");
    assert!(n(&replay["diff"]["recorded"]) >= 1, "the window's recommendations are compared: {replay}");
    let _ = std::fs::remove_dir_all(&dir);
    delete_amqp_prefix(&prefix);
}
