//! `vigil sim` and `vigil scenarios` as a user runs them: determinism, frame rates,
//! snapshots and clear errors on bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

mod common;
use common::vigil;

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "vigil failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn version_and_scenario_list() {
    let out = vigil(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vigil "));
    let out = vigil(&["scenarios"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["pedestrian-crossing", "stopped-vehicle", "cyclist-merge", "debris", "clear-road", "urban-dense"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
    }
}

#[test]
fn same_seed_same_digest_other_seed_other_digest_rates_hold() {
    let args = ["sim", "--scenario", "pedestrian-crossing", "--seed", "7", "--duration", "10", "--json"];
    let a = json(&vigil(&args));
    let b = json(&vigil(&args));
    let mut other = args;
    other[4] = "8";
    let c = json(&vigil(&other));
    assert_eq!(a["digest"], b["digest"]);
    assert_ne!(a["digest"], c["digest"]);
    assert_eq!(a["frames"]["lidar"], 100, "10 Hz lidar for 10 s");
    assert_eq!(a["frames"]["camera"], 200, "20 Hz camera for 10 s");
    assert_eq!(a["frames"]["radar"], 200, "20 Hz radar for 10 s");
    assert!(a["lidar_points"].as_u64().unwrap() > 100 * 10_000);
    for key in ["scenario", "seed", "vehicles", "sim_seconds", "wall_seconds", "realtime_factor", "frames", "digest"] {
        assert!(a.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn fleet_counts_scale_and_vehicles_differ() {
    let one = json(&vigil(&["sim", "--scenario", "debris", "--seed", "1", "--duration", "1", "--json"]));
    let four =
        json(&vigil(&["sim", "--scenario", "debris", "--seed", "1", "--duration", "1", "--vehicles", "4", "--json"]));
    assert_eq!(four["frames"]["lidar"], 40);
    assert_eq!(four["vehicles"], 4);
    assert_ne!(one["digest"], four["digest"]);
}

#[test]
fn user_scenario_file_runs() {
    let dir = tempdir("user-scenario");
    let path = dir.join("mine.toml");
    std::fs::write(
        &path,
        r#"
name = "mine"
description = "a deer and a crate"
[ego]
speed_mps = 10.0
[[obstacles]]
class = "animal"
start = [30.0, -4.0]
path = [[30.0, 4.0]]
speed_mps = 2.0
[[obstacles]]
class = "debris"
start = [50.0, 0.0]
[sensors.lidar]
beams = 16
columns = 512
rate_hz = 5
"#,
    )
    .unwrap();
    let v = json(&vigil(&["sim", "--scenario", path.to_str().unwrap(), "--duration", "2", "--json"]));
    assert_eq!(v["scenario"], "mine");
    assert_eq!(v["frames"]["lidar"], 10, "lidar rate override 5 Hz");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = vigil(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_ne!(out.status.code(), Some(101), "a panic is not an error message: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    fails_with(&["sim", "--scenario", "nope", "--duration", "1"], &["unknown scenario `nope`", "vigil scenarios"]);
    fails_with(&["sim", "--scenario", "debris", "--duration", "-5"], &["--duration must be a positive", "-5"]);
    fails_with(&["sim", "--scenario", "debris", "--duration", "0"], &["--duration must be a positive"]);
    fails_with(&["sim", "--scenario", "debris", "--vehicles", "0"], &["--vehicles"]);
    let dir = tempdir("bad-toml");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\ndescription = \"y\"\n\n[[obstacles]]\nclass = \"pedestrian\"\nstart = [1.0, 2.0]\nspeed_mps = \"fast\"\n").unwrap();
    fails_with(&["sim", "--scenario", bad.to_str().unwrap()], &["line 7", "speed_mps", "bad.toml"]);
    std::fs::write(&bad, "name = \"x\"\ndescription = \"y\"\n[sensors.lidar]\nbeams = 0\n").unwrap();
    fails_with(&["sim", "--scenario", bad.to_str().unwrap()], &["sensors.lidar.beams"]);
    fails_with(&["sim", "--scenario", "/no/such/file.toml"], &["cannot read scenario file /no/such/file.toml"]);
}

#[test]
fn snapshots_are_written() {
    let dir = tempdir("snap");
    let out = vigil(&[
        "sim",
        "--scenario",
        "urban-dense",
        "--seed",
        "3",
        "--duration",
        "4",
        "--snapshot",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pngs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(pngs.len() >= 4, "expected camera frames and a bird's-eye view, got {}", pngs.len());
    assert!(dir.join("bev.png").exists());
    for p in pngs {
        let bytes = std::fs::read(p.path()).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
